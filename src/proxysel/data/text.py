"""Plain-text views of an example, for embedders, judges and near-duplicate detection (not for the
proxy's loss)."""

from __future__ import annotations

from typing import Sequence

from proxysel.data.example import Example, Message

ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}


def embedding_text(example: Example) -> str:
    """The text an embedder sees.

    alpaca: the official LP clustering string ``Instruction: {instruction input} Response: {output}``
    (each field stripped, instruction and input joined by one space, as Small2Large clustering.py does);
    conversations: every turn as ``{Role}: {content}``, joined by newlines; text: the text.
    """
    a = example.alpaca
    if a is not None:
        instruction, inp, output = (part.strip() for part in a)
        instruction = f"{instruction} {inp}" if inp else instruction
        return f"Instruction: {instruction} Response: {output}"
    return conversation_text(example)


def conversation_text(example: Example) -> str:
    """Every turn as ``{Role}: {content}`` joined by newlines; a ``text`` record is its text."""
    if example.is_text:
        return example.messages[0].content
    return turns_text(example.messages)


def turns_text(messages: Sequence[Message]) -> str:
    """Turns as ``{Role}: {content}`` lines (what ``conversation_text`` gives for a chat)."""
    return "\n".join(f"{ROLE_NAMES.get(m.role, m.role)}: {m.content}" for m in messages)


def response_text(example: Example) -> str:
    """The assistant turns alone, joined by a blank line: what IFD's unconditioned pass reads."""
    return "\n\n".join(m.content for m in example.messages if m.role == "assistant")


def contents_text(example: Example) -> str:
    """Every turn's content without its role, one per line: what ``near_dup`` compares (a role name
    in every record would be a shingle that all records share)."""
    return "\n".join(m.content for m in example.messages)
