"""The planner: list both stores, join the listings, classify and encode every item.

[plan][carmigrate.migrate.plan] streams the source and destination listings
in key order through one merge-join and writes each item's canonical line
(with the encoder generated from ``PlanItem``'s declaration) to the plan file
as it goes, so memory stays bounded however many objects there are.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import queue
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.errors import InvalidKey, PlanError
from carmigrate.migrate import serde
from carmigrate.migrate._diff import _SAME, compare
from carmigrate.migrate._listing import (
    DEFAULT_RUN_SIZE,
    ListingEntry,
    check_sorted,
    external_sort,
    iter_sorted_listing,
    to_entries,
)
from carmigrate.migrate._model import (
    Action,
    CohortRule,
    IdKind,
    IdRule,
    Limits,
    PlanHeader,
    PlanItem,
    Stage,
    StageTotal,
    TransferPolicy,
    VerificationPolicy,
)
from carmigrate.migrate._plan import _WRITE_BATCH, Plan, _totals, redact_url
from carmigrate.migrate._schema import digests_json
from carmigrate.storage import SupportsFullListing, Unmigratable, capabilities_of
from carmigrate.storage.lowlevel import keys_to_check, validate_key

if TYPE_CHECKING:
    from carmigrate.storage import ObjectInfo, Store

__all__ = ["plan"]


def _resolve_stages(stages: Sequence[Stage]) -> tuple[Stage, ...]:
    out = tuple(stages)
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise PlanError(f"stage names must be unique, got {names}")
    if not any("*" in s.cohorts for s in out):
        name = "rest"
        while name in names:
            name += "_"
        out = (*out, Stage(name, ("*",)))
    return out


class _Stager:
    """Cohort → stage, cached (cohorts repeat across many keys)."""

    __slots__ = ("_stages", "cache")

    def __init__(self, stages: tuple[Stage, ...]) -> None:
        self._stages = stages
        self.cache: dict[str, str] = {}

    def __call__(self, cohort: str) -> str:
        name = self.cache.get(cohort)
        if name is None:
            name = next(s.name for s in self._stages if s.matches(cohort))
            if len(self.cache) > 1_000_000:
                self.cache.clear()
            self.cache[cohort] = name
        return name


def _url_of(store: Store | str) -> str:
    return store if isinstance(store, str) else store.url


def plan(
    source: Store | str,
    destination: Store | str,
    *,
    prefix: str = "",
    stages: Sequence[Stage] = (),
    cohorts: CohortRule | None = None,
    verification: VerificationPolicy | None = None,
    transfer: TransferPolicy | None = None,
    limits: Limits | None = None,
    ids: IdRule | None = None,
    path: str | os.PathLike[str] | None = None,
    source_listing: Iterable[ObjectInfo | ListingEntry] | None = None,
    destination_listing: Iterable[ObjectInfo | ListingEntry] | None = None,
    presorted: bool = False,
    run_size: int = DEFAULT_RUN_SIZE,
    temp_dir: str | os.PathLike[str] | None = None,
) -> Plan:
    """Plan a migration from ``source`` to ``destination``.

    Lists both stores under ``prefix`` (in key order: see
    [iter_sorted_listing][carmigrate.migrate.iter_sorted_listing]), joins
    the listings ([diff][carmigrate.migrate.diff]) and gives every key an
    action, a cohort, a stage and, with an ID rule, its old and new id.
    Nothing is read or written in either store. Memory is bounded: with
    ``path``, items stream to the plan file (a temporary file next to it
    while planning, renamed at the end), so a plan of ten million items
    needs no more memory than one of ten.

    Args:
        source: The source store, or its URL when ``source_listing`` is given.
        destination: The destination store, or its URL when
            ``destination_listing`` is given.
        prefix: Only keys starting with this.
        stages: Ordered stages. If no stage has the cohort pattern ``"*"``, a
            last stage ``"rest"`` takes the items no stage claims. Default:
            one stage ``"all"``.
        cohorts: How cohorts are computed (default: one cohort ``""``).
        verification: Checks to run (default
            [VerificationPolicy()][carmigrate.migrate.VerificationPolicy]).
        transfer: How to move and what may be replaced.
        limits: Default limits of a run (a run may override them).
        ids: The ID rule. A ``UUID`` rule without a namespace gets a random
            one, recorded in the plan.
        path: Write the plan file here and return a file-backed plan;
            otherwise the items are kept in memory.
        source_listing: Use this listing instead of listing ``source`` (an
            inventory report, a database export).
        destination_listing: Likewise for the destination.
        presorted: The given listings are already in ascending key order
            (checked as they stream); otherwise they are sorted externally.
        run_size: Entries per in-memory run of the external sort.
        temp_dir: Where the external sort spills.

    Returns:
        The plan.

    Raises:
        PlanError: A listing is out of order or repeats a key, two source
            keys map to one destination key, stage names repeat, or an ID
            rule cannot derive an id. Nothing is written to ``path``.
        StorageError: Listing a store failed.
    """
    with _no_cyclic_gc():
        return _plan(
            source,
            destination,
            prefix=prefix,
            stages=stages,
            cohorts=cohorts,
            verification=verification,
            transfer=transfer,
            limits=limits,
            ids=ids,
            path=path,
            source_listing=source_listing,
            destination_listing=destination_listing,
            presorted=presorted,
            run_size=run_size,
            temp_dir=temp_dir,
        )


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while planning (restored after).

    A plan allocates tens of millions of short-lived tuples, and entries that
    carry a digests dict stay tracked by the collector, whose full passes
    then walk every entry held in a sort run: measured 1M unsorted entries,
    4.3 s with the collector and 3.0 s without. Planning makes no reference
    cycles worth collecting; reference counting frees everything as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _plan(
    source: Store | str,
    destination: Store | str,
    *,
    prefix: str,
    stages: Sequence[Stage],
    cohorts: CohortRule | None,
    verification: VerificationPolicy | None,
    transfer: TransferPolicy | None,
    limits: Limits | None,
    ids: IdRule | None,
    path: str | os.PathLike[str] | None,
    source_listing: Iterable[ObjectInfo | ListingEntry] | None,
    destination_listing: Iterable[ObjectInfo | ListingEntry] | None,
    presorted: bool,
    run_size: int,
    temp_dir: str | os.PathLike[str] | None,
) -> Plan:
    cohorts = cohorts or CohortRule()
    verification = verification or VerificationPolicy()
    transfer = transfer or TransferPolicy()
    limits = limits or Limits()
    ids = ids or IdRule()
    if ids.kind is IdKind.UUID and ids.namespace is None:
        ids = attrs.evolve(ids, namespace=str(uuid.uuid4()))
    stage_list = _resolve_stages(stages or (Stage("all"),))
    stage_of = _Stager(stage_list)
    if source_listing is None and isinstance(source, str):
        raise PlanError("pass the source store, or a source_listing with its URL")
    if destination_listing is None and isinstance(destination, str):
        raise PlanError(
            "pass the destination store, or a destination_listing with its URL"
        )
    dest_prefix = "" if ids.rewrite_key else prefix

    unlisted: list[Unmigratable] = []

    def listing(
        store: Store | str,
        given: Iterable[ObjectInfo | ListingEntry] | None,
        pfx: str,
        what: str,
        full: bool = False,
    ) -> Iterator[ListingEntry]:
        if given is None:
            assert not isinstance(store, str)
            if full and isinstance(store, SupportsFullListing):
                # every entry accounted for: what list() leaves out is set
                # aside (and planned as UNMIGRATABLE after the join)
                objects = _objects_of(store.list_all(pfx), unlisted)
                entries = to_entries(objects)
                if store.capabilities.sorted_listing:
                    return check_sorted(entries, what=f"the listing of {store.url}")
            elif store.capabilities.sorted_listing:
                return iter_sorted_listing(store, pfx)  # streams, order checked
            else:
                entries = to_entries(store.list(pfx))
        else:
            entries = _entries_of(given, pfx)
            if presorted:
                return entries  # _build checks the order
        # plain tuples out of the sort (no rebuilding of entries), digests as
        # their canonical JSON (see _packed); _build checks the order, which
        # also catches repeated keys
        return external_sort(_packed(entries), run_size=run_size, temp_dir=temp_dir)  # type: ignore[return-value]

    src = listing(source, source_listing, prefix, "the source listing", full=True)
    dst = listing(
        destination, destination_listing, dest_prefix, "the destination listing"
    )

    # destination keys that may not be writable are checked as they are
    # planned: keys an ID rule rewrote, keys of a given listing (anything an
    # inventory says), and all keys when the destination allows shorter ones
    dest_max = _max_key_length(destination)
    key_limit: int | None = None
    if (
        ids.rewrite_key
        or source_listing is not None
        or (dest_max or _NO_LIMIT) < (_max_key_length(source) or _NO_LIMIT)
    ):
        key_limit = dest_max or _NO_LIMIT
    pairs: Iterator[Any] = src
    if ids.active:
        pairs = _with_ids(src, ids)
        if ids.rewrite_key:
            pairs = check_sorted(
                external_sort(pairs, run_size=run_size, temp_dir=temp_dir),
                what="the destination keys the ID rule makes (two source keys map to one)",
            )

    header_fields = {
        "source": redact_url(_url_of(source)),
        "destination": redact_url(_url_of(destination)),
        "prefix": prefix,
        "stages": stage_list,
        "cohorts": cohorts,
        "verification": verification,
        "transfer": transfer,
        "limits": limits,
        "ids": ids,
    }

    def build(out: Any, items: list[PlanItem] | None) -> dict[str, Any]:
        return _build(
            pairs,
            dst,
            cohorts,
            stage_of,
            out,
            items,
            with_ids=ids.active,
            key_limit=key_limit,
            unlisted=unlisted,
        )

    if path is None:
        items: list[PlanItem] = []
        result = build(None, items)
        return Plan(_header(header_fields, result, stage_list), items=tuple(items))
    target = os.path.abspath(os.fspath(path))
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".carmigrate-plan-")
    try:
        with os.fdopen(fd, "wb") as f:
            # Room for the header, which is known only at the end: its longest
            # possible encoding. It is written over the room, padded with
            # spaces, so the items are never copied.
            room = len(serde.encode_header(_widest_header(header_fields, stage_list)))
            f.write(b" " * room + b"\n")
            result = build(f, None)
            header = _header(header_fields, result, stage_list)
            line = serde.encode_header(header).encode("ascii")
            if len(line) > room:  # pragma: no cover - the widest header bounds it
                raise PlanError("internal error: the plan header outgrew its room")
            f.seek(0)
            f.write(line + b" " * (room - len(line)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Plan(header, path=target)


_WIDEST: Final = 10**19 - 1


def _widest_header(fields: dict[str, Any], stages: tuple[Stage, ...]) -> PlanHeader:
    """A header at least as long as any header of a plan with these fields."""
    return PlanHeader(
        **fields,
        item_count=_WIDEST,
        items_digest="0" * 64,
        extras_count=_WIDEST,
        totals=tuple(
            StageTotal(stage=s.name, action=a, count=_WIDEST, bytes=_WIDEST)
            for s in stages
            for a in Action
        ),
    )


class _Sink:
    """Hashes and writes the plan's bytes in a helper thread.

    ``hashlib`` and file writes release the GIL, so they overlap with the
    planner's own work on another core. At most a few batches are queued.

    State: the queue, the SHA-256 so far and any error of the thread.
    """

    def __init__(self, out: Any) -> None:
        self._h = hashlib.sha256()
        self._out = out
        self._error: BaseException | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._thread = threading.Thread(
            target=self._run, name="carmigrate-plan-writer", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            if self._error is not None:
                continue
            try:
                self._h.update(data)
                if self._out is not None:
                    self._out.write(data)
            except BaseException as e:  # reported by close()
                self._error = e

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def close(self) -> str:
        """Wait for the thread; the hex SHA-256 of everything written."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._h.hexdigest()


