r"""The one cattrs converter of carmigrate.migrate, and the plan's canonical forms.

Plans, their items and reports are turned into plain data here and nowhere
else (no global converter). Three encodings are defined on top:

- **canonical JSON**: keys sorted, no whitespace, ASCII only (``\\uXXXX``
  escapes), no NaN: [canonical_json][carmigrate.migrate.serde.canonical_json];
- **an item line**: the canonical JSON of one
  [PlanItem][carmigrate.migrate.PlanItem], where fields equal to their
  default (``None``, ``False``) are left out, and so is ``destination_key``
  when it equals ``source_key``:
  [encode_item][carmigrate.migrate.serde.encode_item];
- **the plan id**: the CIDv1 (codec ``dag-cbor``, ``sha2-256``) of the
  canonical DAG-CBOR encoding of the unstructured
  [PlanHeader][carmigrate.migrate.PlanHeader], which includes the SHA-256
  over all item lines: [plan_id][carmigrate.migrate.serde.plan_id].

A plan file is JSON Lines: line 1 is the header's canonical JSON, then one
item line per item, each ending in ``\\n``.

This module's annotations are evaluated at run time on purpose (cattrs needs
the real types), so its imports stay outside ``TYPE_CHECKING``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring_ascii
from typing import Any, Final, TypeVar

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn

from carmigrate.cid import CID, encode_dag_cbor
from carmigrate.errors import PlanError
from carmigrate.migrate._model import (
    FORMAT_VERSION,
    Action,
    PlanHeader,
    PlanItem,
)

__all__ = [
    "canonical_json",
    "converter",
    "decode_header",
    "decode_item",
    "encode_header",
    "encode_item",
    "item_line",
    "items_digest",
    "plan_id",
    "structure",
    "unstructure",
]

T = TypeVar("T")

converter: Final = cattrs.Converter(forbid_extra_keys=True)
"""The converter for every value of [carmigrate.migrate][] (no global converter).

