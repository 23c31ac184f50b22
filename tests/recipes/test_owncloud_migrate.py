"""The owncloud recipe: ownCloud 10 homes → oCIS spaces, by cohorts, checked against the generator's truth."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from owncloud_instance import (
    INSTANCE_ID,
    OwncloudInstance,
    add_file,
    change_file,
    delete_file,
    make_owncloud_instance,
    move_file,
)
from recipes_data import new_bucket

from carmigrate.cli import main
from carmigrate.migrate import Limits, Verdict, load_plan
from carmigrate.recipes import (
    OWNCLOUD,
    OwncloudOptions,
    dfs_blob_key,
    dfs_computed_etag,
    ocis_node_id,
    ocis_space_id,
    owncloud_sync_check,
    read_decomposedfs_space,
    read_decomposedfs_trash,
    read_spaces_layout,
    run_recipe,
    s3ng_blob_key,
    work_ledger,
)
from carmigrate.storage import LocalStore, Store

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def options(inst: OwncloudInstance, to: Store | str, **kw: Any) -> OwncloudOptions:
    base: dict[str, Any] = {
        "db": inst.db_url,
        "data": str(inst.data_dir),
        "to": to,
        "config": str(inst.config_path),
        "users": ("alice", "bob"),
    }
    base.update(kw)
    return OwncloudOptions(**base)


def storage_of(inst: OwncloudInstance, user: str) -> int:
    import sqlite3

    db = sqlite3.connect(inst.db_path)
    try:
        return int(
            db.execute(
                "SELECT numeric_id FROM oc_storages WHERE id IN (?, ?)",
                (f"home::{user}", f"object::user:{user}"),
            ).fetchone()[0]
        )
    finally:
        db.close()


def truth(inst: OwncloudInstance, user: str) -> dict[str, dict[str, Any]]:
    """``files/`` rows as ownCloud has them: path (``files/`` trimmed) → fileid, etag, size, mtime."""
    import sqlite3

    db = sqlite3.connect(inst.db_path)
    try:
        rows = db.execute(
            "SELECT path, fileid, etag, size, mtime FROM oc_filecache WHERE storage = ?"
            " AND (path = 'files' OR path LIKE 'files/%')",
            (storage_of(inst, user),),
        ).fetchall()
    finally:
        db.close()
    return {
        p.removeprefix("files").removeprefix("/"): {
            "fileid": f,
            "etag": e,
            "size": s,
            "mtime": m,
        }
        for p, f, e, s, m in rows
    }


def assert_space_is_the_source(
    inst: OwncloudInstance, target: Store, user: str
) -> None:
    """The space's records, read back, carry every node of the user with id, etag, size, mtime."""
    space = ocis_space_id(INSTANCE_ID, user, {})
    view = read_spaces_layout(target, space)
    want = truth(inst, user)
    got = {v.path: v for v in view.values()}
    assert set(got) == set(want)
    for path, t in want.items():
        v = got[path]
        expected_id = space if path == "" else ocis_node_id(INSTANCE_ID, t["fileid"])
        assert (v.node_id, v.etag, v.size, v.mtime) == (
            expected_id,
            t["etag"],
            t["size"],
            t["mtime"],
        ), path
        if not v.is_dir:
            data = (inst.data_dir / user / "files" / path).read_bytes()
            assert v.checksums["sha1"] == hashlib.sha1(data).hexdigest()


def blobs(target: Store, user: str) -> dict[str, bytes]:
    space = ocis_space_id(INSTANCE_ID, user, {})
    out = {}
    for info in target.list(f"spaces/{space}/blobs/"):
        with target.open_read(info.key) as f:
            out[info.key] = f.read()
    return out


@pytest.fixture
def inst(tmp_path: Path) -> OwncloudInstance:
    return make_owncloud_instance(tmp_path / "oc", extended=True)


