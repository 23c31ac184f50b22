"""web3.storage legacy uploads → w3up, on the migration engine.

Input: the legacy upload listing (JSON Lines, see
[parse_legacy_uploads][carmigrate.recipes.parse_legacy_uploads]), one or
more legacy buckets (any store URL), and the destination bucket (w3up's
carpark, keys ``<CAR CID>/<CAR CID>.car`` by default).

One run of [migrate_w3up_legacy][carmigrate.recipes.migrate_w3up_legacy]:

1. records the listing in the recipe's journal (``journal.db`` in the work
   folder): one row per upload (tenant, root), one per shard (CAR CID);
2. finds every shard still to do: the destination is listed first, then each
   legacy bucket in the order given; a bucket key names its CAR CID in
   either scheme (``…/<CAR CID>.car`` or ``…/<base32 multihash>.car``). A
   shard is taken from the first place that has it, so no CAR is read for
   copying twice;
3. plans one *round*: an engine plan per source, saved under
   ``rounds/NNNN/`` with its ledger:

   - plan 0, *in place*: shards already in the destination (the
     "``store/add`` succeeds at once" case) are ``VERIFY`` items whose
     source and destination are the same object: read and checked, never
     written;
   - plan ``k`` for the ``k``-th legacy bucket: the other shards it holds, as
     ``COPY`` items to ``layout.format(cid=<CAR CID>)``.

   Every item's SHA-256 is the digest its CAR CID names, and the policy is
   ``size`` + ``sha256`` + ``car`` (every block re-hashed against its CID),
   plus ``commp`` and ``md5`` with ``commp=True`` (the PieceCIDs then land
   in the ledgers, where [backfill_filecoin][carmigrate.recipes.backfill_filecoin]
   takes them without reading again). Cohorts are tenants, and tenants are
   interleaved so that the engine's order shares the run fairly;
4. executes the plans with [execute][carmigrate.migrate.execute] (a round
   a limit stopped is continued with [resume][carmigrate.migrate.resume]
   by the next run);
5. reads the ledgers: a shard is verified when its item ended ``VERIFIED``
   with every CAR block checked; an upload is complete when all its shards
   are verified and its root is a root of one of their CAR headers. Only
   complete uploads get records; a failed upload keeps the reason of each
   failed shard;
6. writes ``records.jsonl`` (one line per complete upload: its
   ``store/add`` and ``upload/add`` invocations, the legacy name as a fact)
   and one space-export CAR per tenant under ``exports/``.

A re-run with the same work folder plans only the shards of uploads that
are not complete and not already verified: the failures (fixed in the
meantime, or transient) and new uploads of the listing. Nothing verified is
read again; nothing is written twice.

Rate limits: ``limits`` are the engine's limits of every plan run, global
rates and per-tenant rates alike (``Limits.tenant_items_per_second``,
``Limits.tenant_bytes_per_second``: cohorts are tenants, so the engine holds
each tenant to its own rate, with any executor).
"""

from __future__ import annotations

