"""The conversation: its items in order, within a budget of turns and estimated tokens.

A spoken turn takes its place when it is committed and gets its words after the STT flush;
a reply's message and function calls take theirs when they start. So the order is the
order in which things began, even when a reply is still running as the user's next turn
is committed. Items a client creates go where it says (`insert_after`). When the budget
is exceeded the oldest items go first; `chat_messages` turns what is left into the LLM's
context.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.clients.llm_request import ChatMessage
from orchestrator.pipeline.chat_messages import chat_messages
from orchestrator.pipeline.items import FunctionCall, Item, ItemStatus, Message, Role, text_of

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Your replies are spoken aloud by a speech synthesiser: "
    "answer in one to three short, natural sentences, in plain words. Do not use lists, markdown, "
    "emoji, code, URLs or stage directions. If you did not understand, say so briefly and ask."
)


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters per token in English), enough for a budget."""
    return len(text) // 4 + 1


@dataclass
class History:
    """Bounded by a number of user turns and an estimated token budget; the oldest go first."""

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_turns: int = 20
    max_tokens: int = 3000
    items: list[Item] = field(default_factory=list)

    def reserve(self, role: Role, item_id: str) -> str | None:
        """Hold the place of a spoken turn that has begun (`fill` gives it its words); the
        id of the item before it."""
        return self.append(Message(item_id, role, status="in_progress"))

    def append(self, item: Item) -> str | None:
        """Add `item` at the end; the id of the item before it."""
        previous = self.items[-1].item_id if self.items else None
        self.items.append(item)
        self._trim()
        return previous

    def insert_after(self, item: Item, previous: str | None) -> str | None:
        """Add `item` after the item `previous` (None: first); KeyError if there is none."""
        at = 0 if previous is None else self._index(previous) + 1
        self.items.insert(at, item)
        self._trim()
        return previous

    def fill(self, item_id: str, content: str, status: ItemStatus | None = "completed") -> bool:
        """Set a message's text (a reply's, by what was heard) and status (None: as it is);
        False if it is gone."""
        item = self.get(item_id)
        if not isinstance(item, Message):
            return False
        item.text, item.status = content, status or item.status
        self._trim()
        return True

    def get(self, item_id: str) -> Item | None:
        return next((item for item in self.items if item.item_id == item_id), None)

    def delete(self, item_id: str) -> bool:
        """Remove the item (from the LLM's context too); False if there is none."""
        item = self.get(item_id)
        if item is None:
            return False
        self.items.remove(item)
        return True

    def call(self, call_id: str) -> FunctionCall | None:
        """The function call `call_id`, if it is in the conversation."""
        found = (i for i in self.items if isinstance(i, FunctionCall) and i.call_id == call_id)
        return next(found, None)

    def last_id(self) -> str | None:
        return self.items[-1].item_id if self.items else None

    def _index(self, item_id: str) -> int:
        for index, item in enumerate(self.items):
            if item.item_id == item_id:
                return index
        raise KeyError(item_id)

    def _trim(self) -> None:
        def too_big() -> bool:
            users = sum(isinstance(i, Message) and i.role == "user" for i in self.items)
            tokens = estimate_tokens(self.system_prompt) + sum(
                estimate_tokens(text_of(i)) for i in self.items
            )
            return users > self.max_turns or tokens > self.max_tokens

        while len(self.items) > 1 and too_big():
            self.items.pop(0)

    def for_llm(
        self,
        system_prompt: str | None = None,
        pending_user: str | None = None,
        context: list[Item] | None = None,
    ) -> list[ChatMessage]:
        """OpenAI chat messages in conversation order (see `chat_messages`).

        `system_prompt` replaces the session's for one request (a `response.create` with
        instructions); `pending_user` is a user turn not yet committed (a reply prepared
        before it is); `context` replaces the conversation (a `response.create` with `input`).
        """
        items = list(self.items if context is None else context)
        if pending_user:
            items.append(Message("pending", "user", pending_user))
        return chat_messages(items, system_prompt or self.system_prompt)
