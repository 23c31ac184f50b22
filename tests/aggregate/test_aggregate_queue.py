"""AggregateQueue: lifecycle, dedup, rejection, manifests, concurrency (real SQLite)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import attrs
import pytest

from carmigrate.aggregate import (
    AggregateQueue,
    AggregateState,
    Offer,
    PackingConstraints,
)
from carmigrate.commp import PieceInfo
from carmigrate.errors import AggregateError

DEAL = 1 << 20  # 8 index entries; window: more than half of 1 MiB unpadded


def piece(i: int, size: int | None = None) -> PieceInfo:
    """Piece i: 128 KiB, but every eighth is 64 KiB, so eight of them (960 KiB)
    fill a 1 MiB deal past its payload window and still fit before the index."""
    if size is None:
        size = 1 << 16 if i % 8 == 7 else 1 << 17
    root = i.to_bytes(4, "big") + b"\x11" * 27 + b"\x01"
    return PieceInfo(root, size)


def offer(i: int, size: int | None = None, **kw: object) -> Offer:
    return Offer(
        piece(i, size), link=f"car{i}", url=f"https://example.test/{i}.car", **kw
    )  # type: ignore[arg-type]


def queue(tmp_path: Path, **kw: object) -> AggregateQueue:
    # max_age=0: every build flushes what is buffered (tests of the deadline
    # itself pass their own constraints).
    c = kw.pop("constraints", PackingConstraints(deal_size=DEAL, max_age=0.0))
    return AggregateQueue(tmp_path / "q.db", constraints=c, **kw)  # type: ignore[arg-type]


def live_membership(path: Path) -> Counter[int]:
    """How many live aggregates each piece row is a member of (straight from SQLite)."""
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT m.car_id FROM member m JOIN aggregate a USING (aggregate_id)"
        " WHERE a.state != 'REJECTED'"
    ).fetchall()
    db.close()
    return Counter(r[0] for r in rows)


def test_lifecycle_and_manifest(tmp_path: Path) -> None:
    """Offer → build READY → DEAL_PENDING → DEAL_PROCESSED; the manifest's proofs verify."""
    q = queue(tmp_path)
    assert q.offer(offer(i) for i in range(8)).accepted == 8

    (rec,) = q.build()
    agg = q.aggregate(rec.aggregate_id)

    assert rec.state is AggregateState.READY
    assert rec.pieces == 8
    assert rec.piece_cid is not None
    assert rec.piece_cid.startswith("baga6ea4seaq")
    man = q.manifest(rec.aggregate_id, url_template="https://r2.test/{link}.car")
    assert man["aggregate_cid"] == rec.piece_cid
    for entry in man["pieces"]:  # type: ignore[attr-defined]
        assert entry["url"] == f"https://r2.test/{entry['link']}.car"
        found = q.find(piece(int(entry["link"][3:])))
        assert found is not None
        assert found.aggregate_id == rec.aggregate_id
        from carmigrate.aggregate import InclusionProof

        proof = InclusionProof.from_json(entry["proof"])
        proof.verify(
            piece(int(entry["link"][3:])).root, entry["padded_size"], agg.root, DEAL
        )
    assert (
        q.mark_deal_pending(rec.aggregate_id, deal_ref="spade-1").state
        is AggregateState.DEAL_PENDING
    )
    done = q.mark_deal_processed(rec.aggregate_id)
    assert done.state is AggregateState.DEAL_PROCESSED
    assert done.deal_ref == "spade-1"
    assert [h[1] for h in q.history(rec.aggregate_id)] == [
        "INGESTING",
        "READY",
        "DEAL_PENDING",
        "DEAL_PROCESSED",
    ]


def test_dedup_across_buffer_and_live_aggregates(tmp_path: Path) -> None:
    """A piece already buffered, aggregated or dealt is never offered twice."""
    q = queue(tmp_path)
    q.offer([offer(1)])
    res = q.offer([offer(1), offer(2)])

    assert res.accepted == 1
    assert len(res.duplicates) == 1
    q.offer(offer(i) for i in range(3, 9))
    (rec,) = q.build()
    again = q.offer([offer(1)])

    assert again.accepted == 0
    assert q.find(piece(1)).aggregate_id == rec.aggregate_id  # type: ignore[union-attr]


def test_below_window_waits_until_deadline(tmp_path: Path) -> None:
    """Too little for the window: nothing is built until the oldest piece is too old."""
    clock = [100.0]
    c = PackingConstraints(deal_size=DEAL, max_age=60.0)
    q = queue(tmp_path, constraints=c, clock=lambda: clock[0])
    q.offer([offer(1), offer(2)])

    assert q.build() == []
    clock[0] = 161.0
    (rec,) = q.build()
    assert rec.reason == "deadline"
    assert rec.pieces == 2


