"""A registry: values of one kind (spaces, searchers, tasks, zoo optimizers) by name.

    SEARCHERS = Registry("searcher", {"ga": GeneticAlgorithm})
    SEARCHERS.get("ga")           # GeneticAlgorithm
    SEARCHERS.get("cma")          # UnknownNameError: unknown searcher 'cma'; known: ga

A registry reads like a mapping (``name in r``, ``r[name]``, iteration over
the names in the order of :meth:`Registry.names`, ``len``), but :meth:`Registry.get` raises
for an unknown name instead of returning a default, since every caller
wants the error that lists the known names. Imports no symopt module, so
every layer can use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError, KeyError):
    """A name no registry entry has: a ``ValueError`` for callers that check
    arguments, and a ``KeyError`` for those that look up keys. The message is
    one line that lists the known names."""

    __str__ = ValueError.__str__  # KeyError's would quote the message


class Registry(Generic[T]):
    """Values of one ``kind`` by name.

    Args:
      kind: what the values are, for messages (``"searcher"``: "unknown
        searcher 'x'; known: ...").
      entries: the first entries, registered in order.
      sort: whether :meth:`names` (and so the unknown-name message) lists
        the names sorted rather than in registration order.
      hint: appended to the unknown-name message, e.g. ``" (or
        module:function for your own)"``.
    """

    def __init__(self, kind: str, entries: Mapping[str, T] | Iterable[tuple[str, T]] = (),
                 *, sort: bool = False, hint: str = "") -> None:
        self.kind = kind
        self._sort = sort
        self._hint = hint
        self._entries: dict[str, T] = {}
        items = entries.items() if isinstance(entries, Mapping) else entries
        for name, value in items:
            self.register(name, value)

    def register(self, name: str, value: T, *, replace: bool = False) -> T:
        """Adds ``value`` as ``name``, and returns it (so it can end a decorator).

        Raises:
          ValueError: ``name`` is registered already and ``replace`` is False.
        """
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered; "
                             "pass replace=True to replace it")
        self._entries[name] = value
        return value

    def unregister(self, name: str) -> T:
        """Removes ``name`` and returns its value; :class:`UnknownNameError` if absent."""
        value = self.get(name)
        del self._entries[name]
        return value

    def get(self, name: str) -> T:
        """The value of ``name``; :class:`UnknownNameError` listing the known names."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name
            raise self.unknown(name) from None

    def unknown(self, name: object) -> UnknownNameError:
        """The error for an unknown ``name`` (for callers that look names up their own way)."""
        return UnknownNameError(f"unknown {self.kind} {name!r}; "
                                f"known: {', '.join(self.names())}{self._hint}")

    def names(self) -> list[str]:
        """The registered names, in registration order (sorted if ``sort``)."""
        return sorted(self._entries) if self._sort else list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, value)`` pairs, in the order of :meth:`names`."""
        return [(name, self._entries[name]) for name in self.names()]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:  # an unhashable name is no entry's
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"

