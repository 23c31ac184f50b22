"""Every backend in the repository passes check_store, one test per check."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import fsspec
import pytest
from storage_helpers import PART, S3Server

from carmigrate.storage import FsspecStore, LocalStore, MemoryStore, Store, open_store
from carmigrate.testing import STORE_CHECKS, FlakyStore, check_store

_counter = itertools.count()


def _local(tmp_path: Path) -> Callable[[], Store]:
    return lambda: LocalStore(tmp_path / f"root{next(_counter)}")


def _fsspec_memory(tmp_path: Path) -> Callable[[], Store]:
    fs = fsspec.filesystem("memory")
    return lambda: FsspecStore(fs, f"/conformance-{next(_counter)}")


def _fsspec_local(tmp_path: Path) -> Callable[[], Store]:
    fs = fsspec.filesystem("file")

    def make() -> Store:
        root = tmp_path / f"fs{next(_counter)}"
        root.mkdir()
        return FsspecStore(fs, str(root))

    return make


def _flaky_memory(tmp_path: Path) -> Callable[[], Store]:
    # a FlakyStore that never fails must be a correct Store too
    return lambda: FlakyStore(MemoryStore())


def _flaky_local(tmp_path: Path) -> Callable[[], Store]:
    # ... with the optional Protocols of a LocalStore passed through
    return lambda: FlakyStore(LocalStore(tmp_path / f"flaky{next(_counter)}"))


LOCAL_BACKENDS = {
    "memory": lambda tmp_path: MemoryStore,
    "local": _local,
    "fsspec-memory": _fsspec_memory,
    "fsspec-local": _fsspec_local,
    "flaky-memory": _flaky_memory,
    "flaky-local": _flaky_local,
}


@pytest.mark.parametrize("check", STORE_CHECKS)
@pytest.mark.parametrize("backend", sorted(LOCAL_BACKENDS))
def test_local_backends(backend: str, check: str, tmp_path: Path) -> None:
    """In-process backends keep the Store contract."""
    check_store(
        LOCAL_BACKENDS[backend](tmp_path), checks=[check], large_size=3 * 2**20 + 7
    )


@pytest.mark.parametrize("check", STORE_CHECKS)
def test_s3_backends(s3: S3Server, check: str) -> None:
    """S3Store keeps the Store contract on moto and on Swift (multipart on)."""
    check_store(
        s3.store_factory(),
        checks=[check],
        large_size=8 * PART + 123,
        # the url names bucket and prefix; where and who come from options
        open_url=lambda url: open_store(
            url,
            endpoint_url=s3.endpoint,
            access_key_id=s3.access_key,
            secret_access_key=s3.secret_key,
            region=s3.region,
            **s3.options,
        ),
    )


def test_check_store_rejects_unknown_checks() -> None:
    """A typo in a check name is an error, not a silent skip."""
    with pytest.raises(ValueError, match="unknown checks"):
        check_store(MemoryStore, checks=["roundtrip", "nope"])


def test_check_store_catches_a_broken_store() -> None:
    """A store that returns short data fails the suite with a clear message."""

    class ShortReads:
        def __init__(self) -> None:
            self._inner = MemoryStore()
            self.url = "memory://short"
            self.capabilities = self._inner.capabilities

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

        def open_read(self, key: str, *, start: int = 0, end: int | None = None):  # type: ignore[no-untyped-def]
            import io

            data = self._inner.open_read(key, start=start, end=end).read()
            return io.BytesIO(data[:-1])

    with pytest.raises(
        AssertionError, match=r"check_store\[roundtrip\] on memory://short"
    ):
        check_store(ShortReads, checks=["roundtrip"])  # type: ignore[arg-type]


def test_check_store_refuses_read_only_stores() -> None:
    """The suite needs to write; a read-only store is a usage error."""
    fs = fsspec.filesystem("memory")
    with pytest.raises(ValueError, match="read-only"):
        check_store(
            lambda: FsspecStore(fs, "/ro", read_only=True), checks=["roundtrip"]
        )


def test_the_url_check_catches_a_url_that_does_not_open_the_store(
    tmp_path: Path,
) -> None:
    """A store whose url does not open it again fails check_store[url] (#13 item 16)."""

    class WrongUrl(LocalStore):
        @property  # type: ignore[override]
        def url(self) -> str:
            return "nosuchscheme-xyz:" + str(self.root)

        @url.setter
        def url(self, value: str) -> None:
            pass

    with pytest.raises(
        AssertionError, match=r"check_store\[url\].*does not open again"
    ):
        check_store(lambda: WrongUrl(tmp_path / "a", create=True), checks=["url"])

    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(AssertionError, match="the store its url opens"):
        check_store(
            lambda: LocalStore(tmp_path / "b", create=True),
            checks=["url"],
            open_url=lambda url: LocalStore(other),  # the same url, other data
        )
    check_store(lambda: LocalStore(tmp_path / "c", create=True), checks=["url"])
