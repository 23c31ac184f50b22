"""Plans: computed from two listings, saved, reviewed, then executed."""

from __future__ import annotations

import contextlib
import hashlib
import html
import math
import os
import queue
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from carmigrate.errors import PlanError
from carmigrate.migrate import serde
from carmigrate.migrate._diff import compare
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

if TYPE_CHECKING:
    from carmigrate.storage import ObjectInfo, Store

__all__ = ["Plan", "PlanSummary", "load_plan", "plan", "redact_url", "save_plan"]

_WRITE_BATCH: Final = 8192
_COPY_CHUNK: Final = 8 << 20
_SECRET_WORDS: Final = (
    "secret",
    "password",
    "passwd",
    "token",
    "signature",
    "sig",
    "credential",
    "key",
)


def redact_url(url: str) -> str:
    """``url`` without credentials: no ``user:password@`` and no secret-looking query values.

    Query parameters whose names contain ``secret``, ``password``,
    ``token``, ``signature``, ``sig``, ``credential`` or ``key`` are dropped.
    """
    parts = urlsplit(url)
    if not parts.scheme:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        kept = [
            (k, v)
            for k, v in parse_qsl(query, keep_blank_values=True)
            if not any(w in k.lower() for w in _SECRET_WORDS)
        ]
        query = urlencode(kept)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@attrs.frozen(kw_only=True)
class PlanSummary:
    """Counts, bytes and an estimate of a plan's cost, for review.

    Attributes:
        plan_id: The plan's id.
        source: Source URL.
        destination: Destination URL.
        items: Items, extras included.
        bytes: Bytes of all source items.
        by_action: ``(action, items, bytes)`` per action, in action order.
        by_stage: ``(stage, action, items, bytes)`` per stage and action, in
            stage order.
        transfer_items: Items that may move bytes (``COPY``, plus
            ``CONFLICT`` when overwriting is allowed).
        transfer_bytes: Their bytes.
        compare_items: ``VERIFY`` items (read on both sides at run time).
        requests: Estimated storage requests of a full run.
        seconds: Estimated duration of a full run under the plan's limits and
            the assumed throughput; ``None`` if nothing bounds it.
    """

    plan_id: str
    source: str
    destination: str
    items: int
    bytes: int
    by_action: tuple[tuple[str, int, int], ...]
    by_stage: tuple[tuple[str, str, int, int], ...]
    transfer_items: int
    transfer_bytes: int
    compare_items: int
    requests: int
    seconds: float | None

    def to_markdown(self) -> str:
        """The summary as a Markdown table with a header paragraph."""
        lines = [
            f"Plan `{self.plan_id}`: {self.source} → {self.destination}",
            "",
            f"{self.items} items, {_human_bytes(self.bytes)}; "
            f"{self.transfer_items} to copy ({_human_bytes(self.transfer_bytes)}), "
            f"{self.compare_items} to compare; about {self.requests} requests"
            + (
                f", about {_human_seconds(self.seconds)}"
                if self.seconds is not None
                else ""
            )
            + ".",
            "",
            "| stage | action | items | bytes |",
            "|---|---|---:|---:|",
        ]
        lines += [
            f"| {stage} | {action} | {count} | {nbytes} |"
            for stage, action, count, nbytes in self.by_stage
        ]
        return "\n".join(lines) + "\n"


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError  # pragma: no cover


def _human_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


_ACTION_ORDER: Final = {a: i for i, a in enumerate(Action)}


