"""A generator of ownCloud 10 instances (SQLite database + data directory) for the owncloud recipe's tests.

The tables and columns follow owncloud/core (``db_structure.xml`` and the
migrations under ``core/Migrations/`` and ``apps/*/appinfo/Migrations/``;
see README-owncloud.md beside this file for the files and the commit). Only
the tables the inventory reads, or that give them meaning, are made; their
columns are all there, with the types Doctrine gives them on SQLite.

What an instance made by [make_owncloud_instance][] has: two users, alice
and bob, each with a home storage ``home::<user>`` rooted at
``<datadir>/<user>``; ``oc_filecache`` rows for the storage root (``''``,
parent -1), ``files``, every folder and file, the versions
(``files_versions/<path>.v<ts>``) and the trash bin
(``files_trashbin/files/<name>.d<ts>``, ``files_trashbin/versions/…``),
each with ``path_hash = md5(path)``, its ``parent``, ``name``, mimetype ids
from ``oc_mimetypes``, an etag, and for files under ``files/`` (and the
trashed ones, which keep their row's checksum) a checksum in the format of
``OC\\Files\\Storage\\Wrapper\\Checksum::CHECKSUMS_DB_FORMAT``
(``SHA1:%s MD5:%s ADLER32:%s``); the blobs on disk match the rows.
``oc_files_trash`` lists the trashed items, ``oc_share`` has a user share
and a public link of alice and a user share of bob, and ``config.php``
holds the ``instanceid``.

Each inconsistency the inventory reports can be injected alone (``inject``);
the instance then says the finding it expects.
"""

from __future__ import annotations

import hashlib
import sqlite3
import zlib
from dataclasses import dataclass, field
from pathlib import Path

INSTANCE_ID = "oc6tx1ep9uvh"

KINDS = (
    "missing_on_disk",
    "not_in_cache",
    "size_mismatch",
    "checksum_mismatch",
    "orphan_row",
    "dangling_share",
)

