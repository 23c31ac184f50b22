"""ownCloud 10 shares (``oc_share`` rows) → the files of oCIS's JSON share managers (#17).

ownCloud 10 keeps every share in one table, ``oc_share``, one row per
share, with ``share_type`` saying what kind: 0 a user, 1 a group, 2 one
member's own row of a group share (its ``parent``; it holds that member's
``accepted`` state and ``file_target``), 3 a public link (the password
hash in ``share_with``), 6 and 7 federated shares. ``accepted`` is 0 for
accepted, 1 for pending and 2 for declined; ``permissions`` is a bit set
(1 read, 2 update, 4 create, 8 delete, 16 share); ``expiration`` is a
date (the share stays valid through that whole day); ``attributes`` is a
JSON list of ``[scope, key, enabled]`` triples.

oCIS (reva) has two JSON share managers whose persisted form this module
writes, so that a migration can hand them over:

* the user and group share manager ``json`` (``shares.json``): an object
  with ``shares``, a list of CS3 ``Share`` messages each encoded by
  protojson *into a string*; ``state``, a map from a recipient's CS3 user
  id (in Go's one-line text form) to a map from a share id (same form) to
  the recipient's ``ShareState`` number; and ``mount_point``, the same
  shape with a ``Reference`` (``{"path": …}``) per accepted share;
* the public link manager ``json`` (``publicshares.json``; the ``jsoncs3``
  public driver stores the same document in oCIS's metadata storage): an
  object from a link id to ``{"share": <protojson PublicShare string>,
  "password": <bcrypt hash or "">}``.

``ocis migrate shares`` and ``ocis migrate publicshares`` (from ``json``
to ``jsoncs3``, oCIS's defaults) carry both documents further. Two limits
of that path, read in reva's sources: the ``jsoncs3`` loader keeps the
per-user state and mount point of *user* shares only (a group member's
state is dropped: members see the group share pending); and the ``json``
manager itself looks ``state`` keys up by the exact text Go's protobuf
prints for a ``UserId``, which a given oCIS binary may print with two
spaces between fields instead of one (the migration command parses the
keys, so it is not affected). The README of the tests
(``tests/recipes/README-ocis-shares.md``) names the upstream files and
commits, and what could not be tested without a running oCIS.

Permissions are mapped as reva maps ownCloud's when it reads ``oc_share``
itself (its ``owncloudsql`` share managers: a role for the common sets,
else bit by bit):

| ownCloud ``permissions`` | CS3 ``ResourcePermissions`` fields set to true |
| --- | --- |
| 1 (read) | ``get_path get_quota initiate_file_download list_container list_recycle stat`` |
| 4 (create only: upload) | ``create_container get_path initiate_file_upload stat`` |
| 15 (read, update, create, delete) | the read fields, ``create_container delete initiate_file_upload move restore_recycle_item`` |
| any other set, bit 1 read | the read fields |
| bit 2 update | ``initiate_file_upload restore_recycle_item`` |
| bit 4 create | ``create_container initiate_file_upload stat``, and ``move`` with bit 2 |
| bit 8 delete | ``delete`` |
| bit 16 share | ``add_grant`` |
| 0, negative, above 31 | not carried (reva refuses them too) |

The share attribute ``permissions``/``download`` disabled is carried by
leaving ``initiate_file_download`` false; other attributes have no place
in a CS3 share and are listed as losses.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.errors import PlanError, RecordsError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from carmigrate.records import Database, Row

__all__ = [
    "OCIS_PUBLIC_SHARES_FILE",
    "OCIS_SHARES_FILE",
    "OcisResourceId",
    "OcisShareRecords",
    "OwncloudShare",
    "ShareLoss",
    "ShareNotCarried",
    "cs3_resource_permissions",
    "ocis_share_records",
    "read_owncloud_group_members",
    "read_owncloud_shares",
    "write_ocis_share_records",
]

OCIS_SHARES_FILE: Final = "shares.json"
"""The user/group share manager's file name (oCIS: ``<data>/storage/shares.json``)."""

OCIS_PUBLIC_SHARES_FILE: Final = "publicshares.json"
"""The public link manager's file name (oCIS: ``<data>/storage/publicshares.json``)."""

# ownCloud share types (lib/private/Share/Constants.php,
# DefaultShareProvider::SHARE_TYPE_USERGROUP).
_USER: Final = 0
_GROUP: Final = 1
_USERGROUP: Final = 2
_LINK: Final = 3
_GUEST: Final = 4
_CONTACT: Final = 5
_REMOTE: Final = 6
_REMOTE_GROUP: Final = 7

