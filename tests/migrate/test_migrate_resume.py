"""Stopping, crashing, resuming, retrying, warming and rolling back."""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from migrate_helpers import (
    ColdStore,
    Kill,
    KillingStore,
    contents,
    fill,
    keys,
    ledger_snapshot,
    make_car,
    missing,
)

from carmigrate.migrate import (
    CohortRule,
    EventKind,
    ItemState,
    Ledger,
    Limits,
    Overwrite,
    RunResult,
    Stage,
    TransferPolicy,
    execute,
    plan,
    resume,
    rollback,
)
from carmigrate.migrate._limits import TokenBucket
from carmigrate.storage import LocalStore, MemoryStore
from carmigrate.testing import FlakyStore

FAST = Limits(concurrency=4, retry_base_delay=0.001, retry_max_delay=0.002)


def _objects(n: int = 20) -> dict[str, bytes]:
    out = {f"u{i % 3}/f{i:03d}": os.urandom(50 + i) for i in range(n)}
    out["u0/data.car"] = make_car(4)
    return out


def _clean_run(tmp_path, objects, **plan_kwargs):
    a, b = MemoryStore("a"), MemoryStore("b")
    fill(a, objects)
    led = Ledger(tmp_path / "clean.db")
    execute(plan(a, b, **plan_kwargs), led, source=a, destination=b, limits=FAST)
    return contents(b), ledger_snapshot(led)


def test_stop_by_max_items_then_resume_equals_a_clean_run(tmp_path) -> None:
    """A run stopped by a limit resumes without recopying anything verified."""
    objects = _objects()
    clean_dst, clean_ledger = _clean_run(tmp_path, objects)
    a, b = MemoryStore("a"), MemoryStore("b")
    fill(a, objects)
    led = Ledger(tmp_path / "l.db")
    p = plan(a, b)
    first = execute(
        p, led, source=a, destination=b, limits=Limits(concurrency=2, max_items=5)
    )
    done_first = {
        r.seq for r in led.items(state=[ItemState.VERIFIED, ItemState.UNVERIFIABLE])
    }
    second = resume(led, source=a, destination=b, limits=FAST)

    assert first.stop_reason == "max_items"
    assert not first.complete
    assert 5 <= first.items <= 6
    assert second.stop_reason == "done"
    assert second.complete
    assert contents(b) == clean_dst
    assert ledger_snapshot(led) == clean_ledger
    for seq in done_first:  # copied once only
        assert [t.state for t in led.history(seq)].count(ItemState.COPYING) == 1
    assert [r.kind for r in led.runs()] == ["execute", "resume"]


def test_stop_request_and_other_limits(tmp_path) -> None:
    """A stop file, max_bytes and max_failures each stop a run cleanly."""
    a, b = MemoryStore("a"), MemoryStore("b")
    fill(a, _objects())
    p = plan(a, b)
    led = Ledger(tmp_path / "l.db")

    def stopper(event) -> None:
        if event.kind is EventKind.DONE:
            led.request_stop()

    ticks = iter(range(10**6))
    r1 = execute(
        p,
        led,
        source=a,
        destination=b,
        reporters=[stopper],
        limits=Limits(concurrency=1),
        clock=lambda: float(next(ticks)),
    )  # the stop file is looked at every 0.5 s
    assert r1.stop_reason == "stopped"
    assert not os.path.exists(led.stop_path())
    r2 = resume(
        led, source=a, destination=b, limits=Limits(concurrency=1, max_bytes=100)
    )
    assert r2.stop_reason == "max_bytes"
    broken = FlakyStore(b, probability=1.0, transient=False, methods=["write"])
    r3 = resume(
        led, source=a, destination=broken, limits=Limits(concurrency=1, max_failures=2)
    )
    assert r3.stop_reason == "max_failures"
    assert r3.failures == 2
    r4 = resume(led, source=a, destination=b, retry_failed=True)
    assert r4.complete
    assert keys(b) == sorted(_objects().keys()) or len(keys(b)) == len(_objects())


