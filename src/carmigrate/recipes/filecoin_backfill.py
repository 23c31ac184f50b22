"""Filecoin backfill: CARs stored before the pipeline existed → PieceCIDs → aggregates.

The recipe ``filecoin-backfill`` takes CARs from migration ledgers (items a
run ended ``VERIFIED`` with every CAR block checked; when its policy had
``commp`` the ledger holds the PieceCID and nothing is read again) and from a
bucket (every key matching ``car_pattern``). Each CAR is a unit of the work
ledger (kind ``car``, owner its tenant, one member: its key). A CAR without a
PieceCID is scanned in place: an engine plan whose source and destination are
the same store, every item ``VERIFY`` with the policy ``size`` + ``sha256`` +
``md5`` + ``car`` + ``commp``, so the PieceCID is computed in the read that
checks every block. Every verified CAR is then offered to the
[AggregateQueue][carmigrate.aggregate.AggregateQueue], the queue builds what
it can, and a deal manifest is written per aggregate built
(``manifests/<aggregate PieceCID>.json``).
[BackfillJournal][carmigrate.recipes.BackfillJournal] joins the work ledger
with the queue: CAR CID → PieceCID → aggregate → inclusion proof.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.aggregate import (
    POLICIES,
    SPADE_DEAL_SIZE,
    AggregateQueue,
    AggregateRecord,
    AggregateState,
    InclusionProof,
    Offer,
    PackingConstraints,
)
from carmigrate.cid import CID, Multihash
from carmigrate.commp import PieceInfo
from carmigrate.errors import AggregateError, FormatError, PlanError
from carmigrate.migrate import (
    Action,
    ItemState,
    Ledger,
    MemberState,
    Plan,
    PlanItem,
    Unit,
    Verdict,
    VerificationPolicy,
    redact_url,
)
from carmigrate.recipes._recipe import (
    Recipe,
    RecipeContext,
    RecipeResult,
    RoundPlans,
    option,
    register_recipe,
    run_recipe,
)
from carmigrate.recipes._w3up_records import CAR_CODEC, car_cid_from_key
from carmigrate.storage import LocalStore, Store

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from concurrent.futures import Executor

    from carmigrate.migrate import ItemRecord, Limits, MemberRecord, Reporter

__all__ = [
    "BackfillEntry",
    "BackfillJournal",
    "BackfillOptions",
    "BackfillResult",
    "FILECOIN_BACKFILL",
    "backfill_filecoin",
]

_OFFER_BATCH: Final = 500
_BUILT: Final = set(AggregateState) - {
    AggregateState.INGESTING,
    AggregateState.REJECTED,
}
_STATUS: Final = {Verdict.COMPLETE: "ready", Verdict.FAILED: "failed"}
_SCAN: Final = VerificationPolicy(
    checks=["size", "sha256", "md5", "car", "commp"], car_pattern="^", key_cids=True
)


def _paths(value: Sequence[str | os.PathLike[str]]) -> tuple[str, ...]:
    return tuple(os.fspath(p) for p in value)


@attrs.frozen(kw_only=True)
class BackfillOptions:
    """The options of ``filecoin-backfill`` (each field is a command-line option).

    Attributes:
        queue: The aggregate queue, or its SQLite file (opened with the
            packing rules ``deal_size`` … ``isolate_tenants``; a queue given
            as itself keeps its own).
        ledgers: Migration ledger files whose verified CARs to take.
        w3up_work: A w3up-legacy work folder whose ledgers to take too.
        bucket: A store (or URL) whose CARs to scan.
        prefix: Only keys of ``bucket`` with this prefix.
        car_pattern: Regular expression a key of ``bucket`` must match.
        deal_size: Padded deal size.
        policy: Packing policy (a name in ``POLICIES``).
        max_age: Build a partly full aggregate once its oldest piece waited
            this many seconds (0: whatever is buffered).
        max_pieces: Pieces per aggregate at most.
        isolate_tenants: Never mix tenants in one aggregate.
        url_template: ``str.format`` template of the URL a storage provider
            fetches a CAR from, with ``link`` (CAR CID) and ``key``.
        build: Run the queue's packing policy after offering.

    Raises:
        PlanError: Neither ledgers nor a bucket given.
        AggregateError: The packing rules are not valid.
    """

    queue: AggregateQueue | str = option(
        "the aggregate queue (SQLite file)", metavar="DB"
    )
    ledgers: tuple[str, ...] = option(
        "a migration ledger whose verified CARs to take (repeatable)",
        flag="--ledger",
        repeat=True,
        metavar="PATH",
        default=(),
        converter=_paths,
    )
    w3up_work: str | None = option(
        "take the ledgers of a w3up-legacy work folder", metavar="DIR", default=None
    )
    bucket: Store | str | None = option(
        "a bucket whose CARs to scan", metavar="URL", default=None
    )
    prefix: str = option(
        "only keys of --bucket with this prefix", metavar="PREFIX", default=""
    )
    car_pattern: str = option(
        r"keys of --bucket that are CARs (default '(?i)\.car$')",
        metavar="REGEX",
        default=r"(?i)\.car$",
    )
    deal_size: int = option(
        "padded deal size (default 32 GiB, Spade's)",
        metavar="N",
        parse=int,
        default=SPADE_DEAL_SIZE,
    )
    policy: str = option(
        "packing policy (default largest_first)",
        choices=sorted(POLICIES),
        default="largest_first",
    )
    max_age: float | None = option(
        "build a partly full aggregate once its oldest piece waited S seconds "
        "(0: build whatever is buffered now)",
        metavar="S",
        parse=float,
        default=None,
    )
    max_pieces: int | None = option(
        "pieces per aggregate at most", metavar="N", parse=int, default=None
    )
    isolate_tenants: bool = option("never mix tenants in one aggregate", default=False)
    url_template: str | None = option(
        "URL a provider fetches a CAR from, with {link} (CAR CID) and {key}",
        metavar="T",
        default=None,
    )
    build: bool = option(
        "only offer; do not build aggregates", flag="--no-build", default=True
    )

    def __attrs_post_init__(self) -> None:
        if not self.ledgers and self.w3up_work is None and self.bucket is None:
            raise PlanError("give ledgers, a bucket, or both")
        if isinstance(self.queue, str):
            self.constraints()  # bad rules fail now, not after the scans

    def constraints(self) -> PackingConstraints:
        """The packing rules the options give."""
        return PackingConstraints(
            deal_size=self.deal_size,
            max_pieces=self.max_pieces,
            isolate_tenants=self.isolate_tenants,
            max_age=self.max_age,
        )


@attrs.frozen(kw_only=True)
class BackfillEntry:
    """One CAR of the backfill: CAR CID → PieceCID → aggregate → inclusion proof.

    Attributes:
        link: The CAR CID (``None`` only for a CAR whose key names none and
            whose scan failed before its bytes were hashed).
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
        if self.proof is None or not self.piece_cid_v2 or not self.aggregate_cid:
            msg = f"{self.link or self.key}: no inclusion proof yet ({self.status})"
            raise AggregateError(msg)
        piece = PieceInfo.from_cid(self.piece_cid_v2)
        agg = PieceInfo.from_cid(self.aggregate_cid, self.deal_size)
        self.proof.verify(piece.root, piece.padded_size, agg.root, agg.padded_size)

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON-ready data (the proof as ``InclusionProof.to_json``)."""
        data = attrs.asdict(self, recurse=False)
        state = data.pop("aggregate_state")
        agg = {
            "id": data.pop("aggregate_id"),
            "piece_cid": data.pop("aggregate_cid"),
            "state": None if state is None else state.value,
            "deal_size": data.pop("deal_size"),
        }
        return data | {
            "link": None if self.link is None else str(self.link),
            "aggregate": None if self.aggregate_id is None else agg,
            "proof": None if self.proof is None else self.proof.to_json(),
        }


@attrs.frozen(kw_only=True)
class BackfillResult(RecipeResult):
    """What one call of [backfill_filecoin][carmigrate.recipes.backfill_filecoin] did (or, dry, would do).

    The recipe's result (``round``, ``runs``, CARs per verdict; ``failed``:
    CARs not verified or refused by the queue, tried again by the next call)
    with its outputs as attributes.

    Attributes:
        from_ledgers: CARs to offer whose PieceCID came from a migration
            ledger (not read).
        scanned: CARs scanned (read, verified and hashed) in this call.
        offered: CARs offered to the queue in this call.
        duplicates: Of those, pieces the queue already knew.
        skipped: Ledger items that are not verified CARs (left out).
        aggregates: Aggregates the queue built in this call.
        manifests: Paths of the deal manifests written.
    """

    from_ledgers: int
    scanned: int
    offered: int
    duplicates: int
    skipped: int
    aggregates: tuple[AggregateRecord, ...]
    manifests: tuple[str, ...]


def _car_cid(sha256: str) -> CID:
    return CID.create(1, CAR_CODEC, Multihash(0x12, bytes.fromhex(sha256)))


def _car_data(m: MemberRecord | None) -> dict[str, Any]:
    """What a verified CAR's record says of it; empty if it is not one with a PieceCID."""
    rec = m.record if m is not None and m.state is MemberState.VERIFIED else None
    if rec is None or rec.car_check != "verified" or not rec.sha256:
        return {}
    if not rec.piece_cid_v2:
        return {}
    piece = PieceInfo.from_cid(rec.piece_cid_v2)
    return {
        "link": str(_car_cid(rec.sha256)),
        "md5": rec.md5,
        "sha256": rec.sha256,
        "piece_cid": rec.piece_cid or str(piece.cid_v1),
        "piece_cid_v2": rec.piece_cid_v2,
        "padded_size": int(piece.padded_size),
    }


