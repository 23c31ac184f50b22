"""ownCloud 10 shares → oCIS's JSON share manager documents (#17), on a built oc_share.

The expected values follow the upstream sources named in
README-ocis-shares.md; the comments cite them as ``repo file:line`` at the
commits listed there (reva = owncloud/reva 457151e1, core = owncloud/core
0db82f53, cs3apis = cs3org/cs3apis 0b245d67).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import attrs
import pytest
from owncloud_instance import DDL

from carmigrate.errors import PlanError
from carmigrate.recipes._ocis_shares import (
    OCIS_PUBLIC_SHARES_FILE,
    OCIS_SHARES_FILE,
    OcisResourceId,
    OcisShareRecords,
    OwncloudShare,
    cs3_resource_permissions,
    ocis_share_records,
    read_owncloud_group_members,
    read_owncloud_shares,
    write_ocis_share_records,
)
from carmigrate.records import open_database

IDP = "https://ocis.example.test"
INSTANCE = "oc6tx1ep9uvh"
STIME = 1_700_000_000
STORAGE = "1284d238-aa92-42ce-bdc4-0b0000009157"
USERS = {
    "alice": "u-alice",
    "bob": "u-bob",
    "carol": "u-carol",
    "dave": "u-dave",
    "erin": "u-erin",
    "frank": "u-frank",
    "gina": "u-gina",
}
GROUPS = {"eng": "g-eng"}
MEMBERS = {"eng": ("bob", "erin", "frank", "gina")}
# A PHP password_hash() bcrypt hash behind ownCloud's "1|" version prefix
# (core lib/private/Security/Hasher.php:79).
BCRYPT = "$2y$10$7sZJiT0aFVDIy5YB0Eo6Ee1sLwX9yCTu7ZPp4ISmEDZQmQ6hSMXKa"
SHA1_HASH = hashlib.sha1(b"secret", usedforsecurity=False).hexdigest()

# fileid → (owner, path); 15 is not migrated in this cohort, 999 has no row.
FILES = {
    10: ("alice", "files/Photos"),
    11: ("alice", "files/Projects"),
    12: ("alice", "files/Notes.md"),
    13: ("alice", "files/Manual.pdf"),
    14: ("carol", "files/Budget.ods"),
    15: ("alice", "files/Later.txt"),
    16: ("alice", "files/Old link.txt"),
}
NOT_MIGRATED = {15}


def row(**values: Any) -> dict[str, Any]:
    """An oc_share row; the columns left out take the DDL's defaults."""
    return values