# ownCloud "accepted" values → CS3 ShareState numbers (PENDING 1, ACCEPTED 2,
# REJECTED 3). The json manager persists the enum as its number.
_STATES: Final = {0: 2, 1: 1, 2: 3}
_STATE_PENDING: Final = 1
_STATE_ACCEPTED: Final = 2
_OC_ACCEPTED: Final = 0

# ResourcePermissions fields in field-number order with their protojson names.
_PERMISSION_FIELDS: Final = (
    ("add_grant", "addGrant"),
    ("create_container", "createContainer"),
    ("delete", "delete"),
    ("get_path", "getPath"),
    ("get_quota", "getQuota"),
    ("initiate_file_download", "initiateFileDownload"),
    ("initiate_file_upload", "initiateFileUpload"),
    ("list_grants", "listGrants"),
    ("list_container", "listContainer"),
    ("list_file_versions", "listFileVersions"),
    ("list_recycle", "listRecycle"),
    ("move", "move"),
    ("remove_grant", "removeGrant"),
    ("purge_recycle", "purgeRecycle"),
    ("restore_file_version", "restoreFileVersion"),
    ("restore_recycle_item", "restoreRecycleItem"),
    ("stat", "stat"),
    ("update_grant", "updateGrant"),
    ("deny_grant", "denyGrant"),
)
_KNOWN_PERMISSIONS: Final = frozenset(name for name, _ in _PERMISSION_FIELDS)
_READ: Final = frozenset(
    {
        "get_path",
        "get_quota",
        "initiate_file_download",
        "list_container",
        "list_recycle",
        "stat",
    }
)
_UPLOADER: Final = frozenset(
    {"create_container", "get_path", "initiate_file_upload", "stat"}
)
_EDITOR: Final = _READ | {
    "create_container",
    "delete",
    "initiate_file_upload",
    "move",
    "restore_recycle_item",
}

# ownCloud's Hasher: "<version>|<password_hash()>"; version 1 is bcrypt.
_BCRYPT: Final = re.compile(r"\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}")
_SHARE_ID_NAMESPACE: Final = uuid.uuid5(
    uuid.NAMESPACE_URL, "carmigrate:owncloud:oc_share"
)
_COLUMNS: Final = (
    "id",
    "share_type",
    "share_with",
    "uid_owner",
    "uid_initiator",
    "parent",
    "item_type",
    "item_source",
    "item_target",
    "file_source",
    "file_target",
    "permissions",
    "stime",
    "accepted",
    "expiration",
    "token",
    "mail_send",
    "share_name",
    "attributes",
)


@attrs.frozen(kw_only=True)
class OwncloudShare:
    """One ``oc_share`` row, typed.

    Attributes:
        id: The row's id.
        share_type: 0 user, 1 group, 2 a group member's own row, 3 public
            link, 6 federated, 7 federated group (others are unknown here).
        share_with: The recipient's uid or gid; for a link the password
            hash (``1|$2y$…``) or ``None``; for a federated share the
            remote ``user@server``.
        uid_owner: The uid of the file's owner.
        uid_initiator: The uid of whoever created the share (differs from
            the owner for a reshare); ``None`` in very old rows.
        parent: For a member's row (type 2) the group share's id.
        item_type: ``"file"`` or ``"folder"`` (other values come from
            apps that no longer exist).
        item_source: The shared item's id as text.
        item_target: The legacy item target.
        file_source: The shared file's ``oc_filecache.fileid``.
        file_target: Where the recipient sees it (``/Photos``).
        permissions: The permission bits.
        stime: When the share was made (Unix seconds).
        accepted: 0 accepted, 1 pending, 2 declined.
        expiration: The expiry date as stored (the database's type: a
            naive ``datetime``, or text ``YYYY-MM-DD HH:MM:SS``).
        token: A link's token (the ``/s/<token>`` URL).
        mail_send: 1 if the recipient was mailed.
        share_name: A link's name.
        attributes: The share attributes as stored (JSON text).
        in_filecache: Whether ``file_source`` has an ``oc_filecache`` row
            (``None`` if not checked).
    """

    id: int
    share_type: int
    share_with: str | None
    uid_owner: str
    uid_initiator: str | None
    parent: int | None
    item_type: str
    item_source: str | None
    item_target: str | None
    file_source: int | None
    file_target: str | None
    permissions: int
    stime: int
    accepted: int
    expiration: dt.datetime | str | None
    token: str | None
    mail_send: int
    share_name: str | None
    attributes: str | None
    in_filecache: bool | None = None


@attrs.frozen
class OcisResourceId:
    """A CS3 resource id: where a migrated file lives in oCIS.

    Attributes:
        storage_id: The storage provider's id.
        space_id: The space's id (a personal space: its owner's id).
        opaque_id: The file's id in the space.
    """

    storage_id: str
    space_id: str
    opaque_id: str


