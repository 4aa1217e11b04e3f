"""Structured logging for the services: one JSON object per line, secrets redacted.

Access logs include request paths, and moshi-server clients may put their key in the
``auth_id`` query parameter; the filter here rewrites such values before any handler
sees them, so keys never reach a log file.
"""

from __future__ import annotations

import json
import logging
import re
import time

_SECRET_QUERY = re.compile(r"((?:auth_id|token|api_key|key)=)[^&\s\"']+", re.IGNORECASE)
# uvicorn logs every request header at DEBUG: keys in headers and WebSocket subprotocols too.
_SECRET_HEADER = re.compile(
    r"((?:authorization|cookie|kyutai-api-key|x-api-key):\s*)[^\r\n]+|(openai-insecure-api-key\.)[^,\s\"']+",
    re.IGNORECASE,
)

# Attributes every LogRecord has; anything else was passed through `extra=` and is logged.
_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    """Replace secret-looking query values, header values and subprotocol keys in `text` with ``***``."""
    text = _SECRET_QUERY.sub(r"\1***", text)
    return _SECRET_HEADER.sub(lambda m: f"{m.group(1) or m.group(2)}***", text)


class RedactSecrets(logging.Filter):
    """Rewrites the formatted message so that query-string secrets are masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class QuietProbes(logging.Filter):
    """Drops access-log lines of successful health probes, which the SLURM job and
    container healthchecks send every few seconds and which would drown everything else."""

    _PROBES = ("/health", "/ready", "/metrics")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            return not (args[2] in self._PROBES and args[4] == 200)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route the root, uvicorn and service loggers through one redacting handler."""
    handler = logging.StreamHandler()
    handler.addFilter(QuietProbes())
    handler.addFilter(RedactSecrets())
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
