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

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from carmigrate.cid import CID, encode_dag_cbor
from carmigrate.digests import DigestMap
from carmigrate.errors import PlanError
from carmigrate.migrate._model import (
    FORMAT_VERSION,
    Limits,
    PlanHeader,
    PlanItem,
    VerificationPolicy,
)
from carmigrate.migrate._schema import make_line_encoder

__all__ = [
    "canonical_json",
    "converter",
    "decode_header",
    "decode_item",
    "encode_header",
    "encode_item",
    "encode_item_v1",
    "encode_line",
    "item_line",
    "items_digest",
    "line_body",
    "line_head",
    "line_tail",
    "plan_id",
    "structure",
    "unstructure",
    "upgrade_item_v1",
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
converter.register_unstructure_hook(DigestMap, lambda m: m.to_dict())
converter.register_structure_hook(DigestMap, lambda v, _: DigestMap(v))
# Fields added to the policy after format 1 are left out at their defaults,
# so the id of a plan made before them stays what it was.
converter.register_unstructure_hook(
    Limits,
    make_dict_unstructure_fn(
        Limits,
        converter,
        tenant_items_per_second=override(omit_if_default=True),
        tenant_bytes_per_second=override(omit_if_default=True),
    ),
)
converter.register_unstructure_hook(
    VerificationPolicy,
    make_dict_unstructure_fn(
        VerificationPolicy,
        converter,
        record=override(omit_if_default=True),
    ),
)

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

_LINES: Final = make_line_encoder(PlanItem)

encode_line: Final[Callable[..., str]] = _LINES.full
"""The plan-line encoder generated from [PlanItem][carmigrate.migrate.PlanItem]'s
declaration: positional arguments in sorted key order (``action, cohort, cold,
destination_key, destination_size, digests, etag, new_id, reason, size,
source_id, source_key, stage``)."""

line_head: Final[Callable[..., str]] = _LINES.head
"""The start of a line from its leading cached fields (``action, cohort``)."""

line_tail: Final[Callable[..., str]] = _LINES.tail
"""The end of a line from its trailing cached fields (``stage``)."""

line_body: Final[Callable[..., str]] = _LINES.body
"""A whole line from an encoded head and tail and the other fields, in key order
(``head, tail, cold, destination_key, destination_size, digests, etag, new_id,
reason, size, source_id, source_key``); what the planner calls once per item."""

_LINE_FIELDS: Final = tuple(sorted(f.name for f in attrs.fields(PlanItem)))
_LINE_DEFAULTS: Final = {
    f.name: f.default for f in attrs.fields(PlanItem) if f.default is not attrs.NOTHING
}


def item_line(**fields: Any) -> str:
    """The canonical line of an item given as fields, without building it.

    Takes [PlanItem][carmigrate.migrate.PlanItem]'s fields by name (missing
    ones take their defaults); equal to ``encode_item(PlanItem(**fields))``
    for valid fields. Digests must already be in canonical form (registry
    names, lowercase hex).

    Raises:
        TypeError: An unknown field, or a required one missing.
    """
    unknown = set(fields) - set(_LINE_FIELDS)
    if unknown:
        raise TypeError(f"unknown plan item fields {sorted(unknown)}")
    values = []
    for name in _LINE_FIELDS:
        if name in fields:
            values.append(fields[name])
        elif name in _LINE_DEFAULTS:
            values.append(_LINE_DEFAULTS[name])
        else:
            raise TypeError(f"plan item field {name!r} is required")
    return encode_line(*values)


def encode_item(item: PlanItem) -> str:
    """The canonical line of one item (no trailing newline).

    Equal to ``canonical_json(unstructure(item))``.
    """
    return encode_line(*[getattr(item, name) for name in _LINE_FIELDS])


def encode_item_v1(item: PlanItem) -> str:
    """The line of an item in plan format version 1 (a plan read from such a file).

    Raises:
        PlanError: The item has digests format 1 cannot hold (other than
            md5 and sha256).
    """
    data = unstructure(item)
    digests = data.pop("digests", {})
    extra = sorted(set(digests) - {"md5", "sha256"})
    if extra:
        raise PlanError(f"plan format 1 cannot hold the digests {extra}")
    data.update(digests)
    return canonical_json(data)


def upgrade_item_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A plan line of format version 1, as plain data, in the form of version 2.

    Version 1 had ``md5`` and ``sha256`` keys where version 2 has one
    ``digests`` object.
    """
    if "md5" not in data and "sha256" not in data:
        return data
    out = dict(data)
    digests = {k: out.pop(k) for k in ("md5", "sha256") if k in out}
    out["digests"] = {k: v for k, v in digests.items() if v is not None}
    return out


def decode_item(line: str | bytes, *, format_version: int = FORMAT_VERSION) -> PlanItem:
    """Parse one item line.

    Args:
        line: The line.
        format_version: The plan file's format version (version 1 lines are
            upgraded).

    Raises:
        PlanError: The line is not JSON or does not describe a plan item.
    """
    try:
        data = json.loads(line)
    except ValueError as e:
        raise PlanError(f"plan item line is not JSON: {e}") from e
    except RecursionError:
        raise PlanError(
            "plan item line is nested too deeply to be a plan item"
        ) from None
    if not isinstance(data, dict):
        raise PlanError("plan item line is not a JSON object")
    if format_version < 2:
        data = upgrade_item_v1(data)
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
    except RecursionError:
        raise PlanError(
            "the first line is nested too deeply to be a plan header"
        ) from None
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
