"""A small name -> object registry, one per extension point (classifiers, poolings, fusion
methods, sequence heads), in the style of detectron2's / fvcore's ``Registry``.

Adding a classifier, a pooling or a fusion method is one file that registers its entry; code
that used to hold name lists or if-chains asks the registry instead, and config validation
checks names against it (so a registered entry is accepted everywhere at once)::

    POOLINGS = Registry("POOLINGS", "pooling")

    @POOLINGS.register("median")
    def median(params, seed): ...

    POOLINGS.get("median")  # the function
    POOLINGS.get("mode")    # UnknownNameError: unknown pooling 'mode' (registry POOLINGS);
                            # allowed: ..., median
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

T = TypeVar("T")


class UnknownNameError(ValueError, KeyError):
    """A name that is not in a registry. Both a ValueError (a bad setting) and a KeyError (a
    failed look-up), so either kind of handler catches it; the message names the registry and
    every name it holds."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Entries by name, kept in registration order.

    Args:
        name: the registry's own name, shown in errors (e.g. 'CLASSIFIERS').
        kind: what one entry is, shown in errors (e.g. 'classifier').
    """

    def __init__(self, name: str, kind: str = "entry") -> None:
        self.name = name
        self.kind = kind
        self._entries: dict[str, T] = {}

    @overload
    def register(
        self, name: str, obj: None = None, *, replace: bool = False
    ) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T, *, replace: bool = False) -> T: ...

    def register(
        self, name: str, obj: T | None = None, *, replace: bool = False
    ) -> T | Callable[[T], T]:
        """Register ``obj`` as ``name`` and return it; without ``obj``, a decorator that does.

        A name registered twice is an error (two files claiming one name), unless ``replace``.
        """
        if obj is None:

            def decorator(item: T) -> T:
                self.register(name, item, replace=replace)
                return item

            return decorator
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.name}: a {self.kind} name must be a non-empty string")
        if name in self._entries and not replace:
            raise ValueError(
                f"{self.kind} '{name}' is already registered in {self.name}; pick another "
                "name or pass replace=True"
            )
        self._entries[name] = obj
        return obj

    def unregister(self, name: str) -> T:
        """Remove ``name`` (e.g. a test's temporary entry) and return what it held."""
        self.get(name)
        return self._entries.pop(name)

    def get(self, name: str) -> T:
        """The entry ``name``; an :class:`UnknownNameError` naming the registry and what it
        holds when there is none."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        """The sentence of a miss: '<kind> <name> (registry R); allowed: a, b, c'."""
        allowed = ", ".join(self._entries) or "none registered"
        return f"unknown {self.kind} {name!r} (registry {self.name}); allowed: {allowed}"

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs, in registration order."""
        return list(self._entries.items())

    def __getitem__(self, name: str) -> T:
        # Reads like the dict a registry replaces; a miss is the same error as get's.
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {self.names()})"
