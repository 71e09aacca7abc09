"""Record layouts: detect a record's layout, check it and normalise it to chat messages.

Everything here works on one decoded record (a dict) and knows nothing about files. A problem with
a record raises ``RecordProblem(message, field)``; the reader adds the file, line and byte offset.

Layouts (DESIGN.md section 2), detected from the record's keys in this order, first match wins:

==================  =========================================================================
messages            ``messages: [{"role": "system"|"user"|"assistant", "content": ...}]``
sharegpt            ``conversations: [{"from": "system"|"human"|"gpt"|..., "value": ...}]``
alpaca              ``instruction``, optional ``input``, ``output``
prompt-completion   ``prompt`` and ``completion`` (or ``response`` when completion is absent/null)
text                ``text`` (pre-training: loss on every token)
==================  =========================================================================

The structured layouts come before ``text`` because many instruction sets also carry a rendered
``text`` column next to their real fields (``tatsu-lab/alpaca`` does).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from proxysel.data.example import FORMATS, Example, Message
from proxysel.errors import UsageError

#: Fields a ``columns`` mapping may rename (logical name -> the record's own key).
LOGICAL_FIELDS = ("id", "instruction", "input", "output", "conversations", "messages", "prompt",
                  "completion", "response", "text")

#: ShareGPT speaker names (compared lower-cased) -> normalised role.
SHAREGPT_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
    "assistant": "assistant",
    "system": "system",
}
MESSAGE_ROLES = ("system", "user", "assistant")
#: Roles of tool use. They have no clean meaning for response-loss scoring (is a tool result a
#: prompt? whose tokens get the loss?), so such records are bad rather than silently reshaped.
TOOL_ROLES = ("tool", "function", "ipython", "observation", "function_call", "tool_call")

#: Longest id in UTF-8 bytes: ids may become file names, which most filesystems cap at 255 bytes.
MAX_ID_BYTES = 200

_DETECT_ORDER = (("messages", "messages"), ("conversations", "sharegpt"), ("instruction", "alpaca"),
                 ("prompt", "prompt-completion"), ("text", "text"))
_BAD_ID_CHARS = re.compile(r"[/\\\x00-\x1f\x7f-\x9f]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class RecordProblem(ValueError):
    """What is wrong with one record. ``field`` is a path such as ``conversations[2].value``."""

    def __init__(self, message: str, field: str | None = None, offset: int | None = None) -> None:
        super().__init__(message)
        self.message, self.field, self.offset = message, field, offset


def check_columns(columns: Mapping[str, str] | None) -> dict[str, str]:
    """Validate a ``columns`` mapping (logical field -> record key); UsageError names a bad entry."""
    if columns is None:
        return {}
    if not isinstance(columns, Mapping):
        raise UsageError("columns must be a mapping of logical field -> record key, "
                         f"got {type(columns).__name__}")
    out: dict[str, str] = {}
    for logical, key in columns.items():
        if logical not in LOGICAL_FIELDS:
            raise UsageError(f"columns: unknown logical field {logical!r}; "
                             f"known: {', '.join(LOGICAL_FIELDS)}")
        if not isinstance(key, str) or not key:
            raise UsageError(f"columns[{logical!r}] must be a non-empty record key, got {key!r}")
        out[logical] = key
    return out


def check_format(format: str | None) -> str | None:
    if format is not None and format not in FORMATS:
        raise UsageError(f"format must be one of {', '.join(FORMATS)} or None (auto), got {format!r}")
    return format


def rename(record: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """The record's fields under their logical names: ``columns`` maps logical name -> record key.

    A mapped key is moved (not copied) so that it cannot also trigger detection under its own name;
    a record without the mapped key keeps whatever it has.
    """
    if not columns:
        return record
    fields = dict(record)
    for logical, key in columns.items():
        if key in record and key != logical:
            fields[logical] = record[key]
    for key in set(columns.values()) - set(columns):
        fields.pop(key, None)
    return fields


def detect(fields: Mapping[str, Any]) -> str | None:
    """The layout of a record from its keys (see the module docstring), or None.

    Keys holding null are looked at only when no key has a value: a Parquet file that mixes
    layouts has every layout's columns in every row, most of them null.
    """
    for key, fmt in _DETECT_ORDER:
        if fields.get(key) is not None:
            return fmt
    for key, fmt in _DETECT_ORDER:
        if key in fields:
            return fmt
    return None


def to_messages(fields: Mapping[str, Any], fmt: str, columns: dict[str, str] | None = None
                ) -> tuple[Message, ...]:
    """Normalise a record in layout ``fmt`` to chat turns; RecordProblem if it is not usable.

    The prompt side (instruction, prompt, user and system turns) may be empty; the response side
    (output, completion/response, every assistant turn, text) must hold non-whitespace text.

    alpaca:            user = ``instruction``, followed by ``"\\n\\n" + input`` when ``input`` has
                       non-whitespace text (just ``input`` if the instruction is empty); the
                       strings are used verbatim. assistant = ``output``.
    sharegpt:          ``from`` is mapped case-insensitively with SHAREGPT_ROLES.
    messages:          ``content`` may be a string or a list of ``{"type": "text", "text": ...}``
                       parts, which are concatenated with no separator (what Hugging Face chat
                       templates do with text parts).
    prompt-completion: ``completion``, or ``response`` when ``completion`` is absent or null and
                       ``response`` is not.
    text:              one ``Message("text", text)``.
    """
    name = _namer(columns or {})
    if fmt == "alpaca":
        instruction = _string(fields, "instruction", name)
        output = _response(fields, "output", name)
        inp = _string(fields, "input", name, optional=True)
        user = instruction
        if inp is not None and not blank(inp):
            user = f"{instruction}\n\n{inp}" if instruction else inp
        return (Message("user", user), Message("assistant", output))
    if fmt == "prompt-completion":
        prompt = _string(fields, "prompt", name)
        use_response = fields.get("completion") is None and fields.get("response") is not None
        key = "response" if use_response else "completion"
        return (Message("user", prompt), Message("assistant", _response(fields, key, name)))
    if fmt == "text":
        return (Message("text", _response(fields, "text", name)),)
    if fmt == "sharegpt":
        return _turns(fields, name, "conversations", "from", "value")
    if fmt == "messages":
        return _turns(fields, name, "messages", "role", "content")
    raise UsageError(f"unknown format {fmt!r}")  # pragma: no cover - check_format guards this


def record_id(fields: Mapping[str, Any], record: Any, canonical: bytes | None,
              columns: dict[str, str] | None = None, null_is_absent: bool = False) -> str:
    """The example id: the record's ``id`` (str or int) or 16 hex digits of sha256(canonical JSON).

    Ids may become file names, so ``/``, ``\\``, ``..``, ``.``, control characters and ids over
    MAX_ID_BYTES are refused (RecordProblem) rather than mangled. A null id is refused too, except
    in table rows (``null_is_absent``), where a null is how a column says "no value".
    """
    if "id" not in fields or (null_is_absent and fields["id"] is None):
        if canonical is None:
            canonical = canonical_json(record)
        return hashlib.sha256(canonical).hexdigest()[:16]
    label = _namer(columns or {})("id")
    value = fields["id"]
    if value is None:
        raise RecordProblem("id is null; give the record an id or remove the field", label)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordProblem(f"id must be a string or an integer, got {_kind(value)}", label)
    text = str(value)
    if blank(text):
        raise RecordProblem("id is empty", label)
    if _BAD_ID_CHARS.search(text) or ".." in text or text == ".":
        raise RecordProblem(f"id {text!r} contains '/', '\\', '..' or a control character; ids may "
                            "become file names, so use letters, digits, '-', '_' or '.'", label)
    if len(text.encode("utf-8")) > MAX_ID_BYTES:
        raise RecordProblem(f"id is longer than {MAX_ID_BYTES} bytes (ids may become file names)", label)
    return text


def canonical_json(record: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8; values JSON cannot hold (bytes, dates, decimals from Parquet)
    are written as their ``str``."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8")


def find_lone_surrogate(obj: Any, path: str = "") -> str | None:
    """Path of the first string (key or value) holding an unpaired UTF-16 surrogate, e.g. from a
    ``"\\ud800"`` escape; such text cannot be encoded as UTF-8 or tokenised. None if there is none."""
    if isinstance(obj, str):
        return (path or "<record>") if _LONE_SURROGATE.search(obj) else None
    if isinstance(obj, dict):
        for key, value in obj.items():
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _LONE_SURROGATE.search(key):
                return sub
            found = find_lone_surrogate(value, sub)
            if found:
                return found
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found = find_lone_surrogate(value, f"{path}[{i}]")
            if found:
                return found
    return None


def blank(text: str | bytes) -> bool:
    """Empty or whitespace only (without copying the text, as ``strip()`` would)."""
    return not text or text.isspace()


# --- helpers -------------------------------------------------------------------------------------

def _namer(columns: dict[str, str]):
    """Field labels for messages use the record's own key (``answer``), not the logical name."""
    return lambda logical: columns.get(logical, logical)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


