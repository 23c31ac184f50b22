"""The coordinator: runs a plan's items on an executor and records the outcomes.

Concurrency lives here and nowhere else. Workers (threads of this process by
default, or any ``concurrent.futures.Executor``, a Dask cluster included)
move and check bytes and return plain results; only the coordinator writes
the ledger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Final

import attrs

from carmigrate import _html
from carmigrate.errors import PlanError, StorageError
from carmigrate.migrate import serde
from carmigrate.migrate._events import Event, EventKind, Reporter
from carmigrate.migrate._ledger import ItemRecord, Ledger, outcome_fields
from carmigrate.migrate._limits import TokenBucket
from carmigrate.migrate._model import (
    Action,
    ItemState,
    Limits,
    Overwrite,
    PlanHeader,
)
from carmigrate.migrate._plan import Plan, redact_url
from carmigrate.migrate._report import open_items, state_rows
from carmigrate.migrate._scheduler import RUNNABLE as _RUNNABLE
from carmigrate.migrate._scheduler import Scheduler
from carmigrate.migrate._transfer import (
    Mode,
    Outcome,
    StorePair,
    Task,
    run_task,
    run_tasks,
)
from carmigrate.storage import (
    Store,
    SupportsTemporaryCleanup,
    SupportsUploadCleanup,
    UploadCleanup,
    is_local_url,
    open_store,
)

__all__ = ["RunResult", "StoreOptions", "execute", "resume"]

_S = ItemState
_log = logging.getLogger(__name__)
_OURS: Final = (_S.VERIFIED, _S.UNVERIFIABLE, _S.COPIED)
_POLL: Final = 0.25
_GROUP_OBJECT: Final = 2 << 20
"""Objects up to this size are sent to workers in groups (one task each group)."""
_GROUP_ITEMS: Final = 16
_GROUP_BYTES: Final = 8 << 20
"""A group holds at most this many objects and bytes.

Below a few MiB an object's own work (hashing, writing) is smaller than what
each task costs around it: submitting, waiting, two ledger transactions,
all competing for the GIL with the workers. Groups pay that once for up to
``_GROUP_ITEMS`` objects; concurrency still counts objects being worked on.
"""
_STOP_CHECK: Final = 0.5


@attrs.frozen(kw_only=True)
class StoreOptions:
    """Keyword options for opening the plan's stores by URL.

    Used by the coordinator when no store objects are given, and sent to
    every remote worker (Dask, processes), which opens its own stores with
    ``open_store(url, **options)``. Options may hold credentials: they are
    never written to the plan or the ledger.

    Attributes:
        source: Options for the source store.
        destination: Options for the destination store.
    """

    source: Mapping[str, Any] = attrs.field(factory=dict)
    destination: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class RunResult:
    """How a run of [execute][carmigrate.migrate.execute] or [resume][carmigrate.migrate.resume] ended.

    Attributes:
        run: The ledger's run number.
        stop_reason: ``"done"`` (nothing left that this run could do),
            ``"max_items"``, ``"max_bytes"``, ``"max_seconds"``,
            ``"max_failures"`` or ``"stopped"`` (a stop request).
        items: Items this run finished (any outcome).
        bytes: Bytes this run sent to the destination.
        failures: Items this run recorded as failed.
        seconds: Wall-clock duration.
        counts: Items per state in the stages this run covered, afterwards.
        tenant_waits: Seconds each tenant's items were held back by the
            per-tenant limits (tenants never held back are left out).
    """

    run: int
    stop_reason: str
    items: int
    bytes: int
    failures: int
    seconds: float
    counts: Mapping[ItemState, int]
    tenant_waits: Mapping[str, float] = attrs.field(factory=dict)

    @property
    def complete(self) -> bool:
        """The run was not stopped early and no item of the covered stages is
        pending, warming, in flight or unchecked: the run did all it could.
        Failed, conflicting and unmigratable items may remain (see
        ``failures`` and ``counts``); whether the migration is complete is
        [Report.complete][carmigrate.migrate.Report].
        """  # noqa: D205
        open_states = (_S.PENDING, _S.WARMING, _S.COPYING, _S.COPIED)
        return self.stop_reason == "done" and not any(
            self.counts.get(s, 0) for s in open_states
        )

    def _repr_html_(self) -> str:
        """Jupyter's view: how the run ended, whether it is complete (or why not), the counts."""
        h = _html
        if self.complete:
            complete = "yes"
        elif self.stop_reason != "done":
            complete = f"no: stopped early ({self.stop_reason}); resume continues"
        else:
            complete = f"no: {open_items(self.counts)}"
        rate = self.bytes / self.seconds if self.seconds > 0 else None
        pairs: list[tuple[str, object]] = [
            ("stopped because", self.stop_reason),
            ("complete", complete),
            ("items finished", self.items),
            ("failed", self.failures),
            (
                "bytes sent",
                h.Markup(
                    f"{h.nbytes(self.bytes)} in {h.text(h.seconds(self.seconds))}"
                    + (f" ({h.nbytes(round(rate))}/s)" if rate else "")
                ),
            ),
        ]
        parts = [h.facts(pairs), h.table(("state", "items"), state_rows(self.counts))]
        if self.tenant_waits:
            waits = sorted(self.tenant_waits.items(), key=lambda kv: (-kv[1], kv[0]))
            parts += [
                h.heading("Held back by the per-tenant limits"),
                h.table(
                    ("tenant", "seconds"),
                    ((h.code(t), round(w, 3)) for t, w in waits[: h.MAX_ROWS]),
                    total=len(waits),
                ),
            ]
        return h.block(
            h.Markup(f"<b>Run {self.run}</b>: {h.text(self.stop_reason)}"), *parts
        )


