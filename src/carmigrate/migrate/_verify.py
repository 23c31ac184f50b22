"""Verify and roll back: re-reading a plan's destination against its ledger.

[verify][carmigrate.migrate.verify] reads every object a plan wrote back
and holds it to what was recorded when it was written (and, on request, to
the source read again); [rollback][carmigrate.migrate.rollback] deletes
exactly what one stage created, object by object, only while it still holds
what was written. Both run their items on the executor's workers and record
every outcome in the ledger, like a run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from typing import Any

import attrs

from carmigrate.errors import VerificationError
from carmigrate.migrate import serde
from carmigrate.migrate._events import EventKind, Reporter
from carmigrate.migrate._executor import (
    _OURS,
    _POLL,
    StoreOptions,
    _Context,
    _Emitter,
    _stage_names,
    _worker_error,
    remove_temporary_of_crash,
)
from carmigrate.migrate._ledger import ItemRecord, Ledger
from carmigrate.migrate._model import ItemState, Limits
from carmigrate.migrate._plan import Plan
from carmigrate.migrate._transfer import Mode, Outcome, Task
from carmigrate.storage import Store

__all__ = ["RollbackResult", "VerifyReport", "rollback", "verify"]

_S = ItemState


@attrs.frozen(kw_only=True)
class VerifyReport:
    """What [verify][carmigrate.migrate.verify] found.

    Attributes:
        run: The ledger's run number.
        checked: Destination objects read back.
        verified: Of those, proven equal to the source by an independent
            check (items promoted from ``UNVERIFIABLE`` included).
        promoted: Items that were ``UNVERIFIABLE`` and are now ``VERIFIED``.
        unverifiable: Consistent with what was written, but nothing
            independent to compare with.
        mismatches: ``(key, reason)`` of objects that are missing or differ;
            those items are now ``FAILED`` (``resume`` redoes them; an object
            someone else changed ends as ``CONFLICT``).
        errors: ``(key, reason)`` of objects that could not be read
            (transient errors): not checked, state unchanged.
    """

    run: int
    checked: int
    verified: int
    promoted: int
    unverifiable: int
    mismatches: tuple[tuple[str, str], ...]
    errors: tuple[tuple[str, str], ...]

    @property
    def ok(self) -> bool:
        """No mismatch and no error."""
        return not self.mismatches and not self.errors

    def raise_for_failures(self) -> None:
        """Raise [VerificationError][carmigrate.errors.VerificationError] listing the mismatches and errors, if any."""
        if self.ok:
            return
        failures = [
            VerificationError(f"{key}: {reason}")
            for key, reason in (*self.mismatches, *self.errors)
        ]
        raise VerificationError(
            f"{len(self.mismatches)} objects differ or are missing, "
            f"{len(self.errors)} could not be checked",
            failures,
        )


@attrs.frozen(kw_only=True)
class RollbackResult:
    """What [rollback][carmigrate.migrate.rollback] did (or would do, in a dry run).

    Attributes:
        run: The ledger's run number (``None`` for a dry run).
        stage: The stage rolled back.
        deleted: Keys deleted (in a dry run: that would be checked and
            deleted).
        already_gone: Keys this plan created that were no longer there.
        kept: ``(key, reason)`` of objects left in place: changed since this
            plan wrote them, or replaced by this plan (what was there before
            is gone and cannot be put back).
        unresolved: Keys of items caught mid-copy; run ``resume`` (or
            ``verify``) first so the ledger knows whether they were written.
        errors: ``(key, reason)`` of deletes that failed; their items keep
            their state, so rollback can be run again.
    """

    run: int | None
    stage: str
    deleted: tuple[str, ...]
    already_gone: tuple[str, ...]
    kept: tuple[tuple[str, str], ...]
    unresolved: tuple[str, ...]
    errors: tuple[tuple[str, str], ...]


def _simple_loop(
    ctx: _Context,
    records: Iterator[ItemRecord],
    make: Callable[[ItemRecord], Task | None],
    handle: Callable[[Any, ItemRecord, Outcome | Exception], None],
    ledger: Ledger,
    concurrency: int,
) -> None:
    workers = ctx.workers
    exhausted = False
    while True:
        while not exhausted and len(workers.inflight) < concurrency:
            rec = next(records, None)
            if rec is None:
                exhausted = True
                break
            task = make(rec)
            if task is not None:
                workers.submit(task, rec)
        if not workers.inflight:
            if exhausted:
                return
            continue
        results = workers.wait(_POLL)
        if results:
            with ledger.batch() as b:
                for rec, res in results:
                    if isinstance(res, (Outcome, Exception)):
                        handle(b, rec, res)
                    else:
                        raise res


def verify(
    plan: Plan | None,
    ledger: Ledger,
    *,
    source: Store | None = None,
    destination: Store | None = None,
    executor: Executor | None = None,
    stages: str | Sequence[str] | None = None,
    reread_source: bool = False,
    limits: Limits | None = None,
    reporters: Iterable[Reporter] = (),
    store_options: StoreOptions | None = None,
) -> VerifyReport:
    """Re-check every object this plan put at the destination, independently.

    For each ``VERIFIED``, ``UNVERIFIABLE`` or ``COPIED`` item, reads the
    destination object once and compares it with what the ledger recorded
    when it was written (SHA-256, MD5, PieceCID) and with what the source
    vouches for now (its listing digests in the plan, its ``stat``
    checksums, a content-addressed key, every CAR block against its CID).
    With ``reread_source``, the source object is also read again and its
    SHA-256 compared: a second, independent read that can prove items
    otherwise ``UNVERIFIABLE``.

    Outcomes are recorded in the ledger: a missing or different object makes
    the item ``FAILED`` (``resume`` then redoes it, or finds a ``CONFLICT``
    if someone else changed it); an ``UNVERIFIABLE`` or ``COPIED`` item
    proven equal becomes ``VERIFIED``; items that were fine stay as they
    are, with a journal entry. Objects that cannot be read for a transient
    reason are reported and left unchanged.

    Args:
        plan: The plan, to check it is the ledger's (``None``: the ledger's).
        ledger: The ledger.
        source: The source store for in-process workers.
        destination: The destination store for in-process workers.
        executor: Where reads run (default: an own thread pool).
        stages: Stage name(s) to verify (default: all).
        reread_source: Also read every source object again.
        limits: Concurrency and retries (default: the plan's).
        reporters: Receive ``RUN_STARTED``, ``DONE``, ``FAILED`` and
            ``RUN_FINISHED`` events.
        store_options: Options to open stores by URL.

    Returns:
        The counts and the mismatches.

    Raises:
        PlanError: ``plan`` is not the ledger's, or unknown stages.
    """
    if plan is not None:
        ledger.check_plan(plan)
    header = ledger.header
    lim = limits or header.limits
    names = _stage_names(header, stages)
    ctx = _Context(
        header,
        source=source,
        destination=destination,
        executor=executor,
        concurrency=lim.concurrency,
        store_options=store_options,
    )
    run = ledger.start_run("verify", stages=names, limits=serde.unstructure(lim))
    if ctx.workers.stores is not None:
        # a crashed run's writers left temporary files of its items in flight
        remove_temporary_of_crash(ledger, ctx.workers.stores.destination)
    emit = _Emitter(reporters, run)
    counts = {"checked": 0, "verified": 0, "promoted": 0, "unverifiable": 0}
    mismatches: list[tuple[str, str]] = []
    errors: list[tuple[str, str]] = []

    def make(rec: ItemRecord) -> Task | None:
        return ctx.task(
            Mode.VERIFY,
            rec,
            lim,
            written_digests=rec.digests,
            written_etag=rec.written_etag,
            written_piece=rec.piece_cid,
            written_car_root=rec.car_root,
            reread_source=reread_source,
        )

    def handle(b: Any, rec: ItemRecord, res: Outcome | Exception) -> None:
        out = res if isinstance(res, Outcome) else _worker_error(rec, res)
        key = rec.item.key
        now = time.time()
        if out.state is _S.FAILED:
            if out.transient:
                errors.append((key, out.reason or "error"))
                emit(EventKind.FAILED, rec, reason=out.reason)
                return
            counts["checked"] += 1
            mismatches.append((key, out.reason or "mismatch"))
            b.transition(
                rec.seq,
                _S.FAILED,
                reason=out.reason,
                error_offset=out.offset,
                # resume redoes it (a CONFLICT if someone else changed it), as
                # documented; a permanent failure would need retry_failed
                transient=True,
                finished=now,
            )
            emit(
                EventKind.FAILED,
                rec,
                state=_S.FAILED,
                reason=out.reason,
                offset=out.offset,
            )
            return
        counts["checked"] += 1
        checks = tuple(sorted(set(rec.checks) | set(out.checks)))
        if out.state is _S.VERIFIED or rec.state is _S.VERIFIED:
            counts["verified"] += 1
            if rec.state is not _S.VERIFIED:
                counts["promoted"] += 1
            note = out.reason or (
                "verify: ok (" + ", ".join(out.checks or ("consistent",)) + ")"
            )
            b.transition(rec.seq, _S.VERIFIED, reason=note, checks=checks, finished=now)
            emit(EventKind.DONE, rec, state=_S.VERIFIED, reason=note)
        else:
            counts["unverifiable"] += 1
            note = out.reason or (
                "verify: consistent with what was written; nothing independent to compare"
            )
            target = _S.UNVERIFIABLE
            b.transition(rec.seq, target, reason=note, finished=now)
            emit(EventKind.DONE, rec, state=target, reason=note)

    emit(EventKind.RUN_STARTED)
    stop = "interrupted"
    try:
        records = (r for r in ledger.items(stage=names, state=_OURS))
        _simple_loop(ctx, records, make, handle, ledger, lim.concurrency)
        stop = "done"
    finally:
        ledger.finish_run(
            run, stop_reason=stop, items=counts["checked"], failures=len(mismatches)
        )
        emit(EventKind.RUN_FINISHED, reason=stop, items=counts["checked"])
        ctx.close()
    return VerifyReport(
        run=run,
        checked=counts["checked"],
        verified=counts["verified"],
        promoted=counts["promoted"],
        unverifiable=counts["unverifiable"],
        mismatches=tuple(sorted(mismatches)),
        errors=tuple(sorted(errors)),
    )


def rollback(
    ledger: Ledger,
    stage: str,
    *,
    destination: Store | None = None,
    executor: Executor | None = None,
    dry_run: bool = False,
    limits: Limits | None = None,
    reporters: Iterable[Reporter] = (),
    store_options: StoreOptions | None = None,
) -> RollbackResult:
    """Delete the destination objects this plan created in ``stage``, and only those.

    An object is deleted only if the ledger says this plan created it (the
    key held nothing before) and it still holds what the plan wrote (same
    ETag, or same SHA-256, read back if the store reports neither). Objects
    that were there before (``SKIP``, ``VERIFY`` found equal, ``CONFLICT``)
    are never touched; objects this plan *replaced* are kept and reported
    (their previous content is gone); objects changed since are kept and
    reported. Deleted items become ``ROLLED_BACK``; the run is recorded.

    Do not run it while a run of the same ledger is going. Items caught
    mid-copy (``COPYING``) are reported as unresolved: ``resume`` first.

    Args:
        ledger: The ledger.
        stage: The stage to roll back.
        destination: The destination store (default: opened from the URL).
        executor: Where deletes run (default: an own thread pool).
        dry_run: Only report what would be checked and deleted.
        limits: Concurrency and retries (default: the plan's).
        reporters: Receive ``DONE`` and ``FAILED`` events.
        store_options: Options to open the destination by URL.

    Returns:
        What was deleted, kept and left unresolved.

    Raises:
        PlanError: No plan in the ledger, or an unknown stage.
    """
    header = ledger.header
    lim = limits or header.limits
    _stage_names(header, stage)
    candidates: list[ItemRecord] = []
    kept: list[tuple[str, str]] = []
    unresolved: list[str] = []
    for rec in ledger.items(stage=stage, state=(*_OURS, _S.FAILED, _S.COPYING)):
        if rec.state is _S.COPYING:
            unresolved.append(rec.item.destination_key)
        elif rec.replaced:
            kept.append(
                (
                    rec.item.destination_key,
                    "replaced an object that was there before; not deleted",
                )
            )
        elif rec.created:
            candidates.append(rec)
    if dry_run:
        return RollbackResult(
            run=None,
            stage=stage,
            deleted=tuple(r.item.destination_key for r in candidates),
            already_gone=(),
            kept=tuple(kept),
            unresolved=tuple(unresolved),
            errors=(),
        )
    ctx = _Context(
        header,
        source=None,
        destination=destination,
        executor=executor,
        concurrency=lim.concurrency,
        store_options=store_options,
        need_source=False,
    )
    run = ledger.start_run("rollback", stages=[stage], limits=serde.unstructure(lim))
    emit = _Emitter(reporters, run)
    deleted: list[str] = []
    gone: list[str] = []
    errors: list[tuple[str, str]] = []

    def make(rec: ItemRecord) -> Task:
        return ctx.task(
            Mode.DELETE,
            rec,
            lim,
            written_digests={"sha256": rec.sha256} if rec.sha256 else {},
            written_etag=rec.written_etag,
        )

    def handle(b: Any, rec: ItemRecord, res: Outcome | Exception) -> None:
        out = res if isinstance(res, Outcome) else _worker_error(rec, res)
        key = rec.item.destination_key
        if out.state is _S.ROLLED_BACK:
            (
                gone if out.reason and out.reason.startswith("already") else deleted
            ).append(key)
            b.transition(
                rec.seq,
                _S.ROLLED_BACK,
                reason=f"rollback: {out.reason}",
                finished=time.time(),
            )
            emit(EventKind.DONE, rec, state=_S.ROLLED_BACK, reason=out.reason)
        elif out.state is _S.FAILED:
            errors.append((key, out.reason or "error"))
            emit(EventKind.FAILED, rec, reason=out.reason)
        else:
            kept.append((key, out.reason or "kept"))

    stop = "interrupted"
    try:
        _simple_loop(ctx, iter(candidates), make, handle, ledger, lim.concurrency)
        stop = "done"
    finally:
        ledger.finish_run(
            run, stop_reason=stop, items=len(deleted) + len(gone), failures=len(errors)
        )
        ctx.close()
    return RollbackResult(
        run=run,
        stage=stage,
        deleted=tuple(sorted(deleted)),
        already_gone=tuple(sorted(gone)),
        kept=tuple(sorted(kept)),
        unresolved=tuple(sorted(unresolved)),
        errors=tuple(sorted(errors)),
    )
