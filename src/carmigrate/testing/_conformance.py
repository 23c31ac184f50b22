"""check_store: the Store contract as plain assertions any backend can run."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import threading
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from carmigrate.digests import algorithm, is_registered
from carmigrate.errors import (
    BackendUnavailable,
    InvalidKey,
    ObjectExists,
    ObjectNotFound,
    StorageError,
)
from carmigrate.storage import (
    SupportsPresignedUrls,
    SupportsRestore,
    SupportsServerSideCopy,
    SupportsTemporaryCleanup,
    TemporaryCleanup,
    open_store,
    read_bytes,
)
from carmigrate.storage.lowlevel import OPTIONAL_PROTOCOLS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from carmigrate.storage import ObjectInfo, Store

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

    def __init__(
        self,
        store: Store,
        *,
        large_size: int,
        open_url: Callable[[str], Store] | None = None,
    ) -> None:
        self.store = store
        self.large_size = large_size
        self.open_url = open_url
        self.name = ""
        self._flags: list[str] = []

    def fail(self, message: str) -> AssertionError:
        if self._flags:
            caps = self.store.capabilities
            shown = ", ".join(
                f"capabilities.{flag}={getattr(caps, flag)!r}"
                for flag in dict.fromkeys(self._flags)
            )
            message = f"{message} [{shown}]"
        return AssertionError(
            f"check_store[{self.name}] on {self.store.url}: {message}"
        )

    @contextlib.contextmanager
    def under(self, *flags: str) -> Iterator[None]:
        """Name ``flags`` in the failures inside; a StorageError there fails."""
        self._flags.extend(flags)
        try:
            yield
        except StorageError as e:
            raise self.fail(f"unexpected {type(e).__name__}: {_clip(str(e))}") from e
        finally:
            del self._flags[len(self._flags) - len(flags) :]

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
                f"{what}: expected {_names(kind)}, got {type(e).__name__}: "
                f"{_clip(str(e))}"
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

    @property
    def atomic(self) -> bool:
        """Whether failed writes must leave nothing (``atomic_write``)."""
        return self.store.capabilities.atomic_write

    def absent_after_failure(self, key: str, what: str) -> None:
        """``absent``, for stores declaring ``atomic_write``."""
        if self.atomic:
            with self.under("atomic_write"):
                self.absent(key, what)

    def unchanged_after_failure(self, key: str, data: bytes, what: str) -> None:
        """The previous object survived, for stores declaring ``atomic_write``."""
        if self.atomic:
            with self.under("atomic_write"):
                self.equal(data, self.read(key), what)

    def implements(self, flag: str) -> bool:
        """Whether the store implements the Protocol behind ``flag``.

        Fails when ``capabilities.<flag>`` says otherwise.
        """
        protocol = next(p for p, f in OPTIONAL_PROTOCOLS.items() if f == flag)
        declared = getattr(self.store.capabilities, flag)
        actual = isinstance(self.store, protocol)
        methods = ", ".join(_protocol_methods(protocol))
        if declared and not actual:
            raise self.fail(
                f"capabilities.{flag} is True but the store does not implement "
                f"{protocol.__name__} ({methods}); derive the flag with "
                "carmigrate.storage.lowlevel.derive_capabilities"
            )
        if actual and not declared:
            raise self.fail(
                f"capabilities.{flag} is False but the store implements "
                f"{protocol.__name__} ({methods}); derive the flag with "
                "carmigrate.storage.lowlevel.derive_capabilities"
            )
        return actual


def _protocol_methods(protocol: type) -> tuple[str, ...]:
    return tuple(
        name
        for name, value in vars(protocol).items()
        if not name.startswith("_") and callable(value)
    )


def _names(kind: type[BaseException] | tuple[type[BaseException], ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


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

    with c.under("sorted_listing"):
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
    native = c.store.capabilities.native_checksums
    stat = c.store.stat("checksums/ok")
    listed = [i for i in c.store.list("checksums/") if i.key == "checksums/ok"]
    c.equal(1, len(listed), "list() entries for 'checksums/ok'")
    with c.under("native_checksums"):
        for algo in native:
            if algo in expected:
                c.equal(
                    expected[algo],
                    stat.checksums.get(algo),
                    f"stat().checksums[{algo!r}] of a declared native algorithm",
                )
        for what, reported in (("stat()", stat), ("list()", listed[0])):
            _native_only(c, what, reported, native, data)
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


def _native_only(
    c: _Context, what: str, info: ObjectInfo, native: frozenset[str], data: bytes
) -> None:
    """``info`` reports only declared native digests, and right ones."""
    undeclared = sorted(set(info.checksums) - native)
    c.check(
        not undeclared,
        f"{what}.checksums reports {undeclared}, which capabilities.native_checksums "
        "does not declare",
    )
    for algo, digest in info.checksums.items():
        if is_registered(algo):
            c.equal(algorithm(algo).digest(data), digest, f"{what}.checksums[{algo!r}]")


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
    c.absent_after_failure("mismatch/new", "after a checksum mismatch")
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
    c.unchanged_after_failure(
        "mismatch/old", b"old content", "previous object after a mismatch"
    )


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
        c.absent_after_failure("size/new", f"after a size mismatch ({declared})")


def _source_failure(c: _Context) -> None:
    class SourceBroke(Exception):
        pass

    def broken() -> Iterator[bytes]:
        yield _pattern(100_000, 6)
        raise SourceBroke("the source failed")

    c.raises(
        SourceBroke, lambda: c.store.write("broken/new", broken()), "a failing source"
    )
    c.absent_after_failure("broken/new", "after a failing source")
    c.store.write("broken/old", b"old")
    c.raises(
        SourceBroke, lambda: c.store.write("broken/old", broken()), "a failing source"
    )
    c.unchanged_after_failure(
        "broken/old", b"old", "previous object after a failing source"
    )


def _if_absent(c: _Context) -> None:
    atomic = c.store.capabilities.conditional_write
    with c.under("conditional_write"):
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
        c.equal(
            b"first", c.read("absent/new"), "content after a failed if_absent write"
        )


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
    with c.under("conditional_write"):
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
    with c.under("user_metadata"):
        if c.store.capabilities.user_metadata:
            c.store.write("meta/a", b"x", metadata=meta)
            got = dict(c.store.stat("meta/a").metadata)
            c.equal(meta, {k: got.get(k) for k in meta}, "stat().metadata")
        else:
            c.raises(
                StorageError,
                lambda: c.store.write("meta/a", b"x", metadata=meta),
                "write with metadata",
            )
            c.absent("meta/a", "after refused metadata")


def _hierarchy(c: _Context) -> None:
    c.store.write("tree/leaf", b"leaf")
    with c.under("hierarchical_keys"):
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
            c.raises(
                ObjectNotFound, lambda: c.store.stat("tree/dir"), "stat of a folder"
            )
            c.raises(
                ObjectNotFound,
                lambda: c.store.stat("tree/leaf/child"),
                "stat below a file",
            )
        else:
            c.store.write("tree/leaf/child", b"child")
            c.equal(b"leaf", c.read("tree/leaf"), "parent object")
            c.equal(b"child", c.read("tree/leaf/child"), "child object")


def _server_side_copy(c: _Context) -> None:
    if not c.implements("server_side_copy"):
        return
    store = c.store
    assert isinstance(store, SupportsServerSideCopy)
    with c.under("server_side_copy"):
        if not store.can_copy_from(store):
            return  # copies only from other stores (say, another bucket)
        data = _pattern(70_000, 7)
        store.write("copy/src", data)
        info = store.copy_from(store, "copy/src", "copy/dst")
        c.equal(len(data), info.size, "copy_from().size")
        c.equal(data, c.read("copy/dst"), "server-side copy")
        c.equal(data, c.read("copy/src"), "source after a server-side copy")
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
            c.equal(data, c.read("copy/dst"), "object after a refused if_absent copy")
        if store.capabilities.user_metadata:
            store.write("copy/meta", b"m", metadata={"color": "blue"})
            store.copy_from(store, "copy/meta", "copy/meta-kept")
            got = store.stat("copy/meta-kept").metadata.get("color")
            c.equal("blue", got, "metadata copied by copy_from")
            store.copy_from(
                store, "copy/meta", "copy/meta-new", metadata={"color": "red"}
            )
            got = store.stat("copy/meta-new").metadata.get("color")
            c.equal("red", got, "metadata replaced by copy_from(metadata=...)")


def _cold_tier(c: _Context) -> None:
    if not c.implements("cold_tier"):
        return
    store = c.store
    assert isinstance(store, SupportsRestore)
    with c.under("cold_tier"):
        c.raises(
            ObjectNotFound,
            lambda: store.request_restore("cold/missing"),
            "request_restore of a missing key",
        )
        c.raises(
            InvalidKey,
            lambda: store.request_restore("cold/../x"),
            "request_restore of an invalid key",
        )
        store.write("cold/object", b"cold or not")
        if store.stat("cold/object").cold:
            # the store writes into a cold class: a restore must be accepted
            store.request_restore("cold/object")
            c.check(
                store.stat("cold/object").restore is not None,
                "stat().restore is None after request_restore",
            )
            return
        e = c.raises(
            StorageError,
            lambda: store.request_restore("cold/object"),
            "request_restore of an object that is not cold",
        )
        c.check(
            not isinstance(e, (ObjectNotFound, InvalidKey)),
            f"request_restore of an object that is not cold: wrong error {e!r}",
        )
        c.equal(b"cold or not", c.read("cold/object"), "object after request_restore")


def _presigned_urls(c: _Context) -> None:
    if not c.implements("presigned_urls"):
        return
    store = c.store
    assert isinstance(store, SupportsPresignedUrls)
    with c.under("presigned_urls"):
        store.write("presign/object", b"x")
        for method, key in (("GET", "presign/object"), ("PUT", "presign/new")):
            url = store.presign(key, expires_in=60, method=method)
            c.check(
                isinstance(url, str) and bool(urlsplit(url).scheme),
                f"presign({key!r}, method={method!r}) returned {url!r}, not a URL",
            )
        c.raises(
            ValueError,
            lambda: store.presign("presign/object", method="DELETE"),
            "presign(method='DELETE')",
        )
        c.raises(
            InvalidKey,
            lambda: store.presign("presign/../x"),
            "presign of an invalid key",
        )
        c.absent("presign/new", "after presigning a PUT")


def _temporary_cleanup(c: _Context) -> None:
    if not c.implements("temporary_cleanup"):
        return
    store = c.store
    assert isinstance(store, SupportsTemporaryCleanup)
    with c.under("temporary_cleanup"):
        data = _pattern(10_000, 9)
        store.write("temporary/keep", data)
        store.write("temporary/sub/keep", b"")
        before = [(i.key, i.size) for i in store.list()]
        for older_than in (3600.0, 0.0):
            result = store.remove_temporary(older_than)
            c.check(
                isinstance(result, TemporaryCleanup)
                and isinstance(result.removed, int)
                and result.removed >= 0
                and isinstance(result.left, tuple),
                f"remove_temporary({older_than}) returned {result!r}, not a "
                "TemporaryCleanup",
            )
        c.raises(ValueError, lambda: store.remove_temporary(-1), "remove_temporary(-1)")
        c.equal(
            before,
            [(i.key, i.size) for i in store.list()],
            "objects after remove_temporary",
        )
        c.equal(data, c.read("temporary/keep"), "an object after remove_temporary")


def _atomic_write(c: _Context) -> None:
    """A write under way never shows: readers see the old object, or none."""
    if not c.atomic:
        return
    old = b"the previous object"
    c.store.write("atomic/old", old)
    data = _pattern(400_000, 10)
    for key, before in (("atomic/new", None), ("atomic/old", old)):
        seen: list[str] = []

        def observing(
            key: str = key, before: bytes | None = before, seen: list[str] = seen
        ) -> Iterator[bytes]:
            yield data[:300_000]
            # the store holds part of the data and has not published it yet
            if before is None:
                try:
                    c.store.stat(key)
                    seen.append("stat() found the object")
                except ObjectNotFound:
                    pass
                if key in [i.key for i in c.store.list(key)]:
                    seen.append("list() shows the object")
            else:
                got = c.read(key)
                if got != before:
                    seen.append(f"a read returned {_short(got)}")
            yield data[300_000:]

        with c.under("atomic_write"):
            c.store.write(key, observing())
            c.check(not seen, f"{key!r} during its write: {'; '.join(seen)}")
            c.equal(data, c.read(key), f"{key!r} after its write")


def _key_of_length(prefix: str, length: int) -> str:
    """A valid ASCII key of ``length`` bytes: ``prefix``, then 100-byte segments."""
    size = length - len(prefix)
    if size < 1:
        prefix, size = "", length
    chars = ["/" if i % 101 == 100 and i != size - 1 else "k" for i in range(size)]
    return prefix + "".join(chars)


def _max_key_length(c: _Context) -> None:
    limit = c.store.capabilities.max_key_length
    with c.under("max_key_length"):
        if limit is None:
            # no limit declared: a key past the common 1,024 bytes must work
            long_key = _key_of_length("keylength/", 1500)
            c.store.write(long_key, b"long")
            c.equal(b"long", c.read(long_key), "an object under a 1,500-byte key")
            return
        if limit > 64 * 1024:
            return  # too long to try cheaply
        longest = _key_of_length("keylength/", limit)
        c.store.write(longest, b"longest")
        c.equal(b"longest", c.read(longest), f"an object under a {limit}-byte key")
        c.check(
            longest in [i.key for i in c.store.list("keylength/")],
            f"list() misses the {limit}-byte key",
        )
        c.store.delete(longest)
        c.absent(longest, f"after deleting the {limit}-byte key")
        too_long = _key_of_length("keylength/", limit + 1)
        for name, call in (
            ("write", functools.partial(c.store.write, too_long, b"x")),
            ("stat", functools.partial(c.store.stat, too_long)),
            ("open_read", functools.partial(c.store.open_read, too_long)),
            ("delete", functools.partial(c.store.delete, too_long)),
        ):
            c.raises(InvalidKey, call, f"{name} of a key of {limit + 1} bytes")
        c.equal([], [i.key for i in c.store.list("keylength/")], "keys after refusals")


def _resumable_uploads(c: _Context) -> None:
    """An interrupted large write, written again, gives the new data only."""
    if not c.store.capabilities.resumable_uploads:
        return
    size = c.large_size
    cut = size * 2 // 3

    def interrupted(seed: int) -> Iterator[bytes]:
        sent = 0
        for chunk in _chunks(size, _MIB, seed):
            if sent + len(chunk) > cut:
                yield chunk[: cut - sent]
                raise BackendUnavailable("check_store: the source broke off")
            yield chunk
            sent += len(chunk)

    for attempt, (first, second) in enumerate(((11, 11), (11, 12))):
        key = f"resume/object{attempt}"
        c.raises(
            BackendUnavailable,
            functools.partial(c.store.write, key, interrupted(first)),
            "a large write whose source broke off",
        )
        c.absent_after_failure(key, "after an interrupted large write")
        expected = hashlib.sha256()
        for chunk in _chunks(size, _MIB, second):
            expected.update(chunk)
        what = "the same data" if first == second else "other data"
        with c.under("resumable_uploads"):
            info = c.store.write(
                key,
                _chunks(size, _MIB, second),
                size=size,
                checksums={"sha256": expected.hexdigest()},
            )
            c.equal(size, info.size, f"size after writing {what} again")
            got = hashlib.sha256()
            with c.store.open_read(key) as f:
                while chunk := f.read(_MIB):
                    got.update(chunk)
            c.equal(
                expected.hexdigest(),
                got.hexdigest(),
                f"sha256 read back after an interrupted write and {what}",
            )


def _read_only(c: _Context) -> None:
    with c.under("read_only"):
        if not c.store.capabilities.read_only:
            c.store.write("writable", b"x")
            c.store.delete("writable")
            c.absent("writable", "after delete")
            return
        c.raises(
            StorageError,
            lambda: c.store.write("read-only/new", b"x"),
            "write to a read-only store",
        )
        c.raises(
            StorageError,
            lambda: c.store.delete("read-only/new"),
            "delete on a read-only store",
        )
        c.absent("read-only/new", "after a refused write")


def _optional_protocols(c: _Context) -> None:
    """Each Protocol flag agrees with the Protocols the store implements."""
    for flag in OPTIONAL_PROTOCOLS.values():
        c.implements(flag)


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
    c.absent_after_failure("large/bad", "after a large write with a wrong sha256")


def _url(c: _Context) -> None:
    """The store's url opens the same store again (``open_store`` or the given opener)."""
    url = c.store.url
    c.check(isinstance(url, str) and url != "", f"url {url!r} is not a string")
    netloc = urlsplit(url).netloc
    c.check("@" not in netloc, f"url {url!r} holds credentials (user@host)")
    opener = c.open_url or open_store
    try:
        again = opener(url)
    except Exception as e:
        raise c.fail(
            f"its url {url!r} does not open again ({type(e).__name__}: {e}); "
            "a plan records the url and a resume opens it: register the "
            "scheme's factory (entry point group carmigrate.stores), or pass "
            "check_store(open_url=...)"
        ) from e
    try:
        c.equal(url, again.url, "the url of the store its url opens")
        if url.startswith("memory://"):
            return  # a new MemoryStore each time: nothing is shared
        c.store.write("url/seen", b"through the url")
        c.equal(
            b"through the url",
            read_bytes(again, "url/seen"),
            "an object read through the store its url opens",
        )
    finally:
        again.close()


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
    "optional_protocols": _optional_protocols,
    "atomic_write": _atomic_write,
    "cold_tier": _cold_tier,
    "presigned_urls": _presigned_urls,
    "temporary_cleanup": _temporary_cleanup,
    "max_key_length": _max_key_length,
    "resumable_uploads": _resumable_uploads,
    "read_only": _read_only,
    "url": _url,
}

