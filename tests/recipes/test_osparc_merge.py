"""The osparc recipe's merge (#15 item 5): deployment A into B, killed and resumed, rolled back."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import osparc_schema as gen
import pytest
import sqlalchemy as sa
from recipes_data import new_bucket

from carmigrate.cli import main
from carmigrate.errors import PreflightError, VerificationError
from carmigrate.recipes import (
    CARRIED_COLUMNS,
    MERGE_STATE,
    merge_osparc_deployments,
    rollback_osparc_merge,
    select_osparc_projects,
)
from carmigrate.storage import S3Store

pytestmark = pytest.mark.s3

NS = uuid.UUID("3c2b1a09-0807-4605-8403-020100ffeedd")
CHOSEN = ("alice@example.org", "BOB@b.example")  # survey and filler


@attrs.define
class Side:
    db: str
    store: S3Store


@pytest.fixture
def side_a(new_pg: Callable[[], str], recipes_moto: dict[str, Any]) -> Iterator[Side]:
    url = new_pg()
    gen.create(url)
    store = new_bucket(recipes_moto, "a-simcore", "key-of-a")
    gen.populate(url, gen.SOURCE, put=store.write)
    gen.add_links(url, gen.SOURCE)
    yield Side(url, store)
    store.close()


@pytest.fixture
def make_b(
    new_pg: Callable[[], str], recipes_moto: dict[str, Any]
) -> Iterator[Callable[[], Side]]:
    opened: list[S3Store] = []

    def make() -> Side:
        url = new_pg()
        gen.create(url)
        store = new_bucket(recipes_moto, "b-simcore", "key-of-b")
        opened.append(store)
        gen.populate(url, gen.DEST, put=store.write)
        # bob has an account at B too (carol has none)
        rows_of(
            url, "INSERT INTO users (name, email) VALUES ('bobby', 'bob@b.example')"
        )
        return Side(url, store)

    yield make
    for s in opened:
        s.close()


def rows_of(url: str, sql: str, **params: object) -> list[dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(sql), params)
            return [dict(r) for r in result.mappings()] if result.returns_rows else []
    finally:
        engine.dispose()


PROJECT_COLUMN = {
    "projects": "uuid",
    "projects_nodes": "project_uuid",
    "file_meta_data": "project_id",
}


def snapshot(side: Side, merged: Sequence[str] | None = None) -> dict[str, Any]:
    """B's carried rows and its objects; with ``merged``, only those projects' rows.

    ``bucket_name`` is left out (each B has its own bucket).
    """
    out: dict[str, Any] = {}
    for table, columns in CARRIED_COLUMNS.items():
        cols = ", ".join(f'"{c}"' for c in columns if c != "bucket_name")
        sql = f"SELECT {cols} FROM {table}"
        if merged is not None and table in PROJECT_COLUMN:
            sql += f" WHERE {PROJECT_COLUMN[table]} = ANY(:p)"
        out[table] = sorted(
            repr(sorted(r.items())) for r in rows_of(side.db, sql, p=list(merged or []))
        )
    objects = {}
    for info in side.store.list():
        with side.store.open_read(info.key) as r:
            objects[info.key] = r.read()
    out["objects"] = objects
    return out


def test_selection(side_a: Side) -> None:
    survey, filler = (
        gen.project_uuid(gen.SOURCE, p)
        for p in gen.SOURCE.projects
        if p.name in ("survey", "filler")
    )
    assert set(select_osparc_projects(side_a.db, users=CHOSEN)) == {survey, filler}
    assert select_osparc_projects(side_a.db, projects=[survey]) == (survey,)
    assert len(select_osparc_projects(side_a.db)) == len(gen.SOURCE.projects)


def test_preflight_of_everything_writes_nothing(
    side_a: Side, make_b: Callable[[], Side], new_pg: Callable[[], str], tmp_path: Path
) -> None:
    b = make_b()
    before = snapshot(b)
    with pytest.raises(PreflightError) as e:
        merge_osparc_deployments(
            side_a.db, side_a.store, b.db, b.store, tmp_path / "w", staging=new_pg()
        )
    text = str(e.value)
    assert "missing owner: user 3 has no account" in text  # carol
    assert "missing service: simcore/services/dynamic/raw-graphs:2.11.1" in text
    assert snapshot(b) == before
    assert not (tmp_path / "w" / MERGE_STATE).exists()


def merged(side_a: Side, b: Side, work: Path, staging: str) -> Any:
    return merge_osparc_deployments(
        side_a.db,
        side_a.store,
        b.db,
        b.store,
        work,
        staging=staging,
        users=CHOSEN,
        namespace=NS,
    )


def test_merge_objects_verified_rows_by_context_and_rollback(
    side_a: Side, make_b: Callable[[], Side], new_pg: Callable[[], str], tmp_path: Path
) -> None:
    b = make_b()
    before = snapshot(b)
    done = merged(side_a, b, tmp_path / "w", new_pg())
    assert len(done.projects) == 2
    assert done.rows == {"projects": 2, "projects_nodes": 4, "file_meta_data": 8}
    checks = {o.source_key.rsplit("/", 1)[-1]: o.check for o in done.objects}
    assert checks == {
        "f.dat": "sha256",
        "mesh.vtk": "sha256",
        "result.csv": "sha256",
        "big.h5": "sha256",  # a multipart ETag, but its row has a SHA-256
        "raw.dat": "unverifiable",  # a multipart ETag and no SHA-256
        "notes.txt": "md5",  # a single-part ETag only
        "a.txt": "unverifiable",  # under a directory row
        "b.txt": "unverifiable",
    }
    after = snapshot(b)
    new_keys = set(after["objects"]) - set(before["objects"])
    assert new_keys == {o.key for o in done.objects}
    for o in done.objects:
        with side_a.store.open_read(o.source_key) as r:
            assert after["objects"][o.key] == r.read()
    # every stage of every project committed, one ledger per project
    from carmigrate.migrate import Ledger, record_checkpoints

    for p in done.projects:
        with Ledger(tmp_path / "w" / f"{p}.records.db") as ledger:
            assert [c.stage for c in record_checkpoints(ledger)] == [
                "platform",
                "users",
                "services",
                "studies",
            ]
    # users merged by e-mail: no user added at B
    assert after["users"] == before["users"]
    files = rows_of(
        b.db,
        "SELECT object_name, bucket_name FROM file_meta_data WHERE project_id = ANY(:p)",
        p=list(done.projects.values()),
    )
    assert {f["bucket_name"] for f in files} == {b.store.url[5:].split("/")[0]}

    deleted = rollback_osparc_merge(tmp_path / "w", side_a.store, b.db, b.store)
    assert set(deleted) == new_keys
    assert snapshot(b) == before


def test_bytes_that_do_not_match_their_row_are_refused(
    side_a: Side, make_b: Callable[[], Side], new_pg: Callable[[], str], tmp_path: Path
) -> None:
    b = make_b()
    survey = next(p for p in gen.SOURCE.projects if p.name == "survey")
    key = gen.file_key(gen.SOURCE, survey, survey.files[0])
    side_a.store.write(key, b"flipped " * 1250)  # mesh.vtk, same length
    before = snapshot(b)
    with pytest.raises(VerificationError, match=r"mesh\.vtk"):
        merged(side_a, b, tmp_path / "w", new_pg())
    # filler (merged first) is complete; of survey, no row, and nothing
    # under mesh.vtk's new key (only the objects that did verify)
    after = snapshot(b)
    new = str(uuid.uuid5(NS, gen.project_uuid(gen.SOURCE, survey)))
    assert rows_of(b.db, "SELECT 1 FROM projects WHERE uuid = :u", u=new) == []
    assert len(after["file_meta_data"]) == len(before["file_meta_data"]) + 1
    assert all(
        "mesh.vtk" not in k for k in set(after["objects"]) - set(before["objects"])
    )


KILLER = """
import json, os, signal, sys
from carmigrate.recipes import merge_osparc_deployments
from carmigrate.storage import S3Store
import uuid