# One row per kind.
SHARES: list[dict[str, Any]] = [
    # 1 user share, accepted (core lib/private/Share/Constants.php:49: 0 = accepted)
    row(id=1, share_type=0, share_with="bob", uid_owner="alice", file_source=10,
        item_type="folder", file_target="/Photos", permissions=31, accepted=0),
    # 2 group share, accepted at the group level; 3-5 its members' own rows
    row(id=2, share_type=1, share_with="eng", uid_owner="alice", file_source=11,
        item_type="folder", file_target="/Projects", permissions=15, accepted=0),
    row(id=3, share_type=2, share_with="bob", uid_owner="alice", parent=2,
        file_source=11, item_type="folder", file_target="/Projects (alice)",
        permissions=15, accepted=0),
    row(id=4, share_type=2, share_with="erin", uid_owner="alice", parent=2,
        file_source=11, item_type="folder", file_target="/Projects",
        permissions=15, accepted=2),
    row(id=5, share_type=2, share_with="frank", uid_owner="alice", parent=2,
        file_source=11, item_type="folder", file_target="/Projects",
        permissions=15, accepted=1),
    # 6 bob reshares alice's Photos to carol, read only, pending
    row(id=6, share_type=0, share_with="carol", uid_owner="alice",
        uid_initiator="bob", parent=1, file_source=10, item_type="folder",
        file_target="/Shared/Photos", permissions=1, accepted=1),
    # 7 public link with a password, an expiry date, a token and a name
    row(id=7, share_type=3, share_with="1|" + BCRYPT, uid_owner="alice",
        file_source=12, item_type="file", file_target="/Notes.md", permissions=1,
        token="Zq8wP3sLx7Rk2Vn", expiration="2027-01-31 00:00:00",
        share_name="Notes for the board"),
    # 8 download disabled, stored as core writes attributes (DefaultShareProvider
    # .php:1335-1348: [[scope, key, enabled]]), plus one CS3 cannot hold
    row(id=8, share_type=0, share_with="dave", uid_owner="alice", file_source=13,
        item_type="file", file_target="/Manual.pdf", permissions=17, accepted=0,
        attributes='[["permissions","download",false],["richdocuments","watermark",true]]'),
    # 9 federated
    row(id=9, share_type=6, share_with="eve@cloud.example.net", uid_owner="carol",
        file_source=14, item_type="file", file_target="/Budget.ods", permissions=17),
    # 10 dangling: no oc_filecache row 999
    row(id=10, share_type=0, share_with="bob", uid_owner="alice", file_source=999,
        item_type="file", file_target="/Old.txt", permissions=17),
    # 11 a file of a later cohort
    row(id=11, share_type=0, share_with="bob", uid_owner="alice", file_source=15,
        item_type="file", file_target="/Later.txt", permissions=17, accepted=0),
    # 12 link whose password is a legacy SHA-1 (Hasher.php:113)
    row(id=12, share_type=3, share_with=SHA1_HASH, uid_owner="alice",
        file_source=16, item_type="file", permissions=1, token="OldToken1234567"),
    # 13 guest share type
    row(id=13, share_type=4, share_with="guest@example.org", uid_owner="alice",
        file_source=12, item_type="file", permissions=1),
    # 14 member row of a group share that is not in the table
    row(id=14, share_type=2, share_with="bob", uid_owner="alice", parent=77,
        file_source=11, item_type="folder", permissions=15),
    # 15 upload-only link without a password
    row(id=15, share_type=3, uid_owner="alice", file_source=11, item_type="folder",
        permissions=4, token="DropZone1234567", share_name=None),
    # 16 the API's attribute form, download disabled, read + update
    row(id=16, share_type=0, share_with="erin", uid_owner="alice", file_source=12,
        item_type="file", file_target="/Notes.md", permissions=3, accepted=0,
        attributes='[{"scope":"permissions","key":"download","enabled":false}]'),
]  # fmt: skip


def build(path: Path, shares: list[dict[str, Any]] = SHARES) -> Path:
    con = sqlite3.connect(path)
    con.executescript(DDL)
    for fileid, (owner, p) in FILES.items():
        con.execute(
            "INSERT INTO oc_filecache (fileid, storage, path, path_hash, name)"
            " VALUES (?,?,?,?,?)",
            (
                fileid,
                1 if owner == "alice" else 2,
                p,
                hashlib.md5(p.encode(), usedforsecurity=False).hexdigest(),
                p.rsplit("/", 1)[-1],
            ),
        )
    for gid, members in MEMBERS.items():
        for uid in members:
            con.execute("INSERT INTO oc_group_user (gid, uid) VALUES (?,?)", (gid, uid))
    for given in shares:
        values = {"uid_initiator": given["uid_owner"], "stime": STIME, **given}
        values["item_source"] = str(values["file_source"])
        con.execute(
            f"INSERT INTO oc_share ({', '.join(values)})"
            f" VALUES ({', '.join('?' * len(values))})",
            tuple(values.values()),
        )
    con.commit()
    con.close()
    return path


def rid(fileid: int) -> OcisResourceId | None:
    if fileid in NOT_MIGRATED or fileid not in FILES:
        return None
    owner = FILES[fileid][0]
    return OcisResourceId(STORAGE, USERS[owner], f"node-{fileid}")