# Doctrine's SQLite DDL for the columns declared upstream (names, order,
# nullability, defaults, lengths); indexes only where they are unique.
DDL = """
CREATE TABLE oc_storages (
    id VARCHAR(64) DEFAULT NULL,
    numeric_id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    available INTEGER DEFAULT 1 NOT NULL,
    last_checked INTEGER DEFAULT NULL
);
CREATE UNIQUE INDEX storages_id_index ON oc_storages (id);
CREATE TABLE oc_mounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    storage_id INTEGER NOT NULL,
    root_id INTEGER NOT NULL,
    user_id VARCHAR(64) NOT NULL,
    mount_point VARCHAR(4000) NOT NULL
);
CREATE TABLE oc_mimetypes (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    mimetype VARCHAR(255) DEFAULT '' NOT NULL
);
CREATE UNIQUE INDEX mimetype_id_index ON oc_mimetypes (mimetype);
CREATE TABLE oc_filecache (
    fileid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    storage INTEGER DEFAULT 0 NOT NULL,
    path VARCHAR(4000) DEFAULT NULL,
    path_hash VARCHAR(32) DEFAULT '' NOT NULL,
    parent BIGINT DEFAULT 0 NOT NULL,
    name VARCHAR(250) DEFAULT NULL,
    mimetype INTEGER DEFAULT 0 NOT NULL,
    mimepart INTEGER DEFAULT 0 NOT NULL,
    size BIGINT DEFAULT 0 NOT NULL,
    mtime BIGINT DEFAULT 0 NOT NULL,
    storage_mtime BIGINT DEFAULT 0 NOT NULL,
    encrypted INTEGER DEFAULT 0 NOT NULL,
    unencrypted_size BIGINT DEFAULT 0 NOT NULL,
    etag VARCHAR(40) DEFAULT NULL,
    permissions INTEGER DEFAULT 0,
    checksum VARCHAR(255) DEFAULT NULL
);
CREATE UNIQUE INDEX fs_storage_path_hash ON oc_filecache (storage, path_hash);
CREATE INDEX fs_parent_name_hash ON oc_filecache (parent, name);
CREATE TABLE oc_users (
    uid VARCHAR(64) DEFAULT '' NOT NULL PRIMARY KEY,
    displayname VARCHAR(64) DEFAULT NULL,
    password VARCHAR(255) DEFAULT '' NOT NULL
);
CREATE TABLE oc_accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    email VARCHAR(255) DEFAULT NULL,
    user_id VARCHAR(255) NOT NULL,
    lower_user_id VARCHAR(255) NOT NULL,
    display_name VARCHAR(255) DEFAULT NULL,
    quota VARCHAR(32) DEFAULT NULL,
    last_login INTEGER DEFAULT 0 NOT NULL,
    backend VARCHAR(64) NOT NULL,
    home VARCHAR(1024) NOT NULL,
    state SMALLINT DEFAULT 0 NOT NULL
);
CREATE UNIQUE INDEX UNIQ_907AA303A76ED395 ON oc_accounts (user_id);
CREATE TABLE oc_share (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    share_type SMALLINT DEFAULT 0 NOT NULL,
    share_with VARCHAR(255) DEFAULT NULL,
    uid_owner VARCHAR(64) DEFAULT '' NOT NULL,
    uid_initiator VARCHAR(64) DEFAULT NULL,
    parent INTEGER DEFAULT NULL,
    item_type VARCHAR(64) DEFAULT '' NOT NULL,
    item_source VARCHAR(255) DEFAULT NULL,
    item_target VARCHAR(255) DEFAULT NULL,
    file_source INTEGER DEFAULT NULL,
    file_target VARCHAR(512) DEFAULT NULL,
    permissions SMALLINT DEFAULT 0 NOT NULL,
    stime BIGINT DEFAULT 0 NOT NULL,
    accepted SMALLINT DEFAULT 0 NOT NULL,
    expiration DATETIME DEFAULT NULL,
    token VARCHAR(32) DEFAULT NULL,
    mail_send SMALLINT DEFAULT 0 NOT NULL,
    share_name VARCHAR(64) DEFAULT NULL,
    attributes CLOB DEFAULT NULL
);
CREATE TABLE oc_groups (
    gid VARCHAR(64) DEFAULT '' NOT NULL PRIMARY KEY
);
CREATE TABLE oc_group_user (
    gid VARCHAR(64) DEFAULT '' NOT NULL,
    uid VARCHAR(64) DEFAULT '' NOT NULL,
    PRIMARY KEY(gid, uid)
);
CREATE TABLE oc_files_trash (
    auto_id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    id VARCHAR(250) DEFAULT '' NOT NULL,
    user VARCHAR(64) DEFAULT '' NOT NULL,
    timestamp VARCHAR(12) DEFAULT '' NOT NULL,
    location VARCHAR(512) DEFAULT '' NOT NULL,
    type VARCHAR(4) DEFAULT NULL,
    mime VARCHAR(255) DEFAULT NULL
);
"""

DIRECTORY = "httpd/unix-directory"
MIMETYPES = (
    "httpd",
    DIRECTORY,
    "application",
    "application/pdf",
    "image",
    "image/jpeg",
    "text",
    "text/plain",
    "text/markdown",
)
# OCP\Constants: PERMISSION_READ 1, UPDATE 2, CREATE 4, DELETE 8, SHARE 16
FILE_PERMISSIONS = 27
FOLDER_PERMISSIONS = 31
SHARE_TYPE_USER = 0
SHARE_TYPE_GROUP = 1
SHARE_TYPE_USERGROUP = 2  # a group share's row for one member (its own state)
SHARE_TYPE_LINK = 3
SHARE_TYPE_REMOTE = 6  # federated
# OCP\Share\Constants (lib/private/Share/Constants.php): oc_share.accepted
STATE_ACCEPTED = 0
STATE_PENDING = 1
STATE_REJECTED = 2
MTIME = 1564775936


