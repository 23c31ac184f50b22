"""web3.storage legacy → w3up, end to end on a generated dataset (local and moto S3)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from recipes_data import car_link, dest_key, fill

from carmigrate.aggregate import AggregateQueue, InclusionProof, PackingConstraints
from carmigrate.cid import CID
from carmigrate.commp import PieceInfo, commp
from carmigrate.migrate import ItemState, Ledger, Verdict
from carmigrate.recipes import (
    Shard,
    UploadRecords,
    backfill_filecoin,
    export_name,
    migrate_w3up_legacy,
    read_space_export,
    work_ledger,
    write_space_export,
)


def _expected_writes(legacy) -> set[str]:
    """Every shard a legacy bucket holds intact and the destination does not."""
    ds = legacy.ds
    intact = {car_link(v) for v in [*ds.bucket_a.values(), *ds.bucket_b.values()]}
    in_dest = {car_link(v) for v in ds.destination.values()}
    wanted = {car_link(c) for u in ds.uploads for c in u.cars}
    return {dest_key(link) for link in (wanted & intact) - in_dest}


def _records(work) -> list[dict]:
    """The lines of records.jsonl."""
    text = (work / "records.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines()]


def _check_exports(legacy) -> None:
    """Each tenant's space export reads back to its records and re-exports to the same bytes."""
    by_tenant: dict[str | None, list[UploadRecords]] = {}
    for r in _records(legacy.work):
        shards = tuple(
            Shard(CID.decode(s["link"]), size=s["size"]) for s in r["shards"]
        )
        rec = UploadRecords(CID.decode(r["root"]), shards, r["name"], r["created"])
        by_tenant.setdefault(r["tenant"], []).append(rec)
    with work_ledger(legacy.work) as ledger:
        done = ledger.units(kind="upload", verdict=Verdict.COMPLETE)
        assert set(by_tenant) == {u.unit.owner for u in done}
    for tenant, expected in by_tenant.items():
        data = (legacy.work / "exports" / export_name(tenant)).read_bytes()
        records = read_space_export(io.BytesIO(data))
        again = io.BytesIO()
        write_space_export(records, again)

        assert again.getvalue() == data
        assert sorted(records, key=lambda r: str(r.root)) == sorted(
            expected, key=lambda r: str(r.root)
        )


def _unit_name(u) -> str:
    return f"upload:{u.tenant}/{u.root}" if u.tenant else f"upload:{u.root}"


def _check_proof(queue: AggregateQueue, car: dict) -> None:
    """A CAR's inclusion proof, as its unit records it, holds for the queue's aggregate."""
    agg = queue.get(car["aggregate"])
    assert (agg.piece_cid, agg.deal_size) == (car["aggregate_cid"], car["deal_size"])
    piece = PieceInfo.from_cid(car["piece_cid_v2"])
    at = PieceInfo.from_cid(car["aggregate_cid"], car["deal_size"])
    proof = InclusionProof.from_json(car["proof"])
    proof.verify(piece.root, piece.padded_size, at.root, at.padded_size)
    assert proof.subtree.index * piece.padded_size == car["offset"]


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
    assert first.finished
    assert not first.complete  # some uploads failed
    assert sum(first.units.values()) == len(ds.uploads)
    assert first.units["complete"] == len(ds.good())
    # no CAR copied twice, and exactly the missing ones copied
    assert set(legacy.dest.writes) == _expected_writes(legacy)
    assert set(legacy.dest.writes.values()) == {1}
    assert (
        first.outputs["shards_in_place"] == 2
    )  # in the destination: read, not written
    assert first.outputs["shards_copied"] == len(_expected_writes(legacy))
    records = {(r["tenant"], r["root"]): r for r in _records(legacy.work)}
    with work_ledger(legacy.work) as ledger:
        for u in ds.good():
            out = ledger.unit(_unit_name(u))
            rec = records[u.tenant, str(u.root)]
            assert out.verdict is Verdict.COMPLETE
            assert [s["link"] for s in rec["shards"]] == [
                str(car_link(c)) for c in u.cars
            ]
            assert [s["size"] for s in rec["shards"]] == [len(c) for c in u.cars]
            assert rec["name"] == u.name
        for u in ds.bad():
            out = ledger.unit(_unit_name(u))
            assert out.verdict is Verdict.FAILED
            assert re.search(u.expect, "; ".join(out.reasons)), out.reasons
            assert (u.tenant, str(u.root)) not in records
        # the corrupt shard is not in the destination
        corrupt = ledger.unit(_unit_name(ds.uploads[4]))
        assert corrupt.unit.members[0] == dest_key(corrupt.unit.data["shards"][0])
        assert corrupt.unit.members[0] not in set(legacy.dest.writes)
    _check_exports(legacy)
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
    assert second.planned == 1  # the corrupt one (the missing one is still missing)
    assert second.missing == 1
    assert not legacy.dest.writes
    assert second.units["complete"] == first.units["complete"]

    # fix the missing and the corrupt shard: the re-run copies exactly those two
    fill(legacy.a, ds.fixes_a)
    legacy.dest.reset()
    third = migrate_w3up_legacy(
        ds.listing, buckets, legacy.dest, legacy.work, commp=True
    )
    fixed = {dest_key(car_link(v)) for v in ds.fixes_a.values()}
    assert dict(legacy.dest.writes) == dict.fromkeys(fixed, 1)
    assert third.failed == 1  # only the upload whose root is in none of its shards
    assert third.units["complete"] == len(ds.good()) + 2
    _check_exports(legacy)
    with work_ledger(legacy.work) as ledger:
        ledgers = [p.ledger for r in ledger.rounds() for p in r.plans]
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
    outputs = backfill.outputs
    assert outputs["from_ledgers"] == len(cars)
    assert backfill.planned == 0
    assert not legacy.dest.reads
    assert outputs["offered"] == len(cars)
    assert len(outputs["manifests"]) == len(outputs["aggregates"]) >= 1
    assert backfill.complete
    with work_ledger(legacy.work.parent / "backfill") as bl:
        entries = [u.unit.data for u in bl.units(kind="car")]
        assert {CID.decode(e["link"]) for e in entries} == set(cars)
        for e in entries:
            info = commp(cars[CID.decode(e["link"])])
            assert e["piece_cid"] == str(info.cid_v1)
            assert e["queue_status"] == "aggregated"
            assert e["aggregate"] in outputs["aggregates"]
            _check_proof(queue, e)
    manifest = json.loads(Path(outputs["manifests"][0]).read_text())
    assert {p["link"] for p in manifest["pieces"]} <= {str(link) for link in cars}
    queue.close()
