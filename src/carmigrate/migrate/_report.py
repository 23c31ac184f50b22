"""The final report of a migration, computed from its ledger."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from typing import Any

import attrs

from carmigrate import _html
from carmigrate.migrate import serde
from carmigrate.migrate._ledger import Ledger, RunRecord
from carmigrate.migrate._model import Action, ItemState

__all__ = ["Report", "ReportEntry", "Status", "report", "status"]

_OPEN = (
    ItemState.PENDING,
    ItemState.WARMING,
    ItemState.COPYING,
    ItemState.COPIED,
    ItemState.FAILED,
    ItemState.CONFLICT,
    ItemState.UNMIGRATABLE,
    ItemState.ROLLED_BACK,
)
"""States of items whose source object is not (or not yet) at the destination.

A migration is complete only when no item is in one of them: every source
entry is verified, carried (unverifiable) or proven equal there, so
retiring the source loses nothing.
"""


def open_items(counts: Mapping[ItemState, int] | Mapping[str, int]) -> str:
    """What keeps a migration from being complete: ``"3 pending, 1 failed"``.

    Empty when every item is verified, unverifiable (carried) or skipped
    (equal at the destination, or only there).
    """
    by_value = {getattr(s, "value", s): n for s, n in counts.items()}
    return ", ".join(
        f"{by_value[s.value]} {s.value}" for s in _OPEN if by_value.get(s.value)
    )


def _open_line(by_state: tuple[tuple[str, int, int], ...]) -> str:
    return open_items({s: n for s, n, _ in by_state}) or "open"


def state_rows(counts: Mapping[ItemState, int]) -> list[tuple[str, int]]:
    """``(state, items)`` for the states with items, in the states' own order."""
    return [(s.value, counts[s]) for s in ItemState if counts.get(s)]


@attrs.frozen(kw_only=True)
class ReportEntry:
    """One item named in a report.

    Attributes:
        key: The item's key.
        state: Its state.
        reason: Why (failure reason, conflict, ...).
        attempts: Attempts made.
        offset: Byte offset of a failure, if known.
    """

    key: str
    state: ItemState
    reason: str | None = None
    attempts: int = 0
    offset: int | None = None


