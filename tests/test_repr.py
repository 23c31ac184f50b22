"""Jupyter's rich display: every ``_repr_html_`` escapes, bounds and shows CIDs as text."""

from __future__ import annotations

import re

import pytest

from carmigrate import _html
from carmigrate.aggregate import (
    Aggregate,
    AggregateBuilder,
    AggregateQueue,
    Offer,
    PackingConstraints,
    PackItem,
    PackResult,
    pack,
)
from carmigrate.cid import CID
from carmigrate.commp import PieceInfo
from carmigrate.migrate import (
    ItemState,
    Ledger,
    PlanSummary,
    Report,
    ReportEntry,
    RunRecord,
    RunResult,
    Status,
    execute,
    plan,
    report,
    status,
)
from carmigrate.storage import MemoryStore

# a key that is markup, a Markdown table cell breaker and a code-span breaker
EVIL = "<script>alert('x')</script>|`tick``|&amp;"
EVIL_HTML = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;|`tick``|&amp;amp;"


def _root(i: int) -> bytes:
    return i.to_bytes(31, "big") + b"\x01"


def _checked(fragment: str) -> str:
    """The common promises: no raw markup from values, no bytes literals, tags balanced."""
    assert "<script" not in fragment
    assert "b'" not in fragment
    assert 'b"' not in fragment
    assert "\\x" not in fragment
    for tag in ("div", "table", "tr", "td", "th", "code", "p"):
        opened = len(re.findall(rf"<{tag}[ >]", fragment))
        assert opened == fragment.count(f"</{tag}>"), tag
    return fragment


# -- the shared helpers ---------------------------------------------------------


def test_text_escapes_cuts_and_refuses_bytes() -> None:
    assert _html.text(EVIL) == EVIL_HTML
    cut = _html.text("k" * 500)
    assert len(cut) == _html.MAX_TEXT
    assert cut.endswith("…")
    with pytest.raises(TypeError, match="raw bytes"):
        _html.text(b"\x00" * 32)
    assert _html.text(_html.Markup("<b>ok</b>")) == "<b>ok</b>"


def test_table_says_how_many_rows_it_left_out() -> None:
    rows = [(f"key-{n}", n) for n in range(50)]

    fragment = _html.table(("key", "n"), rows)

    assert fragment.count("<tr>") == 1 + _html.MAX_ROWS + 1
    assert "key-19" in fragment
    assert "key-20" not in fragment
    assert "… and 30 more" in fragment
    # rows that are only the first of many, with the count of all
    assert "… and 98 more" in _html.table(("key", "n"), rows[:2], total=100, limit=2)
    assert "more" not in _html.table(("key", "n"), rows[:3])


def test_human_sizes_and_counts() -> None:
    assert _html.human_bytes(512) == "512 B"
    assert _html.human_bytes(1536) == "1.5 KiB"
    assert _html.human_bytes(1 << 36) == "64.0 GiB"
    assert _html.nbytes(2048) == "<span title='2048 bytes'>2.0 KiB</span>"
    assert _html.count(1, "piece") == "1 piece"
    assert _html.count(0, "piece") == "0 pieces"


# -- commp and aggregate --------------------------------------------------------


def test_piece_info_shows_its_cids_never_the_root_bytes() -> None:
    piece = PieceInfo(_root(7), 1 << 16, 60_000)

    fragment = _checked(piece._repr_html_())

    assert str(piece.cid_v1) in fragment
    assert str(piece.cid_v2) in fragment
    assert "65536 bytes" in fragment
    assert "60000 bytes" in fragment
    assert repr(piece.root) not in fragment


def test_piece_info_from_a_v1_cid_says_the_v2_cid_is_unknown() -> None:
    piece = PieceInfo(_root(7), 1 << 16)

    fragment = _checked(piece._repr_html_())

    assert str(piece.cid_v1) in fragment
    assert "bafkzcib" not in fragment
    assert "unknown" in fragment


def _aggregate(pieces: int, deal_size: int) -> Aggregate:
    builder = AggregateBuilder(deal_size)
    for i in range(pieces):
        builder.add(PieceInfo(_root(i + 1), 128))
    return builder.build()


def test_aggregate_piece_cid_is_the_v1_cid_of_its_root_and_v2_is_full() -> None:
    agg = _aggregate(3, 1 << 20)

    assert isinstance(agg.piece_cid, CID)
    assert agg.piece_cid == PieceInfo(agg.root, agg.deal_size).cid_v1
    assert str(agg.piece_cid).startswith("baga6ea4seaq")
    back = PieceInfo.from_cid(agg.piece_cid_v2)
    assert back.root == agg.root
    assert back.padded_size == agg.deal_size
    assert back.padding == 0


def test_aggregate_piece_cids_match_the_queue_record(tmp_path) -> None:
    queue = AggregateQueue(
        tmp_path / "q.db", constraints=PackingConstraints(deal_size=1 << 20, max_age=0)
    )
    pieces = [PieceInfo(_root(i + 1), 1 << 16) for i in range(4)]
    queue.offer(Offer(p, link=f"car{i}") for i, p in enumerate(pieces))
    (record,) = queue.build()

    agg = queue.aggregate(record.aggregate_id)

    assert str(agg.piece_cid) == record.piece_cid
    assert str(agg.piece_cid_v2) == record.piece_cid_v2


def test_aggregate_html_shows_cids_and_bounds_the_placements() -> None:
    agg = _aggregate(25, 1 << 22)  # 32 index entries

    fragment = _checked(agg._repr_html_())

    assert str(agg.piece_cid) in fragment
    assert str(agg.piece_cid_v2) in fragment
    assert "25 of 32 index entries" in fragment
    assert str(PieceInfo(_root(1), 128).cid_v1) in fragment
    assert str(PieceInfo(_root(25), 128).cid_v1) not in fragment
    assert "… and 5 more" in fragment
    assert agg.root.hex() not in fragment


def test_pack_result_escapes_keys_and_tenants_and_bounds_the_waiting_list() -> None:
    items = [
        PackItem(PieceInfo(_root(i + 1), 1 << 16), key=f"{EVIL}-{i}", tenant=EVIL)
        for i in range(8)
    ]
    packed = pack(items, PackingConstraints(deal_size=1 << 20, max_age=0), now=0)
    waiting = tuple(
        PackItem(PieceInfo(_root(100 + i), 128), key=f"small-{i}", tenant="t2")
        for i in range(30)
    )
    result = PackResult(packed.aggregates, waiting)
    assert len(result.aggregates) == 1

    fragment = _checked(result._repr_html_())

    assert EVIL_HTML in fragment  # a tenant of the aggregate
    assert "1 aggregate, 30 pieces waiting" in fragment
    assert "small-19" in fragment
    assert "small-20" not in fragment
    assert "… and 10 more" in fragment
    assert "<td>deadline</td>" in fragment


def test_pack_result_leftover_keys_are_escaped() -> None:
    items = [PackItem(PieceInfo(_root(1), 128), key=EVIL, tenant=EVIL, group=EVIL)]

    fragment = _checked(
        pack(items, PackingConstraints(deal_size=1 << 20))._repr_html_()
    )

    assert "No aggregate yet" in fragment
    assert "1 piece waiting" in fragment
    assert fragment.count(EVIL_HTML) == 3  # key, tenant, group


# -- the migration engine -------------------------------------------------------


def _summary(stages: int) -> PlanSummary:
    return PlanSummary(
        plan_id="bafyplan",
        source=f"memory://{EVIL}",
        destination="memory://dst",
        items=10 * stages + 2,
        bytes=3 << 20,
        by_action=(("copy", 10 * stages, 3 << 20), ("extra", 2, 0)),
        by_stage=tuple((f"{EVIL}{n}", "copy", 10, 1000) for n in range(stages)),
        transfer_items=10 * stages,
        transfer_bytes=3 << 20,
        compare_items=0,
        requests=30 * stages,
        seconds=90.0,
    )


def test_plan_summary_html_escapes_stages_and_urls_and_bounds_rows() -> None:
    fragment = _checked(_summary(30)._repr_html_())

    assert f"memory://{EVIL_HTML}" in fragment
    assert f"{EVIL_HTML}0" in fragment
    assert f"{EVIL_HTML}25" not in fragment
    assert "… and 10 more" in fragment
    assert "302 items" in fragment
    assert "2 only at the destination" in fragment
    assert "about 900 requests, about 90 s" in fragment


def test_run_result_says_why_it_is_not_complete() -> None:
    stopped = RunResult(
        run=2,
        stop_reason="max_items",
        items=5,
        bytes=5 << 10,
        failures=1,
        seconds=2.0,
        counts={ItemState.VERIFIED: 4, ItemState.FAILED: 1, ItemState.PENDING: 7},
    )
    waiting = RunResult(
        run=3,
        stop_reason="done",
        items=0,
        bytes=0,
        failures=0,
        seconds=0.0,
        counts={ItemState.PENDING: 3, ItemState.COPYING: 1},
    )
    done = RunResult(
        run=4,
        stop_reason="done",
        items=12,
        bytes=1 << 20,
        failures=0,
        seconds=1.0,
        counts={ItemState.VERIFIED: 12},
    )

    assert "no: stopped early (max_items)" in _checked(stopped._repr_html_())
    assert "no: 3 pending, 1 copying" in _checked(waiting._repr_html_())
    fragment = _checked(done._repr_html_())
    assert "<td>yes</td>" in fragment
    assert "<td>verified</td><td style='text-align:right'>12</td>" in fragment


def test_run_result_escapes_and_bounds_the_tenant_waits() -> None:
    waits = {f"{EVIL}{n}": float(n) for n in range(30)}
    result = RunResult(
        run=1,
        stop_reason="done",
        items=1,
        bytes=1,
        failures=0,
        seconds=1.0,
        counts={ItemState.VERIFIED: 1},
        tenant_waits=waits,
    )

    fragment = _checked(result._repr_html_())

    assert f"{EVIL_HTML}29" in fragment  # the longest wait first
    assert f"{EVIL_HTML}0<" not in fragment
    assert "… and 10 more" in fragment


def _report(failures: int, listed: int) -> Report:
    return Report(
        plan_id="bafyplan",
        source="memory://src",
        destination="memory://dst",
        generated=0.0,
        items=failures + 3,
        by_state=(("failed", failures, 10 * failures), ("pending", 3, 30)),
        by_stage=((EVIL, "failed", failures, 10 * failures), (EVIL, "pending", 3, 30)),
        planned_bytes=10 * failures + 30,
        bytes_moved=0,
        seconds=0.0,
        throughput=None,
        runs=1,
        complete=False,
        verified=0,
        unverifiable=0,
        failures=tuple(
            ReportEntry(
                key=f"{EVIL}{n}",
                state=ItemState.FAILED,
                reason=f"reason {EVIL}",
                attempts=2,
                offset=n,
            )
            for n in range(listed)
        ),
        failures_count=failures,
        conflicts=(ReportEntry(key=EVIL, state=ItemState.CONFLICT, reason=EVIL),),
        conflicts_count=1,
        unverifiable_items=(),
        extras=0,
        rolled_back=0,
        fidelity_losses=((f"metadata:{EVIL}", 2),),
    )


def test_report_html_escapes_names_and_counts_what_it_does_not_list() -> None:
    fragment = _checked(_report(failures=1000, listed=100)._repr_html_())

    assert "Failures (1000)" in fragment
    assert f"<code>{EVIL_HTML}0</code>" in fragment
    assert f"<code>{EVIL_HTML}20</code>" not in fragment
    assert "… and 980 more" in fragment
    assert f"reason {EVIL_HTML}" in fragment
    assert f"metadata:{EVIL_HTML}" in fragment
    assert "Conflicts (1)" in fragment
    assert "no: 3 pending" in fragment


def test_status_html_says_what_is_open_and_bounds_the_stages() -> None:
    st = Status(
        plan_id="bafyplan",
        source="memory://src",
        destination=f"memory://{EVIL}",
        counts={ItemState.VERIFIED: 10, ItemState.WARMING: 2},
        stages=tuple((f"{EVIL}{n}", "verified", 1) for n in range(25)),
        bytes_done=512,
        bytes_total=1024,
        last_run=RunRecord(
            id=1,
            kind="execute",
            started=0.0,
            finished=None,
            stages=(),
            limits=None,
            stop_reason=None,
            items=0,
            bytes=0,
            failures=0,
        ),
        running=False,
        stop_requested=True,
    )

    fragment = _checked(st._repr_html_())

    assert f"memory://{EVIL_HTML}" in fragment
    assert "(50%)" in fragment
    assert "no: 2 warming" in fragment
    assert "did not record its end" in fragment
    assert "… and 5 more" in fragment


def test_the_values_of_a_real_migration_render(tmp_path) -> None:
    """Plan, run, report and status of a migration whose keys are hostile."""
    source, destination = MemoryStore("src"), MemoryStore("dst")
    keys = [f"{EVIL}/{n}" for n in range(3)] + ["plain"]
    for n, key in enumerate(keys):
        source.write(key, bytes([n]) * (100 + n))
    the_plan = plan(source, destination)
    with Ledger(tmp_path / "ledger.db") as ledger:
        result = execute(the_plan, ledger, source=source, destination=destination)
        rep, st = report(ledger), status(ledger)

    fragments = [
        _checked(the_plan.summary()._repr_html_()),
        _checked(the_plan._repr_html_()),
        _checked(result._repr_html_()),
        _checked(rep._repr_html_()),
        _checked(st._repr_html_()),
    ]

    assert all(the_plan.id in f for f in fragments if "Run" not in f)
    assert "<td>yes</td>" in fragments[2]
    assert "<td>verified</td><td style='text-align:right'>4</td>" in fragments[4]