def test_max_seconds_with_an_injected_clock(tmp_path) -> None:
    a, b = MemoryStore("a"), MemoryStore("b")
    fill(a, _objects(6))
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    r = execute(
        plan(a, b),
        Ledger(tmp_path / "l.db"),
        source=a,
        destination=b,
        limits=Limits(concurrency=1, max_seconds=3),
        clock=clock,
    )
    assert r.stop_reason == "max_seconds"
    assert r.items < 7


def test_interrupted_coordinator_leaves_copying_items_that_resume_redoes(
    tmp_path,
) -> None:
    """A KeyboardInterrupt mid-run leaves nothing partial; resume finishes the job."""
    objects = _objects()
    clean_dst, clean_ledger = _clean_run(tmp_path, objects)
    a, b = MemoryStore("a"), MemoryStore("b")
    fill(a, objects)
    led = Ledger(tmp_path / "l.db")
    seen = []

    def interrupt(event) -> None:
        seen.append(event)
        if event.kind is EventKind.STARTED and len(seen) > 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(
            plan(a, b), led, source=a, destination=b, reporters=[interrupt], limits=FAST
        )
    assert led.runs()[-1].stop_reason == "interrupted"
    resume(led, source=a, destination=b, limits=FAST)

    assert contents(b) == clean_dst
    assert ledger_snapshot(led) == clean_ledger


def test_a_worker_killed_mid_object_publishes_nothing(tmp_path) -> None:
    """A write killed half-way leaves no object and no temp file; resume copies it."""
    src, dst = LocalStore(tmp_path / "s"), LocalStore(tmp_path / "d")
    big = os.urandom(3 << 20)
    fill(src, {"big.bin": big, "small.bin": b"s"})
    led = Ledger(tmp_path / "l.db")
    p = plan(src, dst)
    killer = KillingStore(dst, nth=1, after=1 << 20)

    with pytest.raises(Kill):
        execute(p, led, source=src, destination=killer, limits=Limits(concurrency=1))
    assert led.find("big.bin").state is ItemState.COPYING
    assert missing(dst, "big.bin")
    assert not [
        n for _, _, fs in os.walk(dst.root) for n in fs if n.startswith(".carmigrate")
    ]
    r = resume(led, source=src, destination=dst)

    assert r.complete
    assert led.find("big.bin").created
    assert contents(dst)["big.bin"] == big


def _leftovers(root) -> tuple[object, object]:
    """A temp file a writer killed an hour ago left, and one a live writer has."""
    (root / "dir").mkdir(exist_ok=True)
    old_one = root / "dir" / ".carmigrate.tmp.0123456789abcdef"
    old_one.write_bytes(b"half an object")
    old = old_one.stat().st_mtime - 7200
    os.utime(old_one, (old, old))
    recent = root / ".carmigrate.tmp.fedcba9876543210"
    recent.write_bytes(b"a writer still at work")
    return old_one, recent


def test_resume_after_a_crash_removes_the_temp_files_it_left(tmp_path) -> None:
    """After a crash, resume deletes the temp files of the items caught COPYING
    (whatever their age), and nothing else: no walk of the destination."""
    from carmigrate.storage._local import _temp_prefix

    src, dst = LocalStore(tmp_path / "s"), LocalStore(tmp_path / "d")
    objects = {"a.bin": b"a" * 1000, "dir/b.bin": b"b" * 1000}
    fill(src, objects)
    led = Ledger(tmp_path / "l.db")
    killer = KillingStore(dst, nth=1, after=10)
    with pytest.raises(Kill):
        execute(plan(src, dst), led, source=src, destination=killer)
    caught = [r.item.destination_key for r in led.items(state=ItemState.COPYING)]
    assert caught
    # what the killed writers would have left (SIGKILL runs no cleanup)
    dead = []
    for key in caught:
        folder, _, name = key.rpartition("/")
        where = tmp_path / "d" / folder
        where.mkdir(parents=True, exist_ok=True)
        dead.append(where / f"{_temp_prefix(name)}0123456789abcdef")
        dead[-1].write_bytes(b"half an object")
    old_one, recent = _leftovers(tmp_path / "d")

    r = resume(led, source=src, destination=dst)

    assert r.complete
    assert not any(p.exists() for p in dead)
    assert old_one.exists()  # not a key of the crash: left to remove_temporary()
    assert recent.exists()
    assert contents(dst) == objects


