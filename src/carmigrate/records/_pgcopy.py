"""PostgreSQL's ``COPY`` text format, for moving rows as the server writes them.

Rows read with ``COPY (SELECT ...) TO STDOUT`` come as one line per row,
tab-separated, in each column type's text output; with the session settings
of [COPY_SETTINGS][carmigrate.records.lowlevel.COPY_SETTINGS] (ISO dates,
UTC, shortest exact floats, hex bytea) the same values give the same bytes
on any PostgreSQL server, so a fingerprint of those lines made when a plan
was computed tells at execution whether the rows are still the same, and
the lines read back after a load tell whether the destination holds exactly
what was sent. Only PostgreSQL through psycopg 3 speaks it here.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any, Final

from carmigrate.errors import RecordsError

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Sequence

    import psycopg

__all__ = [
    "COPY_SETTINGS",
    "CopyCodec",
    "apply_copy_settings",
    "array_text",
    "copy_escape",
    "copy_lines",
    "copy_unescape",
]

COPY_SETTINGS: Final = (
    ("DateStyle", "ISO, MDY"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
)
"""``(setting, value)`` set (``SET LOCAL``) before rows are read as ``COPY`` text.

They fix every setting that changes a type's text output, so equal values
give equal bytes whichever server and session read them.
"""

_JSON_OIDS: Final = frozenset({114, 3802})
_INT_OIDS: Final = frozenset({20, 21, 23})  # int8, int2, int4
_ESCAPES: Final = {
    ord("\\"): "\\\\",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}
_UNESCAPE: Final = re.compile(rb"\\(?:x([0-9a-fA-F]{1,2})|([0-7]{1,3})|(.))", re.S)
_SIMPLE: Final = {
    b"b": b"\b",
    b"f": b"\f",
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
    b"v": b"\v",
}


def apply_copy_settings(conn: psycopg.Connection[Any]) -> None:
    """``SET LOCAL`` every one of [COPY_SETTINGS][carmigrate.records.lowlevel.COPY_SETTINGS] in ``conn``'s transaction."""
    for name, value in COPY_SETTINGS:
        conn.execute(
            "SELECT set_config(%s, %s, true)",
            (name, value),
        )


def copy_escape(text: bytes) -> bytes:
    """A value's text as one ``COPY`` text field (backslash, newline, CR and tab escaped)."""
    if b"\\" in text or b"\n" in text or b"\r" in text or b"\t" in text:
        return text.decode("utf-8").translate(_ESCAPES).encode("utf-8")
    return text


def _unescape_one(m: re.Match[bytes]) -> bytes:
    if m[1] is not None:
        return bytes([int(m[1], 16)])
    if m[2] is not None:
        return bytes([int(m[2], 8) & 0xFF])
    return _SIMPLE.get(m[3], m[3])


def copy_unescape(field: bytes) -> bytes | None:
    r"""The value text of one ``COPY`` text field; ``None`` for ``\N`` (NULL)."""
    if field == b"\\N":
        return None
    if b"\\" not in field:
        return field
    return _UNESCAPE.sub(_unescape_one, field)


def array_text(values: Sequence[Any]) -> str:
    r"""A PostgreSQL array literal of ``values`` (to cast to the column's array type).

    Integers are written as they are; bytes as ``\x`` and hex; anything
    else as its ``str``; all but integers in double quotes (backslashes and
    quotes escaped): strings, UUIDs, dates.
    Much faster than adapting a long list element by element.
    """
    parts = []
    for v in values:
        if type(v) is int:
            parts.append(str(v))
        else:
            text = "\\x" + v.hex() if isinstance(v, bytes) else str(v)
            text = text.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'"{text}"')
    return "{" + ",".join(parts) + "}"


def _quoted(conn: psycopg.Connection[Any], name: str) -> str:
    from psycopg import sql

    return sql.Identifier(name).as_string(conn)


