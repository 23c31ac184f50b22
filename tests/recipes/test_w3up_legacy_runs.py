"""w3up legacy recipe: dry runs, stopped rounds, per-tenant pacing, layouts, inputs."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from recipes_data import CountingStore, car_link, dest_key, fill, legacy_dataset

from carmigrate.errors import PlanError
from carmigrate.migrate import Action, Ledger, Limits, MemberState, Verdict
from carmigrate.recipes import (
    export_name,
    migrate_w3up_legacy,
    parse_legacy_uploads,
    work_ledger,
)
from carmigrate.storage import LocalStore


def _stores(tmp_path: Path):
    ds = legacy_dataset()
    a, b, d = (LocalStore(tmp_path / n, fsync=False) for n in ("a", "b", "d"))
    fill(a, ds.bucket_a)
    fill(b, ds.bucket_b)
    fill(d, ds.destination)
    return ds, a, b, CountingStore(d)


def _records(work: Path) -> list[dict]:
    """The lines of records.jsonl."""
    text = (work / "records.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines()]


def _source(ledger: Ledger, key: str) -> str | None:
    """The URL of the store a member was read from: the plan of its round whose ledger has it."""
    member = ledger.member(key)
    for rp in ledger.round(member.round).plans:
        with Ledger(rp.ledger, readonly=True) as round_ledger:
            if round_ledger.find(key) is not None:
                return rp.source
    return None


class FakeTime:
    """A clock that only moves when someone sleeps (shared by threads)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
            self.slept += seconds


def test_dry_run_plans_and_writes_nothing(tmp_path) -> None:
    """A dry run summarises the round's plans; no work ledger, no plan file, no write."""
    ds, a, b, d = _stores(tmp_path)
    work = tmp_path / "work"

    result = migrate_w3up_legacy(ds.listing, [a, b], d, work, dry_run=True)

    assert result.dry_run
    assert result.round == 1
    assert [p.source for p in result.plans] == [d.url, a.url, b.url]
    assert result.plans[0].compare_items == 2  # in place: checked, not copied
    assert sum(p.transfer_items for p in result.plans) == 9
    assert result.missing == 1
    assert not result.finished  # a dry run finishes nothing
    assert not work.exists()
    assert not d.writes
    text = result.to_markdown()
    assert "# w3up-legacy (dry run)" in text
    assert "- round: 1" in text
    data = json.loads(json.dumps(result.to_dict()))
    assert data["plans"][0]["compare_items"] == 2
    assert [p["source"] for p in data["plans"]] == [d.url, a.url, b.url]


def test_a_stopped_round_is_resumed_not_replanned(tmp_path) -> None:
    """A limit stops the round; the next run resumes its ledgers; nothing is written twice."""
    ds, a, b, d = _stores(tmp_path)
    work = tmp_path / "work"

    first = migrate_w3up_legacy(
        ds.listing, [a, b], d, work, limits=Limits(max_items=1, concurrency=1)
    )
    assert not first.finished
    assert not first.complete
    assert first.runs[-1].stop_reason == "max_items"
    assert first.units.get("incomplete", 0) > 0
    dry = migrate_w3up_legacy(ds.listing, [a, b], d, work, dry_run=True)
    assert dry.resumed
    assert dry.round == 1
    second = migrate_w3up_legacy(
        ds.listing, [a, b], d, work, limits=Limits(max_items=3)
    )
    third = migrate_w3up_legacy(ds.listing, [a, b], d, work)
    while not third.finished:  # pragma: no cover - three runs are enough here
        third = migrate_w3up_legacy(ds.listing, [a, b], d, work)

    assert {r.round for r in (first, second, third)} == {1}
    assert third.resumed
    assert third.units["complete"] == len(ds.good())
    assert set(d.writes.values()) == {1}
    assert len(d.writes) == 8  # all nine copies but the corrupt one, through d
    fourth = migrate_w3up_legacy(ds.listing, [a, b], d, work)
    assert fourth.round == 2  # a new round, for the failures only
    assert fourth.planned == 1


def test_tenant_limits_pace_a_run(tmp_path) -> None:
    """Per-tenant limits (the engine's, by cohort) apply to every plan of the round,
    on any executor; the result says how long each tenant was held back."""
    ds, a, b, d = _stores(tmp_path)

    result = migrate_w3up_legacy(
        ds.listing,
        [a, b],
        d,
        tmp_path / "work",
        limits=Limits(tenant_items_per_second=1),
    )

    assert result.units["complete"] == len(ds.good())
    waits = dict(result.tenant_waits)
    assert waits.get("alice", 0) > 0  # four shards, a burst of one


def test_custom_layout_and_bad_layouts(tmp_path) -> None:
    """Shards land at the layout's keys; a layout without {cid} is refused."""
    ds, a, b, d = _stores(tmp_path)

    result = migrate_w3up_legacy(
        ds.listing, [a, b], d, tmp_path / "work", layout="cars/{cid}.car"
    )

    # the bob upload in carpark layout is not found
    assert result.units["complete"] == len(ds.good()) - 1
    assert all(k.startswith("cars/") for k in d.writes)
    for bad in ("cars/x.car", "{cid}/{other}.car"):
        with pytest.raises(PlanError, match="layout"):
            migrate_w3up_legacy(ds.listing, [a, b], d, tmp_path / "w2", layout=bad)