def test_resume_after_a_clean_stop_walks_nothing(tmp_path) -> None:
    """With nothing caught COPYING no writer was killed: the tree is not walked."""
    src, dst = LocalStore(tmp_path / "s"), LocalStore(tmp_path / "d")
    fill(src, {"a.bin": b"a" * 1000, "c.bin": b"c" * 1000})
    led = Ledger(tmp_path / "l.db")
    r1 = execute(
        plan(src, dst), led, source=src, destination=dst, limits=Limits(max_items=1)
    )
    assert r1.stop_reason == "max_items"
    old_one, recent = _leftovers(tmp_path / "d")

    assert resume(led, source=src, destination=dst).complete
    assert old_one.exists()
    assert recent.exists()


class _PublishThenDie(KillingStore):
    def write(self, key, data, **kwargs):
        out = self.inner.write(key, data, **kwargs)
        with self.lock:
            self.writes += 1
            if self.writes == self.nth:
                raise Kill(key)
        return out


def test_a_crash_after_publishing_is_recognised_as_ours(tmp_path) -> None:
    """An object published just before a crash is found on resume, counted as created, and rolled back."""
    src, dst = LocalStore(tmp_path / "s"), LocalStore(tmp_path / "d")
    fill(src, {"a": b"aaa", "b": b"bbb"})
    led = Ledger(tmp_path / "l.db")
    p = plan(src, dst)

    with pytest.raises(Kill):
        execute(
            p,
            led,
            source=src,
            destination=_PublishThenDie(dst, nth=1),
            limits=Limits(concurrency=1),
        )
    assert led.find("a").state is ItemState.COPYING
    assert not missing(dst, "a")
    resume(led, source=src, destination=dst)

    assert led.find("a").state is ItemState.VERIFIED
    assert led.find("a").created
    assert led.find("a").checks == ("compare",)
    assert rollback(led, "all", destination=dst).deleted == ("a", "b")
    assert keys(dst) == []


def test_flaky_stores_with_ten_percent_transient_failures_complete(tmp_path) -> None:
    """Transient faults on both sides, including writes whose answer is lost, are retried to the end."""
    objects = _objects(40)
    clean_dst, clean_ledger = _clean_run(tmp_path, objects)
    a, b = MemoryStore("a"), MemoryStore("b")
    fill(a, objects)
    flaky_src = FlakyStore(a, probability=0.1, seed=1, truncate_reads_at=10)
    flaky_dst = FlakyStore(
        b, probability=0.1, seed=2, when="after", methods=["write", "stat"]
    )
    led = Ledger(tmp_path / "l.db")
    r = execute(
        plan(a, b),
        led,
        source=flaky_src,
        destination=flaky_dst,
        limits=Limits(
            concurrency=4, retries=10, retry_base_delay=0.001, retry_max_delay=0.002
        ),
    )

    assert flaky_src.failures + flaky_dst.failures > 0
    assert r.complete
    assert r.failures == 0
    assert contents(b) == clean_dst
    assert ledger_snapshot(led) == clean_ledger
    assert max(x.attempts for x in led.items()) > 1


