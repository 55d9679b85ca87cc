"""A registry of plug-in entries: built-ins, entries registered at run time, entry points.

Like xarray's backends: each entry is a small object with a ``name`` and a test of whether it
accepts a request; the registry asks them in order. Third-party packages add entries through
an entry-point group (``tgo.capturers``, ``tgo.sources``) in their package metadata::

    [project.entry-points."tgo.sources"]
    parquet = "my_package.tgo_parquet:ParquetSource"

An entry point names an entry object or a class with a no-argument constructor.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from tgo_store.errors import TgoError

T = TypeVar("T")


class Registry(Generic[T]):
    """Ordered entries: built-ins, then registered ones, then entry points, then the fallback."""

    def __init__(self, group: str, builtins: list[T], fallback: T | None = None):
        self.group = group
        self._builtins = list(builtins)
        self._registered: list[T] = []
        self._fallback = fallback
        self._plugins: list[T] | None = None

    def register(self, entry: T) -> None:
        """Add an entry at run time (asked after the built-ins, before entry points)."""
        self._registered = [e for e in self._registered if _name(e) != _name(entry)] + [entry]

    def unregister(self, name: str) -> None:
        self._registered = [e for e in self._registered if _name(e) != name]

    def reload(self) -> None:
        """Forget the loaded entry points; the next lookup reads them again (tests, notebooks)."""
        self._plugins = None

    def entries(self) -> list[T]:
        if self._plugins is None:
            self._plugins = [_load(ep) for ep in entry_points(group=self.group)]
        fallback = [self._fallback] if self._fallback is not None else []
        return [*self._builtins, *self._registered, *self._plugins, *fallback]

    def names(self) -> list[str]:
        return [_name(e) for e in self.entries()]

    def first(self, accepts: Callable[[T], bool]) -> T | None:
        """The first entry that accepts the request, or None."""
        return next((e for e in self.entries() if accepts(e)), None)


def _name(entry: object) -> str:
    return str(getattr(entry, "name", type(entry).__name__))


def _load(ep: object) -> object:
    try:
        obj = ep.load()  # type: ignore[attr-defined]
    except Exception as exc:  # a broken third-party package must not hide which one it is
        raise TgoError(f"plug-in {ep.name} ({ep.value}) fails to import ({exc}); "  # type: ignore[attr-defined]
                       "fix or uninstall that package") from exc
    return obj() if isinstance(obj, type) else obj