# ----------------------------------------------------------------------
# plumbing shared by every kind of run


class _Workers:
    """Submits tasks to the executor and collects their outcomes."""

    def __init__(
        self,
        executor: Executor | None,
        concurrency: int,
        stores: StorePair | None,
        progress: queue.SimpleQueue[tuple[int, int]] | None,
    ) -> None:
        self.owned = executor is None
        self.executor: Executor = (
            ThreadPoolExecutor(
                max_workers=concurrency, thread_name_prefix="carmigrate-worker"
            )
            if executor is None
            else executor
        )
        self.stores = stores
        self.progress = progress
        # a future's record, or the records of a group (a tuple)
        self.inflight: dict[Future[Any], ItemRecord | tuple[ItemRecord, ...]] = {}
        # finished futures arrive here (cheaper than concurrent.futures.wait,
        # which installs a waiter on every pending future at every call)
        self.done: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()

    def submit(self, task: Task, record: ItemRecord) -> None:
        self._submit(run_task, task, record)

    def submit_group(
        self, tasks: Sequence[Task], records: Sequence[ItemRecord]
    ) -> None:
        """One task for several objects; each gets its own outcome."""
        self._submit(run_tasks, list(tasks), tuple(records))

    def _submit(
        self,
        fn: Callable[..., Any],
        work: Any,
        records: ItemRecord | tuple[ItemRecord, ...],
    ) -> None:
        if self.stores is not None:
            put = self.progress.put if self.progress is not None else None
            future = self.executor.submit(
                fn, work, self.stores, (lambda s, n: put((s, n))) if put else None
            )
        else:
            future = self.executor.submit(fn, work)
        self.inflight[future] = records
        future.add_done_callback(self.done.put)

    def wait(self, timeout: float) -> list[tuple[ItemRecord, Outcome | BaseException]]:
        if not self.inflight:
            return []
        try:
            done = [self.done.get(timeout=max(timeout, 0.0))]
        except queue.Empty:
            # a future taken from the queue by a call that was interrupted
            # before recording it is still done: look at them all
            done = [future for future in self.inflight if future.done()]
            if not done:
                return []
        while True:
            try:
                done.append(self.done.get_nowait())
            except queue.Empty:
                break
        out: list[tuple[ItemRecord, Outcome | BaseException]] = []
        for future in done:
            record = self.inflight.pop(future, None)
            if record is None:  # cancelled by cancel_pending
                continue
            try:
                result: Any = future.result()
            except BaseException as e:  # sorted out by the caller
                result = e
            if not isinstance(record, tuple):
                out.append((record, result))
            elif isinstance(result, list):
                out.extend(zip(record, result, strict=True))
            else:  # the group's worker died: every object of it
                out.extend((r, result) for r in record)
        out.sort(key=lambda r: r[0].seq)
        return out

    def cancel_pending(self) -> None:
        for future in list(self.inflight):
            if future.cancel():
                del self.inflight[future]

    def close(self) -> None:
        if self.owned:
            self.executor.shutdown(wait=True, cancel_futures=True)


class _Emitter:
    def __init__(self, reporters: Iterable[Reporter], run: int) -> None:
        self.reporters = list(reporters)
        self.run = run

    def __call__(
        self, kind: EventKind, record: ItemRecord | None = None, **fields: Any
    ) -> None:
        if not self.reporters:
            return
        if record is not None:
            fields.setdefault("seq", record.seq)
            fields.setdefault("key", record.item.key)
            fields.setdefault("size", record.item.size)
        event = Event(kind=kind, time=time.time(), run=self.run, **fields)
        for reporter in list(self.reporters):
            try:
                reporter(event)
            except Exception as e:  # a reporter must not stop a migration
                self.reporters.remove(reporter)
                warnings.warn(
                    f"reporter {reporter!r} failed and gets no more events: {e!r}",
                    RuntimeWarning,
                    stacklevel=2,
                )


def _writable(
    url: str, options: Iterable[tuple[str, Any]] | Mapping[str, Any]
) -> dict[str, Any]:
    """Options to open a destination with: a local folder is created if missing."""
    opts = dict(options)
    if is_local_url(url):
        opts.setdefault("create", True)
    return opts