def test_rollback_deletes_only_what_the_plan_created(tmp_path) -> None:
    """Pre-existing, replaced and changed objects stay; created ones go; nothing else is touched."""
    src, dst = LocalStore(tmp_path / "s"), LocalStore(tmp_path / "d")
    fill(
        src,
        {
            "s1/new": b"new",
            "s1/same": b"same",
            "s1/replace": b"mine",
            "s1/changed": b"ours",
            "s2/other": b"o",
        },
    )
    fill(dst, {"s1/same": b"same", "s1/replace": b"theirs", "s1/extra": b"x"})
    led = Ledger(tmp_path / "l.db")
    p = plan(
        src,
        dst,
        cohorts=CohortRule(segments=1),
        stages=[Stage("s1", ["s1"]), Stage("s2", ["s2"])],
        transfer=TransferPolicy(overwrite=Overwrite.IF_DIFFERENT),
    )
    execute(p, led, source=src, destination=dst)
    dst.write("s1/changed", b"changed by someone")

    dry = rollback(led, "s1", destination=dst, dry_run=True)
    assert set(dry.deleted) == {"s1/new", "s1/changed"}
    assert keys(dst) == sorted(
        ["s1/new", "s1/same", "s1/replace", "s1/changed", "s1/extra", "s2/other"]
    )
    result = rollback(led, "s1", destination=dst)

    assert result.deleted == ("s1/new",)
    kept = dict(result.kept)
    assert "changed since" in kept["s1/changed"]
    assert "replaced" in kept["s1/replace"]
    assert contents(dst) == {
        "s1/same": b"same",
        "s1/replace": b"mine",
        "s1/changed": b"changed by someone",
        "s1/extra": b"x",
        "s2/other": b"o",
    }
    assert led.find("s1/new").state is ItemState.ROLLED_BACK
    assert (
        led.find("s2/other").state is ItemState.VERIFIED
        or led.find("s2/other").state is ItemState.UNVERIFIABLE
    )
    assert led.runs()[-1].kind == "rollback"
    again = rollback(led, "s1", destination=dst)
    assert again.deleted == ()


def test_cold_objects_are_restored_in_batches_first(tmp_path) -> None:
    """Cold sources go WARMING, are restored (at most restore_batch at once) and then copied."""
    inner, b = MemoryStore("a"), MemoryStore("b")
    objects = {f"k{i}": bytes([i]) * 10 for i in range(8)}
    fill(inner, objects)
    cold = ColdStore(inner, {"k1", "k2", "k3", "k5"}, polls=2)
    p = plan(cold, b)
    assert sum(1 for i in p.items() if i.cold) == 4
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += max(s, 0.01)

    led = Ledger(tmp_path / "l.db")
    events: list = []
    r = execute(
        p,
        led,
        source=cold,
        destination=b,
        reporters=[events.append],
        sleep=sleep,
        clock=lambda: now[0],
        limits=Limits(concurrency=2, restore_batch=2),
    )

    assert r.complete, r
    assert contents(b) == objects
    assert sorted(cold.requests) == ["k1", "k2", "k3", "k5"]
    assert (
        cold.max_outstanding <= 3
    )  # restore_batch, plus one restored and waiting for a worker
    assert any(e.kind is EventKind.WARMING for e in events)
    warmed = [t.state for t in led.history(led.find("k1").seq)]
    assert warmed[0] is ItemState.WARMING
    assert warmed[-1] is ItemState.VERIFIED


def test_waiting_for_restores_stops_at_max_seconds_and_resumes(tmp_path) -> None:
    inner, b = MemoryStore("a"), MemoryStore("b")
    fill(inner, {"hot": b"h", "cold": b"c"})
    cold = ColdStore(inner, {"cold"}, polls=1000)
    now = [0.0]

    def clock() -> float:
        return now[0]

    def sleep(s: float) -> None:
        now[0] += max(s, 0.01)

    led = Ledger(tmp_path / "l.db")
    p = plan(cold, b, transfer=TransferPolicy(restore_poll=10))
    r = execute(
        p,
        led,
        source=cold,
        destination=b,
        clock=clock,
        sleep=sleep,
        limits=Limits(max_seconds=100),
    )
    assert r.stop_reason == "max_seconds"
    assert led.find("cold").state is ItemState.WARMING
    assert keys(b) == ["hot"]
    cold.polls = 0
    cold.pending = dict.fromkeys(cold.pending, 0)
    r2 = resume(led, source=cold, destination=b, clock=clock, sleep=sleep)
    assert r2.complete
    assert keys(b) == ["cold", "hot"]