@attrs.frozen(kw_only=True)
class ShareNotCarried:
    """An ``oc_share`` row that is not in the oCIS documents, and why.

    Attributes:
        share_id: The row's ``id``.
        share_type: The row's ``share_type``.
        kind: A short machine name: ``deferred`` (the file is not
            migrated yet: carry the share in a later run), ``dangling``
            (the file is gone), ``federated``, ``unsupported_type``,
            ``no_user``, ``no_group``, ``bad_row``, ``password``,
            ``group_not_carried``.
        reason: What a person reads.
    """

    share_id: int
    share_type: int
    kind: str
    reason: str


@attrs.frozen(kw_only=True)
class ShareLoss:
    """Something of a carried share that oCIS does not get.

    Attributes:
        share_id: The ``oc_share`` row's ``id``.
        what: What is lost (``attribute permissions.print``,
            ``mount point``, ``state``, ``member state``).
        reason: Why, for a person.
    """

    share_id: int
    what: str
    reason: str


@attrs.frozen(kw_only=True)
class OcisShareRecords:
    """The two oCIS share documents and the account of every input row.

    Attributes:
        shares: The user/group share manager's document (``shares.json``),
            ready for ``json.dumps``.
        public_shares: The public link manager's document
            (``publicshares.json``).
        carried: ``oc_share`` id → CS3 share id, for every row carried (a
            group member's row maps to its group share's id).
        not_carried: The rows not carried, in id order.
        losses: What carried shares lose, in id order.
    """

    shares: dict[str, Any]
    public_shares: dict[str, Any]
    carried: Mapping[int, str]
    not_carried: tuple[ShareNotCarried, ...]
    losses: tuple[ShareLoss, ...]


# -- reading ------------------------------------------------------------------


def read_owncloud_shares(
    db: Database,
    *,
    table_prefix: str = "oc_",
    owners: Iterable[str] | None = None,
    check_files: bool = True,
) -> list[OwncloudShare]:
    """Read ``<prefix>share`` rows, in id order.

    Args:
        db: The ownCloud database.
        table_prefix: ownCloud's ``dbtableprefix``.
        owners: Only the shares of files these uids own (every share by
            default). A group member's row has its group share's owner.
        check_files: Look each ``file_source`` up in ``<prefix>filecache``
            and set [in_filecache][carmigrate.recipes.OwncloudShare];
            ``False`` leaves it ``None``.

    Returns:
        The rows, typed.

    Raises:
        RecordsError: A table or column is missing, the database failed,
            or a row has a value of the wrong type (named by table and id).
    """
    table = f"{table_prefix}share"
    t = db.table(table)
    where = None
    if owners is not None:
        where = t.c.uid_owner.in_(sorted(set(owners)))
    shares = [
        _share(table, r) for r in db.iter_rows(table, where=where, columns=_COLUMNS)
    ]
    if not check_files:
        return shares
    wanted = {s.file_source for s in shares if s.file_source is not None}
    found = {
        int(r["fileid"])
        for r in db.select_in(
            f"{table_prefix}filecache", ["fileid"], [(f,) for f in wanted]
        )
    }
    return [
        attrs.evolve(
            s, in_filecache=None if s.file_source is None else s.file_source in found
        )
        for s in shares
    ]


def read_owncloud_group_members(
    db: Database, *, table_prefix: str = "oc_"
) -> dict[str, tuple[str, ...]]:
    """Read ``<prefix>group_user``: gid → its members' uids (sorted).

    Raises:
        RecordsError: The table is missing or the database failed.
    """
    table = f"{table_prefix}group_user"
    out: dict[str, list[str]] = {}
    for r in db.iter_rows(table, columns=["gid", "uid"]):
        out.setdefault(str(r["gid"]), []).append(str(r["uid"]))
    return {g: tuple(sorted(m)) for g, m in sorted(out.items())}