@attrs.frozen(kw_only=True)
class Report:
    """What a migration carried and what it lost.

    Attributes:
        plan_id: The plan.
        source: Source URL.
        destination: Destination URL.
        generated: When the report was made (Unix time).
        items: Items in the plan (extras included).
        by_state: ``(state, items, bytes)`` per state.
        by_stage: ``(stage, state, items, bytes)`` per stage and state.
        planned_bytes: Bytes of all source items.
        bytes_moved: Bytes sent to the destination, over all runs.
        seconds: Time spent in execute and resume runs.
        throughput: ``bytes_moved / seconds`` (bytes per second), if any time
            was spent.
        runs: Runs recorded (execute, resume, verify, rollback).
        complete: Every source entry is at the destination: no item is
            pending, warming, in flight, unchecked, failed, in conflict,
            unmigratable or rolled back (retiring the source loses nothing).
        verified: ``VERIFIED`` items.
        unverifiable: ``UNVERIFIABLE`` items (carried, nothing independent
            compared).
        failures: Failed items (the first ``max_listed``).
        failures_count: All failed items.
        conflicts: Items left in conflict (the first ``max_listed``).
        conflicts_count: All of them.
        unverifiable_items: Unverifiable items (the first ``max_listed``).
        extras: Keys only at the destination.
        rolled_back: ``ROLLED_BACK`` items.
        fidelity_losses: ``(what, items)``: metadata the destination could
            not keep (``mtime``, ``metadata:<name>``, ``storage_class``).
        unmigratable: Source entries that could not be planned (the first
            ``max_listed``), with the reason each is not migratable.
        unmigratable_count: All of them; the report is not complete while
            any exists.
    """

    plan_id: str
    source: str
    destination: str
    generated: float
    items: int
    by_state: tuple[tuple[str, int, int], ...]
    by_stage: tuple[tuple[str, str, int, int], ...]
    planned_bytes: int
    bytes_moved: int
    seconds: float
    throughput: float | None
    runs: int
    complete: bool
    verified: int
    unverifiable: int
    failures: tuple[ReportEntry, ...]
    failures_count: int
    conflicts: tuple[ReportEntry, ...]
    conflicts_count: int
    unverifiable_items: tuple[ReportEntry, ...]
    extras: int
    rolled_back: int
    fidelity_losses: tuple[tuple[str, int], ...]
    unmigratable: tuple[ReportEntry, ...] = ()
    unmigratable_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data."""
        data: dict[str, Any] = serde.unstructure(self)
        return data

    def to_json(self) -> str:
        """The report as canonical JSON."""
        return serde.canonical_json(self.to_dict())

    def to_markdown(self) -> str:
        """The report as Markdown, for people."""
        out = [
            f"# Migration report for plan `{self.plan_id}`",
            "",
            f"{self.source} → {self.destination}",
            "",
            f"- items: {self.items} ({self.planned_bytes} bytes planned)",
            f"- verified: {self.verified}",
            f"- unverifiable (carried, nothing independent to compare): {self.unverifiable}",
            f"- failed: {self.failures_count}",
            f"- conflicts left alone: {self.conflicts_count}",
            f"- not migratable (still only at the source): {self.unmigratable_count}",
            f"- only at the destination (not touched): {self.extras}",
            f"- rolled back: {self.rolled_back}",
            f"- bytes sent: {self.bytes_moved} in {self.seconds:.1f} s"
            + (f" ({self.throughput / 1e6:.1f} MB/s)" if self.throughput else ""),
            f"- complete: {'yes' if self.complete else 'no'} ({self.runs} runs)"
            + (
                ""
                if self.complete
                else f"; not complete while any item is {_open_line(self.by_state)}"
            ),
            "",
            "## By stage",
            "",
            "| stage | state | items | bytes |",
            "|---|---|---:|---:|",
        ]
        out += [f"| {_cell(s)} | {st} | {n} | {b} |" for s, st, n, b in self.by_stage]
        if self.failures:
            out += [
                "",
                "## Failures",
                "",
                "| key | reason | attempts | offset |",
                "|---|---|---:|---:|",
            ]
            out += [
                f"| {_code(e.key)} | {_cell(e.reason)} | {e.attempts} | {'' if e.offset is None else e.offset} |"
                for e in self.failures
            ]
            if self.failures_count > len(self.failures):
                out.append(f"\n… and {self.failures_count - len(self.failures)} more.")
        if self.conflicts:
            out += ["", "## Conflicts", "", "| key | reason |", "|---|---|"]
            out += [f"| {_code(e.key)} | {_cell(e.reason)} |" for e in self.conflicts]
            if self.conflicts_count > len(self.conflicts):
                out.append(
                    f"\n… and {self.conflicts_count - len(self.conflicts)} more."
                )
        if self.unmigratable:
            out += [
                "",
                "## Not migratable (still only at the source)",
                "",
                "| key | reason |",
                "|---|---|",
            ]
            out += [
                f"| {_code(e.key)} | {_cell(e.reason)} |" for e in self.unmigratable
            ]
            if self.unmigratable_count > len(self.unmigratable):
                out.append(
                    f"\n… and {self.unmigratable_count - len(self.unmigratable)} more."
                )
        if self.unverifiable_items:
            out += ["", "## Unverifiable items", ""]
            out += [f"- {_code(e.key)}" for e in self.unverifiable_items]
            if self.unverifiable > len(self.unverifiable_items):
                out.append(
                    f"- … and {self.unverifiable - len(self.unverifiable_items)} more"
                )
        if self.fidelity_losses:
            out += ["", "## Fidelity losses", "", "| lost | items |", "|---|---:|"]
            out += [f"| {_cell(what)} | {n} |" for what, n in self.fidelity_losses]
        return "\n".join(out) + "\n"

    def _repr_html_(self) -> str:
        """Jupyter's view: the counts, completeness, and the items named by state."""
        h = _html
        left = open_items({s: n for s, n, _ in self.by_state})
        complete = "yes" if self.complete else f"no: {left or 'items are open'}"
        moved = h.Markup(
            f"{h.nbytes(self.bytes_moved)} in {h.text(h.seconds(self.seconds))}"
            + (f" ({h.nbytes(round(self.throughput))}/s)" if self.throughput else "")
        )
        pairs: list[tuple[str, object]] = [
            ("items", self.items),
            ("planned", h.nbytes(self.planned_bytes)),
            ("verified", self.verified),
            ("unverifiable (carried, nothing independent compared)", self.unverifiable),
            ("failed", self.failures_count),
            ("conflicts left alone", self.conflicts_count),
            ("not migratable (still only at the source)", self.unmigratable_count),
            ("only at the destination (not touched)", self.extras),
            ("rolled back", self.rolled_back),
            ("bytes sent", moved),
            ("runs", self.runs),
            ("complete", complete),
        ]
        parts = [
            h.facts(pairs),
            h.heading("By stage"),
            h.table(
                ("stage", "state", "items", "bytes"),
                ((st, state, n, h.nbytes(b)) for st, state, n, b in self.by_stage),
            ),
        ]
        if self.failures_count:
            parts += [
                h.heading(f"Failures ({self.failures_count})"),
                h.table(
                    ("key", "reason", "attempts", "offset"),
                    (
                        (
                            h.code(e.key),
                            e.reason or "",
                            e.attempts,
                            "" if e.offset is None else e.offset,
                        )
                        for e in self.failures[: h.MAX_ROWS]
                    ),
                    total=max(self.failures_count, len(self.failures)),
                ),
            ]
        if self.conflicts_count:
            parts += [
                h.heading(f"Conflicts ({self.conflicts_count})"),
                h.table(
                    ("key", "reason"),
                    (
                        (h.code(e.key), e.reason or "")
                        for e in self.conflicts[: h.MAX_ROWS]
                    ),
                    total=max(self.conflicts_count, len(self.conflicts)),
                ),
            ]
        if self.unmigratable_count:
            parts += [
                h.heading(f"Not migratable ({self.unmigratable_count})"),
                h.table(
                    ("key", "reason"),
                    (
                        (h.code(e.key), e.reason or "")
                        for e in self.unmigratable[: h.MAX_ROWS]
                    ),
                    total=max(self.unmigratable_count, len(self.unmigratable)),
                ),
            ]
        if self.unverifiable:
            parts += [
                h.heading(f"Unverifiable ({self.unverifiable})"),
                h.table(
                    ("key",),
                    ((h.code(e.key),) for e in self.unverifiable_items[: h.MAX_ROWS]),
                    total=max(self.unverifiable, len(self.unverifiable_items)),
                ),
            ]
        if self.fidelity_losses:
            parts += [
                h.heading("Fidelity losses"),
                h.table(("lost", "items"), self.fidelity_losses),
            ]
        return h.block(
            h.Markup(f"<b>Migration report</b> for plan {h.code(self.plan_id)}"),
            *parts,
            subtitle=f"{self.source} → {self.destination}",
        )