@attrs.frozen(eq=False, repr=False)
class Plan:
    """A migration plan: a [PlanHeader][carmigrate.migrate.PlanHeader] and its items.

    A plan is a value: it is computed by [plan][carmigrate.migrate.plan],
    saved, reviewed and executed, and it never changes. Its
    [id][carmigrate.migrate.Plan.id] is the hash of its canonical encoding.
    Items are held in memory (small plans, tests, notebooks) or read from
    the plan file each time they are iterated (millions of items); plans are
    equal when their headers are, which pins their items down through the
    header's item digest.

    Attributes:
        header: Everything but the items.
        path: The plan file the items are read from, if any.
    """

    header: PlanHeader
    _items: tuple[PlanItem, ...] | None = attrs.field(default=None, alias="items")
    path: str | None = None

    def __attrs_post_init__(self) -> None:
        if self._items is None and self.path is None:
            raise PlanError("a plan needs its items or the path of its plan file")

    @classmethod
    def from_items(
        cls,
        items: Iterable[PlanItem],
        *,
        source: str,
        destination: str,
        stages: Sequence[Stage] = (),
        **header: Any,
    ) -> Plan:
        """Build an in-memory plan from items (tests, hand-made plans).

        Items are kept in the order given; ``item_count``, ``items_digest``,
        ``extras_count`` and ``totals`` are computed.

        Raises:
            PlanError: An item names a stage that is not in ``stages``.
        """
        kept = tuple(items)
        stage_list = tuple(stages) or (Stage("all"),)
        names = {s.name for s in stage_list}
        lines = []
        totals: dict[tuple[str, Action], list[int]] = {}
        for item in kept:
            if item.stage not in names:
                raise PlanError(f"item {item.key!r} names unknown stage {item.stage!r}")
            lines.append(serde.encode_item(item))
            t = totals.setdefault((item.stage, item.action), [0, 0])
            t[0] += 1
            t[1] += item.size
        head = PlanHeader(
            source=redact_url(source),
            destination=redact_url(destination),
            stages=stage_list,
            item_count=len(kept),
            items_digest=serde.items_digest(lines),
            extras_count=sum(1 for i in kept if i.action is Action.EXTRA),
            totals=_totals(totals, stage_list),
            **header,
        )
        return cls(head, items=kept)

    @property
    def id(self) -> str:
        """The plan id (see [plan_id][carmigrate.migrate.serde.plan_id])."""
        return self.header.id

    @property
    def in_memory(self) -> bool:
        """Whether the items are held in memory."""
        return self._items is not None

    def __len__(self) -> int:
        return self.header.item_count

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Plan):
            return NotImplemented
        return self.header == other.header

    def __hash__(self) -> int:
        return hash(self.header)

    def __repr__(self) -> str:
        where = "in memory" if self._items is not None else repr(self.path)
        return (
            f"<Plan {self.id} {self.header.source} -> {self.header.destination}, "
            f"{self.header.item_count} items, {where}>"
        )

    def lines(self) -> Iterator[str]:
        """The canonical item lines, in order, without newlines.

        Raises:
            PlanError: The plan file cannot be read or is not a plan.
        """
        if self._items is not None:
            if self.header.format_version < 2:
                return (serde.encode_item_v1(i) for i in self._items)
            return (serde.encode_item(i) for i in self._items)
        return (line.decode("ascii") for line in _file_lines(self._path()))

    def items(self) -> Iterator[PlanItem]:
        """The items, in plan order (ascending destination key).

        Raises:
            PlanError: The plan file cannot be read or holds a malformed line.
        """
        if self._items is not None:
            return iter(self._items)
        version = self.header.format_version
        return (
            serde.decode_item(line, format_version=version)
            for line in _file_lines(self._path())
        )

    def _path(self) -> str:
        assert self.path is not None
        return self.path

    def materialize(self) -> Plan:
        """This plan with its items in memory (reads the plan file once)."""
        if self._items is not None:
            return self
        return Plan(self.header, items=tuple(self.items()), path=self.path)

    def id_map(self) -> Iterator[tuple[str, str]]:
        """``(source id, new id)`` pairs of the items that carry ids, in plan order."""
        for item in self.items():
            if item.source_id is not None and item.new_id is not None:
                yield item.source_id, item.new_id

    def summary(
        self,
        *,
        assumed_bytes_per_second: float | None = None,
        assumed_request_seconds: float | None = None,
        part_size: int = 8 << 20,
    ) -> PlanSummary:
        """Counts by action and stage, bytes, and an estimate of the cost.

        Computed from the header alone (no pass over the items). Requests
        count one source ``stat``, one read and one write per copied item
        (plus a part per ``part_size`` bytes beyond the first), and a
        ``stat`` and a read on each side per compared item. The duration is
        the largest of the limits' bounds (items/s, bytes/s) and the assumed
        throughput and request latency divided by the concurrency; ``None``
        when none of these bounds it.

        Args:
            assumed_bytes_per_second: Throughput to assume for the stores.
            assumed_request_seconds: Latency to assume per request.
            part_size: Multipart part size to count requests with.
        """
        h = self.header
        overwrite = h.transfer.overwrite.value == "if_different"
        by_action: dict[Action, list[int]] = {}
        transfer_items = transfer_bytes = compare_items = compare_bytes = 0
        requests = 0
        total_bytes = 0
        for t in h.totals:
            acc = by_action.setdefault(t.action, [0, 0])
            acc[0] += t.count
            acc[1] += t.bytes
            if t.action is not Action.EXTRA:
                total_bytes += t.bytes
            moves = t.action is Action.COPY or (
                t.action is Action.CONFLICT and overwrite
            )
            if moves:
                transfer_items += t.count
                transfer_bytes += t.bytes
                requests += 3 * t.count + max(
                    0, math.ceil(t.bytes / part_size) - t.count
                )
            elif t.action is Action.VERIFY:
                compare_items += t.count
                compare_bytes += t.bytes
                requests += 4 * t.count
        bounds = []
        lim: Limits = h.limits
        work_items = transfer_items + compare_items
        work_bytes = transfer_bytes + 2 * compare_bytes
        if lim.items_per_second:
            bounds.append(work_items / lim.items_per_second)
        if lim.bytes_per_second:
            bounds.append(work_bytes / lim.bytes_per_second)
        if assumed_bytes_per_second:
            bounds.append(work_bytes / assumed_bytes_per_second)
        if assumed_request_seconds:
            bounds.append(requests * assumed_request_seconds / lim.concurrency)
        order = {name: i for i, name in enumerate(h.stage_names())}
        by_stage = sorted(
            ((t.stage, t.action.value, t.count, t.bytes) for t in h.totals),
            key=lambda r: (order.get(r[0], len(order)), _ACTION_ORDER[Action(r[1])]),
        )
        return PlanSummary(
            plan_id=self.id,
            source=h.source,
            destination=h.destination,
            items=h.item_count,
            bytes=total_bytes,
            by_action=tuple(
                (a.value, v[0], v[1])
                for a, v in sorted(
                    by_action.items(), key=lambda kv: _ACTION_ORDER[kv[0]]
                )
            ),
            by_stage=tuple(by_stage),
            transfer_items=transfer_items,
            transfer_bytes=transfer_bytes,
            compare_items=compare_items,
            requests=requests,
            seconds=max(bounds) if bounds else None,
        )

    def _repr_html_(self) -> str:
        s = self.summary()
        esc = html.escape
        rows = "".join(
            f"<tr><td>{esc(stage)}</td><td>{esc(action)}</td>"
            f"<td style='text-align:right'>{count}</td>"
            f"<td style='text-align:right'>{esc(_human_bytes(nbytes))}</td></tr>"
            for stage, action, count, nbytes in s.by_stage
        )
        return (
            f"<div><p><b>Plan</b> <code>{esc(s.plan_id)}</code><br>"
            f"{esc(s.source)} → {esc(s.destination)}<br>"
            f"{s.items} items, {esc(_human_bytes(s.bytes))}; {s.transfer_items} to copy "
            f"({esc(_human_bytes(s.transfer_bytes))}), {s.compare_items} to compare, "
            f"{self.header.extras_count} only at the destination</p>"
            "<table><thead><tr><th>stage</th><th>action</th><th>items</th>"
            f"<th>bytes</th></tr></thead><tbody>{rows}</tbody></table></div>"
        )


