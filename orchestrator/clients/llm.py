"""The LLM: any OpenAI-compatible chat endpoint (vLLM in production), or the echo responder.

`LLM_URL=echo` selects a built-in responder that repeats what it heard, so the `cpu`
profile runs the whole loop with no model; the UI labels it as such.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator

import httpx
import openai
from openai import AsyncOpenAI

from orchestrator.clients.errors import BackendError, BackendTimeout, BackendUnavailable
from orchestrator.clients.llm_request import ChatMessage, LlmDelta, LlmRequest, chunk_deltas

logger = logging.getLogger(__name__)
SERVICE = "LLM"
ECHO = "echo"
# vLLM answers 400 to a request with tools unless it was started to serve tool calls.
TOOLS_HINT = " (is the LLM server started to serve tool calls? docs/orchestrator.md, Tool calls)"


class LlmClient:
    """Streams chat completions; discovers the model from /v1/models when none is set."""

    def __init__(
        self, url: str, api_key: str | None, model: str | None, *, timeout_s: float, temperature: float
    ) -> None:
        self.is_echo = url == ECHO
        self.url = url
        self.model = "echo" if self.is_echo else model
        self.temperature = temperature
        self.timeout_s = timeout_s
        self._client = (
            None
            if self.is_echo
            else AsyncOpenAI(base_url=url, api_key=api_key or "not-needed", timeout=timeout_s, max_retries=0)
        )

    async def _list_models(self) -> None:
        """Ask for the server's models; the first becomes the model asked for when none is set."""
        assert self._client is not None
        try:
            models = [m.id async for m in self._client.models.list()]
        except openai.APIError as exc:
            raise BackendUnavailable(SERVICE, f"cannot list models at {self.url}: {exc}") from None
        if not models:
            raise BackendUnavailable(SERVICE, f"{self.url} serves no model")
        if not self.model:
            self.model = models[0]
            logger.info("LLM model discovered", extra={"model": self.model, "listed": models})

    async def resolve_model(self) -> str:
        """The model to ask for: the configured one, else the first the server lists."""
        if not self.model:
            await self._list_models()
        assert self.model is not None
        return self.model

    async def ready(self) -> str | None:
        """None when the endpoint answers /v1/models, else the reason. Asked every time (it is
        the health probe), not only until the model is known."""
        if self.is_echo:
            return None
        try:
            await asyncio.wait_for(self._list_models(), timeout=2.0)
        except (BackendError, TimeoutError) as exc:
            return str(exc) or "LLM: no answer from /v1/models within 2 s"
        return None

    async def stream(self, request: LlmRequest) -> AsyncGenerator[LlmDelta, None]:
        """The assistant's reply: text deltas, and tool-call pieces where tools were offered."""
        if self.is_echo:
            async for piece in _echo(request.messages):
                yield piece
            return
        assert self._client is not None
        model = await self.resolve_model()
        try:
            stream = await self._client.chat.completions.create(
                model=model,
                messages=request.messages,  # type: ignore[arg-type]
                stream=True,
                temperature=self.temperature,
                **request.options(),
            )
            async with stream:
                async for chunk in stream:
                    for delta in chunk_deltas(chunk):
                        yield delta
        # While a stream is being read, httpx's own errors come through unwrapped.
        except (openai.APITimeoutError, httpx.TimeoutException):
            raise BackendTimeout(SERVICE, f"no answer within {self.timeout_s:.0f} s") from None
        except (openai.APIConnectionError, httpx.HTTPError) as exc:
            raise BackendUnavailable(SERVICE, f"cannot reach {self.url}: {exc}") from None
        except openai.APIStatusError as exc:
            hint = TOOLS_HINT if request.tools and exc.status_code == 400 and "tool" in exc.message else ""
            raise BackendError(SERVICE, f"HTTP {exc.status_code}: {exc.message}{hint}") from None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


async def _echo(messages: list[ChatMessage]) -> AsyncIterator[str]:
    heard = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    for piece in ["You", " said:", *(f" {w}" for w in heard.split())]:
        await asyncio.sleep(0)  # yield like a real stream would
        yield piece