def records(
    shares: list[OwncloudShare], **kwargs: Any
) -> OcisShareRecords:  # the test's standard mapping
    options: dict[str, Any] = {
        "instance_id": INSTANCE,
        "idp": IDP,
        "resource_id": rid,
        "user_id": USERS.get,
        "group_id": GROUPS.get,
        "group_members": MEMBERS,
    }
    options.update(kwargs)
    return ocis_share_records(shares, **options)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return build(tmp_path / "owncloud.db")


@pytest.fixture
def rows(db_path: Path) -> list[OwncloudShare]:
    with open_database(f"sqlite:///{db_path}") as db:
        return read_owncloud_shares(db)


@pytest.fixture
def out(rows: list[OwncloudShare]) -> OcisShareRecords:
    return records(rows)


def shares_by_row(out: OcisShareRecords) -> dict[int, dict[str, Any]]:
    """The decoded share messages, by oc_share id."""
    # reva pkg/share/manager/json/json.go:137-140: "shares" holds each Share
    # as a protojson string (Save, json.go:143-150, MarshalProtoV1ToJSON).
    decoded = [json.loads(s) for s in out.shares["shares"]]
    by_id = {s["id"]["opaqueId"]: s for s in decoded}
    return {row: by_id[cs3] for row, cs3 in out.carried.items() if cs3 in by_id}


def user(opaque: str) -> dict[str, str]:
    # cs3apis cs3/identity/user/v1beta1/resources.proto:48 UserId (idp,
    # opaque_id, type), protojson names; USER_TYPE_PRIMARY (:110).
    return {"idp": IDP, "opaqueId": opaque, "type": "USER_TYPE_PRIMARY"}


def user_key(opaque: str) -> str:
    # reva json.go:533,538: state and mount points are looked up by
    # UserId.String() (Go's one-line protobuf text format).
    return f'idp:"{IDP}" opaque_id:"{opaque}" type:USER_TYPE_PRIMARY'


def share_key(cs3_id: str) -> str:
    return f'opaque_id:"{cs3_id}"'  # ShareId.String(), json.go:534


READ = {
    "getPath": True,
    "getQuota": True,
    "initiateFileDownload": True,
    "listContainer": True,
    "listRecycle": True,
    "stat": True,
}


# -- reading --------------------------------------------------------------------


def test_read_types_every_column(rows: list[OwncloudShare]) -> None:
    assert [s.id for s in rows] == [r["id"] for r in SHARES]
    link = next(s for s in rows if s.id == 7)
    assert link.share_type == 3
    assert link.share_with == "1|" + BCRYPT
    assert link.uid_initiator == "alice"
    assert link.file_source == 12
    assert link.item_source == "12"
    assert link.token == "Zq8wP3sLx7Rk2Vn"
    assert link.share_name == "Notes for the board"
    assert link.stime == STIME
    assert link.in_filecache is True
    # SQLAlchemy hands SQLite's DATETIME back as a datetime
    assert link.expiration in (
        dt.datetime(2027, 1, 31),
        "2027-01-31 00:00:00",
    )
    member = next(s for s in rows if s.id == 3)
    assert (member.parent, member.accepted, member.file_target) == (
        2,
        0,
        "/Projects (alice)",
    )
    assert next(s for s in rows if s.id == 10).in_filecache is False


def test_read_owners_and_unchecked_files(db_path: Path) -> None:
    with open_database(f"sqlite:///{db_path}") as db:
        carol = read_owncloud_shares(db, owners=["carol"], check_files=False)
        assert [s.id for s in carol] == [9]
        assert carol[0].in_filecache is None
        assert read_owncloud_group_members(db) == {"eng": MEMBERS["eng"]}


# -- the mapping -------------------------------------------------------------------