def _problem(m: MemberRecord | None) -> str | None:
    """Why a CAR cannot be offered as it stands (``None``: it can, or it is not settled)."""
    if m is None or m.record is None or _car_data(m):
        return None
    rec = m.record
    if m.state is MemberState.VERIFIED and rec.car_check == "partial":
        return "only partly verified: some blocks use hash functions carmigrate cannot compute"
    if m.state is MemberState.VERIFIED:
        if rec.car_check != "verified":
            return "not verified as a CAR"
        return "no PieceCID was computed"
    if m.state not in (MemberState.FAILED, MemberState.CONFLICT):
        return None
    where = "" if rec.offset is None else f" (at byte {rec.offset})"
    reason = f"{rec.reason or rec.state.value}{where}"
    # the item carries the SHA-256 its CAR CID names: a sha256 mismatch says which
    named = rec.item.sha256 is not None and "sha256" in reason
    return f"not the bytes its CAR CID names: {reason}" if named else reason


class BackfillJournal:
    """The backfill's work ledger joined with the queue: every CAR's way into a deal.

    Read-only. State: the work ledger (opened read-only) and a cache of the
    aggregates rebuilt for proofs.

    Args:
        work_dir: The backfill's work folder.
        queue: The aggregate queue it offered to.

    Raises:
        PlanError: There is no work ledger in ``work_dir``.
    """

    def __init__(self, work_dir: str | os.PathLike[str], queue: AggregateQueue) -> None:
        path = Path(work_dir) / "ledger.db"
        if not path.exists():
            raise PlanError(f"no Filecoin backfill journal in {os.fspath(work_dir)!r}")
        self._ledger = Ledger(path, readonly=True)
        self._open = self._ledger.open_round() is not None
        self._queue = queue
        self._aggs: dict[str, tuple[AggregateRecord, Any, dict[str, Any]]] = {}

    def close(self) -> None:
        """Close the work ledger. Idempotent."""
        self._ledger.close()

    def __enter__(self) -> BackfillJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cars(self) -> Iterator[BackfillEntry]:
        """Every CAR as the work ledger knows it (``offered``: handed to the queue)."""
        for u in self._ledger.units(kind="car"):
            m = self._ledger.member(u.unit.members[0])
            d = {**u.unit.data, **_car_data(m)}
            if not d.get("link") and m is not None and m.record and m.record.sha256:
                d["link"] = str(_car_cid(m.record.sha256))  # a failed CAR's bytes
            status = _STATUS.get(u.verdict) or ("scanning" if self._open else "scan")
            yield BackfillEntry(
                link=CID.decode(d["link"]) if d.get("link") else None,
                origin=d["origin"],
                key=d["key"],
                size=d["size"],
                status="offered" if d.get("offered") else status,
                reason="; ".join(u.reasons) or None,
                piece_cid=d.get("piece_cid"),
                piece_cid_v2=d.get("piece_cid_v2"),
                padded_size=d.get("padded_size"),
            )

    def _join(self, entry: BackfillEntry) -> BackfillEntry:
        """The entry with what the queue knows of it."""
        if entry.status != "offered" or not entry.piece_cid_v2:
            return entry
        rec = self._queue.find(PieceInfo.from_cid(entry.piece_cid_v2))
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
        if rec.aggregate_id not in self._aggs:
            agg = self._queue.get(rec.aggregate_id)
            tree = (
                self._queue.aggregate(agg.aggregate_id) if agg.state in _BUILT else None
            )
            at = {
                p.key: (pos, off)
                for pos, off, p in self._queue.members(agg.aggregate_id)
            }
            self._aggs[rec.aggregate_id] = (agg, tree, at)
        agg, tree, at = self._aggs[rec.aggregate_id]
        position, offset = at.get(rec.key, (None, None))
        return attrs.evolve(
            entry,
            aggregate_cid=agg.piece_cid,
            aggregate_state=agg.state,
            deal_size=agg.deal_size,
            offset=offset,
            proof=None if tree is None or position is None else tree.proof(position),
        )

    def entries(self, *, status: str | None = None) -> Iterator[BackfillEntry]:
        """Every CAR of the backfill, by store and key (filtered by its final ``status``)."""
        for car in self._cars():
            entry = self._join(car)
            if status is None or entry.status == status:
                yield entry

    def lookup(self, link: CID | str) -> BackfillEntry | None:
        """The entry of a CAR CID (its first, if several stores hold the CAR)."""
        want = CID.decode(str(link))
        return next((self._join(c) for c in self._cars() if c.link == want), None)

    def counts(self) -> dict[str, int]:
        """CARs per status before the queue: ``scan``, ``scanning``, ``ready``, ``offered``, ``failed``."""
        return dict(collections.Counter(c.status for c in self._cars()))