def _share(table: str, r: Row) -> OwncloudShare:
    def text(name: str) -> str | None:
        v = r[name]
        return None if v is None else str(v)

    def number(name: str, *, default: int | None = None) -> int | None:
        v = r[name]
        if v is None or v == "":
            return default
        try:
            return int(v)
        except (TypeError, ValueError):
            msg = f"{table} row {r['id']!r}: {name} {v!r} is not a number"
            raise RecordsError(msg, table=table) from None

    def required(name: str) -> int:
        v = number(name)
        if v is None:
            msg = f"{table} row {r['id']!r}: {name} is NULL"
            raise RecordsError(msg, table=table)
        return v

    expiration = r["expiration"]
    if expiration is not None and not isinstance(expiration, dt.datetime):
        expiration = str(expiration)
    return OwncloudShare(
        id=required("id"),
        share_type=required("share_type"),
        share_with=text("share_with"),
        uid_owner=text("uid_owner") or "",
        uid_initiator=text("uid_initiator"),
        parent=number("parent"),
        item_type=text("item_type") or "",
        item_source=text("item_source"),
        item_target=text("item_target"),
        file_source=number("file_source"),
        file_target=text("file_target"),
        permissions=required("permissions"),
        stime=number("stime", default=0) or 0,
        accepted=number("accepted", default=0) or 0,
        expiration=expiration,
        token=text("token"),
        mail_send=number("mail_send", default=0) or 0,
        share_name=text("share_name"),
        attributes=text("attributes"),
    )


# -- mapping ------------------------------------------------------------------


def cs3_resource_permissions(permissions: int) -> frozenset[str]:
    """The CS3 ``ResourcePermissions`` fields an ownCloud permission set grants.

    Follows reva's own reading of ``oc_share`` (see the module's table).

    Args:
        permissions: ownCloud's bits (1 read, 2 update, 4 create, 8 delete,
            16 share), 1 to 31.

    Returns:
        The names of the fields that are true (proto field names).

    Raises:
        PlanError: ``permissions`` is not between 1 and 31.
    """
    if not 1 <= permissions <= 31:
        msg = f"ownCloud share permissions {permissions} are not between 1 and 31"
        raise PlanError(msg)
    if permissions == 1:
        return _READ
    if permissions == 4:
        return _UPLOADER
    if permissions == 15:
        return _EDITOR
    out: set[str] = set()
    if permissions & 1:
        out |= _READ
    if permissions & 2:
        out |= {"initiate_file_upload", "restore_recycle_item"}
    if permissions & 4:
        out |= {"stat", "create_container", "initiate_file_upload"}
        if permissions & 2:
            out.add("move")
    if permissions & 8:
        out.add("delete")
    if permissions & 16:
        out.add("add_grant")
    return frozenset(out)


def ocis_share_records(
    shares: Iterable[OwncloudShare],
    *,
    instance_id: str,
    idp: str,
    resource_id: Callable[[int], OcisResourceId | None],
    user_id: Callable[[str], str | None],
    group_id: Callable[[str], str | None],
    group_members: Mapping[str, Iterable[str]] | None = None,
    group_idp: str | None = None,
    timezone: dt.tzinfo = dt.UTC,
) -> OcisShareRecords:
    """Map ``oc_share`` rows to the documents of oCIS's JSON share managers.

    Every row ends in exactly one of ``carried`` or ``not_carried``.
    User (0) and group (1) shares go to ``shares``; a group member's own
    row (2) becomes that member's state (and, if accepted, mount point) of
    its group share; links (3) go to ``public_shares``. Federated shares
    (6, 7), guest and contact shares, and unknown types are not carried.
    The output depends on the input only: share ids are
    ``<storage_id>:<space_id>:<uuid5(instance_id, row id)>`` (the form
    oCIS's ``jsoncs3`` manager routes by), times come from ``stime``.

    Args:
        shares: The rows ([read_owncloud_shares][carmigrate.recipes.read_owncloud_shares]),
            with the group share of every member row among them.
        instance_id: ownCloud's ``instanceid`` (``config.php``), the
            namespace of the share ids.
        idp: The issuer of oCIS's user ids (``UserId.idp``).
        resource_id: ``file_source`` → where the file is in oCIS, or
            ``None`` if it is not migrated (yet): the share is then
            deferred.
        user_id: ownCloud uid → oCIS user id (``UserId.opaque_id``), or
            ``None`` if the user has none.
        group_id: ownCloud gid → oCIS group id, or ``None``.
        group_members: gid → member uids. ownCloud shows a member with
            no row of their own the group share's state; given this, a
            group share accepted in ownCloud is recorded accepted for
            each such member (else oCIS shows it pending, a loss).
        group_idp: The issuer of group ids (``idp`` by default).
        timezone: The ownCloud server's timezone, in which ``expiration``
            dates were stored.

    Returns:
        The documents and the account of every row.

    Raises:
        PlanError: ``instance_id`` or ``idp`` is empty, two rows have the
            same id, or a callback returned a value of the wrong type.
    """
    if not instance_id:
        raise PlanError("ocis_share_records: instance_id is empty")
    if not idp:
        raise PlanError("ocis_share_records: idp is empty")
    m = _Mapper(
        instance_id=instance_id,
        idp=idp,
        group_idp=group_idp or idp,
        resource_id=resource_id,
        user_id=user_id,
        group_id=group_id,
        group_members=group_members,
        timezone=timezone,
    )
    rows: dict[int, OwncloudShare] = {}
    for s in shares:
        if s.id in rows:
            msg = f"ocis_share_records: oc_share id {s.id} is given twice"
            raise PlanError(msg)
        rows[s.id] = s
    ordered = [rows[i] for i in sorted(rows)]
    for s in ordered:
        if s.share_type != _USERGROUP:
            m.top(s)
    members = [s for s in ordered if s.share_type == _USERGROUP]
    for s in members:
        m.member(s, rows.get(s.parent) if s.parent is not None else None)
    m.implicit_members()
    return m.result()