def _cell(text: str | None) -> str:
    """Text for a Markdown table cell: pipes escaped, line breaks made spaces."""
    return (text or "").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _code(text: str) -> str:
    """A key as a Markdown code span that any key survives, in a table cell too.

    Line breaks are shown escaped and pipes escaped (GFM reads an escaped
    pipe inside a code span in a table as a pipe); the fence is one backtick
    longer than the longest run of backticks in the key.
    """
    text = text.replace("\r", "\\r").replace("\n", "\\n").replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _entries(ledger: Ledger, state: ItemState, limit: int) -> tuple[ReportEntry, ...]:
    return tuple(
        ReportEntry(
            key=r.item.key,
            state=r.state,
            reason=r.reason or r.item.reason,  # a conflict's, an unmigratable's
            attempts=r.attempts,
            offset=r.offset,
        )
        for r in ledger.items(state=state, limit=limit)
    )


def report(ledger: Ledger, *, max_listed: int = 1000) -> Report:
    """Compute the report of the plan recorded in ``ledger``.

    Reads only the ledger (the stores are not touched); safe on a ledger
    opened read-only while a run is going.

    Args:
        ledger: The ledger.
        max_listed: Items listed by name per category (failures,
            conflicts, unverifiable); counts are always complete.

    Raises:
        PlanError: The ledger has no plan.
    """
    header = ledger.header
    by_state: dict[str, list[int]] = {}
    by_stage = []
    planned = moved = items = extras = 0
    order = {n: i for i, n in enumerate(header.stage_names())}
    for stage, action, state, count, nbytes, nmoved in ledger.totals(
        group_by=("stage", "action", "state")
    ):
        items += count
        moved += nmoved
        if action == Action.EXTRA.value:
            extras += count
            continue
        planned += nbytes
        acc = by_state.setdefault(state, [0, 0])
        acc[0] += count
        acc[1] += nbytes
        by_stage.append((stage, state, count, nbytes))
    merged: dict[tuple[str, str], list[int]] = {}
    for stage, state, count, nbytes in by_stage:
        acc = merged.setdefault((stage, state), [0, 0])
        acc[0] += count
        acc[1] += nbytes
    losses = ledger.fidelity_losses()
    runs = ledger.runs()
    seconds = sum(
        (r.finished - r.started)
        for r in runs
        if r.kind in ("execute", "resume") and r.finished is not None
    )
    counts = {s: v[0] for s, v in by_state.items()}
    return Report(
        plan_id=ledger.plan_id or "",
        source=header.source,
        destination=header.destination,
        generated=time.time(),
        items=items,
        by_state=tuple((s, v[0], v[1]) for s, v in sorted(by_state.items())),
        by_stage=tuple(
            (stage, state, v[0], v[1])
            for (stage, state), v in sorted(
                merged.items(),
                key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][1]),
            )
        ),
        planned_bytes=planned,
        bytes_moved=moved,
        seconds=seconds,
        throughput=moved / seconds if seconds > 0 else None,
        runs=len(runs),
        complete=not any(counts.get(s.value, 0) for s in _OPEN),
        verified=counts.get(ItemState.VERIFIED.value, 0),
        unverifiable=counts.get(ItemState.UNVERIFIABLE.value, 0),
        failures=_entries(ledger, ItemState.FAILED, max_listed),
        failures_count=counts.get(ItemState.FAILED.value, 0),
        conflicts=_entries(ledger, ItemState.CONFLICT, max_listed),
        conflicts_count=counts.get(ItemState.CONFLICT.value, 0),
        unverifiable_items=_entries(ledger, ItemState.UNVERIFIABLE, max_listed),
        extras=extras,
        rolled_back=counts.get(ItemState.ROLLED_BACK.value, 0),
        fidelity_losses=tuple(sorted(losses.items())),
        unmigratable=_entries(ledger, ItemState.UNMIGRATABLE, max_listed),
        unmigratable_count=counts.get(ItemState.UNMIGRATABLE.value, 0),
    )


