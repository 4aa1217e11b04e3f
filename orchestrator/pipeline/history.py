"""The conversation sent to the LLM: a system prompt and recent turns within a budget."""

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
    """One entry; assistant entries remember their item id for truncation."""

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

    def add(self, role: str, content: str, item_id: str | None = None) -> None:
        """Append a message and drop old ones until the budget holds."""
        if self.messages and self.messages[-1].role == role and role == "user":
            self.messages[-1].content += " " + content  # two user turns in a row: one message
        else:
            self.messages.append(Message(role, content, item_id))
        self._trim()

    def truncate(self, item_id: str, content: str) -> bool:
        """Replace an assistant message's text by what was actually heard."""
        for message in self.messages:
            if message.item_id == item_id:
                message.content = content
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
        while self.messages and self.messages[0].role != "user":
            self.messages.pop(0)  # a conversation starts with the user

    def for_llm(self, system_prompt: str | None = None) -> list[dict[str, str]]:
        """OpenAI chat messages; empty (fully interrupted) assistant turns are left out.

        `system_prompt` replaces the session's for one request (a `response.create` with
        instructions, as OpenAI defines them).
        """
        out = [{"role": "system", "content": system_prompt or self.system_prompt}]
        out += [{"role": m.role, "content": m.content} for m in self.messages if m.content.strip()]
        return out
