"""One ownCloud 10 user's home, read from ``oc_filecache`` as a tree (#17).

A user's home storage (``oc_storages.id`` ``home::<user>``) holds three
areas, each a subtree of ``oc_filecache`` rows whose ``path`` is relative to
``<datadir>/<user>``:

- ``files/…``: the current files and folders (``files`` itself is the
  root a client sees);
- ``files_versions/<path>.v<timestamp>``: older contents of ``files/<path>``;
- ``files_trashbin/files/<name>.d<timestamp>`` (and what a deleted folder
  held, below it), ``files_trashbin/versions/<name>.v<ts>.d<timestamp>``
  (versions of deleted files); ``oc_files_trash`` says where each deleted
  item was (its ``location``).

[read_owncloud_home][carmigrate.recipes.read_owncloud_home] reads them into
an [OwncloudHome][carmigrate.recipes.OwncloudHome]: what the migration
plans from, and what it compares the target with afterwards. A user's rows
are held in memory (about 400 bytes a row): the unit of work is a user.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

import attrs

from carmigrate.digests import clean_digests

if TYPE_CHECKING:
    from carmigrate.records import Database, Row

__all__ = [
    "OwncloudEntry",
    "OwncloudHome",
    "OwncloudTrashed",
    "OwncloudVersion",
    "read_owncloud_home",
]

_DIRECTORY: Final = "httpd/unix-directory"
_VERSION: Final = re.compile(r"^(?P<path>.+)\.v(?P<ts>\d+)$")
_DELETED: Final = re.compile(r"^(?P<name>.+)\.d(?P<ts>\d+)$")
_TRASHED_VERSION: Final = re.compile(r"^(?P<name>.+)\.v(?P<v>\d+)\.d(?P<ts>\d+)$")


@attrs.frozen(kw_only=True)
class OwncloudEntry:
    """One ``oc_filecache`` row.

    Attributes:
        fileid: ``fileid``.
        parent: ``parent`` (``-1`` for the storage root).
        path: ``path``, relative to the user's folder (``files/Photos/a.jpg``).
        name: ``name``.
        is_dir: The mimetype is ``httpd/unix-directory``.
        size: ``size`` (a folder's is the size of what it holds).
        mtime: ``mtime`` (seconds); a folder's is its tree's newest change.
        storage_mtime: ``storage_mtime``: when ownCloud last saw it change on disk.
        etag: ``etag``.
        permissions: ``permissions`` (the ``OCP`` constants' bits).
        checksums: ``checksum``'s digests (``sha1``, ``md5``, ``adler32``,
            lowercase hex); empty when the row has none.
        encrypted: ``encrypted`` is non-zero (the blob holds ciphertext).
    """

    fileid: int
    parent: int
    path: str
    name: str
    is_dir: bool
    size: int
    mtime: int
    storage_mtime: int
    etag: str
    permissions: int
    checksums: dict[str, str] = attrs.field(factory=dict)
    encrypted: bool = False

    @property
    def fingerprint(self) -> tuple[str, int, int]:
        """What a delta pass compares: ``(etag, size, storage_mtime)``."""
        return (self.etag, self.size, self.storage_mtime)


@attrs.frozen(kw_only=True)
class OwncloudVersion:
    """An older content of a file (a ``files_versions`` row, or a trashed one).

    Attributes:
        entry: Its own ``oc_filecache`` row (its blob is ``entry.path``).
        timestamp: When this content was replaced (the ``.v<timestamp>``).
    """

    entry: OwncloudEntry
    timestamp: int


@attrs.frozen(kw_only=True)
class OwncloudTrashed:
    """A deleted item of the trash bin, with what it held and its versions.

    Attributes:
        entry: Its row (``files_trashbin/files/<name>.d<deleted>``).
        name: Its name before it was deleted.
        deleted: When it was deleted (the ``.d<timestamp>``).
        location: Its former folder, relative to ``files`` (``.`` for the
            root), from ``oc_files_trash``; ``None`` when no row says.
        children: For a folder, every row below it (path order).
        versions: Versions of the item (or of files below it), by the
            path of their file relative to the trashed item's row.
    """

    entry: OwncloudEntry
    name: str
    deleted: int
    location: str | None
    children: tuple[OwncloudEntry, ...] = ()
    versions: dict[str, tuple[OwncloudVersion, ...]] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class OwncloudHome:
    """A user's home storage as the migration sees it.

    Attributes:
        user: The user id (``uid``).
        storage: ``oc_storages.numeric_id``, the ``storage`` of its rows.
        root: The ``files`` row: the folder a client sees as ``/``.
        entries: Every row below ``files/``, in path order.
        versions: Older contents per current file path (``files/…``),
            oldest first.
        trash: Deleted items, oldest first.
        stray: Rows that fit nowhere, with why (a version whose file is
            gone, a trash row without its item): listed, never carried.
        object_store: The home is on ownCloud's object store (its storage id
            is ``object::user:<user>``): each content's blob is the object
            ``urn:oid:<fileid>``, not ``<user>/<path>`` in the data directory.
    """

    user: str
    storage: int
    root: OwncloudEntry
    entries: tuple[OwncloudEntry, ...]
    versions: dict[str, tuple[OwncloudVersion, ...]]
    trash: tuple[OwncloudTrashed, ...]
    stray: tuple[tuple[OwncloudEntry, str], ...] = ()
    object_store: bool = False

    def blob_key(self, entry: OwncloudEntry) -> str:
        """Where ``entry``'s bytes are: ``<user>/<path>`` or ``urn:oid:<fileid>``."""
        if self.object_store:
            return f"urn:oid:{entry.fileid}"
        return f"{self.user}/{entry.path}"

    @property
    def files(self) -> int:
        """Files below ``files/``."""
        return sum(1 for e in self.entries if not e.is_dir)

    @property
    def bytes(self) -> int:
        """Bytes of the files below ``files/``."""
        return sum(e.size for e in self.entries if not e.is_dir)