def test_token_bucket() -> None:
    now = [0.0]
    bucket = TokenBucket(10, clock=lambda: now[0])

    assert bucket.wait_time(5) == 0
    bucket.take(10)
    assert bucket.wait_time(1) == pytest.approx(0.1)
    now[0] += 1
    assert bucket.wait_time(100) == 0  # larger than the capacity: goes when full
    bucket.take(100)
    assert bucket.wait_time(1) == pytest.approx(9.1)


def test_rate_limits_pace_the_run(tmp_path) -> None:
    """items_per_second makes the coordinator wait between starts (with its own clock)."""
    a, b = MemoryStore("a"), MemoryStore("b")
    fill(a, {f"k{i}": b"x" for i in range(6)})
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    r = execute(
        plan(a, b),
        Ledger(tmp_path / "l.db"),
        source=a,
        destination=b,
        clock=lambda: now[0],
        sleep=sleep,
        limits=Limits(concurrency=1, items_per_second=2),
    )
    assert r.complete
    assert now[0] >= 2.0 - 1e-6


def test_one_run_at_a_time(tmp_path) -> None:
    """While a run holds the ledger, another is refused and status says it is running."""
    from carmigrate.errors import PlanError
    from carmigrate.migrate import status

    a, b = MemoryStore("a"), MemoryStore("b")
    fill(a, {"k1": b"1", "k2": b"2"})
    led = Ledger(tmp_path / "l.db")
    seen: list = []

    def meanwhile(event) -> None:
        if event.kind is EventKind.STARTED and not seen:
            other = Ledger(tmp_path / "l.db")
            with pytest.raises(PlanError, match="another run"):
                resume(other, source=a, destination=b)
            view = Ledger(tmp_path / "l.db", readonly=True)
            seen.append(status(view).running)
            view.close()
            other.close()

    execute(plan(a, b), led, source=a, destination=b, reporters=[meanwhile])

    assert seen == [True]
    assert not status(led).running
    assert resume(led, source=a, destination=b).complete


def test_a_finished_task_taken_off_the_queue_is_still_collected() -> None:
    """If a wait was interrupted after taking a finished future off the queue,
    the next wait still returns it (the coordinator drains in-flight work
    after Ctrl-C and must not wait forever)."""
    from concurrent.futures import Future, ThreadPoolExecutor
    from types import SimpleNamespace

    from carmigrate.migrate._executor import _Workers

    with ThreadPoolExecutor(1) as pool:
        workers = _Workers(pool, 1, None, None)
        future: Future[str] = Future()
        record = SimpleNamespace(seq=7)
        workers.inflight[future] = record  # type: ignore[assignment]
        future.add_done_callback(workers.done.put)
        future.set_result("outcome")
        workers.done.get_nowait()  # what the interrupted wait had taken

        assert workers.wait(0.01) == [(record, "outcome")]
        assert not workers.inflight
        assert workers.wait(0.01) == []


