"""check_store: the Store contract as plain assertions any backend can run."""

from __future__ import annotations

import functools
import hashlib
import io
import threading
from typing import TYPE_CHECKING, Final

from carmigrate.errors import InvalidKey, ObjectExists, ObjectNotFound, StorageError
from carmigrate.storage import SupportsServerSideCopy, read_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from carmigrate.storage import Store

__all__ = ["STORE_CHECKS", "check_store"]

_MIB: Final = 1024 * 1024

INVALID_KEYS: Final = (
    "",
    "/absolute",
    "a//b",
    "a/../b",
    "..",
    ".",
    "./a",
    "a/.",
    "trailing/",
    "nul\x00byte",
    "new\nline",
    "\udcff-not-utf8",
)


class _Context:
    """What one check gets: a fresh store and the suite's options."""

    def __init__(self, store: Store, *, large_size: int) -> None:
        self.store = store
        self.large_size = large_size
        self.name = ""

    def fail(self, message: str) -> AssertionError:
        return AssertionError(
            f"check_store[{self.name}] on {self.store.url}: {message}"
        )

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            raise self.fail(message)

    def equal(self, expected: object, actual: object, what: str) -> None:
        if expected != actual:
            shown_e, shown_a = _short(expected), _short(actual)
            raise self.fail(f"{what}: expected {shown_e}, got {shown_a}")

    def raises(
        self,
        kind: type[BaseException] | tuple[type[BaseException], ...],
        fn: Callable[[], object],
        what: str,
    ) -> BaseException:
        try:
            fn()
        except kind as e:
            return e
        except BaseException as e:
            raise self.fail(
                f"{what}: expected {_names(kind)}, got {type(e).__name__}: {e}"
            ) from e
        raise self.fail(f"{what}: expected {_names(kind)}, nothing was raised")

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return read_bytes(self.store, key, start=start, end=end)

    def absent(self, key: str, what: str) -> None:
        self.raises(
            ObjectNotFound, lambda: self.store.stat(key), f"{what}: stat({key!r})"
        )
        listed = [i.key for i in self.store.list(key)]
        self.check(key not in listed, f"{what}: list() still shows {key!r}")


