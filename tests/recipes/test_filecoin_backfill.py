"""Filecoin backfill: scan a bucket or take migration ledgers, aggregate, prove (local and S3)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from recipes_data import CountingStore, car_link, corrupt, fill, legacy_dataset

from carmigrate.aggregate import AggregateQueue, PackingConstraints
from carmigrate.commp import commp
from carmigrate.errors import AggregateError, PlanError
from carmigrate.recipes import (
    BackfillJournal,
    W3upLegacyJournal,
    backfill_filecoin,
    migrate_w3up_legacy,
)
from carmigrate.storage import LocalStore


def _queue(tmp_path: Path, **kw) -> AggregateQueue:
    rules = PackingConstraints(deal_size=1 << 24, max_age=0, **kw)
    return AggregateQueue(tmp_path / "aggregates.db", constraints=rules)


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

    assert first.scanned == 10
    assert first.offered == 9
    assert first.failed == 1
    assert len(first.manifests) == len(first.aggregates) >= 1
    assert set(bucket.reads.values()) <= {
        1,
        2,
    }  # one full read, plus the engine's digest read
    with BackfillJournal(work, queue) as journal:
        entries = {e.key: e for e in journal.entries()}
        assert set(entries) == set(objects) - {"index.html"}
        for key, e in entries.items():
            if key.startswith(str(bad)):
                assert e.status == "failed"
                assert re.search(
                    "not the bytes its CAR CID names|CAR check failed", e.reason
                ), e.reason
                with pytest.raises(AggregateError, match="no inclusion proof"):
                    e.verify_proof()
                continue
            assert e.link == car_link(objects[key])
            assert e.piece_cid == str(commp(objects[key]).cid_v1)
            assert e.status == "aggregated"
            e.verify_proof()
        assert journal.lookup(links[0]).key == f"{links[0]}/{links[0]}.car"
        assert journal.counts() == {"offered": 9, "failed": 1}
    manifest = json.loads(Path(first.manifests[0]).read_text())
    assert {p["url"] for p in manifest["pieces"]} <= {
        f"https://cars.example/{k}" for k in objects
    }

    bucket.reset()
    again = backfill_filecoin(queue, work, bucket=bucket)
    assert again.scanned == 1  # only the failed one is read again
    assert again.offered == 0
    bucket.write(f"{bad}/{bad}.car", cars[bad])
    bucket.reset()
    fixed = backfill_filecoin(queue, work, bucket=bucket)
    assert fixed.scanned == 1
    assert fixed.offered == 1
    assert fixed.failed == 0
    assert set(bucket.reads) == {f"{bad}/{bad}.car"}
    with BackfillJournal(work, queue) as journal:
        entry = journal.lookup(bad)
        assert entry.status == "aggregated"
        entry.verify_proof()
    queue.close()


def test_ledgers_without_commp_are_scanned_at_their_destination(tmp_path) -> None:
    """A migration that did not compute commP: its verified CARs are read once more, at the destination."""
    ds = legacy_dataset()
    a, b, d = (LocalStore(tmp_path / n, fsync=False) for n in ("a", "b", "d"))
    fill(a, ds.bucket_a)
    fill(b, ds.bucket_b)
    fill(d, ds.destination)
    migrate_w3up_legacy(ds.listing, [a, b], d, tmp_path / "w3up")
    with W3upLegacyJournal(tmp_path / "w3up") as journal:
        ledgers = journal.ledgers()
        verified = list(journal.shards(status="verified"))
    queue = _queue(tmp_path, isolate_tenants=True)
    counted = CountingStore(d)

    dry = backfill_filecoin(queue, tmp_path / "bf", ledgers=ledgers, dry_run=True)
    assert dry.scanned == len(verified)
    assert not dry.runs
    assert not (tmp_path / "bf").exists()
    result = backfill_filecoin(
        queue, tmp_path / "bf", ledgers=ledgers, stores=[counted]
    )

    assert result.from_ledgers == 0
    assert result.scanned == len(verified)
    assert result.skipped == 1  # the corrupt shard's failed item
    assert set(counted.reads) == {s.destination_key for s in verified}
    # tenants were kept apart: no aggregate mixes two cohorts' pieces
    with BackfillJournal(tmp_path / "bf", queue) as journal:
        entries = list(journal.entries())
        assert {e.status for e in entries} == {"aggregated"}
        for e in entries:
            e.verify_proof()
    assert len(result.aggregates) >= 3
    again = backfill_filecoin(queue, tmp_path / "bf", ledgers=ledgers, stores=[counted])
    assert again.scanned == 0
    assert again.offered == 0
    assert again.round is None
    with pytest.raises(PlanError, match="ledgers, a bucket"):
        backfill_filecoin(queue, tmp_path / "bf")
    queue.close()