def _unit(origin: str, key: str, size: int, tenant: str | None, **data: Any) -> Unit:
    """A CAR's unit (``data``: how it was found, its link and sha256 if known)."""
    data |= {"origin": origin, "key": key, "size": size, "tenant": tenant}
    name = f"car:{origin}/{key}"
    return Unit(name=name, kind="car", owner=tenant, members=(key,), data=data)


def _from_ledgers(paths: Sequence[str], found: dict[str, Any]) -> int:
    """Add the verified CARs of migration ledgers to ``found``; the items left out."""
    skipped = 0
    for path in paths:
        with Ledger(path, readonly=True) as src:
            header = src.header
            for rec in src.items():
                item, sha = rec.item, rec.sha256
                if (
                    rec.state is not ItemState.VERIFIED
                    or item.source_key is None
                    or not header.verification.is_car(item.source_key)
                    or rec.car_check != "verified"
                    or sha is None
                ):
                    skipped += 1
                    continue
                key, tenant = item.destination_key, item.cohort or None
                via, link = f"ledger:{os.path.abspath(path)}", str(_car_cid(sha))
                unit = _unit(
                    header.destination,
                    key,
                    item.size,
                    tenant,
                    via=via,
                    link=link,
                    sha256=sha,
                )
                has = rec if rec.piece_cid_v2 else None
                if unit.name not in found or (has and found[unit.name][1] is None):
                    found[unit.name] = (unit, has)
    return skipped


