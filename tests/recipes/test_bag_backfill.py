"""BagIt backfill (#16 items 3-6): the register, bag-backfill, coverage and the fixity cache.

Bags are made by the Library of Congress ``bagit`` package
(``tests/bagit/bag_helpers.py``). The primary is a moto S3 bucket with
some objects in GLACIER; the new providers are a second moto bucket
(server-side copies) and Azurite (streamed copies).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from bag_backfill_helpers import SPACE, make_bag_versions

from carmigrate.cli import main
from carmigrate.errors import ColdObject, ObjectExists, PlanError
from carmigrate.migrate import EventKind, Limits, Verdict
from carmigrate.recipes import (
    BagRegister,
    FixityCache,
    StorageLocation,
    StorageManifest,
    backfill_bags,
    bag_coverage,
    register_bag,
    verify_replica,
    work_ledger,
)
from carmigrate.storage import (
    LocalStore,
    MemoryStore,
    ObjectInfo,
    S3Store,
    Store,
    read_bytes,
    write_bytes,
)
from carmigrate.storage.lowlevel import StoreWrapper

STORAGE_TESTS = Path(__file__).resolve().parents[1] / "storage"


class Counting(StoreWrapper):
    """Counts the calls of each method per key; can hand out a changed byte on writes."""

    def __init__(self, inner: Store, *, flip: str | None = None) -> None:
        super().__init__(inner)
        self.calls: Counter[tuple[str, str]] = Counter()
        self.flip = flip

    def forward(self, method: str, key: str, call: Callable[[], Any]) -> Any:
        result = call()
        self.calls[method, key] += 1
        return result

    def count(self, method: str) -> int:
        return sum(n for (m, _), n in self.calls.items() if m == method)

    def write(self, key: str, data: Any, **kw: Any) -> ObjectInfo:
        if self.flip is not None and key.endswith(self.flip):
            if isinstance(data, (bytes, bytearray, memoryview)):
                body = bytes(data)
            elif hasattr(data, "read"):
                body = data.read()
            else:
                body = b"".join(bytes(c) for c in data)
            body = bytes([body[0] ^ 1]) + body[1:]
            return super().write(key, body, **kw)
        return super().write(key, data, **kw)


class Frozen(Counting):
    """A lifecycle transition to GLACIER: same objects and ETags, unreadable until restored."""

    def stat(self, key: str) -> ObjectInfo:
        return attrs.evolve(super().stat(key), storage_class="GLACIER", restore=None)

    def open_read(self, key: str, **kw: Any) -> Any:
        raise ColdObject(f"{key} is in GLACIER", key=key, storage_class="GLACIER")


class Expiring(Counting):
    """A cold primary whose restore of ``key`` expires once before it is copied."""

    def __init__(self, inner: Store, key: str) -> None:
        super().__init__(inner)
        self.key, self.seen, self.expired = key, 0, False

    def stat(self, key: str) -> ObjectInfo:
        info = super().stat(key)
        restores = self.calls["request_restore", key]
        if key != self.key or info.cold or restores == 0:
            return info
        self.seen += 1
        if self.seen == 2 and restores == 1:
            self.expired = True  # readable once, then expired before the copy
        if self.expired:
            return attrs.evolve(info, restore=None)
        return info

    def request_restore(self, key: str, **kw: Any) -> None:
        if key == self.key:
            self.expired = False
        inner = self.inner
        self.forward("request_restore", key, lambda: inner.request_restore(key, **kw))


# ----------------------------------------------------------------------
# servers


@pytest.fixture
def bucket(recipes_moto: dict[str, Any]) -> Iterator[Callable[..., S3Store]]:
    """Makes fresh moto buckets (S3Store options: ``storage_class``...)."""
    import boto3

    made: list[S3Store] = []

    def make(name: str = "b", bucket: str | None = None, **kw: Any) -> S3Store:
        if bucket is None:
            bucket = f"{name}-{uuid.uuid4().hex[:10]}"
            client = boto3.client(
                "s3",
                endpoint_url=recipes_moto["endpoint_url"],
                aws_access_key_id=recipes_moto["access_key_id"],
                aws_secret_access_key=recipes_moto["secret_access_key"],
                region_name=recipes_moto["region"],
            )
            client.create_bucket(Bucket=bucket)
            client.close()
        store = S3Store(bucket, **recipes_moto, **kw)
        made.append(store)
        return store

    yield make
    for s in made:
        s.close()


def _storage_module(name: str) -> Any:
    if str(STORAGE_TESTS) not in sys.path:
        sys.path.insert(0, str(STORAGE_TESTS))
    spec = importlib.util.spec_from_file_location(
        f"_bag_{name}", STORAGE_TESTS / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Azurite, started with the storage tests' helpers (tests/storage)."""
    helpers = _storage_module("azure_helpers")
    conftest = _storage_module("conftest")
    installed = subprocess.run(
        ["bash", str(helpers.INSTALL_AZURITE)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if installed.returncode != 0:
        if os.environ.get("CARMIGRATE_SKIP_AZURITE") == "1":
            pytest.skip("Azurite cannot be installed")
        pytest.fail(f"Azurite cannot be installed: {installed.stderr}")
    state = tmp_path_factory.mktemp("azurite")
    binary = installed.stdout.strip().splitlines()[-1]
    proc, endpoint = conftest._start_azurite(binary, state, state / "azurite.log")
    server = helpers.AzuriteServer(endpoint)
    try:
        yield server
    finally:
        server.close()
        conftest._stop_azurite(proc)


# ----------------------------------------------------------------------
# helpers


def _registered(
    tmp_path: Path, primary: Store, ids: tuple[str, ...] = ("b1",)
) -> BagRegister:
    """Bags v1 and v2 of each id in ``primary``, registered (read while warm)."""
    register = BagRegister(MemoryStore("register"))
    for external_id in ids:
        make_bag_versions(tmp_path, primary, external_id)
        for version in (1, 2):
            register_bag(
                register, primary, space=SPACE, external_identifier=external_id,
                version=version,
            )  # fmt: skip
    return register


def _records(register: BagRegister) -> dict[str, bytes]:
    return {i.key: read_bytes(register.store, i.key) for i in register.store.list()}


def _units(work: Path) -> dict[str, Any]:
    with work_ledger(work) as ledger:
        return {u.name: u for u in ledger.units(kind="bag")}


def _states(cover: Any) -> dict[tuple[str, str], str]:
    return {(r.bag, r.provider): r.state for r in cover.rows}


# ----------------------------------------------------------------------
# the register


def test_register_keeps_a_manifest_per_bag_version(tmp_path: Path) -> None:
    """The strongest common algorithm, per file checksum/name/path/size, fetched
    files at the path of the version holding them, JSON round trip, no overwrite."""
    primary = MemoryStore("primary")
    register = _registered(tmp_path, primary)
    v1 = register.get(SPACE, "b1", 1)
    v2 = register.get(SPACE, "b1", 2)
    assert (v1.algorithm, v1.revision, v1.location.prefix) == (
        "sha512",
        1,
        "digitised/b1",
    )
    assert v1.location.provider == "primary"
    assert ("External-Identifier", "b1") in v1.bag_info
    files = {f.name: f for f in v2.files}
    assert files["data/a.txt"].path == "v2/data/a.txt"
    assert files["data/pages/page-2.tif"].path == "v1/data/pages/page-2.tif"  # fetched
    assert (
        files["data/pages/page-2.tif"]
        == {f.name: f for f in v1.files}["data/pages/page-2.tif"]
    )
    page2 = read_bytes(primary, "digitised/b1/v1/data/pages/page-2.tif")
    assert files["data/pages/page-2.tif"].checksum == hashlib.sha512(page2).hexdigest()
    assert files["data/pages/page-2.tif"].size == len(page2)
    tags = {f.name for f in v2.tag_files}
    assert {"bagit.txt", "bag-info.txt", "fetch.txt", "manifest-sha512.txt"} <= tags
    assert {"tagmanifest-sha256.txt", "tagmanifest-sha512.txt"} <= tags
    assert StorageManifest.from_json(json.loads(json.dumps(v2.to_json()))) == v2
    with pytest.raises(ObjectExists):
        register.put(v2)
    # a replica: a new revision, the old one kept; adding it again changes nothing
    where = StorageLocation(
        provider="azure", url="az://acct/c", prefix=v1.location.prefix
    )
    before = _records(register)
    r2 = register.add_replica(v1, where)
    assert (r2.revision, r2.replicas) == (2, (where,))
    assert register.add_replica(v1, where) == r2
    after = _records(register)
    assert set(after) - set(before) == {"digitised/b1/v1/r2.json"}
    assert all(after[k] == v for k, v in before.items())
    assert [m.revision for m in register.revisions(SPACE, "b1", 1)] == [1, 2]
    assert [m.bag_id for m in register.manifests()] == [
        "digitised/b1/v1",
        "digitised/b1/v2",
    ]


def test_backfill_refuses_a_primary_the_register_does_not_name(tmp_path: Path) -> None:
    register = _registered(tmp_path, MemoryStore("primary"))
    other = MemoryStore("elsewhere")
    with pytest.raises(PlanError, match="not the --primary given"):
        backfill_bags(
            register.store, other, [("new", MemoryStore("new"))], tmp_path / "w"
        )
    assert all(m.replicas == () for m in register.manifests())


def test_register_refuses_an_invalid_bag(tmp_path: Path) -> None:
    primary = MemoryStore("primary")
    make_bag_versions(tmp_path, primary, "b1")
    write_bytes(primary, "digitised/b1/v1/data/a.txt", b"changed")
    register = BagRegister(MemoryStore("register"))
    with pytest.raises(PlanError, match="checksum"):
        register_bag(
            register, primary, space=SPACE, external_identifier="b1", version=1
        )
    assert list(register.store.list()) == []


# ----------------------------------------------------------------------
# the backfill


@pytest.mark.s3
def test_backfill_from_glacier_to_s3_and_azurite(
    tmp_path: Path, bucket: Callable[..., S3Store], azurite: Any
) -> None:
    """Cold objects are restored before they are read; S3 -> S3 copies on the
    server, S3 -> Azure streams; every byte is checked against the register's
    digest; replicas are registered in new revisions; coverage before and after."""
    warm = bucket("primary")
    register = _registered(tmp_path, warm, ("b1", "b2"))
    cold = bucket(bucket=warm.bucket, storage_class="GLACIER")
    frozen = [f"digitised/b{i}/v1/data/pages/page-2.tif" for i in (1, 2)]
    frozen += ["digitised/b1/v2/data/a.txt", "digitised/b2/v1/manifest-sha512.txt"]
    for key in frozen:  # moved to Glacier after they were registered
        write_bytes(cold, key, read_bytes(warm, key))
        assert warm.stat(key).cold
    second, azure = bucket("second"), azurite.store()
    before = _records(register)
    work = tmp_path / "work"

    cover = bag_coverage(register, work, providers=["s3", "azure"])
    assert set(_states(cover).values()) == {"verified", "missing"}
    assert _states(cover)["digitised/b1/v2", "primary"] == "verified"
    assert _states(cover)["digitised/b1/v2", "azure"] == "missing"

    result = backfill_bags(
        register.store, warm, [("s3", second), ("azure", azure)], work,
        restore_poll=0.01, limits=Limits(restore_batch=2),
    )  # fmt: skip
    assert result.complete, result.to_markdown()
    assert result.units == {"complete": 4}
    assert result.outputs["registered"] == 8
    # warm: exactly the cold objects were restored (moto restores at once)
    restored = {i.key for i in warm.list() if warm.stat(i.key).restore is not None}
    assert restored == set(frozen)
    assert all(warm.stat(k).restore.expiry is not None for k in frozen)
    units = _units(work)
    assert units["bag:digitised/b1/v1"].unit.data["cold"] == 1
    assert units["bag:digitised/b2/v2"].unit.data["cold"] == 1  # fetched from v1
    assert units["bag:digitised/b1/v2"].unit.data["cold"] == 2
    assert units["bag:digitised/b1/v1"].unit.data["restore_expiry"] is not None
    # copy: every file at both providers, byte for byte
    for m in register.manifests():
        assert [r.provider for r in m.replicas] == ["s3", "azure"]
        assert m.revision == 3
        for f in m.all_files:
            key = f"{m.location.prefix}/{f.path}"
            data = read_bytes(second, key)
            assert read_bytes(azure, key) == data
            assert len(data) == f.size
    # the old revisions are kept, unchanged
    after = _records(register)
    assert all(after[k] == v for k, v in before.items())
    assert len(after) == 3 * len(before)
    # server-side between the buckets (Azure copies from a presigned URL where the
    # service can, else streams: Azurite cannot); checked against the register
    with work_ledger(work) as ledger:
        recs = {m.key: m for m in ledger.members()}
    s3_recs = [r for k, r in recs.items() if k.startswith("s3/")]
    az_recs = [r for k, r in recs.items() if k.startswith("azure/")]
    assert s3_recs
    assert all(r.record.server_side for r in s3_recs)
    assert az_recs
    assert all("sha512:source" in r.record.checks for r in s3_recs + az_recs)
    # coverage after
    cover = bag_coverage(register, work)
    assert set(_states(cover).values()) == {"verified"}
    assert cover.providers == ("primary", "azure", "s3")
    # a re-run copies and reads nothing
    primary = Counting(warm)
    again = backfill_bags(
        register.store, primary, [("s3", second), ("azure", azure)], work,
        restore_poll=0.01,
    )  # fmt: skip
    assert again.complete
    assert again.planned == 0
    assert primary.count("open_read") == 0
    assert primary.count("request_restore") == 0


def test_a_restore_that_expired_before_the_copy_is_restored_again(
    tmp_path: Path,
) -> None:
    """Nothing is copied before it is readable, even when a restore expires."""
    warm = MemoryStore("primary")
    register = _registered(tmp_path, warm)
    key = "digitised/b1/v1/data/pages/page-1.tif"
    cold_store = _storage_module("storage_helpers").ColdMemoryStore()
    cold_store.url = warm.url  # the same primary, now in Glacier
    for info in warm.list():
        write_bytes(cold_store, info.key, read_bytes(warm, info.key))
    primary = Expiring(cold_store, key)
    dest = Counting(MemoryStore("new"))
    result = backfill_bags(
        register.store, primary, [("new", dest)], tmp_path / "work", restore_poll=0.0
    )
    assert result.complete, result.to_markdown()
    assert primary.calls["request_restore", key] == 2
    assert read_bytes(dest.inner, key) == read_bytes(warm, key)


def test_coverage_says_warming_while_restores_run(tmp_path: Path) -> None:
    """A run stopped while its objects are being restored: nothing is copied,
    nothing registered, and the coverage says warming."""
    warm = MemoryStore("primary")
    register = _registered(tmp_path, warm)
    cold = _storage_module("storage_helpers").ColdMemoryStore(polls=10**6)
    cold.url = warm.url  # the same primary, in Glacier, restores never finishing
    for info in warm.list():
        write_bytes(cold, info.key, read_bytes(warm, info.key))
    dest = MemoryStore("new")
    work = tmp_path / "work"
    result = backfill_bags(
        register.store, cold, [("new", dest)], work,
        restore_poll=0.05, limits=Limits(max_seconds=0.5),
    )  # fmt: skip
    assert not result.finished
    assert result.units == {"incomplete": 2}
    assert list(dest.list()) == []
    assert all(m.replicas == () for m in register.manifests())
    cover = _states(bag_coverage(register, work))
    assert cover["digitised/b1/v1", "new"] == "warming"
    assert cover["digitised/b1/v2", "new"] == "warming"
    assert len(cold.requests) == 18  # every object asked for once


def test_kill_and_resume_never_recopies_or_registers_unverified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped mid-round, then one killed between verify and register:
    re-runs copy each object once and register only verified replicas."""
    primary = Counting(MemoryStore("primary"))
    register = _registered(tmp_path, primary.inner, ("b1", "b2"))
    dest = Counting(LocalStore(tmp_path / "new", create=True, fsync=False))
    work = tmp_path / "work"
    first = backfill_bags(
        register.store, primary, [("new", dest)], work, limits=Limits(max_items=7)
    )
    assert not first.complete
    assert not first.finished
    assert all(m.replicas == () for m in register.manifests())  # nothing registered
    assert _states(bag_coverage(register, work))["digitised/b1/v1", "new"] in {
        "copying", "missing",
    }  # fmt: skip

    def killed(*args: Any, **kw: Any) -> None:
        raise KeyboardInterrupt("killed before registering")

    monkeypatch.setattr(BagRegister, "add_replica", killed)
    with pytest.raises(KeyboardInterrupt):
        backfill_bags(register.store, primary, [("new", dest)], work)
    monkeypatch.undo()
    assert all(m.replicas == () for m in register.manifests())
    rows = {(r.bag, r.provider): r for r in bag_coverage(register, work).rows}
    assert rows["digitised/b1/v1", "new"].state == "copying"
    assert "not registered yet" in str(rows["digitised/b1/v1", "new"].reason)
    reads = primary.count("open_read")
    last = backfill_bags(register.store, primary, [("new", dest)], work)
    assert last.complete, last.to_markdown()
    assert last.planned == 0
    assert primary.count("open_read") == reads
    assert all(n == 1 for (m, _), n in dest.calls.items() if m == "write")
    objects = {
        f"{m.location.prefix}/{f.path}"
        for m in register.manifests()
        for f in m.all_files
    }
    assert dest.count("write") == len(objects)
    assert all(
        [r.provider for r in m.replicas] == ["new"] for m in register.manifests()
    )


def test_a_flipped_byte_fails_verification_and_leaves_the_register(
    tmp_path: Path,
) -> None:
    """A replica written with one byte changed never verifies, and is never registered."""
    primary = MemoryStore("primary")
    register = _registered(tmp_path, primary)
    before = _records(register)
    dest = Counting(MemoryStore("new"), flip="v1/data/pages/page-1.tif")
    work = tmp_path / "work"
    result = backfill_bags(register.store, primary, [("new", dest)], work)
    assert not result.complete
    assert result.units == {"failed": 1, "complete": 1}
    units = _units(work)
    v1 = units["bag:digitised/b1/v1"]
    assert v1.verdict is Verdict.FAILED
    assert any("page-1.tif" in r and "sha512" in r for r in v1.reasons), v1.reasons
    after = _records(register)
    assert set(after) - set(before) == {"digitised/b1/v2/r2.json"}  # v2 is sound
    assert all(after[k] == v for k, v in before.items())
    assert register.get(SPACE, "b1", 1).replicas == ()
    # the engine checked the bytes it sent; the bag check read what was stored
    flipped = "new/digitised/b1/v1/data/pages/page-1.tif"
    assert flipped in v1.unit.data["suspect"]
    cover = _states(bag_coverage(register, work))
    assert cover["digitised/b1/v1", "new"] == "failed"
    assert cover["digitised/b1/v2", "new"] == "verified"


def test_a_byte_flipped_after_the_copy_fails_the_bag_check_then_is_repaired(
    tmp_path: Path,
) -> None:
    """The replica is read again as a bag: a byte changed after the engine verified
    it fails the bag, the register is untouched; the next run re-copies that file."""
    primary = MemoryStore("primary")
    register = _registered(tmp_path, primary)
    before = _records(register)
    dest = MemoryStore("new")
    key = "digitised/b1/v1/data/pages/page-2.tif"

    def flip(event: Any) -> None:  # once the engine verified everything
        if event.kind is EventKind.RUN_FINISHED:
            data = bytearray(read_bytes(dest, key))
            data[10] ^= 0xFF
            write_bytes(dest, key, bytes(data))

    work = tmp_path / "work"
    result = backfill_bags(
        register.store, primary, [("new", dest)], work, reporters=[flip]
    )
    assert not result.complete
    assert result.outputs["bag_rule_failures"] == 2  # v1, and v2 which fetches it
    units = _units(work)
    assert units["bag:digitised/b1/v1"].verdict is Verdict.FAILED
    assert any("checksum" in r for r in units["bag:digitised/b1/v1"].reasons)
    assert _records(register) == before
    fixed = backfill_bags(register.store, primary, [("new", dest)], work)
    assert fixed.complete, fixed.to_markdown()
    assert fixed.planned == 1
    assert read_bytes(dest, key) == read_bytes(primary, key)
    assert all(
        [r.provider for r in m.replicas] == ["new"] for m in register.manifests()
    )


def test_a_dry_run_plans_and_writes_nothing(tmp_path: Path) -> None:
    primary = MemoryStore("primary")
    register = _registered(tmp_path, primary)
    before = _records(register)
    dest = MemoryStore("new")
    plan = backfill_bags(
        register.store, primary, [("new", dest)], tmp_path / "w", dry_run=True
    )
    assert plan.dry_run
    assert not plan.complete
    assert plan.planned == 18  # v1's 9 files, v2's 10 with one fetched from v1
    assert list(dest.list()) == []
    assert _records(register) == before


def test_replica_policy_counts_the_primary(tmp_path: Path) -> None:
    """--replicas 2 with two providers fills only the first; 3 with one provider fails."""
    primary = MemoryStore("primary")
    register = _registered(tmp_path, primary)
    a, b = MemoryStore("a"), MemoryStore("b")
    done = backfill_bags(
        register.store, primary, [("a", a), ("b", b)], tmp_path / "w1", replicas=2
    )
    assert done.complete
    assert all([r.provider for r in m.replicas] == ["a"] for m in register.manifests())
    assert list(b.list()) == []
    short = backfill_bags(
        register.store, primary, [("b", b)], tmp_path / "w2", replicas=4
    )
    assert not short.complete
    assert short.units == {"failed": 2}
    assert all(
        "3 verified copies of the 4 wanted" in u.reasons[-1]
        for u in _units(tmp_path / "w2").values()
    )


# ----------------------------------------------------------------------
# the fixity cache


@pytest.mark.s3
def test_fixity_cache_reverifies_cold_replicas_without_a_restore(
    tmp_path: Path, bucket: Callable[..., S3Store]
) -> None:
    primary = bucket("primary")
    register = _registered(tmp_path, primary)
    replica = bucket("replica")
    cache_store = MemoryStore("fixity")
    result = backfill_bags(
        register.store,
        primary,
        [("s3", replica)],
        tmp_path / "work",
        fixity=cache_store,
    )
    assert result.complete
    fixity = FixityCache(cache_store)
    m = register.get(SPACE, "b1", 2)
    where = m.replica("s3")
    assert where is not None
    # a lifecycle rule moves the replica to Glacier: same objects, same ETags
    frozen = Frozen(replica)
    check = verify_replica(m, frozen, where, fixity)
    assert check.verified
    assert check.cached == check.files == len(m.all_files)
    assert check.read == 0
    assert frozen.count("open_read") == 0
    assert frozen.count("request_restore") == 0
    # without the cache, cold objects are unverifiable, never verified
    bare = verify_replica(m, frozen, where)
    assert not bare.verified
    assert len(bare.unverifiable) == len(m.all_files)
    # any write invalidates: the rewritten object is not vouched for any more
    changed = m.files[0]
    key = f"{m.location.prefix}/{changed.path}"
    write_bytes(replica, key, b"X" * changed.size)
    cold = verify_replica(m, frozen, where, fixity)
    assert cold.unverifiable == (changed.name,)
    assert cold.cached == len(m.all_files) - 1
    warm = Counting(replica)
    again = verify_replica(m, warm, where, fixity)
    assert [name for name, _ in again.failed] == [changed.name]
    assert again.read == 1
    assert warm.count("open_read") == 1


# ----------------------------------------------------------------------
# the command line


def test_cli_backfill_and_coverage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    primary = LocalStore(tmp_path / "primary", create=True)
    register = BagRegister(LocalStore(tmp_path / "register", create=True))
    make_bag_versions(tmp_path / "bags", primary, "b1")
    for version in (1, 2):
        register_bag(
            register, primary, space=SPACE, external_identifier="b1", version=version
        )
    reg, prim = str(tmp_path / "register"), str(tmp_path / "primary")
    new, work = str(tmp_path / "new"), str(tmp_path / "work")

    assert (
        main(["recipe", "bag-coverage", "--register", reg, "--to", "new", "--json"])
        == 0
    )
    before = json.loads(capsys.readouterr().out)
    assert before["counts"] == {"primary": {"verified": 2}, "new": {"missing": 2}}

    argv = ["recipe", "bag-backfill", "--register", reg, "--primary", prim]
    code = main([*argv, "--to", f"new={new}", "--work", work, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["complete"]
    assert out["outputs"]["registered"] == 2
    assert main(["recipe", "bag-coverage", "--register", reg, "--work", work]) == 0
    text = capsys.readouterr().out
    assert "| digitised/b1/v2 | verified | verified |" in text
    assert main([*argv, "--to", "bad name=x", "--work", work, "--json"]) == 2
    assert (
        "bad provider name" in json.loads(capsys.readouterr().out)["error"]["message"]
    )