def _header(
    fields: dict[str, Any], result: dict[str, Any], stages: tuple[Stage, ...]
) -> PlanHeader:
    return PlanHeader(
        **fields,
        item_count=result["item_count"],
        items_digest=result["items_digest"],
        extras_count=result["extras_count"],
        totals=_totals(result["totals"], stages),
    )


def _entries_of(
    given: Iterable[ObjectInfo | ListingEntry], prefix: str
) -> Iterator[ListingEntry]:
    """A given listing as entries, filtered by ``prefix``."""
    entries = to_entries(given)
    if prefix:
        entries = (e for e in entries if e[0].startswith(prefix))
    return entries


def _packed(entries: Iterable[ListingEntry]) -> Iterator[tuple[Any, ...]]:
    """Entries for the external sort, their digests as canonical JSON text.

    A str pickles and unpickles several times faster than a dict, and keeps
    a run's tuples untracked by the cyclic collector (1M unsorted entries:
    7.7 s with dicts); the plan line needs that text anyway, and the diff
    reads it ([compare][carmigrate.migrate.compare] takes it too).
    """
    for e in entries:
        d = e[3]
        if not d:
            yield (e[0], e[1], e[2], None, e[4])
        elif type(d) is dict and len(d) == 1:  # one digest: no call
            for k in d:
                yield (e[0], e[1], e[2], f'{{"{k}":"{d[k]}"}}', e[4])
        else:
            yield (e[0], e[1], e[2], digests_json(d), e[4])