def test_every_row_is_carried_or_listed(
    rows: list[OwncloudShare], out: OcisShareRecords
) -> None:
    carried = set(out.carried)
    listed = {n.share_id for n in out.not_carried}
    assert carried.isdisjoint(listed)
    assert carried | listed == {s.id for s in rows}
    assert carried == {1, 2, 3, 4, 5, 6, 7, 8, 15, 16}
    kinds = {n.share_id: n.kind for n in out.not_carried}
    assert kinds == {
        9: "federated",
        10: "dangling",
        11: "deferred",
        12: "password",
        13: "unsupported_type",
        14: "group_not_carried",
    }
    reasons = {n.share_id: n.reason for n in out.not_carried}
    assert reasons[11] == "deferred: file 15 not in this cohort"
    assert {n.share_id: n.share_type for n in out.not_carried}[9] == 6


def test_user_share_fields(out: OcisShareRecords) -> None:
    share = shares_by_row(out)[1]
    cs3_id = out.carried[1]
    # a routable id, as jsoncs3 builds them (reva pkg/share/manager/jsoncs3/
    # shareid/shareid.go:25-29, jsoncs3.go:1143-1148)
    storage, space, opaque = cs3_id.split(":")
    assert (storage, space) == (STORAGE, "u-alice")
    assert len(opaque) == 36
    # cs3apis cs3/sharing/collaboration/v1beta1/resources.proto:38 Share,
    # protojson names; 31 is bit by bit (reva pkg/conversions/role.go:539)
    assert share == {
        "id": {"opaqueId": cs3_id},
        # cs3apis cs3/storage/provider/v1beta1/resources.proto:275 ResourceId
        "resourceId": {
            "storageId": STORAGE,
            "opaqueId": "node-10",
            "spaceId": "u-alice",
        },
        # resources.proto:293 ResourcePermissions inside SharePermissions
        "permissions": {
            "permissions": {
                "addGrant": True,
                "createContainer": True,
                "delete": True,
                **READ,
                "initiateFileUpload": True,
                "move": True,
                "restoreRecycleItem": True,
            }
        },
        # resources.proto:333 Grantee; the enum by name
        "grantee": {"type": "GRANTEE_TYPE_USER", "userId": user("u-bob")},
        "owner": user("u-alice"),
        "creator": user("u-alice"),
        # cs3apis cs3/types/v1beta1/types.proto:63-67: uint64 seconds, a
        # string in protojson
        "ctime": {"seconds": str(STIME)},
        "mtime": {"seconds": str(STIME)},
    }
    # accepted (core Constants.php:49) → SHARE_STATE_ACCEPTED = 2 (cs3apis
    # collaboration resources.proto:116), persisted as its number
    assert out.shares["state"][user_key("u-bob")][share_key(cs3_id)] == 2
    # the mount point is a Reference{path} (resources.proto:262), by name as
    # reva's owncloudsql manager reads file_target (conversions.go:299)
    assert out.shares["mount_point"][user_key("u-bob")][share_key(cs3_id)] == {
        "path": "Photos"
    }


def test_group_share_and_member_states(out: OcisShareRecords) -> None:
    share = shares_by_row(out)[2]
    cs3_id = out.carried[2]
    assert out.carried[3] == out.carried[4] == out.carried[5] == cs3_id
    assert share["grantee"] == {
        "type": "GRANTEE_TYPE_GROUP",
        # cs3apis cs3/identity/group/v1beta1/resources.proto:35 GroupId
        "groupId": {"idp": IDP, "opaqueId": "g-eng"},
    }
    # 15 is reva's editor role (role.go:267, RoleFromOCSPermissions :495)
    assert share["permissions"]["permissions"] == {
        "createContainer": True,
        "delete": True,
        **READ,
        "initiateFileUpload": True,
        "move": True,
        "restoreRecycleItem": True,
    }
    key = share_key(cs3_id)
    states = {u: v[key] for u, v in out.shares["state"].items() if key in v}
    # members' own rows (core DefaultShareProvider.php:1133 takes their
    # accepted and file_target): bob accepted, erin declined, frank pending;
    # gina has no row and sees the group's accepted state
    assert states == {
        user_key("u-bob"): 2,
        user_key("u-erin"): 3,
        user_key("u-frank"): 1,
        user_key("u-gina"): 2,
    }
    mounts = {u: v[key] for u, v in out.shares["mount_point"].items() if key in v}
    assert mounts == {
        user_key("u-bob"): {"path": "Projects (alice)"},
        user_key("u-gina"): {"path": "Projects"},
    }


