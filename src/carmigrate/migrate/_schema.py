"""The item schema, declared once: field metadata and what is derived from it.

The planned fields of an item are the attrs fields of
[PlanItem][carmigrate.migrate.PlanItem]; the fields of what happened to it are
those of [ItemOutcome][carmigrate.migrate.ItemOutcome]; the ledger's own
bookkeeping is on [ItemRecord][carmigrate.migrate.ItemRecord], which nests the
planned item. Each field carries a
[Column][carmigrate.migrate.lowlevel.Column] in its metadata (made by
[column][carmigrate.migrate.lowlevel.column]), and everything that restates an
item's shape is derived from those declarations here:

- the ledger's ``items`` table: its column definitions and column list;
- the decoding of a ledger row into an ``ItemRecord``, by column name;
- which columns a recorded outcome sets, and how values are stored;
- the one canonical plan-line encoder, used by the planner (and so by
  ``plan()`` and ``diff()`` alike) and by
  [encode_item][carmigrate.migrate.serde.encode_item];
- the mapping of a plan line to the ledger's planned columns (attach).

The encoders and decoders are generated once, at import, as plain Python
functions (the way attrs generates ``__init__``), so a plan of ten million
items pays for no per-field loop. Adding a field is one edit to the attrs
class, plus, for a ledger that exists, one step in the ledger's migrations.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring_ascii
from typing import Any, Final

import attrs

from carmigrate.digests import DigestMap

__all__ = [
    "Column",
    "ColumnKind",
    "FlatColumn",
    "LineEncoder",
    "Record",
    "column",
    "flat_columns",
]

META: Final = "carmigrate.column"


class ColumnKind(enum.Enum):
    """How a field's value is held in a ledger column and written in a plan line.

    Attributes:
        TEXT: A string (``None`` allowed where the field allows it).
        INT: An integer.
        REAL: A float (times).
        BOOL: ``True``/``False`` (or ``None`` where the field allows it); an
            integer 0/1 in the ledger.
        ENUM: An enum member; its value in the ledger and in plan lines.
        LIST: A tuple of strings; a JSON array in the ledger (``NULL`` when
            empty).
        DIGESTS: A [DigestMap][carmigrate.digests.DigestMap]; a canonical
            JSON object in the ledger and in plan lines (``NULL`` / left out
            when empty).
        NESTED: An attrs value whose own declared columns are inlined (the
            planned item inside a ledger record).
    """

    TEXT = "text"
    INT = "int"
    REAL = "real"
    BOOL = "bool"
    ENUM = "enum"
    LIST = "list"
    DIGESTS = "digests"
    NESTED = "nested"


class Record(enum.Enum):
    """When a recorded outcome sets a field's ledger column.

    Attributes:
        ALWAYS: With every recorded outcome (``reason``, the failure offset).
        IF_SET: When the outcome has a value (not ``None``, not empty).
        ON_SUCCESS: With every successful outcome (``VERIFIED``,
            ``UNVERIFIABLE``, ``COPIED``); otherwise only when set, so a
            failed attempt keeps what an earlier success recorded.
        NEVER: Not set from an outcome (planned fields, bookkeeping).
    """

    ALWAYS = "always"
    IF_SET = "if_set"
    ON_SUCCESS = "on_success"
    NEVER = "never"


@attrs.frozen(kw_only=True)
class Column:
    """The declaration of one field's column (kept in the attrs field's metadata).

    Attributes:
        name: The ledger column's name (default: the field's name).
        kind: How the value is encoded.
        sql: The column's SQL type and constraints.
        record: For outcome fields: when a recorded outcome sets it.
        type: For ``ENUM``: the enum class; for ``NESTED``: the attrs class.
        omit_if_same_as: In plan lines, leave the field out when it equals
            this other field (``destination_key`` equal to ``source_key``).
        line_cache: A required field whose value repeats across consecutive
            plan lines (stage, cohort, action): the planner may encode it
            once and reuse it. Such fields must lead or trail the key order.
    """

    name: str | None = None
    kind: ColumnKind = ColumnKind.TEXT
    sql: str = "TEXT"
    record: Record = Record.NEVER
    type: type | None = None
    omit_if_same_as: str | None = None
    line_cache: bool = False


def column(
    *,
    name: str | None = None,
    kind: ColumnKind = ColumnKind.TEXT,
    sql: str = "TEXT",
    record: Record = Record.NEVER,
    type: type | None = None,
    omit_if_same_as: str | None = None,
    line_cache: bool = False,
    **field_kwargs: Any,
) -> Any:
    """An ``attrs.field`` declared as a ledger column (and a plan-line key).

    Args:
        name: The column's name, if it differs from the field's.
        kind: The encoding.
        sql: SQL type and constraints.
        record: When a recorded outcome sets it.
        type: The enum class (``ENUM``) or attrs class (``NESTED``).
        omit_if_same_as: Plan lines leave the field out when it equals this
            field.
        line_cache: The planner may cache the field's encoding (see
            [Column][carmigrate.migrate.lowlevel.Column]).
        **field_kwargs: Passed on to ``attrs.field`` (``default``,
            ``converter``, ``factory``, ...).
    """
    meta = Column(
        name=name,
        kind=kind,
        sql=sql,
        record=record,
        type=type,
        omit_if_same_as=omit_if_same_as,
        line_cache=line_cache,
    )
    return attrs.field(metadata={META: meta}, **field_kwargs)


@attrs.frozen(kw_only=True)
class FlatColumn:
    """One declared column, resolved (nested values inlined).

    Attributes:
        path: Attribute names from the outer class down to the field
            (``("item", "source_key")``).
        name: The ledger column's name.
        kind: Its encoding.
        sql: SQL type and constraints.
        record: When an outcome sets it.
        type: The enum class, for ``ENUM``.
        omit_if_same_as: See [Column][carmigrate.migrate.lowlevel.Column].
        line_cache: See [Column][carmigrate.migrate.lowlevel.Column].
        required: The field has no default.
        default: The field's default (``None`` when required).
    """

    path: tuple[str, ...]
    name: str
    kind: ColumnKind
    sql: str
    record: Record
    type: type | None
    omit_if_same_as: str | None
    line_cache: bool
    required: bool
    default: Any

    @property
    def attr(self) -> str:
        """The field's own name (the last element of ``path``)."""
        return self.path[-1]