@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_a_cohort_of_two_users_moves_with_ids_etags_and_checksums(
    inst: OwncloudInstance,
    tmp_path: Path,
    where: str,
    request: pytest.FixtureRequest,
) -> None:
    target: Store = (
        LocalStore(tmp_path / "target", create=True)
        if where == "local"
        else new_bucket(request.getfixturevalue("recipes_moto"), "ocis")
    )
    result = run_recipe(OWNCLOUD, options(inst, target), tmp_path / "work")
    assert result.complete, result.to_markdown()
    assert result.units == {"complete": 2}
    for user in ("alice", "bob"):
        assert_space_is_the_source(inst, target, user)
    # every content is there once, with its bytes: current files, versions, trash
    alice = blobs(target, "alice")
    disk = sorted(
        p.read_bytes()
        for area in ("files", "files_versions", "files_trashbin")
        for p in (inst.data_dir / "alice" / area).rglob("*")
        if p.is_file()
    )
    assert sorted(alice.values()) == disk
    # the trash, with where each item was and the versions of a deleted file
    space = ocis_space_id(INSTANCE_ID, "alice", {})
    with target.open_read(f"spaces/{space}/trash.jsonl") as f:
        trash = {r["path"]: r for r in map(json.loads, f.read().splitlines())}
    assert set(trash) == {"Documents", "Documents/plan.txt", "TODO.txt"}
    assert (trash["TODO.txt"]["origin"], trash["TODO.txt"]["deleted"]) == (
        ".",
        1565721976,
    )
    [old_todo] = trash["TODO.txt"]["revisions"]
    assert old_todo["timestamp"] == 1564605543
    assert alice[f"spaces/{space}/blobs/{old_todo['blob']}"] == b"- buy milk\n"
    assert trash["Documents/plan.txt"]["parent"] == trash["Documents"]["id"]
    # nothing of the users outside the cohort
    spaces = {i.key.split("/")[1] for i in target.list("spaces/")}
    assert spaces == {ocis_space_id(INSTANCE_ID, u, {}) for u in ("alice", "bob")}
    # the ID map: every node, version and trashed item of the cohort
    ids = [
        json.loads(line)
        for line in (tmp_path / "work/owncloud/idmap.jsonl").read_text().splitlines()
    ]
    by_source = {r["source"]: r for r in ids}
    for (user, path), fileid in inst.fileids.items():
        if user not in ("alice", "bob") or not (
            path == "files" or path.startswith(("files/", "files_trashbin/files/"))
        ):
            continue
        src = f"{INSTANCE_ID}${storage_of(inst, user)}!{fileid}"
        space = ocis_space_id(INSTANCE_ID, user, {})
        node = space if path == "files" else ocis_node_id(INSTANCE_ID, fileid)
        assert (
            by_source[src]["target"]
            == f"{OwncloudOptions.__attrs_attrs__.storage_id.default}${space}!{node}"
        )  # type: ignore[attr-defined]
    kinds = {r["kind"] for r in ids}
    assert kinds == {"space", "folder", "file", "version", "trash"}
    fidelity = json.loads((tmp_path / "work/owncloud/fidelity.json").read_text())
    assert fidelity["redownload"] == []
    assert {r["etag"] for r in fidelity["files"]} == {"kept"}
    assert {r.get("checksum") for r in fidelity["files"]} <= {"verified", None}
    assert owncloud_sync_check(options(inst, target)).ok


class Spy(LocalStore):
    """A local store that records the keys and prefixes it is asked about."""

    touched: list[str]

    def list(self, prefix: str = "") -> Any:
        self.touched.append(prefix)
        return super().list(prefix)

    def open_read(self, key: str, **kw: Any) -> Any:
        self.touched.append(key)
        return super().open_read(key, **kw)

    def stat(self, key: str) -> Any:
        self.touched.append(key)
        return super().stat(key)


