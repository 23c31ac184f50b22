"""ownCloud 10 → oCIS, by cohorts of users, keeping file ids, etags, mtimes and checksums (#17).

The recipe ``owncloud`` moves the homes of a cohort of users (named users,
or the members of named groups, in the order given) from an ownCloud 10
instance — its database (read through [carmigrate.records][]) and its data
directory (any [Store][carmigrate.storage.Store]) — to a target, as one
personal space per user, in one of two layouts:

- ``spaces`` (any store): ``spaces/<space>/blobs/<blob id>`` for every
  content (current files, versions, trash) and, per space, one metadata
  record per node in ``spaces/<space>/nodes.jsonl`` and
  ``spaces/<space>/trash.jsonl``, and ``spaces/<space>/space.json``;
- ``decomposedfs``: the on-disk layout of oCIS's storage driver (see
  [write_decomposedfs_space][carmigrate.recipes.write_decomposedfs_space]):
  blobs in the target store, the metadata tree in a local folder.

What is kept, per file, at the levels of the migration notes the recipe
follows: the **file id** (MUST: the node id is ownCloud's own
``oc:id``, ``<fileid, 8 digits><instanceid>``, and the ID map gives
``<instanceid>$<storage>!<fileid>`` → ``<storage id>$<space>!<node>``),
the **path** (MUST, ``files/`` trimmed), the **etag** (MUST: kept as
ownCloud had it, or reported lost with the reason, and then the cohort is
not complete), the **mtime** (files MAY, folders' tree mtime MUST), the
**size** (MAY) and the **checksums** (SHOULD: the engine compares the bytes
it writes with the stored ``SHA1``/``MD5``/``ADLER32`` in its one read; a
file without a stored checksum is read once more at planning to compute
one, and flagged ``computed``).

Each pass is a round of the recipe: a blob's id is derived from its file
id and what a delta compares (etag, size, storage mtime), so a second run
re-plans only the files that changed, were added or moved back from
elsewhere; a moved or renamed file costs no copy (its metadata changes). A
run of a cohort that changed nothing copies nothing and writes nothing.
The pass's expected duration, from the previous passes' throughput, is in
the run's outputs (``delta``), also with ``--dry-run``.

After each pass, ``finish`` writes the metadata of every user whose blobs
all verified, reads the target back, and compares it with the source: the
fidelity report (``owncloud/fidelity.json`` and ``.md``), the ID map
(``owncloud/idmap.jsonl``), the share records (see
[ocis_share_records][carmigrate.recipes.ocis_share_records]) and the
sync check (what a desktop client would download again,
[owncloud_sync_check][carmigrate.recipes.owncloud_sync_check]).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.digests import MultiHasher
from carmigrate.errors import ObjectNotFound, PlanError
from carmigrate.migrate import (
    Action,
    MemberState,
    Overwrite,
    Plan,
    PlanItem,
    Stage,
    TransferPolicy,
    Unit,
    Verdict,
    VerificationPolicy,
)
from carmigrate.recipes._owncloud_tree import (
    OwncloudEntry,
    OwncloudHome,
    OwncloudVersion,
    read_owncloud_home,
)
from carmigrate.recipes._recipe import (
    Recipe,
    RecipeContext,
    RoundPlans,
    option,
    register_recipe,
)
from carmigrate.recipes.owncloud import read_owncloud_instance_id
from carmigrate.storage import Store
from carmigrate.storage.ops import read_bytes

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from carmigrate.records import Database
    from carmigrate.storage import ObjectInfo

__all__ = [
    "LAYOUTS",
    "OCIS_STORAGE_ID",
    "OWNCLOUD",
    "OwncloudNodeView",
    "OwncloudOptions",
    "SyncCheck",
    "ocis_node_id",
    "ocis_space_id",
    "owncloud_blob_id",
    "owncloud_sync_check",
    "read_spaces_layout",
]

LAYOUTS: Final = ("spaces", "decomposedfs")
"""The target layouts of the ``owncloud`` recipe."""

OCIS_STORAGE_ID: Final = "1284d238-aa92-42ce-bdc4-0b0000009157"
"""The storage provider id of oCIS's ``storage-users`` service (its default)."""

_NAMESPACE: Final = uuid.UUID("7f0c7f3e-5b1a-4c55-9a53-0c0ddc0a1e17")
_DIGESTS: Final = ("adler32", "md5", "sha1")


def ocis_node_id(instance: str, fileid: int) -> str:
    """The node id a file keeps in every pass: ``uuid5`` of the instance id and file id.

    oCIS's driver needs node ids of 36 characters without dots (its trash
    and child links cut them at fixed positions), and serves a file's id as
    ``<storage>$<space>!<node>`` whatever the node id, so ownCloud's
    ``oc:id`` cannot survive as such: the ID map carries it instead. The
    same id in both layouts, stable across passes and moves.
    """
    return str(uuid.uuid5(_NAMESPACE, f"node:{instance}:{fileid}"))


def ocis_space_id(instance: str, user: str, user_ids: Mapping[str, str]) -> str:
    """The personal space of ``user``: its oCIS user id when given, else ``uuid5(instance:user)``."""
    given = user_ids.get(user)
    if given:
        return given
    return str(uuid.uuid5(_NAMESPACE, f"space:{instance}:{user}"))


def owncloud_blob_id(instance: str, storage: int, entry: OwncloudEntry) -> str:
    """The blob of one content of a file: ``uuid5`` of its file id and delta fingerprint.

    A changed file (another etag, size or storage mtime) gets another blob;
    a moved one keeps it.
    """
    etag, size, smtime = entry.fingerprint
    name = f"blob:{instance}:{storage}:{entry.fileid}:{etag}:{size}:{smtime}"
    return str(uuid.uuid5(_NAMESPACE, name))