def _names(kind: type[BaseException] | tuple[type[BaseException], ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _short(value: object) -> str:
    if isinstance(value, (bytes, bytearray)) and len(value) > 40:
        digest = hashlib.sha256(value).hexdigest()[:12]
        return f"<{len(value)} bytes, sha256 {digest}...>"
    return repr(value)


def _pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-looking bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def _chunks(size: int, chunk: int, seed: int = 0) -> Iterator[bytes]:
    block = _pattern(min(chunk, size) or 1, seed)
    sent = 0
    while sent < size:
        n = min(chunk, size - sent)
        yield block[:n]
        sent += n


# ----------------------------------------------------------------------
# the checks


def _roundtrip(c: _Context) -> None:
    data = _pattern(1000)
    info = c.store.write("roundtrip/object.bin", data)
    c.equal("roundtrip/object.bin", info.key, "write().key")
    c.equal(1000, info.size, "write().size")
    c.equal(data, c.read("roundtrip/object.bin"), "data read back")
    stat = c.store.stat("roundtrip/object.bin")
    c.equal("roundtrip/object.bin", stat.key, "stat().key")
    c.equal(1000, stat.size, "stat().size")
    c.check(
        stat.mtime is None or stat.mtime.tzinfo is not None,
        "stat().mtime must be timezone-aware",
    )


def _write_sources(c: _Context) -> None:
    data = _pattern(300_000, 1)

    def generator() -> Iterator[bytes]:
        yield b""
        yield data[:1]
        yield data[1:200_000]
        yield b""
        yield data[200_000:]

    sources: list[tuple[str, object]] = [
        ("bytes", data),
        ("bytearray", bytearray(data)),
        ("memoryview", memoryview(data)),
        ("stream", io.BytesIO(data)),
        ("generator", generator()),
        ("list", [data[:5], data[5:]]),
    ]
    for name, source in sources:
        key = f"sources/{name}"
        c.store.write(key, source, size=len(data))  # type: ignore[arg-type]
        c.equal(data, c.read(key), f"data written from {name}")


def _overwrite(c: _Context) -> None:
    c.store.write("overwrite", b"first version, longer")
    c.store.write("overwrite", b"second")
    c.equal(b"second", c.read("overwrite"), "content after overwrite")
    c.equal(6, c.store.stat("overwrite").size, "size after overwrite")


def _empty_object(c: _Context) -> None:
    info = c.store.write("empty", b"")
    c.equal(0, info.size, "write().size of an empty object")
    c.equal(0, c.store.stat("empty").size, "stat().size of an empty object")
    c.equal(b"", c.read("empty"), "read of an empty object")
    c.equal(b"", c.read("empty", 0, 10), "ranged read of an empty object")
    c.equal(b"", c.read("empty", 5), "read past the end of an empty object")
    c.check(
        "empty" in [i.key for i in c.store.list("empty")],
        "list() misses an empty object",
    )
    c.store.write("empty-stream", iter(()))
    c.equal(
        0, c.store.stat("empty-stream").size, "size of an object from an empty iterator"
    )


def _ranged_reads(c: _Context) -> None:
    data = _pattern(1000, 2)
    c.store.write("ranges", data)
    cases = [
        (0, None),
        (0, 10),
        (10, 20),
        (0, 1000),
        (999, 1000),
        (995, None),
        (995, 5000),
        (1000, None),
        (1500, None),
        (1500, 2000),
        (5, 5),
        (0, 0),
    ]
    for start, end in cases:
        c.equal(
            data[start:end], c.read("ranges", start, end), f"read of [{start}, {end})"
        )
    with c.store.open_read("ranges", start=100, end=300) as f:
        first = f.read(50)
        c.check(len(first) <= 50, "read(50) returned more than 50 bytes")
        rest = f.read()
    c.equal(data[100:300], first + rest, "range read in two calls")
    c.raises(ValueError, lambda: c.store.open_read("ranges", start=-1), "start=-1")
    c.raises(
        ValueError, lambda: c.store.open_read("ranges", start=10, end=5), "end < start"
    )


def _missing_objects(c: _Context) -> None:
    e = c.raises(
        ObjectNotFound, lambda: c.store.stat("missing/object"), "stat of a missing key"
    )
    c.check(
        isinstance(e, FileNotFoundError), "ObjectNotFound must be a FileNotFoundError"
    )
    c.raises(
        ObjectNotFound,
        lambda: c.store.open_read("missing/object"),
        "open_read of a missing key",
    )
    c.raises(
        ObjectNotFound,
        lambda: c.store.open_read("missing/object", start=5, end=5),
        "empty ranged open_read of a missing key",
    )
    c.store.delete("missing/object")  # not an error
    c.equal([], list(c.store.list("missing/")), "list of an empty prefix")


def _invalid_keys(c: _Context) -> None:
    c.store.write("valid", b"x")
    for key in INVALID_KEYS:
        shown = repr(key)
        c.raises(InvalidKey, functools.partial(c.store.stat, key), f"stat({shown})")
        c.raises(
            InvalidKey, functools.partial(c.store.open_read, key), f"open_read({shown})"
        )
        c.raises(
            InvalidKey, functools.partial(c.store.write, key, b"x"), f"write({shown})"
        )
        c.raises(InvalidKey, functools.partial(c.store.delete, key), f"delete({shown})")
    e = c.raises(InvalidKey, lambda: c.store.stat("../escape"), "stat('../escape')")
    c.check(isinstance(e, ValueError), "InvalidKey must be a ValueError")
    c.equal(["valid"], [i.key for i in c.store.list()], "keys after invalid writes")


def _listing(c: _Context) -> None:
    keys = [
        "list/a-b",
        "list/a/b",
        "list/a/c/d",
        "list/a0",
        "list/b",
        "list/B",
        "list/caf\u00e9",
        "list/z\u00fcrich/1",
        "list/\u65e5\u672c",
        "list/\U0001f600",
        "list/space name",
    ]
    if not c.store.capabilities.hierarchical_keys:
        keys += ["list/a", "list/b/c"]
    for i, key in enumerate(sorted(keys, reverse=True)):
        c.store.write(key, _pattern(i + 1, i))
    sizes = {key: i + 1 for i, key in enumerate(sorted(keys, reverse=True))}
    sort = c.store.capabilities.sorted_listing

    def listed(prefix: str) -> list[str]:
        found = [info.key for info in c.store.list(prefix)]
        return found if sort else sorted(found)

    c.equal(sorted(keys), listed(""), "list() of everything")
    c.equal(sorted(keys), listed("list/"), "list('list/')")
    c.equal(
        sorted(k for k in keys if k.startswith("list/a")),
        listed("list/a"),
        "list('list/a')",
    )
    c.equal(
        sorted(k for k in keys if k.startswith("list/a/")),
        listed("list/a/"),
        "list('list/a/')",
    )
    c.equal([], listed("list/nothing"), "list of a prefix matching nothing")
    c.equal([], listed("lis/"), "list of a prefix matching nothing")
    for info in c.store.list("list/"):
        c.equal(sizes[info.key], info.size, f"size of {info.key!r} in list()")
    c.raises(InvalidKey, lambda: list(c.store.list("/abs")), "list('/abs')")
    c.raises(InvalidKey, lambda: list(c.store.list("a/../")), "list('a/../')")


def _delete(c: _Context) -> None:
    c.store.write("delete/a", b"a")
    c.store.write("delete/b", b"b")
    c.store.delete("delete/a")
    c.absent("delete/a", "after delete")
    c.store.delete("delete/a")  # again: not an error
    c.equal(b"b", c.read("delete/b"), "a neighbour after delete")
    c.equal(["delete/b"], [i.key for i in c.store.list("delete/")], "list after delete")


def _checksums(c: _Context) -> None:
    data = _pattern(5000, 3)
    expected = {
        a: hashlib.new(a, data).hexdigest() for a in ("md5", "sha1", "sha256", "sha512")
    }
    info = c.store.write(
        "checksums/ok", data, checksums={k.upper(): v for k, v in expected.items()}
    )
    for algo, digest in expected.items():
        c.equal(digest, info.checksums.get(algo), f"write().checksums[{algo!r}]")
    c.equal(data, c.read("checksums/ok"), "data written with checksums")
    for algo in c.store.capabilities.native_checksums:
        if algo in expected:
            got = c.store.stat("checksums/ok").checksums.get(algo)
            c.equal(
                expected[algo], got, f"stat().checksums[{algo!r}] (declared native)"
            )
    c.raises(
        ValueError,
        lambda: c.store.write("checksums/x", data, checksums={"crc99": "00"}),
        "an unknown checksum algorithm",
    )
    c.raises(
        ValueError,
        lambda: c.store.write("checksums/x", data, checksums={"sha256": "zz"}),
        "a malformed digest",
    )
    c.absent("checksums/x", "after rejected checksum arguments")


def _checksum_mismatch(c: _Context) -> None:
    data = _pattern(5000, 4)
    wrong = hashlib.sha256(b"something else").hexdigest()
    e = c.raises(
        StorageError,
        lambda: c.store.write("mismatch/new", data, checksums={"sha256": wrong}),
        "write with a wrong sha256",
    )
    c.check(
        not isinstance(e, (ObjectExists, ObjectNotFound, InvalidKey)),
        f"wrong error {e!r}",
    )
    c.absent("mismatch/new", "after a checksum mismatch")
    c.store.write("mismatch/old", b"old content")
    c.raises(
        StorageError,
        lambda: c.store.write(
            "mismatch/old",
            data,
            checksums={"md5": hashlib.md5(b"x", usedforsecurity=False).hexdigest()},
        ),
        "overwrite with a wrong md5",
    )
    c.equal(b"old content", c.read("mismatch/old"), "previous object after a mismatch")


def _size_mismatch(c: _Context) -> None:
    data = _pattern(3000, 5)
    for declared in (2999, 3001, 0):
        c.raises(
            StorageError,
            functools.partial(
                c.store.write, "size/new", io.BytesIO(data), size=declared
            ),
            f"write of 3000 bytes declared as {declared}",
        )
        c.absent("size/new", f"after a size mismatch ({declared})")


def _source_failure(c: _Context) -> None:
    class SourceBroke(Exception):
        pass

    def broken() -> Iterator[bytes]:
        yield _pattern(100_000, 6)
        raise SourceBroke("the source failed")

    c.raises(
        SourceBroke, lambda: c.store.write("broken/new", broken()), "a failing source"
    )
    c.absent("broken/new", "after a failing source")
    c.store.write("broken/old", b"old")
    c.raises(
        SourceBroke, lambda: c.store.write("broken/old", broken()), "a failing source"
    )
    c.equal(b"old", c.read("broken/old"), "previous object after a failing source")


def _if_absent(c: _Context) -> None:
    atomic = c.store.capabilities.conditional_write
    try:
        c.store.write("absent/new", b"first", if_absent=True)
    except StorageError as refused:
        if atomic or isinstance(refused, ObjectExists):
            raise c.fail(
                f"if_absent write of a new key failed: {refused!r}"
            ) from refused
        # refused: no atomic conditional write and no emulation
        c.absent("absent/new", "after a refused if_absent write")
        c.store.write("absent/new", b"first")
    c.equal(b"first", c.read("absent/new"), "content of an if_absent write")
    e = c.raises(
        StorageError,
        lambda: c.store.write("absent/new", b"second", if_absent=True),
        "if_absent write over an existing object",
    )
    if atomic:
        c.check(isinstance(e, ObjectExists), f"expected ObjectExists, got {e!r}")
        c.check(
            isinstance(e, FileExistsError), "ObjectExists must be a FileExistsError"
        )
    c.equal(b"first", c.read("absent/new"), "content after a failed if_absent write")


def _if_absent_race(c: _Context) -> None:
    if not c.store.capabilities.conditional_write:
        return
    writers = 6
    barrier = threading.Barrier(writers)
    results: list[object] = [None] * writers

    def write(i: int) -> None:
        barrier.wait()
        try:
            c.store.write("race/key", f"writer {i}".encode(), if_absent=True)
            results[i] = "won"
        except ObjectExists:
            results[i] = "lost"
        except BaseException as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.check(
        all(r in ("won", "lost") for r in results),
        f"racing if_absent writers raised {results}",
    )
    winners = [i for i, r in enumerate(results) if r == "won"]
    c.equal(1, len(winners), "number of racing if_absent writers that won")
    c.equal(
        f"writer {winners[0]}".encode(),
        c.read("race/key"),
        "content written by the winner",
    )


def _metadata(c: _Context) -> None:
    meta = {"color": "blue", "origin": "check-store"}
    if c.store.capabilities.user_metadata:
        c.store.write("meta/a", b"x", metadata=meta)
        got = dict(c.store.stat("meta/a").metadata)
        c.equal(meta, {k: got.get(k) for k in meta}, "stat().metadata")
    else:
        c.raises(
            StorageError,
            lambda: c.store.write("meta/a", b"x", metadata=meta),
            "metadata on a store without user_metadata",
        )
        c.absent("meta/a", "after refused metadata")


def _hierarchy(c: _Context) -> None:
    c.store.write("tree/leaf", b"leaf")
    if c.store.capabilities.hierarchical_keys:
        c.raises(
            (InvalidKey, StorageError),
            lambda: c.store.write("tree/leaf/child", b"child"),
            "a key below an existing object",
        )
        c.equal(b"leaf", c.read("tree/leaf"), "object after a refused child")
        c.store.write("tree/dir/child", b"child")
        c.raises(
            (InvalidKey, StorageError),
            lambda: c.store.write("tree/dir", b"x"),
            "a key naming a folder",
        )
        c.raises(ObjectNotFound, lambda: c.store.stat("tree/dir"), "stat of a folder")
        c.raises(
            ObjectNotFound, lambda: c.store.stat("tree/leaf/child"), "stat below a file"
        )
    else:
        c.store.write("tree/leaf/child", b"child")
        c.equal(b"leaf", c.read("tree/leaf"), "parent object")
        c.equal(b"child", c.read("tree/leaf/child"), "child object")


def _server_side_copy(c: _Context) -> None:
    store = c.store
    if not isinstance(store, SupportsServerSideCopy) or not store.can_copy_from(store):
        c.check(
            not store.capabilities.server_side_copy
            or isinstance(store, SupportsServerSideCopy),
            "capabilities.server_side_copy without copy_from",
        )
        return
    data = _pattern(70_000, 7)
    store.write("copy/src", data)
    info = store.copy_from(store, "copy/src", "copy/dst")
    c.equal(len(data), info.size, "copy_from().size")
    c.equal(data, c.read("copy/dst"), "server-side copy")
    c.raises(
        ObjectNotFound,
        lambda: store.copy_from(store, "copy/missing", "copy/dst2"),
        "copy of a missing object",
    )
    c.absent("copy/dst2", "after copying a missing object")
    if store.capabilities.conditional_write:
        c.raises(
            ObjectExists,
            lambda: store.copy_from(store, "copy/src", "copy/dst", if_absent=True),
            "if_absent copy over an existing object",
        )


def _large_streaming(c: _Context) -> None:
    size = c.large_size
    sha = hashlib.sha256()
    for chunk in _chunks(size, _MIB, 8):
        sha.update(chunk)
    info = c.store.write(
        "large/object", _chunks(size, _MIB, 8), checksums={"sha256": sha.hexdigest()}
    )
    c.equal(size, info.size, "write().size of a large object")
    c.equal(size, c.store.stat("large/object").size, "stat().size of a large object")
    got = hashlib.sha256()
    total = 0
    with c.store.open_read("large/object") as f:
        while chunk := f.read(256 * 1024):
            got.update(chunk)
            total += len(chunk)
    c.equal(size, total, "bytes read back from a large object")
    c.equal(sha.hexdigest(), got.hexdigest(), "sha256 of a large object read back")
    mid = size // 2
    expected = b"".join(_chunks(size, _MIB, 8))[mid - 1000 : mid + 1000]
    c.equal(
        expected,
        c.read("large/object", mid - 1000, mid + 1000),
        "range across the middle",
    )
    wrong = hashlib.sha256(b"no").hexdigest()
    c.raises(
        StorageError,
        lambda: c.store.write(
            "large/bad", _chunks(size, _MIB, 8), checksums={"sha256": wrong}
        ),
        "a large write with a wrong sha256",
    )
    c.absent("large/bad", "after a large write with a wrong sha256")


_CHECKS: Final[dict[str, Callable[[_Context], None]]] = {
    "roundtrip": _roundtrip,
    "write_sources": _write_sources,
    "overwrite": _overwrite,
    "empty_object": _empty_object,
    "ranged_reads": _ranged_reads,
    "missing_objects": _missing_objects,
    "invalid_keys": _invalid_keys,
    "listing": _listing,
    "delete": _delete,
    "checksums": _checksums,
    "checksum_mismatch": _checksum_mismatch,
    "size_mismatch": _size_mismatch,
    "source_failure": _source_failure,
    "if_absent": _if_absent,
    "if_absent_race": _if_absent_race,
    "metadata": _metadata,
    "hierarchy": _hierarchy,
    "server_side_copy": _server_side_copy,
    "large_streaming": _large_streaming,
}

STORE_CHECKS: Final = tuple(_CHECKS)
"""Names of the checks [check_store][carmigrate.testing.check_store] runs, in order.

Pass a subset as ``checks=`` to run only those (for example, one pytest
test per check).
"""


def check_store(
    make_store: Callable[[], Store],
    *,
    checks: Iterable[str] | None = None,
    large_size: int = 12 * _MIB + 123,
) -> None:
    """Check that a Store keeps the contract, with plain assertions.

    Runs each check in [STORE_CHECKS][carmigrate.testing.STORE_CHECKS] (or
    those named in ``checks``) against a fresh, empty store from
    ``make_store``, closing it afterwards. Behaviour the store's
    [Capabilities][carmigrate.storage.Capabilities] declare optional is checked
    as declared: sorted listing, atomic conditional writes (including a race
    of writers), user metadata, hierarchical keys, native checksums and
    server-side copy within the store. Covered for every store: write and
    read back from bytes, streams and iterables; ranged reads with slice
    semantics; stat; empty objects; missing objects (``ObjectNotFound``);
    invalid keys (``InvalidKey``); listing order and prefixes with Unicode
    keys; delete; expected checksums, and that a checksum mismatch, a size
    mismatch or a failing source leaves nothing visible (and a previous
    object intact); and a large object streamed in chunks.

    Needs no test framework: failures raise ``AssertionError`` naming the
    check and the store.

    Args:
        make_store: Returns a new, empty, writable store each time it is
            called (for example, a fresh temporary folder or bucket prefix).
        checks: Names of the checks to run (default: all).
        large_size: Size in bytes of the large streamed object (default just
            over 12 MiB, enough for a few multipart parts).

    Raises:
        AssertionError: A check failed; the message says which and why.
        ValueError: An unknown check name, or the store is read-only.
    """
    names = STORE_CHECKS if checks is None else tuple(checks)
    unknown = [n for n in names if n not in _CHECKS]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; choose from {STORE_CHECKS}")
    for name in names:
        store = make_store()
        try:
            if store.capabilities.read_only:
                raise ValueError(
                    f"check_store needs a writable store, {store.url} is read-only"
                )
            ctx = _Context(store, large_size=large_size)
            ctx.name = name
            _CHECKS[name](ctx)
        finally:
            store.close()