a = json.loads(sys.argv[1])
events = 0

def hook(kind, what):
    global events
    if kind == a["kill_kind"]:
        events += 1
        if events == a["kill_at"]:
            os.kill(os.getpid(), signal.SIGKILL)

merge_osparc_deployments(
    a["a_db"], S3Store(a["a_bucket"], **a["a_moto"]),
    a["b_db"], S3Store(a["b_bucket"], **a["b_moto"]),
    a["work"], staging=a["staging"], users=a["users"],
    namespace=uuid.UUID(a["ns"]), hook=hook,
)
"""


@pytest.mark.parametrize(
    ("kill_kind", "kill_at"),
    # survey's 2nd object; filler's last stage (not yet marked done); survey's users stage
    [("object", 3), ("stage", 4), ("stage", 6)],
)
def test_killed_and_resumed_equals_uninterrupted(
    side_a: Side,
    make_b: Callable[[], Side],
    new_pg: Callable[[], str],
    tmp_path: Path,
    recipes_moto: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    kill_kind: str,
    kill_at: int,
) -> None:
    whole, killed = make_b(), make_b()
    uninterrupted = merged(side_a, whole, tmp_path / "whole", new_pg())
    new = list(uninterrupted.projects.values())

    staging = new_pg()
    args = {
        "a_db": side_a.db,
        "a_bucket": side_a.store.url[5:].split("/")[0],
        "a_moto": {**recipes_moto, "access_key_id": "key-of-a"},
        "b_db": killed.db,
        "b_bucket": killed.store.url[5:].split("/")[0],
        "b_moto": {**recipes_moto, "access_key_id": "key-of-b"},
        "work": str(tmp_path / "killed"),
        "staging": staging,
        "users": list(CHOSEN),
        "ns": str(NS),
        "kill_kind": kill_kind,
        "kill_at": kill_at,
    }
    run = subprocess.run(
        [sys.executable, "-c", KILLER, json.dumps(args)],
        capture_output=True,
        check=False,
    )
    assert run.returncode == -9, run.stderr.decode()
    state = json.loads((tmp_path / "killed" / MERGE_STATE).read_text())
    recorded = len(state["objects"])
    assert recorded == {3: 3, 4: 1, 6: 8}[kill_at]

    writes: list[str] = []
    original = S3Store.write

    def counting(self: S3Store, key: str, *a: Any, **kw: Any) -> Any:
        writes.append(key)
        return original(self, key, *a, **kw)

    monkeypatch.setattr(S3Store, "write", counting)
    done = merged(side_a, killed, tmp_path / "killed", staging)
    assert len(writes) == 8 - recorded  # objects already verified are not copied again
    assert len(done.objects) == 8
    assert done.projects == uninterrupted.projects
    assert done.rows == uninterrupted.rows
    assert snapshot(killed, new) == snapshot(whole, new)
    assert len(snapshot(killed, new)["file_meta_data"]) == 8


@pytest.mark.parametrize("profiles", [False, True])
def test_cli_merge(
    side_a: Side,
    make_b: Callable[[], Side],
    new_pg: Callable[[], str],
    tmp_path: Path,
    recipes_moto: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    profiles: bool,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", recipes_moto["endpoint_url"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", recipes_moto["region"])
    sides: list[str] = []
    if profiles:
        # each side's credentials only in its named profile: none in the
        # environment, so a side that ignored its profile could not sign
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
            monkeypatch.delenv(name, raising=False)
        creds = tmp_path / "credentials"
        creds.write_text(
            "".join(
                f"[{n}]\naws_access_key_id = key-of-{n}\n"
                f"aws_secret_access_key = {recipes_moto['secret_access_key']}\n"
                for n in ("tip", "cloud")
            )
        )
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
        sides = ["--from-profile", "tip", "--to-profile", "cloud"]
    else:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", recipes_moto["access_key_id"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", recipes_moto["secret_access_key"])
    b = make_b()
    survey = next(p for p in gen.SOURCE.projects if p.name == "survey")
    args = [
        "recipe",
        "osparc",
        "merge",
        "--from-db",
        side_a.db,
        "--from-s3",
        "s3://" + side_a.store.url[5:].split("/")[0],
        "--to-db",
        b.db,
        "--to-s3",
        "s3://" + b.store.url[5:].split("/")[0],
        "--work",
        str(tmp_path / "work"),
        "--json",
        *sides,
    ]
    assert main(args) == 2  # --staging is missing
    capsys.readouterr()
    code = main(
        [
            *args,
            "--staging",
            new_pg(),
            "--project",
            gen.project_uuid(gen.SOURCE, survey),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    outputs = json.loads(printed)["outputs"]
    assert outputs["rows"] == {"projects": 1, "projects_nodes": 3, "file_meta_data": 7}
    assert outputs["objects"] == 7
    assert outputs["verified"] == 4
    assert len(outputs["unverifiable"]) == 3
    (new,) = outputs["projects"].values()
    assert rows_of(b.db, "SELECT name FROM projects WHERE uuid = :u", u=new) == [
        {"name": "survey"}
    ]
