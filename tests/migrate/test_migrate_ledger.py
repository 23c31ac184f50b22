"""The ledger: attach, transitions, batches, queries, journal, read-only views."""

from __future__ import annotations

import sqlite3

import pytest
from migrate_helpers import fill

from carmigrate.errors import PlanError
from carmigrate.migrate import (
    Action,
    CohortRule,
    IdKind,
    IdRule,
    ItemState,
    Ledger,
    Limits,
    Overwrite,
    Stage,
    TransferPolicy,
    plan,
)
from carmigrate.storage import MemoryStore


def _plan(**kwargs):
    a, b = MemoryStore("a"), MemoryStore("b")
    fill(a, {f"u{i % 2}/f{i}": bytes([i]) * (i + 1) for i in range(6)})
    fill(b, {"u0/f0": b"\x00", "u1/f1": b"zz", "x": b"e"})
    return plan(
        a, b, cohorts=CohortRule(segments=1), stages=[Stage("one", ["u1"])], **kwargs
    )


def test_attach_sets_initial_states_and_is_idempotent(ledger: Ledger) -> None:
    """COPY→PENDING, SKIP/EXTRA→SKIPPED, CONFLICT→CONFLICT (or PENDING when overwriting)."""
    p = _plan()
    ledger.attach(p)
    ledger.attach(p)
    states = {r.item.key: (r.item.action, r.state) for r in ledger.items()}

    assert ledger.plan_id == p.id
    assert ledger.header == p.header
    assert states["u0/f0"] == (Action.SKIP, ItemState.SKIPPED)
    assert states["u1/f1"] == (Action.CONFLICT, ItemState.CONFLICT)
    assert states["x"] == (Action.EXTRA, ItemState.SKIPPED)
    assert states["u0/f2"] == (Action.COPY, ItemState.PENDING)
    assert sum(ledger.counts().values()) == len(p)


def test_overwrite_makes_conflicts_runnable(tmp_path) -> None:
    p = _plan(transfer=TransferPolicy(overwrite=Overwrite.IF_DIFFERENT))
    with Ledger(tmp_path / "l.db") as led:
        led.attach(p)

        assert led.find("u1/f1").state is ItemState.PENDING


def test_a_ledger_refuses_another_plan(ledger: Ledger) -> None:
    """A ledger belongs to one plan id."""
    ledger.attach(_plan())

    with pytest.raises(PlanError, match="belongs to plan"):
        ledger.attach(_plan(limits=Limits(concurrency=1)))