def _make_plans(o: BackfillOptions, ctx: RecipeContext) -> RoundPlans:
    """Units for the CARs not offered yet; in-place scans for those without a PieceCID."""
    paths = list(o.ledgers)
    if o.w3up_work is not None:
        from carmigrate.recipes.w3up_legacy import W3upLegacyJournal

        with W3upLegacyJournal(o.w3up_work) as journal:
            paths += journal.ledgers()
    # by unit name: the unit, and the ledger record that has its PieceCID
    found: dict[str, tuple[Unit, ItemRecord | None]] = {}
    skipped = _from_ledgers(paths, found)
    if o.bucket is not None:
        store = ctx.store(o.bucket)
        origin, regex = redact_url(store.url), re.compile(o.car_pattern)
        for info in store.list(o.prefix):
            if regex.search(info.key) is None:
                continue
            cid = None
            with contextlib.suppress(FormatError):
                cid = car_cid_from_key(info.key)
            sha = cid.digest.hex() if cid and cid.hash_code == 0x12 else None
            link = None if cid is None else str(cid)
            unit = _unit(
                origin, info.key, info.size, None, via="scan", link=link, sha256=sha
            )
            found.setdefault(unit.name, (unit, None))
    offered = {
        u.name for u in ctx.ledger.units(kind="car") if u.unit.data.get("offered")
    }
    todo = [v for name, v in found.items() if name not in offered]
    taken = [rec for _, rec in todo if rec is not None]
    ctx.ledger.record_items(None, taken)  # their outcome, without a read
    ctx.notes.update(from_ledgers=len(taken), skipped=skipped)
    scans: dict[str, list[PlanItem]] = {}
    for unit, has in todo:
        d = unit.data
        if has is None and not _car_data(ctx.ledger.member(d["key"])):
            scans.setdefault(d["origin"], []).append(
                PlanItem(
                    source_key=d["key"],
                    destination_key=d["key"],
                    size=d["size"],
                    action=Action.VERIFY,
                    stage="all",
                    cohort=unit.owner or "",
                    digests={"sha256": d["sha256"]} if d["sha256"] else {},
                    destination_size=d["size"],
                )
            )
    plans = tuple(
        Plan.from_items(items, source=origin, destination=origin, verification=_SCAN)
        for origin, items in sorted(scans.items())
    )
    return RoundPlans(plans=plans, units=tuple(u for u, _ in todo))