def _parse_user_ids(path: str | None) -> dict[str, str]:
    if path is None:
        return {}
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        msg = f"{path}: expected a JSON object of ownCloud uid -> oCIS user id"
        raise PlanError(msg)
    return data


def _check_layout(_: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in LAYOUTS:
        msg = f"--{attribute.name} {value!r}: one of {', '.join(LAYOUTS)}"
        raise PlanError(msg)


@attrs.frozen(kw_only=True)
class OwncloudOptions:
    """The options of ``owncloud`` (each field is a command-line option).

    Attributes:
        db: The ownCloud database, as a SQLAlchemy URL.
        data: The data directory (a store or URL); for homes on ownCloud's
            object store (``object::user:<uid>``), the store holding its
            ``urn:oid:<fileid>`` objects.
        to: The target store (or URL): blobs, and in the ``spaces`` layout
            the metadata records.
        layout: ``spaces`` or ``decomposedfs``.
        metadata: For ``decomposedfs``: the local folder of the metadata
            tree (default: ``to``, when it is a local folder).
        users: Users of this cohort, in order.
        groups: Groups whose members join the cohort (after ``users``, in
            the order given, each group's members sorted).
        config: ownCloud's ``config.php`` (its ``instanceid``).
        instance_id: The instance id, when no ``config`` is given.
        table_prefix: ownCloud's ``dbtableprefix``.
        user_ids: A JSON file mapping ownCloud uids to oCIS user ids (the
            personal space ids); others get ``uuid5`` ids.
        idp: The identity provider of the oCIS users (the owners' ``idp``).
        storage_id: The storage provider id in the target resource ids.
        accept_etag_loss: Etags are a MUST: a home whose etags the target
            does not serve as ownCloud did (decomposedfs recomputes file
            etags) fails, unless this is set; the fidelity report and the
            sync check list every lost etag either way.

    Raises:
        PlanError: An unknown layout.
    """

    db: str = option("the ownCloud database (SQLAlchemy URL)", metavar="URL")
    data: Store | str = option(
        "the data directory (or the object store of urn:oid:<fileid> objects)",
        metavar="URL",
    )
    to: Store | str = option("the target store", metavar="URL")
    layout: str = option(
        "target layout: spaces (any store) or decomposedfs (oCIS's driver)",
        choices=LAYOUTS,
        default="spaces",
        validator=_check_layout,
    )
    metadata: str | None = option(
        "decomposedfs: local folder of the metadata tree (default: --to)",
        metavar="DIR",
        default=None,
    )
    users: tuple[str, ...] = option(
        "a user of this cohort (repeatable, in order)",
        flag="--user",
        metavar="UID",
        repeat=True,
        default=(),
    )
    groups: tuple[str, ...] = option(
        "a group whose members join the cohort (repeatable)",
        flag="--group",
        metavar="GID",
        repeat=True,
        default=(),
    )
    config: str | None = option(
        "ownCloud's config.php (for its instanceid)", metavar="FILE", default=None
    )
    instance_id: str | None = option(
        "the instance id, without --config", metavar="ID", default=None
    )
    table_prefix: str = option(
        "ownCloud's dbtableprefix (default oc_)", metavar="PREFIX", default="oc_"
    )
    user_ids: str | None = option(
        "JSON file: ownCloud uid -> oCIS user id", metavar="FILE", default=None
    )
    idp: str = option(
        "the oCIS users' identity provider (default https://localhost:9200)",
        metavar="URL",
        default="https://localhost:9200",
    )
    storage_id: str = option(
        "the storage provider id in target resource ids (default oCIS's)",
        metavar="ID",
        default=OCIS_STORAGE_ID,
    )
    accept_etag_loss: bool = option(
        "a home whose etags the target recomputes may still complete (clients "
        "re-sync it once); every etag lost is still reported",
        default=False,
    )


# ---------------------------------------------------------------- the cohort


def _instance(o: OwncloudOptions) -> str:
    if o.config is not None:
        return read_owncloud_instance_id(o.config)
    if o.instance_id:
        return o.instance_id
    raise PlanError("the instance id is needed: give --config or --instance-id")


def _cohort(db: Database, o: OwncloudOptions) -> list[str]:
    users = list(dict.fromkeys(o.users))
    if o.groups:
        t = db.table(f"{o.table_prefix}group_user")
        members: dict[str, list[str]] = {g: [] for g in o.groups}
        for r in db.iter_rows(
            f"{o.table_prefix}group_user", where=t.c.gid.in_(list(o.groups))
        ):
            members[str(r["gid"])].append(str(r["uid"]))
        empty = [g for g, m in members.items() if not m]
        if empty:
            msg = f"no members in group(s) {', '.join(map(repr, empty))}"
            raise PlanError(msg)
        for g in o.groups:
            users += [u for u in sorted(members[g]) if u not in users]
    if not users:
        raise PlanError("an empty cohort: give --user or --group")
    return users


# -------------------------------------------------------------- the contents


@attrs.frozen(kw_only=True)
class _Content:
    """One blob to carry: a current file, a version, or a trashed file."""

    entry: OwncloudEntry
    kind: str  # "file", "version", "trash"
    blob: str


def _contents(instance: str, home: OwncloudHome) -> list[_Content]:
    out: list[_Content] = []

    def add(e: OwncloudEntry, kind: str) -> None:
        if not e.is_dir:
            out.append(
                _Content(
                    entry=e, kind=kind, blob=owncloud_blob_id(instance, home.storage, e)
                )
            )

    for e in home.entries:
        add(e, "file")
    for vs in home.versions.values():
        for v in vs:
            add(v.entry, "version")
    for t in home.trash:
        add(t.entry, "trash")
        for c in t.children:
            add(c, "trash")
        for tvs in t.versions.values():
            for v in tvs:
                add(v.entry, "version")
    return out


def _local_path(url: str) -> str | None:
    """The folder a local store's URL names, else ``None``."""
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    if "://" not in url:
        return url
    parsed = urlparse(url)
    return url2pathname(parsed.path) if parsed.scheme == "file" else None


class _Layout:
    """Where blobs go and how metadata is written and read back, per layout."""

    def __init__(self, o: OwncloudOptions, target: Store) -> None:
        self.name = o.layout
        self.target = target
        self.local = _local_path(target.url)
        self.metadata: str | None = None
        if o.layout == "decomposedfs":
            folder = o.metadata if o.metadata is not None else self.local
            if folder is None:
                msg = (
                    f"--layout decomposedfs to {target.url}: the blobs go there "
                    "(as oCIS's s3ng driver keys them); give --metadata DIR for the "
                    "metadata tree"
                )
                raise PlanError(msg)
            self.metadata = folder

    def blob_key(self, space: str, blob: str) -> str:
        if self.name == "spaces":
            return f"spaces/{space}/blobs/{blob}"
        from carmigrate.recipes._ocis_decomposedfs import dfs_blob_key, s3ng_blob_key

        if self.local is not None:
            return dfs_blob_key(space, blob)
        return s3ng_blob_key(space, blob)

    def blob_prefix(self, space: str) -> str | None:
        """A prefix holding every blob of the space (to list), if the layout has one."""
        if self.name == "spaces":
            return f"spaces/{space}/blobs/"
        if self.local is None:
            return f"{space}/"
        from carmigrate.recipes._ocis_decomposedfs import dfs_blob_key

        probe = dfs_blob_key(space, "00000000-0000-0000-0000-000000000000")
        return probe[: probe.index("/blobs/") + len("/blobs/")]


def _make_plans(o: OwncloudOptions, ctx: RecipeContext) -> RoundPlans:
    from carmigrate.records import open_database

    instance = _instance(o)
    user_ids = _parse_user_ids(o.user_ids)
    source = ctx.store(o.data)
    target = ctx.store(o.to, create=True)
    layout = _Layout(o, target)
    states = ctx.ledger.member_states()
    units: list[Unit] = []
    items: list[PlanItem] = []
    missing: dict[str, str] = {}
    planned_files = planned_bytes = 0
    computed: set[str] = set()
    with open_database(o.db) as db:
        cohort = _cohort(db, o)
        for user in cohort:
            home = read_owncloud_home(db, user, table_prefix=o.table_prefix)
            space = ocis_space_id(instance, user, user_ids)
            contents = _contents(instance, home)
            members = []
            todo: list[tuple[_Content, str]] = []
            for c in contents:
                key = layout.blob_key(space, c.blob)
                members.append(key)
                if states.get(key) is not MemberState.VERIFIED:
                    todo.append((c, key))
            units.append(
                Unit(
                    name=f"home:{user}",
                    kind="home",
                    owner=user,
                    members=tuple(dict.fromkeys(members)),
                    data={
                        "user": user,
                        "space": space,
                        "storage": home.storage,
                        "layout": o.layout,
                        "files": home.files,
                        "bytes": home.bytes,
                        "folders": sum(1 for e in home.entries if e.is_dir),
                        "versions": sum(len(v) for v in home.versions.values()),
                        "trash": len(home.trash),
                        "encrypted": sum(1 for c in contents if c.entry.encrypted),
                        "stray": [
                            {"path": e.path, "fileid": e.fileid, "why": why}
                            for e, why in home.stray
                        ],
                    },
                )
            )
            if not todo:
                continue
            found = _listing(source, home, [c for c, _ in todo])
            prefix = layout.blob_prefix(space)
            there = (
                {i.key: i for i in target.list(prefix)} if prefix is not None else {}
            )
            for c, key in todo:
                skey = home.blob_key(c.entry)
                info = found.get(skey)
                if info is None:
                    where = "object store" if home.object_store else "data directory"
                    missing[key] = (
                        f"{skey} ({c.entry.path}) is not in the {where} ({source.url})"
                    )
                    continue
                if c.entry.encrypted:
                    missing[key] = (
                        f"{skey} is encrypted (ownCloud server-side encryption)"
                    )
                    continue
                digests = dict(c.entry.checksums)
                if not digests:
                    digests = _compute(source, skey)
                    computed.add(key)
                dest = there.get(key)
                items.append(
                    PlanItem(
                        source_key=skey,
                        destination_key=key,
                        size=c.entry.size,
                        action=Action.COPY if dest is None else Action.VERIFY,
                        stage=user,
                        cohort=user,
                        digests=digests,
                        destination_size=None if dest is None else dest.size,
                    )
                )
                planned_files += 1
                planned_bytes += c.entry.size
    ctx.notes.update(
        cohort=cohort,
        planned={"files": planned_files, "bytes": planned_bytes},
        computed=sorted(computed),
    )
    plans: tuple[Plan, ...] = ()
    if items:
        plans = (
            Plan.from_items(
                items,
                source=source.url,
                destination=target.url,
                stages=tuple(Stage(u, cohorts=(u,)) for u in cohort),
                verification=VerificationPolicy(
                    checks=("size", *_DIGESTS), record=_DIGESTS
                ),
                transfer=TransferPolicy(overwrite=Overwrite.IF_DIFFERENT),
                limits=ctx.limits,
            ),
        )
    return RoundPlans(plans=plans, units=tuple(units), missing=missing)


def _listing(
    source: Store, home: OwncloudHome, contents: list[_Content]
) -> dict[str, ObjectInfo]:
    """What the source has of the contents to copy: the user's three areas, or a stat per object."""
    out: dict[str, ObjectInfo] = {}
    if home.object_store:  # urn:oid:<fileid> keys: nothing to list by user
        for c in contents:
            key = home.blob_key(c.entry)
            with contextlib.suppress(ObjectNotFound):
                out[key] = source.stat(key)
        return out
    for area in ("files/", "files_versions/", "files_trashbin/"):
        out.update((i.key, i) for i in source.list(f"{home.user}/{area}"))
    return out


def _compute(source: Store, key: str) -> dict[str, str]:
    hasher = MultiHasher(_DIGESTS)
    with source.open_read(key) as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    got = hasher.hexdigests()
    return {n: got[n] for n in _DIGESTS}


# ------------------------------------------------------- the target, read back


@attrs.frozen(kw_only=True)
class OwncloudNodeView:
    """A node of a migrated space as a client would see it.

    Attributes:
        node_id: Its id in the space.
        path: Its path below the space root (``""`` for the root).
        is_dir: A folder.
        size: Its size (a folder's: of its tree).
        mtime: Its mtime in seconds (a folder's: its tree's).
        etag: The etag a client gets (without quotes).
        checksums: Digests by registry name (lowercase hex).
    """

    node_id: str
    path: str
    is_dir: bool
    size: int
    mtime: int
    etag: str
    checksums: Mapping[str, str] = attrs.field(factory=dict)


def _space_key(space: str, name: str) -> str:
    return f"spaces/{space}/{name}"


def read_spaces_layout(store: Store, space: str) -> dict[str, OwncloudNodeView]:
    """The nodes of one space of the ``spaces`` layout, read from its ``nodes.jsonl``.

    Args:
        store: The target store.
        space: The space id.

    Returns:
        Views by node id (empty when the space has no record yet).

    Raises:
        PlanError: A record is not valid JSON or lacks a field.
        StorageError: The store cannot be read.
    """
    try:
        data = read_bytes(store, _space_key(space, "nodes.jsonl"))
    except ObjectNotFound:
        return {}
    out: dict[str, OwncloudNodeView] = {}
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        try:
            r = json.loads(line)
            out[r["id"]] = OwncloudNodeView(
                node_id=r["id"],
                path=r["path"],
                is_dir=r["type"] == "folder",
                size=int(r["size"]),
                mtime=int(r["mtime"]),
                etag=r["etag"],
                checksums=r.get("checksums") or {},
            )
        except (ValueError, KeyError, TypeError) as e:
            msg = f"{store.url} {_space_key(space, 'nodes.jsonl')} line {n}: {e}"
            raise PlanError(msg) from e
    return out


# ------------------------------------------------------------------ finish


def _rel(path: str, base: str = "files") -> str:
    return path[len(base) + 1 :] if path.startswith(base + "/") else ""


class _Writer:
    """The metadata of one user's space, from its home and the verified blobs."""

    def __init__(
        self,
        o: OwncloudOptions,
        ctx: RecipeContext | None,
        layout: _Layout,
        instance: str,
        home: OwncloudHome,
        space: str,
    ) -> None:
        self.o, self.ctx, self.layout = o, ctx, layout
        self.instance, self.home, self.space = instance, home, space

    def nid(self, fileid: int) -> str:
        return ocis_node_id(self.instance, fileid)

    def checksums(self, e: OwncloudEntry) -> dict[str, str]:
        if e.checksums or self.ctx is None:
            return dict(e.checksums)
        key = self.layout.blob_key(
            self.space, owncloud_blob_id(self.instance, self.home.storage, e)
        )
        m = self.ctx.ledger.member(key)
        if m is None or m.record is None:
            return {}
        return {n: v for n, v in m.record.digests.items() if n in _DIGESTS}

    def record(self, e: OwncloudEntry, path: str, parent: str) -> dict[str, Any]:
        r: dict[str, Any] = {
            "id": self.nid(e.fileid),
            "parent": parent,
            "name": e.name if path else "",
            "path": path,
            "type": "folder" if e.is_dir else "file",
            "size": e.size,
            "mtime": e.mtime,
            "etag": e.etag,
            "source": f"{self.instance}${self.home.storage}!{e.fileid}",
        }
        if not e.is_dir:
            r["blob"] = owncloud_blob_id(self.instance, self.home.storage, e)
            r["checksums"] = self.checksums(e)
        return r

    def revisions(self, versions: Iterable[OwncloudVersion]) -> list[dict[str, Any]]:
        return [
            {
                "timestamp": v.timestamp,
                "blob": owncloud_blob_id(self.instance, self.home.storage, v.entry),
                "size": v.entry.size,
                "checksums": self.checksums(v.entry),
            }
            for v in versions
        ]

    def spaces_records(self) -> tuple[bytes, bytes, bytes]:
        h = self.home
        by_id = {e.fileid: e for e in h.entries}
        nodes = [self.record(h.root, "", "")]
        for e in h.entries:
            parent = self.space if e.parent == h.root.fileid else self.nid(e.parent)
            if e.parent != h.root.fileid and e.parent not in by_id:
                continue  # an orphan row: reported by the fidelity check
            r = self.record(e, _rel(e.path), parent)
            r["revisions"] = self.revisions(h.versions.get(e.path, ()))
            nodes.append(r)
        nodes[0]["id"] = self.space
        trash = []
        for t in h.trash:
            top = self.record(t.entry, t.name, "")
            top.update(deleted=t.deleted, origin=t.location, name=t.name)
            if not t.entry.is_dir:
                top["revisions"] = self.revisions(t.versions.get("", ()))
            trash.append(top)
            for c in t.children:
                sub = _rel(c.path, t.entry.path)
                r = self.record(c, f"{t.name}/{sub}", self.nid(c.parent))
                if not c.is_dir:
                    r["revisions"] = self.revisions(t.versions.get(sub, ()))
                trash.append(r)
        space = {
            "id": self.space,
            "type": "personal",
            "owner": self.home.user,
            "root": self.nid(h.root.fileid),
            "etag": h.root.etag,
            "mtime": h.root.mtime,
            "storage_id": self.o.storage_id,
        }

        def lines(rs: list[dict[str, Any]]) -> bytes:
            return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rs).encode()

        return lines(nodes), lines(trash), json.dumps(space, sort_keys=True).encode()

    def write(self) -> int:
        """Write the space's metadata; the number of objects or files changed."""
        if self.layout.name == "decomposedfs":
            return self._write_dfs()
        nodes, trash, space = self.spaces_records()
        changed = 0
        for name, body in (
            ("nodes.jsonl", nodes),
            ("trash.jsonl", trash),
            ("space.json", space),
        ):
            key = _space_key(self.space, name)
            with contextlib.suppress(ObjectNotFound):
                if read_bytes(self.layout.target, key) == body:
                    continue
            self.layout.target.write(key, body)
            changed += 1
        return changed

    def dfs_node(
        self,
        e: OwncloudEntry,
        parent: str,
        name: str,
        versions: Iterable[OwncloudVersion] | None = None,
    ) -> Any:
        from carmigrate.recipes._ocis_decomposedfs import DfsNode, DfsRevision

        h = self.home
        if versions is None:
            versions = h.versions.get(e.path, ())
        return DfsNode(
            node_id=self.nid(e.fileid),
            parent_id=parent,
            name=name,
            is_dir=e.is_dir,
            size=e.size,
            mtime_ns=e.mtime * 1_000_000_000,
            etag=e.etag if e.is_dir else None,
            blob_id=None if e.is_dir else owncloud_blob_id(self.instance, h.storage, e),
            checksums={} if e.is_dir else self.checksums(e),
            revisions=tuple(
                DfsRevision(
                    mtime_ns=v.timestamp * 1_000_000_000,
                    blob_id=owncloud_blob_id(self.instance, h.storage, v.entry),
                    size=v.entry.size,
                    checksums=self.checksums(v.entry),
                )
                for v in versions
            ),
        )

    def _write_dfs(self) -> int:
        from carmigrate.recipes._ocis_decomposedfs import (
            DfsSpace,
            DfsTrashItem,
            write_decomposedfs_space,
        )

        h = self.home
        known = {e.fileid for e in h.entries} | {h.root.fileid}
        nodes = [
            self.dfs_node(
                e,
                self.space if e.parent == h.root.fileid else self.nid(e.parent),
                e.name,
            )
            for e in h.entries
            if e.parent in known
        ]
        trash = []
        for t in h.trash:
            top = self.dfs_node(t.entry, self.space, t.name, t.versions.get("", ()))
            where = t.location if t.location not in (None, ".", "") else ""
            descendants = tuple(
                self.dfs_node(
                    c,
                    self.nid(c.parent),
                    c.name,
                    t.versions.get(_rel(c.path, t.entry.path), ()),
                )
                for c in t.children
            )
            trash.append(
                DfsTrashItem(
                    node=top,
                    deleted_ns=t.deleted * 1_000_000_000,
                    origin=f"{where}/{t.name}" if where else t.name,
                    descendants=descendants,
                )
            )
        space = DfsSpace(
            space_id=self.space,
            owner_id=self.space,
            owner_idp=self.o.idp,
            name=h.user,
            mtime_ns=h.root.mtime * 1_000_000_000,
            etag=h.root.etag,
            alias=f"personal/{h.user}",
        )
        assert self.layout.metadata is not None
        result = write_decomposedfs_space(
            Path(self.layout.metadata), space, nodes, trash
        )
        self.etags_not_kept = result.etags_not_kept
        return len(result.written) + len(result.removed)

    def view(self) -> dict[str, OwncloudNodeView]:
        if self.layout.name == "spaces":
            return read_spaces_layout(self.layout.target, self.space)
        from carmigrate.recipes._ocis_decomposedfs import read_decomposedfs_space

        assert self.layout.metadata is not None
        out = {}
        for node_id, v in read_decomposedfs_space(
            Path(self.layout.metadata), self.space
        ).items():
            out[node_id] = OwncloudNodeView(
                node_id=node_id,
                path=v.path,
                is_dir=v.is_dir,
                size=v.size,
                mtime=v.mtime_ns // 1_000_000_000,
                etag=v.etag.strip('"'),
                checksums=dict(v.checksums),
            )
        return out


