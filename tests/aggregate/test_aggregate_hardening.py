"""Regression tests for hostile or inconsistent input to the aggregate layer."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path

import attrs
import pytest

from carmigrate.aggregate import (
    AggregateBuilder,
    AggregateQueue,
    AggregateState,
    InclusionProof,
    Offer,
    PackingConstraints,
    PackItem,
    PackResult,
    PlannedAggregate,
    ProofData,
    check_deal_size,
    iter_aggregate_bytes,
    pack,
)
from carmigrate.commp import PieceInfo
from carmigrate.errors import AggregateError

K = 1024
DEAL = 1 << 20


def piece(i: int, size: int) -> PieceInfo:
    return PieceInfo(i.to_bytes(4, "big") + b"\x22" * 27 + b"\x01", size)


@attrs.frozen
class RawPiece:
    root: bytes
    padded_size: int


def test_largest_first_fills_below_large_pieces_after_a_prepend() -> None:
    """A 128-byte prepend, two 256 KiB and four 64 KiB pieces all fit one deal."""
    c = PackingConstraints(deal_size=DEAL, prepend=(piece(99, 128),), max_age=0)
    items = [PackItem(piece(i, 256 * K), f"big{i}") for i in range(2)]
    items += [PackItem(piece(10 + i, 64 * K), f"s{i}") for i in range(4)]

    (agg,) = pack(items, c, policy="largest_first", now=1.0).aggregates

    assert len(agg.items) == 6
    assert [o // K for o in agg.offsets] == [0, 64, 128, 192, 256, 512, 768]
    agg.build()


@pytest.mark.parametrize(
    ("offer", "fragment"),
    [
        (Offer(piece(1, DEAL)), "cannot fit any"),
        (Offer(piece(1, 1 << 17), payload_size=1 << 20), "does not fit"),
        (Offer(piece(1, 1 << 17), payload_size=-5), "negative"),
        (Offer(RawPiece(b"\xff" * 32, 128)), "top two bits"),
        (Offer(piece(99, 128)), "prepended"),
    ],
)
def test_offers_that_could_block_the_queue_are_refused(
    tmp_path: Path, offer: Offer, fragment: str
) -> None:
    """An offer no build could use is refused up front; nothing is buffered."""
    q = AggregateQueue(
        tmp_path / "q.db",
        constraints=PackingConstraints(deal_size=DEAL, prepend=(piece(99, 128),)),
    )
    with pytest.raises(AggregateError, match=fragment):
        q.offer([Offer(piece(2, 128)), offer])

    assert q.buffered() == []


def test_a_group_grown_too_large_is_dropped_not_blocking(tmp_path: Path) -> None:
    """A group that grows past one aggregate across offers is dropped with a reason."""
    q = AggregateQueue(
        tmp_path / "q.db", constraints=PackingConstraints(deal_size=DEAL, max_age=0)
    )
    q.offer([Offer(piece(i, 256 * K), group="upload") for i in range(3)])
    q.offer([Offer(piece(3, 256 * K), group="upload"), Offer(piece(9, 1 << 12))])

    (rec,) = q.build()

    assert rec.pieces == 1
    dropped = q.find(piece(0, 256 * K))
    assert dropped is not None
    assert dropped.status == "DROPPED"
    assert "cannot fit one aggregate" in (dropped.drop_reason or "")


def test_a_bad_policy_plan_is_refused_before_claiming(tmp_path: Path) -> None:
    """A policy whose layout is impossible fails the build and claims nothing."""

    def shifted(items, c, now):  # type: ignore[no-untyped-def]
        res = pack(items, c, policy="largest_first", now=now)
        bad = [
            attrs.evolve(a, offsets=tuple(o + 128 for o in a.offsets))
            for a in res.aggregates
        ]
        return PackResult(tuple(bad), res.leftover)

    path = tmp_path / "q.db"
    q = AggregateQueue(
        path, constraints=PackingConstraints(deal_size=DEAL, max_age=0), policy=shifted
    )
    q.offer([Offer(piece(i, 64 * K)) for i in range(3)])

    with pytest.raises(AggregateError, match="planned offset"):
        q.build()

    assert q.aggregates() == []
    assert len(q.buffered()) == 3
    good = AggregateQueue(
        path, constraints=PackingConstraints(deal_size=DEAL, max_age=0)
    )
    assert [r.state for r in good.build()] == [AggregateState.READY]


def test_an_unbuildable_ingesting_aggregate_is_rejected_not_blocking(
    tmp_path: Path,
) -> None:
    """An INGESTING aggregate that no longer builds is REJECTED and its pieces return."""
    path = tmp_path / "q.db"
    q = AggregateQueue(path, constraints=PackingConstraints(deal_size=DEAL, max_age=0))
    q.offer([Offer(piece(i, 64 * K)) for i in range(3)])
    with q._tx() as db:
        q._plan_into(db, 1e12)
    db = sqlite3.connect(path)
    db.execute("UPDATE member SET offset = offset + 128")
    db.commit()
    db.close()

    assert q.build() == []
    assert [a.state.value for a in q.aggregates()] == ["REJECTED"]
    assert len(q.buffered()) == 3
    (rebuilt,) = q.build()
    assert rebuilt.state is AggregateState.READY


def test_bisect_never_splits_a_group(tmp_path: Path) -> None:
    """Halves of a rejected aggregate are cut between groups, not inside one."""
    q = AggregateQueue(
        tmp_path / "q.db", constraints=PackingConstraints(deal_size=DEAL, max_age=0)
    )
    q.offer(
        [Offer(piece(i, 64 * K), group="upload" if i < 3 else None) for i in range(6)]
    )
    (rec,) = q.build()

    q.reject(rec.aggregate_id, "deal failed")
    halves = q.build()

    assert len(halves) == 2
    agg_of = {i: q.find(piece(i, 64 * K)).aggregate_id for i in range(3)}  # type: ignore[union-attr]
    assert len(set(agg_of.values())) == 1


def _child_uses_queue(path: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    q = QUEUES[path]
    out.put(q.offer([Offer(piece(77, 128))]).accepted)


QUEUES: dict[str, AggregateQueue] = {}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    """A queue inherited through fork() reconnects instead of sharing SQLite state."""
    path = str(tmp_path / "q.db")
    QUEUES[path] = AggregateQueue(path)
    QUEUES[path].buffered()  # the parent's connection exists
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    p = ctx.Process(target=_child_uses_queue, args=(path, out))
    p.start()
    p.join(30)

    assert p.exitcode == 0
    assert out.get(timeout=5) == 1
    assert len(QUEUES.pop(path).buffered()) == 1


def test_hostile_proofs_are_aggregate_errors() -> None:
    """Oversized trees, wrong types and huge sizes never escape as other errors."""
    node = b"\x01" * 32
    with pytest.raises(AggregateError, match="tree of"):
        InclusionProof(ProofData(0, [node] * 58), ProofData(0, [node] * 58)).resolve(
            node, 1 << 10
        )
    for bad in (
        [[0, [1 << 62]], [0, []]],
        [[0, b"  "], [0, []]],
        [[True, [node]], [1, [node]]],
    ):
        from carmigrate.cid import encode_dag_cbor

        with pytest.raises(AggregateError):
            InclusionProof.from_dag_cbor(encode_dag_cbor(bad))
    with pytest.raises(AggregateError, match="expected an object"):
        InclusionProof.from_json([1, 2])


def test_position_and_deal_size_bounds() -> None:
    """proof() refuses positions outside the aggregate; deal sizes are capped at 64 GiB."""
    b = AggregateBuilder(DEAL)
    b.add(piece(1, 128))
    agg = b.build()
    with pytest.raises(IndexError):
        agg.proof(-1)
    with pytest.raises(AggregateError, match="64 GiB"):
        check_deal_size(1 << 37)


def test_stream_chunks_are_at_most_one_mib() -> None:
    """Even the index of a large deal is streamed in bounded chunks."""
    import io

    b = AggregateBuilder(1 << 30)
    b.add(piece(1, 128))
    agg = b.build()

    sizes = [len(c) for c in iter_aggregate_bytes(agg, lambda pl: io.BytesIO(b""))]

    assert max(sizes) <= 1 << 20
    assert sum(sizes) == (1 << 30) // 128 * 127


def test_planned_aggregate_check_names_the_mismatch() -> None:
    """check() refuses a layout the builder would not produce."""
    plan = PlannedAggregate(
        DEAL, (), (PackItem(piece(1, 256), "a"),), (128,), "full", (0, 1)
    )
    with pytest.raises(AggregateError, match="planned offset 128"):
        plan.check()