def remove_temporary_of_crash(ledger: Ledger, destination: Store) -> int:
    """Remove what writers killed with the last run left of the items it caught mid-copy.

    Items the ledger holds ``COPYING`` were being written when a run died;
    their writers are gone (this run holds the ledger), so the temporary
    data of their keys goes, whatever its age, without searching the rest
    of the destination. A clean stop leaves no such item: nothing is done.
    What could not be removed is recorded in the ledger (see
    [Ledger.leftovers][carmigrate.migrate.Ledger.leftovers]), where
    ``status`` reports it; a later cleanup that removes it clears it.

    Returns:
        Temporary items removed.
    """
    if not isinstance(destination, SupportsTemporaryCleanup):
        return 0
    # the keys of items caught mid-copy, and those of an earlier cleanup
    # that could not remove everything (tried again)
    keys = sorted(
        {r.item.destination_key for r in ledger.items(state=ItemState.COPYING)}
        | set(ledger.leftover_keys(_TEMPORARY))
    )
    if not keys:
        return 0
    result = destination.remove_temporary(0, keys=keys)
    ledger.record_leftovers(_TEMPORARY, result.left, keys=keys if result.left else ())
    _log.info(
        "removed %d temporary files of %d items caught mid-copy",
        result.removed,
        len(keys),
    )
    for name, why in result.left:
        _log.warning("a temporary file stays at the destination: %s (%s)", name, why)
    return result.removed


_TEMPORARY: Final = "temporary file"
_UPLOAD: Final = "pending upload"


_WRITTEN_AGAIN: Final = (
    ItemState.PENDING,
    ItemState.WARMING,
    ItemState.COPYING,
    ItemState.FAILED,
)
"""States of items a resume may write (again)."""


def abort_stray_uploads(ledger: Ledger, destination: Store) -> UploadCleanup | None:
    """Abort the pending uploads left under the keys this plan writes.

    For a destination with [SupportsUploadCleanup][carmigrate.storage.SupportsUploadCleanup]
    (S3): the keys of items the plan copies (and of those it compares, if
    it may overwrite them). Items that will be written again keep the one
    upload their next write continues; all other uploads of those keys go.
    Keys the plan does not write are left alone. Listing failures are
    logged, not raised.

    Returns:
        What was aborted, kept and could not be aborted; ``None`` when the
        destination does not implement the Protocol or cannot list its
        pending uploads.
    """
    if not isinstance(destination, SupportsUploadCleanup):
        return None
    actions = [Action.COPY]
    if ledger.header.transfer.overwrite is Overwrite.IF_DIFFERENT:
        actions += [Action.VERIFY, Action.CONFLICT]
    done = [s for s in ItemState if s not in _WRITTEN_AGAIN]
    try:
        result = destination.abort_uploads(
            (r.item.destination_key for r in ledger.items(action=actions, state=done)),
            keep_resumable=(
                r.item.destination_key
                for r in ledger.items(action=actions, state=_WRITTEN_AGAIN)
            ),
        )
    except StorageError as e:
        _log.warning("could not list the destination's pending uploads: %s", e)
        return None
    if result.aborted or result.failed:
        _log.info(
            "aborted %d pending uploads under the plan's keys (%d kept to continue)",
            len(result.aborted),
            len(result.kept),
        )
    for upload, reason in result.failed:
        _log.warning("could not abort the pending upload of %r: %s", upload.key, reason)
    ledger.record_leftovers(
        _UPLOAD,
        [(f"{u.key} (upload {u.upload_id})", reason) for u, reason in result.failed],
    )
    return result


def _check_store(store: Store, url: str, what: str) -> None:
    if redact_url(store.url) != url:
        raise PlanError(
            f"the {what} store is {store.url}, but the plan's {what} is {url}"
        )


class _Context:
    """Stores, executor and options of one run."""

    def __init__(
        self,
        header: PlanHeader,
        *,
        source: Store | None,
        destination: Store | None,
        executor: Executor | None,
        concurrency: int,
        store_options: StoreOptions | None,
        need_source: bool = True,
        progress: bool = True,
    ) -> None:
        options = store_options or StoreOptions()
        self.options = options
        self.opened: list[Store] = []
        self.in_process = executor is None or isinstance(executor, ThreadPoolExecutor)
        self.progress: queue.SimpleQueue[tuple[int, int]] | None = None
        pair: StorePair | None = None
        if source is not None:
            _check_store(source, header.source, "source")
        if destination is not None:
            _check_store(destination, header.destination, "destination")
        if self.in_process:
            for given, url, what in (
                (source if need_source else destination, header.source, "source"),
                (destination, header.destination, "destination"),
            ):
                if given is None and url.startswith("memory://"):
                    raise PlanError(
                        f"the {what} is {url}: a memory store cannot be opened again by "
                        f"URL; pass the store object as {what}="
                    )
            src = source
            if src is None and need_source:
                src = open_store(header.source, **dict(options.source))
                self.opened.append(src)
            dst = destination
            if dst is None:
                dst = open_store(
                    header.destination,
                    **_writable(header.destination, options.destination),
                )
                self.opened.append(dst)
            pair = StorePair(src if src is not None else dst, dst)
            if progress:
                self.progress = queue.SimpleQueue()
        self.workers = _Workers(executor, concurrency, pair, self.progress)
        self.header = header

    def task(
        self, mode: Mode, record: ItemRecord, limits: Limits, **fields: Any
    ) -> Task:
        h = self.header
        remote: dict[str, Any] = {}
        if not self.in_process:
            remote = {
                "source_url": h.source,
                "destination_url": h.destination,
                "source_options": tuple(sorted(self.options.source.items())),
                "destination_options": tuple(sorted(self.options.destination.items())),
            }
        return Task(
            mode=mode,
            seq=record.seq,
            item=record.item,
            verification=h.verification,
            transfer=h.transfer,
            attempts=limits.retries + 1,
            base_delay=limits.retry_base_delay,
            max_delay=limits.retry_max_delay,
            **remote,
            **fields,
        )

    def close(self) -> None:
        self.workers.close()
        for store in self.opened:
            with contextlib.suppress(Exception):
                store.close()