def test_groups_make_the_cohort_in_order_and_nothing_else_is_read(
    inst: OwncloudInstance, tmp_path: Path
) -> None:
    target = LocalStore(tmp_path / "target", create=True)
    data = Spy(inst.data_dir)
    data.touched = []
    result = run_recipe(
        OWNCLOUD,
        options(inst, target, data=data, users=("erin",), groups=("sales",)),
        tmp_path / "work",
    )
    assert result.complete
    plan = load_plan(tmp_path / "work/rounds/0001/plan-0.jsonl")
    assert [s.name for s in plan.header.stages] == ["erin", "alice", "carol", "dave"]
    with work_ledger(tmp_path / "work") as ledger:
        assert sorted(u.unit.owner for u in ledger.units()) == [
            "alice",
            "carol",
            "dave",
            "erin",
        ]
    assert data.touched
    assert {k.split("/")[0] for k in data.touched} == {"alice", "carol", "dave", "erin"}


def test_a_rerun_of_a_finished_cohort_is_a_no_op(
    inst: OwncloudInstance, tmp_path: Path
) -> None:
    target = LocalStore(tmp_path / "target", create=True)
    o = options(inst, target)
    run_recipe(OWNCLOUD, o, tmp_path / "work")
    before = {
        p: p.stat().st_mtime_ns for p in (tmp_path / "target").rglob("*") if p.is_file()
    }
    again = run_recipe(OWNCLOUD, o, tmp_path / "work")
    assert again.round is None  # nothing planned
    assert again.complete
    assert again.outputs["metadata_written"] == 0
    assert again.outputs["delta"] == {"files": 0, "bytes": 0, "expected_seconds": 0.0}
    after = {
        p: p.stat().st_mtime_ns for p in (tmp_path / "target").rglob("*") if p.is_file()
    }
    assert after == before


def test_a_delta_pass_copies_only_what_changed(
    inst: OwncloudInstance, tmp_path: Path
) -> None:
    target = LocalStore(tmp_path / "target", create=True)
    o = options(inst, target)
    first = run_recipe(OWNCLOUD, o, tmp_path / "work")
    assert first.complete
    later = 1_700_000_000
    change_file(inst, "alice", "files/Projects/Notes.md", b"# Notes\n\nfinal\n", later)
    new_id = add_file(inst, "bob", "files/Reports/q2.txt", b"Q2: better\n", later)
    move_file(inst, "alice", "files/Photos/Portugal.jpg", "files/Portugal.jpg", later)
    delete_file(inst, "bob", "files/welcome.txt", later + 5)
    preview = run_recipe(OWNCLOUD, o, tmp_path / "work", dry_run=True)
    assert preview.outputs["delta"]["files"] == 2  # the changed file and the new one
    assert preview.outputs["delta"]["expected_seconds"] is not None
    second = run_recipe(OWNCLOUD, o, tmp_path / "work")
    assert second.complete, second.to_markdown()
    assert sum(p.items for p in second.plans) == 2
    for user in ("alice", "bob"):
        assert_space_is_the_source(inst, target, user)
    bob = ocis_space_id(INSTANCE_ID, "bob", {})
    trash = [
        json.loads(line)
        for line in (tmp_path / f"target/spaces/{bob}/trash.jsonl")
        .read_text()
        .splitlines()
    ]
    assert [t["name"] for t in trash] == ["welcome.txt"]
    assert trash[0]["origin"] == "."
    assert ocis_node_id(INSTANCE_ID, new_id) in {
        v.node_id for v in read_spaces_layout(target, bob).values()
    }
    assert owncloud_sync_check(o).ok


def test_a_planted_defect_keeps_the_user_from_being_complete(
    tmp_path: Path,
) -> None:
    inst = make_owncloud_instance(
        tmp_path / "oc", inject=("missing_on_disk", "checksum_mismatch"), extended=True
    )
    target = LocalStore(tmp_path / "target", create=True)
    result = run_recipe(OWNCLOUD, options(inst, target), tmp_path / "work")
    assert not result.complete
    assert result.units == {"complete": 1, "failed": 1}
    reasons = dict(result.failures)["home:alice"]
    assert any("Notes.md" in r for r in reasons)
    assert any("Portugal.jpg" in r for r in reasons)
    alice = ocis_space_id(INSTANCE_ID, "alice", {})
    assert read_spaces_layout(target, alice) == {}  # no metadata over missing blobs
    # the bad bytes never became visible under their key
    bad = (inst.data_dir / "alice/files/Photos/Portugal.jpg").read_bytes()
    assert bad not in blobs(target, "alice").values()
    fidelity = json.loads((tmp_path / "work/owncloud/fidelity.json").read_text())
    assert fidelity["users"]["alice"]["written"] is False
    assert fidelity["users"]["bob"]["written"] is True


