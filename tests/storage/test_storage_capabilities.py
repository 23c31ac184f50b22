"""The capability flags of the optional Protocols follow from the Protocols."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import fsspec
import pytest

from carmigrate.storage import (
    Capabilities,
    FsspecStore,
    LocalStore,
    MemoryStore,
    ObjectInfo,
    S3Store,
    Store,
    SupportsPresignedUrls,
    SupportsRestore,
    SupportsServerSideCopy,
    SupportsTemporaryCleanup,
    capabilities_of,
)
from carmigrate.storage.lowlevel import (
    DEFAULT_MAX_KEY_LENGTH,
    OPTIONAL_PROTOCOLS,
    derive_capabilities,
)

FLAGS = {
    SupportsServerSideCopy: "server_side_copy",
    SupportsRestore: "cold_tier",
    SupportsPresignedUrls: "presigned_urls",
    SupportsTemporaryCleanup: "temporary_cleanup",
}


def _offline_s3(**options: Any) -> S3Store:
    """An S3Store that is never asked anything (boto3 connects lazily)."""
    return S3Store(
        "bucket",
        "prefix",
        endpoint_url="http://127.0.0.1:9",
        access_key_id="key",
        secret_access_key="secret",
        **options,
    )


def _flags(caps: Capabilities) -> dict[str, bool]:
    return {flag: getattr(caps, flag) for flag in FLAGS.values()}


def _implemented(store: object) -> dict[str, bool]:
    return {flag: isinstance(store, proto) for proto, flag in FLAGS.items()}


class _Base:
    """A hand-written store that declares whatever it is given."""

    def __init__(self, capabilities: Capabilities) -> None:
        self.inner = MemoryStore()
        self.url = "memory://hand-written"
        self.capabilities = capabilities

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def open_read(self, key: str, *, start: int = 0, end: int | None = None) -> Any:
        return self.inner.open_read(key, start=start, end=end)

    def write(self, key: str, data: Any, **kwargs: Any) -> ObjectInfo:
        return self.inner.write(key, data, **kwargs)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


class _Restores(_Base):
    def request_restore(
        self, key: str, *, days: int = 1, tier: str = "Standard"
    ) -> None:
        pass


def test_optional_protocols_map_each_protocol_to_its_flag() -> None:
    """The four optional Protocols, each with a Capabilities field."""
    assert dict(OPTIONAL_PROTOCOLS) == FLAGS
    assert set(FLAGS.values()) <= {a.name for a in attrs.fields(Capabilities)}
    with pytest.raises(TypeError):
        OPTIONAL_PROTOCOLS[SupportsRestore] = "x"  # type: ignore[index]


def test_a_claim_without_the_protocol_is_not_believed() -> None:
    """A store saying cold_tier=True without request_restore cannot restore."""
    liar = _Base(
        Capabilities(
            cold_tier=True,
            server_side_copy=True,
            presigned_urls=True,
            temporary_cleanup=True,
            user_metadata=True,
        )
    )

    caps = capabilities_of(liar)  # type: ignore[arg-type]

    assert _flags(caps) == dict.fromkeys(FLAGS.values(), False)
    assert caps.user_metadata  # the other fields are the store's own


def test_a_protocol_without_the_claim_is_reported() -> None:
    """A store implementing SupportsRestore has cold_tier, whatever it declares."""
    modest = _Restores(Capabilities())

    assert capabilities_of(modest).cold_tier  # type: ignore[arg-type]
    assert not capabilities_of(modest).server_side_copy  # type: ignore[arg-type]


def test_derive_capabilities_returns_the_same_value_when_consistent() -> None:
    """No copy when nothing changes; a corrected copy otherwise."""
    store = MemoryStore()
    caps = store.capabilities

    assert derive_capabilities(caps, store) is caps
    fixed = derive_capabilities(Capabilities(cold_tier=True), store)
    assert fixed.server_side_copy
    assert not fixed.cold_tier


def _backends(tmp_path: Path) -> dict[str, Store]:
    return {
        "local": LocalStore(tmp_path / "local"),
        "memory": MemoryStore(),
        "fsspec": FsspecStore(fsspec.filesystem("memory"), "/caps"),
        "s3": _offline_s3(),
        "s3-without-cold-tier": _offline_s3(cold_tier=False),
    }


EXPECTED = {
    "local": {"server_side_copy", "temporary_cleanup"},
    "memory": {"server_side_copy"},
    "fsspec": set(),
    "s3": {"server_side_copy", "cold_tier", "presigned_urls"},
    "s3-without-cold-tier": {"server_side_copy", "presigned_urls"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_backend_declares_exactly_its_protocols(
    name: str, tmp_path: Path
) -> None:
    """Each backend's own capabilities already agree with its Protocols."""
    store = _backends(tmp_path)[name]

    assert _implemented(store) == _flags(store.capabilities)
    assert {f for f, on in _flags(store.capabilities).items() if on} == EXPECTED[name]
    assert capabilities_of(store) == store.capabilities


def test_local_store_implements_temporary_cleanup(tmp_path: Path) -> None:
    """LocalStore.remove_temporary is reached through the Protocol."""
    store: Store = LocalStore(tmp_path / "root")
    temp = Path(tmp_path / "root" / ".carmigrate.tmp.left-behind")
    temp.write_bytes(b"partial")

    assert isinstance(store, SupportsTemporaryCleanup)
    assert capabilities_of(store).temporary_cleanup
    assert store.remove_temporary(older_than=0).removed == 1
    assert not temp.exists()
    assert not isinstance(MemoryStore(), SupportsTemporaryCleanup)


def test_s3_cold_tier_option_decides_the_protocol() -> None:
    """cold_tier=False gives an S3Store that is not a SupportsRestore at all."""
    warm = _offline_s3(cold_tier=False)
    cold = _offline_s3()

    assert isinstance(warm, S3Store)
    assert isinstance(cold, S3Store)
    assert not isinstance(warm, SupportsRestore)
    assert not hasattr(warm, "request_restore")
    assert not warm.capabilities.cold_tier
    assert isinstance(cold, SupportsRestore)
    assert cold.capabilities.cold_tier
    assert repr(cold).startswith("S3Store(")
    from_url = S3Store.from_url(
        "s3://bucket/p",
        endpoint_url="http://127.0.0.1:9",
        access_key_id="key",
        secret_access_key="secret",
        cold_tier=False,
    )
    assert not isinstance(from_url, SupportsRestore)


@pytest.mark.parametrize("name", ["local", "memory", "fsspec"])
def test_key_length_limit_is_declared(name: str, tmp_path: Path) -> None:
    """Backends that refuse keys over 1,024 bytes say so in max_key_length."""
    assert _backends(tmp_path)[name].capabilities.max_key_length == (
        DEFAULT_MAX_KEY_LENGTH
    )
