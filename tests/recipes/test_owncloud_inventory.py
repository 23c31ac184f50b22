"""The ownCloud 10 inventory (#17 item 2) on generated instances (owncloud_instance.py)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from owncloud_instance import (
    COUNTS,
    INSTANCE_ID,
    KINDS,
    OwncloudInstance,
    make_owncloud_instance,
)

from carmigrate.cli import main
from carmigrate.recipes import (
    OWNCLOUD_FINDING_KINDS,
    OwncloudInventory,
    owncloud_inventory,
    read_owncloud_instance_id,
)
from carmigrate.storage import LocalStore, ObjectInfo


class SpyStore:
    """A local store that records every key and prefix it is asked about."""

    def __init__(self, root: Path) -> None:
        self.inner = LocalStore(root)
        self.touched: list[str] = []

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def capabilities(self) -> Any:
        return self.inner.capabilities

    def stat(self, key: str) -> ObjectInfo:
        self.touched.append(key)
        return self.inner.stat(key)

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        self.touched.append("read:" + key)
        return self.inner.open_read(key, start=start, end=end)

    def list(self, prefix: str = "") -> Any:
        self.touched.append(prefix)
        return self.inner.list(prefix)

    def close(self) -> None:
        self.inner.close()


def _findings(inv: OwncloudInventory) -> list[dict[str, Any]]:
    return [f.to_dict() for f in inv.findings]


def _counts(inv: OwncloudInventory) -> dict[str, dict[str, int]]:
    return {u: c.to_dict() for u, c in inv.users.items()}


def test_the_generator_and_the_recipe_agree_on_the_finding_kinds() -> None:
    assert set(KINDS) == set(OWNCLOUD_FINDING_KINDS)


def test_a_clean_instance_has_no_findings_and_its_counts(tmp_path: Path) -> None:
    inst = make_owncloud_instance(tmp_path)
    inv = owncloud_inventory(inst.db_url, inst.data_dir, config=inst.config_path)

    assert inv.findings == ()
    assert inv.instance == INSTANCE_ID
    assert _counts(inv) == {
        "alice": {
            "files": 3,
            "folders": 2,
            "versions": 2,
            "trash": 2,
            "shares": 2,
            "bytes": 5686,
        },
        "bob": {
            "files": 2,
            "folders": 1,
            "versions": 1,
            "trash": 0,
            "shares": 1,
            "bytes": 30,
        },
    }
    assert _counts(inv) == COUNTS
    assert inv.to_dict() == {
        "instance": INSTANCE_ID,
        "users": COUNTS,
        "findings": [],
    }


def test_the_instance_id_is_a_parameter_without_config(tmp_path: Path) -> None:
    inst = make_owncloud_instance(tmp_path)
    assert read_owncloud_instance_id(inst.config_path) == INSTANCE_ID
    inv = owncloud_inventory(inst.db_url, str(inst.data_dir), instance_id="oc-given")
    assert inv.instance == "oc-given"
    assert owncloud_inventory(inst.db_url, inst.data_dir).instance is None


@pytest.mark.parametrize("kind", KINDS)
def test_each_finding_alone_is_reported_exactly(tmp_path: Path, kind: str) -> None:
    inst = make_owncloud_instance(tmp_path, inject=(kind,))
    inv = owncloud_inventory(inst.db_url, LocalStore(inst.data_dir))

    assert len(inst.expected) == 1
    assert _findings(inv) == [inst.expected[0].to_dict()]
    assert inv.findings[0].kind == kind
    assert _counts(inv) == inst.counts


def test_all_findings_together(tmp_path: Path) -> None:
    inst = make_owncloud_instance(tmp_path, inject=KINDS)
    inv = owncloud_inventory(inst.db_url, inst.data_dir)

    expected = sorted(
        (e.to_dict() for e in inst.expected),
        key=lambda d: (d["user"], d["path"], d["kind"]),
    )
    assert _findings(inv) == expected


def _set_checksum(inst: OwncloudInstance, fileid: int, value: str) -> None:
    with sqlite3.connect(inst.db_path) as db:
        db.execute(
            "UPDATE oc_filecache SET checksum = ? WHERE fileid = ?", (value, fileid)
        )
    db.close()


@pytest.mark.parametrize("wrong", ["SHA1", "MD5", "ADLER32"])
def test_every_listed_algorithm_is_checked_in_one_read(
    tmp_path: Path, wrong: str
) -> None:
    inst = make_owncloud_instance(tmp_path)
    path = "files/Projects/Notes.md"
    fileid = inst.fileids["alice", path]
    data = (inst.data_dir / "alice" / path).read_bytes()
    good = {
        "SHA1": hashlib.sha1(data).hexdigest(),
        "MD5": hashlib.md5(data).hexdigest(),
        "ADLER32": f"{zlib.adler32(data):08x}",
    }
    good[wrong] = "0" * len(good[wrong])
    _set_checksum(inst, fileid, " ".join(f"{k}:{v}" for k, v in good.items()))

    spy = SpyStore(inst.data_dir)
    inv = owncloud_inventory(inst.db_url, spy)

    assert _findings(inv) == [
        {"kind": "checksum_mismatch", "user": "alice", "path": path, "fileid": fileid}
    ]
    assert wrong.lower() in (inv.findings[0].detail or "")
    assert spy.touched.count(f"read:alice/{path}") == 1


def test_a_checksum_of_one_algorithm_is_checked(tmp_path: Path) -> None:
    inst = make_owncloud_instance(tmp_path)
    fileid = inst.fileids["bob", "files/welcome.txt"]
    _set_checksum(inst, fileid, "SHA1:" + "1" * 40)
    inv = owncloud_inventory(inst.db_url, inst.data_dir)
    assert [(f.kind, f.fileid) for f in inv.findings] == [("checksum_mismatch", fileid)]


def test_users_restricts_what_is_read(tmp_path: Path) -> None:
    inst = make_owncloud_instance(
        tmp_path, inject=("missing_on_disk", "not_in_cache", "orphan_row")
    )
    spy = SpyStore(inst.data_dir)
    inv = owncloud_inventory(inst.db_url, spy, users=["alice"])

    assert list(inv.users) == ["alice"]
    assert _counts(inv) == {"alice": COUNTS["alice"]}
    assert _findings(inv) == [e.to_dict() for e in inst.expected if e.user == "alice"]
    assert spy.touched
    assert all(k.removeprefix("read:").startswith("alice/") for k in spy.touched)


def test_an_unknown_user_is_an_error(tmp_path: Path) -> None:
    inst = make_owncloud_instance(tmp_path)
    with pytest.raises(ValueError, match="carol"):
        owncloud_inventory(inst.db_url, inst.data_dir, users=["alice", "carol"])


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["recipe", "owncloud-inventory", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inst = make_owncloud_instance(tmp_path / "clean")
    args = ["--db", inst.db_url, "--data", str(inst.data_dir)]
    code, out, _ = _cli(capsys, *args, "--config", str(inst.config_path), "--json")
    assert code == 0
    assert json.loads(out) == {
        "instance": INSTANCE_ID,
        "users": COUNTS,
        "findings": [],
    }

    code, out, _ = _cli(capsys, *args)
    assert code == 0
    assert "| alice | 3 | 2 | 2 | 2 | 2 | 5686 |" in out

    bad = make_owncloud_instance(tmp_path / "bad", inject=("size_mismatch",))
    code, out, _ = _cli(
        capsys,
        "--db",
        bad.db_url,
        "--data",
        str(bad.data_dir),
        "--instance-id",
        "x1",
        "--json",
    )
    assert code == 1
    assert json.loads(out) == {
        "instance": "x1",
        "users": bad.counts,
        "findings": [bad.expected[0].to_dict()],
    }


def test_cli_users(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inst = make_owncloud_instance(tmp_path, inject=("not_in_cache",))  # bob's
    args = ["--db", inst.db_url, "--data", str(inst.data_dir), "--json"]

    code, out, _ = _cli(capsys, *args, "--users", "alice")
    assert (code, list(json.loads(out)["users"])) == (0, ["alice"])

    code, out, _ = _cli(capsys, *args, "--users", "alice,bob")
    data = json.loads(out)
    assert (code, list(data["users"])) == (1, ["alice", "bob"])
    assert data["findings"] == [inst.expected[0].to_dict()]


def test_cli_unusable_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inst = make_owncloud_instance(tmp_path)
    code, out, err = _cli(
        capsys,
        "--db",
        f"sqlite:///{tmp_path / 'none.db'}",
        "--data",
        str(inst.data_dir),
        "--json",
    )
    assert code == 2
    assert json.loads(out)["error"]["exit_code"] == 2
    assert "error:" in err

    code, out, _ = _cli(
        capsys, "--db", inst.db_url, "--data", str(tmp_path / "nowhere"), "--json"
    )
    assert code == 2

    code, out, _ = _cli(
        capsys,
        "--db",
        inst.db_url,
        "--data",
        str(inst.data_dir),
        "--users",
        "carol",
        "--json",
    )
    assert code == 2
    assert "carol" in json.loads(out)["error"]["message"]


def test_homes_on_an_object_store(tmp_path: Path) -> None:
    """object::user:<uid> homes: each row's blob is urn:oid:<fileid> in the store given."""
    import sqlite3

    inst = make_owncloud_instance(tmp_path / "oc")
    objects = LocalStore(tmp_path / "objects", create=True)
    db = sqlite3.connect(inst.db_path)
    db.execute(
        "UPDATE oc_storages SET id = 'object::user:alice' WHERE id = 'home::alice'"
    )
    db.commit()
    db.close()
    for (user, path), fileid in inst.fileids.items():
        blob = inst.data_dir / user / path
        if user == "alice" and blob.is_file():
            objects.write(f"urn:oid:{fileid}", blob.read_bytes())
    inv = owncloud_inventory(inst.db_url, objects, users=["alice"])
    assert _counts(inv) == {"alice": COUNTS["alice"]}
    assert inv.findings == ()
    notes = inst.fileids["alice", "files/Projects/Notes.md"]
    objects.delete(f"urn:oid:{notes}")
    inv = owncloud_inventory(inst.db_url, objects, users=["alice"])
    assert _findings(inv) == [
        {
            "kind": "missing_on_disk",
            "user": "alice",
            "path": "files/Projects/Notes.md",
            "fileid": notes,
        }
    ]
