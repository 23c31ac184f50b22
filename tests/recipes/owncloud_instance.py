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
SHARE_TYPE_LINK = 3
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


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def make_owncloud_instance(
    root: Path, *, inject: tuple[str, ...] = ()
) -> OwncloudInstance:
    """Write an instance under ``root`` (``owncloud.db``, ``data/``, ``config.php``).

    Args:
        root: An empty folder.
        inject: Inconsistencies to introduce, by finding kind (see ``KINDS``).
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

    for user, entries in LAYOUT.items():
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
    for user, name, ts, location, kind in TRASH:
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
    ) -> None:
        source = inst.fileids[owner, path] if fileid is None else fileid
        item_type = "folder" if dict(LAYOUT[owner]).get(path, b"") is None else "file"
        target = "/" + path.rsplit("/", 1)[-1]
        db.execute(
            "INSERT INTO oc_share (share_type, share_with, uid_owner, uid_initiator, item_type,"
            " item_source, file_source, file_target, permissions, stime, accepted, token,"
            " share_name) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                share_type,
                with_,
                owner,
                owner,
                item_type,
                str(source),
                source,
                target,
                31 if item_type == "folder" else 19,
                MTIME,
                1 if with_ else 0,
                token,
                "link" if token else None,
            ),
        )

    share("alice", SHARE_TYPE_USER, "bob", "files/Photos")
    share(
        "alice",
        SHARE_TYPE_LINK,
        None,
        "files/Projects/Notes.md",
        token="aBcDeFgHiJkLmNo",
    )
    share("bob", SHARE_TYPE_USER, "alice", "files/welcome.txt")

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
