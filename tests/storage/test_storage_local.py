"""LocalStore: atomic writes, race-free if-absent, keys that cannot escape the root."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from carmigrate.errors import (
    InvalidKey,
    ObjectExists,
    ObjectNotFound,
    SizeMismatch,
    StorageError,
)
from carmigrate.storage import LocalStore, _local, copy_object, read_bytes


def test_write_is_atomic_temp_then_rename(tmp_path: Path) -> None:
    """During a write only a reserved temp file exists; the key appears complete."""
    store = LocalStore(tmp_path)
    seen: list[list[str]] = []

    def source() -> Iterator[bytes]:
        yield b"a" * 1000
        seen.append(sorted(os.listdir(tmp_path / "dir")))
        yield b"b" * 1000

    store.write("dir/obj", source())

    assert len(seen[0]) == 1
    assert seen[0][0].startswith(".carmigrate.tmp.")
    assert sorted(os.listdir(tmp_path / "dir")) == ["obj"]
    assert (tmp_path / "dir" / "obj").read_bytes() == b"a" * 1000 + b"b" * 1000


def test_crashed_writer_leaves_only_a_hidden_temp_file(tmp_path: Path) -> None:
    """A leftover temp file (a crash) is never listed and never read as an object."""
    store = LocalStore(tmp_path)
    (tmp_path / ".carmigrate.tmp.deadbeef").write_bytes(b"partial")
    store.write("real", b"x")

    assert [i.key for i in store.list()] == ["real"]
    with pytest.raises(InvalidKey, match="reserved"):
        store.stat(".carmigrate.tmp.deadbeef")


def test_failed_write_cleans_up(tmp_path: Path) -> None:
    """A failing source leaves no temp file behind and the old object intact."""
    store = LocalStore(tmp_path)
    store.write("obj", b"old")

    def source() -> Iterator[bytes]:
        yield b"new"
        raise OSError("disk source failed")

    with pytest.raises(OSError, match="disk source failed"):
        store.write("obj", source())

    assert sorted(os.listdir(tmp_path)) == ["obj"]
    assert read_bytes(store, "obj") == b"old"


@pytest.mark.parametrize("publish", ["renameat2", "link"])
def test_if_absent_is_race_free(
    tmp_path: Path, publish: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many threads race an if-absent write: exactly one wins, its bytes are whole.

    Both ways of publishing: ``renameat2(RENAME_NOREPLACE)`` and, where the
    system lacks it, ``link`` then ``unlink``.
    """
    if publish == "link":
        monkeypatch.setattr(_local, "_rename_noreplace", lambda *args: False)
    elif _local._renameat2() is None:
        pytest.skip("no renameat2 here")
    store = LocalStore(tmp_path)
    barrier = threading.Barrier(8)
    outcome: dict[int, str] = {}

    def writer(i: int) -> None:
        barrier.wait()
        try:
            store.write("key", bytes([i]) * 100_000, if_absent=True)
            outcome[i] = "won"
        except ObjectExists:
            outcome[i] = "lost"

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    winners = [i for i, o in outcome.items() if o == "won"]
    assert len(winners) == 1
    assert read_bytes(store, "key") == bytes([winners[0]]) * 100_000
    assert sorted(os.listdir(tmp_path)) == ["key"]


def test_preallocated_write_still_checks_the_size(tmp_path: Path) -> None:
    """Blocks reserved for a declared size never make a short write look whole."""
    store = LocalStore(tmp_path)
    size = _local._PREALLOCATE_MIN + 4096
    data = os.urandom(size)
    with pytest.raises(SizeMismatch, match="declared as") as short:
        store.write("short", data[:-1], size=size)
    with pytest.raises(SizeMismatch, match="declared as") as long:
        store.write("long", data + b"x", size=size)
    assert (short.value.declared, short.value.actual) == (size, size - 1)
    assert long.value.declared == size
    assert long.value.actual > size
    assert not long.value.transient
    assert sorted(os.listdir(tmp_path)) == []
    info = store.write("exact", data, size=size)
    assert info.size == size == os.path.getsize(tmp_path / "exact")
    assert read_bytes(store, "exact") == data


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "os.write"])
def test_no_write_is_larger_than_the_slice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled: bool
) -> None:
    """Chunks of any size, with blocks reserved or not, go out in small writes."""
    if compiled and _local._write_whole is None:
        pytest.skip("carmigrate.storage._fastio was not built")
    sizes: list[int] = []
    if compiled:
        real_whole = _local._write_whole
        assert real_whole is not None

        def whole(fd: int, view: memoryview, piece: int) -> int:
            sizes.extend(min(piece, len(view) - o) for o in range(0, len(view), piece))
            return real_whole(fd, view, piece)

        monkeypatch.setattr(_local, "_write_whole", whole)
    else:
        real_write = os.write

        def write(fd: int, data: bytes | memoryview) -> int:
            sizes.append(len(data))
            return real_write(fd, data)

        monkeypatch.setattr(_local, "_write_whole", None)
        monkeypatch.setattr(os, "write", write)
    store = LocalStore(tmp_path)
    small = os.urandom(1 << 20)
    big = os.urandom(_local._PREALLOCATE_MIN + 12345)

    store.write("small", [small[:300_000], small[300_000:]], size=len(small))
    store.write("big", [big], size=len(big))

    assert max(sizes) == _local._WRITE_SLICE == 32 << 10
    assert sum(sizes) == len(small) + len(big)
    assert read_bytes(store, "small") == small
    assert read_bytes(store, "big") == big


