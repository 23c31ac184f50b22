"""Filecoin backfill: scan a bucket or take migration ledgers, aggregate, prove (local and S3)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from recipes_data import CountingStore, car_link, corrupt, fill, legacy_dataset

from carmigrate.aggregate import AggregateQueue, InclusionProof, PackingConstraints
from carmigrate.commp import PieceInfo, commp
from carmigrate.errors import AggregateError, PlanError
from carmigrate.migrate import MemberState, Verdict
from carmigrate.recipes import backfill_filecoin, migrate_w3up_legacy, work_ledger
from carmigrate.storage import LocalStore


def _queue(tmp_path: Path, **kw) -> AggregateQueue:
    rules = PackingConstraints(deal_size=1 << 24, max_age=0, **kw)
    return AggregateQueue(tmp_path / "aggregates.db", constraints=rules)


def _cars(work: Path) -> dict[str, tuple]:
    """Each CAR of a backfill by key: (verdict, reasons, data)."""
    with work_ledger(work) as ledger:
        return {
            u.unit.data["key"]: (u.verdict, u.reasons, u.unit.data)
            for u in ledger.units(kind="car")
        }


def _by_link(work: Path, link) -> dict:
    """The data of the (first) CAR with this CAR CID."""
    return next(d for _, _, d in _cars(work).values() if d.get("link") == str(link))


def _verify(queue: AggregateQueue, car: dict) -> None:
    """Check a CAR's recorded inclusion proof against the queue's record of its aggregate."""
    if not car.get("proof"):
        raise AggregateError(f"{car['key']}: no inclusion proof")
    agg = queue.get(car["aggregate"])
    assert (agg.piece_cid, agg.deal_size) == (car["aggregate_cid"], car["deal_size"])
    piece = PieceInfo.from_cid(car["piece_cid_v2"])
    at = PieceInfo.from_cid(agg.piece_cid, agg.deal_size)
    InclusionProof.from_json(car["proof"]).verify(
        piece.root, piece.padded_size, at.root, at.padded_size
    )


def test_bucket_scan_backfill_rerun_and_fix(backend, tmp_path) -> None:
    """Every CAR of a bucket is read once (blocks and commP), offered, aggregated and
    proven; a corrupt one fails with its reason and is retried once fixed."""
    cars = legacy_dataset().cars()
    links = sorted(cars)
    bucket = CountingStore(backend.store("carpark"))
    objects = {f"{link}/{link}.car": cars[link] for link in links[:6]}
    objects |= {
        f"legacy/plain-name-{i}.CAR": cars[link] for i, link in enumerate(links[6:9])
    }
    bad = links[9]
    objects[f"{bad}/{bad}.car"] = corrupt(cars[bad])
    objects["index.html"] = b"<html>not a CAR</html>"
    fill(bucket, objects)
    queue = _queue(tmp_path)
    work = tmp_path / "backfill"

    first = backfill_filecoin(
        queue, work, bucket=bucket, url_template="https://cars.example/{key}"
    )

    assert first.planned == 10
    assert first.outputs["offered"] == 9
    assert first.failed == 1
    assert not first.complete
    assert len(first.outputs["manifests"]) == len(first.outputs["aggregates"]) >= 1
    assert set(bucket.reads.values()) <= {
        1,
        2,
    }  # one full read, plus the engine's digest read
    entries = _cars(work)
    assert set(entries) == set(objects) - {"index.html"}
    for key, (verdict, reasons, e) in entries.items():
        if key.startswith(str(bad)):
            assert verdict is Verdict.FAILED
            reason = "; ".join(reasons)
            assert re.search(
                "not the bytes its CAR CID names|CAR check failed", reason
            ), reason
            assert "offered" not in e
            with pytest.raises(AggregateError, match="no inclusion proof"):
                _verify(queue, e)
            continue
        assert verdict is Verdict.COMPLETE
        assert e["link"] == str(car_link(objects[key]))
        assert e["piece_cid"] == str(commp(objects[key]).cid_v1)
        assert e["queue_status"] == "aggregated"
        _verify(queue, e)
    assert _by_link(work, links[0])["key"] == f"{links[0]}/{links[0]}.car"
    verdicts = [v for v, _, _ in entries.values()]
    assert sorted(v.value for v in verdicts) == ["complete"] * 9 + ["failed"]
    assert sum(1 for _, _, e in entries.values() if e.get("offered")) == 9
    manifest = json.loads(Path(first.outputs["manifests"][0]).read_text())
    assert {p["url"] for p in manifest["pieces"]} <= {
        f"https://cars.example/{k}" for k in objects
    }

    bucket.reset()
    again = backfill_filecoin(queue, work, bucket=bucket)
    assert again.planned == 1  # only the failed one is read again
    assert again.outputs["offered"] == 0
    bucket.write(f"{bad}/{bad}.car", cars[bad])
    bucket.reset()
    fixed = backfill_filecoin(queue, work, bucket=bucket)
    assert fixed.planned == 1
    assert fixed.outputs["offered"] == 1
    assert fixed.failed == 0
    assert fixed.complete
    assert set(bucket.reads) == {f"{bad}/{bad}.car"}
    entry = _by_link(work, bad)
    assert entry["queue_status"] == "aggregated"
    _verify(queue, entry)
    queue.close()


def test_ledgers_without_commp_are_scanned_at_their_destination(tmp_path) -> None:
    """A migration that did not compute commP: its verified CARs are read once more, at the destination."""
    ds = legacy_dataset()
    a, b, d = (LocalStore(tmp_path / n, fsync=False) for n in ("a", "b", "d"))
    fill(a, ds.bucket_a)
    fill(b, ds.bucket_b)
    fill(d, ds.destination)
    migrate_w3up_legacy(ds.listing, [a, b], d, tmp_path / "w3up")
    with work_ledger(tmp_path / "w3up") as ledger:
        ledgers = [p.ledger for r in ledger.rounds() for p in r.plans]
        verified = list(ledger.members(state=MemberState.VERIFIED))
        assert {m.record.car_check for m in verified} == {"verified"}
    queue = _queue(tmp_path, isolate_tenants=True)
    counted = CountingStore(d)

    dry = backfill_filecoin(queue, tmp_path / "bf", ledgers=ledgers, dry_run=True)
    assert dry.planned == len(verified)
    assert not dry.runs
    assert not (tmp_path / "bf").exists()
    result = backfill_filecoin(
        queue, tmp_path / "bf", ledgers=ledgers, stores=[counted]
    )

    assert result.outputs["from_ledgers"] == 0
    assert result.planned == len(verified)
    assert result.outputs["skipped"] == 1  # the corrupt shard's failed item
    assert set(counted.reads) == {m.key for m in verified}
    entries = [e for _, _, e in _cars(tmp_path / "bf").values()]
    assert {e["queue_status"] for e in entries} == {"aggregated"}
    for e in entries:
        _verify(queue, e)
    # tenants were kept apart: no aggregate mixes two cohorts' pieces
    tenants: dict[str, set] = {}
    for e in entries:
        tenants.setdefault(e["aggregate"], set()).add(e["tenant"])
    assert all(len(t) == 1 for t in tenants.values())
    assert len(result.outputs["aggregates"]) >= 3
    again = backfill_filecoin(queue, tmp_path / "bf", ledgers=ledgers, stores=[counted])
    assert again.planned == 0
    assert again.outputs["offered"] == 0
    assert again.round is None
    with pytest.raises(PlanError, match="ledgers, a bucket"):
        backfill_filecoin(queue, tmp_path / "bf")
    queue.close()