def _text_proto_string(value: str) -> str:
    """A string as Go's protobuf text format writes it (quoted, escaped)."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


@attrs.define
class _Mapper:
    instance_id: str
    idp: str
    group_idp: str
    resource_id: Callable[[int], OcisResourceId | None]
    user_id: Callable[[str], str | None]
    group_id: Callable[[str], str | None]
    group_members: Mapping[str, Iterable[str]] | None
    timezone: dt.tzinfo
    shares: list[tuple[int, str]] = attrs.field(factory=list)
    public: dict[str, dict[str, str]] = attrs.field(factory=dict)
    state: dict[str, dict[str, int]] = attrs.field(factory=dict)
    mount_point: dict[str, dict[str, dict[str, str]]] = attrs.field(factory=dict)
    carried: dict[int, str] = attrs.field(factory=dict)
    not_carried: list[ShareNotCarried] = attrs.field(factory=list)
    losses: list[ShareLoss] = attrs.field(factory=list)
    # carried group shares: row id → (row, CS3 id, uids with their own row)
    groups: dict[int, tuple[OwncloudShare, str, set[str]]] = attrs.field(factory=dict)
    user_ids: dict[str, str | None] = attrs.field(factory=dict)

    # -- helpers --------------------------------------------------------------

    def skip(self, s: OwncloudShare, kind: str, reason: str) -> None:
        self.not_carried.append(
            ShareNotCarried(
                share_id=s.id, share_type=s.share_type, kind=kind, reason=reason
            )
        )

    def lose(self, s: OwncloudShare, what: str, reason: str) -> None:
        self.losses.append(ShareLoss(share_id=s.id, what=what, reason=reason))

    def uid(self, uid: str) -> str | None:
        if uid not in self.user_ids:
            self.user_ids[uid] = _checked_id(f"user_id({uid!r})", self.user_id(uid))
        return self.user_ids[uid]

    def user(self, opaque: str) -> dict[str, Any]:
        # cs3/identity/user/v1beta1/resources.proto UserId: idp 1, opaque_id 2,
        # type 3; protojson names, the enum by name.
        return {"idp": self.idp, "opaqueId": opaque, "type": "USER_TYPE_PRIMARY"}

    def user_key(self, opaque: str) -> str:
        # Go's UserId.String(): one-line text format, fields in number order.
        return (
            f"idp:{_text_proto_string(self.idp)} "
            f"opaque_id:{_text_proto_string(opaque)} type:USER_TYPE_PRIMARY"
        )

    def share_id(self, s: OwncloudShare, rid: OcisResourceId) -> str:
        u = uuid.uuid5(_SHARE_ID_NAMESPACE, f"{self.instance_id}:{s.id}")
        return f"{rid.storage_id}:{rid.space_id}:{u}"

    def common(
        self, s: OwncloudShare
    ) -> tuple[OcisResourceId, str, str, frozenset[str]] | None:
        """Checks every carried kind shares: file, owner, creator, permissions."""
        if s.item_type not in ("file", "folder"):
            self.skip(
                s, "bad_row", f"item_type {s.item_type!r} is not a file or folder"
            )
            return None
        if s.file_source is None:
            self.skip(s, "dangling", "no file_source")
            return None
        if s.in_filecache is False:
            why = f"dangling: file_source {s.file_source} has no oc_filecache row"
            self.skip(s, "dangling", why)
            return None
        if not 1 <= s.permissions <= 31:
            why = f"permissions {s.permissions} are not between 1 and 31"
            self.skip(s, "bad_row", why)
            return None
        permissions = self.attributes(s, cs3_resource_permissions(s.permissions))
        if permissions is None:
            return None
        owner = self.uid(s.uid_owner)
        if owner is None:
            self.skip(s, "no_user", f"owner {s.uid_owner!r} has no oCIS user")
            return None
        initiator = s.uid_initiator or s.uid_owner
        creator = self.uid(initiator)
        if creator is None:
            self.skip(s, "no_user", f"creator {initiator!r} has no oCIS user")
            return None
        rid: object = self.resource_id(s.file_source)
        if rid is None:
            why = f"deferred: file {s.file_source} not in this cohort"
            self.skip(s, "deferred", why)
            return None
        if not isinstance(rid, OcisResourceId):
            msg = (
                f"ocis_share_records: resource_id({s.file_source}) returned "
                f"{rid!r}, not an OcisResourceId"
            )
            raise PlanError(msg)
        return rid, owner, creator, permissions

    def attributes(
        self, s: OwncloudShare, permissions: frozenset[str]
    ) -> frozenset[str] | None:
        if s.attributes is None or s.attributes.strip() in ("", "null", "[]"):
            return permissions
        triples = _attribute_triples(s.attributes)
        if triples is None:
            why = f"attributes {s.attributes!r} are not ownCloud share attributes"
            self.skip(s, "bad_row", why)
            return None
        for scope, key, enabled in triples:
            if (scope, key) == ("permissions", "download"):
                if enabled is False:
                    permissions = permissions - {"initiate_file_download"}
                continue
            self.lose(
                s,
                f"attribute {scope}.{key}",
                f"CS3 shares have no place for the attribute {scope}.{key}={enabled!r}",
            )
        return permissions

    def expiration(self, s: OwncloudShare) -> dict[str, Any] | None:
        e = s.expiration
        if e is None or e == "":
            return None
        if isinstance(e, str):
            try:
                e = dt.datetime.fromisoformat(e.strip())
            except ValueError:
                self.lose(s, "expiration", f"expiration {e!r} is not a date")
                return None
        # ownCloud keeps a share through its whole expiry date (Manager::
        # shareHasExpired compares with "today"); reva expires it once the
        # timestamp is past: the last second of that day.
        day = e.date() if e.tzinfo is None else e.astimezone(self.timezone).date()
        end = dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=self.timezone)
        return _timestamp(int(end.timestamp()))

    def recipient_state(
        self,
        s: OwncloudShare,
        cs3_id: str,
        uid: str,
        accepted: int,
        target: str | None,
    ) -> None:
        opaque = self.uid(uid)
        if opaque is None:
            self.lose(s, "member state", f"member {uid!r} has no oCIS user")
            return
        state = _STATES.get(accepted)
        if state is None:
            # Still written: jsoncs3's loader indexes a user's received
            # shares from these entries only.
            self.lose(s, "state", f"accepted {accepted} is not 0, 1 or 2: pending")
            state = _STATE_PENDING
        key = self.user_key(opaque)
        share_key = f"opaque_id:{_text_proto_string(cs3_id)}"
        self.state.setdefault(key, {})[share_key] = state
        if state != _STATE_ACCEPTED or not target:
            return
        parts = [p for p in target.split("/") if p]
        if not parts:
            return
        if len(parts) > 1:
            self.lose(
                s,
                "mount point",
                f"{target!r} is mounted as {parts[-1]!r}: oCIS mounts shares by name",
            )
        self.mount_point.setdefault(key, {})[share_key] = {"path": parts[-1]}

    # -- kinds ----------------------------------------------------------------

    def top(self, s: OwncloudShare) -> None:
        if s.share_type in (_REMOTE, _REMOTE_GROUP):
            why = (
                f"federated share (type {s.share_type}) with {s.share_with!r}: "
                "the JSON share managers hold no federated shares; share again in oCIS"
            )
            self.skip(s, "federated", why)
            return
        if s.share_type not in (_USER, _GROUP, _LINK):
            name = {_GUEST: "guest", _CONTACT: "contact"}.get(s.share_type, "unknown")
            why = f"{name} share type {s.share_type} has no oCIS share manager"
            self.skip(s, "unsupported_type", why)
            return
        if s.share_type == _LINK:
            self.link(s)
            return
        if not s.share_with:
            self.skip(s, "bad_row", "no recipient (share_with is empty)")
            return
        grantee: dict[str, Any]
        if s.share_type == _USER:
            if s.share_with in (s.uid_owner, s.uid_initiator):
                why = "the recipient is the owner or the creator (reva refuses that)"
                self.skip(s, "bad_row", why)
                return
            recipient = self.uid(s.share_with)
            if recipient is None:
                self.skip(s, "no_user", f"recipient {s.share_with!r} has no oCIS user")
                return
            grantee = {"type": "GRANTEE_TYPE_USER", "userId": self.user(recipient)}
        else:
            call = f"group_id({s.share_with!r})"
            gid = _checked_id(call, self.group_id(s.share_with))
            if gid is None:
                self.skip(s, "no_group", f"group {s.share_with!r} has no oCIS group")
                return
            grantee = {
                "type": "GRANTEE_TYPE_GROUP",
                "groupId": {"idp": self.group_idp, "opaqueId": gid},
            }
        got = self.common(s)
        if got is None:
            return
        rid, owner, creator, permissions = got
        cs3_id = self.share_id(s, rid)
        # cs3/sharing/collaboration/v1beta1/resources.proto Share, in field order.
        share: dict[str, Any] = {
            "id": {"opaqueId": cs3_id},
            "resourceId": _resource(rid),
            "permissions": {"permissions": _permissions(permissions)},
            "grantee": grantee,
            "owner": self.user(owner),
            "creator": self.user(creator),
            "ctime": _timestamp(s.stime),
            "mtime": _timestamp(s.stime),
        }
        expiration = self.expiration(s)
        if expiration is not None:
            share["expiration"] = expiration
        self.shares.append((s.id, _protojson(share)))
        self.carried[s.id] = cs3_id
        if s.share_type == _USER:
            self.recipient_state(s, cs3_id, s.share_with, s.accepted, s.file_target)
        else:
            self.groups[s.id] = (s, cs3_id, set())

    def link(self, s: OwncloudShare) -> None:
        if not s.token:
            self.skip(s, "bad_row", "public link without a token")
            return
        password = ""
        if s.share_with:
            version, sep, hashed = s.share_with.partition("|")
            if not (sep and version == "1" and _BCRYPT.fullmatch(hashed)):
                why = (
                    "the link's password hash is in a legacy ownCloud format "
                    "(salted or SHA-1) that oCIS's bcrypt check cannot verify"
                )
                self.skip(s, "password", why)
                return
            password = hashed
        got = self.common(s)
        if got is None:
            return
        rid, owner, creator, permissions = got
        cs3_id = self.share_id(s, rid)
        # cs3/sharing/link/v1beta1/resources.proto PublicShare, in field order.
        share: dict[str, Any] = {
            "id": {"opaqueId": cs3_id},
            "token": s.token,
            "resourceId": _resource(rid),
            "permissions": {"permissions": _permissions(permissions)},
            "owner": self.user(owner),
            "creator": self.user(creator),
            "ctime": _timestamp(s.stime),
            "mtime": _timestamp(s.stime),
        }
        if password:
            share["passwordProtected"] = True
        expiration = self.expiration(s)
        if expiration is not None:
            share["expiration"] = expiration
        share["displayName"] = s.share_name or s.token
        self.public[cs3_id] = {"share": _protojson(share), "password": password}
        self.carried[s.id] = cs3_id

    def member(self, s: OwncloudShare, parent: OwncloudShare | None) -> None:
        if parent is None or parent.share_type != _GROUP:
            why = f"its group share {s.parent!r} is not among the rows given"
            self.skip(s, "group_not_carried", why)
            return
        group = self.groups.get(parent.id)
        if group is None:
            why = f"its group share {parent.id} is not carried"
            self.skip(s, "group_not_carried", why)
            return
        if not s.share_with:
            self.skip(s, "bad_row", "no member (share_with is empty)")
            return
        _, cs3_id, seen = group
        if self.uid(s.share_with) is None:
            self.skip(s, "no_user", f"member {s.share_with!r} has no oCIS user")
            return
        seen.add(s.share_with)
        # A member row with no permissions is a legacy "removed from self"
        # (core migration Version20180302155233 turned those into declined).
        accepted = 2 if s.permissions == 0 else s.accepted
        self.recipient_state(s, cs3_id, s.share_with, accepted, s.file_target)
        self.carried[s.id] = cs3_id

    def implicit_members(self) -> None:
        for gshare, cs3_id, seen in self.groups.values():
            if gshare.accepted != _OC_ACCEPTED:
                continue  # pending in ownCloud is oCIS's default too
            if self.group_members is None:
                self.lose(
                    gshare,
                    "member state",
                    "members without their own row see this share accepted in "
                    "ownCloud; oCIS shows it pending (group members not given)",
                )
                continue
            members = sorted(set(self.group_members.get(gshare.share_with or "", ())))
            for uid in members:
                if uid in seen or uid in (gshare.uid_owner, gshare.uid_initiator):
                    continue
                self.recipient_state(
                    gshare, cs3_id, uid, gshare.accepted, gshare.file_target
                )

    def result(self) -> OcisShareRecords:
        shares_doc: dict[str, Any] = {
            "state": {
                k: dict(sorted(v.items())) for k, v in sorted(self.state.items())
            },
            "mount_point": {
                k: dict(sorted(v.items())) for k, v in sorted(self.mount_point.items())
            },
            "shares": [text for _, text in sorted(self.shares)],
        }
        return OcisShareRecords(
            shares=shares_doc,
            public_shares=dict(sorted(self.public.items())),
            carried=dict(sorted(self.carried.items())),
            not_carried=tuple(sorted(self.not_carried, key=lambda n: n.share_id)),
            losses=tuple(self.losses),
        )


def _checked_id(call: str, got: object) -> str | None:
    """A callback's answer: a non-empty string or ``None``."""
    if got is None or (isinstance(got, str) and got):
        return got
    msg = f"ocis_share_records: {call} returned {got!r}, not an id or None"
    raise PlanError(msg)