def _string(fields: Mapping[str, Any], key: str, name, optional: bool = False) -> str | None:
    if key not in fields or (optional and fields[key] is None):
        if optional:
            return None
        raise RecordProblem(f"missing field {name(key)!r}; map your own field names with "
                            "columns= (--columns) or force a layout with format= (--format)", name(key))
    value = fields[key]
    if value is None:
        raise RecordProblem(f"{name(key)} is null", name(key))
    if not isinstance(value, str):
        raise RecordProblem(f"{name(key)} must be a string, got {_kind(value)}", name(key))
    return value


def _response(fields: Mapping[str, Any], key: str, name) -> str:
    value = _string(fields, key, name)
    assert value is not None
    if blank(value):
        what = "empty" if not value else "whitespace only"
        raise RecordProblem(f"{name(key)} is {what}; every response needs text to take the loss on",
                            name(key))
    return value


def _turns(fields: Mapping[str, Any], name, key: str, role_key: str, text_key: str
           ) -> tuple[Message, ...]:
    label = name(key)
    if key not in fields:
        raise RecordProblem(f"missing field {label!r}", label)
    turns = fields[key]
    if turns is None:
        raise RecordProblem(f"{label} is null", label)
    if not isinstance(turns, list):
        raise RecordProblem(f"{label} must be a list of turns, got {_kind(turns)}", label)
    if not turns:
        raise RecordProblem(f"{label} is empty (no turns)", label)
    sharegpt = key == "conversations"
    out = []
    for i, turn in enumerate(turns):
        # The loop runs once per turn of the whole pool, so labels are only built for errors.
        if not isinstance(turn, dict):
            raise RecordProblem(f"{label}[{i}] must be an object with {role_key!r} and {text_key!r}, got "
                                f"{_kind(turn)}", f"{label}[{i}]")
        speaker = turn.get(role_key)
        low = speaker.lower() if isinstance(speaker, str) else None
        role = ((SHAREGPT_ROLES.get(low) if sharegpt else (low if low in MESSAGE_ROLES else None))
                if low else None)
        if role is None:
            raise _role_problem(turn, speaker, f"{label}[{i}]", role_key, sharegpt)
        text = turn.get(text_key)
        if not isinstance(text, str):
            text = _turn_text(turn, text_key, f"{label}[{i}].{text_key}")
        if role == "assistant":
            if not sharegpt and (turn.get("tool_calls") or turn.get("function_call")):
                what = "tool_calls" if turn.get("tool_calls") else "function_call"
                raise RecordProblem(f"{label}[{i}] is an assistant tool call; tool turns are not supported",
                                    f"{label}[{i}].{what}")
            if blank(text):
                raise RecordProblem(f"{label}[{i}] is an assistant turn with "
                                    f"{'no' if not text else 'only whitespace'} text; every response needs "
                                    "text to take the loss on", f"{label}[{i}].{text_key}")
        out.append(Message(role, text))
    roles = {m.role for m in out}
    if roles == {"system"}:
        raise RecordProblem(f"{label} has only a system message and no assistant turn", label)
    if "assistant" not in roles:
        raise RecordProblem(f"{label} has no assistant turn (the loss is taken on assistant turns); "
                            f"roles found: {', '.join(sorted(roles))}", label)
    return tuple(out)