def flat_columns(cls: type, _prefix: tuple[str, ...] = ()) -> tuple[FlatColumn, ...]:
    """The declared columns of an attrs class in field order, nested values inlined.

    Fields without a [Column][carmigrate.migrate.lowlevel.Column] are
    skipped.

    Raises:
        TypeError: Two columns share a name.
    """
    out: list[FlatColumn] = []
    for f in attrs.fields(cls):
        meta = f.metadata.get(META)
        if meta is None:
            continue
        if meta.kind is ColumnKind.NESTED:
            assert meta.type is not None
            out.extend(flat_columns(meta.type, (*_prefix, f.name)))
            continue
        default = f.default
        required = default is attrs.NOTHING
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        out.append(
            FlatColumn(
                path=(*_prefix, f.name),
                name=meta.name or f.name,
                kind=meta.kind,
                sql=meta.sql,
                record=meta.record,
                type=meta.type,
                omit_if_same_as=meta.omit_if_same_as,
                line_cache=meta.line_cache,
                required=required,
                default=None if required else default,
            )
        )
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise TypeError(f"{cls.__name__} declares the columns {dup} more than once")
    return tuple(out)


# ----------------------------------------------------------------------
# value codecs

_q: Final[Callable[[str], str]] = encode_basestring_ascii
_EMPTY: Final = DigestMap()


def digests_json(digests: Mapping[str, str]) -> str:
    """The canonical JSON of a digest map (registry names and hex need no escaping)."""
    if type(digests) is DigestMap:
        return digests.to_json()
    if len(digests) == 1:  # the common case: one digest vouched for
        for k, v in digests.items():
            return '{"' + k + '":"' + v + '"}'
    return "{" + ",".join(f'"{k}":"{digests[k]}"' for k in sorted(digests)) + "}"


def _list_json(value: tuple[str, ...]) -> str:
    return json.dumps(list(value))


def to_column(kind: ColumnKind, value: Any) -> Any:
    """A field value as the ledger stores it."""
    if value is None:
        return None
    if kind is ColumnKind.BOOL:
        return int(bool(value))
    if kind is ColumnKind.ENUM:
        return value.value
    if kind is ColumnKind.LIST:
        return _list_json(value) if value else None
    if kind is ColumnKind.DIGESTS:
        return digests_json(value) if value else None
    return value


def digests_from_column(text: str | None) -> DigestMap:
    """A digest map from its ledger column (canonical JSON or ``NULL``)."""
    if not text:
        return _EMPTY
    return DigestMap(json.loads(text))


def _list_from_column(text: str | None) -> tuple[str, ...]:
    return tuple(json.loads(text)) if text else ()


def _bool_or_none(value: int | None) -> bool | None:
    return None if value is None else bool(value)


# ----------------------------------------------------------------------
# code generation


def _compile(name: str, source: str, env: dict[str, Any]) -> Callable[..., Any]:
    namespace: dict[str, Any] = dict(env)
    code = compile(source, f"<carmigrate item schema: {name}>", "exec")
    exec(code, namespace)  # noqa: S102 - the source is built from the declarations here
    fn: Callable[..., Any] = namespace[name]
    fn.__doc__ = (
        f"Generated from the item schema (carmigrate.migrate._schema):\n\n{source}"
    )
    return fn


