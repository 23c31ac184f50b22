"""ObjectInfo, Capabilities and RestoreStatus are frozen, hashable values."""

from __future__ import annotations

import datetime

import attrs
import pytest

from carmigrate.storage import (
    COLD_STORAGE_CLASSES,
    Capabilities,
    ObjectInfo,
    RestoreStatus,
)


def test_object_info_is_frozen_and_hashable() -> None:
    """Mappings inside are immutable too, and equal infos hash equally."""
    a = ObjectInfo(key="k", size=1, checksums={"md5": "x"}, metadata={"a": "b"})
    b = ObjectInfo(key="k", size=1, checksums={"md5": "x"}, metadata={"a": "b"})

    assert a == b
    assert hash(a) == hash(b)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        a.size = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.checksums["md5"] = "y"  # type: ignore[index]
    assert a.checksums == {"md5": "x"}


def test_cold_property() -> None:
    """Cold = a cold class without a finished restore; GLACIER_IR is not cold."""
    done = RestoreStatus(in_progress=False, expiry=datetime.datetime.now(datetime.UTC))

    assert ObjectInfo(key="k", size=1, storage_class="GLACIER").cold
    assert ObjectInfo(
        key="k",
        size=1,
        storage_class="DEEP_ARCHIVE",
        restore=RestoreStatus(in_progress=True),
    ).cold
    assert not ObjectInfo(key="k", size=1, storage_class="GLACIER", restore=done).cold
    assert not ObjectInfo(key="k", size=1, storage_class="GLACIER_IR").cold
    assert not ObjectInfo(key="k", size=1).cold
    # Azure's Archive tier is cold; its Cool and Cold tiers read like Hot
    assert ObjectInfo(key="k", size=1, storage_class="Archive").cold
    assert not ObjectInfo(key="k", size=1, storage_class="Cold").cold
    assert {"GLACIER", "DEEP_ARCHIVE", "Archive"} == COLD_STORAGE_CLASSES


def test_capabilities_defaults_are_conservative() -> None:
    """A bare Capabilities promises only what every store must do."""
    caps = Capabilities()

    assert caps.sorted_listing
    assert caps.atomic_write
    assert caps.range_reads
    assert not (caps.conditional_write)
    assert not (caps.server_side_copy)
    assert not (caps.user_metadata)
    assert caps.native_checksums == frozenset()
