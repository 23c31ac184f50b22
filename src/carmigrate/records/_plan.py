"""A record plan as a value: rows and their actions, the ID map, findings, stages.

Saved as JSON Lines: line 1 is the header (format, version, the two
databases, the stages, the offsets, the counts and the SHA-256 of every
following line), then one line per row, ID map entry, finding and object
key, each a canonical JSON object with one key naming its kind. Column
values are tagged ([encode_value][carmigrate.records.encode_value]).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import json
import os
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate import _html
from carmigrate.errors import PreflightError, RecordsError
from carmigrate.records._mapping import FindingKind, Resolution
from carmigrate.records._values import (
    canonical_json,
    decode_value,
    encode_value,
    paused_gc,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = [
    "PLAN_FORMAT",
    "PLAN_VERSION",
    "CycleBreak",
    "Finding",
    "IdMapEntry",
    "ObjectKeyChange",
    "RecordPlan",
    "RecordSummary",
    "RowAction",
    "RowPlan",
    "RecordStage",
    "TextFingerprint",
    "load_record_plan",
    "save_record_plan",
]

PLAN_FORMAT: Final = "carmigrate-record-plan"
"""The ``format`` of a record plan file's header line."""

PLAN_VERSION: Final = 1
"""The record plan file version this release writes and reads."""


class RowAction(enum.Enum):
    """What the plan does with one source row."""

    INSERT = "insert"
    """Insert it at the destination, with its mapped values."""
    MERGE = "merge"
    """Map it to an existing destination row; insert nothing."""
    SKIP = "skip"
    """Leave it out, by a finding's ``skip`` policy."""
    CONFLICT = "conflict"
    """A finding's policy is ``fail``: the plan cannot be executed as is."""


_ACTIONS: Final = tuple(RowAction)