def checksum_column(data: bytes) -> str:
    """The ``oc_filecache.checksum`` ownCloud writes for ``data``."""
    return f"SHA1:{hashlib.sha1(data).hexdigest()} MD5:{hashlib.md5(data).hexdigest()} ADLER32:{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def _mime(name: str) -> str:
    ext = name.split(".v")[0].split(".d1")[0].rsplit(".", 1)[-1]
    return {
        "pdf": "application/pdf",
        "jpg": "image/jpeg",
        "md": "text/markdown",
    }.get(ext, "text/plain")


@dataclass
class Expected:
    """A finding the inventory must report, as ``to_dict`` spells it."""

    kind: str
    user: str
    path: str
    fileid: int | None

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "user": self.user,
            "path": self.path,
            "fileid": self.fileid,
        }


@dataclass
class OwncloudInstance:
    """A generated instance: where it is and what the inventory must say."""

    root: Path
    db_path: Path
    data_dir: Path
    config_path: Path
    fileids: dict[tuple[str, str], int] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    expected: list[Expected] = field(default_factory=list)
    shares: list[dict[str, object]] = field(default_factory=list)

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"


# user -> (path under the home storage, content or None for a folder)
LAYOUT: dict[str, list[tuple[str, bytes | None]]] = {
    "alice": [
        ("files/Photos", None),
        ("files/Photos/Portugal.jpg", b"\xff\xd8\xff\xe0JFIF" + bytes(range(256)) * 8),
        ("files/Projects", None),
        ("files/Projects/Notes.md", b"# Notes\n\nthird draft\n"),
        ("files/ownCloud Manual.pdf", b"%PDF-1.4\n" + b"manual page\n" * 300),
        ("files_versions/Projects/Notes.md.v1496912691", b"# Notes\n"),
        ("files_versions/Projects/Notes.md.v1540305560", b"# Notes\n\nsecond\n"),
        ("files_trashbin/files/TODO.txt.d1565721976", b"- buy milk\n- call bob\n"),
        ("files_trashbin/files/Documents.d1564687985", None),
        ("files_trashbin/files/Documents.d1564687985/plan.txt", b"the plan\n"),
        ("files_trashbin/versions/TODO.txt.v1564605543.d1565721976", b"- buy milk\n"),
    ],
    "bob": [
        ("files/welcome.txt", b"Welcome to ownCloud!\n"),
        ("files/Reports", None),
        ("files/Reports/q1.txt", b"Q1: fine\n"),
        ("files_versions/welcome.txt.v1564775936", b"Welcome!\n"),
    ],
}
# extended instances: three more users, in two groups with alice and bob
EXTRA_LAYOUT: dict[str, list[tuple[str, bytes | None]]] = {
    "carol": [
        ("files/Music", None),
        ("files/Music/playlist.txt", b"1. Fado\n2. Morna\n"),
        ("files/Budget.ods", b"PK\x03\x04" + b"budget rows\n" * 40),
        ("files_versions/Budget.ods.v1563000000", b"PK\x03\x04" + b"old rows\n"),
    ],
    "dave": [
        ("files/Scans", None),
        ("files/Scans/scan-001.pdf", b"%PDF-1.4\n" + b"scan\n" * 100),
        ("files/notes.txt", b"dave's notes\n"),
    ],
    "erin": [
        ("files/todo.md", b"- ship it\n"),
        ("files_trashbin/files/old.txt.d1566000000", b"old text, second version\n"),
        ("files_trashbin/versions/old.txt.v1565900000.d1566000000", b"old text\n"),
    ],
}
GROUPS = {"eng": ("bob", "erin"), "sales": ("alice", "carol", "dave")}
EXTRA_TRASH = [("erin", "old.txt", "1566000000", ".", "file")]
LINK_PASSWORD_HASH = "1|$2y$10$7sZJiT0aFVDIy5YB0Eo6Ee1sLwX9yCTu7ZPp4ISmEDZQmQ6hSMXKa"
LINK_EXPIRATION = "2027-01-31 00:00:00"
# as DefaultShareProvider::formatShareAttributes stores them: [scope, key, enabled]
DOWNLOAD_OFF = '[["permissions","download",false]]'
# (user, id, timestamp, location, type): oc_files_trash rows
TRASH = [
    ("alice", "TODO.txt", "1565721976", ".", "file"),
    ("alice", "Documents", "1564687985", ".", "dir"),
]
COUNTS = {
    "alice": {
        "files": 3,
        "folders": 2,
        "versions": 2,
        "trash": 2,
        "shares": 2,
        "bytes": sum(
            len(c or b"")
            for p, c in LAYOUT["alice"]
            if p.startswith("files/") and c is not None
        ),
    },
    "bob": {
        "files": 2,
        "folders": 1,
        "versions": 1,
        "trash": 0,
        "shares": 1,
        "bytes": len(b"Welcome to ownCloud!\n") + len(b"Q1: fine\n"),
    },
}