def _role_problem(turn: dict[str, Any], speaker: Any, where: str, role_key: str, sharegpt: bool
                  ) -> RecordProblem:
    field = f"{where}.{role_key}"
    if role_key not in turn:
        return RecordProblem(f"{where} has no {role_key!r}", field)
    if not isinstance(speaker, str):
        return RecordProblem(f"{field} must be a string, got {_kind(speaker)}", field)
    known = ", ".join(SHAREGPT_ROLES if sharegpt else MESSAGE_ROLES)
    why = " (tool turns are not supported)" if speaker.lower() in TOOL_ROLES else ""
    return RecordProblem(f"unknown role {speaker!r} in {field}{why}; known roles: {known}", field)


def _turn_text(turn: dict[str, Any], key: str, where: str) -> str:
    if key not in turn:
        raise RecordProblem(f"missing field {where!r}", where)
    value = turn[key]
    if value is None:
        raise RecordProblem(f"{where} is null", where)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and key == "content":
        parts = []
        for j, part in enumerate(value):
            if (not isinstance(part, dict) or part.get("type") != "text"
                    or not isinstance(part.get("text"), str)):
                what = f"a {part.get('type')!r} part" if isinstance(part, dict) else _kind(part)
                raise RecordProblem(f"{where}[{j}] is {what}; only text parts "
                                    "{'type': 'text', 'text': ...} are supported", f"{where}[{j}]")
            parts.append(part["text"])
        return "".join(parts)
    raise RecordProblem(f"{where} must be a string, got {_kind(value)}", where)


def example_record(fmt: str, i: int = 0) -> dict[str, Any]:
    """A small, valid record of layout ``fmt`` (the ``i``-th of a family of distinct ones): what the
    documentation shows and what the tests run every signal on. A new layout gets one here."""
    q, a = f"Sort the numbers {i} 1 2.", f"The sorted numbers are 1 2 {i}."
    examples = {
        "alpaca": {"instruction": q, "input": "", "output": a},
        "sharegpt": {"conversations": [{"from": "system", "value": "Be brief."},
                                       {"from": "human", "value": q}, {"from": "gpt", "value": a},
                                       {"from": "human", "value": "And reversed?"},
                                       {"from": "gpt", "value": f"{i} 2 1"}]},
        "messages": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q},
                                  {"role": "assistant", "content": a}]},
        "prompt-completion": {"prompt": q, "completion": a},
        "text": {"text": f"{q} {a}"},
    }
    if fmt not in examples:
        raise KeyError(f"no example record for layout {fmt!r}")
    return {"id": f"{fmt}-{i}", **examples[fmt]}


def example_parts(fmt: str) -> frozenset[str]:
    """The parts (``prompt``, ``response``) a record of layout ``fmt`` holds (``Example.parts`` of its
    ``example_record``): what decides which signals apply to the layout."""
    rec = example_record(fmt)
    return Example(id="x", messages=to_messages(rec, fmt), format=fmt, file="", line=1, index=0, raw=None,
                   record=rec).parts