def _attribute_triples(text: str) -> list[tuple[str, str, object]] | None:
    """Parse ownCloud's stored attributes: ``[[scope, key, enabled], …]``.

    The API's form (``[{"scope": …, "key": …, "enabled": …}]``) is read too.
    """
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, list):
        return None
    out: list[tuple[str, str, object]] = []
    for item in data:
        if isinstance(item, list) and len(item) == 3:
            scope, key, enabled = item
        elif isinstance(item, dict) and {"scope", "key", "enabled"} <= item.keys():
            scope, key, enabled = item["scope"], item["key"], item["enabled"]
        else:
            return None
        if not isinstance(scope, str) or not isinstance(key, str):
            return None
        out.append((scope, key, enabled))
    return out


def _resource(rid: OcisResourceId) -> dict[str, str]:
    # cs3/storage/provider/v1beta1/resources.proto ResourceId: storage_id 1,
    # opaque_id 2, space_id 3.
    out = {}
    if rid.storage_id:
        out["storageId"] = rid.storage_id
    if rid.opaque_id:
        out["opaqueId"] = rid.opaque_id
    if rid.space_id:
        out["spaceId"] = rid.space_id
    return out


def _permissions(names: frozenset[str]) -> dict[str, bool]:
    unknown = names - _KNOWN_PERMISSIONS
    if unknown:  # pragma: no cover - the table above only names known fields
        msg = f"unknown ResourcePermissions fields {sorted(unknown)}"
        raise PlanError(msg)
    return {camel: True for name, camel in _PERMISSION_FIELDS if name in names}


