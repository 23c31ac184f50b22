"""StoreWrapper: a wrapper implements exactly the optional Protocols of its store."""

from __future__ import annotations

import copy
import os
import pickle
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import attrs
import fsspec
import pytest
from storage_helpers import ColdMemoryStore

from carmigrate.errors import ColdObject
from carmigrate.storage import (
    Capabilities,
    FsspecStore,
    LocalStore,
    MemoryStore,
    ObjectInfo,
    Store,
    SupportsPresignedUrls,
    SupportsRestore,
    SupportsServerSideCopy,
    SupportsTemporaryCleanup,
    TemporaryCleanup,
    capabilities_of,
    copy_object,
    read_bytes,
    restore_object,
)
from carmigrate.storage.lowlevel import StoreWrapper

T = TypeVar("T")

PROTOCOLS = (
    SupportsServerSideCopy,
    SupportsRestore,
    SupportsPresignedUrls,
    SupportsTemporaryCleanup,
)


class Recording(StoreWrapper):
    """Records every forwarded call."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.calls: list[tuple[str, str]] = []

    def forward(self, method: str, key: str, call: Callable[[], T]) -> T:
        self.calls.append((method, key))
        return call()


class Everything(ColdMemoryStore):
    """Implements all four optional Protocols."""

    def __init__(self) -> None:
        super().__init__()  # derives the flags from this class: all four
        self.cleanups: list[float] = []

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
        assert source is self, source
        return self.inner.copy_from(
            self.inner, source_key, key, if_absent=if_absent, metadata=metadata
        )

    def presign(self, key: str, *, expires_in: int = 3600, method: str = "GET") -> str:
        return f"https://example.invalid/{key}?method={method}&expires={expires_in}"

    def remove_temporary(self, older_than: float = 3600.0) -> TemporaryCleanup:
        self.cleanups.append(older_than)
        return TemporaryCleanup(removed=7)


def implemented(store: object) -> set[str]:
    return {p.__name__ for p in PROTOCOLS if isinstance(store, p)}


def test_wrapper_of_a_store_with_every_protocol_has_them_all() -> None:
    """Each optional Protocol is forwarded, through forward()."""
    inner = Everything()
    inner.write("k", b"v")
    wrapper = Recording(inner)

    assert isinstance(wrapper, Recording)
    assert isinstance(wrapper, StoreWrapper)
    assert implemented(wrapper) == {p.__name__ for p in PROTOCOLS}
    caps = wrapper.capabilities
    assert caps.server_side_copy
    assert caps.cold_tier
    assert caps.presigned_urls
    assert caps.temporary_cleanup
    assert caps == capabilities_of(wrapper)
    assert isinstance(wrapper, SupportsRestore)
    wrapper.request_restore("k", days=3, tier="Bulk")
    assert inner.requests == [("k", 3, "Bulk")]
    assert isinstance(wrapper, SupportsPresignedUrls)
    assert wrapper.presign("k", method="PUT").endswith("method=PUT&expires=3600")
    assert isinstance(wrapper, SupportsTemporaryCleanup)
    assert wrapper.remove_temporary(5.0) == TemporaryCleanup(removed=7)
    assert inner.cleanups == [5.0]
    assert isinstance(wrapper, SupportsServerSideCopy)
    assert wrapper.can_copy_from(wrapper)  # the wrapper stands for its store
    assert not wrapper.can_copy_from(MemoryStore())
    wrapper.copy_from(wrapper, "k", "k2")
    assert read_bytes(inner.inner, "k2") == b"v"
    assert wrapper.calls == [
        ("request_restore", "k"),
        ("presign", "k"),
        ("remove_temporary", ""),
        ("copy_from", "k2"),
    ]


def test_wrapper_of_a_local_store_cannot_restore(tmp_path: Path) -> None:
    """Around LocalStore: server-side copy and cleanup, no restore, no presign."""
    local = LocalStore(tmp_path / "root")
    wrapper = Recording(local)

    assert implemented(wrapper) == {
        "SupportsServerSideCopy",
        "SupportsTemporaryCleanup",
    }
    assert not hasattr(wrapper, "request_restore")
    assert not wrapper.capabilities.cold_tier
    assert not wrapper.capabilities.presigned_urls
    assert wrapper.capabilities == local.capabilities
    stale = tmp_path / "root" / ".carmigrate.tmp.stale"
    stale.write_bytes(b"x")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert isinstance(wrapper, SupportsTemporaryCleanup)
    assert wrapper.remove_temporary().removed == 1
    assert not stale.exists()


def test_wrapper_of_a_plain_store_is_the_class_itself() -> None:
    """No optional Protocol: no subclass is made."""

    class Plain(ColdMemoryStore):
        request_restore = None  # type: ignore[assignment]  # opted out

    wrapper = Recording(Plain())  # type: ignore[arg-type]

    assert type(wrapper) is Recording
    assert implemented(wrapper) == set()


def test_restore_through_a_wrapper() -> None:
    """A wrapped cold store restores: restore_object works through the wrapper."""
    cold = ColdMemoryStore(polls=2)
    cold.write("frozen", b"data")
    wrapper = Recording(cold)
    with pytest.raises(ColdObject):
        read_bytes(wrapper, "frozen")

    info = restore_object(wrapper, "frozen", poll_interval=0, sleep=lambda s: None)

    assert not info.cold
    assert read_bytes(wrapper, "frozen") == b"data"
    assert ("request_restore", "frozen") in wrapper.calls


def test_made_classes_are_reused_and_keep_the_name() -> None:
    """One subclass per wrapper class and set of Protocols."""
    a, b = Recording(MemoryStore()), Recording(MemoryStore())
    c = Recording(ColdMemoryStore())

    assert type(a) is type(b)
    assert type(a) is not type(c)
    assert type(a).__name__ == "Recording"
    assert type(a).__mro__[1] is Recording
    assert repr(a) == "Recording(MemoryStore(''))"


def test_forwarded_protocols_can_hide_server_side_copy() -> None:
    """A wrapper that must see every write hides server-side copy."""

    class SeesEveryWrite(StoreWrapper):
        forwarded_protocols = frozenset({SupportsRestore})

    wrapper = SeesEveryWrite(MemoryStore())
    source = MemoryStore()
    source.write("k", b"v")

    assert not isinstance(wrapper, SupportsServerSideCopy)
    assert not wrapper.capabilities.server_side_copy
    copy_object(source, "k", wrapper)  # streams
    assert isinstance(SeesEveryWrite(ColdMemoryStore()), SupportsRestore)


def test_unknown_forwarded_protocols_are_refused() -> None:
    """forwarded_protocols names only optional store Protocols."""
    with pytest.raises(TypeError, match="not optional store Protocols"):

        class Wrong(StoreWrapper):
            forwarded_protocols = frozenset({Store})


def test_a_wrapper_may_implement_a_protocol_itself() -> None:
    """Its own request_restore makes it a SupportsRestore, and says so."""

    class Thawing(StoreWrapper):
        def request_restore(
            self, key: str, *, days: int = 1, tier: str = "Standard"
        ) -> None:
            self.asked = key

    wrapper = Thawing(MemoryStore())

    assert isinstance(wrapper, SupportsRestore)
    assert wrapper.capabilities.cold_tier
    assert wrapper.capabilities.server_side_copy  # forwarded from MemoryStore
    wrapper.request_restore("k")
    assert wrapper.asked == "k"


def test_a_subclass_may_change_other_flags() -> None:
    """capabilities can be narrowed from super().capabilities."""

    class Unsorted(StoreWrapper):
        @property
        def capabilities(self) -> Capabilities:
            return attrs.evolve(super().capabilities, sorted_listing=False)

        def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
            return reversed(list(super().list(prefix)))

    wrapper = Unsorted(MemoryStore())

    assert not wrapper.capabilities.sorted_listing
    assert wrapper.capabilities.server_side_copy


def test_wrappers_nest() -> None:
    """A wrapper of a wrapper has the Protocols of the innermost store."""
    wrapper = Recording(Recording(ColdMemoryStore()))

    assert implemented(wrapper) == {"SupportsRestore"}
    assert wrapper.capabilities.cold_tier


def test_wrapper_without_super_init_still_knows_its_store() -> None:
    """The wrapped store is bound before __init__ runs."""

    class Forgetful(StoreWrapper):
        def __init__(self, inner: Store, label: str) -> None:
            self.label = label

    wrapper = Forgetful(MemoryStore("m"), "x")

    assert wrapper.url == "memory://m"
    assert wrapper.label == "x"


class Labelled(StoreWrapper):
    """A module-level wrapper, so that pickle can find its class."""

    def __init__(self, inner: Store, label: str) -> None:
        super().__init__(inner)
        self.label = label


def test_wrappers_pickle_and_copy(tmp_path: Path) -> None:
    """The made subclass is made again when unpickling."""
    wrapper = Labelled(LocalStore(tmp_path / "root"), "x")
    wrapper.write("k", b"v")

    back = pickle.loads(pickle.dumps(wrapper))
    shallow = copy.copy(wrapper)

    for other in (back, shallow):
        assert type(other) is type(wrapper)
        assert other.label == "x"
        assert isinstance(other, SupportsTemporaryCleanup)
        assert read_bytes(other, "k") == b"v"
    assert shallow.inner is wrapper.inner
    # a wrapper whose store has no optional Protocol is of the class itself
    plain = Labelled(FsspecStore(fsspec.filesystem("memory"), "/pickled"), "y")
    assert type(plain) is Labelled
    again = pickle.loads(pickle.dumps(plain))
    assert type(again) is Labelled
    assert again.label == "y"
    assert again.url == plain.url


def test_lowlevel_surface_is_sorted_documented_and_on_the_reference_page() -> None:
    """carmigrate.storage.lowlevel is public: same rules as a package's __all__."""
    import carmigrate.storage.lowlevel as lowlevel

    reference = (
        Path(__file__).resolve().parents[2] / "docs" / "reference" / "storage.md"
    ).read_text()

    assert list(lowlevel.__all__) == sorted(set(lowlevel.__all__))
    for name in lowlevel.__all__:
        assert f"::: carmigrate.storage.lowlevel.{name}\n" in reference, name
    import griffe

    src = Path(__file__).resolve().parents[2] / "src"
    module = griffe.load("carmigrate.storage.lowlevel", search_paths=[str(src)])
    for name in lowlevel.__all__:
        target = module[name].final_target if module[name].is_alias else module[name]
        assert target.docstring is not None, name
        assert target.docstring.value.strip(), name