@pytest.mark.skipif(_local._write_whole is None, reason="_fastio was not built")
def test_compiled_write_all_writes_in_pieces_and_reports_errors() -> None:
    """Each write(2) gets at most ``piece`` bytes (seen as one record each on a
    SEQPACKET socket); a failed write is an OSError with its errno."""
    from carmigrate.storage import _fastio  # type: ignore[attr-defined]

    data = os.urandom(200_000)
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with left, right:
        right.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        records: list[bytes] = []

        def drain() -> None:
            while chunk := right.recv(1 << 20):
                records.append(chunk)

        reader = threading.Thread(target=drain)
        reader.start()
        assert _fastio.write_all(left.fileno(), memoryview(data), 32 << 10) == len(data)
        left.shutdown(socket.SHUT_WR)
        reader.join()

    assert [len(r) for r in records] == [32 << 10] * 6 + [200_000 - 6 * (32 << 10)]
    assert b"".join(records) == data
    read_end, write_end = os.pipe()
    os.close(write_end)
    try:
        with pytest.raises(OSError, match="Bad file descriptor") as caught:
            _fastio.write_all(read_end, b"x", 10)
        assert caught.value.errno == errno.EBADF
    finally:
        os.close(read_end)
    with pytest.raises(ValueError, match="piece"):
        _fastio.write_all(1, b"x", 0)


_BLOCKED_WRITE = """
import os, signal
from carmigrate.storage import _fastio

class Alarm(Exception):
    pass

def ring(signum, frame):
    raise Alarm

signal.signal(signal.SIGALRM, ring)
read_end, write_end = os.pipe()  # nobody reads: the write blocks when it is full
signal.setitimer(signal.ITIMER_REAL, 0.2)
try:
    _fastio.write_all(write_end, bytes(1 << 20), 32 << 10)
except Alarm:
    print("interrupted")
"""