_READ_ONLY_CHECKS: Final = frozenset({"optional_protocols", "read_only"})
# "url" writes through the store: a read-only store is checked only by reopening
"""Checks that also run on a read-only store."""

STORE_CHECKS: Final = tuple(_CHECKS)
"""Names of the checks [check_store][carmigrate.testing.check_store] runs, in order.

Pass a subset as ``checks=`` to run only those (for example, one pytest
test per check). The checks named after a
[Capabilities][carmigrate.storage.Capabilities] flag (``server_side_copy``,
``cold_tier``, ``presigned_urls``, ``temporary_cleanup``, ``atomic_write``,
``max_key_length``, ``resumable_uploads``, ``read_only``) hold the store to
that flag; ``optional_protocols`` checks the four Protocol flags at once
without writing anything.
"""


def check_store(
    make_store: Callable[[], Store],
    *,
    checks: Iterable[str] | None = None,
    large_size: int = 12 * 1024 * 1024 + 123,
    open_url: Callable[[str], Store] | None = None,
) -> None:
    """Check that a Store keeps the contract, with plain assertions.

    Runs each check in [STORE_CHECKS][carmigrate.testing.STORE_CHECKS] (or
    those named in ``checks``) against a fresh, empty store from
    ``make_store``, closing it afterwards.

    Covered for every store: write and read back from bytes, streams and
    iterables; ranged reads with slice semantics; stat; empty objects;
    missing objects (``ObjectNotFound``); invalid keys (``InvalidKey``);
    listing order and prefixes with Unicode keys; delete; expected
    checksums; and a large object streamed in chunks.

    Every [Capabilities][carmigrate.storage.Capabilities] flag is held
    against what the store does, and a failure names the flag:

    - ``server_side_copy``, ``cold_tier``, ``presigned_urls``,
      ``temporary_cleanup``: the flag is true exactly when the store
      implements the matching optional Protocol (a store that implements
      ``SupportsRestore`` but says ``cold_tier=False`` fails too); then
      ``copy_from`` copies within the store (keeping or replacing metadata,
      refusing an if-absent copy over an object) when ``can_copy_from``
      accepts the store itself; ``request_restore`` refuses missing keys and
      objects that are not cold; ``presign`` returns a URL for ``GET`` and
      ``PUT`` and refuses other methods; ``remove_temporary`` returns a
      ``TemporaryCleanup``, refuses a negative age and leaves every object alone.
    - ``atomic_write``: a write under way shows neither a new object nor a
      changed one, and a checksum mismatch, a size mismatch or a failing
      source leaves nothing visible and a previous object intact (not
      required when the flag is false).
    - ``conditional_write``: an if-absent write is refused with
      ``ObjectExists``, and of six racing writers exactly one wins.
    - ``sorted_listing``: ``list`` yields keys in order.
    - ``user_metadata``: metadata is kept, or refused when not declared.
    - ``hierarchical_keys``: ``a`` and ``a/b`` exclude each other, or
      coexist when not declared.
    - ``native_checksums``: ``stat`` reports the declared digests of a
      small object, and ``stat`` and ``list`` report no others; every
      reported digest is right.
    - ``max_key_length``: a key of exactly that many bytes works, one byte
      more is ``InvalidKey`` everywhere; with no limit, a 1,500-byte key
      works.
    - ``resumable_uploads``: after a large write broken off by a transient
      error, writing the same key again (with the same data, or other
      data) stores exactly what was written last.
    - ``read_only``: ``write`` and ``delete`` fail with ``StorageError``
      and leave nothing; a writable store can write and delete.
    - ``url``: ``url`` holds no credentials and opens the same store again
      (the same ``url``, and an object written through one is read through
      the other; ``memory://`` stores are new each time), as a resume opens
      a plan's stores from their urls.

    Not checked: ``range_reads`` (whether only the range is fetched cannot
    be seen from outside; range semantics are checked for every store) and
    ``max_object_size``.

    Needs no test framework: failures raise ``AssertionError`` naming the
    check and the store.

    Args:
        make_store: Returns a new, empty, writable store each time it is
            called (for example, a fresh temporary folder or bucket prefix).
            Only ``optional_protocols`` and ``read_only`` also accept a
            read-only store.
        checks: Names of the checks to run (default: all).
        large_size: Size in bytes of the large streamed object (default just
            over 12 MiB, enough for a few multipart parts).
        open_url: What opens a url for the ``url`` check (default
            [open_store][carmigrate.storage.open_store]; pass your scheme's
            factory to check it before it is registered).

    Raises:
        AssertionError: A check failed; the message says which and why.
        ValueError: An unknown check name, or the store is read-only and a
            check needs to write.
    """
    names = STORE_CHECKS if checks is None else tuple(checks)
    unknown = [n for n in names if n not in _CHECKS]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; choose from {STORE_CHECKS}")
    for name in names:
        store = make_store()
        try:
            if store.capabilities.read_only and name not in _READ_ONLY_CHECKS:
                raise ValueError(
                    f"check_store needs a writable store, {store.url} is read-only "
                    f"(only {sorted(_READ_ONLY_CHECKS)} run on read-only stores)"
                )
            ctx = _Context(store, large_size=large_size, open_url=open_url)
            ctx.name = name
            _CHECKS[name](ctx)
        finally:
            store.close()
