"""The record mapping: contexts, ID rules, natural keys, implicit references, policies.

Declared once per migration, usually in a TOML file read by
[load_mapping][carmigrate.records.load_mapping]; every value here is frozen.
"""

from __future__ import annotations

import enum
import tomllib
import uuid
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.errors import MappingError
from carmigrate.records._refs import JsonPath, Template

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from carmigrate.records._schema import SchemaInfo

__all__ = [
    "ALLOWED_POLICIES",
    "MAPPING_VERSION",
    "Context",
    "FindingKind",
    "FindingPolicy",
    "KeyRule",
    "KeyRuleKind",
    "JsonReference",
    "NaturalKey",
    "Resolution",
    "RecordMapping",
    "TemplateReference",
    "load_mapping",
    "parse_mapping",
]

MAPPING_VERSION: Final = 1
"""The mapping file version this release reads (``version = 1``)."""


class KeyRuleKind(enum.Enum):
    """How the values of a key column are given at the destination."""

    KEEP = "keep"
    """The same value as at the source."""
    OFFSET = "offset"
    """``old + offset``, the offset being the destination's current maximum plus a margin."""
    PREFIX = "prefix"
    """``prefix + str(old)`` (string ids)."""
    UUID4 = "uuid4"
    """A fresh random UUID per row, recorded in the ID map."""
    UUID5 = "uuid5"
    """``uuid5(namespace, str(old))``: re-runs and related rows agree."""


class FindingKind(enum.Enum):
    """What a pre-flight finding is about."""

    CASE_VARIANT = "case_variant"
    """A natural key matches a destination row (or an earlier source row) only when case-folded."""
    KEY_CLASH = "key_clash"
    """A row's key after its ID rule already exists at the destination."""
    UNIQUE_CLASH = "unique_clash"
    """A row's mapped values break a unique constraint at the destination or among the planned rows."""
    REFERENCE_CHANGED = "reference_changed"
    """A merged row's references (mapped) differ from the destination row's, e.g. its owner's group."""
    DANGLING_REFERENCE = "dangling_reference"
    """A reference of a planned row points at no planned row and at no destination row."""


class Resolution(enum.Enum):
    """What the plan does with a row a finding is about."""

    MERGE = "merge"
    """Map the row to the destination row it matches; insert nothing."""
    RENAME = "rename"
    """Give the clashing column a new value by the policy's rename rule."""
    SKIP = "skip"
    """Leave the row out (rows that need it get a dangling-reference finding)."""
    FAIL = "fail"
    """Keep the row as a conflict: the plan cannot be executed as is."""


ALLOWED_POLICIES: Final[Mapping[FindingKind, frozenset[Resolution]]] = {
    FindingKind.CASE_VARIANT: frozenset(
        {Resolution.MERGE, Resolution.SKIP, Resolution.FAIL}
    ),
    FindingKind.KEY_CLASH: frozenset(Resolution),
    FindingKind.UNIQUE_CLASH: frozenset(Resolution),
    FindingKind.REFERENCE_CHANGED: frozenset(
        {Resolution.MERGE, Resolution.SKIP, Resolution.FAIL}
    ),
    FindingKind.DANGLING_REFERENCE: frozenset({Resolution.SKIP, Resolution.FAIL}),
}
"""The policies each finding kind accepts; the default for every kind is ``fail``."""


@attrs.frozen
class Context:
    """A named, ordered group of tables: one stage of a record plan.

    Attributes:
        name: The context's name (``accounts``, ``projects``).
        tables: Its tables.
    """

    name: str
    tables: tuple[str, ...]


@attrs.frozen
class KeyRule:
    """How one key column (a primary key or a referenced unique column) is mapped.

    The rule applies to the column and to every foreign-key column and
    implicit reference that points at it.

    Attributes:
        table: The table.
        column: The column; ``None`` means the table's one-column primary key.
        kind: The rule.
        margin: For ``offset``: added to the destination's current maximum.
        prefix: For ``prefix``: the text put before the old value.
        namespace: For ``uuid5``: the namespace UUID.
    """

    table: str
    column: str | None
    kind: KeyRuleKind
    margin: int = 0
    prefix: str = ""
    namespace: uuid.UUID | None = None


