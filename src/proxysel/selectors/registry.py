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
from typing import Any

from proxysel.registry import Registry

__all__ = ["ParamInfo", "available_selectors", "get_selector", "param_fields", "register_selector",
           "unregister_selector"]


def _declares_params(name: str, cls: type) -> None:
    if not dataclasses.is_dataclass(getattr(cls, "Params", None)):
        raise ValueError(f"selector '{name}' must declare its parameters as a dataclass `Params`")


_REGISTRY: Registry = Registry("selector", _declares_params)
#: Class decorator: make the selector class available as ``name``.
register_selector = _REGISTRY.register
unregister_selector = _REGISTRY.unregister
#: The selector class registered as ``name``; instantiate it with its parameters, e.g.
#: ``get_selector("top")(signal="ask_llm", order="high")``.
get_selector = _REGISTRY.get


def available_selectors() -> list[str]:
    """Registered selector names, in registration order."""
    return _REGISTRY.names()


@dataclasses.dataclass(frozen=True)
class ParamInfo:
    """A selector parameter name across the registry: its first declaration, type, and who takes it."""

    field: dataclasses.Field
    hint: Any
    owners: tuple[str, ...]


def param_fields() -> dict[str, ParamInfo]:
    """Every parameter name any registered selector declares -> its ``ParamInfo``."""
    out: dict[str, ParamInfo] = {}
    for cls in _REGISTRY.classes():
        name = cls.name
        hints = typing.get_type_hints(cls.Params)
        for f in dataclasses.fields(cls.Params):
            info = out.get(f.name) or ParamInfo(f, hints[f.name], ())
            out[f.name] = dataclasses.replace(info, owners=info.owners + (name,))
    return out
