"""The oCIS decomposedfs writer and reader against the layout reva reads.

The constants below were derived by reading owncloud/reva at commit
457151e15d4699ef8851b70453832408f195238b (see README-ocis.md); each cites
the file and line it comes from. Paths are relative to
``pkg/storage/utils/decomposedfs/`` unless they start with ``pkg/``.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import uuid
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carmigrate.errors import FormatError, PlanError
from carmigrate.recipes._ocis_decomposedfs import (
    DfsNode,
    DfsRevision,
    DfsSpace,
    DfsTrashItem,
    DfsView,
    dfs_blob_key,
    dfs_computed_etag,
    dfs_stable_id,
    read_decomposedfs_space,
    read_decomposedfs_trash,
    s3ng_blob_key,
    write_decomposedfs_space,
)

# metadata/prefixes/prefixes.go:30-99 (prefix "user.ocis.", ocis_prefix.go)
TYPE = "user.ocis.type"  # :30
ID = "user.ocis.id"  # :31
PARENTID = "user.ocis.parentid"  # :32
OWNER_ID = "user.ocis.owner.id"  # :33
OWNER_IDP = "user.ocis.owner.idp"  # :34
OWNER_TYPE = "user.ocis.owner.type"  # :35
NAME = "user.ocis.name"  # :38
BLOBID = "user.ocis.blobid"  # :40
BLOBSIZE = "user.ocis.blobsize"  # :41
TMP_ETAG = "user.ocis.tmp.etag"  # :60
CS = "user.ocis.cs."  # :62
TRASH_ORIGIN = "user.ocis.trash.origin"  # :63
PROPAGATION = "user.ocis.propagation"  # :68
MTIME = "user.ocis.mtime"  # :71
TMTIME = "user.ocis.tmtime"  # :76
TREESIZE = "user.ocis.treesize"  # :87
SPACE_ID = "user.ocis.space.id"  # :93
SPACE_NAME = "user.ocis.space.name"  # :94
SPACE_TYPE = "user.ocis.space.type"  # :95
SPACE_ALIAS = "user.ocis.space.alias"  # :99
# CS3 ResourceType (cs3apis resources.proto): FILE = 1, CONTAINER = 2,
# stored as decimal text (node/node.go:271, node/xattrs.go:50-52)
FILE, CONTAINER = b"1", b"2"

# The example space id of tree/tree.go:866-867 and its pathified forms
# (lookup/lookup.go:198-212 Pathify, :308-310 InternalPath).
SPACE = "4c510ada-c86b-4815-8820-42cdf82c3d51"
SPACE_DIR = "spaces/4c/510ada-c86b-4815-8820-42cdf82c3d51"
ROOT_NODE = SPACE_DIR + "/nodes/4c/51/0a/da/-c86b-4815-8820-42cdf82c3d51"
IDP = "https://idp.example"

DOCS = "11111111-aaaa-4bbb-8ccc-000000000001"
REPORT = "22222222-aaaa-4bbb-8ccc-000000000002"
EMPTY = "33333333-aaaa-4bbb-8ccc-000000000003"
OLD = "44444444-aaaa-4bbb-8ccc-000000000004"
OLD_CHILD = "55555555-aaaa-4bbb-8ccc-000000000005"
NEWFILE = "66666666-aaaa-4bbb-8ccc-000000000006"
ARCHIVE = "77777777-aaaa-4bbb-8ccc-000000000007"

T0 = 1_700_000_000_000_000_000
SHA1 = "a9993e364706816aba3e25717850c26c9cd0d89d"
MD5 = "900150983cd24fb0d6963f7d28e17f72"
ADLER = "024d0127"


def node_rel(node_id: str) -> str:
    """nodes/<pathify(id, 4, 2)> (lookup/lookup.go:309)."""
    return (
        f"nodes/{node_id[0:2]}/{node_id[2:4]}/{node_id[4:6]}/{node_id[6:8]}/"
        f"{node_id[8:]}"
    )


def go_time_binary(ns: int) -> bytes:
    """Go's time.Time.MarshalBinary of a UTC time (go src/time/time.go).

    Version 1, seconds since year 1 as int64 BE, nanoseconds as int32 BE,
    zone offset -1 (UTC) as int16 BE.
    """
    sec, nsec = divmod(ns, 10**9)
    return (
        b"\x01"
        + struct.pack(">q", sec + 62135596800)
        + struct.pack(">i", nsec)
        + struct.pack(">h", -1)
    )


def calculate_etag(node_id: str, ns: int) -> str:
    """node/node.go:577-595 CalculateEtag: quoted md5(id + MarshalBinary(tmtime))."""
    return '"' + hashlib.md5(node_id.encode() + go_time_binary(ns)).hexdigest() + '"'


def mpk(path: Path) -> dict[str, bytes]:
    """A .mpk file (metadata/messagepack_backend.go:308) as map[string][]byte."""
    value = msgpack.unpackb(path.read_bytes(), raw=False)
    assert all(isinstance(v, bytes) for v in value.values())
    return value


def space(**changes: object) -> DfsSpace:
    fields: dict[str, object] = {
        "space_id": SPACE,
        "owner_id": SPACE,
        "owner_idp": IDP,
        "name": "Alice Hansen",
        "mtime_ns": T0 + 999,
        "etag": None,
        "alias": "personal/alice",
    }
    fields.update(changes)
    return DfsSpace(**fields)  # type: ignore[arg-type]


def tree_a() -> tuple[list[DfsNode], list[DfsTrashItem]]:
    nodes = [
        DfsNode(
            node_id=DOCS,
            parent_id=SPACE,
            name="Documents",
            is_dir=True,
            size=0,
            mtime_ns=T0 + 500,
        ),
        DfsNode(
            node_id=ARCHIVE,
            parent_id=DOCS,
            name="Archive",
            is_dir=True,
            size=0,
            mtime_ns=T0 + 400,
        ),
        DfsNode(
            node_id=REPORT,
            parent_id=DOCS,
            name="report.txt",
            is_dir=False,
            size=1000,
            mtime_ns=T0 + 123_456_700,
            blob_id=dfs_stable_id("blob-report-3"),
            checksums={"sha1": SHA1.upper(), "md5": MD5, "adler32": ADLER},
            revisions=(
                DfsRevision(
                    mtime_ns=T0 - 2 * 10**9,
                    blob_id=dfs_stable_id("blob-report-1"),
                    size=10,
                    checksums={"md5": MD5},
                ),
                DfsRevision(
                    mtime_ns=T0 - 10**9 + 5,
                    blob_id=dfs_stable_id("blob-report-2"),
                    size=20,
                ),
            ),
        ),
        DfsNode(
            node_id=EMPTY,
            parent_id=SPACE,
            name="empty file",
            is_dir=False,
            size=0,
            mtime_ns=T0,
        ),
    ]
    trash = [
        DfsTrashItem(
            node=DfsNode(
                node_id=OLD,
                parent_id=DOCS,
                name="old",
                is_dir=True,
                size=0,
                mtime_ns=T0 - 100,
            ),
            deleted_ns=T0 + 10**9 + 250_000_000,
            origin="Documents/old",
            descendants=(
                DfsNode(
                    node_id=OLD_CHILD,
                    parent_id=OLD,
                    name="notes.md",
                    is_dir=False,
                    size=42,
                    mtime_ns=T0 - 200,
                    blob_id=dfs_stable_id("blob-notes"),
                ),
            ),
        )
    ]
    return nodes, trash


def tree_b() -> tuple[list[DfsNode], list[DfsTrashItem]]:
    """Tree A after: Documents renamed, report moved up and changed, a file
    added, Archive and the empty file deleted, the trash emptied."""
    return [
        DfsNode(
            node_id=DOCS,
            parent_id=SPACE,
            name="Docs",
            is_dir=True,
            size=0,
            mtime_ns=T0 + 600,
        ),
        DfsNode(
            node_id=REPORT,
            parent_id=SPACE,
            name="report-v4.txt",
            is_dir=False,
            size=2000,
            mtime_ns=T0 + 5 * 10**9,
            blob_id=dfs_stable_id("blob-report-4"),
            checksums={"sha1": SHA1},
            revisions=(
                DfsRevision(
                    mtime_ns=T0 + 123_456_700,
                    blob_id=dfs_stable_id("blob-report-3"),
                    size=1000,
                ),
            ),
        ),
        DfsNode(
            node_id=NEWFILE,
            parent_id=DOCS,
            name="new.bin",
            is_dir=False,
            size=7,
            mtime_ns=T0 + 700,
            blob_id=dfs_stable_id("blob-new"),
        ),
    ], []


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under root: links with targets, files with bytes (and the
    mtime of revision files, which oCIS lists), folders."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir",)
            else:
                revision = ".REV." in name and not name.endswith(".mpk")
                mtime = path.stat().st_mtime_ns if revision else None
                out[rel] = ("file", path.read_bytes(), mtime)
    return out


# --------------------------------------------------------------------------
# layout


def test_layout_matches_what_reva_reads(tmp_path: Path) -> None:
    nodes, trash = tree_a()
    result = write_decomposedfs_space(
        tmp_path, space(etag="0a1b2c3d"), nodes, trash, fsync=False
    )
    assert (result.nodes, result.links, result.revisions, result.trash) == (4, 4, 2, 1)
    base = tmp_path / SPACE_DIR

    # space root: a folder at nodes/<pathify(spaceid, 4)> with a .mpk beside it
    assert (tmp_path / ROOT_NODE).is_dir()
    root_attrs = mpk(tmp_path / (ROOT_NODE + ".mpk"))
    # spaces.go:150-166 CreateStorageSpace attributes
    assert root_attrs[ID] == root_attrs[SPACE_ID] == SPACE.encode()
    assert root_attrs[OWNER_ID] == SPACE.encode()
    assert root_attrs[OWNER_IDP] == IDP.encode()
    assert root_attrs[OWNER_TYPE] == b"primary"  # pkg/utils/utils.go:367-368
    assert root_attrs[PROPAGATION] == b"1"
    assert root_attrs[NAME] == root_attrs[SPACE_NAME] == b"Alice Hansen"
    assert root_attrs[SPACE_TYPE] == b"personal"
    assert root_attrs[SPACE_ALIAS] == b"personal/alice"
    assert root_attrs[TREESIZE] == b"1000"  # only live files count
    assert root_attrs[TYPE] == CONTAINER
    # timemanager/timemanager.go:59,80: UTC RFC3339Nano, trailing zeros cut
    assert root_attrs[MTIME] == root_attrs[TMTIME] == b"2023-11-14T22:13:20.000000999Z"
    # node/node.go:730-733: the served etag is "%x" of tmp.etag, so the
    # etag 0a1b2c3d is kept as its bytes
    assert root_attrs[TMP_ETAG] == bytes.fromhex("0a1b2c3d")
    assert PARENTID not in root_attrs

    # child links: tree/tree.go:180,209,725 "../../../../../" + pathify(child)
    root_dir = tmp_path / ROOT_NODE
    assert sorted(os.listdir(root_dir)) == ["Documents", "empty file"]
    assert (
        os.readlink(root_dir / "Documents")
        == "../../../../../11/11/11/11/-aaaa-4bbb-8ccc-000000000001"
    )
    # the link resolves to the child's node (5 levels up is nodes/)
    assert (root_dir / "Documents").resolve() == (base / node_rel(DOCS)).resolve()
    docs_dir = base / node_rel(DOCS)
    assert sorted(os.listdir(docs_dir)) == ["Archive", "report.txt"]

    # a folder node: node/node.go:269-279 NodeMetadata, tree/tree.go:888-892
    docs = mpk(base / (node_rel(DOCS) + ".mpk"))
    assert docs == {
        TYPE: CONTAINER,
        PARENTID: SPACE.encode(),
        NAME: b"Documents",
        TREESIZE: b"1000",
        PROPAGATION: b"1",
        MTIME: b"2023-11-14T22:13:20.0000005Z",
        TMTIME: b"2023-11-14T22:13:20.0000005Z",
    }
    assert mpk(base / (node_rel(ARCHIVE) + ".mpk"))[TREESIZE] == b"0"

    # a file node: an empty regular file plus its metadata
    report_path = base / node_rel(REPORT)
    assert report_path.is_file()
    assert report_path.stat().st_size == 0
    report = mpk(base / (node_rel(REPORT) + ".mpk"))
    assert report == {
        TYPE: FILE,
        PARENTID: DOCS.encode(),
        NAME: b"report.txt",
        BLOBID: dfs_stable_id("blob-report-3").encode(),
        BLOBSIZE: b"1000",  # decimal text, node/xattrs.go:50-52
        MTIME: b"2023-11-14T22:13:20.1234567Z",
        # binary digests: node/node.go:978-980 SetChecksum stores h.Sum(nil);
        # :869-876 serves hex.EncodeToString
        CS + "sha1": bytes.fromhex(SHA1),
        CS + "md5": bytes.fromhex(MD5),
        CS + "adler32": bytes.fromhex(ADLER),
    }
    # an empty file without a blob: blob id "" (lookup/lookup.go:80-87)
    empty = mpk(base / (node_rel(EMPTY) + ".mpk"))
    assert empty[BLOBID] == b""
    assert empty[BLOBSIZE] == b"0"

    # revisions: upload/store.go:345-391 <node>.REV.<old mtime>, empty file
    # whose mtime is the revision's (revisions.go:83-99 lists the file mtime),
    # metadata: checksums, type, blobid, blobsize, mtime
    rev1 = base / (node_rel(REPORT) + ".REV.2023-11-14T22:13:18Z")
    rev2 = base / (node_rel(REPORT) + ".REV.2023-11-14T22:13:19.000000005Z")
    assert rev1.is_file()
    assert rev1.stat().st_size == 0
    assert rev1.stat().st_mtime_ns == T0 - 2 * 10**9
    assert rev2.stat().st_mtime_ns == T0 - 10**9 + 5
    assert mpk(Path(str(rev1) + ".mpk")) == {
        TYPE: FILE,
        BLOBID: dfs_stable_id("blob-report-1").encode(),
        BLOBSIZE: b"10",
        MTIME: b"2023-11-14T22:13:18Z",
        CS + "md5": bytes.fromhex(MD5),
    }

    # trash: tree/tree.go:484-516 the node is renamed <node>.T.<time>, its
    # metadata gets the origin (:466), a link under trash/ points at it
    stamp = "2023-11-14T22:13:21.25Z"
    trashed = base / (node_rel(OLD) + ".T." + stamp)
    assert trashed.is_dir()
    assert not (base / node_rel(OLD)).exists()
    old_attrs = mpk(Path(str(trashed) + ".mpk"))
    assert old_attrs[TRASH_ORIGIN] == b"/Documents/old"
    assert old_attrs[PARENTID] == DOCS.encode()
    assert old_attrs[TREESIZE] == b"42"
    assert (
        os.readlink(trashed / "notes.md")
        == "../../../../../55/55/55/55/-aaaa-4bbb-8ccc-000000000005"
    )
    assert mpk(base / (node_rel(OLD_CHILD) + ".mpk"))[PARENTID] == OLD.encode()
    link = base / "trash" / node_rel(OLD).removeprefix("nodes/")
    target = os.readlink(link)
    assert (
        target
        == "../../../../../nodes/"
        + node_rel(OLD).removeprefix("nodes/")
        + ".T."
        + stamp
    )
    # recycle.go:216-233 readTrashLink: fixed offsets into the slash-free target
    flat = target.replace("/", "")
    assert flat[0:15] == "..........nodes"
    assert flat[15:51] == OLD
    assert flat[51:54] == ".T."
    assert flat[54:] == stamp
    assert link.resolve() == trashed.resolve()

    # indexes: decomposedfs.go:214-225, spaceidindex/spaceidindex.go:44,92,118
    # (map[string]string), tree/tree.go:856-858 the entry
    entry = "../../../" + SPACE_DIR + "/nodes/4c/51/0a/da/-c86b-4815-8820-42cdf82c3d51"
    for rel in ("indexes/by-type/personal.mpk", f"indexes/by-user-id/{SPACE}.mpk"):
        index = msgpack.unpackb((tmp_path / rel).read_bytes(), raw=False)
        assert index == {SPACE: entry}
    # tree/tree.go:868-876 ReadSpaceAndNodeFromIndexLink: 12 parts
    parts = entry.split("/")
    assert len(parts) == 12
    assert parts[3] == "spaces"
    assert parts[6] == "nodes"
    assert "".join(parts[4:6]) == SPACE
    assert "".join(parts[7:12]) == SPACE

    # nothing but the metadata was written: no blobs
    assert not (base / "blobs").exists()
    assert not [p for p in tmp_path.rglob("*") if ".carmigrate-tmp-" in p.name]


def test_blob_keys() -> None:
    blob = "e5c3b0e4-1f4c-4d3e-9a53-0b2f7a1c9d11"
    # pkg/storage/fs/ocis/blobstore/blobstore.go:193-200
    assert dfs_blob_key(SPACE, blob) == (
        SPACE_DIR + "/blobs/e5/c3/b0/e4/-1f4c-4d3e-9a53-0b2f7a1c9d11"
    )
    # pkg/storage/fs/s3ng/blobstore/blobstore.go:169-178
    assert (
        s3ng_blob_key(SPACE, blob)
        == SPACE + "/e5/c3/b0/e4/-1f4c-4d3e-9a53-0b2f7a1c9d11"
    )
    with pytest.raises(PlanError, match="blob id"):
        dfs_blob_key(SPACE, "short")
    with pytest.raises(PlanError, match="space id"):
        s3ng_blob_key("abc", blob)


def test_stable_id_is_a_uuid() -> None:
    first = dfs_stable_id("oc6tx1ep9uvh:42")
    assert first == dfs_stable_id("oc6tx1ep9uvh:42")
    assert first != dfs_stable_id("oc6tx1ep9uvh:43")
    assert str(uuid.UUID(first)) == first
    assert len(first) == 36


# --------------------------------------------------------------------------
# reading back


def test_read_back_is_what_was_written(tmp_path: Path) -> None:
    nodes, trash = tree_a()
    write_decomposedfs_space(tmp_path, space(), nodes, trash, fsync=False)
    views = read_decomposedfs_space(tmp_path, SPACE)
    assert set(views) == {SPACE, DOCS, ARCHIVE, REPORT, EMPTY}
    assert views[SPACE] == DfsView(
        node_id=SPACE,
        path="",
        is_dir=True,
        size=1000,
        mtime_ns=T0 + 999,
        etag=calculate_etag(SPACE, T0 + 999),
        checksums={},
        blob_id=None,
    )
    assert views[REPORT] == DfsView(
        node_id=REPORT,
        path="Documents/report.txt",
        is_dir=False,
        size=1000,
        mtime_ns=T0 + 123_456_700,
        etag=calculate_etag(REPORT, T0 + 123_456_700),
        checksums={"adler32": ADLER, "md5": MD5, "sha1": SHA1},
        blob_id=dfs_stable_id("blob-report-3"),
        revisions=(
            DfsRevision(
                mtime_ns=T0 - 2 * 10**9,
                blob_id=dfs_stable_id("blob-report-1"),
                size=10,
                checksums={"md5": MD5},
            ),
            DfsRevision(
                mtime_ns=T0 - 10**9 + 5,
                blob_id=dfs_stable_id("blob-report-2"),
                size=20,
            ),
        ),
    )
    assert views[ARCHIVE].path == "Documents/Archive"
    assert views[ARCHIVE].size == 0
    assert views[DOCS].size == 1000
    assert views[EMPTY].blob_id is None
    assert views[EMPTY].size == 0

    bin_ = read_decomposedfs_trash(tmp_path, SPACE)
    assert set(bin_) == {OLD, OLD_CHILD}
    assert bin_[OLD].key == OLD
    assert bin_[OLD].path == "/Documents/old"
    assert bin_[OLD].is_dir
    assert bin_[OLD].size == 42
    assert bin_[OLD].deleted_ns == T0 + 10**9 + 250_000_000
    assert bin_[OLD_CHILD].key == f"{OLD}/notes.md"
    assert bin_[OLD_CHILD].path == "/Documents/old/notes.md"
    assert bin_[OLD_CHILD].blob_id == dfs_stable_id("blob-notes")


def test_reader_refuses_an_inconsistent_tree(tmp_path: Path) -> None:
    nodes, trash = tree_a()
    write_decomposedfs_space(tmp_path, space(), nodes, trash, fsync=False)
    docs_dir = tmp_path / SPACE_DIR / node_rel(DOCS)
    os.rename(docs_dir / "report.txt", docs_dir / "renamed-by-hand.txt")
    with pytest.raises(
        FormatError, match=r"named 'report.txt', linked as 'renamed-by-hand.txt'"
    ):
        read_decomposedfs_space(tmp_path, SPACE)
    os.rename(docs_dir / "renamed-by-hand.txt", docs_dir / "report.txt")
    (tmp_path / SPACE_DIR / (node_rel(REPORT) + ".mpk")).unlink()
    with pytest.raises(FormatError, match="metadata file is missing"):
        read_decomposedfs_space(tmp_path, SPACE)
    with pytest.raises(FormatError, match="space root"):
        read_decomposedfs_space(tmp_path, "ffffffff-0000-0000-0000-000000000000")


# --------------------------------------------------------------------------
# times and etags


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, b"1970-01-01T00:00:00Z"),
        (1, b"1970-01-01T00:00:00.000000001Z"),
        (1_500, b"1970-01-01T00:00:00.0000015Z"),
        (T0, b"2023-11-14T22:13:20Z"),
        (T0 + 120_000_000, b"2023-11-14T22:13:20.12Z"),
        (-1, b"1969-12-31T23:59:59.999999999Z"),
    ],
)
def test_times_are_go_rfc3339nano(tmp_path: Path, ns: int, text: bytes) -> None:
    node = DfsNode(
        node_id=REPORT, parent_id=SPACE, name="f", is_dir=False, size=0, mtime_ns=ns
    )
    write_decomposedfs_space(tmp_path, space(), [node], fsync=False)
    assert mpk(tmp_path / SPACE_DIR / (node_rel(REPORT) + ".mpk"))[MTIME] == text
    view = read_decomposedfs_space(tmp_path, SPACE)[REPORT]
    assert view.mtime_ns == ns
    assert view.etag == calculate_etag(REPORT, ns)


def test_computed_etag_matches_go_encoding() -> None:
    # the 15 bytes of MarshalBinary for 2023-11-14T22:13:20.000000999Z
    assert go_time_binary(T0 + 999) == bytes.fromhex("010000000edce5e800000003e7ffff")
    assert dfs_computed_etag(SPACE, T0 + 999) == calculate_etag(SPACE, T0 + 999)
    assert dfs_computed_etag(SPACE, 0) == calculate_etag(SPACE, 0)


def test_etags_kept_where_ocis_can_serve_them(tmp_path: Path) -> None:
    owncloud_style = "655a1b2c3d4e5"  # uniqid(): 13 hex digits, odd
    nodes = [
        DfsNode(
            node_id=DOCS,
            parent_id=SPACE,
            name="kept",
            is_dir=True,
            size=0,
            mtime_ns=T0,
            etag='"6e3f9a10c2"',
        ),
        DfsNode(
            node_id=ARCHIVE,
            parent_id=SPACE,
            name="odd",
            is_dir=True,
            size=0,
            mtime_ns=T0,
            etag=owncloud_style,
        ),
        DfsNode(
            node_id=REPORT,
            parent_id=SPACE,
            name="file",
            is_dir=False,
            size=0,
            mtime_ns=T0,
            etag="6e3f9a10c2",
        ),
        DfsNode(
            node_id=EMPTY,
            parent_id=SPACE,
            name="same",
            is_dir=False,
            size=0,
            mtime_ns=T0,
            etag=calculate_etag(EMPTY, T0),
        ),
    ]
    result = write_decomposedfs_space(
        tmp_path, space(etag="0123456789abcdef"), nodes, fsync=False
    )
    assert result.etags_not_kept == tuple(sorted([ARCHIVE, REPORT]))
    views = read_decomposedfs_space(tmp_path, SPACE)
    assert views[SPACE].etag == '"0123456789abcdef"'
    assert views[DOCS].etag == '"6e3f9a10c2"'
    assert views[ARCHIVE].etag == calculate_etag(ARCHIVE, T0)
    assert views[REPORT].etag == calculate_etag(REPORT, T0)
    assert views[EMPTY].etag == calculate_etag(EMPTY, T0)
    base = tmp_path / SPACE_DIR
    for node_id in (REPORT, EMPTY, ARCHIVE):
        assert TMP_ETAG not in mpk(base / (node_rel(node_id) + ".mpk"))


# --------------------------------------------------------------------------
# delta passes and kill safety


def test_delta_pass_leaves_exactly_the_new_tree(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    delta = tmp_path / "delta"
    a_nodes, a_trash = tree_a()
    b_nodes, b_trash = tree_b()
    write_decomposedfs_space(delta, space(), a_nodes, a_trash, fsync=False)
    result = write_decomposedfs_space(delta, space(), b_nodes, b_trash, fsync=False)
    write_decomposedfs_space(fresh, space(), b_nodes, b_trash, fsync=False)
    assert snapshot(delta) == snapshot(fresh)
    assert result.trash == 0
    assert SPACE_DIR + "/trash" in result.removed
    # a removed folder is listed, not what was in it
    assert SPACE_DIR + "/nodes/77" in result.removed

    views = read_decomposedfs_space(delta, SPACE)
    assert {v.path for v in views.values()} == {
        "",
        "Docs",
        "report-v4.txt",
        "Docs/new.bin",
    }
    assert views[REPORT].blob_id == dfs_stable_id("blob-report-4")
    assert views[REPORT].etag == calculate_etag(REPORT, T0 + 5 * 10**9)
    assert [r.blob_id for r in views[REPORT].revisions] == [
        dfs_stable_id("blob-report-3")
    ]
    assert views[SPACE].size == 2007
    assert read_decomposedfs_trash(delta, SPACE) == {}
    # a third identical pass changes nothing
    again = write_decomposedfs_space(delta, space(), b_nodes, b_trash, fsync=False)
    assert again.written == ()
    assert again.removed == ()


def test_stale_entries_from_ocis_are_removed(tmp_path: Path) -> None:
    nodes, trash = tree_a()
    write_decomposedfs_space(tmp_path, space(), nodes, trash, fsync=False)
    reference = snapshot(tmp_path)
    root_dir = tmp_path / ROOT_NODE
    os.symlink("../../../../../ab/cd/ef/gh/stray", root_dir / "uploaded-in-ocis")
    (tmp_path / (ROOT_NODE + ".mlock")).write_bytes(b"")
    (root_dir.parent / ".mpk.carmigrate-tmp-deadbeef").write_bytes(b"half")
    stray = tmp_path / SPACE_DIR / "nodes/ab/cd/ef/gh"
    stray.mkdir(parents=True)
    (stray / "stray").write_bytes(b"")
    blobs = tmp_path / SPACE_DIR / "blobs/ab/cd/ef/gh"
    blobs.mkdir(parents=True)
    (blobs / "blob").write_bytes(b"content")
    result = write_decomposedfs_space(tmp_path, space(), nodes, trash, fsync=False)
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if "/blobs" not in k} == reference
    assert (blobs / "blob").read_bytes() == b"content"  # blobs are not touched
    assert SPACE_DIR + "/nodes/ab" in result.removed
    assert ROOT_NODE + "/uploaded-in-ocis" in result.removed


def test_kill_at_any_replace_then_rerun_gives_the_exact_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_nodes, a_trash = tree_a()
    b_nodes, b_trash = tree_b()
    reference = tmp_path / "reference"
    write_decomposedfs_space(reference, space(), a_nodes, a_trash, fsync=False)
    write_decomposedfs_space(reference, space(), b_nodes, b_trash, fsync=False)
    expected = snapshot(reference)

    real_replace = os.replace
    calls = 0
    fail_at = 0

    def dying_replace(src: object, dst: object) -> None:
        nonlocal calls
        calls += 1
        if calls == fail_at:
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", dying_replace)
    # count the replaces of both passes, then kill each one in turn
    write_decomposedfs_space(tmp_path / "count", space(), a_nodes, a_trash, fsync=False)
    write_decomposedfs_space(tmp_path / "count", space(), b_nodes, b_trash, fsync=False)
    total = calls
    assert total > 30

    def a_then_b(target: Path) -> None:
        write_decomposedfs_space(target, space(), a_nodes, a_trash, fsync=False)
        write_decomposedfs_space(target, space(), b_nodes, b_trash, fsync=False)

    for fail_at in range(1, total + 1):
        calls = 0
        target = tmp_path / f"killed-{fail_at}"
        with pytest.raises(KeyboardInterrupt):
            a_then_b(target)
        assert not [p for p in target.rglob("*") if ".carmigrate-tmp-" in p.name]
        calls = -(10**9)  # no more kills
        write_decomposedfs_space(target, space(), b_nodes, b_trash, fsync=False)
        assert snapshot(target) == expected, f"killed at replace {fail_at}"
        views = read_decomposedfs_space(target, SPACE)
        assert {v.path for v in views.values()} == {
            "",
            "Docs",
            "report-v4.txt",
            "Docs/new.bin",
        }


def test_space_type_change_moves_the_index_entry(tmp_path: Path) -> None:
    other = "99999999-0000-4000-8000-000000000099"
    write_decomposedfs_space(tmp_path, space(space_id=other), [], fsync=False)
    write_decomposedfs_space(tmp_path, space(), [], fsync=False)
    write_decomposedfs_space(tmp_path, space(space_type="project"), [], fsync=False)
    by_type = tmp_path / "indexes/by-type"
    personal = msgpack.unpackb((by_type / "personal.mpk").read_bytes(), raw=False)
    project = msgpack.unpackb((by_type / "project.mpk").read_bytes(), raw=False)
    assert set(personal) == {other}  # the other space's entry is kept
    assert set(project) == {SPACE}
    owner = msgpack.unpackb(
        (tmp_path / f"indexes/by-user-id/{SPACE}.mpk").read_bytes(), raw=False
    )
    assert set(owner) == {SPACE, other}


# --------------------------------------------------------------------------
# bad input


def _file(node_id: str = REPORT, **changes: object) -> DfsNode:
    fields: dict[str, object] = {
        "node_id": node_id,
        "parent_id": SPACE,
        "name": "f.txt",
        "is_dir": False,
        "size": 3,
        "mtime_ns": T0,
        "blob_id": dfs_stable_id(f"blob-{node_id}"),
    }
    fields.update(changes)
    return DfsNode(**fields)  # type: ignore[arg-type]


def _dir(node_id: str = DOCS, **changes: object) -> DfsNode:
    fields: dict[str, object] = {
        "node_id": node_id,
        "parent_id": SPACE,
        "name": "d",
        "is_dir": True,
        "size": 0,
        "mtime_ns": T0,
    }
    fields.update(changes)
    return DfsNode(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([_file(node_id="00000042oc6tx1ep9uvh")], "exactly 36 characters"),
        ([_file(node_id="11111111.aaaa-4bbb-8ccc-000000000001")], "exactly 36"),
        ([_file(parent_id=DOCS)], f"parent {DOCS} is missing"),
        ([_file(name="a/b")], "contains '/'"),
        ([_file(name="..")], "is '.' or '..'"),
        ([_file(name="")], "is empty"),
        ([_file(name="x" * 256)], "longer than 255 bytes"),
        ([_file(), _file(NEWFILE)], "two entries named 'f.txt' in folder"),
        (
            [_file(), _file(name="g", blob_id=dfs_stable_id("other"))],
            f"node id {REPORT}",
        ),
        (
            [_dir(), _file(parent_id=DOCS), _file(NEWFILE, parent_id=REPORT)],
            "is a file",
        ),
        ([_dir(parent_id=ARCHIVE), _dir(ARCHIVE, parent_id=DOCS)], "parent cycle"),
        ([_file(blob_id=None)], "3 bytes but no blob id"),
        ([_file(blob_id="abc")], "blob id 'abc'"),
        (
            [
                _file(),
                _file(NEWFILE, name="g", blob_id=dfs_stable_id(f"blob-{REPORT}")),
            ],
            "already used",
        ),
        ([_file(checksums={"sha256": "00"})], "not one oCIS reads"),
        ([_file(checksums={"sha1": "zz"})], "is not hex"),
        ([_file(checksums={"md5": "00" * 4})], "is 4 bytes, not 16"),
        ([_dir(blob_id="x" * 20)], "a folder has no blob id"),
        ([_file(size=-1)], "negative size"),
        (
            [
                _file(
                    revisions=(
                        DfsRevision(mtime_ns=T0, blob_id=None, size=0),
                        DfsRevision(mtime_ns=T0, blob_id=None, size=0),
                    )
                )
            ],
            "two revisions with the time",
        ),
        ([_file(node_id=SPACE)], "exactly 36 characters|also used"),
    ],
)
def test_bad_input_is_a_plan_error(
    tmp_path: Path, nodes: list[DfsNode], message: str
) -> None:
    with pytest.raises(PlanError, match=message):
        write_decomposedfs_space(tmp_path, space(), nodes, fsync=False)
    assert not (tmp_path / "spaces").exists()  # nothing is written


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            DfsTrashItem(node=_dir(OLD), deleted_ns=T0, origin="/x/other"),
            "does not end in",
        ),
        (DfsTrashItem(node=_dir(OLD), deleted_ns=T0, origin="/"), "empty origin"),
        (
            DfsTrashItem(
                node=_dir(OLD),
                deleted_ns=T0,
                origin="/d",
                descendants=(_file(OLD_CHILD, parent_id=DOCS),),
            ),
            f"parent {DOCS} is missing",
        ),
        (
            DfsTrashItem(
                node=_file(OLD, name="d"),
                deleted_ns=T0,
                origin="/d",
                descendants=(_file(OLD_CHILD, parent_id=OLD),),
            ),
            "is a file",
        ),
        (
            DfsTrashItem(
                node=_dir(OLD),
                deleted_ns=T0,
                origin="/d",
                descendants=(_file(OLD_CHILD, name="e"),),
            ),
            "descendants must hang below",
        ),
        (DfsTrashItem(node=_dir(DOCS), deleted_ns=T0, origin="/d"), "also used"),
    ],
)
def test_bad_trash_is_a_plan_error(
    tmp_path: Path, item: DfsTrashItem, message: str
) -> None:
    with pytest.raises(PlanError, match=message):
        write_decomposedfs_space(tmp_path, space(), [_dir()], [item], fsync=False)


def test_bad_space_is_a_plan_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="space id 'short'"):
        write_decomposedfs_space(tmp_path, space(space_id="short"), [], fsync=False)
    with pytest.raises(PlanError, match="cannot name an index file"):
        write_decomposedfs_space(tmp_path, space(owner_id="a/b"), [], fsync=False)


# --------------------------------------------------------------------------
# random trees: write one, then another over it; the reader sees the second


POOL = [str(uuid.UUID(int=(i + 1) * 0x1000000000000000000000001)) for i in range(10)]
NAMES = ["a", "b", "Ä ö", "x.txt", "dir", "with space"]


@st.composite
def trees(draw: st.DrawFn, generation: int) -> list[DfsNode]:
    ids = draw(st.permutations(POOL))[: draw(st.integers(0, len(POOL)))]
    folders = [SPACE]
    used: dict[str, set[str]] = {}
    nodes: list[DfsNode] = []
    for index, node_id in enumerate(ids):
        parent = draw(st.sampled_from(folders))
        name = draw(st.sampled_from(NAMES))
        taken = used.setdefault(parent, set())
        if name in taken:
            name = f"{name}-{index}"
        taken.add(name)
        mtime = draw(st.integers(0, 4 * 10**18))
        if draw(st.booleans()):
            folders.append(node_id)
            nodes.append(
                DfsNode(
                    node_id=node_id,
                    parent_id=parent,
                    name=name,
                    is_dir=True,
                    size=0,
                    mtime_ns=mtime,
                )
            )
            continue
        size = draw(st.integers(0, 10**12))
        revisions = tuple(
            DfsRevision(
                mtime_ns=rev_mtime,
                blob_id=dfs_stable_id(f"{generation}-{node_id}-{rev_mtime}"),
                size=1,
            )
            for rev_mtime in draw(st.sets(st.integers(0, 10**18), max_size=2))
        )
        nodes.append(
            DfsNode(
                node_id=node_id,
                parent_id=parent,
                name=name,
                is_dir=False,
                size=size,
                mtime_ns=mtime,
                blob_id=dfs_stable_id(f"{generation}-{node_id}") if size else None,
                checksums={"md5": draw(st.binary(min_size=16, max_size=16)).hex()},
                revisions=revisions,
            )
        )
    return nodes


def expected_views(the_space: DfsSpace, nodes: list[DfsNode]) -> dict[str, DfsView]:
    by_id = {n.node_id: n for n in nodes}

    def path(node: DfsNode) -> str:
        parts = [node.name]
        while node.parent_id != SPACE:
            node = by_id[node.parent_id]
            parts.append(node.name)
        return "/".join(reversed(parts))

    def size(node_id: str) -> int:
        node = by_id.get(node_id)
        if node is not None and not node.is_dir:
            return node.size
        return sum(size(n.node_id) for n in nodes if n.parent_id == node_id)

    out = {
        SPACE: DfsView(
            node_id=SPACE,
            path="",
            is_dir=True,
            size=size(SPACE),
            mtime_ns=the_space.mtime_ns,
            etag=calculate_etag(SPACE, the_space.mtime_ns),
            checksums={},
            blob_id=None,
        )
    }
    for node in nodes:
        out[node.node_id] = DfsView(
            node_id=node.node_id,
            path=path(node),
            is_dir=node.is_dir,
            size=size(node.node_id),
            mtime_ns=node.mtime_ns,
            etag=calculate_etag(node.node_id, node.mtime_ns),
            checksums=dict(node.checksums),
            blob_id=node.blob_id,
            revisions=tuple(sorted(node.revisions, key=lambda r: r.mtime_ns)),
        )
    return out


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(first=trees(1), second=trees(2))
def test_any_tree_over_any_tree_reads_as_the_second(
    first: list[DfsNode], second: list[DfsNode]
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "delta"
        write_decomposedfs_space(root, space(), first, fsync=False)
        write_decomposedfs_space(root, space(), second, fsync=False)
        assert read_decomposedfs_space(root, SPACE) == expected_views(space(), second)
        fresh = Path(scratch) / "fresh"
        write_decomposedfs_space(fresh, space(), second, fsync=False)
        assert snapshot(root) == snapshot(fresh)
