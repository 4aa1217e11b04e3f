"""What a client does to the conversation's items directly: create one (a typed message, a
function call's output, an audio clip to transcribe), delete one, or name some as the
context of one reply. A refused request is a `Problem` naming the client's event; the
conversation is left as it was."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from kit.audio import SAMPLE_RATE
from orchestrator.clients.errors import BackendError
from orchestrator.pipeline.audio_item import transcribe_clip
from orchestrator.pipeline.backends import Backends
from orchestrator.pipeline.events import ItemCreated, ItemDeleted, Problem, SessionEvent, UserTurnTranscribed
from orchestrator.pipeline.history import History
from orchestrator.pipeline.items import FunctionCallOutput, Item, Message, snapshot
from orchestrator.pipeline.replies import Spawn

ROOT = "root"  # as `previous_item_id`: the start of the conversation (OpenAI's name)


class ItemRequests:
    """Carries out item requests; `transcribing` are the audio items still being transcribed
    (a reply asked for meanwhile waits for them)."""

    def __init__(
        self, backends: Backends, history: History, emit: Callable[[SessionEvent], None], spawn: Spawn
    ) -> None:
        self._backends, self._history, self._emit, self._spawn = backends, history, emit, spawn
        self.transcribing: set[asyncio.Task[None]] = set()

    def create(
        self,
        item: Item,
        previous_item_id: str | None,
        client_event_id: str | None,
        audio: np.ndarray | None = None,
    ) -> None:
        """Put `item` after `previous_item_id` (None: at the end; `ROOT`: first); with `audio`,
        the message's text is what the STT hears in it."""
        problem = self._refusal(item, previous_item_id)
        if problem is not None:
            code, what, param = problem
            self._emit(Problem(code, what, "invalid_request_error", client_event_id, param))
            return
        if audio is not None and isinstance(item, Message):
            item.status = "in_progress"
        if previous_item_id is None:
            previous = self._history.append(item)
        else:
            previous = self._history.insert_after(
                item, None if previous_item_id == ROOT else previous_item_id
            )
        self._emit(ItemCreated(snapshot(item), previous))
        if audio is not None:
            task = self._spawn(self._transcribe(item.item_id, previous, audio), f"transcribe-{item.item_id}")
            if task is not None:
                self.transcribing.add(task)
                task.add_done_callback(self.transcribing.discard)

    def delete(self, item_id: str, client_event_id: str | None) -> None:
        """Take the item out of the conversation, and so out of the LLM's context."""
        if self._history.delete(item_id):
            self._emit(ItemDeleted(item_id))
        else:
            what = f"no item {item_id!r} in the conversation"
            self._emit(Problem("item_not_found", what, "invalid_request_error", client_event_id, "item_id"))

    def resolve(
        self, context: tuple[Item | str, ...], client_event_id: str | None
    ) -> tuple[Item, ...] | None:
        """A reply's `input`: its items, with each reference (an id) replaced by the item it names."""
        out: list[Item] = []
        for entry in context:
            item = self._history.get(entry) if isinstance(entry, str) else entry
            if item is None:
                what = f"input names item {entry!r}, which is not in the conversation"
                self._emit(
                    Problem(
                        "item_not_found", what, "invalid_request_error", client_event_id, "response.input"
                    )
                )
                return None
            out.append(item)
        return tuple(out)

    def _refusal(self, item: Item, previous_item_id: str | None) -> tuple[str, str, str] | None:
        if item.item_id == ROOT or self._history.get(item.item_id) is not None:
            return "invalid_value", f"an item with id {item.item_id!r} exists (or is reserved)", "item.id"
        if previous_item_id not in (None, ROOT) and self._history.get(previous_item_id) is None:
            what = f"previous_item_id {previous_item_id!r} is not in the conversation"
            return "item_not_found", what, "previous_item_id"
        if isinstance(item, FunctionCallOutput) and self._history.call(item.call_id) is None:
            what = f"no function_call with call_id {item.call_id!r} in the conversation"
            return "item_not_found", what, "item.call_id"
        return None

    async def _transcribe(self, item_id: str, previous: str | None, audio: np.ndarray) -> None:
        try:
            transcript = await transcribe_clip(self._backends, audio)
        except BackendError as exc:
            self._emit(Problem(exc.event_code, f"{exc} - the audio item {item_id} has no transcript"))
            transcript = ""
        self._history.fill(item_id, transcript)
        self._emit(UserTurnTranscribed(item_id, previous, transcript, audio.size / SAMPLE_RATE))
