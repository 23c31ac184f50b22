"""Filecoin backfill: CARs stored before the pipeline existed → PieceCIDs → aggregates.

[backfill_filecoin][carmigrate.recipes.backfill_filecoin] takes CARs from
two kinds of input, in one call or several:

- **migration ledgers** (``ledgers=``): every item a migration run ended
  ``VERIFIED`` with every CAR block checked. When the run's verification
  policy included ``commp``, its ledger already holds the PieceCID computed
  in the same read as the copy and its checks: nothing is read again.
  Items without a PieceCID are scanned at their destination;
- **a bucket** (``bucket=``): every object whose key matches ``car_pattern``.

Scanning is an engine plan too: an *in-place* plan (source and destination
are the same store, every item ``VERIFY``), run by
[execute][carmigrate.migrate.execute] with the policy ``size`` + ``sha256``
+ ``md5`` + ``car`` + ``commp``, so a CAR's PieceCID is computed in the same
read that checks each of its blocks (the engine also reads each object's
SHA-256 once more to compare the two sides, which here are one object).
Scans run in rounds with ledgers under ``rounds/`` of the work folder, and
are resumed like any plan.

Every verified CAR is then offered to the
[AggregateQueue][carmigrate.aggregate.AggregateQueue] (its constraints
and packing policy decide), the queue builds what it can, and a deal
manifest is written for each aggregate built (``manifests/<aggregate
PieceCID>.json``). The journal (``backfill.db``) keeps, per CAR, its CAR
CID and PieceCID; [BackfillJournal][carmigrate.recipes.BackfillJournal]
joins it with the queue: CAR CID → PieceCID → aggregate → inclusion proof.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.aggregate import (
    AggregateQueue,
    AggregateRecord,
    AggregateState,
    InclusionProof,
    Offer,
)
from carmigrate.cid import CID, Multihash
from carmigrate.commp import PieceInfo
from carmigrate.errors import AggregateError, FormatError, PlanError
from carmigrate.migrate import (
    Action,
    Check,
    ItemState,
    Ledger,
    Limits,
    Plan,
    PlanItem,
    PlanSummary,
    RunResult,
    Stage,
    VerificationPolicy,
    load_plan,
    redact_url,
    save_plan,
)
from carmigrate.recipes._rounds import (
    RecipeJournal,
    RoundPlan,
    atomic_write,
    failure_reason,
    plan_paths,
    run_round,
    stores_by_url,
)
from carmigrate.recipes._w3up_records import CAR_CODEC, car_cid_from_key
from carmigrate.storage import Store, open_store

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator, Mapping, Sequence
    from concurrent.futures import Executor

    from carmigrate.aggregate import Aggregate
    from carmigrate.migrate import Reporter

__all__ = [
    "BackfillEntry",
    "BackfillJournal",
    "BackfillResult",
    "backfill_filecoin",
]

_STAGE: Final = "all"
_OFFER_BATCH: Final = 500
_LIVE: Final = (
    AggregateState.READY,
    AggregateState.DEAL_PENDING,
    AggregateState.DEAL_PROCESSED,
)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS car (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    key TEXT NOT NULL,
    link TEXT,
    size INTEGER NOT NULL,
    md5 TEXT,
    sha256 TEXT,
    piece_cid TEXT,
    piece_cid_v2 TEXT,
    padded_size INTEGER,
    tenant TEXT,
    via TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    round INTEGER,
    updated REAL,
    UNIQUE (origin, key)
);
CREATE INDEX IF NOT EXISTS car_link ON car(link);
CREATE INDEX IF NOT EXISTS car_status ON car(status);
CREATE TABLE IF NOT EXISTS manifest (
    aggregate_id TEXT PRIMARY KEY,
    aggregate_cid TEXT NOT NULL,
    path TEXT NOT NULL,
    written REAL NOT NULL
);
"""


# ----------------------------------------------------------------------
# values


