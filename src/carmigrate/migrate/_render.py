"""A plan's summary for review: counts, bytes, an estimate of the cost, and its renderings."""

from __future__ import annotations

import math
from typing import Final

import attrs

from carmigrate import _html
from carmigrate.migrate._model import Action, Limits, PlanHeader

__all__ = ["PlanSummary", "summarize", "summary_html"]

_ACTION_ORDER: Final = {a: i for i, a in enumerate(Action)}


@attrs.frozen(kw_only=True)
class PlanSummary:
    """Counts, bytes and an estimate of a plan's cost, for review.

    Attributes:
        plan_id: The plan's id.
        source: Source URL.
        destination: Destination URL.
        items: Items, extras included.
        bytes: Bytes of all source items.
        by_action: ``(action, items, bytes)`` per action, in action order.
        by_stage: ``(stage, action, items, bytes)`` per stage and action, in
            stage order.
        transfer_items: Items that may move bytes (``COPY``, plus
            ``CONFLICT`` when overwriting is allowed).
        transfer_bytes: Their bytes.
        compare_items: ``VERIFY`` items (read on both sides at run time).
        requests: Estimated storage requests of a full run.
        seconds: Estimated duration of a full run under the plan's limits and
            the assumed throughput; ``None`` if nothing bounds it.
    """

    plan_id: str
    source: str
    destination: str
    items: int
    bytes: int
    by_action: tuple[tuple[str, int, int], ...]
    by_stage: tuple[tuple[str, str, int, int], ...]
    transfer_items: int
    transfer_bytes: int
    compare_items: int
    requests: int
    seconds: float | None

    @property
    def unmigratable(self) -> int:
        """Source entries planned ``UNMIGRATABLE``: a run can never be complete."""
        return sum(
            n for action, n, _ in self.by_action if action == Action.UNMIGRATABLE.value
        )

    def to_markdown(self) -> str:
        """The summary as a Markdown table with a header paragraph."""
        lines = [
            f"Plan `{self.plan_id}`: {self.source} → {self.destination}",
            "",
            f"{self.items} items, {_human_bytes(self.bytes)}; "
            f"{self.transfer_items} to copy ({_human_bytes(self.transfer_bytes)}), "
            f"{self.compare_items} to compare; about {self.requests} requests"
            + (
                f", about {_human_seconds(self.seconds)}"
                if self.seconds is not None
                else ""
            )
            + ".",
            "",
            "| stage | action | items | bytes |",
            "|---|---|---:|---:|",
        ]
        lines += [
            f"| {stage} | {action} | {count} | {nbytes} |"
            for stage, action, count, nbytes in self.by_stage
        ]
        if self.unmigratable:
            lines += [
                "",
                f"**{self.unmigratable} source entries cannot be migrated** (listed "
                "in the plan as `unmigratable`, each with its reason): the migration "
                "will not be complete, so the source must not be retired.",
            ]
        return "\n".join(lines) + "\n"

    def _repr_html_(self) -> str:
        """Jupyter's view: the counts, bytes and estimate, and a row per stage and action."""
        extras = sum(
            n for action, n, _ in self.by_action if action == Action.EXTRA.value
        )
        return summary_html(self, extras=extras)


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError  # pragma: no cover


def _human_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def summarize(
    header: PlanHeader,
    plan_id: str,
    *,
    assumed_bytes_per_second: float | None = None,
    assumed_request_seconds: float | None = None,
    part_size: int = 8 << 20,
) -> PlanSummary:
    """Counts by action and stage, bytes, and an estimate of the cost.

    Computed from the header alone (no pass over the items). Requests
    count one source ``stat``, one read and one write per copied item
    (plus a part per ``part_size`` bytes beyond the first), and a
    ``stat`` and a read on each side per compared item. The duration is
    the largest of the limits' bounds (items/s, bytes/s) and the assumed
    throughput and request latency divided by the concurrency; ``None``
    when none of these bounds it.

    Args:
        header: The plan's header (its totals and limits).
        plan_id: The plan's id.
        assumed_bytes_per_second: Throughput to assume for the stores.
        assumed_request_seconds: Latency to assume per request.
        part_size: Multipart part size to count requests with.
    """
    h = header
    overwrite = h.transfer.overwrite.value == "if_different"
    by_action: dict[Action, list[int]] = {}
    transfer_items = transfer_bytes = compare_items = compare_bytes = 0
    requests = 0
    total_bytes = 0
    for t in h.totals:
        acc = by_action.setdefault(t.action, [0, 0])
        acc[0] += t.count
        acc[1] += t.bytes
        if t.action is not Action.EXTRA:
            total_bytes += t.bytes
        moves = t.action is Action.COPY or (t.action is Action.CONFLICT and overwrite)
        if moves:
            transfer_items += t.count
            transfer_bytes += t.bytes
            requests += 3 * t.count + max(0, math.ceil(t.bytes / part_size) - t.count)
        elif t.action is Action.VERIFY:
            compare_items += t.count
            compare_bytes += t.bytes
            requests += 4 * t.count
    bounds = []
    lim: Limits = h.limits
    work_items = transfer_items + compare_items
    work_bytes = transfer_bytes + 2 * compare_bytes
    if lim.items_per_second:
        bounds.append(work_items / lim.items_per_second)
    if lim.bytes_per_second:
        bounds.append(work_bytes / lim.bytes_per_second)
    if assumed_bytes_per_second:
        bounds.append(work_bytes / assumed_bytes_per_second)
    if assumed_request_seconds:
        bounds.append(requests * assumed_request_seconds / lim.concurrency)
    order = {name: i for i, name in enumerate(h.stage_names())}
    by_stage = sorted(
        ((t.stage, t.action.value, t.count, t.bytes) for t in h.totals),
        key=lambda r: (order.get(r[0], len(order)), _ACTION_ORDER[Action(r[1])]),
    )
    return PlanSummary(
        plan_id=plan_id,
        source=h.source,
        destination=h.destination,
        items=h.item_count,
        bytes=total_bytes,
        by_action=tuple(
            (a.value, v[0], v[1])
            for a, v in sorted(by_action.items(), key=lambda kv: _ACTION_ORDER[kv[0]])
        ),
        by_stage=tuple(by_stage),
        transfer_items=transfer_items,
        transfer_bytes=transfer_bytes,
        compare_items=compare_items,
        requests=requests,
        seconds=max(bounds) if bounds else None,
    )


def summary_html(s: PlanSummary, *, extras: int) -> str:
    """A plan summary as an HTML fragment (Jupyter's rich display).

    Escaped throughout; at most ``_html.MAX_ROWS`` stage rows.
    """
    h = _html
    estimate = f", about {_human_seconds(s.seconds)}" if s.seconds is not None else ""
    line = h.Markup(
        f"{s.items} items, {h.nbytes(s.bytes)}; {s.transfer_items} to copy "
        f"({h.nbytes(s.transfer_bytes)}), {s.compare_items} to compare, "
        f"{extras} only at the destination; about {s.requests} requests"
        f"{h.text(estimate)}"
    )
    rows = (
        (stage, action, count, h.nbytes(nbytes))
        for stage, action, count, nbytes in s.by_stage[: h.MAX_ROWS]
    )
    return h.block(
        h.Markup(f"<b>Plan</b> {h.code(s.plan_id)}"),
        h.Markup(f"<p>{line}</p>"),
        h.table(("stage", "action", "items", "bytes"), rows, total=len(s.by_stage)),
        subtitle=f"{s.source} → {s.destination}",
    )
