"""ownCloud 10 → oCIS: an inventory of an instance before its migration (#17).

An ownCloud 10 instance keeps its files in a data directory
(``<datadir>/<user>/files/<path>``, older versions in
``files_versions/<path>.v<timestamp>``, deleted files in
``files_trashbin/files/<name>.d<timestamp>``) and indexes them in the
``oc_filecache`` table: one row per file or folder of a storage, keyed by
``fileid``, with the path relative to the storage's root, ``path_hash``
(the MD5 of that path), the ``parent`` row, the size and the checksums
(``SHA1:… MD5:… ADLER32:…``). A user's home storage is the ``oc_storages``
row whose ``id`` is ``home::<user>``; its root is ``<datadir>/<user>``.
Shares (``oc_share``) point at rows by ``file_source``; deleted items are
listed in ``oc_files_trash``.

[owncloud_inventory][carmigrate.recipes.owncloud_inventory] reads both
sides, counts what each user has, and reports where they disagree, so the
migration starts from a known state. It changes nothing: every finding is
for a person to resolve.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs

from carmigrate.digests import MultiHasher, clean_digests
from carmigrate.errors import ObjectNotFound, PlanError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from carmigrate.records import Database, Row
    from carmigrate.storage import ObjectInfo, Store

__all__ = [
    "OWNCLOUD_FINDING_KINDS",
    "OwncloudFinding",
    "OwncloudInventory",
    "OwncloudUserCounts",
    "owncloud_inventory",
    "read_owncloud_instance_id",
]

OWNCLOUD_FINDING_KINDS: Final = (
    "missing_on_disk",
    "not_in_cache",
    "size_mismatch",
    "checksum_mismatch",
    "orphan_row",
    "dangling_share",
)
"""What [owncloud_inventory][carmigrate.recipes.owncloud_inventory] reports.

- ``missing_on_disk``: a file row of ``oc_filecache`` whose blob is absent
  from the data directory.
- ``not_in_cache``: a blob under ``files/``, ``files_versions/`` or
  ``files_trashbin/`` of a user that no row of the user's home storage
  describes.
- ``size_mismatch``: the blob's size is not the row's ``size``.
- ``checksum_mismatch``: the blob's bytes do not give a digest the row's
  ``checksum`` lists (every listed algorithm is checked, in one read).
- ``orphan_row``: a row whose ``parent`` row does not exist.
- ``dangling_share``: an ``oc_share`` row whose ``file_source`` row does not
  exist.