@attrs.frozen(kw_only=True)
class LineEncoder:
    """The plan-line encoders generated for a declared class (see [make_line_encoder][]).

    Attributes:
        keys: Every field, in key (sorted) order: the arguments of ``full``.
        head_keys: The leading keys marked ``line_cache`` (arguments of
            ``head``).
        body_keys: The keys between head and tail (arguments of ``body``
            after the encoded head and tail).
        tail_keys: The trailing keys marked ``line_cache`` (arguments of
            ``tail``).
        full: Encodes a whole line from every field.
        head: Encodes the line's start from the head fields.
        tail: Encodes the line's end from the tail fields.
        body: ``body(head_text, tail_text, *body fields)``: the whole line,
            with head and tail already encoded (a caller that sees the same
            head and tail values many times in a row caches them).
    """

    keys: tuple[str, ...]
    head_keys: tuple[str, ...]
    body_keys: tuple[str, ...]
    tail_keys: tuple[str, ...]
    full: Callable[..., str]
    head: Callable[..., str]
    tail: Callable[..., str]
    body: Callable[..., str]


def _dj(d: Mapping[str, str]) -> str:
    return d.to_json() if type(d) is DigestMap else digests_json(d)


def make_line_encoder(cls: type) -> LineEncoder:
    """The canonical-JSON line encoders of ``cls``: positional arguments in key order.

    Keys come sorted; a field with a default is left out when it equals it
    (``None``, ``False``, empty); a field with ``omit_if_same_as`` when it
    equals that field; a required field is always written (``null`` for
    ``None``). Fields marked ``line_cache`` at the start and the end of the
    key order may be passed pre-encoded (``body``).

    Raises:
        TypeError: The first key is not a required field, or a ``line_cache``
            field stands between others.
    """
    specs = sorted(flat_columns(cls), key=lambda s: s.attr)
    if not specs or not specs[0].required:
        raise TypeError(f"the first key of a {cls.__name__} line must be required")
    cached = [s.line_cache for s in specs]
    nh = cached.index(False) if False in cached else len(specs)
    nt = cached[::-1].index(False) if False in cached else 0
    if any(cached[nh : len(specs) - nt]):
        raise TypeError(
            f"{cls.__name__}: line_cache fields must lead or trail the keys"
        )
    for s in (*specs[:nh], *specs[len(specs) - nt :]):
        if not s.required or s.omit_if_same_as is not None:
            raise TypeError(
                f"{cls.__name__}.{s.attr}: a line_cache field must be required"
            )

    # Each field is one f-string part (an expression: the key and value, or
    # "" when the field is left out); a line is built in one go, with no
    # intermediate strings. A digest map is encoded by a statement first.
    env: dict[str, Any] = {
        "q": _q,
        "dj": _dj,
        "lj": _list_json,
        "DM": DigestMap,
        "DQ": '"',
    }
    parts: list[str] = []
    preludes: dict[int, str] = {}
    for i, s in enumerate(specs):
        a = s.attr
        k = s.kind
        key = f"K{i}"
        env[key] = ("," if i else "{") + f'"{a}":'
        if k is ColumnKind.TEXT:
            val = f"q({a})" if not s.required else f"'null' if {a} is None else q({a})"
        elif k is ColumnKind.INT:
            val = a
        elif k is ColumnKind.REAL:
            val = f"repr(float({a}))"
        elif k is ColumnKind.BOOL:
            val = f"'true' if {a} else 'false'"
        elif k is ColumnKind.ENUM:
            val = f"DQ + {a}.value + DQ"
        elif k is ColumnKind.DIGESTS:
            # one digest in a plain dict (a listing's entry) needs no call; a
            # DigestMap keeps its JSON once made; the sort carries JSON text
            preludes[i] = (
                f"    if not {a}:\n"
                f"        {a}_ = ''\n"
                f"    elif type({a}) is dict and len({a}) == 1:\n"
                f"        ((_k, _v),) = {a}.items()\n"
                f'        {a}_ = f\'{{{key}}}{{{{"{{_k}}":"{{_v}}"}}}}\'\n'
                f"    elif type({a}) is str:\n"
                f"        {a}_ = {key} + {a}\n"
                f"    else:\n"
                f"        {a}_ = {key} + (({a}._json or dj({a})) if type({a}) is DM else dj({a}))\n"
            )
            parts.append(f"{{{a}_}}")
            continue
        else:
            val = f"lj({a})"
        if s.omit_if_same_as is not None:
            other = s.omit_if_same_as
            cond = f"{other} is None or {a} != {other}"
        elif s.required:
            cond = None
        elif k in (ColumnKind.BOOL, ColumnKind.LIST):
            cond = a
        else:
            cond = f"{a} is not None"
        literal = env[key].replace("{", "{{")
        if k is ColumnKind.INT:
            text = f"{literal}{{{a}:d}}"
            if cond is not None:
                text = f"{{{key} + format({a}, 'd') if {cond} else ''}}"
        elif cond is None:
            text = f"{literal}{{{val}}}"
        else:
            text = f"{{{key} + ({val}) if {cond} else ''}}"
        parts.append(text)

    def fn(name: str, params: list[str], lo: int, hi: int, start: str, end: str) -> str:
        prelude = "".join(preludes.get(i, "") for i in range(lo, hi))
        body = start + "".join(parts[lo:hi]) + end
        return f'def {name}({", ".join(params)}):\n{prelude}    return f"""{body}"""\n'

    keys = [s.attr for s in specs]
    head_keys, body_keys = keys[:nh], keys[nh : len(keys) - nt]
    tail_keys = keys[len(keys) - nt :]
    n = len(keys)
    source = "\n".join(
        [
            fn("full", keys, 0, n, "", "}}"),
            fn("head", head_keys, 0, nh, "", ""),
            fn("tail", tail_keys, n - nt, n, "", "}}"),
            fn(
                "body", ["head_", "tail_", *body_keys], nh, n - nt, "{head_}", "{tail_}"
            ),
        ]
    )
    namespace: dict[str, Any] = dict(env)
    code = compile(source, f"<carmigrate item schema: {cls.__name__} lines>", "exec")
    exec(code, namespace)  # noqa: S102 - the source is built from the declarations
    return LineEncoder(
        keys=tuple(keys),
        head_keys=tuple(head_keys),
        body_keys=tuple(body_keys),
        tail_keys=tuple(tail_keys),
        full=namespace["full"],
        head=namespace["head"],
        tail=namespace["tail"],
        body=namespace["body"],
    )


