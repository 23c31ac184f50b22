"""check_store holds every Capabilities flag against what the store does.

Each toy store below gets one flag wrong; check_store must fail the check
and name the flag.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import fsspec
import pytest

from carmigrate.errors import InvalidKey
from carmigrate.storage import (
    Capabilities,
    FsspecStore,
    LocalStore,
    MemoryStore,
    ObjectInfo,
    Store,
    TemporaryCleanup,
    WriteData,
)
from carmigrate.storage.lowlevel import StoreWrapper, iter_chunks
from carmigrate.testing import STORE_CHECKS, check_store

_counter = itertools.count()


class Declaring(StoreWrapper):
    """Wraps a store and declares ``changes`` on top of its capabilities."""

    changes: Mapping[str, Any] = {}

    @property
    def capabilities(self) -> Capabilities:
        return attrs.evolve(super().capabilities, **self.changes)


def declaring(base: type[StoreWrapper] = Declaring, **changes: Any) -> type:
    return type("Declaring", (base,), {"changes": changes})


class HandWritten:
    """A store written without StoreWrapper: it declares what it is given."""

    def __init__(self, **changes: Any) -> None:
        self.inner = MemoryStore()
        self.url = "memory://hand-written"
        self.capabilities = attrs.evolve(
            self.inner.capabilities, **{"server_side_copy": False, **changes}
        )

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def open_read(self, key: str, *, start: int = 0, end: int | None = None) -> Any:
        return self.inner.open_read(key, start=start, end=end)

    def write(self, key: str, data: WriteData, **kwargs: Any) -> ObjectInfo:
        return self.inner.write(key, data, **kwargs)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


class QuietlyRestores(HandWritten):
    """Implements SupportsRestore (and follows its contract), says cold_tier=False."""

    def request_restore(
        self, key: str, *, days: int = 1, tier: str = "Standard"
    ) -> None:
        self.inner.stat(key)
        raise InvalidKey("never cold", key=key)


class RestoresAnything(StoreWrapper):
    """request_restore accepts even missing keys."""

    def request_restore(
        self, key: str, *, days: int = 1, tier: str = "Standard"
    ) -> None:
        pass


class BadPresign(StoreWrapper):
    def presign(self, key: str, *, expires_in: int = 3600, method: str = "GET") -> str:
        return "not a url"


class NoCount(StoreWrapper):
    def remove_temporary(self, older_than: float = 3600.0) -> TemporaryCleanup:
        return None  # type: ignore[return-value]


class Sweeper(StoreWrapper):
    """Its cleanup removes objects too."""

    def remove_temporary(self, older_than: float = 3600.0) -> TemporaryCleanup:
        if older_than < 0:
            raise ValueError(older_than)
        for info in list(self.inner.list()):
            self.inner.delete(info.key)
        return TemporaryCleanup()


class BadCopy(StoreWrapper):
    """Server-side copy that loses the last byte."""

    def can_copy_from(self, source: Store) -> bool:
        return source is self

    def copy_from(
        self,
        source: Store,
        source_key: str,
        key: str,
        *,
        if_absent: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        data = self.inner.open_read(source_key).read()
        return self.inner.write(key, data[:-1], if_absent=if_absent)


class ExtraDigest(StoreWrapper):
    """stat reports a SHA-1 that native_checksums does not declare."""

    def stat(self, key: str) -> ObjectInfo:
        info = super().stat(key)
        with self.inner.open_read(key) as f:
            sha1 = hashlib.sha1(f.read(), usedforsecurity=False).hexdigest()
        return attrs.evolve(info, checksums={**info.checksums, "sha1": sha1})


class WrongDigest(StoreWrapper):
    """stat reports a wrong MD5."""

    def stat(self, key: str) -> ObjectInfo:
        info = super().stat(key)
        return attrs.evolve(info, checksums={**info.checksums, "md5": "0" * 32})


class Progressive(StoreWrapper):
    """Publishes each chunk as it arrives: a write under way is visible."""

    def write(self, key: str, data: WriteData, **kwargs: Any) -> ObjectInfo:
        body = b""
        info = None
        for chunk in iter_chunks(data):
            body += bytes(chunk)
            info = self.inner.write(key, body)
        return info or self.inner.write(key, b"")


class StaleParts(StoreWrapper):
    """'Resumes' an interrupted write by keeping its bytes, whatever comes next."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.pending: dict[str, bytes] = {}

    @property
    def capabilities(self) -> Capabilities:
        return attrs.evolve(super().capabilities, resumable_uploads=True)

    def write(self, key: str, data: WriteData, **kwargs: Any) -> ObjectInfo:
        body = bytearray()
        try:
            for chunk in iter_chunks(data):
                body += chunk
        except Exception:
            self.pending[key] = bytes(body)
            raise
        old = self.pending.pop(key, b"")
        return self.inner.write(key, old + bytes(body[len(old) :]))


