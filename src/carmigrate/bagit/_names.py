"""What names a bag may use: paths in its manifests and its External-Identifier."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["check_external_identifier"]

_IDENTIFIER_CHARS: Final = re.compile(r"[-_/ .A-Za-z0-9]+")
_VERSION_SEGMENT: Final = re.compile(r"v[0-9]+")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def check_external_identifier(value: str) -> str:
    """Check an ``External-Identifier`` and return it unchanged.

    An external identifier names a bag in its space: the storage service
    keeps the bag under ``<space>/<identifier>/v<N>/`` and serves it at
    ``/bags/<space>/<identifier>``, so it must be a clean relative path
    that reads the same in an S3 key, an Azure blob name and a URL. The
    rules (the Wellcome storage service's, stated in carmigrate's words):

    - not empty;
    - only ASCII letters, digits, space and ``-``, ``_``, ``.``, ``/``
      (``/`` separates levels, as in ``PP/GRF/A.41``);
    - each ``/``-separated segment begins and ends with a letter or a digit:
      no leading, trailing or doubled ``/``, no segment of whitespace only,
      no ``.`` or ``..`` segment, no segment ending in ``.`` (Azure cannot
      store it);
    - no two spaces in a row (people cannot count them);
    - no segment that looks like a version (``v1``, ``v23``), which would be
      confused with the version folders under it.

    Raises:
        ValueError: The identifier breaks a rule; the message says which.
    """
    if not value:
        raise ValueError("External-Identifier is empty")
    if not _IDENTIFIER_CHARS.fullmatch(value):
        bad = sorted({c for c in value if not _IDENTIFIER_CHARS.fullmatch(c)})
        raise ValueError(
            f"External-Identifier {value!r} has characters other than ASCII letters, "
            f"digits, space, '-', '_', '.' and '/': {''.join(bad)!r}"
        )
    if "  " in value:
        raise ValueError(f"External-Identifier {value!r} has two spaces in a row")
    for segment in value.split("/"):
        if not segment:
            raise ValueError(
                f"External-Identifier {value!r} starts or ends with '/' or has '//'"
            )
        if not (segment[0].isalnum() and segment[-1].isalnum()):
            raise ValueError(
                f"External-Identifier {value!r}: the part {segment!r} does not begin "
                "and end with a letter or a digit"
            )
        if _VERSION_SEGMENT.fullmatch(segment):
            raise ValueError(
                f"External-Identifier {value!r}: the part {segment!r} looks like a "
                "version folder"
            )
    return value


def path_problem(path: str) -> str | None:
    """Why a path listed in a bag cannot be stored as it is, or ``None``.

    A path is relative, with no empty, ``.`` or ``..`` segment (it could
    escape the bag or name nothing), no segment ending in ``.`` (Azure Blob
    Storage drops the dot), and no control character (RFC 8493 lets a name
    hold CR or LF, percent-encoded, but no object store key can).
    """
    if path.startswith("/"):
        return "is absolute"
    dotted = False
    for segment in path.split("/"):
        if not segment or segment in (".", ".."):
            return "has an empty, '.' or '..' segment"
        if segment[-1] == ".":
            dotted = True
    if dotted:
        return "has a segment ending in '.', which Azure Blob Storage cannot store"
    if _CONTROL.search(path):
        return "holds a control character, which no object store key can hold"
    return None
