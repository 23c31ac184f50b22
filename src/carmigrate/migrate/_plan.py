"""Plans: computed from two listings, saved, reviewed, then executed."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from carmigrate.errors import PlanError
from carmigrate.migrate import serde
from carmigrate.migrate._model import (
    Action,
    PlanHeader,
    PlanItem,
    Stage,
    StageTotal,
)
from carmigrate.migrate._render import PlanSummary, summarize, summary_html

if TYPE_CHECKING:
    pass

__all__ = ["Plan", "check_items", "load_plan", "redact_url", "save_plan"]

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
        count a source ``stat``, a read and a write per copied item (plus a
        part per ``part_size`` bytes beyond the first), and a ``stat`` and a
        read on each side per compared item; the duration is the largest of
        the bounds the limits and the assumptions give, ``None`` if none.

        Args:
            assumed_bytes_per_second: Throughput to assume for the stores.
            assumed_request_seconds: Latency to assume per request.
            part_size: Multipart part size to count requests with.
        """
        return summarize(
            self.header,
            self.id,
            assumed_bytes_per_second=assumed_bytes_per_second,
            assumed_request_seconds=assumed_request_seconds,
            part_size=part_size,
        )

    def _repr_html_(self) -> str:
        return summary_html(self.summary(), extras=self.header.extras_count)


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