def _with_ids(src: Iterator[ListingEntry], rule: IdRule) -> Iterator[tuple[Any, ...]]:
    rewrite = rule.rewrite_key
    for e in src:
        key = e[0]
        found = rule.find(key)
        if found is None:
            yield key, e, None, None
            continue
        old, start, end = found
        new = rule.new_id(old)
        dkey = key[:start] + new + key[end:] if rewrite else key
        yield dkey, e, old, new


def _build(
    src: Iterator[Any],
    dst: Iterator[ListingEntry],
    cohorts: CohortRule,
    stage_of: _Stager,
    out: Any,
    items: list[PlanItem] | None,
    *,
    with_ids: bool,
    key_limit: int | None = None,
    unlisted: list[Unmigratable] | None = None,
) -> dict[str, Any]:
    """The hot loop: merge-join, classify and encode every item.

    With ``key_limit``, every destination key is held to the rules of
    ``validate_key`` with that length limit, a batch of keys at a time before
    the batch's lines are written (one cheap test of the whole batch first,
    the full check key by key only for a batch it cannot clear).

    A destination key that breaks them is planned ``UNMIGRATABLE`` with the
    rule as its reason (the batch's lines are re-made), as is every entry
    ``unlisted`` holds once the source listing is read to its end.

    ``src`` yields entries (or ``(destination key, entry, old id, new id)``
    with ``with_ids``), ``dst`` entries, both sorted by the join key. Lines
    are written by [serde.encode_line][carmigrate.migrate.serde.encode_line],
    the encoder generated from ``PlanItem``'s declaration.
    """
    sink = _Sink(out)
    segments = cohorts.segments if cohorts.pattern is None else -1
    cohort_of = cohorts.cohort_of
    stages = stage_of.cache
    encode = serde.encode_line
    body, head_of, tail_of = serde.line_body, serde.line_head, serde.line_tail
    src_prev = dst_prev = ""
    copy, extra, skip = Action.COPY, Action.EXTRA, Action.SKIP
    same = _SAME
    totals: dict[tuple[str, Action], list[int]] = {}
    heads: dict[tuple[Action, str], str] = {}
    tails: dict[str, str] = {}
    buf: list[str] = []
    append = buf.append
    extras = 0
    write_batch = _WRITE_BATCH
    last_cohort: str | None = None
    last_action: Action | None = None
    stage = head = tail = ""
    t: list[int] = [0, 0]
    # destination keys to check (and their source keys if an ID rule made
    # them), a batch at a time before its lines are written
    checked: list[str] | None = None if key_limit is None else []
    checked_sources: list[str] = []
    # Both inputs are checked to ascend as they are read (the join relies
    # on it, and it catches repeated keys); "" is below every valid key.
    s = next(src, None)
    if s is not None:
        src_prev = s[0]
    d = next(dst, None)
    if d is not None:
        dst_prev = d[0]
    while True:
        if s is not None:
            dkey = s[0]
            if d is None or dkey < d[0]:
                action, reason, dsize = copy, None, None
                if with_ids:
                    _, e, sid, nid = s
                else:
                    e = s
                    sid = nid = None
                s = next(src, None)
                if s is not None:
                    if s[0] <= src_prev:
                        _out_of_order(s[0], src_prev, "the source listing")
                    src_prev = s[0]
            elif d[0] < dkey:
                e = None
            else:
                if with_ids:
                    _, e, sid, nid = s
                else:
                    e = s
                    sid = nid = None
                dsize = d[1]
                sd = e[3]
                # the common case inline: the same size and the same single
                # digest on both sides, as a mapping or (out of the external
                # sort) as its JSON text; compare() decides everything else
                reason = None
                if e[1] == dsize and sd and sd == d[3]:
                    if type(sd) is dict:
                        if len(sd) == 1:
                            reason = same.get(next(iter(sd)))
                    elif type(sd) is str and '","' not in sd:
                        reason = same.get(sd[2 : sd.index('"', 2)])
                if reason is not None:
                    action = skip
                else:
                    action, reason = compare(e, d)
                s = next(src, None)
                if s is not None:
                    if s[0] <= src_prev:
                        _out_of_order(s[0], src_prev, "the source listing")
                    src_prev = s[0]
                d = next(dst, None)
                if d is not None:
                    if d[0] <= dst_prev:
                        _out_of_order(d[0], dst_prev, "the destination listing")
                    dst_prev = d[0]
        elif d is None:
            break
        else:
            e = None
        if e is None:
            assert d is not None
            dkey = d[0]
            size = d[1]
            cohort = (
                ""
                if segments == 0
                else _first_segments(dkey, segments)
                if segments > 0
                else cohort_of(dkey)
            )
            stage = stage_of(cohort)
            last_cohort = None
            extras += 1
            action = extra
            xt = totals.get((stage, extra))
            if xt is None:
                xt = totals[(stage, extra)] = [0, 0]
            xt[0] += 1
            xt[1] += size
            text = encode(
                extra,
                cohort,
                False,
                dkey,
                size,
                None,
                None,
                None,
                None,
                size,
                None,
                None,
                stage,
            )
            if items is not None:
                items.append(
                    PlanItem(
                        source_key=None,
                        destination_key=dkey,
                        size=size,
                        action=extra,
                        stage=stage,
                        cohort=cohort,
                        destination_size=size,
                    )
                )
            d = next(dst, None)
            if d is not None:
                if d[0] <= dst_prev:
                    _out_of_order(d[0], dst_prev, "the destination listing")
                dst_prev = d[0]
        else:
            skey, size, etag, digests, cold = e
            if checked is not None:
                checked.append(dkey if with_ids else skey)
                if with_ids:
                    checked_sources.append(skey)
            if segments == 1:
                cut = skey.find("/")
                cohort = skey[:cut] if cut > 0 else ""
            elif segments == 0:
                cohort = ""
            elif segments > 0:
                cohort = _first_segments(skey, segments)
            else:
                cohort = cohort_of(skey)
            # consecutive keys mostly share cohort and action: reuse the
            # line's encoded head (action, cohort) and tail (stage) and the
            # totals entry
            if cohort != last_cohort:
                last_cohort = cohort
                last_action = None
                stage = stages.get(cohort) or stage_of(cohort)
            if action is not last_action:
                last_action = action
                cached_head = heads.get((action, cohort))
                if cached_head is None:
                    cached_head = heads[(action, cohort)] = head_of(action, cohort)
                head = cached_head
                cached_tail = tails.get(stage)
                if cached_tail is None:
                    cached_tail = tails[stage] = tail_of(stage)
                tail = cached_tail
                entry = totals.get((stage, action))
                if entry is None:
                    entry = totals[(stage, action)] = [0, 0]
                t = entry
            text = body(
                head,
                tail,
                cold,
                dkey,
                dsize,
                digests,
                etag,
                nid,
                reason,
                size,
                sid,
                skey,
            )
            t[0] += 1
            t[1] += size
            if items is not None:
                items.append(
                    PlanItem(
                        source_key=skey,
                        destination_key=dkey,
                        size=size,
                        action=action,
                        stage=stage,
                        cohort=cohort,
                        digests=json.loads(digests)
                        if type(digests) is str
                        else digests,
                        etag=etag,
                        cold=cold,
                        destination_size=dsize,
                        reason=reason,
                        source_id=sid,
                        new_id=nid,
                    )
                )
        append(text)
        if len(buf) >= write_batch:
            if checked:
                bad = _bad_destination_keys(checked, checked_sources, key_limit)
                if bad:
                    _unmigratable_lines(buf, bad, totals, items)
                checked.clear()
                checked_sources.clear()
            append("")  # the batch's last newline, without copying the text
            sink.write("\n".join(buf).encode("ascii"))
            buf.clear()
    if checked:
        bad = _bad_destination_keys(checked, checked_sources, key_limit)
        if bad:
            _unmigratable_lines(buf, bad, totals, items)
    for u in unlisted or ():
        cohort = (
            ""
            if segments == 0
            else _first_segments(u.name, segments)
            if segments > 0
            else cohort_of(u.name)
        )
        item = PlanItem(
            source_key=u.name,
            destination_key=u.name,
            size=u.size,
            action=Action.UNMIGRATABLE,
            stage=stage_of(cohort),
            cohort=cohort,
            reason=u.reason,
        )
        _count(totals, item, 1)
        append(serde.encode_item(item))
        if items is not None:
            items.append(item)
    if buf:
        append("")
        sink.write("\n".join(buf).encode("ascii"))
    return {
        "item_count": sum(v[0] for v in totals.values()),
        "items_digest": sink.close(),
        "extras_count": extras,
        "totals": totals,
    }