def _groupable(rec: ItemRecord) -> bool:
    """Whether ``rec`` may share a task with other small objects."""
    return (
        rec.item.size <= _GROUP_OBJECT
        and not rec.item.cold
        and rec.state is not _S.WARMING
    )


def _open_group(
    units: list[list[tuple[Task, ItemRecord, ItemState | None]]], most: int
) -> bool:
    """Whether the last unit is a group of small objects with room left."""
    return bool(units) and _groupable(units[-1][-1][1]) and len(units[-1]) < most


def _fits(
    units: list[list[tuple[Task, ItemRecord, ItemState | None]]],
    most: int,
    group_bytes: int,
    rec: ItemRecord,
) -> bool:
    """Whether ``rec`` can join the last unit's group."""
    return (
        _open_group(units, most)
        and _groupable(rec)
        and group_bytes + rec.item.size <= _GROUP_BYTES
    )


def _stage_names(header: PlanHeader, stages: str | Sequence[str] | None) -> list[str]:
    names = list(header.stage_names())
    if stages is None:
        return names
    wanted = [stages] if isinstance(stages, str) else list(stages)
    unknown = [s for s in wanted if s not in names]
    if unknown:
        raise PlanError(f"unknown stages {unknown}; the plan has {names}")
    return [n for n in names if n in wanted]


def _outcome_fields(out: Outcome, now: float) -> dict[str, Any]:
    return {**outcome_fields(out, out.state), "finished": now}


# ----------------------------------------------------------------------
# execute / resume


