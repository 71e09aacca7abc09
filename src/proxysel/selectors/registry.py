"""Selectors by name: ``@register_selector("lp")`` on the class, ``get_selector("lp")`` to find it.

The registry decides everything about its entries: config validation, the command line's
selector options, ``run`` preflight, ``bench`` and the report all ask it (and the class's
``Params``, ``reads``, ``needs_reference``). The contract tests run over ``available_selectors()``,
so a new selector file needs no edit anywhere else (besides its import in ``proxysel.selectors``,
or none at all for a selector registered by user code).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable, TypeVar

from proxysel.options import did_you_mean

__all__ = ["ParamInfo", "available_selectors", "get_selector", "param_fields", "register_selector",
           "unregister_selector"]

_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register_selector(name: str) -> Callable[[T], T]:
    """Class decorator: make the selector class available as ``name``."""

    def decorate(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"selector '{name}' is already registered by {_REGISTRY[name].__qualname__}")
        if not dataclasses.is_dataclass(getattr(cls, "Params", None)):
            raise ValueError(f"selector '{name}' must declare its parameters as a dataclass `Params`")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def unregister_selector(name: str) -> None:
    """Remove selector ``name`` from the registry (a plugin's tests clean up after themselves)."""
    _REGISTRY.pop(name, None)


def get_selector(name: str) -> type:
    """The selector class registered as ``name``; instantiate it with its parameters.

    >>> get_selector("top")(signal="ask_llm", order="high").name
    'top'
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(available_selectors())
        raise ValueError(f"unknown selector '{name}'; available: {known}{did_you_mean(name, _REGISTRY)}") from None


def available_selectors() -> list[str]:
    """Registered selector names, in registration order."""
    return list(_REGISTRY)


@dataclasses.dataclass(frozen=True)
class ParamInfo:
    """A selector parameter name across the registry: its first declaration, type, and who takes it."""

    field: dataclasses.Field
    hint: Any
    owners: tuple[str, ...]


def param_fields() -> dict[str, ParamInfo]:
    """Every parameter name any registered selector declares -> its ``ParamInfo``."""
    out: dict[str, ParamInfo] = {}
    for name, cls in _REGISTRY.items():
        hints = typing.get_type_hints(cls.Params)
        for f in dataclasses.fields(cls.Params):
            info = out.get(f.name) or ParamInfo(f, hints[f.name], ())
            out[f.name] = dataclasses.replace(info, owners=info.owners + (name,))
    return out
