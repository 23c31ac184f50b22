"""plan_records: from two databases and a mapping to a record plan, reading only.

The steps, in the destination's dependency order of tables:

1. the scope's rows are read from the source (in primary-key order) and
   digested;
2. **keys**: rows whose natural key exists at the destination (or at an
   earlier source row) are merged; every other row's key columns get their
   ID rule's values, and a key already at the destination is a
   ``key_clash`` finding;
3. **references**: foreign-key columns take the mapped value of the key
   they reference, JSON paths and templates are rewritten structurally,
   unique constraints are checked against the destination and the planned
   rows (``unique_clash``), and merged rows are compared with the row they
   merge into (``reference_changed``);
4. **dangling references** are found until nothing changes: a reference to
   a row that is neither planned nor, for a kept key, at the destination.

Each finding's policy (merge, rename, skip, fail) decides the row's action.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.schema import sort_tables_and_constraints

from carmigrate.errors import MappingError, RecordsError
from carmigrate.records._mapping import (
    FindingKind,
    FindingPolicy,
    JsonReference,
    KeyRule,
    KeyRuleKind,
    RecordMapping,
    Resolution,
    TemplateReference,
)
from carmigrate.records._plan import (
    CycleBreak,
    Finding,
    IdMapEntry,
    ObjectKeyChange,
    RecordPlan,
    RecordStage,
    RowAction,
    RowPlan,
    TextFingerprint,
)
from carmigrate.records._scope import Scope, Selection
from carmigrate.records._values import paused_gc, row_digest

if TYPE_CHECKING:
    from carmigrate.records._database import Database
    from carmigrate.records._schema import SchemaInfo, TableInfo

__all__ = ["plan_records"]

_MAX_RENAMES = 1000
_UNRESOLVED = object()

Col = tuple[str, str]


class _Row:
    """One source row while it is planned (mutable, private to the planner)."""

    __slots__ = ("action", "data", "digest", "key", "merged", "new", "reason", "table")

    def __init__(self, table: str, key: tuple[Any, ...], data: dict[str, Any]) -> None:
        self.table = table
        self.key = key
        self.data = data
        self.digest = row_digest(data)
        self.new: dict[str, Any] = dict(data)
        self.action = RowAction.INSERT
        self.merged: dict[str, Any] | None = None
        self.reason = ""


def plan_records(
    source: Database,
    destination: Database,
    mapping: RecordMapping | None = None,
    scope: Scope | None = None,
) -> RecordPlan:
    """Plan moving ``scope``'s rows of ``source`` into ``destination``.

    Reads both databases and writes nothing to either (both are read
    through read-only connections). Rows are held in memory while planning.

    Args:
        source: Where the rows are.
        destination: Where they go; its schema decides constraints, order
            and cycles.
        mapping: Contexts, ID rules, natural keys, implicit references and
            policies; by default every key is kept and every finding fails.
        scope: Which rows; the whole source database by default.

    Returns:
        The plan. Findings whose policy is ``fail`` leave their rows in
        conflict; [RecordPlan.raise_for_conflicts][carmigrate.records.RecordPlan.raise_for_conflicts]
        turns them into an error.

    Raises:
        MappingError: The mapping names tables or columns that do not exist,
            a table in scope is in no context, or contexts are out of
            dependency order.
        RecordsError: A table or column of the source is missing at the
            destination, a foreign-key cycle cannot be broken, or a database
            failed.
    """
    with paused_gc():
        return _Planner(source, destination, mapping or RecordMapping(), scope).plan()


class _Planner:
    def __init__(
        self,
        source: Database,
        destination: Database,
        mapping: RecordMapping,
        scope: Scope | None,
    ) -> None:
        self.src = source
        self.dst = destination
        self.mapping = mapping
        self.scope = scope or Scope.database()
        self.findings: list[Finding] = []
        self.maps: dict[Col, dict[Any, Any]] = defaultdict(dict)
        self.merged_keys: set[tuple[str, tuple[Any, ...]]] = set()
        self.gone: dict[Col, set[Any]] = defaultdict(set)
        self.offsets: dict[Col, int] = {}
        self.rules: dict[Col, KeyRule] = {}

    # -- setup ----------------------------------------------------------------

    def plan(self) -> RecordPlan:
        src_schema = self.src.reflect()
        dst_schema = self.dst.reflect()
        self.mapping.check(src_schema)
        self.mapping.check(dst_schema)
        selection = self.scope.select(self.src, self.mapping)
        self._check_tables(src_schema, dst_schema, selection)
        self.schema = dst_schema
        self.stages = self._stages(list(selection))
        self.order = [t for s in self.stages for t in s.tables]
        for rule in self.mapping.id_rules:
            column = rule.column or dst_schema.table(rule.table).primary_key[0]
            self.rules[rule.table, column] = rule
        self.key_columns = self._key_columns(selection)
        self.rows: dict[str, list[_Row]] = {}
        self.fingerprints: list[TextFingerprint] = []
        for t in self.order:
            info = dst_schema.table(t)
            keys = selection[t]
            self.rows[t] = [
                _Row(t, tuple(r[c] for c in info.primary_key), r)
                for r in self.src.iter_rows(t, keys=keys)
            ]
            self._fingerprint(t, keys)
        for t in self.order:
            self._keys(dst_schema.table(t))
        for t in self.order:
            self._references(dst_schema.table(t))
        for t in self.order:
            info = dst_schema.table(t)
            for row in self.rows[t]:
                if row.action is RowAction.MERGE and row.merged is not None:
                    self._compare_merged(info, row)
        self._dangling()
        return self._result()

    def _fingerprint(self, table: str, keys: frozenset[tuple[Any, ...]] | None) -> None:
        """Digest the table's rows as PostgreSQL writes them (same snapshot as the rows)."""
        columns = tuple(c.name for c in self.src.table(table).columns)
        lines = self.src.copy_lines(
            table, columns, keys=None if keys is None else (k[0] for k in keys)
        )
        if lines is None:
            return
        digest = hashlib.sha256()
        count = 0
        with contextlib.closing(lines):
            for line in lines:
                digest.update(line)
                count += 1
        self.fingerprints.append(
            TextFingerprint(
                table=table,
                columns=columns,
                filtered=keys is not None,
                sha256=digest.hexdigest(),
                rows=count,
            )
        )

    def _check_tables(
        self, src: SchemaInfo, dst: SchemaInfo, selection: Selection
    ) -> None:
        for t in selection:
            if t not in dst:
                msg = f"table {t!r} is not at the destination {self.dst.url}"
                raise RecordsError(msg, table=t)
            missing = set(src.table(t).column_names) - set(dst.table(t).column_names)
            if missing:
                msg = (
                    f"table {t!r} at the destination {self.dst.url} has no column "
                    f"{sorted(missing)[0]!r}"
                )
                raise RecordsError(msg, table=t)
            if not dst.table(t).primary_key:
                msg = f"table {t!r} has no primary key; rows cannot be planned"
                raise RecordsError(msg, table=t)

    def _stages(self, tables: list[str]) -> tuple[RecordStage, ...]:
        dialect = self.dst.dialect
        sa_tables = [self.dst.table(t) for t in tables]

        def breakable(fkc: sa.ForeignKeyConstraint) -> bool:
            deferrable = bool(fkc.deferrable) and dialect == "postgresql"
            return deferrable or all(c.nullable for c in fkc.columns)

        try:
            result = sort_tables_and_constraints(  # type: ignore[no-untyped-call]
                sa_tables, filter_fn=lambda fkc: None if breakable(fkc) else False
            )
        except sa.exc.CircularDependencyError as e:
            names = sorted(str(getattr(c, "name", c)) for c in e.cycles)
            msg = (
                "the foreign keys among tables "
                f"{', '.join(names)} form a cycle with no nullable or deferrable "
                "foreign key to break it"
            )
            raise RecordsError(msg) from e
        order = [t.name for t, _ in result if t is not None]
        scope = set(tables)
        cycle_fks = [
            fkc
            for t, fkcs in result
            if t is None
            for fkc in fkcs
            if fkc.table.name in scope and fkc.referred_table.name in scope
        ]
        cycle_fks += [
            fkc
            for t in sa_tables
            for fkc in t.foreign_key_constraints
            if fkc.referred_table is t and breakable(fkc) and fkc not in cycle_fks
        ]
        breaks = {
            id(fkc): CycleBreak(
                table=fkc.table.name,
                columns=tuple(fkc.column_keys),
                referred_table=fkc.referred_table.name,
                constraint=str(fkc.name) if fkc.name else None,
                method=(
                    "deferred"
                    if fkc.deferrable and dialect == "postgresql"
                    else "update"
                ),
            )
            for fkc in cycle_fks
        }
        self.breaks = list(breaks.values())
        if not self.mapping.contexts:
            return (
                RecordStage(
                    name="all", tables=tuple(order), cycle_breaks=tuple(self.breaks)
                ),
            )
        context_of: dict[str, int] = {}
        for i, c in enumerate(self.mapping.contexts):
            for t in c.tables:
                context_of[t] = i
        for t in order:
            if t not in context_of:
                msg = "the table is in scope but in no context"
                raise MappingError(
                    msg, path=self.mapping.source, table=t, key="contexts"
                )
        broken = {(b.table, b.columns) for b in self.breaks}
        for sa_table in sa_tables:
            for fkc in sa_table.foreign_key_constraints:
                parent = fkc.referred_table.name
                child = sa_table.name
                if parent not in scope or (child, tuple(fkc.column_keys)) in broken:
                    continue
                if context_of[parent] > context_of[child]:
                    mine = self.mapping.contexts[context_of[child]].name
                    theirs = self.mapping.contexts[context_of[parent]].name
                    msg = (
                        f"context {mine!r} comes before context {theirs!r}, but its "
                        f"table references {parent!r} in {theirs!r}"
                    )
                    raise MappingError(
                        msg, path=self.mapping.source, table=child, key="contexts"
                    )
        stages = []
        for i, c in enumerate(self.mapping.contexts):
            members = tuple(t for t in order if context_of[t] == i)
            if not members:
                continue
            stage_breaks = tuple(
                b
                for b in self.breaks
                if max(context_of[b.table], context_of[b.referred_table]) == i
            )
            stages.append(
                RecordStage(name=c.name, tables=members, cycle_breaks=stage_breaks)
            )
        return tuple(stages)

    def _key_columns(self, selection: Selection) -> dict[str, list[str]]:
        """Per table: the columns whose values are mapped (keys and referenced columns)."""
        cols: dict[str, set[str]] = defaultdict(set)
        for t in selection:
            info = self.schema.table(t)
            if len(info.primary_key) == 1:
                cols[t].add(info.primary_key[0])
            for fk in info.foreign_keys:
                if fk.referred_table in selection:
                    cols[fk.referred_table] |= set(fk.referred_columns)
        for table, column in self.rules:
            cols[table].add(column)
        for ref in self.mapping.references:
            targets = (
                [(ref.target_table, ref.target_column)]
                if isinstance(ref, JsonReference)
                else [(t, c) for _, t, c in ref.targets]
            )
            for t, c in targets:
                cols[t].add(c)
        return {t: sorted(cs) for t, cs in cols.items()}

    # -- findings ---------------------------------------------------------------

    def _find(
        self, kind: FindingKind, row: _Row, columns: tuple[str, ...], message: str
    ) -> FindingPolicy:
        policy = self.mapping.policy_for(kind, row.table)
        self.findings.append(
            Finding(
                kind=kind,
                table=row.table,
                key=row.key,
                columns=columns,
                message=message,
                policy=policy.policy,
            )
        )
        return policy

    def _drop(self, row: _Row, action: RowAction, reason: str) -> None:
        """Leave ``row`` out (skip or conflict): nothing maps to it any more."""
        row.action = action
        row.reason = reason
        for c in self.key_columns.get(row.table, ()):
            self.maps[row.table, c].pop(row.data[c], None)
            self.gone[row.table, c].add(row.data[c])

    def _merge(self, row: _Row, target: dict[str, Any], reason: str) -> None:
        row.action = RowAction.MERGE
        row.merged = target
        row.reason = reason
        for c in self.key_columns.get(row.table, ()):
            if row.data[c] is not None:
                self.maps[row.table, c][row.data[c]] = target[c]

    def _apply(self, policy: FindingPolicy, row: _Row, reason: str) -> bool:
        """Apply skip or fail; ``True`` when the row was dropped."""
        if policy.policy is Resolution.SKIP:
            self._drop(row, RowAction.SKIP, reason)
            return True
        if policy.policy is Resolution.FAIL:
            self._drop(row, RowAction.CONFLICT, reason)
            return True
        return False

    # -- step 2: keys -------------------------------------------------------------

    def _keys(self, info: TableInfo) -> None:
        rows = self.rows[info.name]
        nk = self.mapping.natural_key(info.name)
        if nk is not None:
            self._natural_merges(info, rows, nk.columns, nk.casefold)
        for row in rows:
            if row.action is RowAction.INSERT:
                for c in self.key_columns.get(info.name, ()):
                    old = row.data[c]
                    if old is None:
                        continue
                    new = self._rule_value(info.name, c, old)
                    row.new[c] = new
                    self.maps[info.name, c][old] = new

    def _natural_merges(
        self,
        info: TableInfo,
        rows: list[_Row],
        columns: tuple[str, ...],
        casefold: bool,
    ) -> None:
        def norm(values: tuple[Any, ...]) -> tuple[Any, ...]:
            if not casefold:
                return values
            return tuple(v.casefold() if isinstance(v, str) else v for v in values)

        at_dst: dict[tuple[Any, ...], dict[str, Any]] = {}
        for d in self.dst.iter_rows(info.name):
            at_dst.setdefault(norm(tuple(d[c] for c in columns)), d)
        first: dict[tuple[Any, ...], _Row] = {}
        cols = ", ".join(columns)
        for row in rows:
            exact = tuple(row.data[c] for c in columns)
            if None in exact:
                continue
            n = norm(exact)
            if n in at_dst:
                target = at_dst[n]
                theirs = tuple(target[c] for c in columns)
                reason = f"natural key ({cols}) = {exact!r} is at the destination"
                if theirs != exact:
                    policy = self._find(
                        FindingKind.CASE_VARIANT,
                        row,
                        columns,
                        f"{info.name} {row.key!r}: ({cols}) {exact!r} matches "
                        f"{theirs!r} at the destination only when case-folded",
                    )
                    reason = f"({cols}) {exact!r} matches {theirs!r} at the destination case-folded"
                    if self._apply(policy, row, reason):
                        continue
                self._merge(row, target, reason)
            elif n in first:
                other = first[n]
                policy = self._find(
                    FindingKind.CASE_VARIANT,
                    row,
                    columns,
                    f"{info.name} {row.key!r}: ({cols}) {exact!r} matches source "
                    f"row {other.key!r} when case-folded",
                )
                reason = f"({cols}) {exact!r} matches source row {other.key!r}"
                if not self._apply(policy, row, reason):
                    row.action = RowAction.MERGE
                    row.reason = reason
                    row.merged = None
                    self._merged_into_source_row(row, other)
            else:
                first[n] = row

    def _merged_into_source_row(self, row: _Row, other: _Row) -> None:
        """``row`` is the same as the planned row ``other``: map it to ``other``'s values."""
        for c in self.key_columns.get(row.table, ()):
            if row.data[c] is not None:
                target = self.maps[row.table, c].get(other.data[c], other.new[c])
                self.maps[row.table, c][row.data[c]] = target
        row.merged = {c: other.new[c] for c in other.new}
        self.merged_keys.add((row.table, row.key))

    def _rule_value(self, table: str, column: str, old: Any) -> Any:
        rule = self.rules.get((table, column))
        if rule is None or rule.kind is KeyRuleKind.KEEP:
            return old
        if rule.kind is KeyRuleKind.OFFSET:
            if not isinstance(old, int) or isinstance(old, bool):
                msg = (
                    f"rule 'offset' needs integer values; {table}.{column} has {old!r}"
                )
                raise MappingError(
                    msg, path=self.mapping.source, table=table, key="ids"
                )
            if (table, column) not in self.offsets:
                top = self.dst.max_value(table, column)
                self.offsets[table, column] = int(top or 0) + rule.margin
            return old + self.offsets[table, column]
        if rule.kind is KeyRuleKind.PREFIX:
            return f"{rule.prefix}{old}"
        fresh = (
            uuid.uuid4()
            if rule.kind is KeyRuleKind.UUID4
            else uuid.uuid5(rule.namespace or uuid.NAMESPACE_OID, str(old))
        )
        return str(fresh) if isinstance(old, str) else fresh

    def _key_clashes(self, info: TableInfo, rows: list[_Row]) -> None:
        pk = info.primary_key
        inserts = [r for r in rows if r.action is RowAction.INSERT]
        existing = {
            tuple(d[c] for c in pk): d
            for d in self.dst.select_in(
                info.name, pk, [self._pk_value(r, pk) for r in inserts]
            )
        }
        planned: set[tuple[Any, ...]] = set()
        for row in inserts:
            new = self._pk_value(row, pk)
            if new not in existing and new not in planned:
                planned.add(new)
                continue
            where = (
                "at the destination" if new in existing else "in another planned row"
            )
            policy = self._find(
                FindingKind.KEY_CLASH,
                row,
                pk,
                f"{info.name} {row.key!r}: key {new!r} is already {where}",
            )
            reason = f"key {new!r} is already {where}"
            if self._apply(policy, row, reason):
                continue
            if policy.policy is Resolution.MERGE and new in existing:
                self._merge(row, existing[new], reason)
            elif (
                policy.policy is Resolution.RENAME
                and len(pk) == 1
                and isinstance(new[0], str)
            ):
                taken = planned | set(existing)
                fresh = self._rename(info.name, pk, new, 0, policy, taken)
                if fresh is None:
                    self._drop(row, RowAction.CONFLICT, f"{reason}; no free name")
                    continue
                row.new[pk[0]] = fresh[0]
                self.maps[info.name, pk[0]][row.data[pk[0]]] = fresh[0]
                planned.add(fresh)
            else:
                self._drop(
                    row,
                    RowAction.CONFLICT,
                    f"{reason}; policy {policy.policy.value!r} cannot resolve it",
                )

    def _pk_value(self, row: _Row, pk: tuple[str, ...]) -> tuple[Any, ...]:
        return tuple(row.new[c] for c in pk)

    def _rename(
        self,
        table: str,
        columns: tuple[str, ...],
        values: tuple[Any, ...],
        index: int,
        policy: FindingPolicy,
        taken: set[tuple[Any, ...]],
    ) -> tuple[Any, ...] | None:
        assert policy.rename is not None
        base = values[index]
        for n in range(1, _MAX_RENAMES + 1):
            name = policy.rename.format(value=base, n=n)
            candidate = (*values[:index], name, *values[index + 1 :])
            if candidate in taken:
                continue
            if any(True for _ in self.dst.select_in(table, columns, [candidate])):
                continue
            return candidate
        return None

    # -- step 3: references ---------------------------------------------------------

    def _target(self, table: str, column: str, value: Any) -> Any:
        """The mapped value of a reference to ``table.column`` = ``value``, or _UNRESOLVED."""
        m = self.maps.get((table, column))
        if m is not None and value in m:
            return m[value]
        return _UNRESOLVED

    def _references(self, info: TableInfo) -> None:
        for row in self.rows[info.name]:
            if row.action is RowAction.INSERT:
                self._rewrite(info, row)
        self._key_clashes(info, self.rows[info.name])
        self._unique_clashes(info)

    def _rewrite(self, info: TableInfo, row: _Row) -> None:
        for fk in info.foreign_keys:
            for col, ref in zip(fk.columns, fk.referred_columns, strict=True):
                value = row.data.get(col)  # None: a column the source lacks
                if value is None or (info.name, col) in self.rules:
                    continue
                target = self._target(fk.referred_table, ref, value)
                if target is not _UNRESOLVED:
                    row.new[col] = target
        for r in self.mapping.references:
            if r.table != info.name or row.data[r.column] is None:
                continue
            if isinstance(r, JsonReference):
                target_table, target_column = r.target_table, r.target_column

                def mapped(
                    v: Any, t: str = target_table, c: str = target_column
                ) -> Any:
                    return self._implicit(t, c, v)

                row.new[r.column] = r.path.rewrite(row.new[r.column], mapped)
            else:
                row.new[r.column] = self._template(r, row.new[r.column])

    def _implicit(self, table: str, column: str, value: Any) -> Any:
        """The mapped value of an implicit reference, in the JSON type it had."""
        for candidate in (value, *self._as_keys(table, column, value)):
            target = self._target(table, column, candidate)
            if target is not _UNRESOLVED:
                if isinstance(value, str):
                    return str(target)
                return target
        return value

    def _as_keys(self, table: str, column: str, value: Any) -> list[Any]:
        """``value`` (from JSON or a string) as the key column's Python values."""
        out: list[Any] = []
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                out.append(uuid.UUID(value))
            if value.lstrip("-").isdigit():
                out.append(int(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            out.append(str(value))
        return out

    def _template(self, r: TemplateReference, text: Any) -> Any:
        if not isinstance(text, str):
            return text
        fields = r.template.parse(text)
        if fields is None:
            return text
        for field, table, column in r.targets:
            fields[field] = str(self._implicit(table, column, fields[field]))
        return r.template.render(fields)

    def _unresolved_implicit(self, row: _Row) -> list[tuple[str, str]]:
        """Implicit references of ``row`` that a non-keep rule should have mapped."""
        problems: list[tuple[str, str]] = []
        for r in self.mapping.references:
            if r.table != row.table or row.data[r.column] is None:
                continue
            if isinstance(r, JsonReference):
                pairs = [
                    (r.target_table, r.target_column, v)
                    for v in r.path.values(row.data[r.column])
                ]
            else:
                text = row.data[r.column]
                fields = r.template.parse(text) if isinstance(text, str) else None
                if fields is None:
                    if any(
                        self._rule_kind(t, c) is not KeyRuleKind.KEEP
                        for _, t, c in r.targets
                    ):
                        problems.append(
                            (
                                r.column,
                                f"{r.column} = {text!r} does not have the shape {r.template.text!r}",
                            )
                        )
                    continue
                pairs = [(t, c, fields[f]) for f, t, c in r.targets]
            for t, c, v in pairs:
                if self._rule_kind(t, c) is KeyRuleKind.KEEP:
                    continue
                if all(
                    self._target(t, c, k) is _UNRESOLVED
                    for k in (v, *self._as_keys(t, c, v))
                ):
                    problems.append(
                        (
                            r.column,
                            f"{r.column} refers to {t}.{c} = {v!r}, which is not planned",
                        )
                    )
        return problems

    def _rule_kind(self, table: str, column: str) -> KeyRuleKind:
        rule = self.rules.get((table, column))
        return KeyRuleKind.KEEP if rule is None else rule.kind

    def _unique_clashes(self, info: TableInfo) -> None:
        inserts = [r for r in self.rows[info.name] if r.action is RowAction.INSERT]
        for unique in info.unique:
            cols = unique.columns
            existing = {
                tuple(d[c] for c in cols): d
                for d in self.dst.select_in(
                    info.name, cols, [tuple(r.new[c] for c in cols) for r in inserts]
                )
            }
            planned: set[tuple[Any, ...]] = set()
            for row in inserts:
                if row.action is not RowAction.INSERT:
                    continue
                values = tuple(row.new[c] for c in cols)
                if None in values:
                    continue
                if values not in existing and values not in planned:
                    planned.add(values)
                    continue
                where = (
                    "at the destination"
                    if values in existing
                    else "in another planned row"
                )
                names = ", ".join(cols)
                policy = self._find(
                    FindingKind.UNIQUE_CLASH,
                    row,
                    cols,
                    f"{info.name} {row.key!r}: unique ({names}) = {values!r} is already {where}",
                )
                reason = f"unique ({names}) = {values!r} is already {where}"
                if self._apply(policy, row, reason):
                    continue
                if policy.policy is Resolution.MERGE and values in existing:
                    self._merge(row, existing[values], reason)
                    continue
                index = self._renamable(info, cols, values)
                if policy.policy is Resolution.RENAME and index is not None:
                    fresh = self._rename(
                        info.name, cols, values, index, policy, planned | set(existing)
                    )
                    if fresh is not None:
                        row.new[cols[index]] = fresh[index]
                        planned.add(fresh)
                        continue
                self._drop(
                    row,
                    RowAction.CONFLICT,
                    f"{reason}; policy {policy.policy.value!r} cannot resolve it",
                )

    def _renamable(
        self, info: TableInfo, cols: tuple[str, ...], values: tuple[Any, ...]
    ) -> int | None:
        fk_columns = {c for fk in info.foreign_keys for c in fk.columns}
        keys = set(self.key_columns.get(info.name, ()))
        for i, c in enumerate(cols):
            if isinstance(values[i], str) and c not in fk_columns and c not in keys:
                return i
        return None

    def _compare_merged(self, info: TableInfo, row: _Row) -> None:
        assert row.merged is not None
        for fk in info.foreign_keys:
            for col, ref in zip(fk.columns, fk.referred_columns, strict=True):
                value = row.data.get(col)  # None: a column the source lacks
                if value is None:
                    continue
                mine = self._target(fk.referred_table, ref, value)
                if mine is _UNRESOLVED:
                    mine = value
                theirs = row.merged.get(col)
                if mine == theirs:
                    continue
                policy = self._find(
                    FindingKind.REFERENCE_CHANGED,
                    row,
                    (col,),
                    f"{info.name} {row.key!r} merges into a row whose {col} is "
                    f"{theirs!r}; the source's {col} {value!r} maps to {mine!r}",
                )
                if self._apply(policy, row, f"merging changes its {col}"):
                    return

    # -- step 4: dangling references -----------------------------------------------

    def _dangling(self) -> None:
        kept: dict[Col, set[Any]] = defaultdict(set)
        for t in self.order:
            info = self.schema.table(t)
            for row in self.rows[t]:
                for fk in info.foreign_keys:
                    for col, ref in zip(fk.columns, fk.referred_columns, strict=True):
                        v = row.data.get(col)
                        if (
                            v is not None
                            and self._target(fk.referred_table, ref, v) is _UNRESOLVED
                        ):
                            kept[fk.referred_table, ref].add(v)
        present: dict[Col, set[Any]] = {}
        for (table, column), values in kept.items():
            if self._rule_kind(table, column) is not KeyRuleKind.KEEP:
                present[table, column] = set()
                continue
            present[table, column] = {
                d[column]
                for d in self.dst.select_in(table, (column,), [(v,) for v in values])
            }
        changed = True
        while changed:
            changed = False
            for t in self.order:
                info = self.schema.table(t)
                for row in self.rows[t]:
                    if row.action is not RowAction.INSERT:
                        continue
                    problems = self._row_dangling(info, row, present)
                    problems += self._unresolved_implicit(row)
                    if not problems:
                        continue
                    cols = tuple(sorted({c for c, _ in problems}))
                    message = "; ".join(m for _, m in problems)
                    policy = self._find(
                        FindingKind.DANGLING_REFERENCE,
                        row,
                        cols,
                        f"{t} {row.key!r}: {message}",
                    )
                    action = (
                        RowAction.SKIP
                        if policy.policy is Resolution.SKIP
                        else RowAction.CONFLICT
                    )
                    self._drop(row, action, message)
                    changed = True

    def _row_dangling(
        self, info: TableInfo, row: _Row, present: dict[Col, set[Any]]
    ) -> list[tuple[str, str]]:
        problems = []
        for fk in info.foreign_keys:
            for col, ref in zip(fk.columns, fk.referred_columns, strict=True):
                v = row.data.get(col)
                if v is None:
                    continue
                target = self._target(fk.referred_table, ref, v)
                if target is not _UNRESOLVED:
                    row.new[col] = target
                    continue
                if v in self.gone[fk.referred_table, ref]:
                    why = "which is skipped or in conflict"
                elif v in present.get((fk.referred_table, ref), set()):
                    continue
                else:
                    why = "which is neither planned nor at the destination"
                problems.append(
                    (col, f"{col} = {v!r} refers to {fk.referred_table}.{ref}, {why}")
                )
        return problems

    # -- result -------------------------------------------------------------------

    def _result(self) -> RecordPlan:
        rows: list[RowPlan] = []
        id_map: list[IdMapEntry] = []
        object_keys: list[ObjectKeyChange] = []
        templates = [
            r
            for r in self.mapping.references
            if isinstance(r, TemplateReference) and r.object_key
        ]
        for t in self.order:
            info = self.schema.table(t)
            for row in self.rows[t]:
                target: tuple[Any, ...] | None = None
                changes: dict[str, Any] = {}
                if row.action is RowAction.INSERT:
                    target = tuple(row.new[c] for c in info.primary_key)
                    changes = {
                        c: row.new[c]
                        for c in info.column_names
                        if c in row.new and row.new[c] != row.data.get(c)
                    }
                elif row.action is RowAction.MERGE and row.merged is not None:
                    target = tuple(row.merged.get(c) for c in info.primary_key)
                rows.append(
                    RowPlan(
                        table=t,
                        key=row.key,
                        action=row.action,
                        target_key=target,
                        digest=row.digest,
                        changes=changes,
                        reason=row.reason,
                    )
                )
                if row.action in (RowAction.INSERT, RowAction.MERGE):
                    for c in self.key_columns.get(t, ()):
                        old = row.data[c]
                        if old is None:
                            continue
                        new = self.maps[t, c].get(old, old)
                        id_map.append(IdMapEntry(t, c, old, new, row.action))
                if row.action is RowAction.INSERT:
                    object_keys.extend(
                        ObjectKeyChange(
                            table=t,
                            column=r.column,
                            key=row.key,
                            old=row.data[r.column],
                            new=str(row.new[r.column]),
                        )
                        for r in templates
                        if r.table == t and isinstance(row.data[r.column], str)
                    )
        return RecordPlan(
            source=self.src.url,
            destination=self.dst.url,
            stages=self.stages,
            rows=tuple(rows),
            id_map=tuple(id_map),
            findings=tuple(self.findings),
            object_keys=tuple(object_keys),
            offsets=tuple((t, c, o) for (t, c), o in sorted(self.offsets.items())),
            fingerprints=tuple(self.fingerprints),
        )