def copy_lines(
    conn: psycopg.Connection[Any],
    table: str,
    columns: Sequence[str],
    *,
    order_by: str,
    keys: Sequence[Any] | None = None,
) -> Generator[bytes, None, None]:
    r"""The rows of ``table`` as ``COPY`` text lines (each ends with ``\n``), ordered by ``order_by``.

    Only ``columns`` are read, in that order; with ``keys``, only rows
    whose ``order_by`` column equals one of them (the column is usually the
    single-column primary key). The caller sets
    [COPY_SETTINGS][carmigrate.records.lowlevel.COPY_SETTINGS] first (with
    [apply_copy_settings][carmigrate.records.lowlevel.apply_copy_settings])
    and holds the transaction; the lines stream, in bounded memory.
    """
    from psycopg import sql

    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    query = sql.SQL("SELECT {} FROM {}").format(cols, sql.Identifier(table))
    if keys is not None:
        query = sql.SQL("{} WHERE {} = ANY(CAST({} AS {}))").format(
            query,
            sql.Identifier(order_by),
            sql.Literal(array_text(keys)),
            sql.SQL(_array_type(conn, table, order_by)),
        )
    query = sql.SQL("COPY ({} ORDER BY {}) TO STDOUT").format(
        query, sql.Identifier(order_by)
    )
    with conn.cursor() as cursor, cursor.copy(query) as copy:
        while data := copy.read():
            yield bytes(data)


def _array_type(conn: psycopg.Connection[Any], table: str, column: str) -> str:
    row = conn.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attname = %s",
        (_quoted(conn, table), column),
    ).fetchone()
    if row is None:
        msg = f"table {table!r} has no column {column!r}"
        raise RecordsError(msg, table=table)
    return f"{row[0]}[]"


class CopyCodec:
    """Turns one table's ``COPY`` text fields into Python values and back.

    State: the column type OIDs of ``table`` and psycopg's loaders and
    dumpers for them (those of ``conn``'s adapters). JSON columns take
    documents (``dict``, ``list``, scalars) and give them back parsed.

    Args:
        conn: A psycopg 3 connection to the database holding ``table``.
        table: The table's name (in the connection's current schema).
        columns: The columns, in field order.

    Raises:
        RecordsError: ``table`` or a column does not exist.
    """

    def __init__(
        self, conn: psycopg.Connection[Any], table: str, columns: Sequence[str]
    ) -> None:
        from psycopg.adapt import PyFormat, Transformer
        from psycopg.pq import Format

        rows = conn.execute(
            "SELECT attname, atttypid::int FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (_quoted(conn, table),),
        ).fetchall()
        oids = {str(n): int(o) for n, o in rows}
        missing = [c for c in columns if c not in oids]
        if missing:
            msg = f"table {table!r} has no columns {missing}"
            raise RecordsError(msg, table=table)
        self.columns = tuple(columns)
        self.oids = tuple(oids[c] for c in columns)
        self._tx = Transformer(conn)
        self._loaders = [self._tx.get_loader(o, Format.TEXT) for o in self.oids]
        self._text = PyFormat.TEXT

    def loader(self, index: int) -> Callable[[bytes], Any]:
        """A function of one field of column ``index`` to its value (as [load][carmigrate.records.lowlevel.CopyCodec.load])."""
        if self.oids[index] in _INT_OIDS:

            def load_int(field: bytes) -> Any:
                return None if field == b"\\N" else int(field)

            return load_int
        return functools.partial(self.load, index)

    def dumper(self, index: int) -> Callable[[Any], bytes]:
        """A function of a value to the field of column ``index`` (as [dump][carmigrate.records.lowlevel.CopyCodec.dump])."""
        if self.oids[index] in _INT_OIDS:
            fallback = functools.partial(self.dump, index)

            def dump_int(value: Any) -> bytes:
                if type(value) is int:
                    return str(value).encode("ascii")
                return fallback(value)

            return dump_int
        return functools.partial(self.dump, index)

    def load(self, index: int, field: bytes) -> Any:
        """The Python value of field ``index`` (``None`` for NULL)."""
        text = copy_unescape(field)
        if text is None:
            return None
        return self._loaders[index].load(text)

    def dump(self, index: int, value: Any) -> bytes:
        """``value`` as the ``COPY`` text field of column ``index``.

        Raises:
            RecordsError: psycopg cannot adapt the value.
        """
        if value is None:
            return b"\\N"
        if type(value) is int and self.oids[index] not in _JSON_OIDS:
            return str(value).encode("ascii")
        if self.oids[index] in _JSON_OIDS:
            from psycopg.types.json import Json

            value = Json(value)
        try:
            data = self._tx.get_dumper(value, self._text).dump(value)
        except Exception as e:  # psycopg raises several kinds
            msg = f"cannot write {type(value).__name__} value to column {self.columns[index]!r}: {e}"
            raise RecordsError(msg) from e
        if data is None:
            return b"\\N"
        return copy_escape(bytes(data))