def _resize(db: sqlite3.Connection) -> None:
    """A folder's ``size`` is the size of the files below it, as ownCloud's scanner keeps it."""
    d = db.execute("SELECT id FROM oc_mimetypes WHERE mimetype = ?", (DIRECTORY,))
    directory = d.fetchone()[0]
    db.execute(
        "UPDATE oc_filecache AS f SET size = (SELECT COALESCE(SUM(c.size), 0)"
        " FROM oc_filecache c WHERE c.storage = f.storage AND c.mimetype != ?"
        " AND c.path LIKE f.path || '/%')"
        " WHERE f.mimetype = ? AND (f.path = 'files' OR f.path LIKE 'files/%')",
        (directory, directory),
    )


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def make_owncloud_instance(
    root: Path, *, inject: tuple[str, ...] = (), extended: bool = False
) -> OwncloudInstance:
    """Write an instance under ``root`` (``owncloud.db``, ``data/``, ``config.php``).

    Args:
        root: An empty folder.
        inject: Inconsistencies to introduce, by finding kind (see ``KINDS``).
        extended: Five users in two groups (``EXTRA_LAYOUT``, ``GROUPS``) and
            a share of every kind (group shares with each member's state, a
            reshare, a link with password and expiration, attributes, a
            federated share), recorded in ``shares``.
    """
    bad = set(inject) - set(KINDS)
    assert not bad, f"unknown kinds {bad}"
    inst = OwncloudInstance(
        root=root,
        db_path=root / "owncloud.db",
        data_dir=root / "data",
        config_path=root / "config.php",
    )
    inst.counts = {u: dict(c) for u, c in COUNTS.items()}
    root.mkdir(parents=True, exist_ok=True)
    inst.config_path.write_text(
        "<?php\n$CONFIG = array (\n"
        f"  'instanceid' => '{INSTANCE_ID}',\n"
        "  'passwordsalt' => 'x',\n"
        f"  'datadirectory' => '{inst.data_dir}',\n"
        "  'dbtype' => 'sqlite3',\n"
        "  'version' => '10.15.0.2',\n"
        "  'installed' => true,\n);\n"
    )
    db = sqlite3.connect(inst.db_path)
    db.executescript(DDL)
    mime = {}
    for m in MIMETYPES:
        mime[m] = db.execute(
            "INSERT INTO oc_mimetypes (mimetype) VALUES (?)", (m,)
        ).lastrowid

    def row(
        storage: int, path: str, parent: int, content: bytes | None, checksum: bool
    ) -> int:
        is_dir = content is None
        mt = DIRECTORY if is_dir else _mime(path.rsplit("/", 1)[-1])
        size = 0 if is_dir else len(content or b"")
        etag = (
            hashlib.md5(f"{MTIME}{path}{size}".encode()).hexdigest()
            if not is_dir
            else hashlib.md5(path.encode()).hexdigest()[:13]
        )
        cur = db.execute(
            "INSERT INTO oc_filecache (storage, path, path_hash, parent, name, mimetype,"
            " mimepart, size, mtime, storage_mtime, encrypted, unencrypted_size, etag,"
            " permissions, checksum) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                storage,
                path,
                hashlib.md5(path.encode()).hexdigest(),
                parent,
                path.rsplit("/", 1)[-1],
                mime[mt],
                mime[mt.split("/")[0]],
                size,
                MTIME,
                MTIME,
                0,
                0,
                etag,
                FOLDER_PERMISSIONS if is_dir else FILE_PERMISSIONS,
                checksum_column(content) if checksum and content is not None else None,
            ),
        )
        return int(cur.lastrowid or 0)

    layout = {**LAYOUT, **EXTRA_LAYOUT} if extended else LAYOUT
    for user, entries in layout.items():
        db.execute(
            "INSERT INTO oc_users (uid, displayname, password) VALUES (?,?,?)",
            (user, user.title(), "1|$2y$10$hash"),
        )
        db.execute(
            "INSERT INTO oc_accounts (email, user_id, lower_user_id, display_name,"
            " backend, home, state) VALUES (?,?,?,?,?,?,1)",
            (
                f"{user}@example.org",
                user,
                user,
                user.title(),
                "OC\\User\\Database",
                str(inst.data_dir / user),
            ),
        )
        storage = int(
            db.execute(
                "INSERT INTO oc_storages (id, available) VALUES (?, 1)",
                (f"home::{user}",),
            ).lastrowid
            or 0
        )
        ids = {"": row(storage, "", -1, None, False)}
        db.execute(
            "INSERT INTO oc_mounts (storage_id, root_id, user_id, mount_point) VALUES (?,?,?,?)",
            (storage, ids[""], user, f"/{user}/"),
        )
        for path, content in entries:
            for folder in _parents(path):
                if folder not in ids:
                    ids[folder] = row(
                        storage,
                        folder,
                        ids["/".join(folder.split("/")[:-1])],
                        None,
                        False,
                    )
            parent = ids["/".join(path.split("/")[:-1])]
            ids[path] = row(
                storage, path, parent, content, not path.startswith("files_versions/")
            )
            target = inst.data_dir / user / path
            if content is None:
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
        for p, i in ids.items():
            inst.fileids[user, p] = i
    for user, name, ts, location, kind in TRASH + (EXTRA_TRASH if extended else []):
        db.execute(
            "INSERT INTO oc_files_trash (id, user, timestamp, location, type, mime)"
            " VALUES (?,?,?,?,?,?)",
            (
                name,
                user,
                ts,
                location,
                kind,
                DIRECTORY if kind == "dir" else "text/plain",
            ),
        )

    def share(
        owner: str,
        share_type: int,
        with_: str | None,
        path: str,
        token: str | None = None,
        fileid: int | None = None,
        *,
        initiator: str | None = None,
        parent: int | None = None,
        accepted: int | None = None,
        permissions: int | None = None,
        target: str | None = None,
        expiration: str | None = None,
        attributes: str | None = None,
    ) -> int:
        source = inst.fileids[owner, path] if fileid is None else fileid
        item_type = "folder" if dict(layout[owner]).get(path, b"") is None else "file"
        values = {
            "share_type": share_type,
            "share_with": with_,
            "uid_owner": owner,
            "uid_initiator": initiator or owner,
            "parent": parent,
            "item_type": item_type,
            "item_source": str(source),
            "file_source": source,
            "file_target": target or "/" + path.rsplit("/", 1)[-1],
            "permissions": permissions
            if permissions is not None
            else (31 if item_type == "folder" else 19),
            "stime": MTIME,
            "accepted": accepted if accepted is not None else STATE_ACCEPTED,
            "expiration": expiration,
            "token": token,
            "share_name": "link" if token else None,
            "attributes": attributes,
        }
        cur = db.execute(
            f"INSERT INTO oc_share ({', '.join(values)}) VALUES"
            f" ({', '.join('?' * len(values))})",
            tuple(values.values()),
        )
        sid = int(cur.lastrowid or 0)
        inst.shares.append({"id": sid, "path": path, **values})
        return sid

    photos = share("alice", SHARE_TYPE_USER, "bob", "files/Photos")
    share(
        "alice",
        SHARE_TYPE_LINK,
        None,
        "files/Projects/Notes.md",
        token="aBcDeFgHiJkLmNo",
    )
    share("bob", SHARE_TYPE_USER, "alice", "files/welcome.txt")
    if extended:
        for gid, members in GROUPS.items():
            db.execute("INSERT INTO oc_groups (gid) VALUES (?)", (gid,))
            for uid in members:
                db.execute(
                    "INSERT INTO oc_group_user (gid, uid) VALUES (?,?)", (gid, uid)
                )
        # a group share, and each member's own row: accepted, declined
        group = share("alice", SHARE_TYPE_GROUP, "eng", "files/Projects")
        share(
            "alice",
            SHARE_TYPE_USERGROUP,
            "bob",
            "files/Projects",
            parent=group,
            accepted=STATE_ACCEPTED,
            target="/Projects (alice)",
        )
        share(
            "alice",
            SHARE_TYPE_USERGROUP,
            "erin",
            "files/Projects",
            parent=group,
            accepted=STATE_REJECTED,
        )
        # bob reshares alice's Photos to carol, read only; carol has not accepted
        share(
            "alice",
            SHARE_TYPE_USER,
            "carol",
            "files/Photos",
            initiator="bob",
            parent=photos,
            accepted=STATE_PENDING,
            permissions=1,
        )
        # a link with a password and an expiry date
        share(
            "alice",
            SHARE_TYPE_LINK,
            LINK_PASSWORD_HASH,
            "files/Photos",
            token="Zq8wP3sLx7Rk2Vn",
            permissions=1,
            expiration=LINK_EXPIRATION,
        )
        # a share whose recipient may not download (a share attribute)
        share(
            "alice",
            SHARE_TYPE_USER,
            "dave",
            "files/ownCloud Manual.pdf",
            attributes=DOWNLOAD_OFF,
            permissions=17,
        )
        share("carol", SHARE_TYPE_GROUP, "sales", "files/Music")
        share(
            "dave", SHARE_TYPE_USER, "erin", "files/notes.txt", accepted=STATE_PENDING
        )
        share("carol", SHARE_TYPE_REMOTE, "eve@cloud.example.net", "files/Budget.ods")

    _resize(db)
    data = inst.data_dir
    if "missing_on_disk" in inject:
        (data / "alice/files/Projects/Notes.md").unlink()
        inst.expected.append(
            Expected(
                "missing_on_disk",
                "alice",
                "files/Projects/Notes.md",
                inst.fileids["alice", "files/Projects/Notes.md"],
            )
        )
    if "not_in_cache" in inject:
        (data / "bob/files/stray.txt").write_bytes(
            b"copied in behind ownCloud's back\n"
        )
        inst.expected.append(Expected("not_in_cache", "bob", "files/stray.txt", None))
    if "size_mismatch" in inject:
        with (data / "alice/files/ownCloud Manual.pdf").open("ab") as f:
            f.write(b"appended\n")
        inst.expected.append(
            Expected(
                "size_mismatch",
                "alice",
                "files/ownCloud Manual.pdf",
                inst.fileids["alice", "files/ownCloud Manual.pdf"],
            )
        )
    if "checksum_mismatch" in inject:
        blob = data / "alice/files/Photos/Portugal.jpg"
        content = bytearray(blob.read_bytes())
        content[100] ^= 0xFF  # same size, other bytes
        blob.write_bytes(bytes(content))
        inst.expected.append(
            Expected(
                "checksum_mismatch",
                "alice",
                "files/Photos/Portugal.jpg",
                inst.fileids["alice", "files/Photos/Portugal.jpg"],
            )
        )
    if "orphan_row" in inject:  # the folder's row is gone, its child's row is not
        db.execute(
            "DELETE FROM oc_filecache WHERE fileid = ?",
            (inst.fileids["bob", "files/Reports"],),
        )
        inst.counts["bob"]["folders"] -= 1
        inst.expected.append(
            Expected(
                "orphan_row",
                "bob",
                "files/Reports/q1.txt",
                inst.fileids["bob", "files/Reports/q1.txt"],
            )
        )
    if "dangling_share" in inject:  # the file was deleted, its share was not
        gone = max(inst.fileids.values()) + 100
        db.execute(
            "INSERT INTO oc_share (share_type, share_with, uid_owner, uid_initiator, item_type,"
            " item_source, file_source, file_target, permissions, stime, accepted)"
            " VALUES (0, 'bob', 'alice', 'alice', 'file', ?, ?, '/Old.txt', 19, ?, 1)",
            (str(gone), gone, MTIME),
        )
        inst.counts["alice"]["shares"] += 1
        inst.expected.append(Expected("dangling_share", "alice", "/Old.txt", gone))
    db.commit()
    db.close()
    return inst