def _finish(o: BackfillOptions, ctx: RecipeContext) -> dict[str, Any]:
    """Offer every verified CAR not offered yet, build, write the deal manifests."""
    led, ready = ctx.ledger, list[tuple[str, dict[str, Any]]]()
    for u in led.units(kind="car"):
        if u.unit.data.get("offered"):
            continue
        m = led.member(u.unit.members[0])
        problem = _problem(m)
        if problem is not None:
            led.set_verdict(u.name, Verdict.FAILED, [problem])
        elif u.verdict is Verdict.COMPLETE:
            ready.append((u.name, {**u.unit.data, **_car_data(m)}))
    out: dict[str, Any] = {"from_ledgers": 0, "skipped": 0, **ctx.notes}
    out |= {"offered": 0, "duplicates": 0, "aggregates": [], "manifests": []}
    if ctx.dry_run:
        return out

    def offer(d: Mapping[str, Any]) -> Offer:
        url = o.url_template and o.url_template.format(link=d["link"], key=d["key"])
        piece = PieceInfo.from_cid(d["piece_cid_v2"])
        return Offer(
            piece, d["size"], d["link"], url, d["md5"], d["sha256"], tenant=d["tenant"]
        )

    with contextlib.ExitStack() as stack:
        queue = o.queue
        if not isinstance(queue, AggregateQueue):
            queue = AggregateQueue(queue, constraints=o.constraints(), policy=o.policy)
            stack.enter_context(queue)
        for i in range(0, len(ready), _OFFER_BATCH):
            batch, done = ready[i : i + _OFFER_BATCH], []
            try:
                out["duplicates"] += len(
                    queue.offer(offer(d) for _, d in batch).duplicates
                )
                done = batch
            except AggregateError:  # one refused piece refuses the call: one by one
                for name, d in batch:
                    try:
                        out["duplicates"] += len(queue.offer([offer(d)]).duplicates)
                        done.append((name, d))
                    except AggregateError as exc:
                        why = f"the aggregate queue refused it: {exc}"
                        led.set_verdict(name, Verdict.FAILED, [why])
            led.set_unit_data({name: {**d, "offered": True} for name, d in done})
            out["offered"] += len(done)
        manifests = LocalStore(ctx.output("manifests"))
        for agg in queue.build() if o.build else []:
            name = f"{agg.piece_cid}.json"
            text = json.dumps(
                queue.manifest(agg.aggregate_id), indent=1, sort_keys=True
            )
            manifests.write(name, f"{text}\n".encode())
            out["aggregates"].append(agg.aggregate_id)
            out["manifests"].append(str(ctx.work / "manifests" / name))
    return out