@attrs.frozen(kw_only=True)
class Status:
    """Where a migration stands, cheaply (for a status display).

    Attributes:
        plan_id: The plan.
        source: Source URL.
        destination: Destination URL.
        counts: Items per state.
        stages: ``(stage, state, items)`` per stage and state, in stage order.
        bytes_done: Bytes of items in a final state (verified, unverifiable,
            skipped).
        bytes_total: Bytes of all source items.
        last_run: The most recent run, if any.
        running: A run holds the ledger right now (in any process).
        stop_requested: A stop request is waiting to be noticed.
        leftovers: ``(kind, name, why)`` of what the latest cleanups (of
            temporary files, of pending uploads) could not remove from the
            destination (see
            [Ledger.leftovers][carmigrate.migrate.Ledger.leftovers]).
    """

    plan_id: str
    source: str
    destination: str
    counts: Mapping[ItemState, int]
    stages: tuple[tuple[str, str, int], ...]
    bytes_done: int
    bytes_total: int
    last_run: RunRecord | None
    running: bool
    stop_requested: bool
    leftovers: tuple[tuple[str, str, str], ...] = ()

    @property
    def complete(self) -> bool:
        """Every source entry is at the destination (see [Report][carmigrate.migrate.Report])."""
        return not open_items(self.counts)

    @property
    def open(self) -> str:
        """What keeps it from being complete (``"2 pending, 4 unmigratable"``), or ``""``."""
        return open_items(self.counts)

    def _repr_html_(self) -> str:
        """Jupyter's view: progress, completeness, the last run and the counts."""
        h = _html
        items = sum(self.counts.values())
        left = open_items(self.counts)
        failed = self.counts.get(ItemState.FAILED, 0)
        pct = (
            f" ({100 * self.bytes_done / self.bytes_total:.0f}%)"
            if self.bytes_total
            else ""
        )
        pairs: list[tuple[str, object]] = [
            ("items", items),
            (
                "done",
                h.Markup(
                    f"{h.nbytes(self.bytes_done)} of {h.nbytes(self.bytes_total)}{pct}"
                ),
            ),
            ("complete", f"no: {left}" if left else "yes"),
            ("failed", failed),
            ("running now", h.yes_no(self.running)),
            ("stop requested", h.yes_no(self.stop_requested)),
            ("last run", _last_run(self.last_run)),
        ]
        return h.block(
            h.Markup(f"<b>Status</b> of plan {h.code(self.plan_id)}"),
            h.facts(pairs),
            h.table(("state", "items"), state_rows(self.counts)),
            h.heading("By stage"),
            h.table(("stage", "state", "items"), self.stages),
            subtitle=f"{self.source} → {self.destination}",
        )