_MUST: Final = ("id", "path", "etag")


def _levels(
    w: _Writer, e: OwncloudEntry, path: str, target_id: str, v: OwncloudNodeView | None
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "user": w.home.user,
        "path": path,
        "type": "folder" if e.is_dir else "file",
        "source": f"{w.instance}${w.home.storage}!{e.fileid}",
        "target": f"{w.o.storage_id}${w.space}!{target_id}",
    }
    if v is None:
        row.update(id="lost", path_level="lost", etag="lost", mtime="lost", size="lost")
        row["why"] = "no such node at the target"
        return row
    row["id"] = "kept"
    row["path_level"] = "kept" if v.path == path else f"changed: {v.path}"
    row["etag"] = "kept" if v.etag == e.etag else _etag_lost(w, e, v)
    row["mtime"] = "kept" if v.mtime == e.mtime else f"changed: {v.mtime}"
    row["size"] = "kept" if v.size == e.size else f"changed: {v.size}"
    if not e.is_dir:
        if e.checksums:
            same = all(v.checksums.get(n) == d for n, d in e.checksums.items())
            row["checksum"] = "verified" if same else "changed"
        else:
            row["checksum"] = "computed" if v.checksums else "missing"
    return row


def _etag_lost(w: _Writer, e: OwncloudEntry, v: OwncloudNodeView) -> str:
    """Why the target serves another etag than ownCloud did."""
    if w.layout.name != "decomposedfs":
        return f"lost: {v.etag} at the target"
    if not e.is_dir:
        why = "oCIS computes a file's etag from its node id and mtime"
    elif len(e.etag) % 2 or any(c not in "0123456789abcdef" for c in e.etag):
        why = "oCIS keeps a folder's etag only if it is even-length lowercase hex"
    else:
        why = "not kept by the target"
    return f"lost: {v.etag} at the target ({why})"


