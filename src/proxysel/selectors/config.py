"""``proxysel select``'s options: one budgeted subset. The selector's own parameters come from its
registry entry (``Selector.Params``), so a registered selector needs no edit here.

In YAML a selection is one flat mapping; keys that are not fields of ``SelectConfig`` are the
selector's parameters (``options:`` is an older spelling, merged in)::

    select: {method: lp_app, budget: 0.3, clusters: 10, name: lp-30}
    select: {method: s2l, budget: 0.3, from: ppl-mid}          # a chain: start from ppl-mid's kept set
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from proxysel.errors import UsageError
from proxysel.names import check_name
from proxysel.options import FieldError, check_fields, coerce, did_you_mean, join, option
from proxysel.selectors.base import BUDGET_HELP, parse_budget
from proxysel.selectors.registry import available_selectors, get_selector, param_fields

__all__ = ["SelectConfig", "SelectorChoice", "check_chains", "default_name", "describe_step",
           "ordered_by_parent"]


def default_name(method: str, budget: float | int, seed: int, signal: str | None = None,
                 order: str | None = None) -> str:
    """``METHOD[-SIGNAL][-ORDER]-BUDGET-sSEED``, e.g. ``lp_app-0.3-s0``, ``top-ppl-middle-0.9-s0``."""
    b = f"{budget:g}" if isinstance(budget, float) else str(budget)
    parts = [method] + ([signal] if signal else []) + ([order] if order else []) + [b, f"s{seed}"]
    return "-".join(parts)


def describe_step(method: str, budget: Any, params: Mapping[str, Any]) -> str:
    """A selection as a chain step reads, e.g. ``top ppl middle 0.9``."""
    words = [method] + [str(params[k]) for k in ("signal", "order")
                        if params.get(k) and params.get(k) != method]
    b = budget if not isinstance(budget, float) else f"{budget:g}"
    return " ".join([*words, str(b)])


def check_chains(choices: Sequence[Any], field_name: str) -> None:
    """Every ``from`` (``parent``) names another of ``choices``, and no chain loops back; FieldError
    naming ``<field_name>.<i>.from`` otherwise (``field_name.from`` for a single choice)."""
    names = [c.name for c in choices]
    parents = {c.name: c.parent for c in choices}
    for i, c in enumerate(choices):
        where = field_name if len(choices) == 1 else f"{field_name}.{i}"
        if c.parent is None:
            continue
        if c.parent not in parents:
            raise FieldError(f"{where}.from", f"{c.parent!r} is not one of the selections {names}"
                                              f"{did_you_mean(c.parent, names)}")
        seen, node = [c.name], c.parent
        while node is not None:
            if node in seen:
                raise FieldError(f"{where}.from", f"the chain {' -> '.join([*seen, node])} is a cycle")
            seen.append(node)
            node = parents.get(node)


def ordered_by_parent(choices: Sequence[Any]) -> list[Any]:
    """``choices`` with every ``from`` among them before the choices that start from it."""
    by_name = {c.name: c for c in choices}
    done: list[Any] = []

    def visit(c: Any) -> None:
        if c not in done:
            if c.parent in by_name:
                visit(by_name[c.parent])
            done.append(c)

    for c in choices:
        visit(c)
    return done


@dataclass(frozen=True)
class SelectorChoice:
    """A registered selector and its parameters, validated by its ``Params`` (the part of a selection
    that ``select``, ``run`` and ``bench`` share; ``parent`` starts it from another selection)."""

    method: str = option(None, "the selector (docs/methods.md)", choices=available_selectors)
    name: str | None = option(None,
                              "folder under RUN/selections/ (default METHOD[-SIGNAL-ORDER]-BUDGET-sSEED)")
    parent: str | None = option(None, "start from another selection's kept set: filter, then select (written "
                                      "from: in YAML)", flag="--from", metavar="NAME")
    options: dict[str, Any] = option({}, "the selector's own parameters (flat keys in YAML; see "
                                         "docs/methods.md)", cli=False)

    def __post_init__(self) -> None:
        self._check_choice()
        self._check_names()

    def _check_choice(self) -> None:
        """The method and its parameters (typed and validated by its ``Params``)."""
        if self.method is None:
            raise FieldError("method", f"is required; one of {', '.join(available_selectors())}")
        check_fields(self)
        object.__setattr__(self, "options", self._checked_options())

    def _check_names(self) -> None:
        for field_name in ("name", "parent"):
            value = getattr(self, field_name)
            if value is not None:
                try:
                    check_name(value, "selection name")
                except UsageError as e:
                    raise FieldError(field_name, str(e)) from None
        if self.parent is not None and self.parent == self.name:
            raise FieldError("parent", f"selection {self.name!r} cannot start from itself")

    def _checked_options(self) -> dict[str, Any]:
        """The selector parameters, coerced to their declared types and validated by its ``Params``."""
        cls = get_selector(self.method)
        declared = {f.name: f for f in dataclasses.fields(cls.Params)}
        hints = typing.get_type_hints(cls.Params)
        out = {}
        for key, value in dict(self.options).items():
            if key not in declared:
                owners = param_fields()[key].owners if key in param_fields() else ()
                where = f"is an option of {', '.join(owners)}, not of {self.method}" if owners else \
                    f"unknown key; {self.method} takes {', '.join(declared)}{did_you_mean(key, declared)}"
                raise FieldError(key, where)
            out[key] = coerce(value, hints[key], key)
        cls.Params(**out)  # its own checks (a FieldError names the parameter)
        return out

    def params(self) -> dict[str, Any]:
        """The selector parameters given (the selector's defaults fill the rest)."""
        return dict(self.options)

    def selector(self) -> Any:
        """The configured selector instance."""
        return get_selector(self.method)(**self.options)

    def __getattr__(self, name: str) -> Any:
        # A selector parameter reads as an attribute (``cfg.clusters``): None when not given.
        if name.startswith("_") or name not in param_fields():
            raise AttributeError(name)
        return self.options.get(name)

    # -- YAML keys: flat parameters and ``from`` ---------------------------------------------------

    @classmethod
    def _split_keys(cls, raw: dict[str, Any], prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Route the keys that are no field into ``options`` (the selector validates them)."""
        own = {f.name for f in dataclasses.fields(cls)}
        raw = dict(raw)
        if "from" in raw:
            raw["parent"] = raw.pop("from")
        options = raw.pop("options", None) or {}
        if not isinstance(options, Mapping):
            raise FieldError(join(prefix, "options"), f"must be a mapping of parameters, got {options!r}")
        options = dict(options)
        for key in [*raw, *options]:
            if not isinstance(key, str):
                raise FieldError(prefix, f"keys must be names (strings), got {key!r}")
        for key in [k for k in raw if k not in own]:
            if key in options:
                raise FieldError(join(prefix, key), "is given twice (flat and under options)")
            options[key] = raw.pop(key)
        return raw, {"options": options}

    @classmethod
    def _open_keys(cls, node: Mapping[str, Any]) -> set[str]:
        """Keys a dotted override may set besides the fields: every declared selector parameter."""
        return set(param_fields()) | {"from"}

    def _to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("parent", "options")}
        if self.parent is not None:
            out["from"] = self.parent
        return {**out, **self.options}


@dataclass(frozen=True)
class SelectConfig(SelectorChoice):
    """``proxysel select``: one budgeted subset. Parameters a method does not take are refused."""

    budget: float | int = option(None, BUDGET_HELP + "; with from, still a fraction of the whole pool")
    seed: int = option(0, "seed of every random choice (k-means, sampling)")

    def __post_init__(self) -> None:
        if self.method is not None and self.budget is None:
            raise FieldError("budget", f"is required: {BUDGET_HELP}")
        if self.budget is not None:  # parsed first: text from a flag or override is the parser's to read
            object.__setattr__(self, "budget", parse_budget(self.budget))
        self._check_choice()
        if self.name is None:
            object.__setattr__(self, "name", default_name(self.method, self.budget, self.seed,
                                                          self.options.get("signal"),
                                                          self.options.get("order")))
        self._check_names()
