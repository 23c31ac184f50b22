"""web3.storage legacy → w3up, end to end on a generated dataset (local and moto S3)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from recipes_data import car_link, dest_key, fill

from carmigrate.aggregate import AggregateQueue, PackingConstraints
from carmigrate.commp import commp
from carmigrate.migrate import ItemState, Ledger
from carmigrate.recipes import (
    BackfillJournal,
    W3upLegacyJournal,
    backfill_filecoin,
    export_name,
    migrate_w3up_legacy,
    read_space_export,
    write_space_export,
)


def _expected_writes(legacy) -> set[str]:
    """Every shard a legacy bucket holds intact and the destination does not."""
    ds = legacy.ds
    intact = {car_link(v) for v in [*ds.bucket_a.values(), *ds.bucket_b.values()]}
    in_dest = {car_link(v) for v in ds.destination.values()}
    wanted = {car_link(c) for u in ds.uploads for c in u.cars}
    return {dest_key(link) for link in (wanted & intact) - in_dest}


def _check_exports(legacy, journal: W3upLegacyJournal) -> None:
    """Each tenant's space export reads back to its records and re-exports to the same bytes."""
    for tenant in journal.tenants():
        data = (legacy.work / "exports" / export_name(tenant)).read_bytes()
        records = read_space_export(io.BytesIO(data))
        again = io.BytesIO()
        write_space_export(records, again)

        assert again.getvalue() == data
        assert sorted(records, key=lambda r: str(r.root)) == sorted(
            journal.records(tenant), key=lambda r: str(r.root)
        )


def test_end_to_end_rerun_and_backfill(legacy) -> None:
    """Records for every good upload, reasons for the broken ones, no CAR written
    twice, the export round trip; a re-run retries only the failures; the
    backfill takes the PieceCIDs from the ledgers and every proof verifies."""
    ds = legacy.ds
    buckets = [legacy.a, legacy.b]

    first = migrate_w3up_legacy(
        ds.listing, buckets, legacy.dest, legacy.work, commp=True
    )

    assert first.round == 1
    assert first.complete
    assert first.uploads == len(ds.uploads)
    assert first.uploads_complete == len(ds.good())
    # no CAR copied twice, and exactly the missing ones copied
    assert set(legacy.dest.writes) == _expected_writes(legacy)
    assert set(legacy.dest.writes.values()) == {1}
    assert first.shards_in_place == 2  # already in the destination: read, not written
    with W3upLegacyJournal(legacy.work) as journal:
        for u in ds.good():
            out = journal.upload(u.root, u.tenant)
            records = out.records()
            assert out.status == "complete"
            assert [s.link for s in records.shards] == [car_link(c) for c in u.cars]
            assert [s.size for s in records.shards] == [len(c) for c in u.cars]
            assert records.name == u.name
        for u in ds.bad():
            out = journal.upload(u.root, u.tenant)
            assert out.status == "failed"
            assert re.search(u.expect, out.reason), out.reason
        # the corrupt shard is not in the destination
        corrupt = journal.upload(ds.uploads[4].root, ds.uploads[4].tenant)
        assert dest_key(corrupt.shards[0].link) not in set(legacy.dest.writes)
        _check_exports(legacy, journal)
    # the records file: one line per good upload, legacy names carried as facts
    lines = [
        json.loads(line)
        for line in (legacy.work / "records.jsonl").read_text("utf-8").splitlines()
    ]
    assert {(r["tenant"], r["root"]) for r in lines} == {
        (u.tenant, str(u.root)) for u in ds.good()
    }
    for r in lines:
        calls = r["invocations"]
        assert [c["can"] for c in calls] == ["store/add"] * len(r["shards"]) + [
            "upload/add"
        ]
        assert calls[-1]["nb"]["shards"] == [{"/": s["link"]} for s in r["shards"]]
        assert calls[-1]["fct"][0]["name"] == r["name"]
        assert all(c["nb"]["size"] > 0 for c in calls[:-1])
    assert "Ünïcødé — 数据 📦" in {r["name"] for r in lines}

    # a re-run with nothing fixed: only the failing shard is read again
    legacy.dest.reset()
    second = migrate_w3up_legacy(
        ds.listing, buckets, legacy.dest, legacy.work, commp=True
    )
    assert second.round == 2
    assert (
        second.shards_planned == 1
    )  # the corrupt one (the missing one is still missing)
    assert second.shards_missing == 1
    assert not legacy.dest.writes
    assert second.uploads_complete == first.uploads_complete

    # fix the missing and the corrupt shard: the re-run copies exactly those two
    fill(legacy.a, ds.fixes_a)
    legacy.dest.reset()
    third = migrate_w3up_legacy(
        ds.listing, buckets, legacy.dest, legacy.work, commp=True
    )
    fixed = {dest_key(car_link(v)) for v in ds.fixes_a.values()}
    assert dict(legacy.dest.writes) == dict.fromkeys(fixed, 1)
    assert (
        third.uploads_failed == 1
    )  # only the upload whose root is in none of its shards
    assert third.uploads_complete == len(ds.good()) + 2
    with W3upLegacyJournal(legacy.work) as journal:
        _check_exports(legacy, journal)
        ledgers = journal.ledgers()
    # every shard verified, each by exactly one ledger item
    verified = {}
    for path in ledgers:
        with Ledger(path, readonly=True) as led:
            for rec in led.items(state=ItemState.VERIFIED):
                assert rec.item.destination_key not in verified
                verified[rec.item.destination_key] = rec
    cars = ds.cars()
    assert set(verified) == {dest_key(link) for link in cars}

    # the backfill: PieceCIDs from the ledgers, nothing read again
    legacy.dest.reset()
    queue = AggregateQueue(
        legacy.work.parent / "aggregates.db",
        constraints=PackingConstraints(deal_size=1 << 24, max_age=0),
    )
    backfill = backfill_filecoin(
        queue, legacy.work.parent / "backfill", ledgers=ledgers, stores=[legacy.dest]
    )
    assert backfill.from_ledgers == len(cars)
    assert backfill.scanned == 0
    assert not legacy.dest.reads
    assert backfill.offered == len(cars)
    assert len(backfill.manifests) == len(backfill.aggregates) >= 1
    with BackfillJournal(legacy.work.parent / "backfill", queue) as bj:
        entries = list(bj.entries())
        assert {e.link for e in entries} == set(cars)
        for e in entries:
            info = commp(cars[e.link])
            assert e.piece_cid == str(info.cid_v1)
            assert e.status == "aggregated"
            e.verify_proof()
    manifest = json.loads(Path(backfill.manifests[0]).read_text())
    assert {p["link"] for p in manifest["pieces"]} <= {str(link) for link in cars}
    queue.close()
