"""Listings in key order: pass-through with checks, and the external sort."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from migrate_helpers import LyingStore, UnsortedStore, fill

from carmigrate.errors import PlanError
from carmigrate.migrate import (
    ListingEntry,
    check_sorted,
    external_sort,
    iter_sorted_listing,
    sort_listing,
)
from carmigrate.storage import MemoryStore, ObjectInfo

keys = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]),
    min_size=1,
    max_size=12,
)


@given(
    items=st.lists(st.tuples(keys, st.integers(0, 10**12)), max_size=300),
    run_size=st.integers(1, 40),
)
def test_external_sort_equals_sorted(
    items: list[tuple[str, int]], run_size: int
) -> None:
    """Spilled runs merged back give exactly sorted() by key."""
    out = list(external_sort(items, run_size=run_size))

    assert [o[0] for o in out] == sorted(i[0] for i in items)
    assert sorted(out) == sorted(items)


@given(
    entries=st.dictionaries(keys, st.integers(0, 1000), max_size=200),
    run_size=st.integers(1, 30),
)
def test_sort_listing_gives_entries_in_order(
    entries: dict[str, int], run_size: int
) -> None:
    """sort_listing accepts ObjectInfo in any order and yields sorted entries."""
    infos = [ObjectInfo(key=k, size=v) for k, v in reversed(list(entries.items()))]

    out = list(sort_listing(infos, run_size=run_size))

    assert [e.key for e in out] == sorted(entries)
    assert all(isinstance(e, ListingEntry) for e in out)


def test_external_sort_spills_to_temp_dir(tmp_path) -> None:
    """Runs go to temp_dir and are removed when the iterator is closed early."""
    items = [(f"k{i:05d}", i) for i in reversed(range(1000))]
    it = external_sort(items, run_size=100, temp_dir=tmp_path)
    first = next(it)
    it.close()

    assert first == ("k00000", 0)
    assert list(tmp_path.iterdir()) == []  # anonymous temp files


def test_check_sorted_refuses_out_of_order_and_repeats() -> None:
    """A descending or repeated key is a PlanError naming both keys."""
    with pytest.raises(PlanError, match="'a' comes after 'b'"):
        list(check_sorted([("b",), ("a",)]))
    with pytest.raises(PlanError, match="listed twice"):
        list(check_sorted([("a",), ("a",)]))


def test_sorted_store_passes_through_and_is_checked() -> None:
    """A store declaring sorted listings streams through; a lying one is caught."""
    store = MemoryStore("m")
    fill(store, {"b": b"2", "a": b"1", "c/d": b"3"})

    assert [e.key for e in iter_sorted_listing(store)] == ["a", "b", "c/d"]
    assert [e.key for e in iter_sorted_listing(UnsortedStore(store))] == [
        "a",
        "b",
        "c/d",
    ]
    with pytest.raises(PlanError, match="not sorted"):
        list(iter_sorted_listing(LyingStore(store)))


def test_listing_entry_takes_only_vouched_digests() -> None:
    """Only checksums the store vouches for become digests; an ETag never does."""
    multipart = ObjectInfo(key="k", size=1, etag="0123456789abcdef0123456789abcdef-3")
    single = ObjectInfo(
        key="k", size=1, etag="x", checksums={"md5": "A" * 32, "sha256": "b" * 64}
    )

    assert ListingEntry.from_info(multipart).digests is None
    assert ListingEntry.from_info(single).digests == {
        "md5": "a" * 32,
        "sha256": "b" * 64,
    }
    assert (
        ListingEntry.checked(
            "k", 1, digests={"md5": "0123456789abcdef0123456789abcdef-3"}
        ).digests
        is None
    )
    assert ListingEntry.checked("k", 1, digests={"md5": "z" * 32}).digests is None
    # names from other systems, unknown algorithms dropped
    assert ListingEntry.checked(
        "k", 1, digests={"SHA-512": "F" * 128, "ADLER32": "0000000A", "crc64": "00"}
    ).digests == {"adler32": "0000000a", "sha512": "f" * 128}
    assert ListingEntry.checked("k", "5").size == 5