"""

_DIRECTORY: Final = "httpd/unix-directory"
_BLOB_AREAS: Final = ("files/", "files_versions/", "files_trashbin/")
_BATCH: Final = 500
_T = TypeVar("_T")
_INSTANCE_ID: Final = re.compile(r"""['"]instanceid['"]\s*=>\s*['"]([^'"]*)['"]""")


@attrs.frozen(kw_only=True)
class OwncloudFinding:
    """One disagreement between the database and the data directory.

    Attributes:
        kind: One of [OWNCLOUD_FINDING_KINDS][carmigrate.recipes.OWNCLOUD_FINDING_KINDS].
        user: The user whose home storage (or share) it concerns.
        path: The path relative to the user's folder of the data directory,
            as ``oc_filecache.path`` spells it (``files/Photos/a.jpg``); for
            a ``dangling_share``, the share's ``file_target``.
        fileid: The ``oc_filecache.fileid`` (for a ``dangling_share`` the
            share's ``file_source``); ``None`` for ``not_in_cache``.
        detail: What was found, for people (not part of ``to_dict``'s
            contract beyond being a string or ``None``).
    """

    kind: str
    user: str
    path: str
    fileid: int | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"kind", "user", "path", "fileid"}``."""
        return {
            "kind": self.kind,
            "user": self.user,
            "path": self.path,
            "fileid": self.fileid,
        }


@attrs.frozen(kw_only=True)
class OwncloudUserCounts:
    """What one user has, as the database says.

    Attributes:
        files: File rows under ``files/`` of the user's home storage.
        folders: Folder rows under ``files/`` (``files`` itself not counted).
        versions: File rows under ``files_versions/``.
        trash: ``oc_files_trash`` rows of the user (deleted items).
        shares: ``oc_share`` rows the user owns (``uid_owner``).
        bytes: The sum of the ``size`` of the file rows under ``files/``.
    """

    files: int = 0
    folders: int = 0
    versions: int = 0
    trash: int = 0
    shares: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, int]:
        """``{"files", "folders", "versions", "trash", "shares", "bytes"}``."""
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class OwncloudInventory:
    """An ownCloud 10 instance's users and findings (see [owncloud_inventory][carmigrate.recipes.owncloud_inventory]).

    Attributes:
        instance: The instance id (``config.php``'s ``instanceid``), if known.
        users: Counts per user, by user name (sorted).
        findings: Every finding, sorted by user, path, kind and fileid.
    """

    instance: str | None
    users: dict[str, OwncloudUserCounts]
    findings: tuple[OwncloudFinding, ...]

    def to_dict(self) -> dict[str, Any]:
        """``{"instance", "users": {name: counts}, "findings": [...]}`` (for ``--json``)."""
        return {
            "instance": self.instance,
            "users": {name: c.to_dict() for name, c in self.users.items()},
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_markdown(self) -> str:
        """A table of users and their counts, then the findings."""
        lines = [
            f"instance: {self.instance or '-'}",
            "",
            "| user | files | folders | versions | trash | shares | bytes |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, c in self.users.items():
            lines.append(
                f"| {name} | {c.files} | {c.folders} | {c.versions} | {c.trash} "
                f"| {c.shares} | {c.bytes} |"
            )
        lines.append("")
        if not self.findings:
            lines.append("no findings")
        for f in self.findings:
            fileid = "-" if f.fileid is None else f.fileid
            why = f": {f.detail}" if f.detail else ""
            lines.append(f"- {f.kind}: {f.user} {f.path} (fileid {fileid}){why}")
        return "\n".join(lines) + "\n"


def read_owncloud_instance_id(config_path: str | os.PathLike[str]) -> str:
    """The ``instanceid`` of an ownCloud ``config.php``.

    The file is read as text, never executed: the first
    ``'instanceid' => '…'`` entry of ``$CONFIG`` is taken.

    Raises:
        OSError: The file cannot be read.
        PlanError: The file has no ``instanceid`` entry.
    """
    with open(config_path, encoding="utf-8") as f:
        found = _INSTANCE_ID.search(f.read())
    if found is None:
        msg = f"{os.fspath(config_path)}: no 'instanceid' in config.php"
        raise PlanError(msg)
    return found[1]


def _checksums(value: str | None) -> dict[str, str]:
    """``SHA1:… MD5:… ADLER32:…`` → registry names to lowercase hex (unknown ones dropped)."""
    if not value:
        return {}
    pairs: dict[str, str | None] = {}
    for token in value.split():
        name, sep, digest = token.partition(":")
        if sep:
            pairs[name] = digest
    return clean_digests(pairs)


def _batches(rows: Iterable[_T], size: int = _BATCH) -> Iterator[list[_T]]:
    batch: list[_T] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Reader:
    """One inventory run. State: the database, the store, the findings so far."""

    def __init__(self, db: Database, store: Store, prefix: str) -> None:
        self.db = db
        self.store = store
        self.filecache = f"{prefix}filecache"
        self.storages = f"{prefix}storages"
        self.mimetypes = f"{prefix}mimetypes"
        self.share = f"{prefix}share"
        self.trash = f"{prefix}files_trash"
        self.findings: list[OwncloudFinding] = []
        self.object_homes: set[str] = set()
        self.directory = self._directory_mimetype()

    def _directory_mimetype(self) -> int | None:
        t = self.db.table(self.mimetypes)
        rows = self.db.iter_rows(self.mimetypes, where=t.c.mimetype == _DIRECTORY)
        return next((int(r["id"]) for r in rows), None)

    def homes(self, users: Iterable[str] | None) -> dict[str, int]:
        """``home::<user>`` and ``object::user:<user>`` storages: user → numeric id."""
        t = self.db.table(self.storages)
        where: Any = t.c.id.like("home::%") | t.c.id.like("object::user:%")
        if users is not None:
            wanted = list(users)
            where = t.c.id.in_(
                [f"home::{u}" for u in wanted] + [f"object::user:{u}" for u in wanted]
            )
        out = {}
        for r in self.db.iter_rows(self.storages, where=where):
            sid = str(r["id"])
            if sid.startswith("object::user:"):
                user = sid[len("object::user:") :]
                self.object_homes.add(user)
            else:
                user = sid[len("home::") :]
            out[user] = int(r["numeric_id"])
        return out

    def add(
        self, kind: str, user: str, path: str, fileid: int | None, why: str
    ) -> None:
        self.findings.append(
            OwncloudFinding(kind=kind, user=user, path=path, fileid=fileid, detail=why)
        )

    def user(self, user: str, storage: int) -> dict[str, int]:
        counts = {"files": 0, "folders": 0, "versions": 0, "bytes": 0}
        t = self.db.table(self.filecache)
        rows = self.db.iter_rows(self.filecache, where=t.c.storage == storage)
        for batch in _batches(rows):
            self._parents(user, batch)
            for r in batch:
                path = str(r["path"] or "")
                is_dir = r["mimetype"] == self.directory
                if path.startswith("files/"):
                    counts["folders" if is_dir else "files"] += 1
                    if not is_dir:
                        counts["bytes"] += int(r["size"] or 0)
                elif path.startswith("files_versions/") and not is_dir:
                    counts["versions"] += 1
                if not is_dir and path.startswith(_BLOB_AREAS):
                    self._blob(user, r)
        if user in self.object_homes:
            return counts  # urn:oid:<fileid> objects: nothing to list by user
        for area in _BLOB_AREAS:
            self._uncached(user, storage, self.store.list(f"{user}/{area}"))
        return counts

    def _parents(self, user: str, batch: list[Row]) -> None:
        wanted = {int(r["parent"]) for r in batch if int(r["parent"]) >= 0}
        found = {
            int(r["fileid"])
            for r in self.db.select_in(
                self.filecache, ["fileid"], [(p,) for p in wanted]
            )
        }
        for r in batch:
            parent = int(r["parent"])
            if parent >= 0 and parent not in found:
                why = f"parent {parent} is not in {self.filecache}"
                self.add("orphan_row", user, str(r["path"]), int(r["fileid"]), why)

    def _blob(self, user: str, r: Row) -> None:
        path, fileid = str(r["path"]), int(r["fileid"])
        key = f"urn:oid:{fileid}" if user in self.object_homes else f"{user}/{path}"
        try:
            info = self.store.stat(key)
        except ObjectNotFound:
            self.add("missing_on_disk", user, path, fileid, f"no {key}")
            return
        if r["encrypted"]:
            return  # the blob holds ciphertext: its size and digests differ
        if info.size != int(r["size"] or 0):
            why = f"{info.size} bytes on disk, {r['size']} in the database"
            self.add("size_mismatch", user, path, fileid, why)
            return
        expected = _checksums(r["checksum"])
        if not expected:
            return
        hasher = MultiHasher(expected)
        with self.store.open_read(key) as f:
            while chunk := f.read(1 << 20):
                hasher.update(chunk)
        got = hasher.hexdigests()
        bad = sorted(n for n, v in expected.items() if got[n] != v)
        if bad:
            why = "; ".join(f"{n} {got[n]}, database {expected[n]}" for n in bad)
            self.add("checksum_mismatch", user, path, fileid, why)

    def _uncached(self, user: str, storage: int, listing: Iterable[ObjectInfo]) -> None:
        cut = len(user) + 1
        for batch in _batches(listing):
            by_hash = {
                hashlib.md5(o.key[cut:].encode(), usedforsecurity=False).hexdigest(): o
                for o in batch
            }
            known = {
                str(r["path_hash"])
                for r in self.db.select_in(
                    self.filecache,
                    ["storage", "path_hash"],
                    [(storage, h) for h in by_hash],
                )
                if r["path"] == by_hash[str(r["path_hash"])].key[cut:]
            }
            for h, o in by_hash.items():
                if h not in known:
                    why = f"{o.key} ({o.size} bytes) has no {self.filecache} row"
                    self.add("not_in_cache", user, o.key[cut:], None, why)

    def trash_counts(self, users: Iterable[str]) -> dict[str, int]:
        t = self.db.table(self.trash)
        out = dict.fromkeys(users, 0)
        for r in self.db.iter_rows(
            self.trash, where=t.c.user.in_(list(out)), columns=["user"]
        ):
            out[str(r["user"])] += 1
        return out

    def shares(self, users: Iterable[str]) -> dict[str, int]:
        t = self.db.table(self.share)
        out = dict.fromkeys(users, 0)
        where = t.c.uid_owner.in_(list(out)) & t.c.item_type.in_(["file", "folder"])
        rows = self.db.iter_rows(
            self.share, where=where, columns=["uid_owner", "file_source", "file_target"]
        )
        for batch in _batches(rows):
            wanted = {
                int(r["file_source"]) for r in batch if r["file_source"] is not None
            }
            found = {
                int(r["fileid"])
                for r in self.db.select_in(
                    self.filecache, ["fileid"], [(f,) for f in wanted]
                )
            }
            for r in batch:
                owner = str(r["uid_owner"])
                out[owner] += 1
                source = r["file_source"]
                if source is None or int(source) not in found:
                    why = f"share {r['id']}: file {source} is not in {self.filecache}"
                    fileid = None if source is None else int(source)
                    target = str(r["file_target"] or "")
                    self.add("dangling_share", owner, target, fileid, why)
        return out


def owncloud_inventory(
    db_url: str,
    data_store: Store | str | os.PathLike[str],
    users: Iterable[str] | None = None,
    *,
    config: str | os.PathLike[str] | None = None,
    instance_id: str | None = None,
    table_prefix: str = "oc_",
) -> OwncloudInventory:
    """Count what each user of an ownCloud 10 instance has, and report what disagrees.

    The database is read through [carmigrate.records][] (SQLite file or any
    SQLAlchemy URL; read-only, one snapshot), streaming ``oc_filecache`` one
    home storage at a time in batches, so memory is bounded by a batch (plus
    the findings). The data directory is read through a
    [Store][carmigrate.storage.Store] whose root is ownCloud's
    ``datadirectory``: every file row under ``files/``, ``files_versions/``
    and ``files_trashbin/`` is stat'ed, its size compared, and, when its
    ``checksum`` column lists digests (``SHA1:… MD5:… ADLER32:…``), its bytes
    read once and every listed digest compared; then those three areas of
    the user's folder are listed and each blob looked up by ``path_hash``.
    Rows with a non-zero ``encrypted`` flag are only checked for presence.
    Nothing is changed or fixed (see
    [OWNCLOUD_FINDING_KINDS][carmigrate.recipes.OWNCLOUD_FINDING_KINDS]).

    Home storages on the data directory (``oc_storages.id``
    ``home::<user>``) and on ownCloud's object store
    (``object::user:<user>``, whose blobs are the objects
    ``urn:oid:<fileid>``: give that store as ``data_store``) are
    inventoried; for the latter, ``not_in_cache`` is not looked for (the
    store cannot be listed by user). External storages are left out.

    Args:
        db_url: The ownCloud database, as a SQLAlchemy URL
            (``sqlite:////var/www/owncloud/data/owncloud.db``,
            ``mysql+pymysql://…``).
        data_store: The data directory: a store, or anything
            [open_store][carmigrate.storage.open_store] takes (a store opened
            here is closed here).
        users: Only these users (their storages, shares, trash and blobs are
            the only things read); every user with a home storage by default.
        config: ownCloud's ``config/config.php``; its ``instanceid`` is the
            instance id.
        instance_id: The instance id when no ``config`` is given.
        table_prefix: ownCloud's ``dbtableprefix``.

    Returns:
        The inventory: counts per user, the findings sorted.

    Raises:
        ValueError: A user of ``users`` has no home storage.
        PlanError: ``config`` has no ``instanceid``.
        RecordsError: The database cannot be read or lacks a table or column.
        StorageError: The data directory cannot be opened or read.
        OSError: ``config`` cannot be read.
    """
    from carmigrate.records import open_database
    from carmigrate.storage import open_store

    instance = read_owncloud_instance_id(config) if config is not None else instance_id
    wanted = None if users is None else sorted(set(users))
    own = isinstance(data_store, (str, os.PathLike))
    store = (
        open_store(data_store)
        if isinstance(data_store, (str, os.PathLike))
        else data_store
    )
    try:
        with open_database(db_url) as db:
            reader = _Reader(db, store, table_prefix)
            homes = reader.homes(wanted)
            unknown = sorted(set(wanted or ()) - homes.keys())
            if unknown:
                msg = f"no home storage for {', '.join(map(repr, unknown))} in {db_url}"
                raise ValueError(msg)
            names = sorted(homes)
            counts = {u: reader.user(u, homes[u]) for u in names}
            trash = reader.trash_counts(names)
            shares = reader.shares(names)
    finally:
        if own:
            store.close()
    findings = sorted(
        reader.findings,
        key=lambda f: (f.user, f.path, f.kind, -1 if f.fileid is None else f.fileid),
    )
    return OwncloudInventory(
        instance=instance,
        users={
            u: OwncloudUserCounts(trash=trash[u], shares=shares[u], **counts[u])
            for u in names
        },
        findings=tuple(findings),
    )