class _Executor:
    """The coordinator of one execute or resume run.

    State: the ledger (sole writer), the workers in flight, the cold items
    waiting for restores, the token buckets and the run's counters.
    """

    def __init__(
        self,
        ledger: Ledger,
        ctx: _Context,
        *,
        kind: str,
        stages: list[str],
        limits: Limits,
        reporters: Iterable[Reporter],
        retry_failed: bool,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.ledger = ledger
        self.ctx = ctx
        self.header = ctx.header
        self.kind = kind
        self.stages = stages
        self.limits = limits
        self.retry_failed = retry_failed
        self.clock = clock
        self.sleep = sleep
        self.items_bucket = (
            TokenBucket(limits.items_per_second, clock=clock)
            if limits.items_per_second
            else None
        )
        self.bytes_bucket = (
            TokenBucket(limits.bytes_per_second, clock=clock)
            if limits.bytes_per_second
            else None
        )
        # per tenant (an item's cohort): buckets made on first sight, items
        # held back until their tenant's tokens are due, and the time each
        # tenant was held back
        self.tenant_limited = bool(
            limits.tenant_items_per_second or limits.tenant_bytes_per_second
        )
        self.tenant_buckets: dict[
            str, tuple[TokenBucket | None, TokenBucket | None]
        ] = {}
        self.sched = Scheduler(ledger, limits.restore_batch)
        self.run = ledger.start_run(
            kind, stages=stages, limits=serde.unstructure(limits)
        )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ledger.stop_path())  # a request made while nothing ran
        self.emit = _Emitter(reporters, self.run)
        self.started_at = clock()
        self.deadline = (
            None if limits.max_seconds is None else self.started_at + limits.max_seconds
        )
        self.items_started = 0
        self.bytes_started = 0
        self.items_done = 0
        self.bytes_moved = 0
        self.failures = 0
        self.stopping: str | None = None
        self.next_stop_check = 0.0
        self.stop_path = ledger.stop_path()
        self.restore_poll = self.header.transfer.restore_poll
        self.overwrite = self.header.transfer.overwrite is Overwrite.IF_DIFFERENT
        self.events: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.quiet = False

    # -- selection ------------------------------------------------------

    def _wanted(self, rec: ItemRecord) -> bool:
        if rec.state is _S.FAILED:
            return self.retry_failed or bool(rec.transient)
        if rec.item.action is Action.CONFLICT and not self.overwrite:
            return False
        return rec.item.action in (Action.COPY, Action.VERIFY, Action.CONFLICT)

    def _mode(self, rec: ItemRecord) -> Mode:
        if rec.state is _S.COPIED:
            return Mode.CHECK
        action = rec.item.action
        if action is Action.VERIFY:
            return Mode.COMPARE
        if action is Action.CONFLICT:
            return Mode.REPLACE
        return Mode.COPY

    # -- limits -----------------------------------------------------------

    def _check_stop(self) -> None:
        if self.stopping is not None:
            return
        now = self.clock()
        lim = self.limits
        if self.deadline is not None and now >= self.deadline:
            self.stopping = "max_seconds"
        elif lim.max_items is not None and self.items_started >= lim.max_items:
            self.stopping = "max_items"
        elif lim.max_bytes is not None and self.bytes_started >= lim.max_bytes:
            self.stopping = "max_bytes"
        elif lim.max_failures is not None and self.failures >= lim.max_failures:
            self.stopping = "max_failures"
        elif now >= self.next_stop_check:
            self.next_stop_check = now + _STOP_CHECK
            if os.path.exists(self.stop_path):
                self.stopping = "stopped"
                with contextlib.suppress(OSError):
                    os.unlink(self.stop_path)

    def _stopped(self) -> bool:
        self._check_stop()
        return self.stopping is not None

    def _rate_wait(self, size: int) -> float:
        waits = [0.0]
        if self.items_bucket is not None:
            waits.append(self.items_bucket.wait_time(1))
        if self.bytes_bucket is not None:
            waits.append(self.bytes_bucket.wait_time(size))
        return max(waits)

    def _take(self, size: int) -> None:
        if self.items_bucket is not None:
            self.items_bucket.take(1)
        if self.bytes_bucket is not None:
            self.bytes_bucket.take(size)
        self.items_started += 1
        self.bytes_started += size

    def _tenant(self, tenant: str) -> tuple[TokenBucket | None, TokenBucket | None]:
        pair = self.tenant_buckets.get(tenant)
        if pair is None:
            lim, clock = self.limits, self.clock
            pair = self.tenant_buckets[tenant] = (
                TokenBucket(lim.tenant_items_per_second, clock=clock)
                if lim.tenant_items_per_second
                else None,
                TokenBucket(lim.tenant_bytes_per_second, clock=clock)
                if lim.tenant_bytes_per_second
                else None,
            )
        return pair

    def _tenant_wait(self, rec: ItemRecord) -> float:
        """Seconds until the item's tenant may start it (0: its tokens are taken now)."""
        items, size = self._tenant(rec.item.cohort)
        wait = max(
            0.0 if items is None else items.wait_time(1),
            0.0 if size is None else size.wait_time(rec.item.size),
        )
        if wait <= 0:
            if items is not None:
                items.take(1)
            if size is not None:
                size.take(rec.item.size)
        return wait

    # -- the loop ---------------------------------------------------------

    def run_all(self) -> RunResult:
        selected_items = selected_bytes = 0
        for stage, state, count, nbytes, _ in self.ledger.totals(
            group_by=("stage", "state")
        ):
            if stage in self.stages and ItemState(state) in _RUNNABLE:
                selected_items += count
                selected_bytes += nbytes
        self.emit(EventKind.RUN_STARTED, items=selected_items, bytes=selected_bytes)
        _log.info(
            "%s run %d of %s: %d items, %d bytes to do in stages %s",
            self.kind,
            self.run,
            self.ledger.path,
            selected_items,
            selected_bytes,
            ", ".join(self.stages),
        )
        stop_reason = "interrupted"
        try:
            for stage in self.stages:
                self._stage(stage)
                if self.stopping is not None:
                    break
            stop_reason = self.stopping or "done"
        except BaseException:
            self._interrupted()
            raise
        finally:
            self.ledger.finish_run(
                self.run,
                stop_reason=stop_reason,
                items=self.items_done,
                bytes=self.bytes_moved,
                failures=self.failures,
            )
            with contextlib.suppress(BaseException):
                self.emit(
                    EventKind.RUN_FINISHED,
                    reason=stop_reason,
                    items=self.items_done,
                    bytes=self.bytes_moved,
                )
        _log.info(
            "run %d stopped (%s): %d items finished, %d failed, %d bytes sent",
            self.run,
            stop_reason,
            self.items_done,
            self.failures,
            self.bytes_moved,
        )
        return RunResult(
            run=self.run,
            stop_reason=stop_reason,
            items=self.items_done,
            bytes=self.bytes_moved,
            failures=self.failures,
            seconds=self.clock() - self.started_at,
            counts=self.ledger.counts(stage=self.stages),
            tenant_waits=dict(self.sched.tenant_waits),
        )

    def _interrupted(self) -> None:
        """Record what finished; items cancelled or still running stay COPYING."""
        workers = self.ctx.workers
        workers.cancel_pending()
        self.quiet = True  # item events would reach a reporter that may raise again
        with contextlib.suppress(BaseException):
            while workers.inflight:
                self._record_all(workers.wait(_POLL))

    def _record_all(
        self, results: list[tuple[ItemRecord, Outcome | BaseException]]
    ) -> None:
        """Record outcomes in one transaction, then emit their events.

        A worker that died of a ``BaseException`` (not an ``Exception``) is
        re-raised after the others are recorded: its item stays ``COPYING``.
        """
        crash: BaseException | None = None
        with self.ledger.batch() as b:
            for rec, res in results:
                if isinstance(res, Outcome):
                    self._record(b, rec, res)
                elif isinstance(res, Exception):
                    self._record(b, rec, _worker_error(rec, res))
                elif crash is None:
                    crash = res
        events, self.events = self.events, []
        if not self.quiet:
            for args, kwargs in events:
                self.emit(*args, **kwargs)
        if crash is not None:
            raise crash

    def _later(self, *args: Any, **kwargs: Any) -> None:
        self.events.append((args, kwargs))

    def _stage(self, stage: str) -> None:
        """Run one stage: turns of filling the workers, then waiting for results."""
        sched = self.sched
        sched.start_stage(stage)
        workers = self.ctx.workers
        while True:
            self._drain_progress()
            self._check_stop()
            wait_for = _POLL
            if self.stopping is None:
                wait_for = self._fill(wait_for)
            if not workers.inflight:
                if self._idle(wait_for):
                    return
                continue
            for due in (sched.first_warming_due(), sched.first_paced_due()):
                if due is not None:
                    wait_for = min(wait_for, max(0.0, due - self.clock()))
            results = workers.wait(wait_for)
            if results:
                self._drain_progress()
                self._record_all(results)

    def _fill(self, wait_for: float) -> float:
        """One turn: hand free workers their next items; returns how long to wait.

        A unit of work is one task, or a group of small objects' tasks: when
        every worker has one, small objects may still join the group being
        made. A failure limit counts failures as they come back, and a group
        would bring several at once and overshoot it, so then every object is
        its own task; so too on remote workers, which may run a task again
        after a worker died, by then without knowing what it wrote.
        """
        sched = self.sched
        workers = self.ctx.workers
        concurrency = self.limits.concurrency
        group_most = (
            _GROUP_ITEMS
            if self.limits.max_failures is None and self.ctx.in_process
            else 1
        )
        units: list[list[tuple[Task, ItemRecord, ItemState | None]]] = []
        group_bytes = 0
        now = self.clock()
        sched.release_paced(now)
        while True:
            full = len(workers.inflight) + len(units) >= concurrency
            if full and not _open_group(units, group_most):
                break
            if self._stopped():
                break
            due = None if full else sched.due_restore(now)
            if due is not None:
                units.append(
                    [(self.ctx.task(Mode.RESTORE, due, self.limits), due, None)]
                )
                continue
            rec = sched.waiting()
            if rec is None and not sched.exhausted:
                rec = sched.fetch()
                if rec is None or not self._wanted(rec):
                    continue
                if full and not _fits(units, group_most, group_bytes, rec):
                    sched.lookahead = rec  # taken again next turn, in full
                    break
                if rec.state is not _S.COPIED and (
                    rec.item.cold or rec.state is _S.WARMING
                ):
                    if not sched.restore_room():
                        sched.deferred_cold = True
                        continue
                    sched.restoring.add(rec.seq)
                    new_state = None if rec.state is _S.WARMING else _S.WARMING
                    task = self.ctx.task(Mode.RESTORE, rec, self.limits)
                    units.append([(task, rec, new_state)])
                    self.emit(EventKind.WARMING, rec)
                    continue
                self.emit(EventKind.QUEUED, rec)
            if rec is None:
                break
            if full and not _fits(units, group_most, group_bytes, rec):
                break  # a ready or held record: it stays where it is
            if self.tenant_limited and rec is not sched.held:
                tenant_wait = self._tenant_wait(rec)
                if tenant_wait > 0:
                    sched.hold_back(rec, tenant_wait, now)
                    continue
            wait = self._rate_wait(rec.item.size)
            if wait > 0:
                sched.hold(rec)
                wait_for = min(wait_for, wait)
                break
            sched.started(rec)
            self._take(rec.item.size)
            task = self.ctx.task(
                self._mode(rec),
                rec,
                self.limits,
                maybe_ours=rec.state in (_S.COPYING, _S.FAILED) or rec.attempts > 0,
                created=rec.created,
                written_etag=rec.written_etag,
            )
            entry = (task, rec, None if rec.state is _S.COPIED else _S.COPYING)
            if full:  # it fits (checked above): into the group
                units[-1].append(entry)
                group_bytes += rec.item.size
            else:
                units.append([entry])
                group_bytes = rec.item.size
        if units:
            self._submit(units)
        return wait_for

    def _submit(
        self, units: list[list[tuple[Task, ItemRecord, ItemState | None]]]
    ) -> None:
        """Record the units' items as started (one transaction), then hand them out."""
        workers = self.ctx.workers
        started = time.time()
        with self.ledger.batch() as b:
            for unit in units:
                for _, rec, new_state in unit:
                    if new_state is not None:
                        b.transition(rec.seq, new_state, started=started)
        for unit in units:
            if len(unit) == 1:
                workers.submit(unit[0][0], unit[0][1])
            else:
                workers.submit_group([t for t, _, _ in unit], [r for _, r, _ in unit])
            for task, rec, _ in unit:
                if task.mode is not Mode.RESTORE:
                    self.emit(EventKind.STARTED, rec)

    def _idle(self, wait_for: float) -> bool:
        """Nothing in flight: wait for what is due, or say the stage is done."""
        sched = self.sched
        if self.stopping is not None:
            return True
        if sched.waiting() is not None:
            self.sleep(min(wait_for, _POLL))
            return False
        for due in (sched.first_paced_due(), sched.first_warming_due()):
            if due is not None:
                pause = due - self.clock()
                if pause > 0:
                    self.sleep(min(pause, _STOP_CHECK))
                return False
        if sched.exhausted and sched.rescan_deferred():
            return False
        return sched.exhausted

    def _drain_progress(self) -> None:
        q = self.ctx.progress
        if q is None:
            return
        sums: dict[int, int] = {}
        while True:
            try:
                seq, n = q.get_nowait()
            except queue.Empty:
                break
            sums[seq] = sums.get(seq, 0) + n
        for seq, n in sums.items():
            self.emit(EventKind.BYTES, seq=seq, bytes=n)

    def _record(self, b: Any, rec: ItemRecord, out: Outcome) -> None:
        now = time.time()
        seq = rec.seq
        if out.mode is Mode.RESTORE:
            self.sched.restoring.discard(seq)
            if out.state is _S.FAILED:
                b.transition(
                    seq,
                    _S.FAILED,
                    attempts_inc=out.attempts,
                    **_outcome_fields(out, now),
                )
                self._finished(rec, out)
            elif out.ready:
                self.sched.ready.append(attrs.evolve(rec, state=_S.WARMING))
            else:
                self.sched.warming[seq] = (self.clock() + self.restore_poll, rec)
            return
        if out.state is _S.WARMING:
            b.transition(seq, _S.WARMING, reason=out.reason)
            self._later(EventKind.WARMING, rec, reason=out.reason)
            self.sched.warming[seq] = (
                self.clock(),
                attrs.evolve(rec, state=_S.WARMING),
            )
            return
        assert out.state is not None
        b.transition(
            seq, out.state, attempts_inc=out.attempts, **_outcome_fields(out, now)
        )
        self._finished(rec, out)

    def _finished(self, rec: ItemRecord, out: Outcome) -> None:
        self.items_done += 1
        self.bytes_moved += out.bytes_moved
        if out.state is _S.FAILED:
            self.failures += 1
            self._later(
                EventKind.FAILED,
                rec,
                state=out.state,
                reason=out.reason,
                offset=out.offset,
            )
        else:
            self._later(
                EventKind.DONE,
                rec,
                state=out.state,
                bytes=out.bytes_moved,
                reason=out.reason,
            )


