"""FsspecStore: the adapter over fsspec's memory and local filesystems."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import fsspec
import pytest

from carmigrate.errors import InvalidKey, ObjectExists, ObjectNotFound, StorageError
from carmigrate.storage import FsspecStore, open_store, read_bytes


@pytest.fixture
def memfs() -> object:
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    return fs


def test_memory_roundtrip_and_url(memfs: object) -> None:
    """Objects land under the root; the URL names protocol and root."""
    store = FsspecStore(memfs, "/bucket/data")
    store.write("a/b", b"hello")

    assert memfs.cat_file("/bucket/data/a/b") == b"hello"  # type: ignore[attr-defined]
    assert store.url == "memory:///bucket/data"
    assert [i.key for i in store.list()] == ["a/b"]
    assert store.stat("a/b").size == 5


def test_failed_write_leaves_no_temp_file(memfs: object) -> None:
    """A checksum mismatch removes the temporary file; nothing is visible."""
    store = FsspecStore(memfs, "/r")
    with pytest.raises(StorageError, match="checksum mismatch"):
        store.write("k", b"data", checksums={"md5": "0" * 32})

    assert memfs.find("/r") == []  # type: ignore[attr-defined]


def test_if_absent_is_refused_unless_emulated(memfs: object) -> None:
    """fsspec cannot do an atomic if-absent; emulation is an explicit opt-in."""
    strict = FsspecStore(memfs, "/r")
    strict.write("k", b"1")
    with pytest.raises(StorageError, match="emulate_if_absent"):
        strict.write("new", b"2", if_absent=True)
    with pytest.raises(ObjectNotFound):
        strict.stat("new")

    emulated = FsspecStore(memfs, "/r", emulate_if_absent=True)
    with pytest.raises(ObjectExists):
        emulated.write("k", b"2", if_absent=True)
    emulated.write("new", b"2", if_absent=True)
    assert read_bytes(emulated, "k") == b"1"
    assert not emulated.capabilities.conditional_write


def test_read_only_store(memfs: object) -> None:
    """A read-only store reads but refuses writes and deletes."""
    FsspecStore(memfs, "/r").write("k", b"v")
    store = FsspecStore(memfs, "/r", read_only=True)

    assert read_bytes(store, "k") == b"v"
    with pytest.raises(StorageError, match="read-only"):
        store.write("x", b"1")
    with pytest.raises(StorageError, match="read-only"):
        store.delete("k")
    assert store.capabilities.read_only


def test_key_naming_a_folder_is_refused(tmp_path: Path) -> None:
    """mv onto a folder would move the file into it; the write is refused instead."""
    store = FsspecStore(fsspec.filesystem("file"), str(tmp_path))
    store.write("d/child", b"x")

    with pytest.raises(InvalidKey, match="folder"):
        store.write("d", b"y")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["child", "d"]


def test_reserved_names_and_metadata(memfs: object) -> None:
    """Temp-file names are reserved; metadata is refused (not kept)."""
    store = FsspecStore(memfs, "/r")
    with pytest.raises(InvalidKey, match="reserved"):
        store.write("a/.carmigrate.tmp.1", b"x")
    with pytest.raises(StorageError, match="metadata"):
        store.write("a", b"x", metadata={"a": "b"})


def test_open_store_routes_fsspec_protocols(memfs: object) -> None:
    """open_store hands unknown-to-carmigrate protocols to fsspec."""
    registered = "cmtestfs"
    from fsspec.implementations.memory import MemoryFileSystem

    class TestFS(MemoryFileSystem):
        protocol = (registered,)

    fsspec.register_implementation(registered, TestFS, clobber=True)
    store = open_store(f"{registered}://bucket/prefix")

    assert isinstance(store, FsspecStore)
    store.write("k", b"v")
    assert read_bytes(store, "k") == b"v"
    assert store.url == f"{registered}://bucket/prefix"


def test_https_is_read_only_or_reports_its_missing_package() -> None:
    """https:// opens read-only through fsspec, or names the missing package."""
    if importlib.util.find_spec("aiohttp") is None:
        with pytest.raises(StorageError, match="needs a package"):
            open_store("https://example.invalid/data/")
        return
    store = open_store("https://example.invalid/data/")
    assert isinstance(store, FsspecStore)
    assert store.capabilities.read_only