FILECOIN_BACKFILL: Final[Recipe[BackfillOptions]] = register_recipe(
    Recipe(
        name="filecoin-backfill",
        summary="PieceCIDs of existing CARs into the aggregate queue, aggregates, manifests",
        description=(
            "Take the verified CARs of migration ledgers (their PieceCIDs when the "
            "run computed commP, nothing read again) and/or every CAR of a bucket "
            "(read once: every block verified and commP computed), offer them to the "
            "aggregate queue, build aggregates with the chosen policy and write a "
            "deal manifest per aggregate to WORK/manifests/. Run again to continue; "
            "CARs already offered are not read again. Exit 1 if CARs failed."
        ),
        options=BackfillOptions,
        make_plans=_make_plans,
        finish=_finish,
        unit_label="CARs",
    )
)
"""The registered recipe: ``carmigrate recipe filecoin-backfill``."""


def backfill_filecoin(
    queue: AggregateQueue,
    work_dir: str | os.PathLike[str],
    *,
    ledgers: Sequence[str | os.PathLike[str]] = (),
    bucket: Store | str | None = None,
    prefix: str = "",
    car_pattern: str = r"(?i)\.car$",
    url_template: str | None = None,
    build: bool = True,
    limits: Limits | None = None,
    executor: Executor | None = None,
    reporters: Sequence[Reporter] = (),
    stores: Sequence[Store] = (),
    store_options: Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> BackfillResult:
    """Compute the PieceCIDs of existing CARs, offer them, build aggregates, write manifests.

    [run_recipe][carmigrate.recipes.run_recipe] of
    [FILECOIN_BACKFILL][carmigrate.recipes.FILECOIN_BACKFILL] (see the module
    docs). Calls are incremental: a CAR already offered is never offered or
    read again, one that failed is tried again, and a scan round a limit
    stopped is resumed (new inputs are then taken by the next call).

    Args:
        queue: The aggregate queue (its constraints and policy decide what is built).
        work_dir: The work folder (``ledger.db``, ``rounds/``, ``manifests/``).
        ledgers: Migration ledger files whose verified CARs to take.
        bucket: A store (or URL) whose CARs to scan.
        prefix: Only keys of ``bucket`` with this prefix.
        car_pattern: Regular expression a key of ``bucket`` must match.
        url_template: ``str.format`` template of the URL a storage provider
            fetches a CAR from, with ``link`` (CAR CID) and ``key``.
        build: Run the queue's packing policy after offering.
        limits: The engine's limits of the scan runs.
        executor: Where the engine runs scans (default: its thread pool).
        reporters: Engine event reporters for the scans.
        stores: Stores to scan with (by URL); others are opened from URLs.
        store_options: Options for stores opened from URLs.
        dry_run: Only count and plan the scans; nothing is run, offered or written.

    Returns:
        What this call did.

    Raises:
        PlanError: A ledger without a plan, or neither ledgers nor a bucket.
        StorageError: Listing the bucket failed (nothing was planned).
        AggregateError: The packing policy failed.
    """
    options = BackfillOptions(
        queue=queue,
        ledgers=_paths(ledgers),
        bucket=bucket,
        prefix=prefix,
        car_pattern=car_pattern,
        url_template=url_template,
        build=build,
    )
    given = [bucket] if bucket is not None and not isinstance(bucket, str) else []
    r = run_recipe(
        FILECOIN_BACKFILL,
        options,
        work_dir,
        limits=limits,
        executor=executor,
        reporters=reporters,
        stores=[*stores, *given],
        store_options=store_options,
        dry_run=dry_run,
    )
    return BackfillResult(
        **attrs.asdict(r, recurse=False),
        from_ledgers=r.outputs["from_ledgers"],
        scanned=sum(p.items for p in r.plans),
        offered=r.outputs["offered"],
        duplicates=r.outputs["duplicates"],
        skipped=r.outputs["skipped"],
        aggregates=tuple(queue.get(a) for a in r.outputs["aggregates"]),
        manifests=tuple(r.outputs["manifests"]),
    )