def test_attach_refuses_items_that_do_not_match_the_header(tmp_path) -> None:
    """Items are checked against the header while inserted; nothing is kept on mismatch."""
    path = tmp_path / "p.jsonl"
    p = _plan(path=path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(
        b"".join([*lines[:-1], lines[-1].replace(b'"size":1', b'"size":2')])
    )
    led = Ledger(tmp_path / "l.db")

    with pytest.raises(PlanError, match="do not match"):
        led.attach(p)
    assert led.plan_id is None
    assert list(led.items()) == []


def test_transitions_are_checked(ledger: Ledger) -> None:
    """Allowed moves are recorded with their fields; forbidden ones change nothing."""
    p = _plan()
    ledger.attach(p)
    seq = ledger.find("u0/f2").seq
    ledger.transition(seq, ItemState.COPYING, attempts_inc=1, started=1.0)
    ledger.transition(
        seq,
        ItemState.VERIFIED,
        attempts_inc=2,
        digests={"sha256": "ab" * 32},
        created=True,
        checks=("car",),
        carried=("metadata:a",),
        lost=("mtime",),
        offset=None,
    )
    rec = ledger.item(seq)

    assert rec.state is ItemState.VERIFIED
    assert rec.attempts == 3
    assert (rec.sha256, rec.created, rec.checks, rec.lost) == (
        "ab" * 32,
        True,
        ("car",),
        ("mtime",),
    )
    with pytest.raises(PlanError, match="cannot become copied"):
        ledger.transition(seq, ItemState.COPIED)
    with pytest.raises(PlanError, match="no item"):
        ledger.transition(10_000, ItemState.COPYING)
    with pytest.raises(ValueError, match="unknown ledger field"):
        ledger.transition(seq, ItemState.FAILED, colour="red")
    assert ledger.item(seq).state is ItemState.VERIFIED
    assert [t.state for t in ledger.history(seq)] == [
        ItemState.COPYING,
        ItemState.VERIFIED,
    ]


def test_a_refused_change_rolls_back_the_whole_batch(ledger: Ledger) -> None:
    p = _plan()
    ledger.attach(p)
    a, b = ledger.find("u0/f2").seq, ledger.find("u0/f4").seq

    def refused() -> None:
        with ledger.batch() as batch:
            batch.transition(a, ItemState.COPYING)
            batch.transition(b, ItemState.VERIFIED)  # PENDING → VERIFIED is not allowed

    with pytest.raises(PlanError, match="cannot become verified"):
        refused()
    assert ledger.item(a).state is ItemState.PENDING
    with ledger.batch() as batch:
        batch.transition(a, ItemState.COPYING)
        batch.transition(b, ItemState.COPYING)
    assert ledger.counts()[ItemState.COPYING] == 2


def test_a_batch_of_one_change_is_checked_and_journaled(ledger: Ledger) -> None:
    """A one-change batch (a single statement, its own transaction) is refused
    or recorded exactly like a longer one, journal row included."""
    ledger.attach(_plan())
    a = ledger.find("u0/f2").seq
    with (
        pytest.raises(PlanError, match="cannot become verified"),
        ledger.batch() as batch,
    ):
        batch.transition(a, ItemState.VERIFIED)
    assert ledger.item(a).state is ItemState.PENDING
    with ledger.batch() as batch:
        batch.transition(a, ItemState.COPYING)
    assert ledger.item(a).state is ItemState.COPYING
    assert [t.state for t in ledger.history(a)] == [
        ItemState.COPYING
    ]  # not the refused one


def test_queries_by_stage_cohort_state_and_action(ledger: Ledger) -> None:
    """Filters combine; pages stream in plan order."""
    p = _plan()
    ledger.attach(p)

    one = [r.item.key for r in ledger.items(stage="one")]
    assert one == sorted(one)
    assert {r.item.cohort for r in ledger.items(stage="one")} == {"u1"}
    assert [r.item.key for r in ledger.items(cohort="u0", state=ItemState.PENDING)] == [
        "u0/f2",
        "u0/f4",
    ]
    assert [r.item.key for r in ledger.items(action=Action.EXTRA)] == ["x"]
    assert len(list(ledger.items(page=1))) == len(p)
    assert len(list(ledger.items(limit=2))) == 2
    assert ledger.counts(stage="one")[ItemState.PENDING] == 2
    assert ledger.find("nope") is None
    totals = {(s, a, st): n for s, a, st, n, _, _ in ledger.totals()}
    assert totals[("rest", "copy", "pending")] == 2


def test_runs_id_map_and_readonly_view(tmp_path) -> None:
    """Runs are recorded; the ID map comes back; another connection can read meanwhile."""
    p = _plan(ids=IdRule(kind=IdKind.PREFIX, pattern=r"f(\d+)", prefix="n"))
    led = Ledger(tmp_path / "l.db")
    led.attach(p)
    run = led.start_run("execute", stages=["one"], limits={"concurrency": 1})
    led.transition(led.find("u0/f2").seq, ItemState.COPYING)
    view = Ledger(tmp_path / "l.db", readonly=True)

    assert view.counts()[ItemState.COPYING] == 1
    assert view.plan_id == p.id
    with pytest.raises(PlanError, match="read-only"):
        view.transition(0, ItemState.COPYING)
    led.finish_run(run, stop_reason="done", items=1, bytes=2, failures=0)
    assert [(r.kind, r.stop_reason, r.stages) for r in led.runs()] == [
        ("execute", "done", ("one",))
    ]
    assert dict(led.id_map())["2"] == "n2"
    view.close()
    led.close()


def test_not_a_ledger(tmp_path) -> None:
    (tmp_path / "x.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(PlanError):
        Ledger(tmp_path / "x.db")
    with pytest.raises(PlanError, match="no ledger"):
        Ledger(tmp_path / "missing.db", readonly=True)
    sqlite3.connect(tmp_path / "other.db").execute(
        "CREATE TABLE t (x)"
    ).connection.close()
    with pytest.raises(PlanError, match="not a carmigrate ledger"):
        Ledger(tmp_path / "other.db", readonly=True)
    with pytest.raises(PlanError, match="no plan attached"):
        _ = Ledger(tmp_path / "empty.db").header


def test_a_ledger_killed_while_it_is_created_is_never_half_made(tmp_path) -> None:
    """SIGKILL at any moment of a new ledger's creation leaves an empty file or a
    whole ledger: opening it again works (before, tables without a schema version
    made it look like another application's database, and resume was refused)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from carmigrate.migrate import Ledger

    code = (
        "import sys\n"
        "from carmigrate.migrate import Ledger\n"
        "Ledger(sys.argv[1]).close()\n"
    )
    for n in range(12):
        path = tmp_path / f"l{n}.db"
        proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.0005)
        time.sleep(0.0003 * n)  # kill at spread moments of the creation
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with Ledger(path) as ledger:  # never "another application's database"
            assert ledger.plan_id is None