def _checksums(value: str | None) -> dict[str, str]:
    if not value:
        return {}
    pairs: dict[str, str | None] = {}
    for token in value.split():
        name, sep, digest = token.partition(":")
        if sep and digest:
            pairs[name] = digest
    return clean_digests(pairs)


def _entry(r: Row, directory: int | None) -> OwncloudEntry:
    return OwncloudEntry(
        fileid=int(r["fileid"]),
        parent=int(r["parent"]),
        path=str(r["path"] or ""),
        name=str(r["name"] or ""),
        is_dir=directory is not None and r["mimetype"] == directory,
        size=int(r["size"] or 0),
        mtime=int(r["mtime"] or 0),
        storage_mtime=int(r["storage_mtime"] or 0),
        etag=str(r["etag"] or ""),
        permissions=int(r["permissions"] or 0),
        checksums=_checksums(r["checksum"]),
        encrypted=bool(r["encrypted"]),
    )


def _versions_by_file(
    rows: list[OwncloudEntry], area: str, pattern: re.Pattern[str]
) -> tuple[dict[str, list[OwncloudVersion]], list[OwncloudEntry]]:
    found: dict[str, list[OwncloudVersion]] = {}
    bad: list[OwncloudEntry] = []
    for e in rows:
        if e.is_dir:
            continue
        m = pattern.match(e.path[len(area) :])
        if m is None:
            bad.append(e)
            continue
        found.setdefault(m["path"], []).append(
            OwncloudVersion(entry=e, timestamp=int(m["ts"]))
        )
    return found, bad


