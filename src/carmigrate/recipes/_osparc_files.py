"""oSPARC project files: what the database says against what the bucket holds.

[check_osparc_files][carmigrate.recipes.check_osparc_files] compares a
project's ``file_meta_data`` rows with the objects under
``<project_uuid>/`` in the deployment's bucket and reports every source
defect (see [DEFECT_KINDS][carmigrate.recipes.DEFECT_KINDS]); nothing
is hidden or repaired. Every object under the project's prefix is
accounted for: named by a row (or under a directory row's prefix), or
reported as an orphan.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Mapping

    from carmigrate.storage import Store

__all__ = [
    "DEFECT_KINDS",
    "OsparcFile",
    "SourceDefect",
    "check_osparc_files",
]

DEFECT_KINDS: Final[Mapping[str, str]] = {
    "missing_object": "a row names an object the bucket does not have; the row is "
    "not carried",
    "orphan_object": "an object under the project's prefix that no row names; it is "
    "not carried",
    "multipart_etag": "the row's entity tag is a multipart ETag, not an MD5 of the "
    "data: it cannot check the bytes",
    "null_checksum": "the row's sha256_checksum is NULL",
    "unverifiable": "nothing the source vouches for can check the bytes (a multipart "
    "ETag and no SHA-256): they are carried as read, marked unverifiable",
    "soft_link": "a soft link to a file of the same project: its target "
    "(object_name) follows the remapped key",
    "soft_link_outside": "a soft link to a file outside the project: its target "
    "cannot follow, the row is not carried",
}
"""Each kind of source defect, with what it means and what the recipe does about it."""

_MD5: Final = re.compile(r"^[0-9a-f]{32}$")


@attrs.frozen
class SourceDefect:
    """One defect of the source deployment, about one file row or object.

    Attributes:
        kind: A key of [DEFECT_KINDS][carmigrate.recipes.DEFECT_KINDS].
        key: The row's ``file_id``, or the orphan object's key.
        detail: What was found.
    """

    kind: str
    key: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        """Plain data."""
        return {"kind": self.kind, "key": self.key, "detail": self.detail}


@attrs.frozen
class OsparcFile:
    """One ``file_meta_data`` row of a project and what the bucket has for it.

    Attributes:
        file_id: The row's ``file_id`` (``<project>/<node>/<name>``).
        object_name: The object's key (a soft link's target).
        size: The row's ``file_size`` (``None`` if NULL).
        entity_tag: The row's ``entity_tag``.
        sha256: The row's ``sha256_checksum``, lowercase (``None`` if NULL).
        is_soft_link: The row is a soft link.
        is_directory: The row stands for every object under ``file_id/``.
        present: The bucket has the object (for a directory: an object
            under it).
        check: What the source vouches for that can check the bytes:
            ``"sha256"``, ``"md5"`` (a single-part ETag), or
            ``"unverifiable"``.
    """

    file_id: str
    object_name: str
    size: int | None
    entity_tag: str | None
    sha256: str | None
    is_soft_link: bool
    is_directory: bool
    present: bool
    check: str

    @property
    def carried(self) -> bool:
        """Whether the file's row and bytes are carried (its own object, present)."""
        return self.present and not self.is_soft_link


def check_osparc_files(
    source: str, store: Store, project_uuid: str
) -> tuple[tuple[OsparcFile, ...], tuple[SourceDefect, ...]]:
    """Compare a project's file rows at ``source`` with the objects in ``store``.

    Reads the database and lists ``store`` under ``<project_uuid>/``;
    writes nothing.

    Args:
        source: The deployment's database URL.
        store: Its bucket (the root of the keys ``file_meta_data.object_name``).
        project_uuid: The project.

    Returns:
        Every file row (sorted by ``file_id``), and every defect (sorted by
        key, then kind).

    Raises:
        RecordsError: The database failed.
        StorageError: The listing failed.
    """
    from carmigrate.records import open_database

    with open_database(source) as db:
        t = db.table("file_meta_data")
        rows = list(
            db.iter_rows("file_meta_data", where=t.c.project_id == project_uuid)
        )
    listed = {o.key for o in store.list(f"{project_uuid}/")}
    files: list[OsparcFile] = []
    defects: list[SourceDefect] = []
    named: set[str] = set()
    prefixes: list[str] = []
    for r in sorted(rows, key=lambda r: str(r["file_id"])):
        file_id = str(r["file_id"])
        target = str(r["object_name"] or file_id)
        link = bool(r["is_soft_link"])
        directory = bool(r["is_directory"])
        etag = r["entity_tag"]
        sha = r["sha256_checksum"]
        sha = sha.lower() if isinstance(sha, str) else None
        if directory:
            prefixes.append(file_id.rstrip("/") + "/")
            present = any(k.startswith(prefixes[-1]) for k in listed)
        elif link:
            present = True  # a link has no object of its own
        else:
            named.add(target)
            present = target in listed or _store_has(store, target)
        md5 = isinstance(etag, str) and _MD5.match(etag.strip('"').lower()) is not None
        check = "sha256" if sha else ("md5" if md5 else "unverifiable")
        f = OsparcFile(
            file_id=file_id,
            object_name=target,
            size=r["file_size"],
            entity_tag=etag,
            sha256=sha,
            is_soft_link=link,
            is_directory=directory,
            present=present,
            check=check,
        )
        files.append(f)
        if link:
            inside = target.startswith(f"{project_uuid}/")
            kind = "soft_link" if inside else "soft_link_outside"
            defects.append(SourceDefect(kind, file_id, f"links to {target}"))
            continue
        if not present:
            defects.append(
                SourceDefect(
                    "missing_object", file_id, f"no object {target} in {store.url}"
                )
            )
        if isinstance(etag, str) and "-" in etag:
            defects.append(
                SourceDefect("multipart_etag", file_id, f"entity_tag {etag!r}")
            )
        if sha is None:
            defects.append(
                SourceDefect("null_checksum", file_id, "sha256_checksum is NULL")
            )
        if check == "unverifiable" and present:
            defects.append(
                SourceDefect(
                    "unverifiable", file_id, f"entity_tag {etag!r} and no SHA-256"
                )
            )
    defects.extend(
        SourceDefect("orphan_object", key, "no file_meta_data row names it")
        for key in sorted(listed - named)
        if not any(key.startswith(p) for p in prefixes)
    )
    defects.sort(key=lambda d: (d.key, d.kind))
    return tuple(files), tuple(defects)


def _store_has(store: Store, key: str) -> bool:
    """Whether ``store`` has an object at ``key`` (a ``stat`` that finds it)."""
    try:
        store.stat(key)
    except FileNotFoundError:
        return False
    return True
