"""oCIS decomposedfs: write and read the metadata tree of one storage space.

oCIS keeps the files of its ``ocis`` and ``s3ng`` storage drivers in reva's
*decomposedfs*: a tree of node entries, child links and messagepack metadata
files under the storage root, with the file contents in a separate blob
store. [write_decomposedfs_space][carmigrate.recipes.write_decomposedfs_space]
writes that tree for one space from plain data
([DfsSpace][carmigrate.recipes.DfsSpace],
[DfsNode][carmigrate.recipes.DfsNode],
[DfsTrashItem][carmigrate.recipes.DfsTrashItem]); the blobs are copied by
the caller to [dfs_blob_key][carmigrate.recipes.dfs_blob_key] (``ocis``)
or [s3ng_blob_key][carmigrate.recipes.s3ng_blob_key] (``s3ng``).
[read_decomposedfs_space][carmigrate.recipes.read_decomposedfs_space]
walks a tree the way the driver does and says what oCIS would serve.

The layout, as reva (owncloud/reva, ``pkg/storage/utils/decomposedfs``)
reads it; ``P(x, d)`` cuts the first ``d`` pairs of characters of ``x`` off
as folders (``P("4c510ada-c86b", 4)`` is ``4c/51/0a/da/-c86b``)::

    <root>/spaces/<P(space, 1)>/nodes/<P(space, 4)>          space root (a folder)
    <root>/spaces/<P(space, 1)>/nodes/<P(node, 4)>           a folder, or an empty file
    <root>/spaces/<P(space, 1)>/nodes/<P(node, 4)>.mpk       its metadata
    <folder node>/<name> -> ../../../../../<P(child, 4)>     a child link
    <file node>.REV.<time>  (+ .mpk)                         a revision
    <node>.T.<time>         (+ .mpk, with the origin)        a trashed node
    <root>/spaces/<P(space, 1)>/trash/<P(node, 4)>
        -> ../../../../../nodes/<P(node, 4)>.T.<time>        its trash entry
    <root>/spaces/<P(space, 1)>/blobs/<P(blob, 4)>           a blob (ocis driver)
    <root>/indexes/by-type/<type>.mpk, by-user-id/<owner>.mpk  space indexes

Times are Go's RFC 3339 with nanoseconds, in UTC. Only the messagepack
metadata backend (oCIS's default, ``.mpk`` files) is written; the xattrs
backend is not. Writing needs the optional ``msgpack`` package.

The writer owns ``nodes/`` and ``trash/`` of the space it writes: after a
call they hold exactly what the call describes, whatever was there before
(a previous pass, a pass killed halfway, or changes made through oCIS
since). Run it while oCIS's storage-users service is stopped, and clear
oCIS's file metadata and id caches after a pass over a tree oCIS has
already served (they cache attributes and child links by path).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import re
import shutil
import struct
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.errors import FormatError, PlanError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

__all__ = [
    "DfsNode",
    "DfsRevision",
    "DfsSpace",
    "DfsTrashItem",
    "DfsTrashView",
    "DfsView",
    "DfsWriteResult",
    "dfs_blob_key",
    "dfs_computed_etag",
    "dfs_stable_id",
    "read_decomposedfs_space",
    "read_decomposedfs_trash",
    "s3ng_blob_key",
    "write_decomposedfs_space",
]

# Attribute names (reva metadata/prefixes/prefixes.go; the prefix is
# "user.ocis." on Linux, ocis_prefix.go).
_P: Final = "user.ocis."
_A_TYPE: Final = _P + "type"
_A_ID: Final = _P + "id"
_A_PARENTID: Final = _P + "parentid"
_A_OWNER_ID: Final = _P + "owner.id"
_A_OWNER_IDP: Final = _P + "owner.idp"
_A_OWNER_TYPE: Final = _P + "owner.type"
_A_NAME: Final = _P + "name"
_A_BLOBID: Final = _P + "blobid"
_A_BLOBSIZE: Final = _P + "blobsize"
_A_TMP_ETAG: Final = _P + "tmp.etag"
_A_CS: Final = _P + "cs."
_A_TRASH_ORIGIN: Final = _P + "trash.origin"
_A_PROPAGATION: Final = _P + "propagation"
_A_MTIME: Final = _P + "mtime"
_A_TMTIME: Final = _P + "tmtime"
_A_TREESIZE: Final = _P + "treesize"
_A_SPACE_ID: Final = _P + "space.id"
_A_SPACE_NAME: Final = _P + "space.name"
_A_SPACE_TYPE: Final = _P + "space.type"
_A_SPACE_ALIAS: Final = _P + "space.alias"

# CS3 ResourceType values, stored as decimal text.
_TYPE_FILE: Final = b"1"
_TYPE_CONTAINER: Final = b"2"

_TRASH_DELIM: Final = ".T."
_REV_DELIM: Final = ".REV."
_UP5: Final = "../../../../../"

# Checksums reva reads (node.go AsResourceInfo) and their digest sizes.
_CHECKSUM_SIZES: Final[Mapping[str, int]] = {"adler32": 4, "md5": 16, "sha1": 20}

# Go's time.Time.MarshalBinary counts seconds from 0001-01-01 UTC.
_GO_UNIX_TO_INTERNAL: Final = 62135596800

# Node ids: exactly 36 characters, because the trash listing (recycle.go
# readTrashLink) slices the id out of a trash link at a fixed width, and no
# ".", "/", "$" or "!" (the id is split on "." by the trash and revision
# code, and on "$" and "!" in CS3 resource ids).
_NODE_ID: Final = re.compile(r"[A-Za-z0-9_-]{36}")
# Space ids (the owner's user id for a personal space): more than 8
# characters so that P(space, 4) has its four folders.
_SPACE_ID: Final = re.compile(r"[A-Za-z0-9_@=+-][A-Za-z0-9_@=+.-]{8,199}")
_BLOB_ID: Final = re.compile(r"[A-Za-z0-9_-]{9,200}")
_INDEX_NAME: Final = re.compile(r"[A-Za-z0-9_@=+-][A-Za-z0-9_@=+.-]{0,199}")
_KEEPABLE_ETAG: Final = re.compile(r"(?:[0-9a-f]{2})+")
_RFC3339: Final = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)"
)
_TMP_MARK: Final = ".carmigrate-tmp-"
_STABLE_ID_NAMESPACE: Final = uuid.uuid5(
    uuid.NAMESPACE_URL, "carmigrate:ocis-decomposedfs"
)


def _empty_checksums() -> Mapping[str, str]:
    return {}


@attrs.frozen(kw_only=True)
class DfsRevision:
    """One earlier version of a file, kept as an oCIS revision.

    Attributes:
        mtime_ns: The version's modification time, Unix nanoseconds. It
            names the revision (``<node>.REV.<time>``) and must be unique
            among the file's revisions.
        blob_id: The version's blob id (see
            [dfs_blob_key][carmigrate.recipes.dfs_blob_key]); ``None`` only
            for an empty version.
        size: The version's size in bytes.
        checksums: Lowercase or uppercase hex digests by algorithm
            (``"sha1"``, ``"md5"``, ``"adler32"``); any subset.
    """

    mtime_ns: int
    blob_id: str | None
    size: int
    checksums: Mapping[str, str] = attrs.field(factory=_empty_checksums)


@attrs.frozen(kw_only=True)
class DfsSpace:
    """The storage space the nodes live in, and its root folder.

    Attributes:
        space_id: The space id, which is also the root node's id. For a
            personal space oCIS uses the owner's user id.
        owner_id: The owner's user id (opaque id).
        owner_idp: The owner's identity provider (issuer URL).
        name: The space's name (for a personal space, the owner's display
            name).
        mtime_ns: The root's modification and tree modification time, Unix
            nanoseconds.
        etag: An etag to serve for the root, if it can be kept (see
            [write_decomposedfs_space][carmigrate.recipes.write_decomposedfs_space]);
            ``None`` lets oCIS compute it.
        space_type: ``"personal"`` or ``"project"``; names the by-type index.
        alias: The space alias oCIS shows in URLs (``personal/<username>``
            for a personal space), or ``None`` to write none.
        owner_type: The owner's CS3 user type as oCIS spells it
            (``"primary"`` for an ordinary account).
    """

    space_id: str
    owner_id: str
    owner_idp: str
    name: str
    mtime_ns: int
    etag: str | None
    space_type: str = "personal"
    alias: str | None = None
    owner_type: str = "primary"


@attrs.frozen(kw_only=True)
class DfsNode:
    """A file or folder of the space.

    Attributes:
        node_id: The node id: 36 characters from ``[A-Za-z0-9_-]`` (a UUID
            string; [dfs_stable_id][carmigrate.recipes.dfs_stable_id] makes
            one from a stable key). Unique in the space.
        parent_id: The parent folder's node id; the space id for an entry
            at the top of the space.
        name: The entry's name in its folder: no ``/``, not ``.`` or
            ``..``, at most 255 bytes of UTF-8.
        is_dir: Whether the node is a folder.
        size: A file's size in bytes. Ignored for a folder: its tree size is
            the sum of the file sizes below it.
        mtime_ns: Modification time, Unix nanoseconds. For a folder it is
            also its tree modification time, which oCIS serves as the
            folder's mtime and hashes into its computed etag.
        etag: An etag to keep, or ``None`` to let oCIS compute one.
        blob_id: A file's blob id; ``None`` only for an empty file, and
            always ``None`` for a folder.
        checksums: A file's hex digests by algorithm (``"sha1"``, ``"md5"``,
            ``"adler32"``); any subset. Empty for a folder.
        revisions: A file's earlier versions. Empty for a folder.
    """

    node_id: str
    parent_id: str
    name: str
    is_dir: bool
    size: int
    mtime_ns: int
    etag: str | None = None
    blob_id: str | None = None
    checksums: Mapping[str, str] = attrs.field(factory=_empty_checksums)
    revisions: tuple[DfsRevision, ...] = ()


@attrs.frozen(kw_only=True)
class DfsTrashItem:
    """A node in the space's trash bin, with what was below it.

    Attributes:
        node: The deleted node. Its ``parent_id`` is the folder it was
            deleted from (written, not checked: it may be gone).
        deleted_ns: When it was deleted, Unix nanoseconds.
        origin: Its path before deletion, relative to the space root
            (``"/Documents/old"``; a leading ``/`` is added if missing). The
            last segment must be the node's name.
        descendants: For a deleted folder, the nodes that were below it:
            ordinary nodes whose parent chain ends at ``node``.
    """

    node: DfsNode
    deleted_ns: int
    origin: str
    descendants: tuple[DfsNode, ...] = ()


@attrs.frozen(kw_only=True)
class DfsView:
    """A live node as oCIS would serve it, read from disk.

    Attributes:
        node_id: The node id (the space id for the root).
        path: The path relative to the space root, ``/``-joined; ``""`` for
            the root.
        is_dir: Whether it is a folder.
        size: A file's blob size, or a folder's tree size.
        mtime_ns: The served mtime: the tree modification time if set, else
            the modification time.
        etag: The served etag, with its double quotes.
        checksums: Hex digests by algorithm.
        blob_id: A file's blob id; ``None`` for a folder or an empty file
            without a blob.
        revisions: A file's revisions, oldest first.
    """

    node_id: str
    path: str
    is_dir: bool
    size: int
    mtime_ns: int
    etag: str
    checksums: Mapping[str, str]
    blob_id: str | None
    revisions: tuple[DfsRevision, ...] = ()


@attrs.frozen(kw_only=True)
class DfsTrashView:
    """A node in the trash bin as oCIS would list it, read from disk.

    Attributes:
        node_id: The node id.
        key: The recycle key oCIS lists: the trashed item's node id, then
            the path below it for a descendant (``<id>/sub/file``).
        path: The original path relative to the space root (``/a/b``).
        is_dir: Whether it is a folder.
        size: A file's blob size, or a folder's tree size.
        deleted_ns: The deletion time of the trashed item, Unix nanoseconds.
        blob_id: A file's blob id, or ``None``.
    """

    node_id: str
    key: str
    path: str
    is_dir: bool
    size: int
    deleted_ns: int
    blob_id: str | None


@attrs.frozen(kw_only=True)
class DfsWriteResult:
    """What [write_decomposedfs_space][carmigrate.recipes.write_decomposedfs_space] did.

    Attributes:
        nodes: Live nodes written, the root not counted.
        links: Child links in the live tree.
        revisions: Revisions written (live and trashed nodes).
        trash: Trash items (trashed nodes, not counting their descendants).
        written: Paths created or replaced by this call, relative to the
            storage root, ``/``-joined, sorted; unchanged entries are not
            listed.
        removed: Paths removed by this call (stale entries), same form; a
            removed folder is listed, not the entries that were in it.
        etags_not_kept: Ids of the nodes (the space id for the root) whose
            given etag oCIS will not serve; it serves a computed one.
    """

    nodes: int
    links: int
    revisions: int
    trash: int
    written: tuple[str, ...]
    removed: tuple[str, ...]
    etags_not_kept: tuple[str, ...]


# --------------------------------------------------------------------------
# public helpers


def dfs_blob_key(space_id: str, blob_id: str) -> str:
    """The key of a blob of the ``ocis`` driver, relative to the storage root.

    The ``ocis`` driver keeps blobs under the storage root itself
    (``spaces/<P(space, 1)>/blobs/<P(blob, 4)>``).

    Args:
        space_id: The space id.
        blob_id: The blob id.

    Returns:
        The ``/``-joined key.

    Raises:
        PlanError: An id is not acceptable.
    """
    _check_space_id(space_id)
    _check_blob_id(blob_id, f"blob of space {space_id}")
    return f"{_space_rel(space_id)}/blobs/{_pathify(blob_id, 4)}"


def s3ng_blob_key(space_id: str, blob_id: str) -> str:
    """The object key of a blob of the ``s3ng`` driver in its bucket.

    Unlike the ``ocis`` driver, ``s3ng`` does not split the space id:
    ``<space>/<P(blob, 4)>``.

    Args:
        space_id: The space id.
        blob_id: The blob id.

    Returns:
        The object key.

    Raises:
        PlanError: An id is not acceptable.
    """
    _check_space_id(space_id)
    _check_blob_id(blob_id, f"blob of space {space_id}")
    return f"{space_id}/{_pathify(blob_id, 4)}"


def dfs_stable_id(key: str) -> str:
    """A node or blob id derived from a stable key (a name-based UUID).

    The same key always gives the same id, so a re-run of a migration gives
    its nodes the same ids. For an ownCloud file, a key such as
    ``"<instanceid>:<fileid>"`` fits; ownCloud's ``oc:id`` itself cannot be
    a node id (it is not 36 characters long).

    Args:
        key: Any string that identifies the node or blob for good.

    Returns:
        A lowercase UUID string (36 characters).
    """
    return str(uuid.uuid5(_STABLE_ID_NAMESPACE, key))


def dfs_computed_etag(node_id: str, mtime_ns: int) -> str:
    """The etag oCIS computes for a node, with its double quotes.

    It is the MD5 of the node id followed by Go's binary encoding of the
    node's (tree) modification time in UTC.

    Args:
        node_id: The node id.
        mtime_ns: The tree modification time (folders) or modification time
            (files), Unix nanoseconds.

    Returns:
        ``'"<32 hex digits>"'``.
    """
    sec, nsec = divmod(mtime_ns, 1_000_000_000)
    encoded = (
        b"\x01"
        + struct.pack(">q", sec + _GO_UNIX_TO_INTERNAL)
        + struct.pack(">i", nsec)
        + b"\xff\xff"
    )
    digest = hashlib.md5(node_id.encode() + encoded, usedforsecurity=False)
    return f'"{digest.hexdigest()}"'


# --------------------------------------------------------------------------
# formats


def _pathify(value: str, depth: int, width: int = 2) -> str:
    parts: list[str] = []
    i = 0
    while i < depth and len(value) > i * width + width:
        parts.append(value[i * width : i * width + width])
        i += 1
    parts.append(value[i * width :])
    return "/".join(parts)


def _space_rel(space_id: str) -> str:
    return f"spaces/{_pathify(space_id, 1)}"


def _go_time(ns: int) -> str:
    """Go's ``time.RFC3339Nano`` of a UTC time: fraction without trailing zeros."""
    sec, nsec = divmod(ns, 1_000_000_000)
    try:
        moment = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC) + _dt.timedelta(seconds=sec)
    except OverflowError as exc:
        raise PlanError(f"time {ns} ns is outside the years 1 to 9999") from exc
    fraction = f"{nsec:09d}".rstrip("0")
    text = f"{moment.year:04d}" + moment.strftime("-%m-%dT%H:%M:%S")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def _parse_go_time(text: str, where: str) -> int:
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise FormatError(f"{where}: {text!r} is not an RFC 3339 time")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = _dt.datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=_dt.UTC,
        )
    except ValueError as exc:
        raise FormatError(f"{where}: {text!r} is not a valid time") from exc
    offset = 0
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    epoch = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
    seconds = (moment - epoch) // _dt.timedelta(seconds=1) - offset
    nanos = int((fraction or "").ljust(9, "0"))
    return seconds * 1_000_000_000 + nanos