def test_listing_inputs_tenants_and_duplicates(tmp_path) -> None:
    """A file path, lines or parsed uploads; an upload listed twice is one upload."""
    ds, a, b, d = _stores(tmp_path)
    path = tmp_path / "uploads.jsonl"
    first = json.loads(ds.listing[1])
    shards = first["shards"]
    split = [
        json.dumps({**first, "shards": shards[:1]}, ensure_ascii=False),
        json.dumps({**first, "shards": shards[1:]}, ensure_ascii=False),
    ]
    path.write_text("\n".join([ds.listing[0], *split, ""]), encoding="utf-8")

    result = migrate_w3up_legacy(path, [a, b], d, tmp_path / "work")

    assert sum(result.units.values()) == 2
    assert result.units["complete"] == 2
    with work_ledger(tmp_path / "work") as ledger:
        merged = ledger.unit(f"upload:alice/{first['cid']}")
        assert merged.unit.data["shards"] == shards
        assert merged.unit.members == tuple(f"{x}/{x}.car" for x in shards)
        assert ledger.unit_counts() == {Verdict.COMPLETE: 2}
    parsed = list(parse_legacy_uploads(ds.listing))
    assert {u.tenant for u in parsed} == {"alice", "bob", "carol 👩‍🔬", None}
    again = migrate_w3up_legacy(parsed[:1], [a, b], d, tmp_path / "work2")
    assert again.units == {"complete": 1}
    bad = json.dumps({"cid": first["cid"], "shards": shards, "tenant": 7})
    with pytest.raises(PlanError, match="tenant"):
        list(parse_legacy_uploads([bad]))


def test_work_ledger_views(tmp_path) -> None:
    """The work ledger answers per upload and per shard after the run."""
    ds, a, b, d = _stores(tmp_path)
    work = tmp_path / "work"
    result = migrate_w3up_legacy(ds.listing, [a, b], d, work)

    with work_ledger(work) as ledger:
        missing = list(ledger.members(state=MemberState.MISSING))
        assert [m.key for m in missing] == [dest_key(car_link(ds.uploads[3].cars[1]))]
        assert "in no legacy bucket" in missing[0].reason
        in_place = ledger.member(dest_key(car_link(ds.uploads[2].cars[1])))
        assert in_place.state is MemberState.VERIFIED
        assert in_place.record.item.action is Action.VERIFY
        assert not in_place.record.created
        assert in_place.record.car_check == "verified"
        assert _source(ledger, in_place.key) == d.url
        copied = ledger.member(dest_key(car_link(ds.uploads[0].cars[0])))
        assert copied.record.item.action is Action.COPY
        assert copied.record.created
        assert _source(ledger, copied.key) == a.url
        done = ledger.units(kind="upload", verdict=Verdict.COMPLETE)
        tenants = sorted({u.unit.owner for u in done}, key=lambda t: t or "")
        assert tenants == [None, "alice", "bob", "carol 👩‍🔬"]
        failed = ledger.unit(f"upload:bob/{ds.uploads[3].root}")
        assert failed.verdict is Verdict.FAILED
    # nothing emitted for a failed upload; one export per tenant with records
    assert str(ds.uploads[3].root) not in {r["root"] for r in _records(work)}
    assert sorted(p.name for p in (work / "exports").iterdir()) == sorted(
        export_name(t) for t in tenants
    )
    assert result.outputs["exports"] == len(tenants)
    with pytest.raises(PlanError, match="no work ledger"):
        work_ledger(tmp_path / "nowhere")


def test_an_upload_that_gains_shards_is_decided_again(tmp_path) -> None:
    """w3up's upload/add is incremental: new shards of a complete upload are
    verified (only they) and the records name them all."""
    ds, a, b, d = _stores(tmp_path)
    first = json.loads(ds.listing[0])
    one = [
        json.dumps(
            {k: v for k, v in first.items() if k != "backupUrls"}
            | {"shards": [str(car_link(ds.uploads[0].cars[0]))]}
        )
    ]
    migrate_w3up_legacy(one, [a, b], d, tmp_path / "work")
    extra = ds.uploads[7].cars[0]  # a shard of another upload, in bucket B
    grown = [
        json.dumps(
            json.loads(one[0])
            | {"shards": [*json.loads(one[0])["shards"], str(car_link(extra))]}
        )
    ]
    d.reset()

    result = migrate_w3up_legacy(grown, [a, b], d, tmp_path / "work")

    assert result.planned == 1
    assert result.outputs["shards_copied"] == 1
    assert list(d.writes) == [f"{car_link(extra)}/{car_link(extra)}.car"]
    assert result.units == {"complete": 1}
    (upload,) = _records(tmp_path / "work")
    assert [s["link"] for s in upload["shards"]] == [
        str(car_link(ds.uploads[0].cars[0])),
        str(car_link(extra)),
    ]
