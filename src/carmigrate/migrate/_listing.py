"""Listings sorted by key: the "march" half of the engine.

A diff is a merge-join, so both listings must come in ascending key order.
A store that declares ``sorted_listing`` is passed through (and checked as it
streams); any other listing is sorted externally: sorted runs of a bounded
number of entries are spilled to temporary files and merged with
``heapq.merge``, so memory stays bounded however many objects there are.
"""

from __future__ import annotations

import heapq
import itertools
import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from operator import itemgetter
from typing import IO, TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

from carmigrate.digests import clean_digests
from carmigrate.errors import PlanError

if TYPE_CHECKING:
    from carmigrate.storage import ObjectInfo, Store

__all__ = [
    "DEFAULT_RUN_SIZE",
    "ListingEntry",
    "check_sorted",
    "external_sort",
    "iter_sorted_listing",
    "sort_listing",
    "to_entries",
]

DEFAULT_RUN_SIZE: Final = 250_000
"""Entries held in memory per sorted run of the external sort (about 60 MB)."""

_CHUNK: Final = 4096
_first: Final = itemgetter(0)

T = TypeVar("T", bound=tuple[Any, ...])


def _vouched(digests: Mapping[str, str | None] | None) -> dict[str, str] | None:
    """The well-formed digests of untrusted input, or ``None`` when there are none.

    A plain ``dict`` in canonical form: millions of entries may be pickled
    through the external sort, and a dict pickles at C speed.
    """
    if not digests:
        return None
    return clean_digests(digests) or None


class ListingEntry(NamedTuple):
    """What the planner needs to know about one listed object.

    A light tuple (millions of them stream through a plan), built from an
    [ObjectInfo][carmigrate.storage.ObjectInfo] with
    [from_info][carmigrate.migrate.ListingEntry.from_info] or from another
    inventory (an S3 Inventory report, a BagIt manifest, a database export)
    with [checked][carmigrate.migrate.ListingEntry.checked].

    Attributes:
        key: The object's key.
        size: Its size in bytes.
        etag: The backend's ETag (opaque: never taken for an MD5).
        digests: Whole-object digests the source vouches for, by registry
            name ([carmigrate.digests][]) as lowercase hex, or ``None``;
            in canonical form (names sorted) when made by ``from_info`` or
            ``checked``, which an entry built by hand must match.
        cold: The object must be restored from a cold tier before reading.
    """

    key: str
    size: int
    etag: str | None = None
    digests: Mapping[str, str] | None = None
    cold: bool = False

    @classmethod
    def from_info(cls, info: ObjectInfo) -> ListingEntry:
        """The entry for a store's ``ObjectInfo``.

        Only ``info.checksums`` supply digests (the storage layer never
        reports a multipart ETag as an MD5); a malformed digest or an
        unknown algorithm is dropped.
        """
        return cls(info.key, info.size, info.etag, _vouched(info.checksums), info.cold)

    @classmethod
    def checked(
        cls,
        key: str,
        size: int,
        etag: str | None = None,
        digests: Mapping[str, str | None] | None = None,
        cold: bool = False,
    ) -> ListingEntry:
        """An entry from untrusted fields.

        Digest names may be in any spelling the registry knows
        (``"SHA-256"``, ``"ADLER32"``); digests of unknown algorithms and
        values that are not plain hex of the right length (such as a
        multipart ETag ``"…-3"`` offered as an MD5) are dropped.
        """
        return cls(key, int(size), etag, _vouched(digests), cold)


def to_entries(listing: Iterable[ObjectInfo | ListingEntry]) -> Iterator[ListingEntry]:
    """Turn ``ObjectInfo`` values into entries; entries pass through.

    A listing is either all ``ListingEntry`` or all ``ObjectInfo``: the first
    element decides, so no per-element work is done for entries.
    """
    it = iter(listing)
    first = next(it, None)
    if first is None:
        return iter(())
    rest = itertools.chain((first,), it)
    if isinstance(first, ListingEntry):
        return rest  # type: ignore[return-value]
    return map(ListingEntry.from_info, rest)  # type: ignore[arg-type]