def _totals(
    totals: dict[tuple[str, Action], list[int]], stages: Sequence[Stage]
) -> tuple[StageTotal, ...]:
    order = {s.name: i for i, s in enumerate(stages)}
    return tuple(
        StageTotal(stage=stage, action=action, count=v[0], bytes=v[1])
        for (stage, action), v in sorted(
            totals.items(), key=lambda kv: (order[kv[0][0]], _ACTION_ORDER[kv[0][1]])
        )
    )


def _file_lines(path: str) -> Iterator[bytes]:
    """The item lines of a plan file (header skipped), newline stripped."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the generator
    except OSError as e:
        raise PlanError(f"cannot read plan file {path!r}: {e}") from e
    with f:
        f.readline()
        for line in f:
            if not line.endswith(b"\n"):
                raise PlanError(
                    f"plan file {path!r} is truncated (last line has no newline)"
                )
            yield line[:-1]


def _read_header(path: str) -> PlanHeader:
    try:
        with open(path, "rb") as f:
            first = f.readline()
    except OSError as e:
        raise PlanError(f"cannot read plan file {path!r}: {e}") from e
    if not first:
        raise PlanError(f"plan file {path!r} is empty")
    return serde.decode_header(first)


def check_items(header: PlanHeader, lines: Iterable[bytes], *, where: str) -> None:
    """Check item lines against the header's count and digest.

    Raises:
        PlanError: Count or digest differ (the file was edited or cut).
    """
    h = hashlib.sha256()
    n = 0
    for line in lines:
        h.update(line)
        h.update(b"\n")
        n += 1
    if n != header.item_count:
        raise PlanError(
            f"{where} has {n} items but its header says {header.item_count}; "
            "the file was cut or edited"
        )
    if h.hexdigest() != header.items_digest:
        raise PlanError(
            f"{where}: the items do not match the header's digest; the file was "
            "edited after planning (make a new plan instead)"
        )


def load_plan(
    path: str | os.PathLike[str], *, check: bool = True, in_memory: bool = False
) -> Plan:
    """Read a plan file written by [save_plan][carmigrate.migrate.save_plan] or ``plan(path=...)``.

    Args:
        path: The plan file.
        check: Read every item line once and check the count and the SHA-256
            against the header (about a second per million items).
        in_memory: Also load the items into memory.

    Returns:
        The plan; file-backed unless ``in_memory``.

    Raises:
        PlanError: Not a plan file, a newer format, a malformed header, or
            items that do not match the header.
    """
    where = os.fspath(path)
    header = _read_header(where)
    if in_memory:
        lines = list(_file_lines(where))
        check_items(header, lines, where=where)
        items = tuple(
            serde.decode_item(line, format_version=header.format_version)
            for line in lines
        )
        return Plan(header, items=items, path=os.path.abspath(where))
    if check:
        check_items(header, _file_lines(where), where=where)
    return Plan(header, path=os.path.abspath(where))


def save_plan(plan: Plan, path: str | os.PathLike[str]) -> Plan:
    """Write ``plan`` to ``path`` as JSON Lines (header, then one line per item).

    The file is written to a temporary name and renamed, so ``path`` holds
    the old file or the complete new one.

    Returns:
        The plan, backed by the new file.

    Raises:
        OSError: Writing failed; ``path`` is unchanged.
    """
    target = os.path.abspath(os.fspath(path))
    if plan.path is not None and _same_file(plan.path, target):
        return plan
    directory = os.path.dirname(target) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".carmigrate-plan-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(serde.encode_header(plan.header).encode("ascii") + b"\n")
            if plan.path is not None and plan._items is None:
                with open(plan.path, "rb") as src:
                    src.readline()
                    shutil.copyfileobj(src, f, _COPY_CHUNK)
            else:
                _write_lines(f, plan.lines(), None)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Plan(plan.header, items=plan._items, path=target)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _write_lines(f: Any, lines: Iterable[str], h: Any) -> None:
    buf: list[str] = []
    for line in lines:
        buf.append(line)
        if len(buf) >= _WRITE_BATCH:
            data = ("\n".join(buf) + "\n").encode("ascii")
            if h is not None:
                h.update(data)
            f.write(data)
            buf.clear()
    if buf:
        data = ("\n".join(buf) + "\n").encode("ascii")
        if h is not None:
            h.update(data)
        f.write(data)


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

    def listing(
        store: Store | str,
        given: Iterable[ObjectInfo | ListingEntry] | None,
        pfx: str,
        what: str,
    ) -> Iterator[ListingEntry]:
        if given is None:
            assert not isinstance(store, str)
            return iter_sorted_listing(store, pfx, run_size=run_size, temp_dir=temp_dir)
        entries = _entries_of(given, pfx)
        if presorted:
            return entries  # _build checks the order
        # plain tuples out of the sort (no rebuilding of entries); _build
        # checks the order, which also catches repeated keys
        return external_sort(entries, run_size=run_size, temp_dir=temp_dir)  # type: ignore[return-value]

    src = listing(source, source_listing, prefix, "the source listing")
    dst = listing(
        destination, destination_listing, dest_prefix, "the destination listing"
    )

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
    if path is None:
        items: list[PlanItem] = []
        result = _build(pairs, dst, cohorts, stage_of, None, items, with_ids=ids.active)
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
            result = _build(pairs, dst, cohorts, stage_of, f, None, with_ids=ids.active)
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
) -> dict[str, Any]:
    """The hot loop: merge-join, classify and encode every item.

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
    copy, extra = Action.COPY, Action.EXTRA
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
                action, reason = compare(e, d)
                dsize = d[1]
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
                        digests=digests,
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
            sink.write(("\n".join(buf) + "\n").encode("ascii"))
            buf.clear()
    if buf:
        sink.write(("\n".join(buf) + "\n").encode("ascii"))
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
