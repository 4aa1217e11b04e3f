"""The conversation sent to the LLM: a system prompt and recent turns within a budget.

Entries are reserved, by item id, when their turn begins (a user's turn when it is
committed, a reply when it starts) and filled in when their text is known. So the order
is the order in which turns happened, even when a reply is still running as the user's
next turn is committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Your replies are spoken aloud by a speech synthesiser: "
    "answer in one to three short, natural sentences, in plain words. Do not use lists, markdown, "
    "emoji, code, URLs or stage directions. If you did not understand, say so briefly and ask."
)


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters per token in English), enough for a budget."""
    return len(text) // 4 + 1


@dataclass
class Message:
    """One entry: a user's or the assistant's turn, empty until its text is known."""

    role: str
    content: str
    item_id: str | None = None


@dataclass
class History:
    """Bounded by a number of turns and an estimated token budget; the oldest go first."""

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_turns: int = 20
    max_tokens: int = 3000
    messages: list[Message] = field(default_factory=list)

    def reserve(self, role: str, item_id: str) -> None:
        """Hold the place of a turn that has begun; `fill` gives it its text."""
        self.messages.append(Message(role, "", item_id))

    def fill(self, item_id: str, content: str) -> bool:
        """Set a reserved entry's text (or replace a reply's by what was heard); False if gone."""
        for message in self.messages:
            if message.item_id == item_id:
                message.content = content
                self._trim()
                return True
        return False

    def _trim(self) -> None:
        def too_big() -> bool:
            users = sum(m.role == "user" for m in self.messages)
            tokens = estimate_tokens(self.system_prompt) + sum(
                estimate_tokens(m.content) for m in self.messages
            )
            return users > self.max_turns or tokens > self.max_tokens

        while len(self.messages) > 1 and too_big():
            self.messages.pop(0)

    def for_llm(
        self, system_prompt: str | None = None, pending_user: str | None = None
    ) -> list[dict[str, str]]:
        """OpenAI chat messages in turn order.

        Empty entries (noise, a reply interrupted before a word, a turn still pending) are
        left out; two user turns left next to each other become one message, and the
        conversation starts with the user, as chat templates expect. `system_prompt`
        replaces the session's for one request (a `response.create` with instructions);
        `pending_user` is a user turn not yet committed (a reply prepared before it is).
        """
        turns: list[dict[str, str]] = []
        pending = [Message("user", pending_user)] if pending_user else []
        for m in [*self.messages, *pending]:
            if not m.content.strip() or (not turns and m.role != "user"):
                continue
            if turns and turns[-1]["role"] == m.role:
                turns[-1]["content"] += " " + m.content
            else:
                turns.append({"role": m.role, "content": m.content})
        return [{"role": "system", "content": system_prompt or self.system_prompt}, *turns]
