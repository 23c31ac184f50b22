"""Crash safety: ``carmigrate run`` killed with SIGKILL at many points, then resumed.

A real ``python -m carmigrate`` subprocess migrates 60 CARs (plus one with a
damaged block) between two folders and is killed with SIGKILL again and
again; each time the next process continues it (``run`` with the same plan
or ``resume``). Kill points are chosen from the ledger, not from the clock:
the test polls the ledger read-only (SQLite ``mode=ro``, as a status display
would) and kills when the ledger shows a given number of items finished, or
at fixed early milestones (the ledger file appears; a run is recorded). The
plan's start-rate limit (``--items-per-second``, a real feature) keeps a run
slow enough that items are in flight at every kill.

After every kill: every object visible at the destination is complete and
byte-equal to its source; everything the ledger calls verified is there
with the recorded SHA-256. At the end: every good item is verified and was
created by this plan, the damaged CAR is failed with its reason and offset,
the destination holds exactly the good objects, and an independent verify
with a second read of the source agrees.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from migrate_helpers import car_key, corrupt, make_car

from carmigrate.cli import main
from carmigrate.commp import commp
from carmigrate.errors import VerificationError
from carmigrate.migrate import ItemState, Ledger
from carmigrate.storage import LocalStore

GOOD = 60
KILLS = 24
BAD_KEY = "cars/zz/damaged.car"
TIMEOUT = 60.0
POLL = 0.005
_FINISHED = ("verified", "failed", "unverifiable", "skipped", "conflict")


def _objects() -> dict[str, bytes]:
    """60 CARs of 1 KB to about 0.5 MB in 6 folders, and one with a damaged block."""
    rng = random.Random(58)
    out = {}
    for i in range(GOOD):
        car = make_car(
            rng.randint(1, 8),
            seed=i.to_bytes(2, "big"),
            block_size=rng.choice((500, 4_000, 20_000, 60_000)),
        )
        out[car_key(car, f"cars/{i % 6}")] = car
    out[BAD_KEY] = corrupt(make_car(6, seed=b"bad", block_size=20_000))
    return out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _query(ledger: Path, sql: str) -> int:
    """One number from the ledger, read-only; -1 while it is not readable yet."""
    try:
        con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return -1
    try:
        return int(con.execute(sql).fetchone()[0])
    except (sqlite3.Error, TypeError):
        return -1
    finally:
        con.close()


def _finished(ledger: Path) -> int:
    states = ", ".join(f"'{s}'" for s in _FINISHED)
    return _query(ledger, f"SELECT COUNT(*) FROM items WHERE state IN ({states})")


def _runs(ledger: Path) -> int:
    return _query(ledger, "SELECT COUNT(*) FROM runs")


def _copying(ledger: Path) -> int:
    """Items the latest run has handed to a worker and not finished."""
    return _query(
        ledger,
        "SELECT COUNT(*) FROM items WHERE state = 'copying' "
        "AND run = (SELECT MAX(id) FROM runs)",
    )


def _schedule() -> list[tuple[str, Callable[[Path, int, int], bool], float]]:
    """The kill points: (command, condition(ledger, finished, runs before), extra delay).

    The first two are early milestones: the ledger file appears (possibly
    mid-attach), and the run is recorded. The others have targets spread
    evenly over the first 60% of the items (always at least one more item
    than finished when the process started). Even points kill once the
    ledger shows the target finished, after 0 to 30 ms more (between items,
    or during the next one); odd points kill as soon as, one short of the
    target, the run has an item marked in flight (before its worker read a
    byte, mid-write, or after the write but before the ledger's commit).
    """
    out: list[tuple[str, Callable[[Path, int, int], bool], float]] = [
        ("run", lambda led, f0, r0: led.exists(), 0.0),
        ("run", lambda led, f0, r0: _runs(led) > r0, 0.0),
    ]
    for k in range(KILLS - 2):
        target = 2 + round(k * 0.6 * GOOD / (KILLS - 2))
        command = "run" if k % 2 else "resume"
        if k % 2 == 0:

            def finished(led: Path, f0: int, r0: int, target: int = target) -> bool:
                return _finished(led) >= max(target, f0 + 1)

            out.append((command, finished, (k % 4) * 0.015))
        else:

            def in_flight(led: Path, f0: int, r0: int, target: int = target) -> bool:
                return _finished(led) >= max(target - 1, f0) and _copying(led) > 0

            out.append((command, in_flight, 0.0))
    return out


def _check_destination(dst: Path, objects: dict[str, bytes], ledger: Path) -> int:
    """Nothing partial is visible, and the ledger's verified items are all there.

    Returns the number of temporary files a killed writer left behind (never
    listed as objects).
    """
    # the run makes the destination when it first writes (plan does not)
    listed = (
        {i.key: i.size for i in LocalStore(dst, create=False, fsync=False).list()}
        if dst.exists()
        else {}
    )
    for key, size in listed.items():
        assert key in objects, f"{key} is not a source object"
        assert key != BAD_KEY, "the damaged CAR became visible"
        data = (dst / key).read_bytes()
        assert size == len(objects[key]), f"{key}: partial object listed"
        assert _sha(data) == _sha(objects[key]), f"{key}: partial or wrong bytes"
    temp = 0
    for path in dst.rglob("*"):
        if path.is_file():
            rel = path.relative_to(dst).as_posix()
            if path.name.startswith(".carmigrate."):
                temp += 1
            else:
                assert rel in listed, f"{rel} is on disk but not listed"
    if ledger.exists():
        con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5)
        try:
            rows = con.execute(
                "SELECT destination_key, sha256 FROM items WHERE state = 'verified'"
            ).fetchall()
        except sqlite3.Error:
            rows = []
        finally:
            con.close()
        for key, sha in rows:
            assert key in listed, (
                f"the ledger says {key} is verified, but it is missing"
            )
            assert sha == _sha(objects[key])
    return temp


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "carmigrate", *argv]


FINAL = ["--no-progress", "--json", "--items-per-second", "1000"]


def test_sigkill_at_many_points_then_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """24 SIGKILLs of run/resume subprocesses; nothing partial ever shows; the end state is exact."""
    objects = _objects()
    src, dst = tmp_path / "src", tmp_path / "dst"
    for key, data in objects.items():
        (src / key).parent.mkdir(parents=True, exist_ok=True)
        (src / key).write_bytes(data)
    plan_file, ledger = tmp_path / "plan.jsonl", tmp_path / "ledger.db"
    code = main(
        [
            "plan", str(src), str(dst), "-o", str(plan_file),
            "--verify", "size,sha256,car,commp",
            "--concurrency", "4", "--items-per-second", "2",
        ]
    )  # fmt: skip
    assert code == 0
    capsys.readouterr()

    kills: list[tuple[int, int]] = []  # (kill point, items finished when killed)
    temp_files = 0
    log = tmp_path / "stderr.log"
    for point, (command, condition, delay) in enumerate(_schedule()):
        argv = (
            ["run", str(plan_file), "--ledger", str(ledger)]
            if command == "run"
            else ["resume", "--ledger", str(ledger)]
        )
        before_finished, before_runs = _finished(ledger), max(_runs(ledger), 0)
        with log.open("a") as err:
            proc = subprocess.Popen(
                _cli(*argv, "--no-progress"), stdout=subprocess.DEVNULL, stderr=err
            )
            try:
                deadline = time.monotonic() + TIMEOUT
                while proc.poll() is None and not condition(
                    ledger, before_finished, before_runs
                ):
                    assert time.monotonic() < deadline, f"kill point {point} never came"
                    time.sleep(POLL)
                if delay:
                    time.sleep(delay)
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
            finally:
                proc.wait(timeout=TIMEOUT)
        if proc.returncode == -signal.SIGKILL:
            kills.append((point, _finished(ledger)))
        temp_files = _check_destination(dst, objects, ledger)

    assert len(kills) >= 20, f"only {len(kills)} processes were killed: {kills}"
    reached = [n for _, n in kills]
    assert reached == sorted(reached)
    assert len(set(reached)) >= 10, f"kill points not spread: {reached}"

    # the last process was killed: status says so, and how to continue
    assert main(["status", "--ledger", str(ledger)]) == 0
    assert "did not record its end (the process was killed)" in capsys.readouterr().out

    final = subprocess.run(
        _cli("resume", "--ledger", str(ledger), *FINAL),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert final.returncode == 1, final.stderr  # the damaged CAR failed
    outcome = json.loads(final.stdout)
    assert outcome["items"] > 0, "the kills left no work for the final resume"
    assert outcome["by_state"] == {"failed": 1, "verified": GOOD}
    assert outcome["complete"] is True
    # every writer a kill stopped left its temporary file in the folder of its
    # key, and the resume after it removed those of the items caught mid-copy
    assert _check_destination(dst, objects, ledger) == 0

    good = {k: v for k, v in objects.items() if k != BAD_KEY}
    store = LocalStore(dst, create=False)
    assert sorted(i.key for i in store.list()) == sorted(good)
    with Ledger(ledger, readonly=True) as led:
        bad = led.find(BAD_KEY)
        assert bad is not None
        assert bad.state is ItemState.FAILED
        assert bad.reason is not None
        assert bad.reason.startswith("CAR check failed")
        assert bad.offset is not None
        assert bad.transient is False
        records = list(led.items(state=ItemState.VERIFIED))
        assert {r.item.key for r in records} == set(good)
        for rec in records:
            assert rec.sha256 == _sha(good[rec.item.key])
            assert rec.created, f"{rec.item.key} lost its 'created' mark"
            assert "car" in rec.checks
            assert rec.piece_cid is not None
        runs = led.runs()
        history = led.history()
    # every kill left its run unfinished, and some kills caught items mid-copy
    assert (
        sum(1 for r in runs if r.kind in ("execute", "resume") and r.finished is None)
        >= 20
    )
    starts: dict[int, int] = {}
    for t in history:
        if t.state is ItemState.COPYING:
            starts[t.seq] = starts.get(t.seq, 0) + 1
    redone = sum(1 for n in starts.values() if n > 1)
    assert redone >= 5, f"only {redone} items were caught mid-copy"

    # an independent re-check, with a second read of the source
    check = subprocess.run(
        _cli("verify", str(plan_file), "--ledger", str(ledger), "--reread-source"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"checked {GOOD}: {GOOD} verified" in check.stdout
    # rollback would delete exactly the objects this plan created
    code = main(
        ["rollback", "--ledger", str(ledger), "--stage", "all", "--dry-run", "--json"]
    )
    assert code == 0
    assert sorted(json.loads(capsys.readouterr().out)["deleted"]) == sorted(good)
    with capsys.disabled():
        print(
            f"\nkills (point, finished): {kills}; items redone after a kill: "
            f"{redone}; temporary files left: {temp_files}"
        )


# ----------------------------------------------------------------------
# the CAR check in memory and streaming: a damaged block never becomes visible


def test_damaged_blocks_are_caught_inline_and_streaming(tmp_path: Path) -> None:
    """Small CARs are checked in the worker once read, big ones stream through a
    checker thread: either way the damaged one fails at its block's offset and
    nothing appears under its key."""
    from carmigrate.migrate import Check, VerificationPolicy, execute, plan
    from carmigrate.migrate._transfer import _INLINE_CAR

    src = LocalStore(tmp_path / "src", fsync=False)
    dst = LocalStore(tmp_path / "dst", fsync=False)
    blocks = _INLINE_CAR // 200_000 + 2
    big = make_car(blocks, seed=b"big", block_size=200_000)
    assert len(big) > _INLINE_CAR
    small = make_car(3, seed=b"small", block_size=20_000)
    damaged_at = {"big": len(big) // 2, "small": len(small) - 10}
    objects = {
        "big/good.car": big,
        "big/bad.car": corrupt(big, at=damaged_at["big"]),
        "small/good.car": small,
        "small/bad.car": corrupt(small, at=damaged_at["small"]),
    }
    for key, data in objects.items():
        src.write(key, data)
    policy = VerificationPolicy(checks=[Check.SIZE, Check.SHA256, Check.CAR])
    with Ledger(tmp_path / "l.db") as led:
        execute(plan(src, dst, verification=policy), led, source=src, destination=dst)
        for folder in ("big", "small"):
            bad = led.find(f"{folder}/bad.car")
            assert bad is not None
            assert bad.state is ItemState.FAILED
            assert bad.reason is not None
            assert bad.reason.startswith("CAR check failed")
            assert bad.offset is not None
            # the offset of the damaged block's data, at most a block before
            assert damaged_at[folder] - 200_100 < bad.offset <= damaged_at[folder]
            good = led.find(f"{folder}/good.car")
            assert good is not None
            assert good.state is ItemState.VERIFIED
            assert good.car_check == "verified"
    assert sorted(i.key for i in dst.list()) == ["big/good.car", "small/good.car"]


def test_more_bytes_than_planned_switch_the_check_to_streaming() -> None:
    """The in-memory check holds at most its limit: past it, the bytes held go to
    a streaming checker (a source that grew between stat and read)."""
    from carmigrate.migrate._transfer import _INLINE_CAR, _Digester

    car = make_car(3, seed=b"grown", block_size=_INLINE_CAR // 2)
    chunk = 1 << 20
    for data, ok in ((car, True), (corrupt(car), False)):
        dig = _Digester(car=True, commp=True, size=1000)
        facts = None
        stopped = ""
        try:
            for i in range(0, len(data), chunk):
                dig.update(data[i : i + chunk])
            assert dig._car is not None, "no streaming checker took over"
            facts = dig.finish()
        except VerificationError as e:  # the streaming checker may stop early
            stopped = str(e)
        finally:
            dig.close()
        if facts is None:
            assert not ok
            assert stopped.startswith("CAR check failed")
            continue
        assert facts.car is not None
        assert facts.car.ok is ok
        assert facts.sha256 == _sha(data)
        # commP, deferred while the bytes were held, saw every byte once
        assert facts.piece_cid == str(commp(data).cid_v1)