@attrs.frozen
class NaturalKey:
    """Columns that identify a row across databases (users by e-mail).

    Attributes:
        table: The table.
        columns: The columns, compared together.
        casefold: Compare strings case-folded (``str.casefold``).
    """

    table: str
    columns: tuple[str, ...]
    casefold: bool = False


@attrs.frozen
class JsonReference:
    """References inside a JSON column, at a [JsonPath][carmigrate.records.JsonPath].

    Attributes:
        table: The table holding the JSON column.
        column: The JSON column.
        path: Where the referencing values sit.
        target_table: The referenced table.
        target_column: The referenced key column.
    """

    table: str
    column: str
    path: JsonPath
    target_table: str
    target_column: str


@attrs.frozen
class TemplateReference:
    """References inside a string column of a [Template][carmigrate.records.Template]'s shape.

    Attributes:
        table: The table holding the string column.
        column: The string column.
        template: The string's shape.
        targets: ``(field, table, column)`` for each field that references
            a key column; other fields are kept.
        object_key: The string is an object's key in a store: the plan
            records its old and new key for the object engine.
    """

    table: str
    column: str
    template: Template
    targets: tuple[tuple[str, str, str], ...]
    object_key: bool = False


@attrs.frozen
class FindingPolicy:
    """The policy for one finding kind, for one table or for all.

    Attributes:
        kind: The finding kind.
        policy: What to do.
        table: The table it applies to; ``None`` for every table.
        rename: For ``rename``: a template with ``{value}`` (the clashing
            value) and ``{n}`` (1, 2, ... until no clash), e.g. ``"{value}_{n}"``.
    """

    kind: FindingKind
    policy: Resolution
    table: str | None = None
    rename: str | None = None


@attrs.frozen
class RecordMapping:
    """Everything a record plan needs beyond the two schemas.

    Attributes:
        contexts: Stages in order; empty means one stage of every table.
        id_rules: ID rules; a key column without one keeps its values.
        natural_keys: Natural keys for merges.
        references: Implicit references (JSON paths, templates).
        stop_tables: Tables a closure includes rows of but does not go
            beyond (see [Scope.closure][carmigrate.records.Scope.closure]).
        policies: Finding policies; the most specific one wins (table, then
            all tables), and of two equally specific ones the later; a
            finding without one fails.
        source: The file the mapping came from, if any.
    """

    contexts: tuple[Context, ...] = ()
    id_rules: tuple[KeyRule, ...] = ()
    natural_keys: tuple[NaturalKey, ...] = ()
    references: tuple[JsonReference | TemplateReference, ...] = ()
    stop_tables: tuple[str, ...] = ()
    policies: tuple[FindingPolicy, ...] = ()
    source: str | None = attrs.field(default=None, eq=False)

    def natural_key(self, table: str) -> NaturalKey | None:
        """The natural key of ``table``, if one is declared."""
        return next((n for n in self.natural_keys if n.table == table), None)

    def policy_for(self, kind: FindingKind, table: str) -> FindingPolicy:
        """The policy for a finding of ``kind`` about a row of ``table`` (``fail`` by default).

        A policy for the table wins over one for all tables; of two for the
        same tables, the one declared later wins.
        """
        specific = general = None
        for p in self.policies:
            if p.kind is kind and p.table == table:
                specific = p
            elif p.kind is kind and p.table is None:
                general = p
        return specific or general or FindingPolicy(kind=kind, policy=Resolution.FAIL)

    def check(self, schema: SchemaInfo) -> None:
        """Check that every table and column the mapping names exists in ``schema``.

        Raises:
            MappingError: Naming the mapping file, the table and the key.
        """

        def need(table: str, column: str | None, key: str) -> None:
            if table not in schema:
                msg = f"no table {table!r} in the {schema.dialect} database"
                raise MappingError(msg, path=self.source, table=table, key=key)
            if column is not None and column not in schema.table(table).column_names:
                msg = f"table {table!r} has no column {column!r}"
                raise MappingError(msg, path=self.source, table=table, key=key)

        for c in self.contexts:
            for t in c.tables:
                need(t, None, f"contexts.{c.name}.tables")
        for r in self.id_rules:
            need(r.table, r.column, "ids")
            if r.column is None and len(schema.table(r.table).primary_key) != 1:
                msg = "the table has no one-column primary key; name the column"
                raise MappingError(msg, path=self.source, table=r.table, key="ids")
        for n in self.natural_keys:
            for col in n.columns:
                need(n.table, col, "natural_keys.columns")
        for ref in self.references:
            need(ref.table, ref.column, "references.column")
            if isinstance(ref, JsonReference):
                need(ref.target_table, ref.target_column, "references.target")
            else:
                for _, t, col in ref.targets:
                    need(t, col, "references.targets")
        for t in self.stop_tables:
            need(t, None, "stop_tables")
        for p in self.policies:
            if p.table is not None:
                need(p.table, None, "policies.table")