# The positional call of serde.line_body in _build follows PlanItem's key
# order; a change of the declaration must change that call too.
if serde._LINES.body_keys != (
    "cold",
    "destination_key",
    "destination_size",
    "digests",
    "etag",
    "new_id",
    "reason",
    "size",
    "source_id",
    "source_key",
):  # pragma: no cover - guards the declaration
    raise ImportError(
        f"PlanItem's plan-line keys changed ({serde._LINES.body_keys}); "
        "update the planner's call of serde.line_body"
    )


_NO_LIMIT: Final = 1 << 62


def _max_key_length(store: Store | str) -> int | None:
    if isinstance(store, str):
        return None
    return capabilities_of(store).max_key_length


def _bad_destination_keys(
    dkeys: list[str], skeys: list[str], limit: int | None
) -> dict[str, str]:
    """The keys of ``dkeys`` no store can be written under, each with why.

    One pass over the batch (``keys_to_check``, compiled when the core is
    built) finds the keys that need a full check. ``skeys`` are the source
    keys of ``dkeys`` when an ID rule made them (else empty).

    Returns:
        Destination key → the reason (naming the key, its source key when
        different, and the rule); empty when every key can be written.
    """
    bad = {}
    max_length = None if limit is None or limit >= _NO_LIMIT else limit
    for i in keys_to_check(dkeys, max_length=max_length):
        dkey = dkeys[i]
        problem = _key_problem(dkey, skeys[i] if skeys else dkey, limit or _NO_LIMIT)
        if problem is not None:
            bad[dkey] = problem
    return bad