def test_invalid_transitions(tmp_path: Path) -> None:
    """Skipping a state or leaving a final one is an AggregateError."""
    q = queue(tmp_path)
    q.offer(offer(i) for i in range(8))
    (rec,) = q.build()

    with pytest.raises(AggregateError, match="cannot become DEAL_PROCESSED"):
        q.mark_deal_processed(rec.aggregate_id)
    with pytest.raises(AggregateError, match="no aggregate"):
        q.mark_deal_pending("nope")
    q.reject(rec.aggregate_id, "bad", offending=[q.find(piece(0)).key])  # type: ignore[union-attr]
    with pytest.raises(AggregateError, match="REJECTED"):
        q.mark_deal_pending(rec.aggregate_id)
    with pytest.raises(AggregateError, match=r"INGESTING|REJECTED"):
        q.manifest(rec.aggregate_id)


def test_reject_drops_offenders_and_rebuffers_the_rest(tmp_path: Path) -> None:
    """Named offenders are dropped with the reason; the others return with priority."""
    q = queue(tmp_path)
    q.offer(offer(i) for i in range(8))
    (rec,) = q.build()
    bad = q.find(piece(3))
    assert bad is not None

    q.reject(rec.aggregate_id, "SP could not fetch car3", offending=[bad.key])

    dropped = q.find(piece(3))
    assert dropped is not None
    assert dropped.status == "DROPPED"
    assert dropped.drop_reason == "SP could not fetch car3"
    rest = q.buffered()
    assert len(rest) == 7
    assert all(p.priority == 1 for p in rest)
    q.offer([offer(100)])
    (rec2,) = q.build()
    assert rec2.pieces == 8
    assert live_membership(tmp_path / "q.db").most_common(1)[0][1] == 1


def test_reject_without_culprit_bisects_until_isolated(tmp_path: Path) -> None:
    """Unknown culprit: halves are rebuilt apart; rejecting a lone piece drops it."""
    q = queue(tmp_path)
    q.offer(offer(i) for i in range(8))
    (rec,) = q.build()
    culprit = piece(5)

    q.reject(rec.aggregate_id, "deal failed")
    rounds = 0
    while True:
        rounds += 1
        built = q.build()
        assert built, "bisected halves are built at once"
        holding = [r for r in built if q.find(culprit).aggregate_id == r.aggregate_id]  # type: ignore[union-attr]
        for r in built:
            if r not in holding:
                q.mark_deal_pending(r.aggregate_id)
        (bad,) = holding
        if bad.pieces == 1:
            q.reject(bad.aggregate_id, "deal failed again")
            break
        q.reject(bad.aggregate_id, "deal failed again")

    assert rounds == 3  # 8 → 4 → 2 → 1
    assert q.find(culprit).status == "DROPPED"  # type: ignore[union-attr]
    assert q.buffered() == []


def test_crash_between_claim_and_ready_is_finished_by_the_next_build(
    tmp_path: Path,
) -> None:
    """An aggregate left INGESTING (crash after claiming) becomes READY on the next build."""
    q = queue(tmp_path)
    q.offer(offer(i) for i in range(8))
    with q._tx() as db:  # claim only, as if the process died before hashing
        q._plan_into(db, 1e12)
    assert [a.state for a in q.aggregates()] == [AggregateState.INGESTING]

    (rec,) = AggregateQueue(tmp_path / "q.db", constraints=q.constraints).build()

    assert rec.state is AggregateState.READY


@attrs.frozen
class BadPiece:
    """Duck-typed piece with no validation of its own."""

    root: bytes
    padded_size: int


def test_malformed_offer(tmp_path: Path) -> None:
    """A piece of an impossible size is refused before anything is written."""
    q = queue(tmp_path)
    with pytest.raises(AggregateError, match="malformed"):
        q.offer([Offer(BadPiece(b"\0" * 32, 1000))])
    assert q.buffered() == []


def _worker(path: str, start: int, n: int, rounds: int) -> None:
    q = AggregateQueue(
        path, constraints=PackingConstraints(deal_size=DEAL, max_age=0.0)
    )
    for r in range(rounds):
        # Overlapping ranges: every piece is offered by two workers.
        q.offer(offer(i) for i in range(start + r * n, start + (r + 1) * n))
        q.build()
    q.close()


def test_concurrent_threads_never_double_assign(tmp_path: Path) -> None:
    """Threads offering overlapping pieces and building at once: each piece in at most one live aggregate."""
    path = tmp_path / "q.db"
    AggregateQueue(path).close()
    threads = [
        threading.Thread(target=_worker, args=(str(path), (k % 2) * 4, 8, 6))
        for k in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert max(live_membership(path).values()) == 1
    q = AggregateQueue(path, constraints=PackingConstraints(deal_size=DEAL))
    total = len(q.buffered()) + sum(a.pieces for a in q.aggregates())
    assert total == 52  # pieces 0..51, each once


def test_concurrent_processes_never_double_assign(tmp_path: Path) -> None:
    """Processes offering overlapping pieces and building at once: same guarantee."""
    path = tmp_path / "q.db"
    AggregateQueue(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(str(path), (k % 2) * 4, 8, 5))
        for k in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0

    assert max(live_membership(path).values()) == 1