def _judge(rows: list[dict[str, Any]], *, etags: bool = True) -> list[str]:
    """Reasons a user's space is not a faithful copy (MUST levels)."""
    bad = []
    levels = _MUST if etags else tuple(x for x in _MUST if x != "etag")
    for r in rows:
        for level in levels:
            value = r["path_level" if level == "path" else level]
            if value != "kept":
                bad.append(f"{r['path'] or '/'}: {level} {value}")
        if r["type"] == "folder" and r["mtime"] != "kept":
            bad.append(f"{r['path'] or '/'}: tree mtime {r['mtime']}")
    return bad


def _redownload(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    out = []
    for r in rows:
        why = [
            f"{level} {r[key]}"
            for level, key in (
                ("id", "id"),
                ("etag", "etag"),
                ("size", "size"),
                ("mtime", "mtime"),
            )
            if r[key] != "kept"
        ]
        if why:
            out.append({"user": r["user"], "path": r["path"], "why": "; ".join(why)})
    return out


def _fidelity_rows(
    w: _Writer, view: Mapping[str, OwncloudNodeView]
) -> list[dict[str, Any]]:
    h = w.home
    rows = [_levels(w, h.root, "", w.space, view.get(w.space))]
    known = {e.fileid for e in h.entries} | {h.root.fileid}
    for e in h.entries:
        path = _rel(e.path)
        if e.parent not in known:
            rows.append(
                {
                    "user": h.user,
                    "path": path,
                    "type": "folder" if e.is_dir else "file",
                    "source": f"{w.instance}${h.storage}!{e.fileid}",
                    "target": None,
                    "id": "lost",
                    "path_level": "lost",
                    "etag": "lost",
                    "mtime": "lost",
                    "size": "lost",
                    "why": f"its parent row {e.parent} is missing (orphan_row)",
                }
            )
            continue
        nid = w.nid(e.fileid)
        rows.append(_levels(w, e, path, nid, view.get(nid)))
    return rows


def _idmap(w: _Writer) -> list[dict[str, Any]]:
    h = w.home
    out = []

    def add(e: OwncloudEntry, kind: str, path: str, target: str) -> None:
        out.append(
            {
                "source": f"{w.instance}${h.storage}!{e.fileid}",
                "target": f"{w.o.storage_id}${w.space}!{target}",
                "user": h.user,
                "path": path,
                "kind": kind,
            }
        )

    add(h.root, "space", "", w.space)
    for e in h.entries:
        add(e, "folder" if e.is_dir else "file", _rel(e.path), w.nid(e.fileid))
        for v in h.versions.get(e.path, ()):
            add(v.entry, "version", f"{_rel(e.path)}.v{v.timestamp}", w.nid(e.fileid))
    for t in h.trash:
        add(t.entry, "trash", t.name, w.nid(t.entry.fileid))
        for c in t.children:
            add(c, "trash", f"{t.name}/{_rel(c.path, t.entry.path)}", w.nid(c.fileid))
    return out


def _finish(o: OwncloudOptions, ctx: RecipeContext) -> dict[str, Any]:
    from carmigrate.records import open_database

    instance = _instance(o)
    user_ids = _parse_user_ids(o.user_ids)
    target = ctx.store(o.to, create=True)
    layout = _Layout(o, target)
    states = ctx.ledger.member_states()
    outputs: dict[str, Any] = {"delta": _delta(ctx)}
    if ctx.dry_run:
        return outputs
    report: dict[str, Any] = {"instance": instance, "layout": o.layout, "users": {}}
    files: list[dict[str, Any]] = []
    idmap: list[dict[str, Any]] = []
    written = 0
    with open_database(o.db) as db:
        cohort = _cohort(db, o)
        for user in cohort:
            home = read_owncloud_home(db, user, table_prefix=o.table_prefix)
            space = ocis_space_id(instance, user, user_ids)
            w = _Writer(o, ctx, layout, instance, home, space)
            pending = [
                c
                for c in _contents(instance, home)
                if states.get(layout.blob_key(space, c.blob))
                is not MemberState.VERIFIED
            ]
            summary: dict[str, Any] = {
                "space": space,
                "pending": len(pending),
                "stray": [
                    {"path": e.path, "fileid": e.fileid, "why": why}
                    for e, why in home.stray
                ],
            }
            report["users"][user] = summary
            if pending:
                summary["written"] = False
                summary["not_verified"] = _not_verified(ctx, layout, space, pending)
                _hold_back(ctx, f"home:{user}", summary["not_verified"])
                continue
            written += w.write()
            summary["written"] = True
            rows = _fidelity_rows(w, w.view())
            files += rows
            idmap += _idmap(w)
            bad = _judge(rows, etags=not o.accept_etag_loss)
            summary["nodes"] = len(rows)
            summary["levels"] = _count_levels(rows)
            summary["complete"] = not bad
            if bad:
                ctx.ledger.set_verdict(f"home:{user}", Verdict.FAILED, bad[:20])
    report["files"] = files
    report["redownload"] = _redownload(files)
    base = "owncloud"
    ids = ctx.output(f"{base}/idmap.jsonl")
    idmap = _merge_idmap(ids, idmap, cohort)
    _write_if_changed(
        ids, "".join(json.dumps(r, sort_keys=True) + "\n" for r in idmap).encode()
    )
    with open_database(o.db) as db:
        shares = _shares(o, ctx, db, instance, user_ids, idmap)
    report["shares"] = shares
    fidelity = ctx.output(f"{base}/fidelity.json")
    _write_if_changed(fidelity, json.dumps(report, indent=1, sort_keys=True).encode())
    markdown = ctx.output(f"{base}/fidelity.md")
    _write_if_changed(markdown, _fidelity_markdown(report).encode())
    _record_pass(ctx)
    outputs.update(
        fidelity=str(fidelity),
        fidelity_markdown=str(markdown),
        idmap=str(ids),
        metadata_written=written,
        redownload=len(report["redownload"]),
        shares={k: len(v) if isinstance(v, list) else v for k, v in shares.items()},
    )
    return outputs


def _not_verified(
    ctx: RecipeContext, layout: _Layout, space: str, pending: list[_Content]
) -> list[dict[str, Any]]:
    out = []
    for c in pending:
        m = ctx.ledger.member(layout.blob_key(space, c.blob))
        state = "unplanned" if m is None else m.state.value
        reason = None if m is None else m.reason
        if m is None:
            reason = "changed since this pass was planned: run a delta pass"
        out.append(
            {
                "path": c.entry.path,
                "fileid": c.entry.fileid,
                "state": state,
                "why": reason,
            }
        )
    return out


def _hold_back(ctx: RecipeContext, unit: str, rows: list[dict[str, Any]]) -> None:
    """The user's space is not written: say why, per file, in the unit's verdict."""
    record = ctx.ledger.unit(unit)
    if record is None:
        return
    final = {"failed", "missing", "conflict"}
    verdict = (
        Verdict.FAILED if any(r["state"] in final for r in rows) else Verdict.INCOMPLETE
    )
    reasons = [f"{r['path']}: {r['state']}: {r['why']}" for r in rows[:20]]
    reasons.append("its space's metadata is not written until every content verified")
    ctx.ledger.set_verdict(unit, verdict, reasons)


def _merge_idmap(
    path: os.PathLike[str] | str, new: list[dict[str, Any]], cohort: list[str]
) -> list[dict[str, Any]]:
    """The ID map of every user migrated so far: earlier cohorts' lines, this cohort's anew."""
    written = {r["user"] for r in new}
    kept: list[dict[str, Any]] = []
    with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as f:
        kept = [json.loads(line) for line in f if line.strip()]
    kept = [r for r in kept if r["user"] not in written and r["user"] not in cohort]
    return sorted(kept + new, key=lambda r: (r["user"], r["path"], r["kind"]))


def _shares(
    o: OwncloudOptions,
    ctx: RecipeContext,
    db: Database,
    instance: str,
    user_ids: Mapping[str, str],
    idmap: list[dict[str, Any]],
) -> dict[str, Any]:
    """The CS3 share records of every share a migrated user takes part in."""
    from carmigrate.recipes._ocis_shares import (
        OcisResourceId,
        ShareNotCarried,
        ocis_share_records,
        read_owncloud_group_members,
        read_owncloud_shares,
        write_ocis_share_records,
    )

    migrated = {r["user"] for r in idmap}
    where: dict[int, OcisResourceId] = {}
    for r in idmap:
        if r["kind"] in ("space", "folder", "file"):
            storage_id, _, rest = r["target"].partition("$")
            space, _, node = rest.partition("!")
            where[int(r["source"].rsplit("!", 1)[1])] = OcisResourceId(
                storage_id=storage_id, space_id=space, opaque_id=node
            )
    members = read_owncloud_group_members(db, table_prefix=o.table_prefix)
    groups = {g for g, us in members.items() if migrated & set(us)}
    rows = read_owncloud_shares(db, table_prefix=o.table_prefix)
    foreign = {
        s.id
        for s in rows
        if s.uid_owner not in migrated
        and s.share_type != 2
        and (s.share_with in migrated or s.share_with in groups)
    }
    chosen = [
        s
        for s in rows
        if s.uid_owner in migrated
        or s.id in foreign
        or (s.share_type == 2 and s.parent in foreign)
    ]

    def user(uid: str) -> str | None:
        return ocis_space_id(instance, uid, user_ids) if uid in migrated else None

    def group(gid: str) -> str | None:
        return str(uuid.uuid5(_NAMESPACE, f"group:{instance}:{gid}"))

    records = ocis_share_records(
        chosen,
        instance_id=instance,
        idp=o.idp,
        resource_id=where.get,
        user_id=user,
        group_id=group,
        group_members=members,
    )
    known = (
        {uid for us in members.values() for uid in us}
        | {s.uid_owner for s in rows}
        | {s.share_with for s in rows if s.share_type in (0, 2) and s.share_with}
    )
    not_carried = []
    for n in records.not_carried:
        if n.kind == "no_user" and any(f"{u!r}" in n.reason for u in known - migrated):
            role, who = n.reason.split()[:2]
            n = ShareNotCarried(
                share_id=n.share_id,
                share_type=n.share_type,
                kind="deferred",
                reason=f"deferred: {role} {who} is not migrated yet",
            )
        not_carried.append(attrs.asdict(n))
    paths = write_ocis_share_records(
        records, ctx.output("owncloud/shares/x").parent, overwrite=True
    )
    return {
        "carried": len(records.carried),
        "not_carried": not_carried,
        "losses": [attrs.asdict(x) for x in records.losses],
        "files": {k: str(v) for k, v in paths.items()},
    }


def _count_levels(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        for level, key in (
            ("id", "id"),
            ("path", "path_level"),
            ("etag", "etag"),
            ("mtime", "mtime"),
            ("size", "size"),
            ("checksum", "checksum"),
        ):
            if key in r:
                value = str(r[key]).split(":")[0]
                slot = out.setdefault(level, {})
                slot[value] = slot.get(value, 0) + 1
    return out


def _fidelity_markdown(report: Mapping[str, Any]) -> str:
    lines = [
        f"# ownCloud → oCIS fidelity ({report['layout']} layout, instance {report['instance']})",
        "",
        "| user | written | nodes | id | path | etag | mtime | size | checksum | pending |",
        "|---|---|---:|---|---|---|---|---|---|---:|",
    ]
    for user, s in report["users"].items():
        levels = s.get("levels", {})

        def fmt(level: str, levels: Mapping[str, Any] = levels) -> str:
            return ", ".join(
                f"{k} {v}" for k, v in sorted(levels.get(level, {}).items())
            )

        lines.append(
            f"| {user} | {'yes' if s.get('written') else 'no'} | {s.get('nodes', 0)} "
            f"| {fmt('id')} | {fmt('path')} | {fmt('etag')} | {fmt('mtime')} "
            f"| {fmt('size')} | {fmt('checksum')} | {s['pending']} |"
        )
    lines += [
        "",
        f"Files a sync client would download again: {len(report['redownload'])}",
    ]
    lines += [
        f"- {r['user']} {r['path'] or '/'}: {r['why']}" for r in report["redownload"]
    ]
    stray = [(u, s) for u, info in report["users"].items() for s in info["stray"]]
    if stray:
        lines += ["", "Rows not carried:"]
        lines += [
            f"- {u} {s['path']} (fileid {s['fileid']}): {s['why']}" for u, s in stray
        ]
    return "\n".join(lines) + "\n"


def _write_if_changed(path: os.PathLike[str] | str, body: bytes) -> None:
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
        if f.read() == body:
            return
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _passes_path(ctx: RecipeContext) -> str:
    return str(ctx.work / "owncloud" / "passes.jsonl")


def _record_pass(ctx: RecipeContext) -> None:
    planned = ctx.notes.get("planned")
    if not planned or not planned["files"]:
        return
    rounds = [r for r in ctx.ledger.rounds() if r.n == ctx.round and r.finished]
    if not rounds:
        return
    seconds = max(rounds[0].finished - rounds[0].started, 1e-3)  # type: ignore[operator]
    entry = {"round": ctx.round, "seconds": round(seconds, 3), **planned}
    with open(_passes_path(ctx), "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def _delta(ctx: RecipeContext) -> dict[str, Any]:
    planned = dict(ctx.notes.get("planned") or {"files": 0, "bytes": 0})
    passes = []
    with contextlib.suppress(FileNotFoundError), open(_passes_path(ctx)) as f:
        passes = [json.loads(line) for line in f if line.strip()]
    if passes and planned.get("files"):
        last = passes[-1]
        per_file = last["seconds"] / max(last["files"], 1)
        per_byte = last["seconds"] / max(last["bytes"], 1)
        planned["expected_seconds"] = round(
            max(planned["files"] * per_file, planned["bytes"] * per_byte), 1
        )
    else:
        planned["expected_seconds"] = 0.0 if not planned.get("files") else None
    return planned


@attrs.frozen(kw_only=True)
class SyncCheck:
    """What a sync client would download again after the migration.

    Attributes:
        checked: Files and folders compared (space roots included).
        redownload: Per node that differs in what a client keys on (id,
            etag, size, mtime): ``{"user", "path", "why"}``.
    """

    checked: int
    redownload: tuple[Mapping[str, str], ...]

    @property
    def ok(self) -> bool:
        """Nothing would be downloaded again."""
        return not self.redownload

    def to_dict(self) -> dict[str, Any]:
        """``{"checked", "redownload": [...], "ok"}``."""
        return {
            "checked": self.checked,
            "redownload": [dict(r) for r in self.redownload],
            "ok": self.ok,
        }


def owncloud_sync_check(
    options: OwncloudOptions, users: Iterable[str] | None = None
) -> SyncCheck:
    """Compare what a sync client keys on before (ownCloud) and after (the target).

    For every file and folder of the users' homes below ``files/``, and
    each space root: the node with the mapped id must exist at the target
    (read back from the target, never from the recipe's inputs), with the
    same etag, size and mtime. Run it after a pass, and again just before
    the clients are switched over.

    Args:
        options: The recipe's options (the source database, the target and
            its layout, the instance id, the user ids).
        users: The users to check (default: the options' cohort).

    Returns:
        The nodes checked and those a client would download again.

    Raises:
        PlanError: No instance id, an empty cohort, or an unreadable record.
        ValueError: A user has no home storage.
        RecordsError: The database cannot be read.
        StorageError: The target cannot be read.
    """
    from carmigrate.records import open_database
    from carmigrate.storage import open_store

    instance = _instance(options)
    user_ids = _parse_user_ids(options.user_ids)
    own = not isinstance(options.to, Store)
    target = open_store(options.to) if isinstance(options.to, str) else options.to
    try:
        layout = _Layout(options, target)
        rows: list[dict[str, Any]] = []
        with open_database(options.db) as db:
            for user in list(users) if users is not None else _cohort(db, options):
                home = read_owncloud_home(db, user, table_prefix=options.table_prefix)
                space = ocis_space_id(instance, user, user_ids)
                w = _Writer(options, None, layout, instance, home, space)
                rows += _fidelity_rows(w, w.view())
    finally:
        if own:
            target.close()
    return SyncCheck(checked=len(rows), redownload=tuple(_redownload(rows)))


OWNCLOUD: Final[Recipe[OwncloudOptions]] = register_recipe(
    Recipe(
        name="owncloud",
        summary="ownCloud 10 homes → oCIS spaces, by cohorts, ids and etags kept",
        description=(
            "Moves the homes of a cohort of users (--user, --group) from an ownCloud 10 "
            "instance (--db, --data) to a target (--to) as personal spaces, in the "
            "'spaces' layout or oCIS's 'decomposedfs'; a re-run is a delta pass. "
            "Writes owncloud/fidelity.json and .md and owncloud/idmap.jsonl in WORK."
        ),
        options=OwncloudOptions,
        make_plans=_make_plans,
        finish=_finish,
        unit_label="homes",
    )
)
"""The ``owncloud`` recipe (registered): ``carmigrate recipe owncloud``."""