def _worker_error(rec: ItemRecord, e: Exception) -> Outcome:
    return Outcome(
        seq=rec.seq,
        mode=Mode.COPY,
        state=_S.FAILED,
        attempts=1,
        reason=f"worker error: {type(e).__name__}: {e}",
        transient=True,
    )


def _run_items(
    ledger: Ledger,
    *,
    kind: str,
    source: Store | None,
    destination: Store | None,
    executor: Executor | None,
    stages: str | Sequence[str] | None,
    limits: Limits | None,
    reporters: Iterable[Reporter],
    store_options: StoreOptions | None,
    retry_failed: bool,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> RunResult:
    header = ledger.header
    lim = limits or header.limits
    names = _stage_names(header, stages)
    reporters = list(reporters)
    ctx = _Context(
        header,
        source=source,
        destination=destination,
        executor=executor,
        concurrency=lim.concurrency,
        store_options=store_options,
        progress=bool(reporters),  # byte counts only matter to a reporter
    )
    try:
        stores = ctx.workers.stores
        if kind == "resume" and stores is not None:
            remove_temporary_of_crash(ledger, stores.destination)
            abort_stray_uploads(ledger, stores.destination)
        coordinator = _Executor(
            ledger,
            ctx,
            kind=kind,
            stages=names,
            limits=lim,
            reporters=reporters,
            retry_failed=retry_failed,
            clock=clock,
            sleep=sleep,
        )
        return coordinator.run_all()
    finally:
        ctx.close()


def execute(
    plan: Plan,
    ledger: Ledger,
    *,
    source: Store | None = None,
    destination: Store | None = None,
    executor: Executor | None = None,
    stages: str | Sequence[str] | None = None,
    limits: Limits | None = None,
    reporters: Iterable[Reporter] = (),
    store_options: StoreOptions | None = None,
    retry_failed: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RunResult:
    """Run a plan's items, recording every outcome in the ledger.

    Attaches the plan to the ledger first (see
    [Ledger.attach][carmigrate.migrate.Ledger.attach]); a ledger of another
    plan is refused. Then runs the selected stages in plan order, one after
    the other, each item in plan order:

    - ``COPY``: the source object streams once into an atomic if-absent
      write at the destination, through MD5/SHA-256, the CAR block check and
      the commP hasher as the policy asks; when the last byte has passed,
      everything is compared with what the source vouches for, and on any
      mismatch the write is abandoned: nothing appears at the destination
      and the item is ``FAILED`` with the reason and the byte offset. With
      ``transfer.server_side_copy`` (and a destination that can), the server
      copies and the destination is read once to check; a failing object is
      deleted again.
    - ``VERIFY``: both sides are read and compared (``VERIFIED`` or
      ``CONFLICT``); with ``overwrite=IF_DIFFERENT`` a different object is
      replaced instead.
    - ``CONFLICT``: left alone unless ``overwrite=IF_DIFFERENT``.
    - cold sources are restored first, in batches of
      ``limits.restore_batch`` (state ``WARMING``), and copied when readable.

    Transient errors are retried with exponential backoff and full jitter
    (``limits.retries``); other errors fail the item and the run goes on.
    Limits (rates, ``max_items``, ``max_bytes``, ``max_seconds``,
    ``max_failures``) or a stop request
    ([Ledger.request_stop][carmigrate.migrate.Ledger.request_stop]) stop
    the run cleanly: nothing new starts, items in flight finish and are
    recorded. If the coordinator is interrupted (``KeyboardInterrupt``, a
    reporter raising, a worker killed by a ``BaseException``), items in
    flight stay ``COPYING``; ``resume`` redoes them from scratch.

    Workers: a thread pool of ``limits.concurrency`` threads by default,
    sharing ``source``/``destination`` (or stores opened from the plan's
    URLs with ``store_options``). With any other ``executor`` (a
    ``ProcessPoolExecutor``, or ``distributed.Client.get_executor()``),
    every worker opens its own stores from the plan's URLs and
    ``store_options`` and returns plain results.

    Args:
        plan: The plan.
        ledger: Its ledger (a new file, or one already attached to ``plan``).
        source: The source store, for in-process workers (its URL must be
            the plan's).
        destination: The destination store, likewise.
        executor: Where items run (default: an own thread pool).
        stages: Stage name(s) to run (default: all, in order).
        limits: Limits of this run (default: the plan's).
        reporters: Callables that get every [Event][carmigrate.migrate.Event].
        store_options: Options to open stores by URL.
        retry_failed: Also retry items that failed permanently before.
        clock: Monotonic clock (tests inject one).
        sleep: Sleep function (tests inject one).

    Returns:
        How the run ended.

    Raises:
        PlanError: The ledger belongs to another plan, unknown stages, or a
            store whose URL is not the plan's.
        StorageError: A store could not be opened.
    """
    ledger.attach(plan)
    return _run_items(
        ledger,
        kind="execute",
        source=source,
        destination=destination,
        executor=executor,
        stages=stages,
        limits=limits,
        reporters=reporters,
        store_options=store_options,
        retry_failed=retry_failed,
        clock=clock,
        sleep=sleep,
    )


def resume(
    ledger: Ledger,
    *,
    source: Store | None = None,
    destination: Store | None = None,
    executor: Executor | None = None,
    stages: str | Sequence[str] | None = None,
    limits: Limits | None = None,
    reporters: Iterable[Reporter] = (),
    store_options: StoreOptions | None = None,
    retry_failed: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RunResult:
    """Continue the plan recorded in ``ledger`` where it stopped.

    Needs only the ledger (it holds the plan's header and items; no store is
    listed again). ``VERIFIED``, ``UNVERIFIABLE``, ``SKIPPED``, ``CONFLICT``
    and ``ROLLED_BACK`` items are left alone. Items caught ``COPYING`` are
    redone from scratch (writes are atomic, so nothing partial is visible;
    an object a lost attempt did publish is recognised by its content and
    recorded as created by this plan). ``WARMING`` items go back to waiting
    for their restores, ``COPIED`` items are only checked, and ``FAILED``
    items are retried if the failure was transient (all of them with
    ``retry_failed``). If items were caught ``COPYING`` and the destination
    keeps temporary files of its own (it implements
    [SupportsTemporaryCleanup][carmigrate.storage.SupportsTemporaryCleanup],
    as a local folder does), the temporary files of those items' keys (left
    by the writers the crash killed) are deleted first, whatever their age;
    [verify][carmigrate.migrate.verify] does the same. On a destination with
    [SupportsUploadCleanup][carmigrate.storage.SupportsUploadCleanup] (S3),
    pending uploads under the keys the plan writes are aborted first too,
    except the one each item still to be written would continue; uploads
    under other keys are left alone.
    Arguments as for [execute][carmigrate.migrate.execute].

    Raises:
        PlanError: The ledger has no plan, unknown stages, or a store whose
            URL is not the plan's.
    """
    return _run_items(
        ledger,
        kind="resume",
        source=source,
        destination=destination,
        executor=executor,
        stages=stages,
        limits=limits,
        reporters=reporters,
        store_options=store_options,
        retry_failed=retry_failed,
        clock=clock,
        sleep=sleep,
    )
