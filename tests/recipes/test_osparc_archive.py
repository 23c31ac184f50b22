"""The osparc recipe's source defects (item 6) and archives (item 2), on PostgreSQL and moto S3."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import osparc_schema as gen
import pytest
from recipes_data import new_bucket

from carmigrate.cid import decode_dag_cbor
from carmigrate.cli import main
from carmigrate.errors import (
    BlockHashMismatch,
    FormatError,
    PlanError,
    PreflightError,
    VerificationError,
)
from carmigrate.recipes import (
    CHUNK_SIZE,
    DEFECT_KINDS,
    EXPORT_FORMAT,
    LEASE_TABLE,
    check_osparc_files,
    export_osparc_projects,
    import_osparc_archive,
    job_status,
    new_project_uuid,
    read_osparc_archive,
    run_osparc_import_job,
    submit_osparc_import,
)
from carmigrate.storage import Store

pytestmark = pytest.mark.s3


@pytest.fixture
def bucket(recipes_moto: dict[str, Any]) -> Iterator[Store]:
    store = new_bucket(recipes_moto, "b-simcore")
    yield store
    store.close()


@pytest.fixture
def source(new_pg: Callable[[], str], bucket: Store) -> str:
    url = new_pg()
    gen.create(url)
    gen.populate(url, gen.SOURCE, put=bucket.write)
    gen.add_links(url, gen.SOURCE)
    return url


def survey() -> tuple[gen.Project, str]:
    p = next(p for p in gen.SOURCE.projects if p.name == "survey")
    return p, gen.project_uuid(gen.SOURCE, p)


def name_of(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def test_every_source_defect_is_reported(source: str, bucket: Store) -> None:
    _, pu = survey()
    files, defects = check_osparc_files(source, bucket, pu)
    found = {(d.kind, name_of(d.key)) for d in defects}
    assert found == {
        ("missing_object", "lost.bin"),
        ("orphan_object", "stray.bin"),
        ("multipart_etag", "big.h5"),
        ("multipart_etag", "raw.dat"),
        ("null_checksum", "notes.txt"),
        ("null_checksum", "raw.dat"),
        ("unverifiable", "raw.dat"),
        ("null_checksum", "outputs"),  # a directory row vouches for nothing
        ("unverifiable", "outputs"),
        ("soft_link", "link-in"),
        ("soft_link_outside", "link-out"),
    }
    assert {d.kind for d in defects} == set(DEFECT_KINDS)
    checks = {name_of(f.file_id): f.check for f in files}
    assert checks["big.h5"] == "sha256"  # a multipart ETag, but a SHA-256 vouches
    assert checks["notes.txt"] == "md5"  # no SHA-256, a single-part ETag vouches
    assert checks["raw.dat"] == "unverifiable"
    # every object under the project's prefix is accounted for
    listed = {o.key for o in bucket.list(f"{pu}/")}
    dirs = [f.object_name + "/" for f in files if f.is_directory]
    named = {
        f.object_name
        for f in files
        if f.present and not f.is_soft_link and not f.is_directory
    } | {k for k in listed if any(k.startswith(d) for d in dirs)}
    assert len(named) == 7  # 5 files, and 2 objects under the directory row
    orphans = {d.key for d in defects if d.kind == "orphan_object"}
    assert listed == named | orphans


def test_export_and_read_back(source: str, bucket: Store, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    p, pu = survey()
    out = tmp_path / "project.car"
    root = export_osparc_projects(
        source, bucket, [pu], out, deployment="tip-in-house", signing_key=raw
    )
    archive = read_osparc_archive(out, public_key=public)
    assert archive.root == root
    assert archive.signature == "verified"
    assert read_osparc_archive(out).signature == "unverifiable"  # signed, no key given
    m = archive.manifest
    assert m["format"] == EXPORT_FORMAT
    assert m["version"] == 1
    assert m["created"].endswith("Z")
    assert m["source"]["deployment"] == "tip-in-house"
    assert m["schema"]["fingerprint"].startswith("sha256:")
    (entry,) = m["projects"]
    assert {n["what"]: n["count"] for n in entry["fidelity"]["not_carried"]}[
        "tags"
    ] == 1
    assert {(d["kind"], name_of(d["key"])) for d in entry["defects"]} >= {
        ("missing_object", "lost.bin"),
        ("orphan_object", "stray.bin"),
    }
    rows = archive.rows[pu]
    assert [r["uuid"] for r in rows["projects"]] == [pu]
    assert len(rows["projects_nodes"]) == 3
    # the row of the missing object and the link out of the project are not carried
    assert sorted(name_of(r["file_id"]) for r in rows["file_meta_data"]) == [
        "big.h5",
        "link-in",
        "mesh.vtk",
        "notes.txt",
        "outputs",
        "raw.dat",
        "result.csv",
    ]
    assert [r["email"] for r in rows["users"]] == ["Alice@Example.org"]
    files = {name_of(f["key"]): f for f in archive.files()}
    assert set(files) == {
        "big.h5",
        "mesh.vtk",
        "notes.txt",
        "raw.dat",
        "result.csv",
        "a.txt",  # the objects under the directory row "outputs"
        "b.txt",
    }
    assert files["raw.dat"]["check"] == "unverifiable"
    assert files["b.txt"]["check"] == "unverifiable"
    assert files["b.txt"]["key"].endswith("/outputs/sub/b.txt")
    assert len(files["big.h5"]["blocks"]) == -(-3_000_000 // CHUNK_SIZE)
    for f in p.files:
        key = gen.file_key(gen.SOURCE, p, f)
        if f.children is not None:
            for child, body in f.children.items():
                assert archive.read_file(f"{key}/{child}") == body
        elif f.data is not None:
            assert archive.read_file(key) == f.data

    # another key, or no signature when one is required: refused
    other = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    with pytest.raises(VerificationError, match="another key"):
        read_osparc_archive(out, public_key=other)
    unsigned = tmp_path / "unsigned.car"
    export_osparc_projects(source, bucket, [pu], unsigned)
    assert read_osparc_archive(unsigned).signature == "unsigned"
    with pytest.raises(VerificationError, match="not signed"):
        read_osparc_archive(unsigned, public_key=public)


def test_one_flipped_byte_is_refused(
    source: str, bucket: Store, tmp_path: Path
) -> None:
    _, pu = survey()
    out = tmp_path / "project.car"
    export_osparc_projects(source, bucket, [pu], out)
    data = bytearray(out.read_bytes())
    for at in (len(data) // 2, len(data) - 200):  # in a file's bytes, near the index
        flipped = tmp_path / f"flipped-{at}.car"
        bad = bytearray(data)
        bad[at] ^= 0x01
        flipped.write_bytes(bytes(bad))
        with pytest.raises((BlockHashMismatch, FormatError)):
            read_osparc_archive(flipped)


def test_export_refuses_bytes_that_do_not_match_their_row(
    source: str, bucket: Store, tmp_path: Path
) -> None:
    p, pu = survey()
    key = gen.file_key(gen.SOURCE, p, p.files[1])  # result.csv, with a SHA-256
    bucket.write(key, b"t,v\n0,2\n")  # same size, other bytes
    out = tmp_path / "project.car"
    with pytest.raises(VerificationError) as e:
        export_osparc_projects(source, bucket, [pu], out)
    assert "result.csv" in str(e.value.failures[0])
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either


def test_cli_export_then_extract_one_file_with_car_commands(
    source: str,
    bucket: Store,
    tmp_path: Path,
    recipes_moto: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", recipes_moto["endpoint_url"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", recipes_moto["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", recipes_moto["secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", recipes_moto["region"])
    p, pu = survey()
    out = tmp_path / "project.car"
    bucket_url = f"s3://{bucket.url.split('://', 1)[1].split('/', 1)[0]}"
    code = main(
        [
            "recipe",
            "osparc",
            "export",
            "--db",
            source,
            "--s3",
            bucket_url,
            "--project",
            pu,
            "-o",
            str(out),
            "--work",
            str(tmp_path / "work"),
            "--upload",
            f"{bucket_url}/exports/project.car",
            "--link-expiry",
            "600",
            "--json",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    outputs = json.loads(printed)["outputs"]
    assert outputs["root"] == str(read_osparc_archive(out).root)
    # item 3: the archive was also stored, with a download link
    assert outputs["upload"]["url"].endswith("/exports/project.car")
    assert outputs["upload"]["size"] == out.stat().st_size
    assert "X-Amz-Expires=600" in outputs["upload"]["link"]

    # any CAR tool: the roots, the blocks and their places
    assert main(["car", "verify", str(out)]) == 0
    capsys.readouterr()
    assert main(["car", "roots", str(out), "--json"]) == 0
    (root,) = json.loads(capsys.readouterr().out)["roots"]
    assert main(["car", "ls", str(out), "--json"]) == 0
    places = {
        b["cid"]: (b["offset"], b["length"])
        for b in map(json.loads, capsys.readouterr().out.splitlines())
    }
    data = out.read_bytes()

    def block(cid: str) -> bytes:
        offset, length = places[cid]
        return data[offset : offset + length]

    from carmigrate.cid import CID

    manifest: Any = decode_dag_cbor(block(root))
    wanted = gen.file_key(gen.SOURCE, p, p.files[0])  # mesh.vtk
    (entry,) = [f for f in manifest["projects"][0]["files"] if f["key"] == wanted]
    extracted = b"".join(block(str(c)) for c in entry["blocks"])
    assert extracted == p.files[0].data
    assert all(isinstance(c, CID) for c in entry["blocks"])


# -- import (item 4, without the detached job) -----------------------------------


@pytest.fixture
def destination(
    new_pg: Callable[[], str], recipes_moto: dict[str, Any]
) -> Iterator[tuple[str, Store]]:
    url = new_pg()
    gen.create(url)
    store = new_bucket(recipes_moto, "a-simcore")
    gen.populate(url, gen.DEST, put=store.write)
    yield url, store
    store.close()


def rows_of(url: str, sql: str, **params: object) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]
    finally:
        engine.dispose()


def exported(source: str, bucket: Store, tmp_path: Path, name: str = "survey") -> Path:
    p = next(p for p in gen.SOURCE.projects if p.name == name)
    out = tmp_path / f"{name}.car"
    export_osparc_projects(source, bucket, [gen.project_uuid(gen.SOURCE, p)], out)
    return out


def test_import_files_then_rows(
    source: str,
    bucket: Store,
    destination: tuple[str, Store],
    new_pg: Callable[[], str],
    tmp_path: Path,
) -> None:
    db, store = destination
    p, pu = survey()
    before = {o.key for o in store.list()}
    done = import_osparc_archive(
        exported(source, bucket, tmp_path),
        database=db,
        store=store,
        ledger=tmp_path / "import.db",
        staging=new_pg(),
    )
    assert done.project == pu
    assert any(line.startswith("collision: project") for line in done.preflight)
    assert any("case_variant" in line for line in done.preflight)
    new = done.new_project
    # every carried file is at its new key, with its bytes
    assert {o.key for o in store.list()} == before | set(done.objects)
    node_map = done.plan.mapped("projects_nodes", "node_id")
    for f in p.files:
        old_node = gen.node_uuid(gen.SOURCE, p, f.node)
        key = f"{new}/{node_map[old_node]}/{f.name}"
        wanted = (
            {f"{key}/{c}": b for c, b in f.children.items()}
            if f.children is not None
            else {}
            if f.data is None
            else {key: f.data}
        )
        for k, body in wanted.items():
            with store.open_read(k) as r:
                assert r.read() == body
    files = rows_of(
        db,
        "SELECT file_id, bucket_name FROM file_meta_data WHERE project_id = :u",
        u=new,
    )
    assert {f["bucket_name"] for f in files} == {store.url[5:].split("/")[0]}
    assert len(files) == 7  # lost.bin and link-out were not carried
    assert done.rows == {"projects": 1, "projects_nodes": 3, "file_meta_data": 7}
    assert len(done.objects) == 7
    assert rows_of(db, f"SELECT * FROM {LEASE_TABLE}") == []  # unlocked


def test_import_failure_removes_everything_it_wrote(
    source: str,
    bucket: Store,
    destination: tuple[str, Store],
    new_pg: Callable[[], str],
    tmp_path: Path,
) -> None:
    import sqlalchemy as sa

    db, store = destination
    engine = sa.create_engine(db)
    with engine.begin() as conn:  # the destination refuses file rows
        conn.exec_driver_sql(
            "CREATE FUNCTION no_files() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'file rows refused'; END $$; "
            "CREATE TRIGGER no_files BEFORE INSERT ON file_meta_data "
            "FOR EACH ROW EXECUTE FUNCTION no_files()"
        )
    engine.dispose()
    before_keys = {o.key for o in store.list()}
    before_projects = rows_of(db, "SELECT uuid FROM projects ORDER BY id")
    before_dump = data_dump(db)
    with pytest.raises(Exception, match="file rows refused"):
        import_osparc_archive(
            exported(source, bucket, tmp_path),
            database=db,
            store=store,
            ledger=tmp_path / "import.db",
            staging=new_pg(),
        )
    assert {o.key for o in store.list()} == before_keys
    assert rows_of(db, "SELECT uuid FROM projects ORDER BY id") == before_projects
    assert rows_of(db, f"SELECT * FROM {LEASE_TABLE}") == []
    # every row of every table is as it was (pg_dump --data-only)
    assert data_dump(db) == before_dump


def data_dump(url: str) -> list[str]:
    """``pg_dump --data-only`` of the deployment's tables, lines sorted.

    carmigrate's own tables (the record stages' markers, the leases) are
    left out, and so are sequence positions: PostgreSQL never rewinds a
    sequence, and the stages that committed before the failure moved them.
    """
    from pg_cluster import pg_dump_lines

    out = pg_dump_lines(url, "--data-only", "--exclude-table=carmigrate_*")
    return sorted(
        line
        for line in out
        if line
        and not line.startswith(("--", "\\restrict", "\\unrestrict"))
        and "pg_catalog.setval" not in line
    )


def test_import_refuses_before_writing(
    source: str,
    bucket: Store,
    destination: tuple[str, Store],
    new_pg: Callable[[], str],
    tmp_path: Path,
) -> None:
    db, store = destination
    before = {o.key for o in store.list()}
    # an owner without an account at the destination
    with pytest.raises(PreflightError, match="missing owner"):
        import_osparc_archive(
            exported(source, bucket, tmp_path, "orphaned-owner"),
            database=db,
            store=store,
            ledger=tmp_path / "a.db",
            staging=new_pg(),
        )
    # a tampered archive
    car = exported(source, bucket, tmp_path)
    data = bytearray(car.read_bytes())
    data[len(data) // 2] ^= 0x01
    car.write_bytes(bytes(data))
    with pytest.raises((BlockHashMismatch, FormatError)):
        import_osparc_archive(
            car, database=db, store=store, ledger=tmp_path / "b.db", staging=new_pg()
        )
    # a project locked by another import
    ns = uuid.UUID("11111111-2222-4333-8444-555555555555")
    _, pu = survey()
    lease = _lock(db, new_project_uuid(pu, ns))
    with pytest.raises(PlanError, match="locked"):
        import_osparc_archive(
            exported(source, bucket, tmp_path),
            database=db,
            store=store,
            ledger=tmp_path / "c.db",
            staging=new_pg(),
            namespace=ns,
        )
    assert rows_of(db, f"SELECT holder FROM {LEASE_TABLE}") == [{"holder": lease}]
    assert {o.key for o in store.list()} == before
    assert rows_of(db, "SELECT count(*) AS n FROM file_meta_data") == [{"n": 2}]


def _lock(db: str, project: str, hours: int = 1) -> str:
    import datetime

    import sqlalchemy as sa

    engine = sa.create_engine(db)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {LEASE_TABLE} (project_uuid VARCHAR PRIMARY KEY, "
            "holder VARCHAR NOT NULL, expires_at TIMESTAMPTZ NOT NULL)"
        )
        conn.execute(
            sa.text(f"INSERT INTO {LEASE_TABLE} VALUES (:p, 'elsewhere', :e)"),
            {
                "p": project,
                "e": datetime.datetime.now(datetime.UTC)
                + datetime.timedelta(hours=hours),
            },
        )
    engine.dispose()
    return "elsewhere"


def test_cli_import(
    source: str,
    bucket: Store,
    destination: tuple[str, Store],
    new_pg: Callable[[], str],
    tmp_path: Path,
    recipes_moto: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", recipes_moto["endpoint_url"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", recipes_moto["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", recipes_moto["secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", recipes_moto["region"])
    db, store = destination
    car = exported(source, bucket, tmp_path)
    bucket_url = f"s3://{store.url.split('://', 1)[1].split('/', 1)[0]}"
    args = [
        "recipe",
        "osparc",
        "import",
        str(car),
        "--db",
        db,
        "--s3",
        bucket_url,
        "--work",
        str(tmp_path / "work"),
        "--json",
    ]
    assert main(args) == 2  # --ledger and --staging are missing
    capsys.readouterr()
    code = main([*args, "--ledger", str(tmp_path / "i.db"), "--staging", new_pg()])
    printed = capsys.readouterr().out
    assert code == 0, printed
    outputs = json.loads(printed)["outputs"]
    assert outputs["rows"] == {"projects": 1, "projects_nodes": 3, "file_meta_data": 7}
    assert outputs["objects"] == 7
    moved = rows_of(
        db, "SELECT name FROM projects WHERE uuid = :u", u=outputs["new_project"]
    )
    assert moved == [{"name": "survey"}]


# -- jobs: killed and resumed, detached ------------------------------------------

KILLER = """
import os, signal, sys
from carmigrate.storage import S3Store
from carmigrate.recipes import run_osparc_import_job