def test_group_without_members_is_a_loss(rows: list[OwncloudShare]) -> None:
    out = records(rows, group_members=None)
    key = share_key(out.carried[2])
    assert user_key("u-gina") not in out.shares["state"]
    assert [
        (loss.share_id, loss.what) for loss in out.losses if loss.share_id == 2
    ] == [(2, "member state")]
    assert sum(key in v for v in out.shares["state"].values()) == 3


def test_reshare_keeps_its_creator(out: OcisShareRecords) -> None:
    share = shares_by_row(out)[6]
    assert share["owner"] == user("u-alice")
    assert share["creator"] == user("u-bob")
    assert share["grantee"]["userId"] == user("u-carol")
    assert share["permissions"]["permissions"] == READ  # role.go:226 viewer
    key = share_key(out.carried[6])
    assert out.shares["state"][user_key("u-carol")][key] == 1  # pending
    # no mount point until accepted
    assert key not in out.shares["mount_point"].get(user_key("u-carol"), {})


def test_public_link(out: OcisShareRecords) -> None:
    cs3_id = out.carried[7]
    # reva pkg/publicshare/manager/json/json.go:316-317: id → {share, password}
    entry = out.public_shares[cs3_id]
    assert set(entry) == {"share", "password"}
    # the bcrypt hash without ownCloud's "1|" (reva pkg/publicshare/manager/
    # owncloudsql/owncloudsql.go:310 does the same before bcrypt)
    assert entry["password"] == BCRYPT
    end = dt.datetime(2027, 1, 31, 23, 59, 59, tzinfo=dt.UTC)
    # cs3apis cs3/sharing/link/v1beta1/resources.proto:42 PublicShare
    assert json.loads(entry["share"]) == {
        "id": {"opaqueId": cs3_id},
        "token": "Zq8wP3sLx7Rk2Vn",
        "resourceId": {
            "storageId": STORAGE,
            "opaqueId": "node-12",
            "spaceId": "u-alice",
        },
        "permissions": {"permissions": READ},
        "owner": user("u-alice"),
        "creator": user("u-alice"),
        "ctime": {"seconds": str(STIME)},
        "mtime": {"seconds": str(STIME)},
        "passwordProtected": True,  # :77
        # core Manager.php:185-188 keeps the share through its expiry date
        "expiration": {"seconds": str(int(end.timestamp()))},
        "displayName": "Notes for the board",  # :87
    }


def test_upload_only_link_without_password(out: OcisShareRecords) -> None:
    entry = out.public_shares[out.carried[15]]
    # the password key is always a string (json.go reads it with .(string))
    assert entry["password"] == ""
    share = json.loads(entry["share"])
    assert "passwordProtected" not in share
    assert "expiration" not in share
    assert share["displayName"] == "DropZone1234567"  # the token, as reva names it
    # create only is reva's uploader role (role.go:428)
    assert share["permissions"]["permissions"] == {
        "createContainer": True,
        "getPath": True,
        "initiateFileUpload": True,
        "stat": True,
    }


def test_download_disabled_attribute(out: OcisShareRecords) -> None:
    by_row = shares_by_row(out)
    # 17 = read + share: bit by bit, without initiate_file_download
    assert by_row[8]["permissions"]["permissions"] == {
        "addGrant": True,
        **{k: v for k, v in READ.items() if k != "initiateFileDownload"},
    }
    # 3 = read + update, the API's attribute form
    assert by_row[16]["permissions"]["permissions"] == {
        **{k: v for k, v in READ.items() if k != "initiateFileDownload"},
        "initiateFileUpload": True,
        "restoreRecycleItem": True,
    }
    assert [(x.share_id, x.what) for x in out.losses if x.share_id in (8, 16)] == [
        (8, "attribute richdocuments.watermark")
    ]