def _msgpack() -> Any:
    try:
        import msgpack  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "writing or reading an oCIS decomposedfs tree needs the optional "
            "dependency 'msgpack' (pip install msgpack)"
        ) from exc
    return msgpack


def _pack_attrs(attributes: Mapping[str, bytes]) -> bytes:
    packed = _msgpack().packb(dict(sorted(attributes.items())), use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def _pack_index(entries: Mapping[str, str]) -> bytes:
    packed = _msgpack().packb(dict(sorted(entries.items())), use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def _unpack_map(data: bytes, where: str) -> dict[str, bytes]:
    msgpack = _msgpack()
    if not data:
        raise FormatError(f"{where}: empty metadata file")
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise FormatError(f"{where}: not messagepack: {exc}") from exc
    if not isinstance(value, dict):
        raise FormatError(f"{where}: messagepack is not a map")
    out: dict[str, bytes] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise FormatError(f"{where}: a key is not a string: {key!r}")
        if isinstance(item, bytes):
            out[key] = item
        elif isinstance(item, str):
            out[key] = item.encode()
        else:
            raise FormatError(f"{where}: value of {key} is not bytes or a string")
    return out


# --------------------------------------------------------------------------
# validation


def _check_space_id(space_id: str) -> None:
    if not isinstance(space_id, str) or _SPACE_ID.fullmatch(space_id) is None:
        raise PlanError(
            f"space id {space_id!r} is not acceptable: it needs more than 8 "
            "characters from [A-Za-z0-9_@=+.-], not starting with '.'"
        )


def _check_node_id(node_id: str, where: str) -> None:
    if not isinstance(node_id, str) or _NODE_ID.fullmatch(node_id) is None:
        raise PlanError(
            f"{where}: node id {node_id!r} is not acceptable: oCIS needs exactly "
            "36 characters from [A-Za-z0-9_-] (a UUID string; see dfs_stable_id)"
        )


def _check_blob_id(blob_id: str, where: str) -> None:
    if not isinstance(blob_id, str) or _BLOB_ID.fullmatch(blob_id) is None:
        raise PlanError(
            f"{where}: blob id {blob_id!r} is not acceptable: it needs 9 to 200 "
            "characters from [A-Za-z0-9_-]"
        )


def _check_name(name: str, where: str) -> None:
    problem = None
    if not isinstance(name, str) or not name:
        problem = "is empty"
    elif "/" in name:
        problem = "contains '/'"
    elif "\x00" in name:
        problem = "contains NUL"
    elif name in {".", ".."}:
        problem = "is '.' or '..'"
    else:
        try:
            encoded = name.encode()
        except UnicodeEncodeError:
            problem = "is not valid Unicode"
        else:
            if len(encoded) > 255:
                problem = "is longer than 255 bytes"
            elif _TMP_MARK in name:
                problem = f"contains {_TMP_MARK!r}, reserved for temporary files"
    if problem is not None:
        raise PlanError(f"{where}: name {name!r} {problem}")


def _checksum_bytes(checksums: Mapping[str, str], where: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for algorithm, digest in checksums.items():
        size = _CHECKSUM_SIZES.get(algorithm)
        if size is None:
            raise PlanError(
                f"{where}: checksum algorithm {algorithm!r} is not one oCIS "
                f"reads ({', '.join(sorted(_CHECKSUM_SIZES))})"
            )
        try:
            raw = bytes.fromhex(digest)
        except (ValueError, TypeError) as exc:
            raise PlanError(f"{where}: {algorithm} {digest!r} is not hex") from exc
        if len(raw) != size:
            raise PlanError(
                f"{where}: {algorithm} {digest!r} is {len(raw)} bytes, not {size}"
            )
        out[algorithm] = raw
    return out


def _normalise_etag(etag: str) -> str:
    return etag.strip().strip('"')


# --------------------------------------------------------------------------
# the desired tree


@attrs.frozen
class _Entry:
    kind: str  # "dir", "file", "meta" (bytes) or "link" (target)
    data: bytes = b""
    target: str = ""
    mtime_ns: int | None = None


@attrs.define
class _Plan:
    entries: dict[str, _Entry] = attrs.field(factory=dict)
    nodes: int = 0
    links: int = 0
    revisions: int = 0
    trash: int = 0
    etags_not_kept: list[str] = attrs.field(factory=list)

    def add(self, rel: str, entry: _Entry) -> None:
        if rel in self.entries:  # pragma: no cover - ids are checked unique
            raise PlanError(f"two entries would be written at {rel}")
        self.entries[rel] = entry


def _node_rel(node_id: str) -> str:
    return f"nodes/{_pathify(node_id, 4)}"


def _child_target(node_id: str) -> str:
    return _UP5 + _pathify(node_id, 4)


def _file_attrs(node: DfsNode, where: str) -> dict[str, bytes]:
    out = {
        _A_TYPE: _TYPE_FILE,
        _A_PARENTID: node.parent_id.encode(),
        _A_NAME: node.name.encode(),
        _A_BLOBID: (node.blob_id or "").encode(),
        _A_BLOBSIZE: str(node.size).encode(),
        _A_MTIME: _go_time(node.mtime_ns).encode(),
    }
    for algorithm, raw in _checksum_bytes(node.checksums, where).items():
        out[_A_CS + algorithm] = raw
    return out


def _keep_etag(
    plan: _Plan, node_id: str, etag: str | None, mtime_ns: int, *, is_dir: bool
) -> bytes | None:
    """The tmp.etag value that makes oCIS serve ``etag``, or None."""
    if etag is None:
        return None
    wanted = _normalise_etag(etag)
    if f'"{wanted}"' == dfs_computed_etag(node_id, mtime_ns):
        return None
    if is_dir and _KEEPABLE_ETAG.fullmatch(wanted):
        return bytes.fromhex(wanted)
    plan.etags_not_kept.append(node_id)
    return None


class _Tree:
    """Nodes of one tree (live, or one trashed item) checked and indexed."""

    def __init__(self, root_id: str, nodes: Iterable[DfsNode], where: str) -> None:
        self.root_id = root_id
        self.by_id: dict[str, DfsNode] = {}
        self.children: dict[str, dict[str, DfsNode]] = {}
        for node in nodes:
            self.by_id[node.node_id] = node
        for node in self.by_id.values():
            here = f"{where}: node {node.node_id} ({node.name!r})"
            if node.parent_id != root_id:
                parent = self.by_id.get(node.parent_id)
                if parent is None:
                    raise PlanError(f"{here}: parent {node.parent_id} is missing")
                if not parent.is_dir:
                    raise PlanError(
                        f"{here}: parent {node.parent_id} ({parent.name!r}) is a file"
                    )
            siblings = self.children.setdefault(node.parent_id, {})
            if node.name in siblings:
                raise PlanError(
                    f"{where}: two entries named {node.name!r} in folder "
                    f"{node.parent_id}: {siblings[node.name].node_id} and "
                    f"{node.node_id}"
                )
            siblings[node.name] = node
        # every node must hang below the root (no cycles)
        self.order: list[DfsNode] = []
        queue = [root_id]
        while queue:
            current = queue.pop()
            for child in self.children.get(current, {}).values():
                self.order.append(child)
                queue.append(child.node_id)
        if len(self.order) != len(self.by_id):
            reached = {n.node_id for n in self.order}
            stray = sorted(set(self.by_id) - reached)
            raise PlanError(
                f"{where}: nodes in a parent cycle, not below {root_id}: "
                f"{', '.join(stray[:5])}"
            )

    def tree_sizes(self) -> dict[str, int]:
        sizes: dict[str, int] = {self.root_id: 0}
        for node in self.order:
            sizes[node.node_id] = 0 if node.is_dir else node.size
        for node in reversed(self.order):
            sizes[node.parent_id] += sizes[node.node_id]
        return sizes


def _check_node(node: DfsNode, where: str, blob_ids: dict[str, str]) -> None:
    here = f"{where}: node {node.node_id} ({node.name!r})"
    _check_node_id(node.node_id, where)
    if not isinstance(node.parent_id, str) or not node.parent_id:
        raise PlanError(f"{here}: empty parent id")
    if "/" in node.parent_id:
        raise PlanError(f"{here}: parent id {node.parent_id!r} contains '/'")
    _check_name(node.name, here)
    _go_time(node.mtime_ns)
    if node.is_dir:
        if node.blob_id is not None or node.checksums or node.revisions:
            raise PlanError(f"{here}: a folder has no blob id, checksums or revisions")
        return
    if node.size < 0:
        raise PlanError(f"{here}: negative size {node.size}")
    _check_blob(node.blob_id, node.size, here, blob_ids)
    _checksum_bytes(node.checksums, here)
    seen: set[str] = set()
    for revision in node.revisions:
        rev_here = f"{here}: revision {revision.mtime_ns}"
        key = _go_time(revision.mtime_ns)
        if key in seen:
            raise PlanError(f"{rev_here}: two revisions with the time {key}")
        seen.add(key)
        if revision.size < 0:
            raise PlanError(f"{rev_here}: negative size {revision.size}")
        _check_blob(revision.blob_id, revision.size, rev_here, blob_ids)
        _checksum_bytes(revision.checksums, rev_here)


def _check_blob(
    blob_id: str | None, size: int, where: str, blob_ids: dict[str, str]
) -> None:
    if blob_id is None:
        if size:
            raise PlanError(f"{where}: {size} bytes but no blob id")
        return
    _check_blob_id(blob_id, where)
    if blob_id in blob_ids:
        # oCIS deletes a blob when it purges a node or revision using it
        raise PlanError(
            f"{where}: blob id {blob_id} is already used by {blob_ids[blob_id]}; "
            "every version needs its own blob"
        )
    blob_ids[blob_id] = where


def _plan_node(
    plan: _Plan, node: DfsNode, node_rel: str, tree_size: int, *, origin: str | None
) -> None:
    if node.is_dir:
        attributes: dict[str, bytes] = {
            _A_TYPE: _TYPE_CONTAINER,
            _A_PARENTID: node.parent_id.encode(),
            _A_NAME: node.name.encode(),
            _A_TREESIZE: str(tree_size).encode(),
            _A_PROPAGATION: b"1",
            _A_MTIME: _go_time(node.mtime_ns).encode(),
            _A_TMTIME: _go_time(node.mtime_ns).encode(),
        }
        plan.add(node_rel, _Entry("dir"))
    else:
        attributes = _file_attrs(node, f"node {node.node_id}")
        plan.add(node_rel, _Entry("file"))
    kept = _keep_etag(plan, node.node_id, node.etag, node.mtime_ns, is_dir=node.is_dir)
    if kept is not None:
        attributes[_A_TMP_ETAG] = kept
    if origin is not None:
        attributes[_A_TRASH_ORIGIN] = origin.encode()
    plan.add(node_rel + ".mpk", _Entry("meta", data=_pack_attrs(attributes)))
    # revisions stay beside the node's own (untrashed) path, as in reva
    base = _node_rel(node.node_id)
    for revision in node.revisions:
        rev_rel = base + _REV_DELIM + _go_time(revision.mtime_ns)
        rev_attrs = {
            _A_TYPE: _TYPE_FILE,
            _A_BLOBID: (revision.blob_id or "").encode(),
            _A_BLOBSIZE: str(revision.size).encode(),
            _A_MTIME: _go_time(revision.mtime_ns).encode(),
        }
        for algorithm, raw in _checksum_bytes(revision.checksums, rev_rel).items():
            rev_attrs[_A_CS + algorithm] = raw
        plan.add(rev_rel, _Entry("file", mtime_ns=revision.mtime_ns))
        plan.add(rev_rel + ".mpk", _Entry("meta", data=_pack_attrs(rev_attrs)))
        plan.revisions += 1


def _plan_tree(
    plan: _Plan,
    tree: _Tree,
    rels: dict[str, str],
    *,
    trashed: DfsNode | None = None,
    origin: str | None = None,
) -> dict[str, int]:
    """Plan the entries of a tree; ``rels`` maps the root (or trashed node) to its path."""
    sizes = tree.tree_sizes()
    for node in tree.order:
        if node is trashed:
            _plan_node(
                plan, node, rels[node.node_id], sizes[node.node_id], origin=origin
            )
            continue
        rel = _node_rel(node.node_id)
        rels[node.node_id] = rel
        plan.add(
            f"{rels[node.parent_id]}/{node.name}",
            _Entry("link", target=_child_target(node.node_id)),
        )
        if trashed is None:
            plan.links += 1
        _plan_node(plan, node, rel, sizes[node.node_id], origin=None)
    return sizes


def _normalise_origin(item: DfsTrashItem) -> str:
    where = f"trash item {item.node.node_id}"
    segments = [s for s in item.origin.split("/") if s]
    if not segments:
        raise PlanError(f"{where}: empty origin {item.origin!r}")
    for segment in segments:
        _check_name(segment, f"{where}: origin {item.origin!r}")
    if segments[-1] != item.node.name:
        raise PlanError(
            f"{where}: origin {item.origin!r} does not end in the node's name "
            f"{item.node.name!r}"
        )
    return "/" + "/".join(segments)


def _build_plan(
    space: DfsSpace, nodes: Sequence[DfsNode], trash: Sequence[DfsTrashItem]
) -> _Plan:
    _check_space_id(space.space_id)
    if not space.owner_id or "\x00" in space.owner_id:
        raise PlanError(f"space {space.space_id}: empty owner id")
    if _INDEX_NAME.fullmatch(space.owner_id) is None:
        raise PlanError(
            f"space {space.space_id}: owner id {space.owner_id!r} cannot name an "
            "index file"
        )
    if _INDEX_NAME.fullmatch(space.space_type) is None:
        raise PlanError(
            f"space {space.space_id}: space type {space.space_type!r} cannot name "
            "an index file"
        )
    _go_time(space.mtime_ns)
    plan = _Plan()
    blob_ids: dict[str, str] = {}
    seen_ids: dict[str, str] = {space.space_id: "the space root"}

    def claim(node: DfsNode, where: str) -> None:
        _check_node(node, where, blob_ids)
        if node.node_id in seen_ids:
            raise PlanError(
                f"{where}: node id {node.node_id} ({node.name!r}) is also used by "
                f"{seen_ids[node.node_id]}"
            )
        seen_ids[node.node_id] = f"{where} ({node.name!r})"

    for node in nodes:
        claim(node, "live tree")
    live = _Tree(space.space_id, nodes, "live tree")
    root_rel = _node_rel(space.space_id)
    sizes = _plan_tree(plan, live, {space.space_id: root_rel})
    plan.nodes = len(live.order)

    root_attrs: dict[str, bytes] = {
        _A_TYPE: _TYPE_CONTAINER,
        _A_ID: space.space_id.encode(),
        _A_SPACE_ID: space.space_id.encode(),
        _A_OWNER_ID: space.owner_id.encode(),
        _A_OWNER_IDP: space.owner_idp.encode(),
        _A_OWNER_TYPE: space.owner_type.encode(),
        _A_PROPAGATION: b"1",
        _A_NAME: space.name.encode(),
        _A_SPACE_NAME: space.name.encode(),
        _A_SPACE_TYPE: space.space_type.encode(),
        _A_TREESIZE: str(sizes[space.space_id]).encode(),
        _A_MTIME: _go_time(space.mtime_ns).encode(),
        _A_TMTIME: _go_time(space.mtime_ns).encode(),
    }
    if space.alias is not None:
        root_attrs[_A_SPACE_ALIAS] = space.alias.encode()
    kept = _keep_etag(plan, space.space_id, space.etag, space.mtime_ns, is_dir=True)
    if kept is not None:
        root_attrs[_A_TMP_ETAG] = kept
    plan.add(root_rel, _Entry("dir"))
    plan.add(root_rel + ".mpk", _Entry("meta", data=_pack_attrs(root_attrs)))

    for item in trash:
        where = f"trash item {item.node.node_id}"
        claim(item.node, "trash")
        origin = _normalise_origin(item)
        deleted = _go_time(item.deleted_ns)
        for node in item.descendants:
            claim(node, where)
        # the trashed node hangs below a virtual root: its own parent id
        tree = _Tree(item.node.parent_id, (item.node, *item.descendants), where)
        if len(tree.children.get(item.node.parent_id, {})) != 1:
            raise PlanError(
                f"{where}: a descendant has the trashed node's parent "
                f"{item.node.parent_id} as its parent; descendants must hang below "
                "the trashed node"
            )
        item_rel = _node_rel(item.node.node_id) + _TRASH_DELIM + deleted
        _plan_tree(
            plan,
            tree,
            {item.node.node_id: item_rel},
            trashed=item.node,
            origin=origin,
        )
        plan.add(
            f"trash/{_pathify(item.node.node_id, 4)}",
            _Entry(
                "link",
                target=f"{_UP5}nodes/{_pathify(item.node.node_id, 4)}"
                f"{_TRASH_DELIM}{deleted}",
            ),
        )
        plan.trash += 1
    return plan


# --------------------------------------------------------------------------
# writing


def _tmp_path(path: Path) -> Path:
    # short, whatever the final name's length; unique by its random part
    return path.with_name(f".{_TMP_MARK}{uuid.uuid4().hex}")


def _atomic_bytes(path: Path, data: bytes, *, fsync: bool) -> None:
    tmp = _tmp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _atomic_symlink(path: Path, target: str) -> None:
    tmp = _tmp_path(path)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _prune(
    base: Path, rel: str, plan: _Plan, keep_dirs: set[str], removed: list[str]
) -> None:
    """Remove everything under ``base/rel`` that the plan does not describe."""
    directory = base / rel
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        child_rel = f"{rel}/{entry.name}"
        wanted = plan.entries.get(child_rel)
        path = Path(entry.path)
        if entry.is_symlink():
            ok = wanted is not None and wanted.kind == "link"
        elif entry.is_dir(follow_symlinks=False):
            ok = (wanted is not None and wanted.kind == "dir") or child_rel in keep_dirs
            if ok:
                _prune(base, child_rel, plan, keep_dirs, removed)
        elif entry.is_file(follow_symlinks=False):
            ok = wanted is not None and wanted.kind in {"file", "meta"}
        else:
            ok = False
        if not ok:
            _remove(path)
            removed.append(child_rel)


def _apply(
    base: Path, plan: _Plan, *, fsync: bool, written: list[str], removed: list[str]
) -> None:
    keep_dirs: set[str] = set()
    for rel in plan.entries:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            keep_dirs.add("/".join(parts[:i]))
    for top in ("nodes", "trash"):
        path = base / top
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
            removed.append(top)
        _prune(base, top, plan, keep_dirs, removed)
        if top not in keep_dirs and path.is_dir() and not any(path.iterdir()):
            path.rmdir()
            removed.append(top)
    for rel in sorted(plan.entries, key=lambda r: (r.count("/"), r)):
        entry = plan.entries[rel]
        path = base / rel
        if entry.kind == "dir":
            if not path.is_dir():
                path.mkdir(mode=0o700, parents=True)
                written.append(rel)
            continue
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if entry.kind == "link":
            try:
                current: str | None = os.readlink(path)
            except FileNotFoundError:
                current = None
            if current != entry.target:
                _atomic_symlink(path, entry.target)
                written.append(rel)
        elif entry.kind == "meta":
            try:
                existing: bytes | None = path.read_bytes()
            except FileNotFoundError:
                existing = None
            if existing != entry.data:
                _atomic_bytes(path, entry.data, fsync=fsync)
                written.append(rel)
        else:  # an empty regular file: a file node or a revision
            info = None
            with contextlib.suppress(FileNotFoundError):
                info = path.lstat()
            if info is None or info.st_size != 0:
                _atomic_bytes(path, b"", fsync=fsync)
                written.append(rel)
                info = None
            if entry.mtime_ns is not None and (
                info is None or info.st_mtime_ns != entry.mtime_ns
            ):
                os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))


def _update_indexes(
    root: Path, space: DfsSpace, *, fsync: bool, written: list[str], removed: list[str]
) -> None:
    target = (
        f"../../../{_space_rel(space.space_id)}/nodes/{_pathify(space.space_id, 4)}"
    )
    wanted = {
        f"indexes/by-type/{space.space_type}.mpk",
        f"indexes/by-user-id/{space.owner_id}.mpk",
    }
    # a space has one type: drop it from the other by-type indexes
    by_type = root / "indexes" / "by-type"
    others = sorted(by_type.glob("*.mpk")) if by_type.is_dir() else []
    for path in others:
        rel = f"indexes/by-type/{path.name}"
        if rel in wanted:
            continue
        entries = _read_index(path, rel)
        if space.space_id in entries:
            del entries[space.space_id]
            _atomic_bytes(path, _pack_index(entries), fsync=fsync)
            written.append(rel)
    for rel in sorted(wanted):
        path = root / rel
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        entries = _read_index(path, rel) if path.exists() else {}
        if entries.get(space.space_id) != target:
            entries[space.space_id] = target
            _atomic_bytes(path, _pack_index(entries), fsync=fsync)
            written.append(rel)


def _read_index(path: Path, rel: str) -> dict[str, str]:
    return {k: v.decode() for k, v in _unpack_map(path.read_bytes(), rel).items()}


def write_decomposedfs_space(
    root: Path,
    space: DfsSpace,
    nodes: Sequence[DfsNode],
    trash: Sequence[DfsTrashItem] = (),
    *,
    fsync: bool = True,
) -> DfsWriteResult:
    """Write the decomposedfs metadata of one space so that it is exactly ``nodes``.

    Writes, under ``root`` (the storage root of the ``ocis`` or ``s3ng``
    driver), the space root, one node entry and ``.mpk`` metadata file per
    node, the child links, the revisions' entries, the trash entries and
    the space's lines in the by-type and by-user-id indexes. Blobs are
    neither written nor read nor removed.

    Every call makes the space's ``nodes/`` and ``trash/`` folders equal to
    what it describes: entries left by an earlier call (renamed, moved or
    deleted nodes, old revisions, links) are removed, changed metadata is
    replaced, unchanged files are left alone. Each file and link is
    replaced atomically (temporary file, then ``os.replace``): a call that
    is killed leaves a mix of old and new entries, which the next call with
    the same arguments turns into the exact tree.

    Tree sizes of folders are computed from the file sizes below them. A
    folder's ``mtime_ns`` is written as its modification and tree
    modification time. Etags: oCIS serves ``"<hex of user.ocis.tmp.etag>"``
    when that attribute is set, so an etag of even-length lowercase hex can
    be kept on a folder (and on the space root); oCIS clears it on the first
    change below the folder. On a file a kept etag would outlive later
    uploads through oCIS (nothing clears it), so files always get the
    computed etag. Every etag that cannot be kept is listed in
    ``etags_not_kept``.

    Indexes are shared by all spaces: the space's entry is set in
    ``by-type/<space_type>.mpk`` (and removed from the other by-type
    indexes) and in ``by-user-id/<owner_id>.mpk``; other spaces' entries are
    kept, and so is this space's entry in another user's by-user-id index
    (a former owner's, or a project space member's).

    Args:
        root: The storage root (a local folder); created if missing.
        space: The space and its root folder.
        nodes: The live files and folders. A top-level entry has the space
            id as its parent id.
        trash: The trash bin's items, each with the nodes that were below it.
        fsync: Whether to flush every written file to disk before it
            replaces the old one.

    Returns:
        Counts of what the tree holds, and the paths written and removed.

    Raises:
        PlanError: The input is not a valid tree (an unacceptable id or
            name, a missing or non-folder parent, a parent cycle, two
            entries with one name in a folder, a node id or blob id used
            twice, a bad checksum, a file with bytes but no blob id, an
            origin that does not end in the node's name).
        FormatError: An index file under ``root/indexes`` is not
            messagepack.
        OSError: The file system failed.
    """
    plan = _build_plan(space, nodes, trash)
    root = Path(root)
    space_rel = _space_rel(space.space_id)
    base = root / space_rel
    base.mkdir(mode=0o755, parents=True, exist_ok=True)
    written: list[str] = []
    removed: list[str] = []
    _apply(base, plan, fsync=fsync, written=written, removed=removed)
    _update_indexes(root, space, fsync=fsync, written=written, removed=removed)
    prefix = space_rel + "/"
    return DfsWriteResult(
        nodes=plan.nodes,
        links=plan.links,
        revisions=plan.revisions,
        trash=plan.trash,
        written=tuple(
            sorted(w if w.startswith("indexes/") else prefix + w for w in written)
        ),
        removed=tuple(
            sorted(r if r.startswith("indexes/") else prefix + r for r in removed)
        ),
        etags_not_kept=tuple(sorted(plan.etags_not_kept)),
    )


# --------------------------------------------------------------------------
# reading


class _Reader:
    def __init__(self, root: Path, space_id: str) -> None:
        self.root = Path(root)
        self.space_id = space_id
        self.base = self.root / _space_rel(space_id)
        self.seen: set[str] = set()

    def attrs(self, node_path: Path) -> dict[str, bytes]:
        meta = node_path.with_name(node_path.name + ".mpk")
        try:
            data = meta.read_bytes()
        except FileNotFoundError as exc:
            raise FormatError(f"{meta}: metadata file is missing") from exc
        return _unpack_map(data, str(meta))

    def int_attr(self, attributes: Mapping[str, bytes], key: str, where: str) -> int:
        raw = attributes.get(key)
        if raw is None:
            raise FormatError(f"{where}: attribute {key} is missing")
        try:
            return int(raw.decode())
        except ValueError as exc:
            raise FormatError(f"{where}: attribute {key} is {raw!r}") from exc

    def view(
        self, node_id: str, node_path: Path, attributes: Mapping[str, bytes], path: str
    ) -> DfsView:
        where = str(node_path)
        kind = attributes.get(_A_TYPE)
        if kind is None:
            # reva falls back on the entry itself (lookup.go TypeFromPath)
            kind = _TYPE_CONTAINER if node_path.is_dir() else _TYPE_FILE
        if kind not in {_TYPE_FILE, _TYPE_CONTAINER}:
            raise FormatError(f"{where}: node type {kind!r} is not a file or folder")
        is_dir = kind == _TYPE_CONTAINER
        blob_id = None
        if is_dir:
            try:
                size = self.int_attr(attributes, _A_TREESIZE, where)
            except FormatError:
                size = 0  # oCIS serves 0 for an unknown tree size
        else:
            blob_id = attributes.get(_A_BLOBID, b"").decode() or None
            size = self.int_attr(attributes, _A_BLOBSIZE, where) if blob_id else 0
        stamp = attributes.get(_A_TMTIME) or attributes.get(_A_MTIME)
        if stamp is not None:
            mtime_ns = _parse_go_time(stamp.decode(), where)
        else:
            mtime_ns = node_path.lstat().st_mtime_ns
        tmp_etag = attributes.get(_A_TMP_ETAG, b"")
        etag = (
            f'"{tmp_etag.hex()}"' if tmp_etag else dfs_computed_etag(node_id, mtime_ns)
        )
        return DfsView(
            node_id=node_id,
            path=path,
            is_dir=is_dir,
            size=size,
            mtime_ns=mtime_ns,
            etag=etag,
            checksums=_checksums_of(attributes),
            blob_id=blob_id,
            revisions=() if is_dir else self.revisions(node_id),
        )

    def revisions(self, node_id: str) -> tuple[DfsRevision, ...]:
        node_path = self.base / _node_rel(node_id)
        prefix = node_path.name + _REV_DELIM
        out: list[DfsRevision] = []
        try:
            names = os.listdir(node_path.parent)
        except FileNotFoundError:
            return ()
        for name in sorted(names):
            if not name.startswith(prefix) or name.endswith((".mpk", ".mlock")):
                continue
            if _TMP_MARK in name:
                continue
            rev_path = node_path.parent / name
            where = str(rev_path)
            attributes = self.attrs(rev_path)
            blob_id = attributes.get(_A_BLOBID, b"").decode() or None
            out.append(
                DfsRevision(
                    mtime_ns=_parse_go_time(name[len(prefix) :], where),
                    blob_id=blob_id,
                    size=self.int_attr(attributes, _A_BLOBSIZE, where)
                    if blob_id
                    else 0,
                    checksums=_checksums_of(attributes),
                )
            )
        return tuple(sorted(out, key=lambda r: r.mtime_ns))

    def children(
        self, folder_id: str, folder_path: Path
    ) -> Iterator[tuple[str, str, Path, dict[str, bytes]]]:
        """(name, node id, node path, attributes) of each child link, checked."""
        try:
            names = sorted(os.listdir(folder_path))
        except NotADirectoryError as exc:
            raise FormatError(f"{folder_path}: a folder node is not a folder") from exc
        for name in names:
            link = folder_path / name
            if not link.is_symlink():
                raise FormatError(f"{link}: an entry of a folder node is not a link")
            target = os.readlink(link)
            # reva (lookup.go readChildNodeFromLink): the id is the target
            # without its leading "./" characters and without "/"
            child_id = target.lstrip("/.").replace("/", "")
            if target != _child_target(child_id):
                raise FormatError(
                    f"{link}: link target {target!r} is not {_child_target(child_id)!r}"
                )
            if child_id in self.seen:
                raise FormatError(f"{link}: node {child_id} is linked twice")
            self.seen.add(child_id)
            child_path = self.base / _node_rel(child_id)
            if not child_path.exists():
                raise FormatError(f"{link}: node {child_id} does not exist")
            attributes = self.attrs(child_path)
            parent = attributes.get(_A_PARENTID, b"").decode()
            if parent != folder_id:
                raise FormatError(
                    f"{link}: node {child_id} names parent {parent!r}, not {folder_id}"
                )
            own_name = attributes.get(_A_NAME, b"").decode()
            if own_name != name:
                raise FormatError(
                    f"{link}: node {child_id} is named {own_name!r}, linked as {name!r}"
                )
            yield name, child_id, child_path, attributes

    def walk(
        self, folder_id: str, folder_path: Path, folder_rel: str
    ) -> Iterator[tuple[str, Path, dict[str, bytes], str]]:
        """(node id, node path, attributes, relative path) below a folder."""
        stack = [(folder_id, folder_path, folder_rel)]
        while stack:
            current_id, current_path, current_rel = stack.pop()
            for name, child_id, child_path, attributes in self.children(
                current_id, current_path
            ):
                rel = f"{current_rel}/{name}" if current_rel else name
                yield child_id, child_path, attributes, rel
                if attributes.get(_A_TYPE) == _TYPE_CONTAINER:
                    stack.append((child_id, child_path, rel))


def _checksums_of(attributes: Mapping[str, bytes]) -> dict[str, str]:
    return {
        key[len(_A_CS) :]: value.hex()
        for key, value in sorted(attributes.items())
        if key.startswith(_A_CS)
    }


def read_decomposedfs_space(root: Path, space_id: str) -> dict[str, DfsView]:
    """Read the live tree of one space the way the driver walks it.

    Starts at the space root, follows the child links of every folder and
    reads each node's ``.mpk`` file; what it returns comes from disk only.
    Sizes, mtimes and etags are what oCIS serves: a folder's tree size, the
    tree modification time if set, and the kept etag (hex of
    ``user.ocis.tmp.etag``) or the computed one.

    Args:
        root: The storage root.
        space_id: The space id.

    Returns:
        One view per node id, the root included (path ``""``).

    Raises:
        FormatError: The tree is not one oCIS reads consistently: a missing
            or unreadable metadata file, a folder entry that is not a link
            of the canonical form, a dangling link, a node linked twice, a
            node whose parent id or name does not match its link, a bad
            time or size attribute.
        PlanError: The space id is not acceptable.
    """
    _check_space_id(space_id)
    reader = _Reader(root, space_id)
    root_path = reader.base / _node_rel(space_id)
    if not root_path.is_dir():
        raise FormatError(f"{root_path}: the space root of {space_id} is missing")
    views = {space_id: reader.view(space_id, root_path, reader.attrs(root_path), "")}
    reader.seen.add(space_id)
    for node_id, node_path, attributes, rel in reader.walk(space_id, root_path, ""):
        views[node_id] = reader.view(node_id, node_path, attributes, rel)
    return views


def read_decomposedfs_trash(root: Path, space_id: str) -> dict[str, DfsTrashView]:
    """Read the trash bin of one space the way the driver lists it.

    Reads each trash entry as reva does (a link whose target, without
    ``/``, is ``..........nodes`` + 36-character node id + ``.T.`` + time),
    the trashed node's origin and, for a folder, the nodes below it.

    Args:
        root: The storage root.
        space_id: The space id.

    Returns:
        One entry per trashed node and per node below a trashed folder.

    Raises:
        FormatError: A trash entry oCIS would skip as malformed, or a
            trashed tree that is inconsistent (see
            [read_decomposedfs_space][carmigrate.recipes.read_decomposedfs_space]).
        PlanError: The space id is not acceptable.
    """
    _check_space_id(space_id)
    reader = _Reader(root, space_id)
    trash_dir = reader.base / "trash"
    out: dict[str, DfsTrashView] = {}
    links = sorted(trash_dir.glob("*/*/*/*/*")) if trash_dir.is_dir() else []
    for link in links:
        target = os.readlink(link)
        flat = target.replace("/", "")
        # recycle.go readTrashLink: fixed offsets
        if flat[0:15] != "..........nodes" or flat[51:54] != _TRASH_DELIM:
            raise FormatError(f"{link}: malformed trash link {target!r}")
        node_id, stamp = flat[15:51], flat[54:]
        deleted_ns = _parse_go_time(stamp, str(link))
        node_path = Path(os.path.normpath(link.parent / target))
        expected = reader.base / (_node_rel(node_id) + _TRASH_DELIM + stamp)
        if node_path != expected or not node_path.exists():
            raise FormatError(f"{link}: trash link does not lead to {expected}")
        attributes = reader.attrs(node_path)
        origin_raw = attributes.get(_A_TRASH_ORIGIN)
        if origin_raw is None:
            raise FormatError(f"{node_path}: attribute {_A_TRASH_ORIGIN} is missing")
        origin = origin_raw.decode()
        item = reader.view(node_id, node_path, attributes, origin)
        reader.seen.add(node_id)
        out[node_id] = DfsTrashView(
            node_id=node_id,
            key=node_id,
            path=origin,
            is_dir=item.is_dir,
            size=item.size,
            deleted_ns=deleted_ns,
            blob_id=item.blob_id,
        )
        if not item.is_dir:
            continue
        for child_id, child_path, child_attrs, rel in reader.walk(
            node_id, node_path, ""
        ):
            view = reader.view(child_id, child_path, child_attrs, rel)
            out[child_id] = DfsTrashView(
                node_id=child_id,
                key=f"{node_id}/{rel}",
                path=f"{origin}/{rel}",
                is_dir=view.is_dir,
                size=view.size,
                deleted_ns=deleted_ns,
                blob_id=view.blob_id,
            )
    return out