def read_owncloud_home(
    db: Database,
    user: str,
    *,
    table_prefix: str = "oc_",
) -> OwncloudHome:
    """Read one user's home storage: current tree, versions and trash.

    Args:
        db: The ownCloud database (read only).
        user: The user id.
        table_prefix: ownCloud's ``dbtableprefix``.

    Returns:
        The home, with ``stray`` listing rows that fit nowhere.

    Raises:
        ValueError: The user has no home storage (``home::<user>`` on the
            data directory, or ``object::user:<user>`` on an object store),
            two, or no ``files`` row.
        RecordsError: The database cannot be read.
    """
    storages = db.table(f"{table_prefix}storages")
    ids = (f"home::{user}", f"object::user:{user}")
    found = list(db.iter_rows(f"{table_prefix}storages", where=storages.c.id.in_(ids)))
    if not found:
        msg = f"user {user!r} has no home storage (home::{user} or object::user:{user})"
        raise ValueError(msg)
    if len(found) > 1:
        msg = f"user {user!r} has two home storages ({' and '.join(ids)})"
        raise ValueError(msg)
    storage = int(found[0]["numeric_id"])
    object_store = str(found[0]["id"]).startswith("object::")
    mt = db.table(f"{table_prefix}mimetypes")
    directory = next(
        (
            int(r["id"])
            for r in db.iter_rows(
                f"{table_prefix}mimetypes", where=mt.c.mimetype == _DIRECTORY
            )
        ),
        None,
    )
    fc = db.table(f"{table_prefix}filecache")
    rows = [
        _entry(r, directory)
        for r in db.iter_rows(f"{table_prefix}filecache", where=fc.c.storage == storage)
    ]
    rows.sort(key=lambda e: e.path)
    root = next((e for e in rows if e.path == "files"), None)
    if root is None:
        msg = f"user {user!r}: storage {storage} has no 'files' row"
        raise ValueError(msg)
    entries = tuple(e for e in rows if e.path.startswith("files/"))
    current = {e.path for e in entries if not e.is_dir}
    stray: list[tuple[OwncloudEntry, str]] = []
    versions, bad = _versions_by_file(
        [e for e in rows if e.path.startswith("files_versions/")],
        "files_versions/",
        _VERSION,
    )
    stray += [(e, "not named <file>.v<timestamp>") for e in bad]
    kept: dict[str, tuple[OwncloudVersion, ...]] = {}
    for path, vs in versions.items():
        if f"files/{path}" in current:
            kept[f"files/{path}"] = tuple(sorted(vs, key=lambda v: v.timestamp))
        else:
            stray += [
                (v.entry, f"a version of files/{path}, which is gone") for v in vs
            ]
    trash = _trash(db, user, rows, table_prefix, stray)
    return OwncloudHome(
        user=user,
        storage=storage,
        root=root,
        entries=entries,
        versions=kept,
        trash=trash,
        stray=tuple(sorted(stray, key=lambda s: s[0].path)),
        object_store=object_store,
    )


def _trash(
    db: Database,
    user: str,
    rows: list[OwncloudEntry],
    prefix: str,
    stray: list[tuple[OwncloudEntry, str]],
) -> tuple[OwncloudTrashed, ...]:
    files_area, versions_area = "files_trashbin/files/", "files_trashbin/versions/"
    t = db.table(f"{prefix}files_trash")
    origin = {
        (str(r["id"]), int(r["timestamp"] or 0)): str(r["location"] or ".")
        for r in db.iter_rows(f"{prefix}files_trash", where=t.c.user == user)
    }
    tops: dict[str, OwncloudEntry] = {}
    below: dict[str, list[OwncloudEntry]] = {}
    for e in rows:
        if not e.path.startswith(files_area):
            continue
        rest = e.path[len(files_area) :]
        top, _, sub = rest.partition("/")
        if sub:
            below.setdefault(top, []).append(e)
        else:
            tops[top] = e
    tversions: dict[str, dict[str, list[OwncloudVersion]]] = {}
    for e in rows:
        if not e.path.startswith(versions_area) or e.is_dir:
            continue
        rest = e.path[len(versions_area) :]
        top, _, sub = rest.partition("/")
        if sub:  # a file of a deleted folder: <folder>.d<ts>/<sub>.v<v>
            m = _VERSION.match(sub)
            if m is None or top not in tops:
                stray.append((e, "a trashed version without its deleted item"))
                continue
            tversions.setdefault(top, {}).setdefault(m["path"], []).append(
                OwncloudVersion(entry=e, timestamp=int(m["ts"]))
            )
        else:
            m = _TRASHED_VERSION.match(top)
            item = None if m is None else f"{m['name']}.d{m['ts']}"
            if m is None or item not in tops:
                stray.append((e, "a trashed version without its deleted item"))
                continue
            tversions.setdefault(str(item), {}).setdefault("", []).append(
                OwncloudVersion(entry=e, timestamp=int(m["v"]))
            )
    out: list[OwncloudTrashed] = []
    for top, e in tops.items():
        m = _DELETED.match(top)
        if m is None:
            stray.append((e, "a trashed item not named <name>.d<timestamp>"))
            continue
        name, ts = m["name"], int(m["ts"])
        vs = {
            k: tuple(sorted(v, key=lambda x: x.timestamp))
            for k, v in tversions.get(top, {}).items()
        }
        out.append(
            OwncloudTrashed(
                entry=e,
                name=name,
                deleted=ts,
                location=origin.get((name, ts)),
                children=tuple(sorted(below.get(top, ()), key=lambda c: c.path)),
                versions=vs,
            )
        )
    return tuple(sorted(out, key=lambda x: (x.deleted, x.name)))