def test_the_sync_check_reads_the_target_and_names_what_a_client_would_fetch(
    inst: OwncloudInstance, tmp_path: Path
) -> None:
    target = LocalStore(tmp_path / "target", create=True)
    o = options(inst, target)
    run_recipe(OWNCLOUD, o, tmp_path / "work")
    bob = ocis_space_id(INSTANCE_ID, "bob", {})
    nodes = tmp_path / f"target/spaces/{bob}/nodes.jsonl"
    lines = [json.loads(line) for line in nodes.read_text().splitlines()]
    for r in lines:
        if r["path"] == "welcome.txt":
            r["etag"] = "0123456789abcdef"
    nodes.write_text("".join(json.dumps(r) + "\n" for r in lines))
    check = owncloud_sync_check(o)
    assert check.checked == len(truth(inst, "alice")) + len(truth(inst, "bob"))
    assert [(r["user"], r["path"]) for r in check.redownload] == [
        ("bob", "welcome.txt")
    ]
    assert "etag lost" in check.redownload[0]["why"]


KILLER = """
import json, os, signal, sys
from carmigrate.recipes import OWNCLOUD, OwncloudOptions, run_recipe
from carmigrate.storage import LocalStore

a = json.loads(sys.argv[1])
writes = 0

class Killing(LocalStore):
    def write(self, key, data, **kw):
        global writes
        writes += 1
        if writes == a["kill_at"]:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().write(key, data, **kw)

target = Killing(a["target"], create=True)
o = OwncloudOptions(db=a["db"], data=a["data"], to=target, config=a["config"],
                    users=("alice", "bob"), layout=a["layout"], accept_etag_loss=True)
run_recipe(OWNCLOUD, o, a["work"])
"""


def tree(root: Path) -> dict[str, bytes]:
    """Every file's bytes and every link's target below ``root`` (links not followed)."""
    out: dict[str, bytes] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = b"-> " + os.readlink(path).encode()
            elif path.is_file():
                out[rel] = path.read_bytes()
    return out


@pytest.mark.parametrize(
    ("layout", "kill_at"),
    # copying alice's contents, bob's, writing the metadata (of 17 writes);
    # decomposedfs writes its metadata with os.replace (its own kill test)
    [
        ("spaces", 3),
        ("spaces", 10),
        ("spaces", 14),
        ("decomposedfs", 3),
        ("decomposedfs", 10),
    ],
)
def test_killed_and_resumed_equals_uninterrupted(
    inst: OwncloudInstance, tmp_path: Path, layout: str, kill_at: int
) -> None:
    whole = tmp_path / "whole"
    again = {"layout": layout, "accept_etag_loss": True}
    run_recipe(OWNCLOUD, options(inst, str(whole), **again), tmp_path / "w1")
    killed = tmp_path / "killed"
    args = {
        "db": inst.db_url,
        "data": str(inst.data_dir),
        "config": str(inst.config_path),
        "target": str(killed),
        "work": str(tmp_path / "w2"),
        "kill_at": kill_at,
        "layout": layout,
    }
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, json.dumps(args)], check=False, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL
    result = run_recipe(OWNCLOUD, options(inst, str(killed), **again), tmp_path / "w2")
    assert result.complete, result.to_markdown()
    assert tree(killed) == tree(whole)
    assert (tmp_path / "w2/owncloud/idmap.jsonl").read_bytes() == (
        tmp_path / "w1/owncloud/idmap.jsonl"
    ).read_bytes()


