"""Bags read through stores: carmigrate.migrate.store_bag_source and store_fetch_roots."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from bag_helpers import EXTERNAL_IDENTIFIER, NFD_NAME, PAYLOAD, payload_size, reseal

from carmigrate.bagit import BagSource, verify_bag
from carmigrate.errors import BackendUnavailable, BagError
from carmigrate.migrate import store_bag_source, store_fetch_roots
from carmigrate.storage import MemoryStore, open_store
from carmigrate.storage.ops import write_bytes
from carmigrate.testing import FlakyStore

PREFIX = f"digitised/{EXTERNAL_IDENTIFIER}/v1"
BIG = "data/big/three-megabytes.bin"


def _upload(bag: Path, store: MemoryStore, prefix: str) -> None:
    for f in sorted(bag.rglob("*")):
        if f.is_file():
            write_bytes(
                store, f"{prefix}/{f.relative_to(bag).as_posix()}", f.read_bytes()
            )


@pytest.fixture
def memory(loc_bag: Path) -> MemoryStore:
    """The standard bag under digitised/b12345678/v1/, beside a v10 that must not leak in."""
    store = MemoryStore("bags")
    _upload(loc_bag, store, PREFIX)
    write_bytes(store, f"{PREFIX}0/data/not-mine.txt", b"v10")
    return store


@pytest.mark.parametrize("prefix", [PREFIX, PREFIX + "/"])
def test_a_bag_in_a_memory_store(memory: MemoryStore, prefix: str) -> None:
    """A bag under a store prefix verifies; the prefix is a folder (v1 is not v10)."""
    source = store_bag_source(memory, prefix)
    assert isinstance(source, BagSource)

    result = verify_bag(source, external_identifier=EXTERNAL_IDENTIFIER)

    assert result.failures == ()
    assert result.files == len(PAYLOAD)
    assert result.bytes == payload_size()
    assert source.url == f"memory://bags/{PREFIX}/"


def test_a_bag_in_a_local_store(loc_bag: Path) -> None:
    """open_store on the bag's folder gives a LocalStore; its NFD name is read as stored."""
    store = open_store(str(loc_bag))
    try:
        assert any(
            key.endswith(NFD_NAME) for key, _ in store_bag_source(store).list("data/")
        )

        result = verify_bag(store_bag_source(store))
    finally:
        store.close()

    assert result.failures == ()


def test_a_missing_object_is_a_failure(memory: MemoryStore) -> None:
    """ObjectNotFound is the source's FileNotFoundError: the file is reported missing."""
    memory.delete(f"{PREFIX}/data/a.txt")

    result = verify_bag(store_bag_source(memory, PREFIX))

    assert {f.rule for f in result.failures} == {"checksum"}
    assert result.failures[0].message.endswith("is not in the bag")


def test_a_replica_in_another_store(memory: MemoryStore) -> None:
    """A replica in a second store is compared with its source's tag manifest."""
    replica = MemoryStore("replica")
    for info in memory.list(PREFIX + "/"):
        with memory.open_read(info.key) as f:
            write_bytes(replica, info.key, f.read())

    assert verify_bag(
        store_bag_source(replica, PREFIX),
        replica_of=store_bag_source(memory, PREFIX),
    ).valid

    write_bytes(replica, f"{PREFIX}/tagmanifest-sha512.txt", b"")
    result = verify_bag(
        store_bag_source(replica, PREFIX),
        replica_of=store_bag_source(memory, PREFIX),
    )
    assert "source-tag-manifest" in {f.rule for f in result.failures}


def test_fetch_roots_from_stores(loc_bag: Path, tmp_path: Path) -> None:
    """store_fetch_roots maps a URL prefix to a store; the rest of the URL is the key."""
    bag = tmp_path / "bag"
    shutil.copytree(loc_bag, bag)
    older = MemoryStore("older")
    data = (bag / BIG).read_bytes()
    write_bytes(older, f"{EXTERNAL_IDENTIFIER}/v1/data/big/three megabytes.bin", data)
    (bag / BIG).unlink()
    url = f"s3://storage/digitised/{EXTERNAL_IDENTIFIER}/v1/data/big/three%20megabytes.bin"
    (bag / "fetch.txt").write_text(f"{url} {len(data)} {BIG}\n")
    reseal(bag)
    local = open_store(str(bag))
    try:
        result = verify_bag(
            store_bag_source(local),
            fetch_roots=store_fetch_roots({"s3://storage/digitised/": older}),
            allowed_fetch_prefix=f"s3://storage/digitised/{EXTERNAL_IDENTIFIER}/",
        )
    finally:
        local.close()

    assert result.failures == ()
    assert result.bytes == payload_size()


def test_nothing_under_the_prefix(memory: MemoryStore) -> None:
    """No object under the prefix: BagError."""
    with pytest.raises(BagError, match="no bag at memory://bags/digitised/b9/v1/"):
        verify_bag(store_bag_source(memory, "digitised/b9/v1"))
    with pytest.raises(ValueError, match="relative"):
        store_bag_source(memory, "/digitised")


def test_a_store_failure_propagates_as_it_is(memory: MemoryStore) -> None:
    """A StorageError of the store is not wrapped: its type and transient flag survive."""
    flaky = FlakyStore(memory, fail_calls=[5], methods=["open_read"], transient=True)

    with pytest.raises(BackendUnavailable) as info:
        verify_bag(store_bag_source(flaky, PREFIX))

    assert info.value.transient