@attrs.frozen(kw_only=True)
class BackfillEntry:
    """One CAR of the backfill: CAR CID → PieceCID → aggregate → inclusion proof.

    Attributes:
        link: The CAR CID (``None`` only for a CAR whose scan failed before
            its bytes were hashed).
        origin: URL of the store that holds it.
        key: Its key there.
        size: Its size in bytes.
        status: ``"failed"`` (not verified; see ``reason``), ``"scan"``
            (to be scanned by the next call), ``"scanning"`` (in a scan
            round not finished yet), ``"ready"`` (PieceCID known, not
            offered yet), ``"buffered"`` (offered, waiting for an
            aggregate), ``"aggregated"`` (in an aggregate) or ``"dropped"``
            (the queue dropped it; see ``reason``).
        reason: Why it failed or was dropped.
        piece_cid: Its PieceCID v1.
        piece_cid_v2: Its PieceCID v2.
        padded_size: Its padded piece size.
        aggregate_id: The queue's id of its aggregate.
        aggregate_cid: The aggregate's PieceCID v1, once built.
        aggregate_state: The aggregate's lifecycle state.
        deal_size: The aggregate's padded deal size.
        offset: The piece's padded offset in the aggregate.
        proof: Its inclusion proof, once the aggregate is built.
    """

    link: CID | None
    origin: str
    key: str
    size: int
    status: str
    reason: str | None = None
    piece_cid: str | None = None
    piece_cid_v2: str | None = None
    padded_size: int | None = None
    aggregate_id: str | None = None
    aggregate_cid: str | None = None
    aggregate_state: AggregateState | None = None
    deal_size: int | None = None
    offset: int | None = None
    proof: InclusionProof | None = None

    def verify_proof(self) -> None:
        """Check the inclusion proof against the aggregate's PieceCID and deal size.

        Raises:
            AggregateError: There is no proof yet, or it does not lead to
                exactly this aggregate.
        """
        if (
            self.proof is None
            or self.piece_cid_v2 is None
            or self.aggregate_cid is None
            or self.deal_size is None
        ):
            msg = f"{self.link or self.key}: no inclusion proof yet ({self.status})"
            raise AggregateError(msg)
        piece = PieceInfo.from_cid(self.piece_cid_v2)
        aggregate = PieceInfo.from_cid(self.aggregate_cid, self.deal_size)
        self.proof.verify(
            piece.root, piece.padded_size, aggregate.root, aggregate.padded_size
        )

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON-ready data (the proof as ``InclusionProof.to_json``)."""
        return {
            "link": None if self.link is None else str(self.link),
            "origin": self.origin,
            "key": self.key,
            "size": self.size,
            "status": self.status,
            "reason": self.reason,
            "piece_cid": self.piece_cid,
            "piece_cid_v2": self.piece_cid_v2,
            "padded_size": self.padded_size,
            "aggregate": None
            if self.aggregate_id is None
            else {
                "id": self.aggregate_id,
                "piece_cid": self.aggregate_cid,
                "state": None
                if self.aggregate_state is None
                else self.aggregate_state.value,
                "deal_size": self.deal_size,
            },
            "offset": self.offset,
            "proof": None if self.proof is None else self.proof.to_json(),
        }


@attrs.frozen(kw_only=True)
class BackfillResult:
    """What one call of [backfill_filecoin][carmigrate.recipes.backfill_filecoin] did (or, dry, would do).

    Attributes:
        dry_run: Nothing was executed, offered or written.
        round: The scan round this call planned or resumed, if any.
        resumed: The scan round was left open by an earlier call.
        plans: Summaries of the scan plans.
        runs: The engine runs of the scans.
        complete: Every scan plan ran to the end.
        from_ledgers: CARs whose PieceCID came from a migration ledger
            (no read).
        scanned: CARs scanned (read, verified and hashed) in this call.
        offered: CARs offered to the queue in this call.
        duplicates: Of those, pieces the queue already knew.
        failed: CARs that failed in this call (not verified, or refused by
            the queue).
        skipped: Ledger items that are not verified CARs (left out).
        aggregates: Aggregates the queue built in this call.
        manifests: Paths of the deal manifests written.
    """

    dry_run: bool
    round: int | None
    resumed: bool
    plans: tuple[PlanSummary, ...]
    runs: tuple[RunResult, ...]
    complete: bool
    from_ledgers: int
    scanned: int
    offered: int
    duplicates: int
    failed: int
    skipped: int
    aggregates: tuple[AggregateRecord, ...]
    manifests: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {
            "dry_run": self.dry_run,
            "round": self.round,
            "resumed": self.resumed,
            "complete": self.complete,
            "plans": [
                {
                    "plan_id": p.plan_id,
                    "store": p.source,
                    "items": p.items,
                    "bytes": p.bytes,
                }
                for p in self.plans
            ],
            "runs": [
                {
                    "run": r.run,
                    "stop_reason": r.stop_reason,
                    "items": r.items,
                    "failures": r.failures,
                    "seconds": r.seconds,
                }
                for r in self.runs
            ],
            "from_ledgers": self.from_ledgers,
            "scanned": self.scanned,
            "offered": self.offered,
            "duplicates": self.duplicates,
            "failed": self.failed,
            "skipped": self.skipped,
            "aggregates": [
                {
                    "id": a.aggregate_id,
                    "piece_cid": a.piece_cid,
                    "piece_cid_v2": a.piece_cid_v2,
                    "deal_size": a.deal_size,
                    "pieces": a.pieces,
                    "payload": a.payload,
                    "reason": a.reason,
                }
                for a in self.aggregates
            ],
            "manifests": list(self.manifests),
        }

    def to_markdown(self) -> str:
        """A short report for people."""
        what = "Dry run" if self.dry_run else "Backfill"
        lines = [
            f"{what}: {self.from_ledgers} PieceCIDs from ledgers, {self.scanned} CARs "
            f"scanned, {self.offered} offered ({self.duplicates} already queued), "
            f"{self.failed} failed, {self.skipped} ledger items skipped.",
        ]
        if self.plans:
            lines += ["", "| scan plan | store | CARs | bytes |", "|---|---|---:|---:|"]
            lines += [
                f"| `{p.plan_id[-12:]}` | {p.source} | {p.items} | {p.bytes} |"
                for p in self.plans
            ]
        if self.aggregates:
            lines += [
                "",
                "| aggregate | deal size | pieces | payload | manifest |",
                "|---|---:|---:|---:|---|",
            ]
            lines += [
                f"| {a.piece_cid} | {a.deal_size} | {a.pieces} | {a.payload} | {m} |"
                for a, m in zip(self.aggregates, self.manifests, strict=True)
            ]
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------
# the journal


def _car_cid(sha256: str) -> CID:
    return CID.create(1, CAR_CODEC, Multihash(0x12, bytes.fromhex(sha256)))


class BackfillJournal:
    """The backfill's journal joined with the queue: every CAR's way into a deal.

    Read-only. State: one SQLite connection and a cache of the aggregates
    rebuilt for proofs.

    Args:
        work_dir: The backfill's work folder.
        queue: The aggregate queue it offered to.

    Raises:
        PlanError: There is no backfill journal in ``work_dir``.
    """

    def __init__(self, work_dir: str | os.PathLike[str], queue: AggregateQueue) -> None:
        path = Path(work_dir) / "backfill.db"
        if not path.exists():
            msg = f"no Filecoin backfill journal in {os.fspath(work_dir)!r}"
            raise PlanError(msg)
        self._j = RecipeJournal(path, _SCHEMA, readonly=True)
        self._queue = queue
        self._aggs: dict[
            str, tuple[AggregateRecord, Aggregate | None, dict[str, tuple[int, int]]]
        ] = {}

    @classmethod
    def _over(cls, journal: RecipeJournal, queue: AggregateQueue) -> BackfillJournal:
        self = cls.__new__(cls)
        self._j = journal
        self._queue = queue
        self._aggs = {}
        return self

    def close(self) -> None:
        """Close the connection. Idempotent."""
        self._j.close()

    def __enter__(self) -> BackfillJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    _COLS: Final = (
        "link, origin, key, size, status, reason, piece_cid, piece_cid_v2, padded_size"
    )

    def _aggregate(
        self, agg_id: str
    ) -> tuple[AggregateRecord, Aggregate | None, dict[str, tuple[int, int]]]:
        found = self._aggs.get(agg_id)
        if found is None:
            rec = self._queue.get(agg_id)
            tree = self._queue.aggregate(agg_id) if rec.state in _LIVE else None
            members = {p.key: (pos, off) for pos, off, p in self._queue.members(agg_id)}
            found = self._aggs[agg_id] = (rec, tree, members)
        return found

    def _entry(self, row: Sequence[Any]) -> BackfillEntry:
        link, origin, key, size, status, reason, v1, v2, padded = row
        entry = BackfillEntry(
            link=None if link is None else CID.decode(link),
            origin=origin,
            key=key,
            size=size,
            status=status,
            reason=reason,
            piece_cid=v1,
            piece_cid_v2=v2,
            padded_size=padded,
        )
        if status != "offered" or v2 is None:
            return entry
        piece = PieceInfo.from_cid(v2)
        rec = self._queue.find(piece)
        if rec is None:
            return attrs.evolve(entry, status="ready")
        entry = attrs.evolve(
            entry,
            status=rec.status.lower(),
            reason=rec.drop_reason,
            aggregate_id=rec.aggregate_id,
        )
        if rec.aggregate_id is None:
            return entry
        agg, tree, members = self._aggregate(rec.aggregate_id)
        position, offset = members.get(rec.key, (None, None))
        return attrs.evolve(
            entry,
            aggregate_cid=agg.piece_cid,
            aggregate_state=agg.state,
            deal_size=agg.deal_size,
            offset=offset,
            proof=None if tree is None or position is None else tree.proof(position),
        )

    def entries(self, *, status: str | None = None) -> Iterator[BackfillEntry]:
        """Every CAR of the backfill, in the order it was found (filtered by its final ``status``)."""
        rows = self._j.db.execute(
            f"SELECT {self._COLS} FROM car ORDER BY id"  # noqa: S608 - constant columns
        ).fetchall()
        for row in rows:
            entry = self._entry(row)
            if status is None or entry.status == status:
                yield entry

    def lookup(self, link: CID | str) -> BackfillEntry | None:
        """The entry of a CAR CID (its first, if several stores hold the CAR)."""
        row = self._j.db.execute(
            f"SELECT {self._COLS} FROM car WHERE link = ? ORDER BY id LIMIT 1",  # noqa: S608 - constant columns
            (str(CID.decode(str(link))),),
        ).fetchone()
        return None if row is None else self._entry(row)

    def counts(self) -> dict[str, int]:
        """CARs per journal status (``scan``, ``scanning``, ``ready``, ``offered``, ``failed``)."""
        return {
            str(s): int(n)
            for s, n in self._j.db.execute(
                "SELECT status, COUNT(*) FROM car GROUP BY status"
            )
        }


# ----------------------------------------------------------------------
# the run


def _scan_policy() -> VerificationPolicy:
    return VerificationPolicy(
        checks=[Check.SIZE, Check.SHA256, Check.MD5, Check.CAR, Check.COMMP],
        car_pattern="^",
        key_cids=True,
    )


def _upsert(
    db: sqlite3.Connection,
    *,
    origin: str,
    key: str,
    size: int,
    via: str,
    status: str,
    tenant: str | None = None,
    link: str | None = None,
    **fields: Any,
) -> bool:
    """Add or refresh a CAR row unless it is ready, offered or being scanned; True if changed."""
    row = db.execute(
        "SELECT status FROM car WHERE origin = ? AND key = ?", (origin, key)
    ).fetchone()
    if row is not None and row[0] in ("ready", "offered", "scanning"):
        return False
    cols = {
        "link": link,
        "size": size,
        "via": via,
        "status": status,
        "tenant": tenant,
        "reason": None,
        "md5": None,
        "sha256": None,
        "piece_cid": None,
        "piece_cid_v2": None,
        "padded_size": None,
        "round": None,
        "updated": time.time(),
        **fields,
    }
    if row is None:
        names = ["origin", "key", *cols]
        db.execute(
            f"INSERT INTO car ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",  # noqa: S608 - constant columns
            [origin, key, *cols.values()],
        )
    else:
        db.execute(
            f"UPDATE car SET {', '.join(f'{c} = ?' for c in cols)} WHERE origin = ? AND key = ?",  # noqa: S608 - constant columns
            [*cols.values(), origin, key],
        )
    return True


def _from_ledgers(
    db: sqlite3.Connection, ledgers: Sequence[str], tenant_from_cohort: bool
) -> tuple[int, int]:
    """Take PieceCIDs (or CARs to scan) from migration ledgers; (ready, skipped)."""
    ready = skipped = 0
    for path in ledgers:
        with Ledger(path, readonly=True) as ledger:
            header = ledger.header
            policy = header.verification
            origin = header.destination
            via = f"ledger:{os.path.abspath(path)}"
            for rec in ledger.items():
                item = rec.item
                if (
                    rec.state is not ItemState.VERIFIED
                    or item.source_key is None
                    or not policy.is_car(item.source_key)
                ):
                    skipped += 1
                    continue
                tenant = (item.cohort or None) if tenant_from_cohort else None
                common: dict[str, Any] = {
                    "origin": origin,
                    "key": item.destination_key,
                    "size": item.size,
                    "via": via,
                    "tenant": tenant,
                }
                if rec.car_check != "verified" or rec.sha256 is None:
                    skipped += 1
                    continue
                link = str(_car_cid(rec.sha256))
                if rec.piece_cid_v2 is not None:
                    piece = PieceInfo.from_cid(rec.piece_cid_v2)
                    if _upsert(
                        db,
                        **common,
                        status="ready",
                        link=link,
                        md5=rec.md5,
                        sha256=rec.sha256,
                        piece_cid=rec.piece_cid or str(piece.cid_v1),
                        piece_cid_v2=rec.piece_cid_v2,
                        padded_size=int(piece.padded_size),
                    ):
                        ready += 1
                else:
                    _upsert(db, **common, status="scan", link=link, sha256=rec.sha256)
    return ready, skipped


def _from_bucket(
    db: sqlite3.Connection, store: Store, prefix: str, pattern: str
) -> None:
    regex = re.compile(pattern)
    origin = redact_url(store.url)
    for info in store.list(prefix):
        if regex.search(info.key) is None:
            continue
        try:
            cid = car_cid_from_key(info.key)
        except FormatError:
            link = sha = None
        else:
            link = str(cid)
            sha = cid.digest.hex() if cid.hash_code == 0x12 else None
        _upsert(
            db,
            origin=origin,
            key=info.key,
            size=info.size,
            via="scan",
            status="scan",
            link=link,
            sha256=sha,
        )


def _scan_plans(
    db: sqlite3.Connection, work: Path, n: int
) -> list[tuple[RoundPlan, Plan]]:
    rows = db.execute(
        "SELECT origin, key, size, sha256, tenant FROM car WHERE status = 'scan'"
        " ORDER BY origin, key"
    ).fetchall()
    by_origin: dict[str, list[PlanItem]] = {}
    for origin, key, size, sha, tenant in rows:
        by_origin.setdefault(origin, []).append(
            PlanItem(
                source_key=key,
                destination_key=key,
                size=size,
                action=Action.VERIFY,
                stage=_STAGE,
                cohort=tenant or "",
                digests={"sha256": sha} if sha else {},
                destination_size=size,
            )
        )
    out = []
    for k, (origin, items) in enumerate(sorted(by_origin.items())):
        plan = Plan.from_items(
            items,
            source=origin,
            destination=origin,
            stages=(Stage(_STAGE),),
            verification=_scan_policy(),
        )
        path, ledger = plan_paths(work, n, k)
        out.append((RoundPlan(n, k, plan.header.source, path, ledger), plan))
    return out


def _record_scans(j: RecipeJournal, n: int) -> None:
    now = time.time()
    with j.tx() as db:
        for rp in j.round_plans(n):
            if not os.path.exists(rp.ledger):
                continue
            with Ledger(rp.ledger, readonly=True) as ledger:
                if ledger.plan_id is None:
                    continue
                origin = ledger.header.source
                for rec in ledger.items():
                    key = rec.item.destination_key
                    if rec.state is ItemState.VERIFIED and rec.car_check == "verified":
                        if rec.piece_cid_v2 is None or rec.sha256 is None:
                            status, reason = "failed", "no PieceCID was computed"
                        else:
                            status, reason = "ready", None
                    elif rec.state in (ItemState.FAILED, ItemState.CONFLICT):
                        status, reason = "failed", failure_reason(rec)
                    elif rec.state is ItemState.VERIFIED:
                        status, reason = (
                            "failed",
                            (
                                "only partly verified: some blocks use hash functions "
                                "carmigrate cannot compute"
                                if rec.car_check == "partial"
                                else "not verified as a CAR"
                            ),
                        )
                    elif rec.state in (
                        ItemState.PENDING,
                        ItemState.WARMING,
                        ItemState.COPYING,
                        ItemState.COPIED,
                    ):
                        continue
                    else:
                        status, reason = "failed", f"ended {rec.state.value}"
                    piece = (
                        PieceInfo.from_cid(rec.piece_cid_v2)
                        if status == "ready" and rec.piece_cid_v2
                        else None
                    )
                    db.execute(
                        "UPDATE car SET status = ?, reason = ?, link = COALESCE(?, link),"
                        " md5 = ?, sha256 = COALESCE(?, sha256), piece_cid = ?,"
                        " piece_cid_v2 = ?, padded_size = ?, updated = ?"
                        " WHERE origin = ? AND key = ? AND status = 'scanning'",
                        (
                            status,
                            reason,
                            None if rec.sha256 is None else str(_car_cid(rec.sha256)),
                            rec.md5,
                            rec.sha256,
                            rec.piece_cid if piece else None,
                            rec.piece_cid_v2 if piece else None,
                            None if piece is None else int(piece.padded_size),
                            now,
                            origin,
                            key,
                        ),
                    )


def _offer(
    db: sqlite3.Connection, queue: AggregateQueue, url_template: str | None
) -> tuple[int, int, int]:
    """Offer every ready CAR; (offered, duplicates, refused)."""
    rows = db.execute(
        "SELECT id, link, key, size, md5, sha256, piece_cid_v2, tenant FROM car"
        " WHERE status = 'ready' ORDER BY id"
    ).fetchall()
    offered = dups = refused = 0
    now = time.time()

    def make(row: Sequence[Any]) -> Offer:
        _, link, key, size, md5, sha, v2, tenant = row
        url = None if url_template is None else url_template.format(link=link, key=key)
        return Offer(
            PieceInfo.from_cid(v2),
            payload_size=size,
            link=link,
            url=url,
            md5=md5,
            sha256=sha,
            tenant=tenant,
        )

    def done(batch: Sequence[Sequence[Any]]) -> None:
        db.executemany(
            "UPDATE car SET status = 'offered', updated = ? WHERE id = ?",
            [(now, r[0]) for r in batch],
        )

    for i in range(0, len(rows), _OFFER_BATCH):
        batch = rows[i : i + _OFFER_BATCH]
        try:
            result = queue.offer([make(r) for r in batch])
        except AggregateError:
            # one refused piece refuses the whole call: offer one by one
            for r in batch:
                try:
                    one = queue.offer([make(r)])
                except AggregateError as exc:
                    refused += 1
                    db.execute(
                        "UPDATE car SET status = 'failed', reason = ?, updated = ? WHERE id = ?",
                        (f"the aggregate queue refused it: {exc}", now, r[0]),
                    )
                    continue
                offered += 1
                dups += len(one.duplicates)
                done([r])
            continue
        offered += len(batch)
        dups += len(result.duplicates)
        done(batch)
    return offered, dups, refused


def backfill_filecoin(
    queue: AggregateQueue,
    work_dir: str | os.PathLike[str],
    *,
    ledgers: Sequence[str | os.PathLike[str]] = (),
    bucket: Store | str | None = None,
    prefix: str = "",
    car_pattern: str = r"(?i)\.car$",
    stores: Sequence[Store] = (),
    store_options: Mapping[str, Any] | None = None,
    url_template: str | None = None,
    tenant_from_cohort: bool = True,
    build: bool = True,
    limits: Limits | None = None,
    executor: Executor | None = None,
    reporters: Sequence[Reporter] = (),
    dry_run: bool = False,
) -> BackfillResult:
    """Compute the PieceCIDs of existing CARs, offer them, build aggregates, write manifests.

    See the module docs for the flow. Calls are incremental: a CAR already
    offered is never offered or read again, a CAR that failed is tried
    again, and a scan round a limit stopped is resumed.

    Args:
        queue: The aggregate queue (its constraints and packing policy
            decide what is built).
        work_dir: The backfill's work folder (``backfill.db``, ``rounds/``,
            ``manifests/``), created if missing.
        ledgers: Migration ledger files whose verified CARs to take.
        bucket: A store (or URL) whose CARs to scan.
        prefix: Only keys of ``bucket`` with this prefix.
        car_pattern: Regular expression a key of ``bucket`` must match.
        stores: Stores to use for scanning (by URL); others are opened
            from the URLs with ``store_options``.
        store_options: Options for stores opened from URLs.
        url_template: ``str.format`` template of the URL a storage provider
            fetches a CAR from, with fields ``link`` (CAR CID) and ``key``
            (its key); goes into the offers and the manifests.
        tenant_from_cohort: Offer ledger items with their cohort as the
            tenant (the w3up recipe's cohorts are tenants).
        build: Run the queue's packing policy after offering.
        limits: The engine's limits of the scan runs.
        executor: Where the engine runs scans (default: its thread pool).
        reporters: Engine event reporters for the scans.
        dry_run: Only count and plan the scans; nothing is run, offered or
            written.

    Returns:
        What this call did.

    Raises:
        PlanError: A ledger without a plan, or neither ``ledgers`` nor
            ``bucket`` given.
        StorageError: Listing the bucket failed (nothing was planned).
        AggregateError: The packing policy failed.
    """
    if not ledgers and bucket is None:
        msg = "give ledgers, a bucket, or both"
        raise PlanError(msg)
    work = Path(work_dir)
    options = dict(store_options or {})
    opened: list[Store] = []
    src: Store | None = None
    if bucket is not None:
        if isinstance(bucket, str):
            src = open_store(bucket, **options)
            opened.append(src)
        else:
            src = bucket
    j = RecipeJournal(work / "backfill.db", _SCHEMA, dry_run=dry_run)
    try:
        return _backfill(
            j,
            work,
            queue,
            ledgers=[os.fspath(p) for p in ledgers],
            bucket=src,
            prefix=prefix,
            car_pattern=car_pattern,
            stores=stores_by_url([*stores, *([src] if src is not None else [])]),
            store_options=options,
            url_template=url_template,
            tenant_from_cohort=tenant_from_cohort,
            build=build,
            limits=limits,
            executor=executor,
            reporters=reporters,
            dry_run=dry_run,
        )
    finally:
        j.close()
        for s in opened:
            s.close()


def _backfill(
    j: RecipeJournal,
    work: Path,
    queue: AggregateQueue,
    *,
    ledgers: Sequence[str],
    bucket: Store | None,
    prefix: str,
    car_pattern: str,
    stores: Mapping[str, Store],
    store_options: Mapping[str, Any],
    url_template: str | None,
    tenant_from_cohort: bool,
    build: bool,
    limits: Limits | None,
    executor: Executor | None,
    reporters: Sequence[Reporter],
    dry_run: bool,
) -> BackfillResult:
    with j.tx() as db:
        from_ledgers, skipped = _from_ledgers(db, ledgers, tenant_from_cohort)
        if bucket is not None:
            _from_bucket(db, bucket, prefix, car_pattern)
    n = j.open_round()
    resumed = n is not None
    loaded: dict[str, Plan] = {}
    if n is not None:
        round_plans = j.round_plans(n)
        loaded = {rp.plan: load_plan(rp.plan) for rp in round_plans}
    else:
        round_plans = []
        with j.tx() as db:
            pending = db.execute(
                "SELECT 1 FROM car WHERE status = 'scan' LIMIT 1"
            ).fetchone()
            if pending is not None:
                n = j.last_round() + 1
                made = _scan_plans(db, work, n)
                round_plans = [rp for rp, _ in made]
                for rp, plan in made:
                    if dry_run:
                        loaded[rp.plan] = plan
                    else:
                        Path(rp.plan).parent.mkdir(parents=True, exist_ok=True)
                        loaded[rp.plan] = save_plan(plan, rp.plan)
                j.add_round(db, n, round_plans)
                db.execute(
                    "UPDATE car SET status = 'scanning', round = ? WHERE status = 'scan'",
                    (n,),
                )
    summaries = tuple(loaded[rp.plan].summary() for rp in round_plans)
    scanned = sum(len(p) for p in loaded.values())
    results: list[RunResult] = []
    finished = n is None
    if dry_run:
        return BackfillResult(
            dry_run=True,
            round=n,
            resumed=resumed,
            plans=summaries,
            runs=(),
            complete=False,
            from_ledgers=from_ledgers,
            scanned=scanned,
            offered=0,
            duplicates=0,
            failed=0,
            skipped=skipped,
            aggregates=(),
            manifests=(),
        )
    failed_before = _count(j.db, "failed")
    if n is not None:
        results = run_round(
            round_plans,
            stores=stores,
            store_options=store_options,
            limits=limits,
            executor=executor,
            reporters=reporters,
            loaded=loaded,
        )
        _record_scans(j, n)
        finished = len(results) == len(round_plans) and all(r.complete for r in results)
        if finished:
            with j.tx() as db:
                # anything a finished round did not settle is a failure to retry
                db.execute(
                    "UPDATE car SET status = 'failed', reason = 'not settled by its scan'"
                    " WHERE status = 'scanning' AND round = ?",
                    (n,),
                )
                j.finish_round(db, n)
    with j.tx() as db:
        offered, dups, _ = _offer(db, queue, url_template)
    built: list[AggregateRecord] = []
    manifests: list[str] = []
    if build:
        built = queue.build()
        for agg in built:
            path = work / "manifests" / f"{agg.piece_cid}.json"
            data = queue.manifest(agg.aggregate_id)
            atomic_write(
                path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()
            )
            manifests.append(str(path))
            with j.tx() as db:
                db.execute(
                    "INSERT OR REPLACE INTO manifest (aggregate_id, aggregate_cid, path, written)"
                    " VALUES (?, ?, ?, ?)",
                    (agg.aggregate_id, agg.piece_cid, str(path), time.time()),
                )
    return BackfillResult(
        dry_run=False,
        round=n,
        resumed=resumed,
        plans=summaries,
        runs=tuple(results),
        complete=finished,
        from_ledgers=from_ledgers,
        scanned=scanned,
        offered=offered,
        duplicates=dups,
        failed=_count(j.db, "failed") - failed_before,
        skipped=skipped,
        aggregates=tuple(built),
        manifests=tuple(manifests),
    )


def _count(db: sqlite3.Connection, status: str) -> int:
    row = db.execute("SELECT COUNT(*) FROM car WHERE status = ?", (status,)).fetchone()
    return int(row[0])