# -- changes at the source between passes, made as ownCloud makes them --------


def _db(inst: OwncloudInstance) -> sqlite3.Connection:
    return sqlite3.connect(inst.db_path)


def _storage(db: sqlite3.Connection, user: str) -> int:
    return int(
        db.execute(
            "SELECT numeric_id FROM oc_storages WHERE id IN (?, ?)",
            (f"home::{user}", f"object::user:{user}"),
        ).fetchone()[0]
    )


def _touch_parents(
    db: sqlite3.Connection, storage: int, path: str, mtime: int, tag: str
) -> None:
    """ownCloud propagates a change up the tree: new etags, newer tree mtimes."""
    for folder in _parents(path):
        db.execute(
            "UPDATE oc_filecache SET etag = ?, mtime = MAX(mtime, ?) WHERE storage = ? AND path = ?",
            (
                hashlib.md5(f"{tag}{folder}".encode()).hexdigest()[:13],
                mtime,
                storage,
                folder,
            ),
        )


def change_file(
    inst: OwncloudInstance, user: str, path: str, content: bytes, mtime: int
) -> None:
    """Write new bytes to ``files/…``: new size, mtime, etag and checksum, as a client upload would."""
    (inst.data_dir / user / path).write_bytes(content)
    db = _db(inst)
    storage = _storage(db, user)
    db.execute(
        "UPDATE oc_filecache SET size = ?, mtime = ?, storage_mtime = ?, etag = ?, checksum = ?"
        " WHERE storage = ? AND path = ?",
        (
            len(content),
            mtime,
            mtime,
            hashlib.md5(f"{mtime}{path}{len(content)}".encode()).hexdigest(),
            checksum_column(content),
            storage,
            path,
        ),
    )
    _touch_parents(db, storage, path, mtime, f"change{mtime}")
    _resize(db)
    db.commit()
    db.close()