@pytest.mark.skipif(_local._write_whole is None, reason="_fastio was not built")
def test_a_blocked_compiled_write_runs_signal_handlers() -> None:
    """A handler that raises during a blocked write stops it, as with os.write."""
    out = subprocess.run(
        [sys.executable, "-c", _BLOCKED_WRITE],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    assert out.stdout.strip() == "interrupted"


def _resident_pages(path: Path) -> int:
    out = subprocess.run(
        ["fincore", "--noheadings", "--bytes", "--output", "PAGES", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.split()[0])


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("fincore") is None,
    reason="needs Linux and util-linux's fincore",
)
def test_cache_reads_false_drops_what_was_read(tmp_path: Path) -> None:
    """With cache_reads=False, read pages leave the page cache; by default they stay."""
    data = os.urandom(4 << 20)
    LocalStore(tmp_path).write("obj", data)  # fsynced: its pages are clean
    path = tmp_path / "obj"
    pages = len(data) // os.sysconf("SC_PAGE_SIZE")

    dropping = LocalStore(tmp_path, cache_reads=False)
    with dropping.open_read("obj") as stream:
        assert stream.read() == data
    assert _resident_pages(path) == 0

    with LocalStore(tmp_path).open_read("obj") as stream:
        assert stream.read() == data
    assert _resident_pages(path) == pages

    with dropping.open_read("obj", start=1 << 20, end=2 << 20) as stream:
        assert stream.read() == data[1 << 20 : 2 << 20]
    assert _resident_pages(path) == pages - (1 << 20) // os.sysconf("SC_PAGE_SIZE")


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    """Keys crossing a symbolic link raise InvalidKey; list skips links."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "link-file").symlink_to(outside / "secret")
    store = LocalStore(root)

    for key in ("escape/secret", "link-file"):
        with pytest.raises(InvalidKey, match="symbolic link"):
            store.stat(key)
        with pytest.raises(InvalidKey, match="symbolic link"):
            store.open_read(key)
        with pytest.raises(InvalidKey, match="symbolic link"):
            store.delete(key)
    with pytest.raises(InvalidKey, match="symbolic link"):
        store.write("escape/new", b"x")

    assert not (outside / "new").exists()
    assert (outside / "secret").read_bytes() == b"secret"
    assert list(store.list()) == []


def test_stat_sees_only_regular_files(tmp_path: Path) -> None:
    """A folder or a FIFO under a key is no object; a file's size and mtime are reported."""
    store = LocalStore(tmp_path)
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_bytes(b"12345")

    for key in ("folder", "fifo", "missing", "folder/missing"):
        with pytest.raises(ObjectNotFound):
            store.stat(key)
    info = store.stat("file")
    assert info.size == 5
    assert info.mtime is not None
    assert info.mtime.timestamp() == pytest.approx(os.stat(tmp_path / "file").st_mtime)


def test_root_may_be_a_symlink(tmp_path: Path) -> None:
    """The root's own links are resolved once, at construction."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    store = LocalStore(tmp_path / "alias")
    store.write("a/b", b"x")

    assert store.root == str(real)
    assert (real / "a" / "b").read_bytes() == b"x"


def test_missing_root(tmp_path: Path) -> None:
    """create=False refuses a missing root; the default creates it."""
    with pytest.raises(StorageError, match="cannot use"):
        LocalStore(tmp_path / "nope", create=False)
    LocalStore(tmp_path / "made" / "deep")
    assert (tmp_path / "made" / "deep").is_dir()
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError):
        LocalStore(tmp_path / "file", create=False)


def test_delete_removes_empty_folders(tmp_path: Path) -> None:
    """Folders emptied by a delete go away; folders with other objects stay."""
    store = LocalStore(tmp_path)
    store.write("a/b/c/d", b"1")
    store.write("a/x", b"2")
    store.delete("a/b/c/d")

    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "x"]
    store.delete("a/x")
    assert list(tmp_path.iterdir()) == []


def test_concurrent_writes_and_deletes_in_one_folder(tmp_path: Path) -> None:
    """A delete emptying a folder while another write creates it again is survived."""
    store = LocalStore(tmp_path, fsync=False)
    errors: list[BaseException] = []

    def churn(i: int) -> None:
        try:
            for n in range(150):
                store.write(f"shared/deep/k{i}-{n}", b"x")
                store.delete(f"shared/deep/k{i}-{n}")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert list(store.list()) == []


def test_read_of_a_shrunk_file_raises(tmp_path: Path) -> None:
    """If the file shrinks while being read, the read raises instead of ending early."""
    store = LocalStore(tmp_path)
    store.write("obj", b"x" * 1_000_000)
    with store.open_read("obj") as f:
        f.read(10)
        os.truncate(tmp_path / "obj", 100)
        with pytest.raises(StorageError, match="ended early") as raised:
            f.read()
    assert raised.value.transient


def test_reader_sees_the_version_it_opened(tmp_path: Path) -> None:
    """Replacing a key does not change a stream opened before."""
    store = LocalStore(tmp_path)
    store.write("obj", b"old" * 1000)
    with store.open_read("obj") as f:
        store.write("obj", b"new")
        assert f.read() == b"old" * 1000


def test_hierarchy_conflicts(tmp_path: Path) -> None:
    """An object cannot also be a folder, in either order."""
    store = LocalStore(tmp_path)
    store.write("a", b"file")
    with pytest.raises(InvalidKey, match="is an object"):
        store.write("a/b", b"x")
    with pytest.raises(ObjectNotFound):
        store.stat("a/b")
    store.write("d/e", b"x")
    with pytest.raises(InvalidKey, match="folder"):
        store.write("d", b"x")
    with pytest.raises(ObjectNotFound):
        store.stat("d")


def test_non_utf8_names_are_skipped(tmp_path: Path) -> None:
    """Files whose names are not UTF-8 cannot be keys and are not listed."""
    store = LocalStore(tmp_path)
    store.write("ok", b"x")
    with open(os.path.join(os.fsencode(tmp_path), b"bad-\xff"), "wb") as f:
        f.write(b"y")

    assert [i.key for i in store.list()] == ["ok"]


def test_long_segments_and_special_files(tmp_path: Path) -> None:
    """Segments over 255 bytes are invalid; FIFOs and such are not objects."""
    store = LocalStore(tmp_path)
    with pytest.raises(InvalidKey, match="255"):
        store.write("x" * 256, b"x")
    os.mkfifo(tmp_path / "fifo")

    assert list(store.list()) == []
    with pytest.raises(ObjectNotFound):
        store.stat("fifo")


def test_server_side_copy_between_local_stores(tmp_path: Path) -> None:
    """copy_object uses copy_from (copy_file_range) between local stores."""
    src = LocalStore(tmp_path / "src")
    dst = LocalStore(tmp_path / "dst")
    data = os.urandom(3_000_000)
    src.write("a/obj", data)

    info = copy_object(src, "a/obj", dst, "b/copy", server_side=True)

    assert info.size == len(data)
    assert read_bytes(dst, "b/copy") == data
    with pytest.raises(ObjectExists):
        dst.copy_from(src, "a/obj", "b/copy", if_absent=True)
    with pytest.raises(ObjectNotFound):
        dst.copy_from(src, "missing", "c")
    with pytest.raises(StorageError, match="metadata"):
        dst.copy_from(src, "a/obj", "c", metadata={"a": "b"})
    assert sorted(p.name for p in (tmp_path / "dst").rglob("*")) == ["b", "copy"]


def test_url_and_repr(tmp_path: Path) -> None:
    """The URL is the root as file://; nothing else."""
    store = LocalStore(tmp_path)

    assert store.url == tmp_path.resolve().as_uri()
    assert repr(store) == f"LocalStore({str(tmp_path.resolve())!r})"
    with store as entered:
        assert entered is store


def test_remove_temporary_deletes_only_stale_temp_files(tmp_path: Path) -> None:
    """Old writer leftovers go; fresh ones, objects and links stay."""
    store = LocalStore(tmp_path)
    store.write("a/obj", b"object")
    stale = [
        tmp_path / ".carmigrate.tmp.dead1",
        tmp_path / "a" / ".carmigrate.tmp.dead2",
    ]
    fresh = tmp_path / "a" / ".carmigrate.tmp.live"
    for path in [*stale, fresh]:
        path.write_bytes(b"partial")
    old = os.stat(fresh).st_mtime - 7200
    for path in stale:
        os.utime(path, (old, old))
    target = tmp_path / "outside"
    target.write_bytes(b"not ours")
    link = tmp_path / ".carmigrate.tmp.link"
    link.symlink_to(target)
    os.utime(link, (old, old), follow_symlinks=False)

    first = store.remove_temporary()
    assert first.removed == 2
    # a symbolic link under a temporary name is never followed nor removed: reported
    assert first.left == (
        (".carmigrate.tmp.link", "has a temporary name but is not a regular file"),
    )
    assert not any(p.exists() for p in stale)
    assert fresh.exists()
    assert link.is_symlink()
    assert target.read_bytes() == b"not ours"
    assert read_bytes(store, "a/obj") == b"object"
    assert store.remove_temporary(older_than=0).removed == 1  # now the fresh one too
    assert not fresh.exists()
    with pytest.raises(ValueError, match="older_than"):
        store.remove_temporary(older_than=-1)


def test_remove_temporary_of_given_keys_only(tmp_path) -> None:
    """Temporary files carry a tag of their key: only the given keys' go, any age."""
    import os

    from carmigrate.storage import LocalStore
    from carmigrate.storage._local import _temp_prefix

    store = LocalStore(tmp_path, create=True, fsync=False)
    store.write("a/keep.bin", b"object")
    (tmp_path / "a" / f"{_temp_prefix('dead.bin')}0123").write_bytes(b"partial")
    (tmp_path / "a" / f"{_temp_prefix('alive.bin')}4567").write_bytes(b"other key")
    (tmp_path / "a" / ".carmigrate.tmp.0123456789abcdef").write_bytes(b"old format")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / f"{_temp_prefix('dead.bin')}89ab").write_bytes(b"other folder")

    result = store.remove_temporary(0, keys=["a/dead.bin", "nope/x.bin"])
    assert (result.removed, result.left) == (1, ())
    left = sorted(os.listdir(tmp_path / "a"))
    assert left == sorted(
        [
            "keep.bin",
            f"{_temp_prefix('alive.bin')}4567",
            ".carmigrate.tmp.0123456789abcdef",
        ]
    )
    assert (tmp_path / "b" / f"{_temp_prefix('dead.bin')}89ab").exists()
    assert [i.key for i in store.list()] == ["a/keep.bin"]