def _timestamp(seconds: int) -> dict[str, Any]:
    # cs3/types/v1beta1/types.proto Timestamp: seconds is uint64, which
    # protojson writes as a string; nanos (0 here) is omitted.
    return {"seconds": str(max(seconds, 0))}


def _protojson(message: Mapping[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


# -- writing ------------------------------------------------------------------


def write_ocis_share_records(
    records: OcisShareRecords,
    folder: str | os.PathLike[str],
    *,
    shares_name: str = OCIS_SHARES_FILE,
    public_shares_name: str = OCIS_PUBLIC_SHARES_FILE,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write the two documents into ``folder``, each whole or not at all.

    Each file is written to a temporary file in ``folder``, synced and
    renamed over the target. A file that already holds exactly these
    bytes is left as it is, so a re-run is harmless.

    Args:
        records: What [ocis_share_records][carmigrate.recipes.ocis_share_records]
            returned.
        folder: Where to write (created if missing); oCIS reads
            ``<OCIS_BASE_DATA_PATH>/storage/`` by default.
        shares_name: The user/group share file's name.
        public_shares_name: The public link file's name.
        overwrite: Replace a file that holds something else (by default
            that is refused: the file may hold shares made in oCIS).

    Returns:
        ``{"shares": path, "public_shares": path}``.

    Raises:
        PlanError: A file exists with other content and ``overwrite`` is
            false, or a name is not a plain file name.
        OSError: Writing failed.
    """
    base = Path(folder)
    targets = {"shares": shares_name, "public_shares": public_shares_name}
    for name in targets.values():
        if not name or Path(name).name != name or name in (".", ".."):
            msg = f"write_ocis_share_records: {name!r} is not a plain file name"
            raise PlanError(msg)
    if shares_name == public_shares_name:
        msg = f"write_ocis_share_records: both documents would be {shares_name!r}"
        raise PlanError(msg)
    documents = {"shares": records.shares, "public_shares": records.public_shares}
    data = {
        k: (
            json.dumps(documents[k], ensure_ascii=False, separators=(",", ":")) + "\n"
        ).encode()
        for k in targets
    }
    paths = {k: base / name for k, name in targets.items()}
    for k, path in paths.items():
        if not overwrite and path.exists() and path.read_bytes() != data[k]:
            msg = f"{path} exists with other content; pass overwrite=True to replace it"
            raise PlanError(msg)
    base.mkdir(parents=True, exist_ok=True)
    for k, path in paths.items():
        if path.exists() and path.read_bytes() == data[k]:
            continue
        _write_atomically(path, data[k])
    return paths


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
