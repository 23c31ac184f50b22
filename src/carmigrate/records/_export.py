"""The ID map of a record plan as JSON Lines or CSV, for the systems around a migration."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
import uuid
from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:
    from carmigrate.records._plan import RecordPlan

__all__ = ["ID_MAP_FORMATS", "write_id_map"]

ID_MAP_FORMATS: tuple[str, ...] = ("jsonl", "csv")
"""The formats [write_id_map][carmigrate.records.write_id_map] writes."""


def _text(value: Any) -> str:
    """A key value as CSV text: ids and strings as themselves, UUIDs canonical."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return str(value)


def write_id_map(
    plan: RecordPlan,
    out: str | os.PathLike[str] | TextIO,
    *,
    format: Literal["jsonl", "csv"] = "jsonl",
) -> int:
    """Write the plan's ID map: one entry per mapped key value (old → new).

    Every inserted or merged row's key values, in the plan's order, with
    the table, the column, the old and the new value and the action
    (``insert`` or ``merge``). JSON Lines carries values tagged as in plan
    files (a UUID stays a UUID); CSV has a header row
    ``table,column,old,new,action`` and values as text (UUIDs in canonical
    form). A path is written atomically (beside it, then renamed); an open
    text file is written as is.

    Args:
        plan: The record plan.
        out: A path, or an open text file (``sys.stdout`` for ``-``).
        format: ``"jsonl"`` or ``"csv"``.

    Returns:
        How many entries were written.

    Raises:
        ValueError: An unknown ``format``.
        OSError: The file could not be written (a path is then left as it was).
    """
    if format not in ID_MAP_FORMATS:
        raise ValueError(
            f"unknown ID map format {format!r}; choose from {', '.join(ID_MAP_FORMATS)}"
        )
    if not isinstance(out, (str, os.PathLike)):
        return _write(plan, out, format)
    target = os.path.abspath(os.fspath(out))
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".id-map-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            count = _write(plan, f, format)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return count


def _write(plan: RecordPlan, f: TextIO, format: str) -> int:
    count = 0
    if format == "csv":
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["table", "column", "old", "new", "action"])
        for e in plan.id_map:
            writer.writerow(
                [e.table, e.column, _text(e.old), _text(e.new), e.action.value]
            )
            count += 1
        return count
    for e in plan.id_map:
        f.write(json.dumps(e.to_dict(), sort_keys=True, ensure_ascii=False) + "\n")
        count += 1
    return count