def _unmigratable_lines(
    buf: list[str],
    bad: dict[str, str],
    totals: dict[tuple[str, Action], list[int]],
    items: list[PlanItem] | None,
) -> None:
    """Re-make the lines (and in-memory items) of ``bad`` keys as ``UNMIGRATABLE``.

    The rare path: the batch's lines are decoded to find them.
    """
    first_item = len(items) - len(buf) if items is not None else 0
    for i, line in enumerate(buf):
        item = serde.decode_item(line)
        if item.action is Action.EXTRA or item.destination_key not in bad:
            continue
        new = attrs.evolve(
            item,
            action=Action.UNMIGRATABLE,
            reason=bad[item.destination_key],
            destination_size=None,
        )
        _count(totals, item, -1)
        _count(totals, new, 1)
        buf[i] = serde.encode_item(new)
        if items is not None:
            items[first_item + i] = new


def _count(
    totals: dict[tuple[str, Action], list[int]], item: PlanItem, sign: int
) -> None:
    entry = totals.setdefault((item.stage, item.action), [0, 0])
    entry[0] += sign
    entry[1] += sign * item.size


def _key_problem(dkey: str, skey: str, limit: int) -> str | None:
    """Why a destination key can never be written, or ``None`` if it can."""
    try:
        validate_key(dkey, max_length=None if limit >= _NO_LIMIT else limit)
    except InvalidKey as e:
        origin = "" if dkey == skey else f" (planned for source key {skey!r})"
        return f"destination key {dkey!r}{origin} can never be written: {e}"
    return None


def _objects_of(
    listing: Iterator[ObjectInfo | Unmigratable], unlisted: list[Unmigratable]
) -> Iterator[ObjectInfo]:
    """The objects of a full listing; the rest is appended to ``unlisted``."""
    for entry in listing:
        if type(entry) is Unmigratable:
            unlisted.append(entry)
        else:
            yield entry  # type: ignore[misc]


def _out_of_order(key: str, prev: str, what: str) -> None:
    if key == "":
        raise PlanError(f"{what} has an empty key, which no store accepts")
    problem = "is listed twice" if key == prev else f"comes after {prev!r}"
    raise PlanError(
        f"{what} is not sorted by key: {key!r} {problem}; a store that cannot "
        "list in order must say so (capabilities.sorted_listing=False) so the "
        "planner sorts it"
    )


def _first_segments(key: str, n: int) -> str:
    """The first ``n`` folder segments of ``key`` (fewer if it has fewer)."""
    end = -1
    for _ in range(n):
        nxt = key.find("/", end + 1)
        if nxt < 0:
            break
        end = nxt
    return key[:end] if end > 0 else ""