def _last_run(run: RunRecord | None) -> str:
    if run is None:
        return "none yet"
    what = f"{run.id} ({run.kind})"
    if run.finished is None:
        return f"{what} did not record its end (still running, or killed)"
    return (
        f"{what}: {run.stop_reason or 'done'}; {run.items} items, "
        f"{_html.human_bytes(run.bytes)} sent, {run.failures} failed, "
        f"{_html.seconds(run.finished - run.started)}"
    )


def status(ledger: Ledger) -> Status:
    """The current counts and the last run of the plan in ``ledger`` (reads only the ledger).

    Raises:
        PlanError: The ledger has no plan.
    """
    header = ledger.header
    done_states = {
        ItemState.VERIFIED.value,
        ItemState.UNVERIFIABLE.value,
        ItemState.SKIPPED.value,
    }
    order = {n: i for i, n in enumerate(header.stage_names())}
    stages: dict[tuple[str, str], int] = {}
    done = total = 0
    counts: dict[ItemState, int] = {}
    for stage, action, state, count, nbytes, _ in ledger.totals(
        group_by=("stage", "action", "state")
    ):
        if action == Action.EXTRA.value:
            continue
        counts[ItemState(state)] = counts.get(ItemState(state), 0) + count
        stages[(stage, state)] = stages.get((stage, state), 0) + count
        total += nbytes
        if state in done_states:
            done += nbytes
    runs = ledger.runs()
    last = runs[-1] if runs else None
    return Status(
        plan_id=ledger.plan_id or "",
        source=header.source,
        destination=header.destination,
        counts=counts,
        stages=tuple(
            (stage, state, n)
            for (stage, state), n in sorted(
                stages.items(),
                key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][1]),
            )
        ),
        bytes_done=done,
        bytes_total=total,
        last_run=last,
        running=ledger.is_running(),
        stop_requested=os.path.exists(ledger.stop_path()),
        leftovers=ledger.leftovers(),
    )
