"""A registry of named classes: selectors (``proxysel.selectors``) and signals (``proxysel.signals``).

The entry declares everything about itself; the registry only files it under its name, refuses a
name taken by another class, and finds it again with a did-you-mean for near misses.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from proxysel.options import did_you_mean

__all__ = ["Registry"]

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Named classes of one kind, in registration order.

    kind:  what the entries are ("selector", "signal"), for messages.
    check: ``check(name, cls)`` raises ValueError when the class does not declare what an entry must.
    """

    def __init__(self, kind: str, check: Callable[[str, type], None] | None = None) -> None:
        self.kind = kind
        self._check = check
        self._entries: dict[str, type] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: file the class under ``name`` (and set its ``name`` attribute)."""

        def decorate(cls: T) -> T:
            if name in self._entries and self._entries[name] is not cls:
                raise ValueError(f"{self.kind} '{name}' is already registered by "
                                 f"{self._entries[name].__qualname__}")
            if self._check is not None:
                self._check(name, cls)
            cls.name = name
            self._entries[name] = cls
            return cls

        return decorate

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a plugin's tests clean up after themselves)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> type:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} '{name}'; available: {', '.join(self._entries)}"
                             f"{did_you_mean(name, self._entries)}") from None

    def names(self) -> list[str]:
        return list(self._entries)

    def classes(self) -> list[type]:
        return list(self._entries.values())