def add_file(
    inst: OwncloudInstance, user: str, path: str, content: bytes, mtime: int
) -> int:
    """A new file in an existing folder; its fileid."""
    target = inst.data_dir / user / path
    target.write_bytes(content)
    db = _db(inst)
    storage = _storage(db, user)
    parent_path = path.rsplit("/", 1)[0]
    parent = db.execute(
        "SELECT fileid FROM oc_filecache WHERE storage = ? AND path = ?",
        (storage, parent_path),
    ).fetchone()[0]
    mt = db.execute(
        "SELECT id FROM oc_mimetypes WHERE mimetype = 'text/plain'"
    ).fetchone()[0]
    cur = db.execute(
        "INSERT INTO oc_filecache (storage, path, path_hash, parent, name, mimetype, mimepart,"
        " size, mtime, storage_mtime, etag, permissions, checksum)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            storage,
            path,
            hashlib.md5(path.encode()).hexdigest(),
            parent,
            path.rsplit("/", 1)[-1],
            mt,
            mt,
            len(content),
            mtime,
            mtime,
            hashlib.md5(f"{mtime}{path}{len(content)}".encode()).hexdigest(),
            FILE_PERMISSIONS,
            checksum_column(content),
        ),
    )
    fileid = int(cur.lastrowid or 0)
    inst.fileids[user, path] = fileid
    _touch_parents(db, storage, path, mtime, f"add{mtime}")
    _resize(db)
    db.commit()
    db.close()
    return fileid


