"""The migration commands (plan, run, status, resume, verify, rollback, report).

Every command runs through ``carmigrate.cli.main([...])`` on real local
folders; one test moves data to and from a moto S3 server through ``s3://``
URLs configured only by the standard ``AWS_*`` environment variables, one
runs on a Dask LocalCluster, one stops a run with SIGINT in a subprocess,
and one runs ``scripts/demo.py`` on a small bucket.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carmigrate.car import CarWriter
from carmigrate.cid import CID
from carmigrate.cli import main
from carmigrate.migrate import ItemState, Ledger

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------
# helpers


def make_car(n: int, size: int = 3000) -> bytes:
    """A valid CARv1 of raw blocks, distinct per ``n``."""
    blocks = [
        hashlib.sha256(f"{n}:{i}".encode()).digest() * (size // 32 + i)
        for i in range(3)
    ]
    cids = [CID.from_data(b) for b in blocks]
    buf = io.BytesIO()
    with CarWriter(buf, roots=[cids[0]]) as w:
        for c, b in zip(cids, blocks, strict=True):
            w.write(c, b)
    return buf.getvalue()


def damage(car: bytes) -> bytes:
    out = bytearray(car)
    out[-10] ^= 1
    return bytes(out)


def car_key(car: bytes, folder: str) -> str:
    return f"{folder}/{CID.from_data(car, codec='car')}.car"


def write_tree(root: Path, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".carmigrate.")
    }


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code, out, err = cli(capsys, *argv, "--json")
    assert out.strip(), err
    return code, json.loads(out)


@pytest.fixture
def bucket(tmp_path: Path) -> dict[str, bytes]:
    """A legacy folder: CARs in two cohorts, one damaged CAR, one plain file."""
    objects = {car_key(make_car(i), "a"): make_car(i) for i in range(6)}
    objects.update({car_key(make_car(i), "b"): make_car(i) for i in range(6, 9)})
    objects["b/broken.car"] = damage(make_car(99))
    objects["b/notes.txt"] = b"not a CAR"
    write_tree(tmp_path / "src", objects)
    return objects


def _plan(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *extra: str
) -> tuple[str, str]:
    plan_file = str(tmp_path / "plan.jsonl")
    code, out, err = cli(
        capsys,
        "plan",
        str(tmp_path / "src"),
        str(tmp_path / "dst"),
        "-o",
        plan_file,
        *extra,
    )
    assert code == 0, err
    return plan_file, out


# ----------------------------------------------------------------------
# local folders


def test_plan_run_status_verify_report_on_local_folders(
    tmp_path: Path, bucket: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole cycle: good items verified, the damaged CAR failed and never visible."""
    plan_file, out = _plan(capsys, tmp_path, "--verify", "car,commp,sha256")
    assert "| all | copy | 11 |" in out
    assert f"carmigrate run {plan_file} --ledger" in out
    ledger = str(tmp_path / "ledger.db")

    code, out, _ = cli(capsys, "run", plan_file, "--ledger", ledger, "--no-progress")
    assert code == 1  # one item failed
    assert "b/broken.car: CAR check failed" in out
    assert "(at byte " in out

    code, st = cli_json(capsys, "status", "--ledger", ledger)
    assert code == 0
    assert st["items"] == 11
    assert st["by_state"] == {"failed": 1, "unverifiable": 1, "verified": 9}
    assert st["plan_id"].startswith("bafy")
    assert st["running"] is False
    assert st["last_run"]["kind"] == "execute"
    assert st["last_run"]["stop_reason"] == "done"

    expected = {k: v for k, v in bucket.items() if k != "b/broken.car"}
    assert read_tree(tmp_path / "dst") == expected

    code, out, _ = cli(capsys, "verify", plan_file, "--ledger", ledger)
    assert code == 0
    assert out.startswith("checked 10: 9 verified")

    code, out, _ = cli(capsys, "report", "--ledger", ledger)
    assert code == 1  # the report names a failure
    assert "# Migration report" in out
    assert "`b/broken.car`" in out
    code, rep = cli_json(capsys, "report", "--ledger", ledger)
    assert code == 1
    assert rep["failures_count"] == 1
    assert rep["verified"] == 9
    code, out, _ = cli(capsys, "report", "--ledger", ledger, "--markdown")
    assert out.startswith("# Migration report")

    # running again copies nothing
    code, again = cli_json(capsys, "run", plan_file, "--ledger", ledger)
    assert code == 1
    assert again["items"] == 0
    assert again["bytes"] == 0
    assert again["complete"] is True

    # PieceCIDs were recorded for the good CARs
    with Ledger(ledger, readonly=True) as led:
        pieces = [r.piece_cid for r in led.items(state=ItemState.VERIFIED)]
    assert sum(1 for p in pieces if p and p.startswith("baga")) == 9