class Reversed(StoreWrapper):
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return reversed(list(super().list(prefix)))


class Overwrites(StoreWrapper):
    """Ignores if_absent."""

    def write(self, key: str, data: WriteData, **kwargs: Any) -> ObjectInfo:
        kwargs.pop("if_absent", None)
        return super().write(key, data, **kwargs)


class DropsMetadata(StoreWrapper):
    def write(self, key: str, data: WriteData, **kwargs: Any) -> ObjectInfo:
        kwargs.pop("metadata", None)
        return super().write(key, data, **kwargs)


def _local(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / f"root{next(_counter)}")


CASES: dict[str, tuple[Callable[[Path], Store], str, str]] = {
    # the four Protocol flags: declared without the Protocol, or the reverse
    "cold_tier claimed": (
        lambda p: HandWritten(cold_tier=True),  # type: ignore[arg-type,return-value]
        "cold_tier",
        r"capabilities\.cold_tier is True but the store does not implement "
        r"SupportsRestore \(request_restore\)",
    ),
    "cold_tier hidden": (
        lambda p: QuietlyRestores(),  # type: ignore[return-value]
        "cold_tier",
        r"capabilities\.cold_tier is False but the store implements SupportsRestore",
    ),
    "cold_tier hidden, all flags": (
        lambda p: QuietlyRestores(),  # type: ignore[return-value]
        "optional_protocols",
        r"check_store\[optional_protocols\].*capabilities\.cold_tier is False",
    ),
    "server_side_copy claimed": (
        lambda p: HandWritten(server_side_copy=True),  # type: ignore[return-value]
        "server_side_copy",
        r"capabilities\.server_side_copy is True but the store does not implement "
        r"SupportsServerSideCopy \(can_copy_from, copy_from\)",
    ),
    "presigned_urls claimed": (
        lambda p: HandWritten(presigned_urls=True),  # type: ignore[return-value]
        "presigned_urls",
        r"capabilities\.presigned_urls is True but the store does not implement "
        r"SupportsPresignedUrls",
    ),
    "temporary_cleanup claimed": (
        lambda p: HandWritten(temporary_cleanup=True),  # type: ignore[return-value]
        "temporary_cleanup",
        r"capabilities\.temporary_cleanup is True but the store does not implement "
        r"SupportsTemporaryCleanup \(remove_temporary\)",
    ),
    "server_side_copy hidden by a wrapper": (
        lambda p: declaring(server_side_copy=False)(MemoryStore()),
        "optional_protocols",
        r"capabilities\.server_side_copy is False but the store implements "
        r"SupportsServerSideCopy",
    ),
    # the Protocols' behaviour
    "server-side copy loses data": (
        lambda p: BadCopy(MemoryStore()),
        "server_side_copy",
        r"copy_from\(\)\.size: expected 70000, got 69999 "
        r"\[capabilities\.server_side_copy=True\]",
    ),
    "restore of a missing key": (
        lambda p: RestoresAnything(MemoryStore()),
        "cold_tier",
        r"request_restore of a missing key: expected ObjectNotFound, nothing was "
        r"raised \[capabilities\.cold_tier=True\]",
    ),
    "presign returns no URL": (
        lambda p: BadPresign(MemoryStore()),
        "presigned_urls",
        r"returned 'not a url', not a URL \[capabilities\.presigned_urls=True\]",
    ),
    "cleanup returns no count": (
        lambda p: NoCount(MemoryStore()),
        "temporary_cleanup",
        r"returned None, not a TemporaryCleanup \[capabilities\.temporary_cleanup=True\]",
    ),
    "cleanup removes objects": (
        lambda p: Sweeper(MemoryStore()),
        "temporary_cleanup",
        r"objects after remove_temporary: .*\[capabilities\.temporary_cleanup=True\]",
    ),
    # the other flags
    "write under way is visible": (
        lambda p: Progressive(MemoryStore()),
        "atomic_write",
        r"'atomic/new' during its write: stat\(\) found the object; list\(\) shows "
        r"the object \[capabilities\.atomic_write=True\]",
    ),
    "listing out of order": (
        lambda p: Reversed(MemoryStore()),
        "listing",
        r"list\(\) of everything: .*\[capabilities\.sorted_listing=True\]",
    ),
    "if_absent not atomic": (
        lambda p: Overwrites(MemoryStore()),
        "if_absent",
        r"nothing was raised \[capabilities\.conditional_write=True\]",
    ),
    "racing writers all win": (
        lambda p: Overwrites(MemoryStore()),
        "if_absent_race",
        r"number of racing if_absent writers that won: expected 1, got 6 "
        r"\[capabilities\.conditional_write=True\]",
    ),
    "metadata dropped": (
        lambda p: DropsMetadata(MemoryStore()),
        "metadata",
        r"stat\(\)\.metadata: .*\[capabilities\.user_metadata=True\]",
    ),
    "metadata kept but not declared": (
        lambda p: declaring(user_metadata=False)(MemoryStore()),
        "metadata",
        r"write with metadata: expected StorageError, nothing was raised "
        r"\[capabilities\.user_metadata=False\]",
    ),
    "hierarchy not declared": (
        lambda p: declaring(hierarchical_keys=False)(_local(p)),
        "hierarchy",
        r"unexpected InvalidKey: .*\[capabilities\.hierarchical_keys=False\]",
    ),
    "hierarchy declared": (
        lambda p: declaring(hierarchical_keys=True)(MemoryStore()),
        "hierarchy",
        r"a key below an existing object: expected InvalidKey or StorageError, "
        r"nothing was raised \[capabilities\.hierarchical_keys=True\]",
    ),
    "undeclared native digest": (
        lambda p: ExtraDigest(MemoryStore()),
        "checksums",
        r"stat\(\)\.checksums reports \['sha1'\], which capabilities\.native_checksums "
        r"does not declare \[capabilities\.native_checksums=",
    ),
    "wrong native digest": (
        lambda p: WrongDigest(MemoryStore()),
        "checksums",
        r"stat\(\)\.checksums\['md5'\].*\[capabilities\.native_checksums=",
    ),
    "key limit overstated": (
        lambda p: declaring(max_key_length=2000)(MemoryStore()),
        "max_key_length",
        r"unexpected InvalidKey: key 'keylength/k+/.*\.\.\. "
        r"\[capabilities\.max_key_length=2000\]",
    ),
    "key limit understated": (
        lambda p: declaring(max_key_length=100)(MemoryStore()),
        "max_key_length",
        r"write of a key of 101 bytes: expected InvalidKey, nothing was raised "
        r"\[capabilities\.max_key_length=100\]",
    ),
    "key limit hidden": (
        lambda p: declaring(max_key_length=None)(MemoryStore()),
        "max_key_length",
        r"unexpected InvalidKey: .*\[capabilities\.max_key_length=None\]",
    ),
    "resumed upload keeps stale bytes": (
        lambda p: StaleParts(MemoryStore()),
        "resumable_uploads",
        r"sha256 read back after an interrupted write and other data: .*"
        r"\[capabilities\.resumable_uploads=True\]",
    ),
    "read-only store that writes": (
        lambda p: declaring(read_only=True)(MemoryStore()),
        "read_only",
        r"write to a read-only store: expected StorageError, nothing was raised "
        r"\[capabilities\.read_only=True\]",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_wrong_flag_is_caught_and_named(case: str, tmp_path: Path) -> None:
    """The toy store fails the check named for it, and the message names the flag."""
    make, check, message = CASES[case]

    with pytest.raises(AssertionError, match=message) as raised:
        check_store(lambda: make(tmp_path), checks=[check], large_size=300_000)
    assert f"check_store[{check}]" in str(raised.value)


def test_every_flag_has_a_check() -> None:
    """Each flag is checked somewhere (range_reads and max_object_size excepted)."""
    flag_checks = {
        "server_side_copy": "server_side_copy",
        "cold_tier": "cold_tier",
        "presigned_urls": "presigned_urls",
        "temporary_cleanup": "temporary_cleanup",
        "atomic_write": "atomic_write",
        "conditional_write": "if_absent",
        "sorted_listing": "listing",
        "user_metadata": "metadata",
        "hierarchical_keys": "hierarchy",
        "native_checksums": "checksums",
        "max_key_length": "max_key_length",
        "resumable_uploads": "resumable_uploads",
        "read_only": "read_only",
    }
    fields = {a.name for a in attrs.fields(Capabilities)}

    assert fields - set(flag_checks) == {"range_reads", "max_object_size"}
    assert set(flag_checks.values()) <= set(STORE_CHECKS)
    assert "optional_protocols" in STORE_CHECKS


def test_consistent_toys_pass(tmp_path: Path) -> None:
    """Honest declarations pass the same checks: the toys above fail for their flag."""
    check_store(
        lambda: declaring(max_key_length=1024, read_only=False)(MemoryStore()),
        checks=["max_key_length", "read_only", "optional_protocols", "cold_tier"],
    )
    check_store(
        lambda: declaring(hierarchical_keys=True)(_local(tmp_path)),
        checks=["hierarchy", "temporary_cleanup", "server_side_copy"],
    )


def test_read_only_stores_run_the_read_only_checks() -> None:
    """A read-only store passes optional_protocols and read_only, and nothing else runs."""
    fs = fsspec.filesystem("memory")

    def make() -> Store:
        return FsspecStore(fs, f"/ro{next(_counter)}", read_only=True)

    check_store(make, checks=["optional_protocols", "read_only"])
    with pytest.raises(ValueError, match="read-only"):
        check_store(make)