def move_file(
    inst: OwncloudInstance, user: str, old: str, new: str, mtime: int
) -> None:
    """Rename or move a file (its fileid and etag stay, as ownCloud's rename keeps them)."""
    src, dst = inst.data_dir / user / old, inst.data_dir / user / new
    src.rename(dst)
    db = _db(inst)
    storage = _storage(db, user)
    parent = db.execute(
        "SELECT fileid FROM oc_filecache WHERE storage = ? AND path = ?",
        (storage, new.rsplit("/", 1)[0]),
    ).fetchone()[0]
    db.execute(
        "UPDATE oc_filecache SET path = ?, path_hash = ?, name = ?, parent = ?"
        " WHERE storage = ? AND path = ?",
        (
            new,
            hashlib.md5(new.encode()).hexdigest(),
            new.rsplit("/", 1)[-1],
            parent,
            storage,
            old,
        ),
    )
    inst.fileids[user, new] = inst.fileids.pop((user, old))
    _touch_parents(db, storage, old, mtime, f"movefrom{mtime}")
    _touch_parents(db, storage, new, mtime, f"moveto{mtime}")
    _resize(db)
    db.commit()
    db.close()


def delete_file(inst: OwncloudInstance, user: str, path: str, deleted: int) -> str:
    """Delete a file to the trash bin, as ownCloud does; its trash path."""
    name = path.rsplit("/", 1)[-1]
    trashed = f"files_trashbin/files/{name}.d{deleted}"
    folder = inst.data_dir / user / "files_trashbin" / "files"
    folder.mkdir(parents=True, exist_ok=True)
    (inst.data_dir / user / path).rename(inst.data_dir / user / trashed)
    db = _db(inst)
    storage = _storage(db, user)
    for p in ("files_trashbin", "files_trashbin/files"):
        if not db.execute(
            "SELECT 1 FROM oc_filecache WHERE storage = ? AND path = ?", (storage, p)
        ).fetchone():
            up = db.execute(
                "SELECT fileid FROM oc_filecache WHERE storage = ? AND path = ?",
                (storage, p.rsplit("/", 1)[0] if "/" in p else ""),
            ).fetchone()[0]
            d = db.execute(
                "SELECT id FROM oc_mimetypes WHERE mimetype = ?", (DIRECTORY,)
            ).fetchone()[0]
            db.execute(
                "INSERT INTO oc_filecache (storage, path, path_hash, parent, name, mimetype,"
                " mimepart, etag, permissions) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    storage,
                    p,
                    hashlib.md5(p.encode()).hexdigest(),
                    up,
                    p.rsplit("/", 1)[-1],
                    d,
                    d,
                    "x",
                    31,
                ),
            )
    parent = db.execute(
        "SELECT fileid FROM oc_filecache WHERE storage = ? AND path = 'files_trashbin/files'",
        (storage,),
    ).fetchone()[0]
    db.execute(
        "UPDATE oc_filecache SET path = ?, path_hash = ?, name = ?, parent = ?"
        " WHERE storage = ? AND path = ?",
        (
            trashed,
            hashlib.md5(trashed.encode()).hexdigest(),
            f"{name}.d{deleted}",
            parent,
            storage,
            path,
        ),
    )
    location = (
        path.removeprefix("files/").rsplit("/", 1)[0]
        if "/" in path.removeprefix("files/")
        else "."
    )
    db.execute(
        "INSERT INTO oc_files_trash (id, user, timestamp, location, type, mime)"
        " VALUES (?,?,?,?,'file','text/plain')",
        (name, user, str(deleted), location),
    )
    inst.fileids[user, trashed] = inst.fileids.pop((user, path))
    _touch_parents(db, storage, path, deleted, f"delete{deleted}")
    _resize(db)
    db.commit()
    db.close()
    return trashed
