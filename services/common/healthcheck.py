"""Readiness probe used by container healthchecks, the SLURM job, the demo and tests.

    python -m services.common.healthcheck http://127.0.0.1:3001/ready [--timeout 2]

Exits 0 when the URL answers 200, else 1, with one short line saying why. Standard
library only, so it starts fast and works in every image.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request


def probe(url: str, timeout_s: float) -> str | None:
    """None when `url` answers 200 within `timeout_s`, else the reason."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        body = exc.read(300).decode(errors="replace")
        return f"HTTP {exc.code} {body}".strip()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return f"unreachable: {getattr(exc, 'reason', exc)}"


def main() -> None:
    parser = argparse.ArgumentParser(description="exit 0 if URL answers 200")
    parser.add_argument("url")
    parser.add_argument(
        "--timeout", type=float, default=2.0, help="seconds (keep below the caller's own timeout)"
    )
    args = parser.parse_args()
    reason = probe(args.url, args.timeout)
    if reason is None:
        print("ready")
        sys.exit(0)
    print(f"not ready: {reason}")
    sys.exit(1)


if __name__ == "__main__":
    main()
