"""StoreWrapper: a store around another store, with exactly its optional Protocols."""

from __future__ import annotations

import threading
import types
from typing import (
    TYPE_CHECKING,
    Any,
    BinaryIO,
    ClassVar,
    Final,
    Self,
    SupportsIndex,
    TypeVar,
    cast,
)

from carmigrate.storage._base import (
    OPTIONAL_PROTOCOLS,
    Capabilities,
    ObjectInfo,
    Store,
    SupportsPresignedUrls,
    SupportsRestore,
    SupportsServerSideCopy,
    SupportsTemporaryCleanup,
    SupportsUploadCleanup,
    TemporaryCleanup,
    UploadCleanup,
    WriteData,
    derive_capabilities,
)
from carmigrate.storage._unlisted import SupportsFullListing, Unmigratable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

__all__ = ["StoreWrapper"]

_T = TypeVar("_T")

_FORWARDABLE: Final[tuple[type, ...]] = (
    *OPTIONAL_PROTOCOLS,
    SupportsUploadCleanup,
    SupportsFullListing,
)
"""The Protocols a wrapper forwards: those with a capability flag, then the others."""


class StoreWrapper:
    """Base class for a store that wraps another store and forwards to it.

    A subclass changes what it needs (inject faults, pace calls, count
    bytes) and inherits the rest. Constructing one returns an instance of a
    subclass made for the wrapped store (made once per combination, then
    reused): it also implements exactly those optional Protocols
    ([OPTIONAL_PROTOCOLS][carmigrate.storage.lowlevel.OPTIONAL_PROTOCOLS]) that
    the wrapped store implements, and no others, forwarding them to it (and
    likewise [SupportsUploadCleanup][carmigrate.storage.SupportsUploadCleanup]
    and [SupportsFullListing][carmigrate.storage.SupportsFullListing], which
    have no flag; a wrapper that overrides ``list`` does not forward
    ``list_all``, which would bypass it). So
    ``isinstance(wrapper, SupportsRestore)`` holds exactly when it holds for
    the wrapped store, the wrapper's ``capabilities`` say the same (they are
    derived), and ``isinstance(wrapper, YourWrapper)`` still holds.

    Every forwarded call except ``close`` and ``can_copy_from`` goes through
    [forward][carmigrate.storage.lowlevel.StoreWrapper.forward]: override it
    to add behaviour to all of them at once, or override single methods.

    Rules for subclasses:

    - The constructor takes the wrapped store as its first positional
      argument (it is bound before ``__init__`` runs, so ``inner`` works
      even where a subclass's ``__init__`` forgets ``super().__init__``).
    - ``forwarded_protocols`` may be narrowed to hide optional Protocols of
      the wrapped store (a wrapper that must see every byte written hides
      ``SupportsServerSideCopy``).
    - A subclass that defines an optional Protocol's methods itself
      implements that Protocol whatever the wrapped store does; its
      ``capabilities`` follow.

    ``copy_from`` forwards to the wrapped store; a copy from the wrapper
    itself is a copy from the wrapped store (``can_copy_from(wrapper)`` asks
    the wrapped store about itself). Other wrapped sources are passed as they
    are, so a backend that only copies from its own kind declines them and
    callers stream instead.

    Instances pickle (and copy) when their state does: unpickling makes the
    subclass again for the unpickled wrapped store.

    State: the wrapped store and the capabilities derived from it (computed
    on first use); subclasses add their own.

    Args:
        inner: The store to wrap.
    """

    forwarded_protocols: ClassVar[frozenset[type]] = frozenset(_FORWARDABLE)
    """The optional Protocols this wrapper passes through when the wrapped
    store implements them (default: all of them, ``SupportsUploadCleanup``
    and ``SupportsFullListing`` included)."""

    _wrapper_base: ClassVar[type[StoreWrapper]]
    __inner: Store
    __capabilities: Capabilities | None

    def __init_subclass__(cls, /, *, _made: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if _made:
            return  # a forwarding mixin or a made subclass
        cls._wrapper_base = cls
        unknown = set(cls.forwarded_protocols) - set(_FORWARDABLE)
        if unknown:
            names = sorted(getattr(p, "__name__", repr(p)) for p in unknown)
            raise TypeError(
                f"{cls.__qualname__}.forwarded_protocols holds {names}, which are "
                "not optional store Protocols (see OPTIONAL_PROTOCOLS, "
                "SupportsUploadCleanup and SupportsFullListing)"
            )

    def __new__(cls, inner: Store, /, *args: Any, **kwargs: Any) -> Self:
        made = _made_class(cls._wrapper_base, inner)
        self = cast("Self", object.__new__(made))
        self.__inner = inner
        self.__capabilities = None
        return self

    def __init__(self, inner: Store, /) -> None:
        self.__inner = inner
        self.__capabilities = None

    def __reduce_ex__(self, protocol: SupportsIndex, /) -> str | tuple[Any, ...]:
        # pickle by the wrapper's own class and the wrapped store: the made
        # subclass cannot be found by name, and __new__ needs the store
        return (
            _unpickle,
            (type(self)._wrapper_base, self.__inner),
            self.__getstate__(),
        )

    def __repr__(self) -> str:
        return f"{type(self)._wrapper_base.__name__}({self.__inner!r})"

    @property
    def inner(self) -> Store:
        """The wrapped store."""
        return self.__inner

    @property
    def url(self) -> str:
        """The wrapped store's URL."""
        return self.__inner.url

    @property
    def capabilities(self) -> Capabilities:
        """The wrapped store's, with the Protocol flags derived from this wrapper.

        A subclass that changes other flags overrides this and starts from
        ``super().capabilities``.
        """
        caps = self.__capabilities
        if caps is None:
            caps = derive_capabilities(self.__inner.capabilities, self)
            self.__capabilities = caps
        return caps

    def forward(self, method: str, key: str, call: Callable[[], _T]) -> _T:
        """Run one forwarded call; override to add behaviour around it.

        The default returns ``call()``. An override must call ``call`` at
        most once and return its result (or raise).

        Args:
            method: The name of the method called (``"stat"``,
                ``"open_read"``, ``"write"``, ``"list"``, ``"delete"``,
                ``"copy_from"``, ``"request_restore"``, ``"presign"``,
                ``"remove_temporary"``, ``"abort_uploads"``, ``"list_all"``).
            key: The key it concerns (the prefix for ``list`` and
                ``list_all``, the
                destination key for ``copy_from``, ``""`` for
                ``remove_temporary`` and ``abort_uploads``).
            call: Makes the call on the wrapped store.

        Returns:
            What ``call`` returns.
        """
        return call()

    def stat(self, key: str) -> ObjectInfo:
        """The wrapped ``stat`` (see [Store.stat][carmigrate.storage.Store.stat])."""
        return self.forward("stat", key, lambda: self.__inner.stat(key))

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        """The wrapped ``open_read`` (see [Store.open_read][carmigrate.storage.Store.open_read])."""
        return self.forward(
            "open_read", key, lambda: self.__inner.open_read(key, start=start, end=end)
        )

    def write(
        self,
        key: str,
        data: WriteData,
        *,
        size: int | None = None,
        if_absent: bool = False,
        checksums: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """The wrapped ``write`` (see [Store.write][carmigrate.storage.Store.write])."""
        return self.forward(
            "write",
            key,
            lambda: self.__inner.write(
                key,
                data,
                size=size,
                if_absent=if_absent,
                checksums=checksums,
                metadata=metadata,
            ),
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """The wrapped ``list`` (see [Store.list][carmigrate.storage.Store.list]).

        ``forward`` runs when the listing is asked for, not while it is
        iterated.
        """
        return self.forward("list", prefix, lambda: self.__inner.list(prefix))

    def delete(self, key: str) -> None:
        """The wrapped ``delete`` (see [Store.delete][carmigrate.storage.Store.delete])."""
        self.forward("delete", key, lambda: self.__inner.delete(key))

    def close(self) -> None:
        """Close the wrapped store (not through ``forward``)."""
        self.__inner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------
# forwarding mixins, one per optional Protocol


class _ForwardServerSideCopy(StoreWrapper, _made=True):
    def _copy_source(self, source: Store) -> Store:
        return self.inner if source is self else source

    def can_copy_from(self, source: Store) -> bool:
        """The wrapped ``can_copy_from``; the wrapper itself stands for the wrapped store."""
        inner = cast("SupportsServerSideCopy", self.inner)
        return inner.can_copy_from(self._copy_source(source))

    def copy_from(
        self,
        source: Store,
        source_key: str,
        key: str,
        *,
        if_absent: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """The wrapped ``copy_from`` (see [SupportsServerSideCopy][carmigrate.storage.SupportsServerSideCopy])."""
        inner = cast("SupportsServerSideCopy", self.inner)
        src = self._copy_source(source)
        return self.forward(
            "copy_from",
            key,
            lambda: inner.copy_from(
                src, source_key, key, if_absent=if_absent, metadata=metadata
            ),
        )


class _ForwardRestore(StoreWrapper, _made=True):
    def request_restore(
        self, key: str, *, days: int = 1, tier: str = "Standard"
    ) -> None:
        """The wrapped ``request_restore`` (see [SupportsRestore][carmigrate.storage.SupportsRestore])."""
        inner = cast("SupportsRestore", self.inner)
        self.forward(
            "request_restore",
            key,
            lambda: inner.request_restore(key, days=days, tier=tier),
        )


class _ForwardPresignedUrls(StoreWrapper, _made=True):
    def presign(self, key: str, *, expires_in: int = 3600, method: str = "GET") -> str:
        """The wrapped ``presign`` (see [SupportsPresignedUrls][carmigrate.storage.SupportsPresignedUrls])."""
        inner = cast("SupportsPresignedUrls", self.inner)
        return self.forward(
            "presign",
            key,
            lambda: inner.presign(key, expires_in=expires_in, method=method),
        )


class _ForwardTemporaryCleanup(StoreWrapper, _made=True):
    def remove_temporary(
        self, older_than: float = 3600.0, *, keys: Iterable[str] | None = None
    ) -> TemporaryCleanup:
        """The wrapped ``remove_temporary`` (see [SupportsTemporaryCleanup][carmigrate.storage.SupportsTemporaryCleanup])."""
        inner = cast("SupportsTemporaryCleanup", self.inner)
        return self.forward(
            "remove_temporary",
            "",
            # a store written before keys= still takes the plain call
            lambda: (
                inner.remove_temporary(older_than)
                if keys is None
                else inner.remove_temporary(older_than, keys=keys)
            ),
        )


class _ForwardUploadCleanup(StoreWrapper, _made=True):
    def abort_uploads(
        self, keys: Iterable[str], *, keep_resumable: Iterable[str] = ()
    ) -> UploadCleanup:
        """The wrapped ``abort_uploads`` (see [SupportsUploadCleanup][carmigrate.storage.SupportsUploadCleanup])."""
        inner = cast("SupportsUploadCleanup", self.inner)
        return self.forward(
            "abort_uploads",
            "",
            lambda: inner.abort_uploads(keys, keep_resumable=keep_resumable),
        )


class _ForwardFullListing(StoreWrapper, _made=True):
    def list_all(self, prefix: str = "") -> Iterator[ObjectInfo | Unmigratable]:
        """The wrapped ``list_all`` (see [SupportsFullListing][carmigrate.storage.SupportsFullListing])."""
        inner = cast("SupportsFullListing", self.inner)
        return self.forward("list_all", prefix, lambda: inner.list_all(prefix))


_MIXINS: Final[dict[type, tuple[type[StoreWrapper], tuple[str, ...]]]] = {
    SupportsServerSideCopy: (_ForwardServerSideCopy, ("can_copy_from", "copy_from")),
    SupportsRestore: (_ForwardRestore, ("request_restore",)),
    SupportsPresignedUrls: (_ForwardPresignedUrls, ("presign",)),
    SupportsTemporaryCleanup: (_ForwardTemporaryCleanup, ("remove_temporary",)),
    SupportsUploadCleanup: (_ForwardUploadCleanup, ("abort_uploads",)),
    SupportsFullListing: (_ForwardFullListing, ("list_all",)),
}
assert set(_MIXINS) == set(_FORWARDABLE)


def _defines(cls: type, names: tuple[str, ...]) -> bool:
    """Whether ``cls`` itself (not a forwarding mixin) has all these methods."""
    return all(getattr(cls, name, None) is not None for name in names)


def _made_class(base: type[StoreWrapper], inner: Store) -> type[StoreWrapper]:
    wanted = tuple(
        protocol
        for protocol in _FORWARDABLE
        if protocol in base.forwarded_protocols
        and not _defines(base, _MIXINS[protocol][1])
        and isinstance(inner, protocol)
        # list_all would bypass a wrapper's own list (faults, filters)
        and not (protocol is SupportsFullListing and base.list is not StoreWrapper.list)
    )
    return _subclass(base, wanted)


_made_classes: dict[
    tuple[type[StoreWrapper], tuple[type, ...]], type[StoreWrapper]
] = {}
_made_lock = threading.Lock()


def _subclass(
    base: type[StoreWrapper], protocols: tuple[type, ...]
) -> type[StoreWrapper]:
    """The subclass of ``base`` that forwards ``protocols``, made once."""
    if not protocols:
        return base
    with _made_lock:
        made = _made_classes.get((base, protocols))
        if made is None:
            mixins = tuple(_MIXINS[p][0] for p in protocols)

            def fill(namespace: dict[str, Any]) -> None:
                namespace["__module__"] = base.__module__
                namespace["__qualname__"] = base.__qualname__
                namespace["__doc__"] = base.__doc__

            made = types.new_class(
                base.__name__, (base, *mixins), {"_made": True}, fill
            )
            _made_classes[(base, protocols)] = made
        return made


def _unpickle(base: type[StoreWrapper], inner: Store) -> StoreWrapper:
    """Rebuild a wrapper's made subclass for ``inner``; pickle restores the state."""
    self = object.__new__(_made_class(base, inner))
    self._StoreWrapper__inner = inner  # type: ignore[attr-defined]
    return self