# -- TOML -------------------------------------------------------------------------


class _Reader:
    """Typed access to a TOML table with errors naming the file, table and key."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def fail(self, message: str, key: str, table: str | None = None) -> MappingError:
        return MappingError(message, path=self.path, table=table, key=key)

    def take(
        self,
        data: Mapping[str, Any],
        name: str,
        kind: type | tuple[type, ...],
        key: str,
        table: str | None = None,
        *,
        default: Any = attrs.NOTHING,
    ) -> Any:
        if name not in data:
            if default is attrs.NOTHING:
                raise self.fail(f"missing {name!r}", f"{key}.{name}", table)
            return default
        value = data[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            names = (
                " or ".join(k.__name__ for k in kind)
                if isinstance(kind, tuple)
                else kind.__name__
            )
            msg = f"{name!r} must be a {names}, not {type(value).__name__}"
            raise self.fail(msg, f"{key}.{name}", table)
        return value

    def strings(
        self, data: Mapping[str, Any], name: str, key: str, table: str | None = None
    ) -> tuple[str, ...]:
        value = self.take(data, name, list, key, table, default=[])
        if not all(isinstance(v, str) and v for v in value):
            msg = f"{name!r} must be a list of non-empty strings"
            raise self.fail(msg, f"{key}.{name}", table)
        return tuple(value)

    def no_extra(
        self,
        data: Mapping[str, Any],
        allowed: Sequence[str],
        key: str,
        table: str | None = None,
    ) -> None:
        extra = sorted(set(data) - set(allowed))
        if extra:
            msg = f"unknown key {extra[0]!r} (expected one of: {', '.join(allowed)})"
            raise self.fail(msg, f"{key}.{extra[0]}" if key else extra[0], table)

    def entries(self, data: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            msg = f"{name!r} must be an array of tables ([[{name}]])"
            raise self.fail(msg, name)
        return value

    def target(self, text: Any, key: str, table: str) -> tuple[str, str]:
        if not isinstance(text, str) or text.count(".") != 1 or "" in text.split("."):
            msg = f"a target is 'table.column', not {text!r}"
            raise self.fail(msg, key, table)
        t, c = text.split(".")
        return t, c


_TOP_KEYS: Final = (
    "version",
    "contexts",
    "ids",
    "natural_keys",
    "references",
    "stop_tables",
    "policies",
)


def parse_mapping(data: Mapping[str, Any], *, path: str | None = None) -> RecordMapping:
    """Build a [RecordMapping][carmigrate.records.RecordMapping] from parsed TOML data.

    The layout is described on the explanation page ("The mapping file").

    Args:
        data: The parsed document.
        path: The file it came from, named in errors.

    Raises:
        MappingError: An unknown or missing key, a value of the wrong type,
            an unknown rule or policy, a policy a finding kind does not
            accept, a bad JSON path or template; the message names the file,
            the table and the key.
    """
    r = _Reader(path)
    r.no_extra(data, _TOP_KEYS, "")
    version = r.take(data, "version", int, "", default=MAPPING_VERSION)
    if version != MAPPING_VERSION:
        msg = f"mapping version {version} is not supported (this release reads {MAPPING_VERSION})"
        raise r.fail(msg, "version")

    contexts = []
    seen_tables: dict[str, str] = {}
    for i, entry in enumerate(r.entries(data, "contexts")):
        key = f"contexts[{i}]"
        r.no_extra(entry, ("name", "tables"), key)
        name = r.take(entry, "name", str, key)
        tables = r.strings(entry, "tables", key)
        for t in tables:
            if t in seen_tables:
                msg = f"table is in contexts {seen_tables[t]!r} and {name!r}"
                raise r.fail(msg, f"{key}.tables", t)
            seen_tables[t] = name
        contexts.append(Context(name=name, tables=tables))

    rules = []
    seen_rules: set[tuple[str, str | None]] = set()
    for i, entry in enumerate(r.entries(data, "ids")):
        key = f"ids[{i}]"
        r.no_extra(
            entry, ("table", "column", "rule", "margin", "prefix", "namespace"), key
        )
        table = r.take(entry, "table", str, key)
        column = r.take(entry, "column", str, key, table, default=None)
        text = r.take(entry, "rule", str, key, table)
        try:
            kind = KeyRuleKind(text)
        except ValueError:
            msg = f"unknown ID rule {text!r} (expected one of: {', '.join(k.value for k in KeyRuleKind)})"
            raise r.fail(msg, f"{key}.rule", table) from None
        if (table, column) in seen_rules:
            raise r.fail("a second ID rule for the same column", key, table)
        seen_rules.add((table, column))
        margin = r.take(entry, "margin", int, key, table, default=0)
        prefix = r.take(entry, "prefix", str, key, table, default="")
        namespace_text = r.take(entry, "namespace", str, key, table, default=None)
        namespace = None
        if namespace_text is not None:
            try:
                namespace = uuid.UUID(namespace_text)
            except ValueError:
                msg = f"namespace {namespace_text!r} is not a UUID"
                raise r.fail(msg, f"{key}.namespace", table) from None
        if kind is KeyRuleKind.UUID5 and namespace is None:
            raise r.fail("rule 'uuid5' needs a namespace", f"{key}.namespace", table)
        if kind is KeyRuleKind.PREFIX and not prefix:
            raise r.fail(
                "rule 'prefix' needs a non-empty prefix", f"{key}.prefix", table
            )
        if margin < 0:
            raise r.fail("margin must not be negative", f"{key}.margin", table)
        rules.append(
            KeyRule(
                table=table,
                column=column,
                kind=kind,
                margin=margin,
                prefix=prefix,
                namespace=namespace,
            )
        )

    natural = []
    for i, entry in enumerate(r.entries(data, "natural_keys")):
        key = f"natural_keys[{i}]"
        r.no_extra(entry, ("table", "columns", "casefold"), key)
        table = r.take(entry, "table", str, key)
        columns = r.strings(entry, "columns", key, table)
        if not columns:
            raise r.fail(
                "a natural key needs at least one column", f"{key}.columns", table
            )
        casefold = r.take(entry, "casefold", bool, key, table, default=False)
        natural.append(NaturalKey(table=table, columns=columns, casefold=casefold))

    references: list[JsonReference | TemplateReference] = []
    for i, entry in enumerate(r.entries(data, "references")):
        key = f"references[{i}]"
        table = r.take(entry, "table", str, key)
        column = r.take(entry, "column", str, key, table)
        if ("json_path" in entry) == ("template" in entry):
            msg = "a reference has either 'json_path' (with 'target') or 'template' (with 'targets')"
            raise r.fail(msg, key, table)
        if "json_path" in entry:
            r.no_extra(entry, ("table", "column", "json_path", "target"), key, table)
            try:
                jpath = JsonPath.parse(r.take(entry, "json_path", str, key, table))
            except ValueError as e:
                raise r.fail(str(e), f"{key}.json_path", table) from None
            t, c = r.target(entry.get("target"), f"{key}.target", table)
            references.append(
                JsonReference(
                    table=table,
                    column=column,
                    path=jpath,
                    target_table=t,
                    target_column=c,
                )
            )
            continue
        r.no_extra(
            entry, ("table", "column", "template", "targets", "object_key"), key, table
        )
        try:
            template = Template(r.take(entry, "template", str, key, table))
        except ValueError as e:
            raise r.fail(str(e), f"{key}.template", table) from None
        raw = r.take(entry, "targets", dict, key, table)
        targets = []
        for field, text in raw.items():
            if field not in template.fields:
                msg = f"field {field!r} is not in the template {template.text!r}"
                raise r.fail(msg, f"{key}.targets.{field}", table)
            t, c = r.target(text, f"{key}.targets.{field}", table)
            targets.append((field, t, c))
        if not targets:
            raise r.fail("'targets' names no field", f"{key}.targets", table)
        references.append(
            TemplateReference(
                table=table,
                column=column,
                template=template,
                targets=tuple(targets),
                object_key=r.take(entry, "object_key", bool, key, table, default=False),
            )
        )

    stop_tables = r.strings(data, "stop_tables", "")

    policies = []
    for i, entry in enumerate(r.entries(data, "policies")):
        key = f"policies[{i}]"
        r.no_extra(entry, ("kind", "policy", "table", "rename"), key)
        table = r.take(entry, "table", str, key, default=None)
        kind_text = r.take(entry, "kind", str, key, table)
        policy_text = r.take(entry, "policy", str, key, table)
        try:
            finding = FindingKind(kind_text)
        except ValueError:
            msg = f"unknown finding kind {kind_text!r} (expected one of: {', '.join(k.value for k in FindingKind)})"
            raise r.fail(msg, f"{key}.kind", table) from None
        try:
            policy = Resolution(policy_text)
        except ValueError:
            msg = f"unknown policy {policy_text!r} (expected one of: {', '.join(p.value for p in Resolution)})"
            raise r.fail(msg, f"{key}.policy", table) from None
        if policy not in ALLOWED_POLICIES[finding]:
            allowed = ", ".join(sorted(p.value for p in ALLOWED_POLICIES[finding]))
            msg = f"policy {policy.value!r} does not apply to {finding.value!r} findings (allowed: {allowed})"
            raise r.fail(msg, f"{key}.policy", table)
        rename = r.take(entry, "rename", str, key, table, default=None)
        if policy is Resolution.RENAME:
            if rename is None:
                raise r.fail(
                    "policy 'rename' needs a 'rename' rule", f"{key}.rename", table
                )
            try:
                fields = Template(rename).fields
            except ValueError as e:
                raise r.fail(str(e), f"{key}.rename", table) from None
            if set(fields) != {"value", "n"}:
                msg = f"rename rule {rename!r} must use exactly {{value}} and {{n}}"
                raise r.fail(msg, f"{key}.rename", table)
        policies.append(
            FindingPolicy(kind=finding, policy=policy, table=table, rename=rename)
        )
    return RecordMapping(
        contexts=tuple(contexts),
        id_rules=tuple(rules),
        natural_keys=tuple(natural),
        references=tuple(references),
        stop_tables=stop_tables,
        policies=tuple(policies),
        source=path,
    )


def load_mapping(path: str | Path) -> RecordMapping:
    """Read a TOML mapping file; see [parse_mapping][carmigrate.records.parse_mapping].

    Raises:
        MappingError: The file cannot be read, is not TOML (with the line
            and column), or its content is invalid.
    """
    name = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        msg = f"cannot read the mapping file: {e.strerror or e}"
        raise MappingError(msg, path=name) from e
    except tomllib.TOMLDecodeError as e:
        msg = f"not valid TOML: {e}"
        raise MappingError(msg, path=name) from e
    return parse_mapping(data, path=name)