original = S3Store.write
count = 0

def write(self, *args, **kwargs):
    global count
    info = original(self, *args, **kwargs)
    count += 1
    if count == 2:  # the second object is written, the job file does not know yet
        os.kill(os.getpid(), signal.SIGKILL)
    return info

S3Store.write = write
run_osparc_import_job(sys.argv[1])
"""


@pytest.fixture
def aws_env(
    recipes_moto: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Path:
    monkeypatch.setenv("AWS_ENDPOINT_URL", recipes_moto["endpoint_url"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", recipes_moto["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", recipes_moto["secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", recipes_moto["region"])
    jobs = tmp_path / "jobs"
    monkeypatch.setenv("CARMIGRATE_JOBS", str(jobs))
    return jobs


def test_a_killed_import_job_resumes(
    source: str,
    bucket: Store,
    destination: tuple[str, Store],
    new_pg: Callable[[], str],
    tmp_path: Path,
    aws_env: Path,
) -> None:
    import subprocess
    import sys

    db, store = destination
    before = {o.key for o in store.list()}
    bucket_url = f"s3://{store.url.split('://', 1)[1].split('/', 1)[0]}"
    job = submit_osparc_import(
        str(exported(source, bucket, tmp_path)),
        database=db,
        s3=bucket_url,
        ledger=str(tmp_path / "job-ledger.db"),
        staging=new_pg(),
    )
    assert job_status(job).state == "queued"
    done = subprocess.run(
        [sys.executable, "-c", KILLER, job], capture_output=True, check=False
    )
    assert done.returncode == -9, done.stderr.decode()
    status = job_status(job)
    assert status.state == "interrupted"
    assert status.written == 1  # the second object is there, unrecorded
    assert len({o.key for o in store.list()} - before) == 2
    (lease,) = rows_of(db, f"SELECT holder FROM {LEASE_TABLE}")
    assert lease == {"holder": job}  # still locked by the job

    result = run_osparc_import_job(job)  # resumes: the same plan, the same keys
    status = job_status(job)
    assert status.state == "succeeded"
    assert status.result is not None
    assert status.result["new_project"] == result.new_project
    assert status.written == 7
    assert {o.key for o in store.list()} == before | set(result.objects)
    moved = rows_of(
        db,
        "SELECT count(*) AS n FROM file_meta_data WHERE project_id = :u",
        u=result.new_project,
    )
    assert moved == [{"n": 7}]
    assert rows_of(db, f"SELECT * FROM {LEASE_TABLE}") == []
    with pytest.raises(PlanError, match="succeeded already"):
        run_osparc_import_job(job)


def test_detached_import_and_job_status(
    source: str,
    bucket: Store,
    destination: tuple[str, Store],
    new_pg: Callable[[], str],
    tmp_path: Path,
    aws_env: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import time

    db, store = destination
    car = exported(source, bucket, tmp_path)
    bucket_url = f"s3://{store.url.split('://', 1)[1].split('/', 1)[0]}"
    code = main(
        [
            "recipe",
            "osparc",
            "import",
            str(car),
            "--db",
            db,
            "--s3",
            bucket_url,
            "--ledger",
            str(tmp_path / "d.db"),
            "--staging",
            new_pg(),
            "--detach",
            "--work",
            str(tmp_path / "work"),
            "--json",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    job = json.loads(printed)["outputs"]["job"]
    deadline = time.monotonic() + 120
    state = ""
    while time.monotonic() < deadline:
        assert main(["job", "status", job, "--json"]) == 0
        state = json.loads(capsys.readouterr().out)["state"]
        if state in ("succeeded", "failed", "interrupted"):
            break
        time.sleep(0.2)
    assert state == "succeeded", (aws_env / f"{job}.log").read_text()
    assert main(["job", "status", job]) == 0
    assert "succeeded" in capsys.readouterr().out
    assert main(["job", "status", "osparc-import-000000000000"]) == 2


def test_an_expired_lease_is_taken_over(
    source: str,
    bucket: Store,
    destination: tuple[str, Store],
    new_pg: Callable[[], str],
    tmp_path: Path,
) -> None:
    db, store = destination
    ns = uuid.UUID("11111111-2222-4333-8444-555555555555")
    _, pu = survey()
    _lock(db, new_project_uuid(pu, ns), hours=-1)  # expired an hour ago
    done = import_osparc_archive(
        exported(source, bucket, tmp_path),
        database=db,
        store=store,
        ledger=tmp_path / "l.db",
        staging=new_pg(),
        namespace=ns,
    )
    assert done.new_project == new_project_uuid(pu, ns)
    assert rows_of(db, f"SELECT * FROM {LEASE_TABLE}") == []


def test_upload_stores_the_checked_archive_and_a_link_that_expires(
    source: str, bucket: Store, tmp_path: Path
) -> None:
    """Item 3: the archive in a store, checked before visible, downloadable by link."""
    import urllib.request

    from carmigrate.errors import StorageError
    from carmigrate.recipes import upload_osparc_archive
    from carmigrate.storage import LocalStore

    _, pu = survey()
    out = tmp_path / "project.car"
    export_osparc_projects(source, bucket, [pu], out)
    data = out.read_bytes()
    up = upload_osparc_archive(out, bucket, "exports/project.car", expires_in=60)
    assert up.size == len(data)
    assert up.sha256 == hashlib.sha256(data).hexdigest()
    assert up.url.endswith("/exports/project.car")
    assert up.link is not None
    assert up.expires is not None
    assert up.expires.endswith("Z")
    with urllib.request.urlopen(up.link) as r:
        assert r.read() == data
    # the link carries its validity (moto does not enforce expiry, so the
    # signature's parameter is what can be checked here)
    short = upload_osparc_archive(out, bucket, "exports/short.car", expires_in=90)
    assert short.link is not None
    assert "X-Amz-Expires=90" in short.link
    # a store without presigned URLs: the archive is there, no link is made up
    local = LocalStore(tmp_path / "shelf")
    plain = upload_osparc_archive(out, local, "p.car")
    assert plain.link is None
    assert plain.expires is None
    assert (tmp_path / "shelf" / "p.car").read_bytes() == data

    # bytes that change between the digest and the upload never become visible
    class Shifty(LocalStore):
        def write(self, key: str, data: Any, **kw: Any) -> Any:
            body = data.read()
            return super().write(key, body[:-1] + b"!", **kw)

    with pytest.raises(StorageError):
        upload_osparc_archive(out, Shifty(tmp_path / "shifty"), "p.car")
    assert not (tmp_path / "shifty" / "p.car").exists()