import io
import json
import os
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.cid import CID
from carmigrate.errors import FormatError, ObjectNotFound, PlanError
from carmigrate.migrate import (
    Action,
    Check,
    ItemState,
    Ledger,
    Limits,
    ListingEntry,
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
from carmigrate.recipes._w3up_records import (
    CAR_CODEC,
    EXPORT_PAGE_SIZE,
    LegacyUpload,
    Shard,
    UploadRecords,
    car_cid_from_key,
    parse_legacy_uploads,
    read_space_export,
    w3up_records,
    write_space_export,
)
from carmigrate.storage import Store, open_store

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Iterator, Mapping, Sequence
    from concurrent.futures import Executor

    from carmigrate.migrate import Reporter
    from carmigrate.storage import ObjectInfo

__all__ = [
    "CAR_CODEC",
    "DEFAULT_LAYOUT",
    "EXPORT_PAGE_SIZE",
    "LegacyUpload",
    "Shard",
    "ShardOutcome",
    "UploadOutcome",
    "UploadRecords",
    "W3upLegacyJournal",
    "W3upLegacyResult",
    "car_cid_from_key",
    "export_name",
    "migrate_w3up_legacy",
    "parse_legacy_uploads",
    "read_space_export",
    "w3up_records",
    "write_space_export",
]

DEFAULT_LAYOUT: Final = "{cid}/{cid}.car"
"""Destination key of a shard: w3up's carpark layout, ``<CAR CID>/<CAR CID>.car``."""

_STAGE: Final = "all"
_STAT_AT_MOST: Final = 2000
"""Up to this many shards to find, the destination is asked key by key, not listed."""
_STAT_THREADS: Final = 16
_LISTED: Final = 20

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS upload (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    root TEXT NOT NULL,
    name TEXT NOT NULL,
    created TEXT,
    dag_size INTEGER,
    line INTEGER,
    status TEXT NOT NULL DEFAULT 'pending',
    reason TEXT,
    updated REAL,
    UNIQUE (tenant, root)
);
CREATE TABLE IF NOT EXISTS upload_shard (
    upload INTEGER NOT NULL REFERENCES upload(id),
    position INTEGER NOT NULL,
    link TEXT NOT NULL,
    PRIMARY KEY (upload, position)
);
CREATE INDEX IF NOT EXISTS upload_shard_link ON upload_shard(link);
CREATE TABLE IF NOT EXISTS shard (
    link TEXT PRIMARY KEY,
    status TEXT NOT NULL DEFAULT 'pending',
    reason TEXT,
    size INTEGER,
    sha256 TEXT,
    md5 TEXT,
    car_root TEXT,
    car_blocks INTEGER,
    piece_cid TEXT,
    piece_cid_v2 TEXT,
    source TEXT,
    source_key TEXT,
    destination_key TEXT,
    copied INTEGER NOT NULL DEFAULT 0,
    bytes_moved INTEGER NOT NULL DEFAULT 0,
    round INTEGER,
    plan INTEGER,
    updated REAL
);
CREATE INDEX IF NOT EXISTS shard_round ON shard(round, plan);
"""


# ----------------------------------------------------------------------
# values


@attrs.frozen(kw_only=True)
class ShardOutcome:
    """Where one shard (CAR) stands.

    Attributes:
        link: The CAR CID.
        status: ``"verified"`` (at the destination, size, SHA-256 and every
            block checked), ``"failed"``, ``"missing"`` (in no legacy bucket
            and not in the destination) or ``"pending"`` (not done yet).
        reason: Why it failed or is missing.
        size: Its size in bytes, once known.
        source: URL of the store it was read from (the destination itself
            for a shard verified in place).
        source_key: Its key there.
        destination_key: Its key in the destination.
        copied: This recipe wrote it to the destination (``False``: it was
            there already).
        car_root: The first root of its CAR header.
        piece_cid: PieceCID v1, if commP was computed.
        piece_cid_v2: PieceCID v2, if commP was computed.
        round: The round that last planned it.
    """

    link: CID
    status: str
    reason: str | None = None
    size: int | None = None
    source: str | None = None
    source_key: str | None = None
    destination_key: str | None = None
    copied: bool = False
    car_root: str | None = None
    piece_cid: str | None = None
    piece_cid_v2: str | None = None
    round: int | None = None


@attrs.frozen(kw_only=True)
class UploadOutcome:
    """Where one legacy upload stands.

    Attributes:
        root: The upload's root CID.
        tenant: Its tenant, if the listing named one.
        name: The legacy name.
        created: The legacy creation time.
        status: ``"complete"`` (records emitted), ``"failed"`` or
            ``"pending"``.
        reason: Why it failed: each failed or missing shard with its reason,
            or a root found in none of its shards.
        shards: Its shards, in listing order.
    """

    root: CID
    tenant: str | None
    name: str
    created: str | None
    status: str
    reason: str | None
    shards: tuple[ShardOutcome, ...]

    def records(self) -> UploadRecords:
        """The w3up records of a complete upload.

        Raises:
            PlanError: The upload is not complete (nothing is emitted for an
                upload with a missing, bad or unverified shard).
        """
        if self.status != "complete":
            msg = f"upload {self.root} is {self.status}: {self.reason or 'not done'}"
            raise PlanError(msg)
        upload = LegacyUpload(
            self.root,
            self.name,
            self.created,
            None,
            tuple(Shard(s.link) for s in self.shards),
            tenant=self.tenant,
        )
        return w3up_records(
            upload, {s.link: s.size for s in self.shards if s.size is not None}
        )


@attrs.frozen(kw_only=True)
class W3upLegacyResult:
    """What one run of [migrate_w3up_legacy][carmigrate.recipes.migrate_w3up_legacy] did (or, dry, would do).

    Counts of uploads cover the whole journal; counts of shards cover this
    run's round.

    Attributes:
        dry_run: Nothing was executed or written.
        round: The round this run planned or resumed (``None``: nothing to
            do).
        resumed: The round was left open by an earlier run and continued.
        plans: The summaries of the round's plans (in-place plan first).
        runs: The engine runs of this call, in plan order.
        complete: Whether the round finished (every plan ran to the end).
        uploads: Uploads in the journal.
        uploads_complete: Uploads with records.
        uploads_failed: Uploads that failed (see ``failures``).
        uploads_pending: Uploads not decided yet.
        shards_planned: Shards this round planned.
        shards_copied: Of those, written to the destination.
        shards_in_place: Verified where they already were in the destination.
        shards_failed: Failed in this round.
        shards_missing: Found nowhere in this round.
        bytes_copied: Bytes written to the destination in this call.
        failures: Every failed upload, with its reason.
        records_path: The records file (JSON Lines), if written.
        exports: ``(tenant, path)`` of each space-export CAR written.
        tenant_waits: Seconds each tenant's items were held back by the
            per-tenant limits.
    """

    dry_run: bool
    round: int | None
    resumed: bool
    plans: tuple[PlanSummary, ...]
    runs: tuple[RunResult, ...]
    complete: bool
    uploads: int
    uploads_complete: int
    uploads_failed: int
    uploads_pending: int
    shards_planned: int
    shards_copied: int
    shards_in_place: int
    shards_failed: int
    shards_missing: int
    bytes_copied: int
    failures: tuple[UploadOutcome, ...]
    records_path: str | None
    exports: tuple[tuple[str | None, str], ...]
    tenant_waits: tuple[tuple[str, float], ...] = ()

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
                    "source": p.source,
                    "destination": p.destination,
                    "items": p.items,
                    "bytes": p.bytes,
                    "by_action": [list(a) for a in p.by_action],
                    "transfer_items": p.transfer_items,
                    "transfer_bytes": p.transfer_bytes,
                    "compare_items": p.compare_items,
                }
                for p in self.plans
            ],
            "runs": [
                {
                    "run": r.run,
                    "stop_reason": r.stop_reason,
                    "items": r.items,
                    "bytes": r.bytes,
                    "failures": r.failures,
                    "seconds": r.seconds,
                }
                for r in self.runs
            ],
            "uploads": {
                "total": self.uploads,
                "complete": self.uploads_complete,
                "failed": self.uploads_failed,
                "pending": self.uploads_pending,
            },
            "shards": {
                "planned": self.shards_planned,
                "copied": self.shards_copied,
                "in_place": self.shards_in_place,
                "failed": self.shards_failed,
                "missing": self.shards_missing,
            },
            "bytes_copied": self.bytes_copied,
            "failures": [
                {
                    "root": str(f.root),
                    "tenant": f.tenant,
                    "name": f.name,
                    "reason": f.reason,
                }
                for f in self.failures
            ],
            "records": self.records_path,
            "exports": [{"tenant": t, "path": p} for t, p in self.exports],
            "tenant_waits": dict(self.tenant_waits),
        }

    def to_markdown(self) -> str:
        """A short report for people: the plans, the counts and the failures."""
        what = "Dry run" if self.dry_run else "Run"
        head = (
            f"{what} of round {self.round}" if self.round else f"{what}: nothing to do"
        )
        lines = [
            head + (" (resumed)" if self.resumed else "") + ".",
            "",
            f"Uploads: {self.uploads} ({self.uploads_complete} complete, "
            f"{self.uploads_failed} failed, {self.uploads_pending} pending).",
            f"Shards this round: {self.shards_planned} planned, {self.shards_copied} "
            f"copied, {self.shards_in_place} verified in place, {self.shards_failed} "
            f"failed, {self.shards_missing} missing; {self.bytes_copied} bytes copied.",
        ]
        if self.plans:
            lines += [
                "",
                "| plan | source | items | bytes | to copy | to check in place |",
                "|---|---|---:|---:|---:|---:|",
            ]
            lines += [
                f"| `{p.plan_id[-12:]}` | {p.source} | {p.items} | {p.bytes} | "
                f"{p.transfer_items} | {p.compare_items} |"
                for p in self.plans
            ]
        if self.failures:
            lines += ["", "Failed uploads:", ""]
            lines += [
                f"- {f.root} ({f.tenant or '-'}, {f.name!r}): {f.reason}"
                for f in self.failures[:_LISTED]
            ]
            if len(self.failures) > _LISTED:
                lines.append(
                    f"- … and {len(self.failures) - _LISTED} more (see the journal)"
                )
        return "\n".join(lines) + "\n"


def export_name(tenant: str | None) -> str:
    """The file name of a tenant's space export under ``exports/``.

    ``default.car`` without a tenant, else ``tenant-<percent-encoded tenant>.car``.
    """
    if not tenant:
        return "default.car"
    return "tenant-" + urllib.parse.quote(tenant, safe="") + ".car"


# ----------------------------------------------------------------------
# the journal


def _same_root(root: CID, text: str | None) -> bool:
    if text is None:
        return False
    try:
        other = CID.decode(text)
    except (FormatError, ValueError):
        return False
    try:
        return root.to_v1() == other.to_v1()
    except (FormatError, ValueError):
        return root == other


class W3upLegacyJournal:
    """The recipe's journal in a work folder, for queries after (or during) a run.

    Read-only: the journal is written by
    [migrate_w3up_legacy][carmigrate.recipes.migrate_w3up_legacy] alone.

    State: one SQLite connection (read-only).

    Args:
        work_dir: The work folder of the migration.

    Raises:
        PlanError: There is no journal in ``work_dir``.
    """

    def __init__(self, work_dir: str | os.PathLike[str]) -> None:
        path = Path(work_dir) / "journal.db"
        if not path.exists():
            msg = f"no w3up legacy journal in {os.fspath(work_dir)!r}"
            raise PlanError(msg)
        self._work = Path(work_dir)
        self._j = RecipeJournal(path, _SCHEMA, readonly=True)

    @classmethod
    def _over(cls, journal: RecipeJournal, work: Path) -> W3upLegacyJournal:
        self = cls.__new__(cls)
        self._work = work
        self._j = journal
        return self

    def close(self) -> None:
        """Close the connection. Idempotent."""
        self._j.close()

    def __enter__(self) -> W3upLegacyJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _shard(self, row: Sequence[Any]) -> ShardOutcome:
        return ShardOutcome(
            link=CID.decode(row[0]),
            status=row[1],
            reason=row[2],
            size=row[3],
            source=row[4],
            source_key=row[5],
            destination_key=row[6],
            copied=bool(row[7]),
            car_root=row[8],
            piece_cid=row[9],
            piece_cid_v2=row[10],
            round=row[11],
        )

    _SHARD_COLS: Final = (
        "s.link, s.status, s.reason, s.size, s.source, s.source_key, "
        "s.destination_key, s.copied, s.car_root, s.piece_cid, s.piece_cid_v2, s.round"
    )

    def shards(self, *, status: str | None = None) -> Iterator[ShardOutcome]:
        """Every shard (or those with ``status``), by CAR CID."""
        sql = f"SELECT {self._SHARD_COLS} FROM shard s"  # noqa: S608 - constant columns
        args: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE s.status = ?"
            args = (status,)
        for row in self._j.db.execute(sql + " ORDER BY s.link", args).fetchall():
            yield self._shard(row)

    def _outcome(self, row: Sequence[Any]) -> UploadOutcome:
        uid, tenant, root, name, created, status, reason = row
        shards = tuple(
            self._shard(r)
            for r in self._j.db.execute(
                f"SELECT {self._SHARD_COLS} FROM upload_shard us"  # noqa: S608 - constant columns
                " JOIN shard s ON s.link = us.link WHERE us.upload = ? ORDER BY us.position",
                (uid,),
            )
        )
        return UploadOutcome(
            root=CID.decode(root),
            tenant=tenant or None,
            name=name,
            created=created,
            status=status,
            reason=reason,
            shards=shards,
        )

    _UPLOAD_COLS: Final = "id, tenant, root, name, created, status, reason"

    def uploads(
        self, *, status: str | None = None, tenant: str | None = None
    ) -> Iterator[UploadOutcome]:
        """Uploads in listing order, optionally only those with ``status`` or of ``tenant``."""
        clauses, args = [], []
        if status is not None:
            clauses.append("status = ?")
            args.append(status)
        if tenant is not None:
            clauses.append("tenant = ?")
            args.append(tenant)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._j.db.execute(
            f"SELECT {self._UPLOAD_COLS} FROM upload{where} ORDER BY id",  # noqa: S608 - constant columns
            args,
        ).fetchall()
        for row in rows:
            yield self._outcome(row)

    def upload(
        self, root: CID | str, tenant: str | None = None
    ) -> UploadOutcome | None:
        """One upload by root (and tenant), if the journal has it."""
        row = self._j.db.execute(
            f"SELECT {self._UPLOAD_COLS} FROM upload WHERE tenant = ? AND root = ?",  # noqa: S608 - constant columns
            (tenant or "", str(root)),
        ).fetchone()
        return None if row is None else self._outcome(row)

    def counts(self) -> dict[str, int]:
        """Uploads per status."""
        return {
            str(s): int(n)
            for s, n in self._j.db.execute(
                "SELECT status, COUNT(*) FROM upload GROUP BY status"
            )
        }

    def tenants(self) -> list[str | None]:
        """The tenants with complete uploads (``None`` for uploads without one), sorted."""
        return [
            t or None
            for (t,) in self._j.db.execute(
                "SELECT DISTINCT tenant FROM upload WHERE status = 'complete' ORDER BY tenant"
            )
        ]

    def records(self, tenant: str | None = None) -> list[UploadRecords]:
        """The records of a tenant's complete uploads (or those without a tenant), in listing order."""
        return [
            u.records() for u in self.uploads(status="complete", tenant=tenant or "")
        ]

    def ledgers(self) -> list[str]:
        """The ledger files of every round, oldest first (input for the Filecoin backfill)."""
        return [p.ledger for p in self._j.round_plans() if os.path.exists(p.ledger)]


# ----------------------------------------------------------------------
# the run


def _uploads(
    listing: str | os.PathLike[str] | Iterable[str] | Iterable[LegacyUpload],
) -> Iterator[LegacyUpload]:
    if isinstance(listing, (str, os.PathLike)):
        with open(listing, encoding="utf-8") as f:
            yield from parse_legacy_uploads(f)
        return
    it = iter(listing)
    first = next(it, None)
    if first is None:
        return
    if isinstance(first, LegacyUpload):
        yield first
        for u in it:
            assert isinstance(u, LegacyUpload)
            yield u
        return

    def lines() -> Iterator[str]:
        yield str(first)
        for line in it:
            yield str(line)

    yield from parse_legacy_uploads(lines())


def _ingest(db: sqlite3.Connection, uploads: Iterable[LegacyUpload]) -> int:
    """Record the listing; returns the number of uploads read."""
    seen: set[int] = set()
    n = 0
    now = time.time()
    for up in uploads:
        n += 1
        tenant = up.tenant or ""
        links = [str(s.link) for s in up.shards]
        row = db.execute(
            "SELECT id FROM upload WHERE tenant = ? AND root = ?",
            (tenant, str(up.root)),
        ).fetchone()
        if row is None:
            cur = db.execute(
                "INSERT INTO upload (tenant, root, name, created, dag_size, line, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (tenant, str(up.root), up.name, up.created, up.dag_size, up.line, now),
            )
            uid = cur.lastrowid
            assert uid is not None
            current: list[str] = []
        else:
            uid = int(row[0])
            current = [
                r[0]
                for r in db.execute(
                    "SELECT link FROM upload_shard WHERE upload = ? ORDER BY position",
                    (uid,),
                )
            ]
            if uid in seen:
                # named twice in one listing: one upload, the union of its shards
                links = current + [lk for lk in links if lk not in current]
            elif links == current:
                seen.add(uid)
                continue
            # else the listing changed the upload's shards since the last run
            # (w3up's upload/add is incremental): decide it again; shards
            # already verified are not read again
            db.execute("DELETE FROM upload_shard WHERE upload = ?", (uid,))
            db.execute(
                "UPDATE upload SET status = 'pending', reason = NULL, updated = ? WHERE id = ?",
                (now, uid),
            )
        seen.add(uid)
        db.executemany(
            "INSERT INTO upload_shard (upload, position, link) VALUES (?, ?, ?)",
            [(uid, i, lk) for i, lk in enumerate(links)],
        )
        db.executemany(
            "INSERT OR IGNORE INTO shard (link) VALUES (?)", [(lk,) for lk in links]
        )
    return n


def _needed(db: sqlite3.Connection) -> dict[str, str]:
    """CAR CID → tenant of every shard still to do (first upload that needs it)."""
    out: dict[str, str] = {}
    for link, tenant in db.execute(
        "SELECT us.link, u.tenant FROM upload_shard us JOIN upload u ON u.id = us.upload"
        " JOIN shard s ON s.link = us.link"
        " WHERE u.status != 'complete' AND s.status != 'verified'"
        " ORDER BY u.id, us.position"
    ):
        out.setdefault(link, tenant)
    return out


def _digest(link: CID) -> str | None:
    if link.hash_code == 0x12 and len(link.digest) == 32:
        return link.digest.hex()
    return None


def _fair(items: Iterable[PlanItem]) -> list[PlanItem]:
    """Interleave tenants (cohorts) round robin; each tenant's items keep their order."""
    queues: dict[str, list[PlanItem]] = {}
    for item in items:
        queues.setdefault(item.cohort, []).append(item)
    lists = [queues[t] for t in sorted(queues)]
    out: list[PlanItem] = []
    depth = max((len(q) for q in lists), default=0)
    for i in range(depth):
        out.extend(q[i] for q in lists if i < len(q))
    return out


def _policy(commp: bool) -> VerificationPolicy:
    checks = [Check.SIZE, Check.SHA256, Check.CAR]
    if commp:
        checks += [Check.COMMP, Check.MD5]
    # Every item is a CAR, whatever its key looks like.
    return VerificationPolicy(checks=checks, car_pattern="^", key_cids=True)


def _shard_result(rec: Any) -> tuple[str, str | None]:
    """(status, reason) of a shard from its ledger record."""
    state = rec.state
    if state is ItemState.VERIFIED:
        if rec.car_check == "verified":
            return "verified", None
        if rec.car_check == "partial":
            return "failed", (
                "only partly verified: some blocks use hash functions carmigrate "
                "cannot compute"
            )
        return "failed", "not verified as a CAR"
    if state is ItemState.FAILED:
        return "failed", failure_reason(rec)
    if state is ItemState.CONFLICT:
        return "failed", (
            f"the destination holds a different object at {rec.item.destination_key}: "
            f"{rec.reason or rec.item.reason or 'conflict'}"
        )
    if state is ItemState.UNVERIFIABLE:
        return "failed", "carried, but nothing independent proved it"
    if state in (ItemState.SKIPPED, ItemState.ROLLED_BACK):
        return "failed", f"ended {state.value}"
    return "pending", None


class _Run:
    """One call of migrate_w3up_legacy (state: the journal and the stores)."""

    def __init__(
        self,
        work: Path,
        journal: RecipeJournal,
        buckets: list[Store],
        destination: Store,
        *,
        layout: str,
        commp: bool,
        limits: Limits,
        executor: Executor | None,
        reporters: Sequence[Reporter],
        store_options: Mapping[str, Any],
    ) -> None:
        self.work = work
        self.j = journal
        self.buckets = buckets
        self.destination = destination
        self.layout = layout
        self.commp = commp
        self.limits = limits
        self.executor = executor
        self.reporters = reporters
        self.store_options = store_options
        self.stores = stores_by_url([*buckets, destination])

    def dkey(self, link: str) -> str:
        return self.layout.format(cid=link)

    def _stat_destination(self, key: str) -> ObjectInfo | None:
        try:
            return self.destination.stat(key)
        except ObjectNotFound:
            return None

    # -- planning ---------------------------------------------------------

    def locate(
        self, needed: Mapping[str, str]
    ) -> tuple[dict[str, ObjectInfo], list[dict[str, ObjectInfo]]]:
        """Where each needed shard is: the destination, else the first bucket."""
        by_dkey = {self.dkey(link): link for link in needed}
        in_dest: dict[str, ObjectInfo] = {}
        if len(by_dkey) <= _STAT_AT_MOST:
            # a few shards (a re-run): ask for each rather than list the bucket
            with ThreadPoolExecutor(_STAT_THREADS) as pool:
                infos = list(pool.map(self._stat_destination, by_dkey))
            in_dest = {
                link: info
                for link, info in zip(by_dkey.values(), infos, strict=True)
                if info is not None
            }
        else:
            for info in self.destination.list():
                link = by_dkey.get(info.key)
                if link is not None:
                    in_dest[link] = info
        rest = set(needed) - in_dest.keys()
        found: list[dict[str, ObjectInfo]] = []
        taken: set[str] = set()
        for bucket in self.buckets:
            here: dict[str, ObjectInfo] = {}
            if rest - taken:
                for info in bucket.list():
                    if not info.key.lower().endswith(".car"):
                        continue
                    try:
                        link = str(car_cid_from_key(info.key))
                    except FormatError:
                        continue
                    if link not in rest or link in taken:
                        continue
                    prev = here.get(link)
                    if prev is None or info.key < prev.key:
                        here[link] = info
            taken |= here.keys()
            found.append(here)
        return in_dest, found

    def plans(
        self, needed: Mapping[str, str], n: int
    ) -> tuple[
        list[tuple[RoundPlan, Plan]], dict[str, tuple[int, str, str]], list[str]
    ]:
        """The round's plans; where each shard is planned; the missing shards."""
        in_dest, found = self.locate(needed)
        header: dict[str, Any] = {
            "stages": (Stage(_STAGE),),
            "verification": _policy(self.commp),
            "limits": self.limits,
        }
        dest_url = redact_url(self.destination.url)
        out: list[tuple[RoundPlan, Plan]] = []
        where: dict[str, tuple[int, str, str]] = {}

        def item(link: str, info: ObjectInfo, action: Action, dkey: str) -> PlanItem:
            entry = ListingEntry.from_info(info)
            digests = dict(entry.digests or {})
            key_digest = _digest(CID.decode(link))
            if key_digest is not None:
                digests["sha256"] = key_digest
            return PlanItem(
                source_key=info.key,
                destination_key=dkey,
                size=info.size,
                action=action,
                stage=_STAGE,
                cohort=needed[link],
                digests=digests,
                etag=info.etag,
                cold=info.cold,
                destination_size=info.size if action is Action.VERIFY else None,
            )

        groups: list[tuple[Store, list[PlanItem]]] = []
        in_place = []
        for link in needed:
            info = in_dest.get(link)
            if info is not None:
                in_place.append(item(link, info, Action.VERIFY, info.key))
                where[link] = (0, info.key, info.key)
        groups.append((self.destination, in_place))
        for k, here in enumerate(found, 1):
            items = []
            for link in needed:
                info = here.get(link)
                if info is not None:
                    dkey = self.dkey(link)
                    items.append(item(link, info, Action.COPY, dkey))
                    where[link] = (k, info.key, dkey)
            groups.append((self.buckets[k - 1], items))
        for k, (store, items) in enumerate(groups):
            if not items:
                continue
            plan = Plan.from_items(
                _fair(items),
                source=redact_url(store.url),
                destination=dest_url,
                **header,
            )
            path, ledger = plan_paths(self.work, n, k)
            out.append((RoundPlan(n, k, plan.header.source, path, ledger), plan))
        missing = [link for link in needed if link not in where]
        return out, where, missing

    # -- outcomes ---------------------------------------------------------

    def record_round(self, n: int) -> None:
        """Read the round's ledgers into the shard rows."""
        now = time.time()
        with self.j.tx() as db:
            for rp in self.j.round_plans(n):
                if not os.path.exists(rp.ledger):
                    continue
                links = dict(
                    db.execute(
                        "SELECT destination_key, link FROM shard WHERE round = ? AND plan = ?",
                        (n, rp.k),
                    ).fetchall()
                )
                with Ledger(rp.ledger, readonly=True) as ledger:
                    if ledger.plan_id is None:
                        continue
                    for rec in ledger.items():
                        link = links.get(rec.item.destination_key)
                        if link is None:
                            continue
                        status, reason = _shard_result(rec)
                        db.execute(
                            "UPDATE shard SET status = ?, reason = ?, size = ?, sha256 = ?,"
                            " md5 = ?, car_root = ?, car_blocks = ?, piece_cid = ?,"
                            " piece_cid_v2 = ?, copied = ?, bytes_moved = ?, updated = ?"
                            " WHERE link = ? AND status != 'verified'",
                            (
                                status,
                                reason,
                                rec.item.size,
                                rec.sha256,
                                rec.md5,
                                rec.car_root,
                                rec.car_blocks,
                                rec.piece_cid,
                                rec.piece_cid_v2,
                                int(rec.created),
                                rec.bytes_moved,
                                now,
                                link,
                            ),
                        )

    def decide_uploads(self, db: sqlite3.Connection) -> None:
        """Decide every upload that is not complete from its shards."""
        now = time.time()
        for uid, root in db.execute(
            "SELECT id, root FROM upload WHERE status != 'complete'"
        ).fetchall():
            shards = db.execute(
                "SELECT s.link, s.status, s.reason, s.car_root FROM upload_shard us"
                " JOIN shard s ON s.link = us.link WHERE us.upload = ? ORDER BY us.position",
                (uid,),
            ).fetchall()
            status, reason = _decide(CID.decode(root), shards)
            db.execute(
                "UPDATE upload SET status = ?, reason = ?, updated = ? WHERE id = ?",
                (status, reason, now, uid),
            )

    def write_outputs(
        self, view: W3upLegacyJournal
    ) -> tuple[str, tuple[tuple[str | None, str], ...]]:
        """records.jsonl and one space export per tenant, from the journal."""
        lines = []
        exports = []
        for tenant in view.tenants():
            records = []
            for up in view.uploads(status="complete", tenant=tenant or ""):
                rec = up.records()
                records.append(rec)
                lines.append(
                    json.dumps(
                        {
                            "tenant": tenant,
                            "root": str(rec.root),
                            "name": rec.name,
                            "created": rec.created,
                            "shards": [
                                {"link": str(s.link), "size": s.size}
                                for s in rec.shards
                            ],
                            "invocations": rec.invocations(),
                        },
                        ensure_ascii=False,
                        sort_keys=True,
                    )
                )
            buf = io.BytesIO()
            write_space_export(records, buf)
            path = self.work / "exports" / export_name(tenant)
            atomic_write(path, buf.getvalue())
            exports.append((tenant, str(path)))
        records_path = self.work / "records.jsonl"
        atomic_write(
            records_path, "".join(line + "\n" for line in lines).encode("utf-8")
        )
        return str(records_path), tuple(exports)


def _tenant_waits(results: Sequence[RunResult]) -> tuple[tuple[str, float], ...]:
    waits: dict[str, float] = {}
    for r in results:
        for tenant, seconds in r.tenant_waits.items():
            waits[tenant] = waits.get(tenant, 0.0) + seconds
    return tuple(sorted(waits.items()))


def _decide(root: CID, shards: Sequence[Sequence[Any]]) -> tuple[str, str | None]:
    if not shards:
        return "failed", "the listing names no shards"
    problems = []
    pending = False
    for link, status, reason, _ in shards:
        if status in ("failed", "missing"):
            problems.append(f"shard {link}: {reason or status}")
        elif status != "verified":
            pending = True
    if problems:
        return "failed", "; ".join(problems)
    if pending:
        return "pending", None
    roots = [r for *_, r in shards]
    if any(_same_root(root, r) for r in roots):
        return "complete", None
    named = ", ".join(sorted({r for r in roots if r})) or "none"
    return "failed", (
        f"root {root} is not a root of any of its shards (their CAR headers name: {named})"
    )


def migrate_w3up_legacy(
    listing: str | os.PathLike[str] | Iterable[str] | Iterable[LegacyUpload],
    buckets: Sequence[Store | str],
    destination: Store | str,
    work_dir: str | os.PathLike[str],
    *,
    layout: str = DEFAULT_LAYOUT,
    commp: bool = False,
    limits: Limits | None = None,
    executor: Executor | None = None,
    reporters: Sequence[Reporter] = (),
    store_options: Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> W3upLegacyResult:
    """Migrate web3.storage legacy uploads to w3up: copy, verify, emit records.

    See the module docs for the steps. The work folder holds everything the
    migration knows (``journal.db``, the rounds' plans and ledgers,
    ``records.jsonl``, ``exports/``); run again with the same folder to
    continue or to retry failures.

    Args:
        listing: The legacy listing: a JSON Lines file, its lines, or parsed
            uploads.
        buckets: The legacy buckets (stores or URLs), searched in this order.
        destination: The destination bucket (store or URL).
        work_dir: The work folder (created if missing).
        layout: Destination key of a shard, a ``str.format`` template with
            the field ``cid`` (the CAR CID).
        commp: Also compute PieceCIDs (and MD5, which deal manifests carry)
            in the same read.
        limits: The engine's limits for every plan run (concurrency, global
            and per-tenant rates, stops); default ``Limits()``.
        executor: Where the engine runs items (default: its thread pool).
        reporters: Engine event reporters.
        store_options: Options for stores opened from URLs.
        dry_run: Plan only: print-ready summaries, nothing executed or
            written (an open round is only summarised).

    Returns:
        What this run did.

    Raises:
        PlanError: A malformed listing line (nothing recorded), a layout
            without ``{cid}``, or a round that needs a store that cannot be
            opened.
        ValueError: Per-tenant limits with an executor that is not a thread
            pool.
        StorageError: Listing a store failed (nothing was planned).
    """
    if "{cid}" not in layout:
        msg = f"layout {layout!r} must contain {{cid}}"
        raise PlanError(msg)
    try:
        layout.format(cid="x")
    except (KeyError, IndexError, ValueError) as exc:
        msg = f"layout {layout!r} is not a template with the single field cid: {exc}"
        raise PlanError(msg) from exc
    options = dict(store_options or {})
    work = Path(work_dir)
    opened: list[Store] = []

    def store(s: Store | str) -> Store:
        if isinstance(s, str):
            s = open_store(s, **options)
            opened.append(s)
        return s

    journal = RecipeJournal(work / "journal.db", _SCHEMA, dry_run=dry_run)
    try:
        run = _Run(
            work,
            journal,
            [store(b) for b in buckets],
            store(destination),
            layout=layout,
            commp=commp,
            limits=limits or Limits(),
            executor=executor,
            reporters=reporters,
            store_options=options,
        )
        return _migrate(run, _uploads(listing), dry_run=dry_run)
    finally:
        journal.close()
        for s in opened:
            s.close()


def _migrate(
    run: _Run, uploads: Iterable[LegacyUpload], *, dry_run: bool
) -> W3upLegacyResult:
    j = run.j
    with j.tx() as db:
        _ingest(db, uploads)
    resumed = False
    n = j.open_round()
    loaded: dict[str, Plan] = {}
    missing: list[str] = []
    planned = 0
    if n is not None:
        resumed = True
        round_plans = j.round_plans(n)
        for rp in round_plans:
            loaded[rp.plan] = load_plan(rp.plan)
        planned = sum(len(p) for p in loaded.values())
    else:
        needed = _needed(j.db)
        round_plans = []
        if needed:
            n = j.last_round() + 1
            made, where, missing = run.plans(needed, n)
            round_plans = [rp for rp, _ in made]
            planned = len(where)
            if not dry_run:
                for rp, plan in made:
                    Path(rp.plan).parent.mkdir(parents=True, exist_ok=True)
                    loaded[rp.plan] = save_plan(plan, rp.plan)
            else:
                loaded = {rp.plan: plan for rp, plan in made}
            with j.tx() as db:
                j.add_round(db, n, round_plans)
                now = time.time()
                db.executemany(
                    "UPDATE shard SET status = 'pending', reason = NULL, source = ?,"
                    " source_key = ?, destination_key = ?, round = ?, plan = ?,"
                    " updated = ? WHERE link = ?",
                    [
                        (
                            next(rp.source for rp in round_plans if rp.k == k),
                            skey,
                            dkey,
                            n,
                            k,
                            now,
                            link,
                        )
                        for link, (k, skey, dkey) in where.items()
                    ],
                )
                db.executemany(
                    "UPDATE shard SET status = 'missing', reason = ?, source = NULL,"
                    " source_key = NULL, destination_key = NULL, round = ?, plan = NULL,"
                    " updated = ? WHERE link = ?",
                    [
                        (
                            "in no legacy bucket and not in the destination",
                            n,
                            now,
                            link,
                        )
                        for link in missing
                    ],
                )
    summaries = tuple(loaded[rp.plan].summary() for rp in round_plans)
    results: list[RunResult] = []
    finished = False
    if not dry_run and n is not None:
        results = run_round(
            round_plans,
            stores=run.stores,
            store_options=run.store_options,
            limits=run.limits,
            executor=run.executor,
            reporters=run.reporters,
            loaded=loaded,
        )
        run.record_round(n)
        finished = len(results) == len(round_plans) and all(r.complete for r in results)
    with j.tx() as db:
        run.decide_uploads(db)
        if finished and n is not None:
            j.finish_round(db, n)
    view = W3upLegacyJournal._over(j, run.work)
    records_path: str | None = None
    exports: tuple[tuple[str | None, str], ...] = ()
    if not dry_run:
        records_path, exports = run.write_outputs(view)
    counts = view.counts()
    shard_counts = {"copied": 0, "in_place": 0, "failed": 0, "missing": len(missing)}
    if n is not None and not dry_run:
        for copied, status, count in j.db.execute(
            "SELECT copied, status, COUNT(*) FROM shard WHERE round = ?"
            " GROUP BY copied, status",
            (n,),
        ):
            if status == "verified":
                shard_counts["copied" if copied else "in_place"] += count
            elif status == "failed":
                shard_counts["failed"] += count
            elif status == "missing":
                shard_counts["missing"] = count
    return W3upLegacyResult(
        dry_run=dry_run,
        round=n,
        resumed=resumed,
        plans=summaries,
        runs=tuple(results),
        complete=finished or (n is None),
        uploads=sum(counts.values()),
        uploads_complete=counts.get("complete", 0),
        uploads_failed=counts.get("failed", 0),
        uploads_pending=counts.get("pending", 0),
        shards_planned=planned,
        shards_copied=shard_counts["copied"],
        shards_in_place=shard_counts["in_place"],
        shards_failed=shard_counts["failed"],
        shards_missing=shard_counts["missing"],
        bytes_copied=sum(r.bytes for r in results),
        failures=tuple(view.uploads(status="failed")),
        records_path=records_path,
        exports=exports,
        tenant_waits=_tenant_waits(results),
    )