Enums become their values, tuples become lists, attrs classes become dicts.
Unknown keys are refused when structuring, so a file from a newer format is
an error rather than silently misread.
"""

_item_to_dict = make_dict_unstructure_fn(
    PlanItem, converter, _cattrs_omit_if_default=True
)
_dict_to_item = make_dict_structure_fn(
    PlanItem, converter, _cattrs_forbid_extra_keys=True
)


def _unstructure_item(item: PlanItem) -> dict[str, Any]:
    out: dict[str, Any] = _item_to_dict(item)
    if item.source_key is not None and item.destination_key == item.source_key:
        del out["destination_key"]
    return out


def _structure_item(value: Mapping[str, Any], _: object) -> PlanItem:
    if "destination_key" not in value:
        value = {**value, "destination_key": value.get("source_key")}
    return _dict_to_item(value, PlanItem)


converter.register_unstructure_hook(PlanItem, _unstructure_item)
converter.register_structure_hook(PlanItem, _structure_item)

_encode_json: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
).encode


def unstructure(value: object) -> Any:
    """Turn a value of this package into plain data (dicts, lists, strings, numbers)."""
    return converter.unstructure(value)


def structure(data: object, cls: type[T]) -> T:
    """Build a value of type ``cls`` from plain data.

    Raises:
        PlanError: The data does not describe a ``cls`` (missing or unknown
            keys, wrong types, invalid values).
    """
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as e:
        raise PlanError(f"not a valid {cls.__name__}: {_describe(e)}") from e


def _describe(e: BaseException) -> str:
    if isinstance(e, cattrs.BaseValidationError):
        parts = [str(x) for x in e.exceptions]
        return "; ".join(parts) or str(e)
    return str(e)


def canonical_json(value: object) -> str:
    """Encode plain data as canonical JSON (sorted keys, compact, ASCII).

    Raises:
        ValueError: For NaN or infinite floats.
        TypeError: For values JSON cannot hold.
    """
    return _encode_json(value)


_q: Final[Callable[[str], str]] = encode_basestring_ascii


def item_line(
    *,
    action: Action,
    source_key: str | None,
    destination_key: str,
    size: int,
    stage: str,
    cohort: str,
    md5: str | None = None,
    sha256: str | None = None,
    etag: str | None = None,
    cold: bool = False,
    destination_size: int | None = None,
    reason: str | None = None,
    source_id: str | None = None,
    new_id: str | None = None,
) -> str:
    """The canonical line of an item given as fields, without building it.

    Equal to ``encode_item(PlanItem(...))`` for the same fields (a test holds
    the two to each other); the planner uses it to write millions of lines
    without building millions of objects.
    """
    # Keys in sorted order: action, cohort, cold, destination_key,
    # destination_size, etag, md5, new_id, reason, sha256, size, source_id,
    # source_key, stage.
    out = ['{"action":"', action.value, '","cohort":', _q(cohort)]
    if cold:
        out.append(',"cold":true')
    if source_key is None or destination_key != source_key:
        out.append(',"destination_key":')
        out.append(_q(destination_key))
    if destination_size is not None:
        out.append(f',"destination_size":{int(destination_size)}')
    if etag is not None:
        out.append(',"etag":')
        out.append(_q(etag))
    if md5 is not None:
        out.append(',"md5":')
        out.append(_q(md5))
    if new_id is not None:
        out.append(',"new_id":')
        out.append(_q(new_id))
    if reason is not None:
        out.append(',"reason":')
        out.append(_q(reason))
    if sha256 is not None:
        out.append(',"sha256":')
        out.append(_q(sha256))
    out.append(f',"size":{int(size)}')
    if source_id is not None:
        out.append(',"source_id":')
        out.append(_q(source_id))
    out.append(',"source_key":')
    out.append("null" if source_key is None else _q(source_key))
    out.append(',"stage":')
    out.append(_q(stage))
    out.append("}")
    return "".join(out)


def encode_item(item: PlanItem) -> str:
    """The canonical line of one item (no trailing newline).

    Equal to ``canonical_json(unstructure(item))``.
    """
    return item_line(
        action=item.action,
        source_key=item.source_key,
        destination_key=item.destination_key,
        size=item.size,
        stage=item.stage,
        cohort=item.cohort,
        md5=item.md5,
        sha256=item.sha256,
        etag=item.etag,
        cold=item.cold,
        destination_size=item.destination_size,
        reason=item.reason,
        source_id=item.source_id,
        new_id=item.new_id,
    )


def decode_item(line: str | bytes) -> PlanItem:
    """Parse one item line.

    Raises:
        PlanError: The line is not JSON or does not describe a plan item.
    """
    try:
        data = json.loads(line)
    except ValueError as e:
        raise PlanError(f"plan item line is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise PlanError("plan item line is not a JSON object")
    return structure(data, PlanItem)


def encode_header(header: PlanHeader) -> str:
    """The canonical JSON of a plan header (line 1 of a plan file)."""
    return canonical_json(unstructure(header))


def decode_header(line: str | bytes) -> PlanHeader:
    """Parse a plan header line.

    Raises:
        PlanError: Not a plan header, or one from a newer format version.
    """
    try:
        data = json.loads(line)
    except ValueError as e:
        raise PlanError(f"the first line is not a plan header (not JSON: {e})") from e
    if not isinstance(data, dict) or "format_version" not in data:
        raise PlanError("the first line is not a carmigrate plan header")
    version = data["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise PlanError(
            f"plan format version {version!r} is newer than this carmigrate "
            f"understands ({FORMAT_VERSION})"
        )
    return structure(data, PlanHeader)


def plan_id(header: PlanHeader) -> str:
    """The id of the plan with this header.

    The CIDv1 (``dag-cbor``, ``sha2-256``, base32) of the canonical DAG-CBOR
    encoding of ``unstructure(header)``. Since the header holds the item
    count and the SHA-256 over the item lines, equal ids mean equal plans.
    """
    return str(CID.from_data(encode_dag_cbor(unstructure(header)), codec="dag-cbor"))


def items_digest(lines: list[str]) -> str:
    r"""Hex SHA-256 over item lines, each followed by ``\\n`` (small plans)."""
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("ascii"))
        h.update(b"\n")
    return h.hexdigest()
