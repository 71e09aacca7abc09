"""Selectors by name: ``@register_selector("lp")`` on the class, ``get_selector("lp")`` to find it.

The contract tests run over ``available_selectors()``, so a new selector file needs no edit
anywhere else (besides its import in ``proxysel.selectors``).
"""

from __future__ import annotations

from typing import Callable, TypeVar

__all__ = ["available_selectors", "get_selector", "register_selector"]

_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register_selector(name: str) -> Callable[[T], T]:
    """Class decorator: make the selector class available as ``name``."""

    def decorate(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"selector '{name}' is already registered by {_REGISTRY[name].__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_builtin() -> None:
    import proxysel.selectors  # noqa: F401  (its imports register the built-in selectors)


def get_selector(name: str) -> type:
    """The selector class registered as ``name``; instantiate it with its parameters.

    >>> get_selector("top")(signal="ask_llm", order="high").name
    'top'
    """
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(available_selectors())
        raise ValueError(f"unknown selector '{name}'; available: {known}") from None


def available_selectors() -> list[str]:
    """Registered selector names, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)