def check_sorted(entries: Iterable[T], *, what: str = "the listing") -> Iterator[T]:
    """Pass ``entries`` through, checking that keys (element 0) strictly ascend.

    Raises:
        PlanError: A key is not greater than the one before it (out of order
            or listed twice); the message names both keys. Entries before it
            have been yielded.
    """
    prev: str | None = None
    for entry in entries:
        key = entry[0]
        if prev is not None and key <= prev:
            problem = "is listed twice" if key == prev else f"comes after {prev!r}"
            raise PlanError(
                f"{what} is not sorted by key: {key!r} {problem}; a store that "
                "cannot list in order must say so (capabilities.sorted_listing=False) "
                "so the planner sorts it"
            )
        prev = key
        yield entry


def _spill(run: list[tuple[Any, ...]], temp_dir: str | None) -> IO[bytes]:
    run.sort(key=_first)
    f = tempfile.TemporaryFile(dir=temp_dir, prefix="carmigrate-sort-")  # noqa: SIM115 - returned open
    try:
        # one pickle per chunk: a long-lived Pickler (or Unpickler) would keep
        # every object of the run alive in its memo
        for i in range(0, len(run), _CHUNK):
            pickle.dump(run[i : i + _CHUNK], f, protocol=pickle.HIGHEST_PROTOCOL)
        f.flush()
        f.seek(0)
    except BaseException:
        f.close()
        raise
    return f


def _read_run(f: IO[bytes]) -> Iterator[tuple[Any, ...]]:
    load = pickle.load
    while True:
        try:
            chunk = load(f)
        except EOFError:
            return
        yield from chunk


def external_sort(
    items: Iterable[tuple[Any, ...]],
    *,
    run_size: int = DEFAULT_RUN_SIZE,
    temp_dir: str | os.PathLike[str] | None = None,
) -> Iterator[tuple[Any, ...]]:
    """Sort tuples by their first element (a ``str``) in bounded memory.

    Up to ``run_size`` tuples are held and sorted at once; a longer input is
    spilled as sorted runs to anonymous temporary files (pickled, removed
    when the iterator finishes or is closed) and merged. Elements must be
    picklable. Memory: ``run_size`` tuples while reading, then about 4,096
    tuples per run while merging.

    Args:
        items: The tuples, in any order.
        run_size: Tuples per in-memory run.
        temp_dir: Where to spill (default: the system's temporary folder).

    Yields:
        The same tuples (as plain tuples when they were spilled), sorted by
        element 0; ties keep no particular order.

    Raises:
        OSError: Spilling failed (a full disk).
    """
    if run_size < 1:
        raise ValueError(f"run_size must be at least 1, got {run_size}")
    where = None if temp_dir is None else os.fspath(temp_dir)
    files: list[IO[bytes]] = []
    source = iter(items)
    try:
        while True:
            run: list[tuple[Any, ...]] = list(
                map(tuple, itertools.islice(source, run_size))
            )
            if len(run) < run_size:
                break
            files.append(_spill(run, where))
        if not files:
            run.sort(key=_first)
            yield from run
            return
        if run:
            files.append(_spill(run, where))
        del run
        yield from heapq.merge(*(_read_run(f) for f in files), key=_first)
    finally:
        for f in files:
            f.close()


def sort_listing(
    entries: Iterable[ObjectInfo | ListingEntry],
    *,
    run_size: int = DEFAULT_RUN_SIZE,
    temp_dir: str | os.PathLike[str] | None = None,
    what: str = "the listing",
) -> Iterator[ListingEntry]:
    """Sort a listing by key in bounded memory (see [external_sort][carmigrate.migrate.external_sort]).

    Raises:
        PlanError: A key is listed twice.
    """
    make = ListingEntry._make
    merged = external_sort(to_entries(entries), run_size=run_size, temp_dir=temp_dir)
    return check_sorted((make(t) for t in merged), what=what)


def iter_sorted_listing(
    store: Store,
    prefix: str = "",
    *,
    run_size: int = DEFAULT_RUN_SIZE,
    temp_dir: str | os.PathLike[str] | None = None,
) -> Iterator[ListingEntry]:
    """A store's listing under ``prefix`` as entries in ascending key order.

    With ``store.capabilities.sorted_listing`` the listing streams through
    and its order is checked as it goes; otherwise it is sorted externally.

    Raises:
        PlanError: A store that declares sorted listings yields a key out of
            order, or any listing yields a key twice.
        StorageError: Listing failed.
    """
    listing = to_entries(store.list(prefix))
    what = f"the listing of {store.url}"
    if store.capabilities.sorted_listing:
        return check_sorted(listing, what=what)
    return sort_listing(listing, run_size=run_size, temp_dir=temp_dir, what=what)