def test_resumes_an_open_round_after_a_limit(
    inst: OwncloudInstance, tmp_path: Path
) -> None:
    target = LocalStore(tmp_path / "target", create=True)
    o = options(inst, target)
    first = run_recipe(
        OWNCLOUD, o, tmp_path / "work", limits=Limits(max_items=3, concurrency=1)
    )
    assert not first.complete
    with work_ledger(tmp_path / "work") as ledger:
        assert {u.verdict for u in ledger.units()} <= {
            Verdict.INCOMPLETE,
            Verdict.COMPLETE,
        }
    second = run_recipe(OWNCLOUD, o, tmp_path / "work")
    assert second.resumed
    assert second.complete
    for user in ("alice", "bob"):
        assert_space_is_the_source(inst, target, user)


def test_cli(
    inst: OwncloudInstance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "recipe",
        "owncloud",
        "--db",
        inst.db_url,
        "--data",
        str(inst.data_dir),
        "--to",
        str(tmp_path / "target"),
        "--config",
        str(inst.config_path),
        "--user",
        "dave",
        "--work",
        str(tmp_path / "work"),
        "--json",
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["units"] == {"complete": 1}
    assert out["outputs"]["redownload"] == 0
    assert os.path.exists(out["outputs"]["fidelity_markdown"])


def test_shares_cross_cohorts_deferred_then_carried(
    inst: OwncloudInstance, tmp_path: Path
) -> None:
    target = LocalStore(tmp_path / "target", create=True)
    work = tmp_path / "work"
    first = run_recipe(
        OWNCLOUD, options(inst, target, users=("alice", "bob", "erin")), work
    )
    assert first.complete
    report = json.loads((work / "owncloud/fidelity.json").read_text())["shares"]
    by_id = {s["id"]: s for s in inst.shares}
    deferred = {n["share_id"]: n for n in report["not_carried"]}
    # alice's reshare (by bob) to carol, and her share to dave: recipients not migrated
    assert {i for i, n in deferred.items() if n["kind"] == "deferred"} == {
        s["id"]
        for s in inst.shares
        if s["uid_owner"] == "alice" and s["share_with"] in ("carol", "dave")
    } | {
        s["id"]
        for s in inst.shares
        if s["uid_owner"] in ("carol", "dave")
        and s["share_with"] in ("alice", "bob", "erin", "sales", "eng")
    }
    assert all(by_id[i]["share_type"] != 6 for i in deferred)
    shares = json.loads((work / "owncloud/shares/shares.json").read_text())
    public = json.loads((work / "owncloud/shares/publicshares.json").read_text())
    links = {s["token"]: s for s in inst.shares if s["share_type"] == 3}
    carried = {json.loads(v["share"])["token"]: v for v in public.values()}
    assert set(carried) == set(links)
    protected = json.loads(carried["Zq8wP3sLx7Rk2Vn"]["share"])
    assert protected["passwordProtected"] is True
    # ownCloud's "1|" hasher prefix dropped, the bcrypt hash kept
    assert (
        "1|" + carried["Zq8wP3sLx7Rk2Vn"]["password"]
        == links["Zq8wP3sLx7Rk2Vn"]["share_with"]
    )
    notes = ocis_node_id(INSTANCE_ID, inst.fileids["alice", "files/Projects/Notes.md"])
    assert (
        json.loads(carried["aBcDeFgHiJkLmNo"]["share"])["resourceId"]["opaqueId"]
        == notes
    )
    assert shares["shares"]  # user and group shares of alice and bob
    # the second cohort: the deferred shares are carried now, the federated one never
    second = run_recipe(OWNCLOUD, options(inst, target, users=("carol", "dave")), work)
    assert second.complete
    report = json.loads((work / "owncloud/fidelity.json").read_text())["shares"]
    left = {n["share_id"]: n["kind"] for n in report["not_carried"]}
    federated = [s["id"] for s in inst.shares if s["share_type"] == 6]
    assert left == dict.fromkeys(federated, "federated")
    members = sum(1 for s in inst.shares if s["share_type"] == 2)
    assert report["carried"] == len(inst.shares) - len(federated)
    assert members == 2
    ids = {
        json.loads(line)["user"]
        for line in (work / "owncloud/idmap.jsonl").read_text().splitlines()
    }
    assert ids == {"alice", "bob", "carol", "dave", "erin"}


# -- the decomposedfs layout ------------------------------------------------------


def assert_dfs_is_the_source(
    inst: OwncloudInstance,
    metadata: Path,
    blobs_at: Store,
    user: str,
    *,
    s3ng: bool = False,
) -> None:
    """The tree oCIS would read, read back from disk: ids, paths, sizes, mtimes, checksums, blob bytes."""
    space = ocis_space_id(INSTANCE_ID, user, {})
    view = read_decomposedfs_space(metadata, space)
    want = truth(inst, user)
    got = {v.path: v for v in view.values()}
    assert set(got) == set(want)
    for path, t in want.items():
        v = got[path]
        expected_id = space if path == "" else ocis_node_id(INSTANCE_ID, t["fileid"])
        assert (v.node_id, v.size, v.mtime_ns) == (
            expected_id,
            t["size"],
            t["mtime"] * 1_000_000_000,
        ), path
        if v.is_dir:
            continue
        data = (inst.data_dir / user / "files" / path).read_bytes()
        assert v.checksums["sha1"] == hashlib.sha1(data).hexdigest()
        assert v.blob_id is not None
        key = (s3ng_blob_key if s3ng else dfs_blob_key)(space, v.blob_id)
        with blobs_at.open_read(key) as f:
            assert f.read() == data
        # the etag oCIS computes for a file, not ownCloud's
        assert v.etag == dfs_computed_etag(v.node_id, v.mtime_ns)


def test_decomposedfs_to_a_local_folder_reports_the_etags_oCIS_recomputes(
    inst: OwncloudInstance, tmp_path: Path
) -> None:
    root = tmp_path / "storage-users"
    o = options(inst, str(root), layout="decomposedfs")
    result = run_recipe(OWNCLOUD, o, tmp_path / "work")
    # etags are a MUST: a cohort whose etags oCIS recomputes is not a success
    assert not result.complete
    assert result.units == {"failed": 2}
    reasons = dict(result.failures)["home:bob"]
    assert any(
        r.startswith("welcome.txt: etag lost") and "computes a file's etag" in r
        for r in reasons
    )
    target = LocalStore(root)
    for user in ("alice", "bob"):
        assert_dfs_is_the_source(inst, root, target, user)
    # revisions and trash, as oCIS lists them
    alice = ocis_space_id(INSTANCE_ID, "alice", {})
    notes = next(
        v
        for v in read_decomposedfs_space(root, alice).values()
        if v.path == "Projects/Notes.md"
    )
    assert [r.mtime_ns // 10**9 for r in notes.revisions] == [1496912691, 1540305560]
    trash = read_decomposedfs_trash(root, alice)
    assert sorted(t.path for t in trash.values() if "/" not in t.path.strip("/")) == [
        "/Documents",
        "/TODO.txt",
    ]
    check = owncloud_sync_check(o)
    assert {r["path"] for r in check.redownload} == set(truth(inst, "alice")) | set(
        truth(inst, "bob")
    )
    # accepted: the same tree, the homes complete, the losses still reported
    accepted = run_recipe(
        OWNCLOUD,
        options(inst, str(root), layout="decomposedfs", accept_etag_loss=True),
        tmp_path / "work",
    )
    assert accepted.complete
    assert accepted.outputs["redownload"] == len(check.redownload)


@pytest.mark.s3
def test_decomposedfs_with_blobs_on_s3(
    inst: OwncloudInstance, tmp_path: Path, recipes_moto: dict[str, Any]
) -> None:
    bucket = new_bucket(recipes_moto, "s3ng")
    meta = tmp_path / "storage-users"
    o = options(
        inst, bucket, layout="decomposedfs", metadata=str(meta), accept_etag_loss=True
    )
    result = run_recipe(OWNCLOUD, o, tmp_path / "work")
    assert result.complete, result.to_markdown()
    for user in ("alice", "bob"):
        assert_dfs_is_the_source(inst, meta, bucket, user, s3ng=True)
    # nothing but blobs in the bucket, under the spaces' ids
    spaces = {ocis_space_id(INSTANCE_ID, u, {}) for u in ("alice", "bob")}
    assert {i.key.split("/")[0] for i in bucket.list()} == spaces


def test_decomposedfs_needs_a_metadata_folder_for_a_remote_target(
    inst: OwncloudInstance, tmp_path: Path, recipes_moto: dict[str, Any]
) -> None:
    from carmigrate.errors import PlanError

    bucket = new_bucket(recipes_moto, "nometa")
    with pytest.raises(PlanError, match="--metadata"):
        run_recipe(
            OWNCLOUD, options(inst, bucket, layout="decomposedfs"), tmp_path / "work"
        )


def test_a_decomposedfs_delta_pass(inst: OwncloudInstance, tmp_path: Path) -> None:
    root = tmp_path / "storage-users"
    o = options(inst, str(root), layout="decomposedfs", accept_etag_loss=True)
    assert run_recipe(OWNCLOUD, o, tmp_path / "work").complete
    later = 1_700_000_000
    change_file(inst, "bob", "files/Reports/q1.txt", b"Q1: revised\n", later)
    move_file(inst, "alice", "files/Projects/Notes.md", "files/Notes.md", later)
    delete_file(inst, "alice", "files/ownCloud Manual.pdf", later + 1)
    second = run_recipe(OWNCLOUD, o, tmp_path / "work")
    assert second.complete, second.to_markdown()
    assert sum(p.items for p in second.plans) == 1
    target = LocalStore(root)
    for user in ("alice", "bob"):
        assert_dfs_is_the_source(inst, root, target, user)
    alice = ocis_space_id(INSTANCE_ID, "alice", {})
    trashed = {t.path for t in read_decomposedfs_trash(root, alice).values()}
    assert "/ownCloud Manual.pdf" in trashed


@pytest.mark.s3
def test_homes_on_an_object_store(
    inst: OwncloudInstance, tmp_path: Path, recipes_moto: dict[str, Any]
) -> None:
    """ownCloud with S3 as primary storage: homes object::user:<uid>, blobs urn:oid:<fileid>."""
    import sqlite3

    bucket = new_bucket(recipes_moto, "primary")
    db = sqlite3.connect(inst.db_path)
    db.execute(
        "UPDATE oc_storages SET id = 'object::user:' || substr(id, 7)"
        " WHERE id LIKE 'home::%'"
    )
    db.commit()
    for (user, path), fileid in inst.fileids.items():
        blob = inst.data_dir / user / path
        if blob.is_file() and user in ("alice", "bob"):
            bucket.write(f"urn:oid:{fileid}", blob.read_bytes())
    db.close()
    target = LocalStore(tmp_path / "target", create=True)
    result = run_recipe(OWNCLOUD, options(inst, target, data=bucket), tmp_path / "work")
    assert result.complete, result.to_markdown()
    for user in ("alice", "bob"):
        assert_space_is_the_source(inst, target, user)
    # a lost object is missing, named by its key and path
    bob = inst.fileids["bob", "files/Reports/q1.txt"]
    bucket.delete(f"urn:oid:{bob}")
    change_file(inst, "bob", "files/Reports/q1.txt", b"Q1: lost\n", 1_700_000_000)
    again = run_recipe(OWNCLOUD, options(inst, target, data=bucket), tmp_path / "work")
    assert not again.complete
    reasons = " ".join(dict(again.failures)["home:bob"])
    assert f"urn:oid:{bob} (files/Reports/q1.txt) is not in the object store" in reasons