@attrs.frozen
class RowPlan:
    """One source row and what happens to it.

    Attributes:
        table: Its table.
        key: Its primary key at the source.
        action: What happens to it.
        target_key: Its primary key at the destination (inserted or merged
            into); ``None`` when skipped or in conflict.
        digest: Its [row_digest][carmigrate.records.row_digest] at the source.
        changes: For an insert, the columns whose value differs from the
            source's, with their new values (ID rules, foreign keys,
            implicit references, renames).
        reason: Why it is merged, skipped or in conflict (empty for inserts).
    """

    table: str
    key: tuple[Any, ...]
    action: RowAction
    target_key: tuple[Any, ...] | None
    digest: str
    changes: Mapping[str, Any] = attrs.field(factory=dict, hash=False)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (values tagged)."""
        out: dict[str, Any] = {
            "table": self.table,
            "key": [encode_value(v) for v in self.key],
            "action": self.action.value,
            "digest": self.digest,
        }
        if self.target_key is not None:
            out["target_key"] = [encode_value(v) for v in self.target_key]
        if self.changes:
            out["changes"] = {k: encode_value(v) for k, v in self.changes.items()}
        if self.reason:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RowPlan:
        """The inverse of [to_dict][carmigrate.records.RowPlan.to_dict].

        Raises:
            RecordsError: Missing or malformed fields.
        """
        target = data.get("target_key")
        return cls(
            table=data["table"],
            key=tuple(decode_value(v) for v in data["key"]),
            action=RowAction(data["action"]),
            target_key=None
            if target is None
            else tuple(decode_value(v) for v in target),
            digest=data["digest"],
            changes={k: decode_value(v) for k, v in data.get("changes", {}).items()},
            reason=data.get("reason", ""),
        )


@attrs.frozen
class IdMapEntry:
    """One key value's mapping: ``table.column`` ``old`` becomes ``new``.

    Attributes:
        table: The table of the key column.
        column: The key column (a primary key or a referenced column).
        old: The value at the source.
        new: The value at the destination.
        action: ``insert`` (a new row gets ``new``) or ``merge`` (``new`` is
            an existing destination row's).
    """

    table: str
    column: str
    old: Any
    new: Any
    action: RowAction

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (values tagged)."""
        return {
            "table": self.table,
            "column": self.column,
            "old": encode_value(self.old),
            "new": encode_value(self.new),
            "action": self.action.value,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IdMapEntry:
        """The inverse of [to_dict][carmigrate.records.IdMapEntry.to_dict]."""
        return cls(
            table=data["table"],
            column=data["column"],
            old=decode_value(data["old"]),
            new=decode_value(data["new"]),
            action=RowAction(data["action"]),
        )


@attrs.frozen
class Finding:
    """A pre-flight finding about one source row, and the policy applied to it.

    Attributes:
        kind: What was found.
        table: The row's table.
        key: The row's primary key at the source.
        columns: The columns involved.
        message: What was found, for people (names the values).
        policy: The policy applied.
    """

    kind: FindingKind
    table: str
    key: tuple[Any, ...]
    columns: tuple[str, ...]
    message: str
    policy: Resolution

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (values tagged)."""
        return {
            "kind": self.kind.value,
            "table": self.table,
            "key": [encode_value(v) for v in self.key],
            "columns": list(self.columns),
            "message": self.message,
            "policy": self.policy.value,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """The inverse of [to_dict][carmigrate.records.Finding.to_dict]."""
        return cls(
            kind=FindingKind(data["kind"]),
            table=data["table"],
            key=tuple(decode_value(v) for v in data["key"]),
            columns=tuple(data["columns"]),
            message=data["message"],
            policy=Resolution(data["policy"]),
        )


@attrs.frozen
class ObjectKeyChange:
    """An object's key in a store, before and after its row's references are mapped.

    The object engine copies ``old`` at the source store to ``new`` at the
    destination store.

    Attributes:
        table: The table of the row holding the key.
        column: The column holding the key.
        key: The row's primary key at the source.
        old: The object key at the source.
        new: The object key at the destination.
    """

    table: str
    column: str
    key: tuple[Any, ...]
    old: str
    new: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (values tagged)."""
        return {
            "table": self.table,
            "column": self.column,
            "key": [encode_value(v) for v in self.key],
            "old": self.old,
            "new": self.new,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ObjectKeyChange:
        """The inverse of [to_dict][carmigrate.records.ObjectKeyChange.to_dict]."""
        return cls(
            table=data["table"],
            column=data["column"],
            key=tuple(decode_value(v) for v in data["key"]),
            old=data["old"],
            new=data["new"],
        )


@attrs.frozen
class CycleBreak:
    """How a foreign key in a cycle is satisfied at the destination.

    Attributes:
        table: The referencing table.
        columns: The referencing columns.
        referred_table: The referenced table.
        constraint: The constraint's name, if it has one.
        method: ``"deferred"``: the constraint is deferrable (PostgreSQL),
            so it is checked at the stage's commit; ``"update"``: the rows
            are inserted with these (nullable) columns NULL and updated to
            their planned values once the stage's rows are in.
    """

    table: str
    columns: tuple[str, ...]
    referred_table: str
    constraint: str | None
    method: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "table": self.table,
            "columns": list(self.columns),
            "referred_table": self.referred_table,
            "constraint": self.constraint,
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CycleBreak:
        """The inverse of [to_dict][carmigrate.records.CycleBreak.to_dict]."""
        return cls(
            table=data["table"],
            columns=tuple(data["columns"]),
            referred_table=data["referred_table"],
            constraint=data["constraint"],
            method=data["method"],
        )


@attrs.frozen
class TextFingerprint:
    """The source rows of one table as PostgreSQL wrote them when the plan was made.

    The SHA-256 of the ``COPY`` text lines of the table's rows in scope
    (see [Database.copy_lines][carmigrate.records.Database.copy_lines]), read
    in the same snapshot as the rows the plan was computed from. At
    execution, reading the same lines again and finding the same digest
    proves that no planned row changed, without decoding a single row;
    any difference falls back to comparing every row's digest.

    Attributes:
        table: The table.
        columns: The columns read, in field order.
        filtered: Whether only the plan's rows were read (by primary key)
            rather than the whole table.
        sha256: The hex SHA-256 of the lines.
        rows: How many lines.
    """

    table: str
    columns: tuple[str, ...]
    filtered: bool
    sha256: str
    rows: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "table": self.table,
            "columns": list(self.columns),
            "filtered": self.filtered,
            "sha256": self.sha256,
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TextFingerprint:
        """The inverse of [to_dict][carmigrate.records.TextFingerprint.to_dict]."""
        return cls(
            table=str(data["table"]),
            columns=tuple(str(c) for c in data["columns"]),
            filtered=bool(data["filtered"]),
            sha256=str(data["sha256"]),
            rows=int(data["rows"]),
        )


@attrs.frozen
class RecordStage:
    """One stage: a context's tables in dependency order, and the cycles it breaks.

    Attributes:
        name: The context's name (``"all"`` without contexts).
        tables: Its tables, referenced tables first.
        cycle_breaks: The foreign keys of cycles this stage satisfies after
            (or, deferred, while) inserting its rows.
    """

    name: str
    tables: tuple[str, ...]
    cycle_breaks: tuple[CycleBreak, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "name": self.name,
            "tables": list(self.tables),
            "cycle_breaks": [c.to_dict() for c in self.cycle_breaks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordStage:
        """The inverse of [to_dict][carmigrate.records.RecordStage.to_dict]."""
        return cls(
            name=data["name"],
            tables=tuple(data["tables"]),
            cycle_breaks=tuple(CycleBreak.from_dict(c) for c in data["cycle_breaks"]),
        )


@attrs.frozen
class RecordSummary:
    """Counts of a record plan: rows per stage, table and action; findings per kind and policy.

    Attributes:
        source: The source database (URL without password).
        destination: The destination database.
        rows: ``(stage, table, action, count)`` in stage and table order,
            actions with a zero count left out.
        findings: ``(kind, policy, count)`` sorted.
        id_map: How many ID map entries.
        object_keys: How many object keys the plan maps.
    """

    source: str
    destination: str
    rows: tuple[tuple[str, str, str, int], ...]
    findings: tuple[tuple[str, str, int], ...]
    id_map: int
    object_keys: int

    def count(self, action: RowAction | str, table: str | None = None) -> int:
        """Rows with ``action`` (in ``table``, or in all tables)."""
        name = action.value if isinstance(action, RowAction) else action
        return sum(
            n for _, t, a, n in self.rows if a == name and (table is None or t == table)
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "source": self.source,
            "destination": self.destination,
            "rows": [
                {"stage": s, "table": t, "action": a, "count": n}
                for s, t, a, n in self.rows
            ],
            "findings": [
                {"kind": k, "policy": p, "count": n} for k, p, n in self.findings
            ],
            "by_action": {a.value: self.count(a) for a in _ACTIONS},
            "id_map": self.id_map,
            "object_keys": self.object_keys,
        }

    def to_markdown(self) -> str:
        """The summary as Markdown: a line, a table of rows, a table of findings.

        Table names and other text are escaped (``|``, backticks, line
        breaks), so they cannot break the tables.
        """
        totals = ", ".join(f"{self.count(a)} {a.value}" for a in _ACTIONS)
        lines = [
            f"# Record plan: {_md(self.source)} → {_md(self.destination)}",
            "",
            f"{totals}; {self.id_map} ID map entries, {self.object_keys} object keys.",
            "",
            "| stage | table | action | rows |",
            "|---|---|---|---:|",
            *(f"| {_md(s)} | {_md(t)} | {a} | {n} |" for s, t, a, n in self.rows),
        ]
        if self.findings:
            lines += [
                "",
                "| finding | policy | rows |",
                "|---|---|---:|",
                *(f"| {k} | {p} | {n} |" for k, p, n in self.findings),
            ]
        return "\n".join(lines) + "\n"

    def _repr_html_(self) -> str:
        h = _html
        totals = ", ".join(f"{self.count(a)} {a.value}" for a in _ACTIONS)
        parts = [
            h.Markup(
                f"<p>{h.text(totals)}; {h.text(h.count(self.id_map, 'ID map entry'))}</p>"
            ),
            h.table(("stage", "table", "action", "rows"), self.rows),
        ]
        if self.findings:
            parts += [
                h.heading("Findings"),
                h.table(("finding", "policy", "rows"), self.findings),
            ]
        return h.block(
            h.Markup("<b>Record plan</b>"),
            *parts,
            subtitle=f"{self.source} → {self.destination}",
        )


def _md(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    return " ".join(text.split())


@attrs.frozen(eq=True)
class RecordPlan:
    """What moving rows from one database to another will do; computing it writes nothing.

    Attributes:
        source: The source database (URL without password).
        destination: The destination database.
        stages: The stages in execution order.
        rows: Every source row in scope, in stage, table and key order.
        id_map: Every mapped key value (inserted and merged rows).
        findings: Every pre-flight finding with the policy applied.
        object_keys: Object keys the object engine maps.
        offsets: ``(table, column, offset)`` of every ``offset`` rule: the
            destination's maximum at planning plus the rule's margin.
        fingerprints: The source rows of each table as PostgreSQL wrote
            them at planning (PostgreSQL sources only), for a fast check at
            execution that they did not change.
    """

    source: str
    destination: str
    stages: tuple[RecordStage, ...]
    rows: tuple[RowPlan, ...]
    id_map: tuple[IdMapEntry, ...]
    findings: tuple[Finding, ...] = ()
    object_keys: tuple[ObjectKeyChange, ...] = ()
    offsets: tuple[tuple[str, str, int], ...] = ()
    fingerprints: tuple[TextFingerprint, ...] = ()

    @functools.cached_property
    def id(self) -> str:
        """The plan's id: ``sha256:`` and the hex SHA-256 of its header line (computed once)."""
        with paused_gc():
            header, _ = _encode(self)
        return "sha256:" + hashlib.sha256(header.encode("ascii")).hexdigest()

    @property
    def conflicts(self) -> tuple[RowPlan, ...]:
        """Rows in conflict (a finding's policy is ``fail``)."""
        return tuple(r for r in self.rows if r.action is RowAction.CONFLICT)

    @property
    def ok(self) -> bool:
        """``True`` when no row is in conflict."""
        return not self.conflicts

    def rows_of(
        self, table: str, action: RowAction | None = None
    ) -> tuple[RowPlan, ...]:
        """The rows of ``table`` (with ``action``, if given)."""
        return tuple(
            r
            for r in self.rows
            if r.table == table and (action is None or r.action is action)
        )

    def mapped(self, table: str, column: str) -> dict[Any, Any]:
        """The ID map of one key column: old value to new value."""
        return {
            e.old: e.new for e in self.id_map if e.table == table and e.column == column
        }

    def raise_for_conflicts(self) -> None:
        """Raise if any finding's policy is ``fail``.

        Raises:
            PreflightError: Carrying the failing findings; the message counts
                them by kind.
        """
        failing = [f for f in self.findings if f.policy is Resolution.FAIL]
        if failing:
            kinds = Counter(f.kind.value for f in failing)
            detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
            msg = f"the record plan has {len(failing)} findings that fail: {detail}"
            raise PreflightError(msg, failing)

    def summary(self) -> RecordSummary:
        """Counts per stage, table and action, and findings per kind and policy."""
        stage_of = {t: s.name for s in self.stages for t in s.tables}
        order = {t: i for i, t in enumerate(t for s in self.stages for t in s.tables)}
        counts = Counter((r.table, r.action) for r in self.rows)
        rows = tuple(
            (stage_of.get(t, ""), t, a.value, counts[t, a])
            for t in sorted(order, key=order.__getitem__)
            for a in _ACTIONS
            if counts[t, a]
        )
        findings = Counter((f.kind.value, f.policy.value) for f in self.findings)
        return RecordSummary(
            source=self.source,
            destination=self.destination,
            rows=rows,
            findings=tuple((k, p, n) for (k, p), n in sorted(findings.items())),
            id_map=len(self.id_map),
            object_keys=len(self.object_keys),
        )

    def to_markdown(self) -> str:
        """The summary as Markdown (see [RecordSummary.to_markdown][carmigrate.records.RecordSummary.to_markdown])."""
        return self.summary().to_markdown()

    def to_dict(self) -> dict[str, Any]:
        """The whole plan as plain JSON data (the header's fields and every line)."""
        return {
            **_header(self),
            "rows": [r.to_dict() for r in self.rows],
            "id_map": [e.to_dict() for e in self.id_map],
            "findings": [f.to_dict() for f in self.findings],
            "object_keys": [o.to_dict() for o in self.object_keys],
        }

    def to_json(self) -> str:
        """[to_dict][carmigrate.records.RecordPlan.to_dict] as canonical JSON."""
        return canonical_json(self.to_dict())

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


def _header(plan: RecordPlan) -> dict[str, Any]:
    return {
        "format": PLAN_FORMAT,
        "version": PLAN_VERSION,
        "source": plan.source,
        "destination": plan.destination,
        "stages": [s.to_dict() for s in plan.stages],
        "offsets": [list(o) for o in plan.offsets],
        **(
            {"fingerprints": [f.to_dict() for f in plan.fingerprints]}
            if plan.fingerprints
            else {}
        ),
        "counts": {
            "rows": len(plan.rows),
            "id_map": len(plan.id_map),
            "findings": len(plan.findings),
            "object_keys": len(plan.object_keys),
        },
    }


_LINE_KINDS: Final = ("row", "id", "finding", "object_key")


_quote: Final = json.encoder.encode_basestring_ascii


def _value_json(value: object) -> str:
    """``canonical_json(encode_value(value))``, without the calls for the common scalars."""
    kind = type(value)
    if isinstance(value, str) and kind is str:
        return _quote(value)
    if kind is int:
        return str(value)
    if value is None:
        return "null"
    return canonical_json(encode_value(value))


def _values_json(values: tuple[Any, ...]) -> str:
    if len(values) == 1:
        return _value_json(values[0])
    return ",".join(map(_value_json, values))


def _row_line(r: RowPlan) -> str:
    """``canonical_json({"row": r.to_dict()})``, assembled directly (keys in sorted order)."""
    changes = (
        ',"changes":{'
        + ",".join(
            f"{_quote(c)}:{_value_json(x)}" for c, x in sorted(r.changes.items())
        )
        + "}"
        if r.changes
        else ""
    )
    reason = f',"reason":{_quote(r.reason)}' if r.reason else ""
    target = (
        "" if r.target_key is None else f',"target_key":[{_values_json(r.target_key)}]'
    )
    return (
        f'{{"row":{{"action":"{r.action.value}"{changes},"digest":{_quote(r.digest)},'
        f'"key":[{_values_json(r.key)}]{reason},"table":{_quote(r.table)}{target}}}}}'
    )


def _id_line(e: IdMapEntry) -> str:
    """``canonical_json({"id": e.to_dict()})``, assembled directly."""
    return (
        f'{{"id":{{"action":"{e.action.value}","column":{_quote(e.column)},'
        f'"new":{_value_json(e.new)},"old":{_value_json(e.old)},'
        f'"table":{_quote(e.table)}}}}}'
    )


def _lines(plan: RecordPlan) -> Iterator[str]:
    for r in plan.rows:
        yield _row_line(r)
    for e in plan.id_map:
        yield _id_line(e)
    for f in plan.findings:
        yield canonical_json({"finding": f.to_dict()})
    for o in plan.object_keys:
        yield canonical_json({"object_key": o.to_dict()})


def _encode(plan: RecordPlan) -> tuple[str, list[str]]:
    lines = list(_lines(plan))
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("ascii") + b"\n")
    header = {**_header(plan), "lines_sha256": digest.hexdigest()}
    return canonical_json(header), lines


def save_record_plan(plan: RecordPlan, path: str | os.PathLike[str]) -> None:
    """Write ``plan`` to ``path`` as JSON Lines (see the module), atomically.

    The file is written beside ``path`` and renamed over it, so ``path`` is
    either the old file or the whole new one.

    Raises:
        RecordsError: The file cannot be written.
    """
    with paused_gc():
        header, lines = _encode(plan)
    tmp = f"{os.fspath(path)}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="ascii", newline="\n") as f:
            f.write(header + "\n")
            for line in lines:
                f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        msg = f"cannot write the record plan {os.fspath(path)}: {e.strerror or e}"
        raise RecordsError(msg) from e


_ACTION_OF: Final = {a.value: a for a in RowAction}
_PLAIN_JSON: Final = frozenset({str, int, bool, type(None)})


def _decoded(data: Any) -> Any:
    return data if type(data) in _PLAIN_JSON else decode_value(data)


def _row_from(data: Mapping[str, Any]) -> RowPlan:
    """[RowPlan.from_dict][carmigrate.records.RowPlan.from_dict], without calls for the common scalars."""
    target = data.get("target_key")
    changes = data.get("changes")
    return RowPlan(
        table=data["table"],
        key=tuple(map(_decoded, data["key"])),
        action=_ACTION_OF[data["action"]],
        target_key=None if target is None else tuple(map(_decoded, target)),
        digest=data["digest"],
        changes={} if not changes else {k: _decoded(v) for k, v in changes.items()},
        reason=data.get("reason", ""),
    )


def _id_from(data: Mapping[str, Any]) -> IdMapEntry:
    """[IdMapEntry.from_dict][carmigrate.records.IdMapEntry.from_dict], likewise."""
    return IdMapEntry(
        table=data["table"],
        column=data["column"],
        old=_decoded(data["old"]),
        new=_decoded(data["new"]),
        action=_ACTION_OF[data["action"]],
    )


def load_record_plan(path: str | os.PathLike[str]) -> RecordPlan:
    """Read a record plan written by [save_record_plan][carmigrate.records.save_record_plan].

    Raises:
        RecordsError: The file cannot be read, is not a record plan, is of
            a newer version, or its lines do not match its header (counts or
            SHA-256); the message names the file and the line.
    """
    with paused_gc():
        return _load_record_plan(path)


def _load_record_plan(path: str | os.PathLike[str]) -> RecordPlan:
    name = os.fspath(path)
    try:
        with open(path, encoding="ascii") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        msg = f"cannot read the record plan {name}: {e}"
        raise RecordsError(msg) from e
    raw = text.split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    if not raw:
        msg = f"{name} is empty, not a record plan"
        raise RecordsError(msg)
    try:
        header = json.loads(raw[0])
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != PLAN_FORMAT:
        msg = f"{name} is not a record plan (line 1 has no format {PLAN_FORMAT!r})"
        raise RecordsError(msg)
    if header.get("version") != PLAN_VERSION:
        msg = f"{name} is a record plan of version {header.get('version')!r}; this release reads version {PLAN_VERSION}"
        raise RecordsError(msg)
    digest = hashlib.sha256()
    for line in raw[1:]:
        digest.update(line.encode("ascii") + b"\n")
    if digest.hexdigest() != header.get("lines_sha256"):
        msg = f"{name}: the lines after the header do not match its lines_sha256 (truncated or edited)"
        raise RecordsError(msg)
    parts: dict[str, list[Any]] = {k: [] for k in _LINE_KINDS}
    decoders: dict[str, Any] = {
        "row": _row_from,
        "id": _id_from,
        "finding": Finding.from_dict,
        "object_key": ObjectKeyChange.from_dict,
    }
    # one parse of every line at once (canonical JSON has no raw newline);
    # a line that does not parse is found again line by line, for its number
    try:
        datas = json.loads("[" + ",".join(raw[1:]) + "]")
    except ValueError:
        datas = None
    for number, line in enumerate(raw[1:], start=2):
        try:
            data = json.loads(line) if datas is None else datas[number - 2]
            ((kind, body),) = data.items()
            parts[kind].append(decoders[kind](body))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            msg = f"{name}, line {number}: not a record plan line ({e})"
            raise RecordsError(msg) from e
    try:
        plan = RecordPlan(
            source=header["source"],
            destination=header["destination"],
            stages=tuple(RecordStage.from_dict(s) for s in header["stages"]),
            rows=tuple(parts["row"]),
            id_map=tuple(parts["id"]),
            findings=tuple(parts["finding"]),
            object_keys=tuple(parts["object_key"]),
            offsets=tuple((str(t), str(c), int(o)) for t, c, o in header["offsets"]),
            fingerprints=tuple(
                TextFingerprint.from_dict(f) for f in header.get("fingerprints", ())
            ),
        )
    except (KeyError, TypeError, ValueError) as e:
        msg = f"{name}, line 1: malformed record plan header ({e})"
        raise RecordsError(msg) from e
    if _header(plan)["counts"] != header.get("counts"):
        msg = f"{name}: the header's counts do not match its lines"
        raise RecordsError(msg)
    if canonical_json(header) == raw[0]:
        # the id is the header line's digest: no need to encode every line again
        object.__setattr__(
            plan, "id", "sha256:" + hashlib.sha256(raw[0].encode("ascii")).hexdigest()
        )
    return plan