def make_line_to_row(cls: type) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """Decoded plan line (a dict) → the values of ``cls``'s ledger columns, in order."""
    parts = []
    for s in flat_columns(cls):
        a = s.attr
        get = f"d[{a!r}]" if s.required else f"d.get({a!r})"
        if s.omit_if_same_as is not None:
            get = f"d.get({a!r}, d.get({s.omit_if_same_as!r}))"
        elif s.required and s.kind is ColumnKind.TEXT:
            get = f"d.get({a!r})"  # a required text may be null (EXTRA's source_key)
        if s.kind is ColumnKind.BOOL:
            expr = f"(1 if {get} else 0)"
        elif s.kind is ColumnKind.DIGESTS:
            expr = f"dj_none({get})"
        elif s.kind is ColumnKind.LIST:
            expr = f"lj_none({get})"
        else:
            expr = get
        parts.append(expr)
    source = "def line_to_row(d):\n    return (" + ", ".join(parts) + ",)\n"
    return _compile(
        "line_to_row",
        source,
        {
            "dj_none": lambda v: digests_json(v) if v else None,
            "lj_none": lambda v: _list_json(v) if v else None,
        },
    )


def make_row_decoder(cls: type) -> Callable[[tuple[Any, ...]], Any]:
    """A ledger row (the columns of ``flat_columns(cls)``, in order) → a ``cls`` value.

    Nested values are built with their own classes; every cell is decoded by
    its declared kind, found by name in the derived column list.
    """
    env: dict[str, Any] = {
        "fd": digests_from_column,
        "fl": _list_from_column,
        "fb": _bool_or_none,
    }
    index = {c.path: i for i, c in enumerate(flat_columns(cls))}

    def build(target: type, prefix: tuple[str, ...]) -> str:
        cname = f"C_{target.__name__}"
        env[cname] = target
        parts = []
        for f in attrs.fields(target):
            meta = f.metadata.get(META)
            if meta is None:
                continue
            path = (*prefix, f.name)
            if meta.kind is ColumnKind.NESTED:
                assert meta.type is not None
                parts.append(f"{f.name}={build(meta.type, path)}")
                continue
            cell = f"row[{index[path]}]"
            k = meta.kind
            if k is ColumnKind.BOOL:
                nullable = f.default is None
                expr = f"fb({cell})" if nullable else f"bool({cell})"
            elif k is ColumnKind.ENUM:
                ename = f"E_{f.name}"
                env[ename] = meta.type
                expr = f"{ename}({cell})"
            elif k is ColumnKind.DIGESTS:
                expr = f"fd({cell})"
            elif k is ColumnKind.LIST:
                expr = f"fl({cell})"
            else:
                expr = cell
            parts.append(f"{f.name}={expr}")
        return f"{cname}(" + ", ".join(parts) + ")"

    source = f"def decode_row(row):\n    return {build(cls, ())}\n"
    return _compile("decode_row", source, env)
