"""Bags in stores: a BagSource over a Store prefix, and fetch roots from stores."""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO, final

from carmigrate.bagit import BagSource
from carmigrate.storage import Store

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = ["store_bag_source", "store_fetch_roots"]


@final
class _StoreBagSource:
    """The bag under one prefix of a store.

    State: the store (not owned: closing it is the caller's business) and
    the prefix, ``""`` or ending in ``/``.
    """

    __slots__ = ("_prefix", "_store")

    def __init__(self, store: Store, prefix: str) -> None:
        self._store = store
        self._prefix = prefix

    @property
    def url(self) -> str:
        if not self._prefix:
            return self._store.url
        return f"{self._store.url.rstrip('/')}/{self._prefix}"

    def __repr__(self) -> str:
        return f"store_bag_source({self._store.url!r}, {self._prefix!r})"

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        cut = len(self._prefix)
        for info in self._store.list(self._prefix + prefix):
            yield info.key[cut:], info.size

    def open_read(self, path: str) -> BinaryIO:
        return self._store.open_read(self._prefix + path)


def store_bag_source(store: Store, prefix: str = "") -> BagSource:
    """The bag stored under ``prefix`` of ``store``, as a [BagSource][carmigrate.bagit.BagSource].

    The prefix is a folder: ``"digitised/b1234/v1"`` and
    ``"digitised/b1234/v1/"`` both mean the keys under
    ``digitised/b1234/v1/``, never those of ``v10``. Keys are listed with
    ``store.list`` (their ``size`` from the listing) and read with
    ``store.open_read``; store errors propagate unchanged
    ([ObjectNotFound][carmigrate.errors.ObjectNotFound] is the source's
    ``FileNotFoundError``). The store stays open: close it yourself.

    Args:
        store: Where the bag is.
        prefix: The bag's folder in the store (``""``: the store's root).

    Returns:
        A source for [carmigrate.bagit.verify_bag][].

    Raises:
        ValueError: ``prefix`` starts with ``/``.
    """
    if prefix.startswith("/"):
        raise ValueError(f"a bag's prefix is relative, got {prefix!r}")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return _StoreBagSource(store, prefix)


def store_fetch_roots(roots: Mapping[str, Store]) -> dict[str, BagSource]:
    """Fetch roots for [carmigrate.bagit.verify_bag][] from URL prefixes and stores.

    A URL of ``fetch.txt`` that starts with one of the prefixes is read from
    that store: the rest of the URL, percent-decoded, is the key. For
    example ``{"s3://storage/digitised/": open_store("s3://storage/digitised")}``
    reads ``s3://storage/digitised/b1234/v1/data/page%201.tif`` as the key
    ``b1234/v1/data/page 1.tif``; the same prefix can map to a local mirror
    or another provider holding the same keys.

    Args:
        roots: Stores by URL prefix; the stores stay open.

    Returns:
        Sources by URL prefix (the prefixes unchanged).
    """
    return {prefix: store_bag_source(store) for prefix, store in roots.items()}