def test_plan_json_summary_and_options(
    tmp_path: Path, bucket: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    """--json prints the summary; stages, limits and the ID rule land in the plan."""
    plan_file = str(tmp_path / "p.jsonl")
    code, summary = cli_json(
        capsys,
        "plan",
        str(tmp_path / "src"),
        str(tmp_path / "dst"),
        "-o",
        plan_file,
        "--stage-by",
        "segments:1",
        "--stage",
        "first=a",
        "--id-rule",
        "prefix:new-",
        "--id-pattern",
        r"(?P<id>[^/]+)\.txt$",
        "--rewrite-key",
        "--concurrency",
        "3",
        "--items-per-second",
        "50",
    )
    assert code == 0
    assert summary["items"] == 11
    assert summary["transfer_items"] == 11
    assert summary["path"] == str(Path(plan_file).resolve())
    assert [tuple(r) for r in summary["by_stage"]] == [
        ("first", "copy", 6, sum(len(v) for k, v in bucket.items() if k[0] == "a")),
        ("rest", "copy", 5, sum(len(v) for k, v in bucket.items() if k[0] == "b")),
    ]
    header = json.loads(Path(plan_file).read_text().splitlines()[0])
    assert header["limits"]["concurrency"] == 3
    assert header["limits"]["items_per_second"] == 50.0
    assert header["ids"]["kind"] == "prefix"
    lines = [json.loads(x) for x in Path(plan_file).read_text().splitlines()[1:]]
    notes = next(x for x in lines if x["source_key"] == "b/notes.txt")
    assert notes["destination_key"] == "b/new-notes.txt"
    assert notes["new_id"] == "new-notes"

    # a stage at a time
    ledger = str(tmp_path / "l.db")
    code, res = cli_json(
        capsys, "run", plan_file, "--ledger", ledger, "--stage", "first"
    )
    assert code == 0
    assert res["by_state"] == {"verified": 6}
    assert sorted(read_tree(tmp_path / "dst")) == sorted(
        k for k in bucket if k[0] == "a"
    )


def test_resume_rollback_and_canary_limits(
    tmp_path: Path, bucket: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    """A canary run stops after N items; resume finishes; rollback deletes one stage's objects."""
    plan_file, _ = _plan(capsys, tmp_path, "--stage-by", "segments:1", "--stage", "a=a")
    ledger = str(tmp_path / "l.db")

    code, out, _ = cli(capsys, "run", plan_file, "--ledger", ledger, "--max-items", "2")
    assert code == 0
    assert "run 1: max_items; 2 items finished" in out
    assert f"to continue: carmigrate resume --ledger {ledger}" in out

    code, res = cli_json(capsys, "resume", "--ledger", ledger, "--concurrency", "2")
    assert code == 1
    assert res["stop_reason"] == "done"
    assert res["by_state"]["verified"] == 9

    code, dry = cli_json(
        capsys, "rollback", "--ledger", ledger, "--stage", "a", "--dry-run"
    )
    assert code == 0
    assert dry["dry_run"] is True
    assert sorted(dry["deleted"]) == sorted(k for k in bucket if k[0] == "a")
    assert len(read_tree(tmp_path / "dst")) == 10  # nothing deleted yet

    code, out, _ = cli(capsys, "rollback", "--ledger", ledger, "--stage", "a")
    assert code == 0
    assert out.startswith("stage a: deleted 6 objects")
    assert sorted(read_tree(tmp_path / "dst")) == sorted(
        k for k in bucket if k[0] == "b" and k != "b/broken.car"
    )
    code, st = cli_json(capsys, "status", "--ledger", ledger)
    assert st["by_state"]["rolled_back"] == 6


def test_verify_finds_a_changed_object_and_resume_redoes_it(
    tmp_path: Path, bucket: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    """verify exits 1 on a mismatch and marks the item FAILED; resume copies it again."""
    plan_file, _ = _plan(capsys, tmp_path)
    ledger = str(tmp_path / "l.db")
    assert cli(capsys, "run", plan_file, "--ledger", ledger)[0] == 1
    victim = next(k for k in bucket if k.startswith("a/"))
    (tmp_path / "dst" / victim).unlink()

    code, out, _ = cli(capsys, "verify", "--ledger", ledger)
    assert code == 1
    assert f"MISMATCH {victim}: verify: the destination object is missing" in out
    code, rep = cli_json(capsys, "verify", plan_file, "--ledger", ledger)
    assert code == 0  # the failed item is no longer checked
    assert rep["ok"] is True

    code, _, _ = cli(capsys, "resume", "--ledger", ledger)
    assert code == 1  # b/broken.car stays failed
    assert (tmp_path / "dst" / victim).read_bytes() == bucket[victim]
    code, out, _ = cli(
        capsys, "verify", plan_file, "--ledger", ledger, "--reread-source"
    )
    assert code == 0
    assert "0 mismatches" in out


def test_events_and_progress(
    tmp_path: Path, bucket: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    """--events writes JSON lines; --progress draws a bar on standard error."""
    plan_file, _ = _plan(capsys, tmp_path)
    events = tmp_path / "events.jsonl"
    code, _, err = cli(
        capsys,
        "run",
        plan_file,
        "--ledger",
        str(tmp_path / "l.db"),
        "--events",
        str(events),
        "--progress",
    )
    assert code == 1
    assert "run 1" in err  # the bar's description
    kinds = [json.loads(line)["kind"] for line in events.read_text().splitlines()]
    assert kinds[0] == "run_started"
    assert kinds[-1] == "run_finished"
    assert kinds.count("done") == 10
    assert kinds.count("failed") == 1


def test_usage_errors_exit_2(
    tmp_path: Path, bucket: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing or foreign ledgers, bad plan files and bad options exit 2."""
    plan_file, _ = _plan(capsys, tmp_path)
    missing = str(tmp_path / "nope.db")
    for argv in (
        ["status", "--ledger", missing],
        ["resume", "--ledger", missing],
        ["report", "--ledger", missing],
        ["verify", "--ledger", missing],
        ["rollback", "--ledger", missing, "--stage", "all"],
        ["run", str(tmp_path / "nope.jsonl"), "--ledger", missing],
    ):
        code, out, err = cli(capsys, *argv)
        assert code == 2, argv
        assert "error:" in err
        assert out == ""
    assert not Path(missing).exists()

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"not": "a plan"}\n')
    code, _, err = cli(capsys, "run", str(bad), "--ledger", str(tmp_path / "x.db"))
    assert code == 2
    assert "plan header" in err

    edited = tmp_path / "edited.jsonl"
    edited.write_text(Path(plan_file).read_text().replace('"size":', '"size":1', 1))
    code, _, err = cli(capsys, "run", str(edited), "--ledger", str(tmp_path / "y.db"))
    assert code == 2

    # a ledger belongs to one plan
    ledger = str(tmp_path / "l.db")
    assert cli(capsys, "run", plan_file, "--ledger", ledger, "--max-items", "1")[0] == 0
    other = str(tmp_path / "other.jsonl")
    cli(capsys, "plan", str(tmp_path / "src"), str(tmp_path / "else"), "-o", other)
    code, _, err = cli(capsys, "run", other, "--ledger", ledger)
    assert code == 2
    assert "belongs to plan" in err
    code, _, err = cli(capsys, "verify", other, "--ledger", ledger)
    assert code == 2
    code, _, err = cli(capsys, "rollback", "--ledger", ledger, "--stage", "nope")
    assert code == 2
    assert "unknown stage" in err

    for argv in (
        ["plan", "a", "b"],  # no -o
        ["plan", "a", "b", "-o", "p", "--verify", "car,bogus"],
        ["plan", "a", "b", "-o", "p", "--stage-by", "folders"],
        ["plan", "a", "b", "-o", "p", "--stage", "nameonly"],
        ["plan", "a", "b", "-o", "p", "--id-rule", "offset:x"],
        ["run", plan_file, "--ledger", ledger, "--concurrency", "0"],
        ["report", "--ledger", ledger, "--json", "--markdown"],
        ["status"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv
    capsys.readouterr()

    code, _, err = cli(
        capsys, "plan", "s3://user:secret@bucket/x", str(tmp_path / "d"), "-o", "p"
    )
    assert code == 2
    assert "secret" not in err


# ----------------------------------------------------------------------
# S3 through s3:// URLs and the AWS_* environment


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket on a freshly reset moto; only AWS_* variables point at it."""
    req = urllib.request.Request(
        f"{moto_endpoint}/moto-api/reset", data=b"", method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL_S3",
        "AWS_SESSION_TOKEN",
        "AWS_CA_BUNDLE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "moto-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "moto-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import boto3

    name = f"cm-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3")
    client.create_bucket(Bucket=name)
    client.close()
    return name


@pytest.mark.s3
def test_s3_urls_configured_by_the_environment(
    tmp_path: Path,
    bucket: dict[str, bytes],
    s3_bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Up to s3://bucket/new (key k lands at new/k), then back down to a folder."""
    import boto3

    up = str(tmp_path / "up.jsonl")
    url = f"s3://{s3_bucket}/new"
    code, _, err = cli(capsys, "plan", str(tmp_path / "src"), url, "-o", up)
    assert code == 0, err
    code, _, err = cli(capsys, "run", up, "--ledger", str(tmp_path / "up.db"))
    assert code == 1, err  # the damaged CAR
    client = boto3.client("s3")
    listed = client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    good = {k: v for k, v in bucket.items() if k != "b/broken.car"}
    assert sorted(o["Key"] for o in listed) == sorted(f"new/{k}" for k in good)
    key = next(iter(good))
    body = client.get_object(Bucket=s3_bucket, Key=f"new/{key}")["Body"].read()
    assert body == good[key]
    client.close()

    down = str(tmp_path / "down.jsonl")
    code, _, err = cli(capsys, "plan", url, str(tmp_path / "back"), "-o", down)
    assert code == 0, err
    code, res = cli_json(capsys, "run", down, "--ledger", str(tmp_path / "down.db"))
    assert code == 0
    assert res["by_state"] == {
        "verified": len(good)
    }  # S3's MD5s vouch for every object
    assert read_tree(tmp_path / "back") == good
    code, _, _ = cli(capsys, "verify", down, "--ledger", str(tmp_path / "down.db"))
    assert code == 0


# ----------------------------------------------------------------------
# Dask


@pytest.mark.dask
def test_run_on_a_local_dask_cluster(
    tmp_path: Path, bucket: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    """--dask local: two worker processes open the stores from the plan's URLs."""
    pytest.importorskip("distributed")
    plan_file, _ = _plan(capsys, tmp_path, "--verify", "sha256,car,commp")
    ledger = str(tmp_path / "l.db")
    code, res = cli_json(
        capsys, "run", plan_file, "--ledger", ledger, "--dask", "local"
    )
    assert code == 1
    assert res["by_state"] == {"failed": 1, "unverifiable": 1, "verified": 9}
    assert read_tree(tmp_path / "dst") == {
        k: v for k, v in bucket.items() if k != "b/broken.car"
    }
    with Ledger(ledger, readonly=True) as led:
        rec = led.find("b/broken.car")
        assert rec is not None
        assert rec.reason is not None
        assert rec.reason.startswith("CAR check failed")
        assert all(r.piece_cid for r in led.items(state=ItemState.VERIFIED))


# ----------------------------------------------------------------------
# SIGINT


def _done(ledger: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return -1
    try:
        row = con.execute(
            "SELECT COUNT(*) FROM items WHERE state IN ('verified', 'failed', 'unverifiable')"
        ).fetchone()
        return int(row[0])
    except sqlite3.Error:
        return -1
    finally:
        con.close()


def test_sigint_stops_a_run_cleanly_and_resume_continues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C: nothing new starts, items in flight are recorded, exit 130; resume finishes."""
    objects = {car_key(make_car(i), "c"): make_car(i) for i in range(30)}
    write_tree(tmp_path / "src", objects)
    plan_file, _ = _plan(
        capsys, tmp_path, "--items-per-second", "4", "--concurrency", "2"
    )
    ledger = tmp_path / "l.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "carmigrate", "run", plan_file, "--ledger", str(ledger)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _done(ledger) < 3 and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # while it runs: status reads the ledger; a second run is refused
        code, st = cli_json(capsys, "status", "--ledger", str(ledger))
        assert code == 0
        assert st["running"] is True
        code, _, err = cli(capsys, "resume", "--ledger", str(ledger))
        assert code == 2
        assert "another run is using ledger" in err
        while _done(ledger) < 6 and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "stopping after the items in flight" in err
    assert "run 1: stopped" in out
    assert "to continue: carmigrate resume" in out

    code, st = cli_json(capsys, "status", "--ledger", str(ledger))
    assert st["running"] is False
    assert st["last_run"]["stop_reason"] == "stopped"
    assert st["stop_requested"] is False
    assert set(st["by_state"]) == {"pending", "verified"}  # nothing left in flight
    assert 6 <= st["by_state"]["verified"] < 30

    code, res = cli_json(
        capsys, "resume", "--ledger", str(ledger), "--items-per-second", "1000"
    )
    assert code == 0
    assert res["by_state"] == {"verified": 30}
    assert read_tree(tmp_path / "dst") == objects


# ----------------------------------------------------------------------
# the demo


def _demo() -> Any:
    spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_runs_and_a_second_run_copies_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """scripts/demo.py on 20 uploads runs the CLI and shows what it prints: the
    damaged CAR fails; run twice, nothing is copied twice."""
    demo = _demo()
    root = str(tmp_path / "demo")
    args = ["--root", root, "--uploads", "20", "--deal-size", str(8 << 20)]

    assert demo.main(args) == 0
    first = capsys.readouterr().out
    assert "wrote " in first
    assert "$ carmigrate plan " in first
    assert "$ carmigrate run " in first
    assert "CAR check failed" in first
    assert "every inclusion proof verified" in first
    assert "multi-shard uploads, all kept together" in first
    assert "- failed: 1" in first
    assert "- complete: no" in first  # the failed CAR is not at the destination
    assert "(exit code 1)" in first  # as the CLI exits
    assert "$ carmigrate verify " in first
    assert "$ carmigrate report " in first

    with Ledger(Path(root) / "ledger.db", readonly=True) as led:
        counts = led.counts()
        verified = counts[ItemState.VERIFIED]
        assert counts == {ItemState.VERIFIED: verified, ItemState.FAILED: 1}
    assert verified >= 20

    assert demo.main(args) == 0
    second = capsys.readouterr().out
    assert "reusing it" in second
    assert "reusing " in second
    assert "wrote " not in second
    assert "$ carmigrate plan " not in second
    assert second.count("0 items finished, 0 B sent") == 2
    assert f"checked {verified}: {verified} verified (0 promoted)" in second

    assert demo.main([*args, "--fresh"]) == 0
    assert "wrote " in capsys.readouterr().out


def test_verify_and_record_take_any_registered_digest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bucket: dict[str, bytes]
) -> None:
    """``--verify car,sha512,adler32,commp`` and ``--record`` name digests of the
    registry; an unknown name is a usage error that lists the known ones."""
    import zlib

    plan_file, _ = _plan(
        capsys,
        tmp_path,
        "--verify",
        "car,SHA-512,adler32,commp",
        "--record",
        "sha512,ADLER32",
    )
    header = json.loads(Path(plan_file).read_text().splitlines()[0])
    assert header["verification"]["checks"] == [
        "adler32",
        "car",
        "commp",
        "sha512",
        "size",
    ]
    assert header["verification"]["record"] == ["adler32", "sha512"]
    ledger = str(tmp_path / "ledger.db")
    code, _, err = cli(capsys, "run", plan_file, "--ledger", ledger)
    assert code == 1, err  # the broken CAR
    with Ledger(ledger, readonly=True) as led:
        rec = led.find("b/notes.txt")
    assert rec is not None
    assert rec.digests["sha512"] == hashlib.sha512(b"not a CAR").hexdigest()
    assert rec.digests["adler32"] == f"{zlib.adler32(b'not a CAR'):08x}"

    with pytest.raises(SystemExit) as exc:
        main(
            [
                "plan",
                str(tmp_path / "src"),
                str(tmp_path / "d2"),
                "-o",
                "p2",
                "--verify",
                "car,crc64",
            ]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown check 'crc64'" in err
    assert "sha512" in err
