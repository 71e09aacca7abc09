"""Eval groups and the leakage check of the bench: which group an eval example belongs to, and
whether an eval example repeats a pool or reference example.

Groups (``data.group_by``). The macro mean over groups is the bench's headline
(``benchmarking.stats``), so every eval example needs a group:

- a **record field** (``family``, ``source``, ``category``, ...): the record's value, as text;
  every eval record must have it;
- a **rule**, by name (``GROUP_RULES``; a rule name wins over a field of the same name):
  ``has_code`` puts an example in ``code`` or ``no code`` (see ``has_code``);
- ``all``: one group (the macro mean is then the pooled mean);
- unset (None): ``family`` when every eval record has it, else one group.

Leakage. Two examples are the same when their turns, in order, are equal after normalisation:
each turn's role and its text lower-cased with every run of whitespace made one space and the
ends stripped (``normalised_text``). An eval example equal to a pool or reference example makes
the bench's verdicts meaningless, so ``find_leaks`` lists them and the bench refuses to run.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Sequence

__all__ = ["CATEGORY_RULES", "CODE_LINE", "GROUP_RULES", "ONE_GROUP", "eval_groups", "find_leaks",
           "group_key", "has_code", "normalise", "normalised_text", "texts_have_code"]

#: ``data.group_by`` value for one group
ONE_GROUP = "all"

#: A line that is code, not prose: the opening of a Python/JS/C/Java/PHP definition or block, an
#: import, an assignment declaration, a statement that is a call (``name(...);``), an SQL
#: statement keyword in capitals, or an HTML tag. Prose that ends in ``);`` after a parenthesised
#: aside does not match: the call needs a name right before its ``(``.
CODE_LINE = re.compile(r"""^\s*(?:
      (?:def|class)\s+\w+\s*[(:]                           # Python definitions
    | import\s+[\w.]+(?:\s+as\s+\w+)?(?:\s*,\s*[\w.]+)*\s*;?\s*$  # import x [as y], z
    | from\s+[\w.]+\s+import\s                             # from x import y
    | \#include\s*[<"]                                     # C/C++
    | (?:public|private|protected)\s+(?:static\s+)?[\w<>\[\],]+\s+\w+\s*\(   # Java/C# methods
    | (?:export\s+)?(?:function\s*\w*\s*\(|(?:const|let|var)\s+\w+\s*=)     # JavaScript
    | \$\w+\s*=                                            # PHP/shell-like assignment
    | (?:SELECT|INSERT\s+INTO|CREATE\s+TABLE|UPDATE\s+\w+\s+SET)\s          # SQL, in capitals
    | <(?:div|html|body|script|span|head|style|table|form)\b             # HTML
    | .*\)\s*\{\s*$                                        # a block opener: if (...) {, f() {
    | [\w.$]*\w\(.*\)\s*;\s*$                              # a call statement: name(...);
)""", re.X)

#: A Markdown code fence (ShareGPT keeps the HTML code blocks as fences).
FENCE = "```"


def texts_have_code(texts: Iterable[str]) -> bool:
    """``has_code`` on the turns' texts."""
    texts = list(texts)
    if any(FENCE in t for t in texts):
        return True
    return any(CODE_LINE.match(line) for t in texts for line in t.splitlines())


def has_code(example: Any) -> bool:
    """Whether ``example`` holds code: any turn (prompt or answer) contains a Markdown code fence
    (three backticks), or any line of any turn matches ``CODE_LINE``.

    >>> from types import SimpleNamespace as NS
    >>> ex = lambda *t: NS(messages=[NS(content=x) for x in t])
    >>> has_code(ex("fix this", "```py\\nx = 1\\n```")), has_code(ex("Why?", "import numpy as np"))
    (True, True)
    >>> has_code(ex("Summarise the report (see Evidence);", "It says (roughly) that the deal is off."))
    False
    """
    return texts_have_code(m.content for m in example.messages)


#: category rule name -> (the turns' texts -> in the category), for ``data.category``
CATEGORY_RULES: dict[str, Callable[[Sequence[str]], bool]] = {"has_code": texts_have_code}
#: rule name -> (example -> group name), for ``data.group_by``
GROUP_RULES: dict[str, Callable[[Any], str]] = {
    "has_code": lambda e: "code" if has_code(e) else "no code",
}


def _field_value(example: Any, field: str) -> Any:
    return example.record.get(field) if isinstance(example.record, dict) else None


def group_key(examples: Sequence[Any], group_by: str | None) -> str | None:
    """The record field or rule that ``eval_groups`` groups ``examples`` by: ``group_by``, or with
    None ``family`` when every example has it; None for one group (``all``, or no family field)."""
    if group_by is None:
        has_family = bool(examples) and all(_field_value(e, "family") is not None for e in examples)
        return "family" if has_family else None
    return None if group_by == ONE_GROUP else group_by


def eval_groups(examples: Sequence[Any], group_by: str | None) -> tuple[list[str], str]:
    """(one group per example, a description of the grouping for results.md).

    group_by: a rule name (``GROUP_RULES``), ``all``, a record field, or None (``family`` when every
    example has it, else one group). A field some example lacks is a ValueError naming it.
    """
    key = group_key(examples, group_by)
    if key is None:
        why = "group_by all" if group_by == ONE_GROUP else "the eval records have no family field"
        return [ONE_GROUP] * len(examples), why
    group_by = key
    if group_by in GROUP_RULES:
        rule = GROUP_RULES[group_by]
        return [rule(e) for e in examples], f"rule {group_by}"
    values = [_field_value(e, group_by) for e in examples]
    missing = [e.id for e, v in zip(examples, values) if v is None]
    if missing:
        raise ValueError(f"{len(missing)} eval records have no field '{group_by}' (first: {missing[:3]})")
    return [str(v) for v in values], f"record field {group_by}"


def normalise(text: str) -> str:
    """``text`` lower-cased, every whitespace run one space, the ends stripped."""
    return " ".join(text.lower().split())


def normalised_text(example: Any) -> str:
    """The example's turns as one string, for equality: ``role: normalise(text)`` per turn."""
    return "\n".join(f"{m.role}: {normalise(m.content)}" for m in example.messages)


def find_leaks(eval_examples: Iterable[Any], *others: Iterable[Any]) -> list[tuple[str, str]]:
    """(eval id, id of the pool/reference example it equals) for every eval example that equals one
    of ``others`` after ``normalised_text``; in eval order, the first equal example named."""
    seen: dict[str, str] = {}
    for group in others:
        for e in group:
            seen.setdefault(normalised_text(e), e.id)
    return [(e.id, seen[k]) for e in eval_examples if (k := normalised_text(e)) in seen]