def test_mount_point_flattening_is_a_loss(rows: list[OwncloudShare]) -> None:
    # carol accepts bob's reshare, mounted under /Shared in ownCloud
    accepted = [attrs.evolve(s, accepted=0) if s.id == 6 else s for s in rows]
    out = records(accepted)
    key = share_key(out.carried[6])
    assert out.shares["mount_point"][user_key("u-carol")][key] == {"path": "Photos"}
    assert (6, "mount point") in {(x.share_id, x.what) for x in out.losses}


def test_deferred_then_carried(rows: list[OwncloudShare]) -> None:
    nothing = records(rows, resource_id=lambda fileid: None)
    assert not nothing.shares["shares"]
    assert not nothing.public_shares
    deferred = {n.share_id for n in nothing.not_carried if n.kind == "deferred"}
    # every share of a file with a row waits; member rows wait with their group
    assert deferred == {1, 2, 6, 7, 8, 11, 15, 16}
    assert {
        n.share_id for n in nothing.not_carried if n.kind == "group_not_carried"
    } == {
        3,
        4,
        5,
        14,
    }
    everything = records(
        rows, resource_id=lambda f: OcisResourceId(STORAGE, "sp", f"n{f}")
    )
    assert 11 in everything.carried


def test_missing_users_and_groups_are_listed(rows: list[OwncloudShare]) -> None:
    out = records(
        rows,
        user_id=lambda uid: None if uid == "bob" else USERS[uid],
        group_id=lambda gid: None,
    )
    kinds = {n.share_id: n.kind for n in out.not_carried}
    assert kinds[1] == "no_user"  # recipient bob
    assert kinds[2] == "no_group"
    assert kinds[6] == "no_user"  # creator bob
    assert kinds[3] == "group_not_carried"


def test_deterministic(db_path: Path) -> None:
    runs = []
    for _ in range(2):
        with open_database(f"sqlite:///{db_path}") as db:
            runs.append(records(read_owncloud_shares(db)))
    a, b = runs
    assert json.dumps(a.shares) == json.dumps(b.shares)
    assert json.dumps(a.public_shares) == json.dumps(b.public_shares)
    assert a.carried == b.carried
    assert a.not_carried == b.not_carried
    # ids depend on the instance
    other = records(read_rows(db_path), instance_id="other")
    assert other.carried[1] != a.carried[1]


def read_rows(db_path: Path) -> list[OwncloudShare]:
    with open_database(f"sqlite:///{db_path}") as db:
        return read_owncloud_shares(db)


def test_bad_arguments(rows: list[OwncloudShare]) -> None:
    with pytest.raises(PlanError, match="instance_id"):
        records(rows, instance_id="")
    with pytest.raises(PlanError, match="given twice"):
        records(rows + rows[:1])
    with pytest.raises(PlanError, match=r"user_id\('\w+'\) returned 42"):
        records(rows, user_id=lambda uid: 42)
    with pytest.raises(PlanError, match="not an OcisResourceId"):
        records(rows, resource_id=lambda f: ("s", "p", "o"))


def test_bad_rows_are_listed(tmp_path: Path) -> None:
    bad: list[dict[str, Any]] = [
        row(id=1, share_type=0, share_with="bob", uid_owner="alice", file_source=12,
            item_type="file", permissions=0),
        row(id=2, share_type=0, share_with="bob", uid_owner="alice", file_source=12,
            item_type="file", permissions=1, attributes="not json"),
        row(id=3, share_type=0, share_with="alice", uid_owner="alice", file_source=12,
            item_type="file", permissions=1),
        row(id=4, share_type=3, uid_owner="alice", file_source=12, item_type="file",
            permissions=1),
        row(id=5, share_type=0, share_with="bob", uid_owner="alice", file_source=12,
            item_type="calendar", permissions=1),
    ]  # fmt: skip
    path = build(tmp_path / "bad.db", bad)
    out = records(read_rows(path))
    assert not out.carried
    assert {n.share_id: n.kind for n in out.not_carried} == dict.fromkeys(
        range(1, 6), "bad_row"
    )