class _CountingPool(ThreadPoolExecutor):
    """A real thread pool that counts the tasks it is given."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.submitted = 0

    def submit(self, *args, **kwargs):  # type: ignore[override]
        self.submitted += 1
        return super().submit(*args, **kwargs)


def test_small_objects_travel_in_groups_each_with_its_own_outcome(tmp_path) -> None:
    """Many small objects: fewer tasks than objects, every object verified and
    journaled on its own; with a failure limit, one task per object."""
    objects = {f"o/{i:03}.bin": bytes([i]) * (1000 + i) for i in range(60)}
    src = MemoryStore("src")
    fill(src, objects)

    def run(name: str, limits: Limits) -> tuple[RunResult, Ledger, MemoryStore, int]:
        dst = MemoryStore(name)
        led = Ledger(tmp_path / f"{name}.db")
        with _CountingPool(2) as pool:
            r = execute(
                plan(src, dst),
                led,
                source=src,
                destination=dst,
                executor=pool,
                limits=limits,
            )
        return r, led, dst, pool.submitted

    r, led, dst, submitted = run("dst", Limits(concurrency=2))
    assert r.complete
    assert submitted < len(objects) // 4
    assert contents(dst) == objects
    assert led.counts() == {ItemState.VERIFIED: len(objects)}
    assert all(
        [t.state for t in led.history(rec.seq)]
        == [ItemState.COPYING, ItemState.VERIFIED]
        for rec in led.items()
    )

    r2, _, _, submitted2 = run("dst2", Limits(concurrency=2, max_failures=5))
    assert r2.complete
    assert submitted2 == len(objects)


def test_one_task_raising_in_a_group_keeps_the_others_outcomes(monkeypatch) -> None:
    """run_tasks: an Exception is that task's result; the rest still run."""
    from carmigrate.migrate import _transfer

    def fake(task, stores=None, progress=None):
        if task == "bad":
            raise RuntimeError("cannot open the store")
        return f"done {task}"

    monkeypatch.setattr(_transfer, "run_task", fake)
    out = _transfer.run_tasks(["a", "bad", "c"])  # type: ignore[list-item]
    assert out[0] == "done a"
    assert isinstance(out[1], RuntimeError)
    assert out[2] == "done c"


def test_tenant_limits_hold_each_tenant_to_its_rate_without_blocking_others(
    tmp_path,
) -> None:
    """Per-tenant buckets (the tenant is the cohort): a tenant over its rate is held
    back and the run goes on with the others; each tenant starts at most one item
    per 1/rate seconds after its burst, and the run reports how long each waited."""
    from carmigrate.migrate import CohortRule

    a, b = MemoryStore("a"), MemoryStore("b")
    fill(a, {f"alice/k{i}": b"x" for i in range(5)})
    fill(a, {f"bob/k{i}": b"y" for i in range(2)})
    fill(a, {"carol/k0": b"z"})
    now = [0.0]
    starts: dict[str, list[float]] = {}

    def sleep(s: float) -> None:
        now[0] += s

    def on_event(event) -> None:
        if event.kind is EventKind.STARTED:
            starts.setdefault(event.key.split("/")[0], []).append(now[0])

    r = execute(
        plan(a, b, cohorts=CohortRule(segments=1)),
        Ledger(tmp_path / "l.db"),
        source=a,
        destination=b,
        clock=lambda: now[0],
        sleep=sleep,
        reporters=[on_event],
        limits=Limits(concurrency=1, tenant_items_per_second=1),
    )

    assert r.complete
    assert sorted(i.key for i in b.list()) == sorted(i.key for i in a.list())
    for tenant, times in starts.items():
        gaps = [y - x for x, y in itertools.pairwise(times)]
        assert all(g >= 1.0 - 1e-6 for g in gaps), (tenant, times)
    # bob and carol did not wait behind alice's held-back items
    assert starts["carol"][0] < starts["alice"][1]
    assert starts["bob"][0] < starts["alice"][1]
    assert now[0] >= 4.0 - 1e-6  # alice: five items at one a second
    assert r.tenant_waits["alice"] > 0
    assert "carol" not in r.tenant_waits


def test_tenant_limits_work_with_process_workers(tmp_path) -> None:
    """The coordinator paces tenants, so any executor works (no store wrapper)."""
    from concurrent.futures import ProcessPoolExecutor

    from carmigrate.migrate import CohortRule
    from carmigrate.storage import LocalStore

    src = LocalStore(tmp_path / "s", create=True)
    dst = LocalStore(tmp_path / "d", create=True)
    fill(src, {f"t{i % 2}/k{i}": bytes([i]) * 10 for i in range(6)})
    with ProcessPoolExecutor(max_workers=1) as pool:
        r = execute(
            plan(src, dst, cohorts=CohortRule(segments=1)),
            Ledger(tmp_path / "l.db"),
            source=src,
            destination=dst,
            executor=pool,
            limits=Limits(tenant_items_per_second=2),
        )
    assert r.complete
    assert set(r.tenant_waits) == {"t0", "t1"}  # a burst of two, then one waits
