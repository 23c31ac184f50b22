"""HTML fragments for Jupyter's rich display (``_repr_html_``): escaped and bounded.

Shared by the values of every layer that shows itself in a notebook
(``PieceInfo``, ``Aggregate``, ``PackResult``, a plan's summary, a run's
result, the report and the status). It imports only the standard library,
so any layer can use it.

The rules every fragment keeps:

- every string that reaches the page goes through [text][], so keys,
  tenants, reasons and URLs cannot inject markup; only [Markup][] (made
  here, from escaped parts) passes through unescaped;
- bytes are refused: a commitment is shown as its CID, never as ``b'…'``;
- a table shows at most [MAX_ROWS][] rows and then says how many more
  there are, and a cell at most [MAX_TEXT][] characters;
- no external CSS or JavaScript: plain tables, one inline ``text-align``.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

MAX_ROWS: Final = 20
"""Rows a table shows before "… and K more"."""

MAX_TEXT: Final = 200
"""Characters a cell shows before it is cut with "…"."""

_RIGHT: Final = " style='text-align:right'"


class Markup(str):
    """A fragment of HTML that is already safe: inserted as is, never escaped again."""

    __slots__ = ()


def text(value: object, *, limit: int = MAX_TEXT) -> Markup:
    """``value`` as escaped HTML text, cut to ``limit`` characters with "…".

    Raises:
        TypeError: For bytes: a commitment or digest is shown as a CID or
            hex string, never as a Python bytes literal.
    """
    if isinstance(value, Markup):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        msg = "raw bytes are never shown; pass a CID or a hex string"
        raise TypeError(msg)
    s = str(value)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return Markup(html.escape(s, quote=True))


def code(value: object, *, limit: int = MAX_TEXT) -> Markup:
    """``value`` as escaped text in ``<code>`` (keys, CIDs, ids)."""
    return Markup(f"<code>{text(value, limit=limit)}</code>")


def human_bytes(n: int) -> str:
    """``n`` bytes in binary units: ``"512 B"``, ``"1.5 KiB"``, ``"2.0 GiB"``."""
    if abs(n) < 1024:
        return f"{n} B"
    units = ("KiB", "MiB", "GiB", "TiB", "PiB")
    value, i = n / 1024, 0
    while abs(value) >= 1024 and i < len(units) - 1:
        value, i = value / 1024, i + 1
    return f"{value:.1f} {units[i]}"


def nbytes(n: int) -> Markup:
    """A byte count in binary units, the exact count in its tooltip."""
    return Markup(f"<span title='{int(n)} bytes'>{text(human_bytes(n))}</span>")


def seconds(s: float) -> str:
    """A duration for people: ``"0.42 s"``, ``"12 s"``, ``"3 min"``, ``"1.5 h"``."""
    if s < 10:
        return f"{s:.2f} s"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1: ``"1 piece"``, ``"3 pieces"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def yes_no(flag: bool) -> str:
    """``"yes"`` or ``"no"``."""
    return "yes" if flag else "no"


def _cell(value: object, tag: str) -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return f"<{tag}{_RIGHT if numeric else ''}>{text(value)}</{tag}>"


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    total: int | None = None,
    limit: int = MAX_ROWS,
) -> Markup:
    """A table of at most ``limit`` rows, then a row "… and K more".

    Cells are escaped unless they are [Markup][]; numbers are right-aligned.

    Args:
        header: Column titles.
        rows: The rows; read up to ``limit + 1`` when ``total`` is not given.
        total: How many rows there are in all, when ``rows`` holds only the
            first of them (a report lists the first failures and counts all).
        limit: Rows shown.
    """
    shown: list[Sequence[object]] = []
    seen = 0
    for row in rows:
        seen += 1
        if len(shown) < limit:
            shown.append(row)
        elif total is not None:
            break
    more = (seen if total is None else max(total, seen)) - len(shown)
    head = "".join(f"<th>{text(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(_cell(v, "td") for v in row) + "</tr>" for row in shown
    )
    if more > 0:
        body += f"<tr><td colspan='{len(header)}'>… and {more} more</td></tr>"
    return Markup(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def facts(pairs: Iterable[tuple[str, object]]) -> Markup:
    """A two-column table of labelled values (labels and values escaped unless Markup)."""
    body = "".join(
        f"<tr><th style='text-align:left'>{text(k)}</th><td>{text(v)}</td></tr>"
        for k, v in pairs
    )
    return Markup(f"<table><tbody>{body}</tbody></table>")


def block(title: Markup, *parts: Markup, subtitle: object | None = None) -> Markup:
    """The outer fragment: a bold title line, an optional escaped subtitle, the parts."""
    sub = "" if subtitle is None else f"<br>{text(subtitle, limit=2 * MAX_TEXT)}"
    return Markup(
        f"<div class='carmigrate-repr'><p>{title}{sub}</p>{''.join(parts)}</div>"
    )


def heading(label: str) -> Markup:
    """A small section heading inside a fragment."""
    return Markup(f"<p><b>{text(label)}</b></p>")
