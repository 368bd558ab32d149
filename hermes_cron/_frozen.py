"""``Frozen``: immutable record classes without attrs, for what every command builds.

Importing attrs costs most of a bare interpreter start, and dataclasses and
NamedTuples compile code when a class is defined; ``status``, ``list``, ``add`` and
``next`` pay for every module they import (issue 12). The classes they build
(``HomePaths``, ``Schedule``, the store's records and claims) use this instead.

A subclass lists its fields in ``__slots__``, in the order of its ``__init__``
parameters (same names), and sets them with ``_set``. It gets what ``attrs.frozen``
gave: ``==`` and ``hash`` over the fields (same class only), a ``Name(field=value,
...)`` repr, no assignment or deletion, ``_replace(**changes)`` (a new instance built
by ``__init__``, like ``attrs.evolve``), copy and pickle. A class that sets
``__eq__ = Frozen.identity_eq`` and ``__hash__ = Frozen.identity_hash`` compares by
identity (attrs ``eq=False``).
"""

from __future__ import annotations

from typing import Any, Tuple, TypeVar


class Frozen:
    __slots__: Tuple[str, ...] = ()

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _fields(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def _replace(self: _T, **changes: Any) -> _T:
        values = dict(zip(self.__slots__, self._fields()))
        values.update(changes)
        return type(self)(**values)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Frozen)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((self.__class__, self._fields()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (cannot delete {name!r})")

    def __reduce__(self) -> Any:
        return (type(self), self._fields())

    identity_eq = object.__eq__
    identity_hash = object.__hash__


# After the class, not bound="Frozen": typing would compile that string at import.
_T = TypeVar("_T", bound=Frozen)
