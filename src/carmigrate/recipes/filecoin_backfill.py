"""Filecoin backfill: CARs stored before the pipeline existed → PieceCIDs → aggregates.

The recipe ``filecoin-backfill`` takes the CARs of migration ledgers (items
verified with every CAR block checked; with ``commp`` in their policy the
ledger has the PieceCID and nothing is read again) and of a bucket (keys
matching ``car_pattern``). A CAR without a PieceCID is scanned in place: an
engine plan from its store to itself, every item ``VERIFY`` with ``size`` +
``sha256`` + ``md5`` + ``car`` + ``commp``, so the read that checks every
block computes it. Every verified CAR is offered to the
[AggregateQueue][carmigrate.aggregate.AggregateQueue], the queue builds what
it can, and each aggregate built gets a deal manifest
(``manifests/<aggregate PieceCID>.json``).

Each CAR is a unit of the work ledger
([work_ledger][carmigrate.recipes.work_ledger]) of kind ``car``, named
``car:<store URL>/<key>``, owned by its tenant, with its key as member;
failed, with the reason, when its bytes are not the CAR they should be or
the queue refused it. Its data follows it from CAR CID to inclusion proof:

- where it is: ``origin`` (the store's URL), ``key``, ``size``, ``tenant``,
  ``via`` (``scan``, or ``ledger:<path>``);
- once verified: ``link`` (its CAR CID), ``sha256``, ``md5``, ``piece_cid``,
  ``piece_cid_v2``, ``padded_size``; ``offered`` once offered;
- what the queue did with it, as of the last call: ``queue_status``
  (``buffered``, ``aggregated`` or ``dropped``), ``drop_reason``,
  ``aggregate`` (the queue's id), ``aggregate_cid``, ``deal_size``,
  ``offset`` (padded) and ``proof``, which
  [InclusionProof.from_json][carmigrate.aggregate.InclusionProof.from_json]
  reads and [verify][carmigrate.aggregate.InclusionProof.verify] checks
  against ``PieceInfo.from_cid`` of ``piece_cid_v2`` and of
  ``aggregate_cid`` with ``deal_size``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.aggregate import (
    POLICIES,
    SPADE_DEAL_SIZE,
    AggregateQueue,
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
    work_ledger,
)
from carmigrate.recipes._w3up_records import CAR_CODEC, car_cid_from_key
from carmigrate.recipes.w3up_legacy import _problem
from carmigrate.storage import LocalStore, Store

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from concurrent.futures import Executor

    from carmigrate.migrate import ItemRecord, Limits, MemberRecord, Reporter

__all__ = [
    "BackfillOptions",
    "FILECOIN_BACKFILL",
    "backfill_filecoin",
]

_OFFER_BATCH: Final = 500
_DEAL: Final = ("aggregate_cid", "deal_size", "offset", "proof")  # from a deal manifest
_SCAN: Final = VerificationPolicy(
    checks=["size", "sha256", "md5", "car", "commp"], car_pattern="^", key_cids=True
)


@attrs.frozen(kw_only=True)
class BackfillOptions:
    """The options of ``filecoin-backfill`` (each field is a command-line option).

    Attributes:
        queue: The aggregate queue, or its SQLite file (opened with the
            packing rules ``deal_size`` … ``isolate_tenants``; a queue given
            as itself keeps its own).
        ledgers: Migration ledger files whose verified CARs to take.
        w3up_work: A recipe's work folder (``w3up-legacy``'s) whose
            rounds' ledgers to take too.
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
        converter=lambda paths: tuple(map(os.fspath, paths)),
    )
    w3up_work: str | None = option(
        "take the ledgers of a recipe's work folder (w3up-legacy's)",
        metavar="DIR",
        default=None,
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


def _car_cid(sha256: str) -> CID:
    return CID.create(1, CAR_CODEC, Multihash(0x12, bytes.fromhex(sha256)))


def _car(m: MemberRecord | None) -> tuple[dict[str, Any], str | None]:
    """A CAR's facts once verified with its PieceCID, else why not (``None``: pending)."""
    problem = _problem(m)
    rec = m.record if m is not None and m.state is MemberState.VERIFIED else None
    if problem is not None or rec is None:
        return {}, problem
    if not rec.sha256 or not rec.piece_cid_v2:
        return {}, "no PieceCID was computed"
    piece = PieceInfo.from_cid(rec.piece_cid_v2)
    return {
        "link": str(_car_cid(rec.sha256)),
        "md5": rec.md5,
        "sha256": rec.sha256,
        "piece_cid": rec.piece_cid or str(piece.cid_v1),
        "piece_cid_v2": rec.piece_cid_v2,
        "padded_size": int(piece.padded_size),
    }, None


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
            head, via = src.header, f"ledger:{os.path.abspath(path)}"
            for rec in src.items():
                key, sha = rec.item.source_key, rec.sha256
                ok = rec.state is ItemState.VERIFIED and rec.car_check == "verified"
                if not ok or not sha or not key or not head.verification.is_car(key):
                    skipped += 1
                    continue
                data = {"via": via, "link": str(_car_cid(sha)), "sha256": sha}
                item, tenant = rec.item, rec.item.cohort or None
                unit = _unit(
                    head.destination, item.destination_key, item.size, tenant, **data
                )
                has = rec if rec.piece_cid_v2 else None
                if unit.name not in found or (has and found[unit.name][1] is None):
                    found[unit.name] = (unit, has)
    return skipped


def _make_plans(o: BackfillOptions, ctx: RecipeContext) -> RoundPlans:
    """Units for the CARs not offered yet; in-place scans for those without a PieceCID."""
    paths = list(o.ledgers)
    if o.w3up_work is not None:
        with work_ledger(o.w3up_work) as work:
            ran = [p.ledger for r in work.rounds() for p in r.plans]
        paths += [path for path in ran if os.path.exists(path)]  # run so far
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
            data = {"via": "scan", "link": cid and str(cid), "sha256": sha}
            unit = _unit(origin, info.key, info.size, None, **data)
            found.setdefault(unit.name, (unit, None))
    units = ctx.ledger.units(kind="car")
    offered = {u.name for u in units if u.unit.data.get("offered")}
    todo = [v for name, v in found.items() if name not in offered]
    taken = [rec for _, rec in todo if rec is not None]
    ctx.ledger.record_items(None, taken)  # their outcome, without a read
    ctx.notes.update(from_ledgers=len(taken), skipped=skipped)
    scans: dict[str, list[PlanItem]] = {}
    for unit, has in todo:
        d = unit.data
        if has is None and not _car(ctx.ledger.member(d["key"]))[0]:
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
        car, problem = _car(led.member(u.unit.members[0]))
        if problem is not None:
            led.set_verdict(u.name, Verdict.FAILED, [problem])
        elif u.verdict is Verdict.COMPLETE:
            ready.append((u.name, {**u.unit.data, **car}))
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
                dups = queue.offer(offer(d) for _, d in batch).duplicates
                out["duplicates"] += len(dups)
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
            name, manifest = f"{agg.piece_cid}.json", queue.manifest(agg.aggregate_id)
            text = json.dumps(manifest, indent=1, sort_keys=True)
            manifests.write(name, f"{text}\n".encode())
            out["aggregates"].append(agg.aggregate_id)
            out["manifests"].append(str(ctx.work / "manifests" / name))
        _settle(queue, led)
    return out


def _settle(queue: AggregateQueue, led: Ledger) -> None:
    """Record in each offered CAR's unit what the queue did with it (see the module docs)."""
    built: dict[str, dict[str, Any]] = {}  # the pieces of built aggregates, by PieceCID
    changed: dict[str, dict[str, Any]] = {}
    for u in led.units(kind="car"):
        d = u.unit.data
        piece = PieceInfo.from_cid(d["piece_cid_v2"]) if d.get("offered") else None
        rec = None if piece is None else queue.find(piece)
        if rec is None or (rec.aggregate_id == d.get("aggregate") and d.get("proof")):
            continue  # unknown to this queue, or settled: it stays as recorded
        if rec.aggregate_id and rec.aggregate_id not in built:
            with contextlib.suppress(AggregateError):  # not built yet
                m: dict[str, Any] = queue.manifest(rec.aggregate_id)
                built[rec.aggregate_id] = {p["piece_cid"]: m | p for p in m["pieces"]}
        at = built.get(rec.aggregate_id or "", {}).get(rec.piece_cid, {})
        facts = {"aggregate": rec.aggregate_id, "drop_reason": rec.drop_reason}
        facts |= {k: at.get(k) for k in _DEAL} | {"queue_status": rec.status.lower()}
        if any(d.get(k) != v for k, v in facts.items()):
            changed[u.name] = {**d, **facts}
        if len(changed) >= _OFFER_BATCH:
            led.set_unit_data(changed)
            changed.clear()
    led.set_unit_data(changed)


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
    limits: Limits | None = None,
    executor: Executor | None = None,
    reporters: Sequence[Reporter] = (),
    stores: Sequence[Store] = (),
    store_options: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    **options: Any,
) -> RecipeResult:
    """Compute the PieceCIDs of existing CARs, offer them, build aggregates, write manifests.

    [run_recipe][carmigrate.recipes.run_recipe] of
    [FILECOIN_BACKFILL][carmigrate.recipes.FILECOIN_BACKFILL] (see the module
    docs). Calls are incremental: a CAR already offered is never offered or
    read again, one that failed is tried again, and a scan round a limit
    stopped is resumed (new inputs are then taken by the next call).

    Args:
        queue: The aggregate queue (its constraints and policy decide what is built).
        work_dir: The work folder (``ledger.db``, ``rounds/``, ``manifests/``).
        limits: The engine's limits of the scan runs.
        executor: Where the engine runs scans (default: its thread pool).
        reporters: Engine event reporters for the scans.
        stores: Stores to scan with (by URL), besides a ``bucket`` given as
            a store; others are opened from URLs.
        store_options: Options for stores opened from URLs.
        dry_run: Only count and plan the scans; nothing is run, offered or written.
        **options: Which CARs to take and how to offer them: the fields of
            [BackfillOptions][carmigrate.recipes.BackfillOptions] but the
            queue and its packing rules (``ledgers``, ``w3up_work``,
            ``bucket``, ``prefix``, ``car_pattern``, ``url_template``,
            ``build``).

    Returns:
        The recipe's result: CARs per verdict (``units``; ``failed``: CARs
        not verified or refused by the queue, tried again by the next call),
        CARs scanned (``planned``), and in ``outputs``: ``from_ledgers``
        (CARs whose PieceCID a migration ledger had: not read),
        ``skipped`` (ledger items that are not verified CARs: left out),
        ``offered`` and of those ``duplicates`` (pieces the queue knew),
        ``aggregates`` (ids of the aggregates built) and ``manifests``
        (their paths). Per CAR: the work ledger (see the module docs).

    Raises:
        PlanError: A ledger without a plan, or neither ledgers nor a bucket.
        StorageError: Listing the bucket failed (nothing was planned).
        AggregateError: The packing policy failed.
        TypeError: An option ``BackfillOptions`` does not have.
    """
    return run_recipe(
        FILECOIN_BACKFILL,
        BackfillOptions(queue=queue, **options),
        work_dir,
        limits=limits,
        executor=executor,
        reporters=reporters,
        stores=stores,
        store_options=store_options,
        dry_run=dry_run,
    )
