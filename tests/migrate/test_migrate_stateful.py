"""Interleave plan, execute (crashing after n items) and resume: the end equals a clean run."""

from __future__ import annotations

import contextlib
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from migrate_helpers import (
    Kill,
    KillingStore,
    contents,
    corrupt,
    fill,
    ledger_snapshot,
    make_car,
)

from carmigrate.migrate import (
    CohortRule,
    EventKind,
    Ledger,
    Limits,
    Stage,
    execute,
    plan,
    resume,
)
from carmigrate.storage import MemoryStore
from carmigrate.testing import FlakyStore

LIMITS = Limits(
    concurrency=3, retries=2, retry_base_delay=0.0001, retry_max_delay=0.0002
)

kinds = st.sampled_from(["new", "new", "car", "bad-car", "same", "different", "verify"])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, bytes], dict[str, bytes]]:
    n = draw(st.integers(1, 10))
    source: dict[str, bytes] = {}
    dest: dict[str, bytes] = {"zz/extra": b"x"}
    for i in range(n):
        kind = draw(kinds)
        key = f"c{i % 3}/k{i:02d}" + (".car" if "car" in kind else "")
        data = draw(st.binary(min_size=0, max_size=64)) + bytes([i])
        if kind == "car":
            data = make_car(2 + i % 3, seed=bytes([i]))
        elif kind == "bad-car":
            data = corrupt(make_car(3, seed=bytes([i])))
        source[key] = data
        if kind == "same":
            dest[key] = data
        elif kind == "different":
            dest[key] = data + b"!"
    return source, dest


class Machine(RuleBasedStateMachine):
    """Runs a plan in pieces, with crashes, and compares with a clean run."""

    @initialize(scenario=scenarios())
    def setup(self, scenario) -> None:
        source, dest = scenario
        self.tmp = tempfile.mkdtemp(prefix="carmigrate-stateful-")
        self.source_objects = source
        self.dest_before = dest
        kwargs = {"cohorts": CohortRule(segments=1), "stages": [Stage("first", ["c1"])]}
        # the clean run
        a, b = MemoryStore("a"), MemoryStore("b")
        fill(a, source)
        fill(b, dest)
        clean = Ledger(f"{self.tmp}/clean.db")
        execute(plan(a, b, **kwargs), clean, source=a, destination=b, limits=LIMITS)
        self.clean_dst = contents(b)
        self.clean_ledger = ledger_snapshot(clean)
        clean.close()
        # the run under test
        self.a, self.b = MemoryStore("a"), MemoryStore("b")
        fill(self.a, source)
        fill(self.b, dest)
        self.plan = plan(self.a, self.b, **kwargs)
        self.ledger = Ledger(f"{self.tmp}/ledger.db")
        self.ledger.attach(self.plan)

    def teardown(self) -> None:
        if hasattr(self, "ledger"):
            resume(self.ledger, source=self.a, destination=self.b, limits=LIMITS)
            assert contents(self.b) == self.clean_dst
            assert ledger_snapshot(self.ledger) == self.clean_ledger
            self.ledger.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(n=st.integers(1, 4))
    def execute_n_items(self, n: int) -> None:
        execute(
            self.plan,
            self.ledger,
            source=self.a,
            destination=self.b,
            limits=LIMITS.__class__(**{**_fields(LIMITS), "max_items": n}),
        )

    @rule(n=st.integers(0, 6))
    def crash_coordinator_after(self, n: int) -> None:
        seen = [0]

        def crash(event) -> None:
            if event.kind in (EventKind.STARTED, EventKind.DONE, EventKind.FAILED):
                seen[0] += 1
                if seen[0] > n:
                    raise KeyboardInterrupt

        with contextlib.suppress(KeyboardInterrupt):
            resume(
                self.ledger,
                source=self.a,
                destination=self.b,
                reporters=[crash],
                limits=LIMITS,
            )

    @rule(nth=st.integers(1, 3))
    def kill_a_worker_mid_write(self, nth: int) -> None:
        with contextlib.suppress(Kill):
            resume(
                self.ledger,
                source=self.a,
                destination=KillingStore(self.b, nth=nth, after=1),
                limits=LIMITS,
            )

    @rule(seed=st.integers(0, 100))
    def flaky_run(self, seed: int) -> None:
        resume(
            self.ledger,
            source=FlakyStore(self.a, probability=0.3, seed=seed, truncate_reads_at=3),
            destination=FlakyStore(
                self.b, probability=0.3, seed=seed + 1, when="after"
            ),
            limits=LIMITS,
        )

    @rule()
    def resume_everything(self) -> None:
        resume(self.ledger, source=self.a, destination=self.b, limits=LIMITS)

    @invariant()
    def nothing_partial_is_visible(self) -> None:
        if not hasattr(self, "b"):
            return
        for key, data in contents(self.b).items():
            assert data in (self.dest_before.get(key), self.source_objects.get(key)), (
                key
            )


def _fields(limits: Limits) -> dict:
    import attrs

    return attrs.asdict(limits)


TestResumeStateful = Machine.TestCase
TestResumeStateful.settings = settings(
    max_examples=100,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