# -- permissions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bits", "expected"),
    [
        (1, set(READ)),
        (4, {"create_container", "get_path", "initiate_file_upload", "stat"}),
        (5, {"create_container", "initiate_file_upload"} | set(READ)),
        (
            19,
            {"add_grant", "initiate_file_upload", "restore_recycle_item"} | set(READ),
        ),
    ],
)
def test_permission_table(bits: int, expected: set[str]) -> None:
    snake = {
        "getPath": "get_path",
        "getQuota": "get_quota",
        "initiateFileDownload": "initiate_file_download",
        "listContainer": "list_container",
        "listRecycle": "list_recycle",
        "stat": "stat",
    }
    want = {snake.get(name, name) for name in expected}
    assert cs3_resource_permissions(bits) == want


@pytest.mark.parametrize("bits", [0, -1, 32, 64])
def test_permission_out_of_range(bits: int) -> None:
    with pytest.raises(PlanError, match="between 1 and 31"):
        cs3_resource_permissions(bits)


# -- writing ---------------------------------------------------------------------


def test_write(out: OcisShareRecords, tmp_path: Path) -> None:
    folder = tmp_path / "storage"
    paths = write_ocis_share_records(out, folder)
    assert paths == {
        "shares": folder / OCIS_SHARES_FILE,
        "public_shares": folder / OCIS_PUBLIC_SHARES_FILE,
    }
    assert json.loads(paths["shares"].read_text()) == out.shares
    assert json.loads(paths["public_shares"].read_text()) == out.public_shares
    first = {k: p.read_bytes() for k, p in paths.items()}
    assert write_ocis_share_records(out, folder) == paths  # same bytes: fine
    assert {k: p.read_bytes() for k, p in paths.items()} == first
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]

    paths["shares"].write_text("{}")
    with pytest.raises(PlanError, match="exists with other content"):
        write_ocis_share_records(out, folder)
    write_ocis_share_records(out, folder, overwrite=True)
    assert paths["shares"].read_bytes() == first["shares"]
    with pytest.raises(PlanError, match="plain file name"):
        write_ocis_share_records(out, folder, shares_name="../x.json")


def test_every_user_share_has_a_state(out: OcisShareRecords) -> None:
    # reva jsoncs3.go:1160-1178 loads shares without indexing their
    # recipients; only state entries (Dump, json.go:193-240) reach a
    # recipient's index (jsoncs3.go:1181-1193)
    keyed = {k for v in out.shares["state"].values() for k in v}
    for row, share in shares_by_row(out).items():
        if share["grantee"]["type"] == "GRANTEE_TYPE_USER":
            assert share_key(out.carried[row]) in keyed, row


def test_unknown_accepted_is_pending(rows: list[OwncloudShare]) -> None:
    odd = [attrs.evolve(s, accepted=7) if s.id == 1 else s for s in rows]
    out = records(odd)
    assert out.shares["state"][user_key("u-bob")][share_key(out.carried[1])] == 1
    assert (1, "state") in {(x.share_id, x.what) for x in out.losses}


def test_expiration_timezone(rows: list[OwncloudShare]) -> None:
    plus_one = dt.timezone(dt.timedelta(hours=1))
    out = records(rows, timezone=plus_one)
    share = json.loads(out.public_shares[out.carried[7]]["share"])
    end = dt.datetime(2027, 1, 31, 23, 59, 59, tzinfo=plus_one)
    assert share["expiration"] == {"seconds": str(int(end.timestamp()))}
