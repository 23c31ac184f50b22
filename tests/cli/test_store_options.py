"""--source-option / --destination-option, and copying to OpenStack Swift by URL.

Swift (s3api 2.30, started with ``scripts/swift-s3`` like the storage tests
do) refuses conditional PutObjects; the S3 store finds that out by itself,
so a plain ``plan`` + ``run`` to ``s3://`` works with no option, and options
given on the command line reach the store. If Swift cannot start, the Swift
tests fail with the script's diagnostics unless ``CARMIGRATE_SKIP_SWIFT=1``.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carmigrate.cli import main
from carmigrate.cli._args import store_option
from carmigrate.migrate import ItemState, Ledger

ROOT = Path(__file__).resolve().parents[2]
PART = 64 * 1024


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def fill(root: Path, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def states(path: str) -> dict[ItemState, int]:
    with Ledger(path, readonly=True) as ledger:
        return dict(ledger.counts())


def data_of(size: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(size))


# ----------------------------------------------------------------------
# parsing and errors (no server)


@pytest.mark.parametrize(
    ("text", "name", "value"),
    [
        ("checksums=false", "checksums", False),
        ("resume_uploads=true", "resume_uploads", True),
        ("part_size=65536", "part_size", 65536),
        ("read_timeout=2.5", "read_timeout", 2.5),
        ("storage_class=null", "storage_class", None),
        ("conditional_write=multipart", "conditional_write", "multipart"),
        ('region="123"', "region", "123"),
        ("verify=/etc/ca.pem", "verify", "/etc/ca.pem"),
        ("endpoint_url=http://h:1/?a=b", "endpoint_url", "http://h:1/?a=b"),
        ('client_kwargs={"region_name": "x"}', "client_kwargs", {"region_name": "x"}),
        ("token=NaN", "token", "NaN"),
        ("empty=", "empty", ""),
    ],
)
def test_values_are_json_when_they_are_json(text: str, name: str, value: Any) -> None:
    """true/false/null/numbers/quoted/lists/objects are JSON; the rest is text."""
    opt = store_option(text)

    assert (opt.name, opt.value, opt.text) == (name, value, text)


@pytest.mark.parametrize("text", ["checksums", "=1", "a b=1", "1x=2"])
def test_malformed_options_are_usage_errors(text: str) -> None:
    """Not KEY=VALUE with KEY a name: argparse's error, exit 2."""
    with pytest.raises(argparse.ArgumentTypeError, match="expected KEY=VALUE"):
        store_option(text)
    with pytest.raises(SystemExit) as exited:
        main(["plan", "a", "b", "-o", "p", "--source-option", text])
    assert exited.value.code == 2


def test_unknown_option_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing is opened: the option as written, the store kind, exit 2."""
    code, _, err = cli(
        capsys,
        "plan",
        str(tmp_path),
        "s3://bucket/x",
        "-o",
        str(tmp_path / "p.jsonl"),
        "--destination-option",
        "foo=1",
    )

    assert code == 2
    assert (
        "carmigrate plan: error: --destination-option foo=1: unknown option 'foo' "
        "for s3 stores"
    ) in err
    assert not (tmp_path / "p.jsonl").exists()


def test_wrong_values_and_near_misses_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A value of the wrong type, and a typo with a suggestion."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    fill(src, {"k": b"v"})
    plan = str(tmp_path / "p.jsonl")
    assert cli(capsys, "plan", str(src), str(dst), "-o", plan)[0] == 0

    code, _, err = cli(
        capsys, "run", plan, "--ledger", str(tmp_path / "l.db"),
        "--destination-option", "fsync=yes",
    )  # fmt: skip
    assert code == 2
    assert (
        "--destination-option fsync=yes: option 'fsync' of local stores takes bool, "
        "not str 'yes'"
    ) in err
    code, _, err = cli(
        capsys, "run", plan, "--ledger", str(tmp_path / "l.db"),
        "--source-option", "cache_read=false",
    )  # fmt: skip
    assert code == 2
    assert (
        "unknown option 'cache_read' for local stores (did you mean 'cache_reads'?)"
        in err
    )
    assert not dst.exists()  # refused before anything ran


def test_options_reach_local_stores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """run, resume, verify and rollback take the options (rollback: destination only)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    fill(src, {"a": b"1", "b/c": b"22"})
    plan, ledger = str(tmp_path / "p.jsonl"), str(tmp_path / "l.db")
    assert cli(capsys, "plan", str(src), str(dst), "-o", plan)[0] == 0
    opts = [
        "--source-option",
        "cache_reads=true",
        "--destination-option",
        "fsync=false",
    ]

    assert cli(capsys, "run", plan, "--ledger", ledger, *opts)[0] == 0
    assert cli(capsys, "resume", "--ledger", ledger, *opts)[0] == 0
    assert cli(capsys, "verify", "--ledger", ledger, *opts)[0] == 0
    code, _, _ = cli(
        capsys, "rollback", "--ledger", ledger, "--stage", "all",
        "--destination-option", "fsync=false",
    )  # fmt: skip
    assert code == 0
    assert states(ledger) == {ItemState.ROLLED_BACK: 2}
    assert not (dst / "a").exists()
    with pytest.raises(SystemExit):
        main(
            ["rollback", "--ledger", ledger, "--stage", "all", "--source-option", "x=1"]
        )


# ----------------------------------------------------------------------
# Swift


@pytest.fixture
def swift_bucket(
    swift_endpoint: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Any]]:
    """A new bucket; only the AWS_* variables point at Swift. Yields it and a client."""
    import boto3.session
    from botocore.config import Config

    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL_S3",
        "AWS_SESSION_TOKEN",
        "AWS_CA_BUNDLE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", swift_endpoint["SWIFT_S3_ENDPOINT"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", swift_endpoint["SWIFT_S3_ACCESS_KEY"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", swift_endpoint["SWIFT_S3_SECRET_KEY"])
    monkeypatch.setenv(
        "AWS_DEFAULT_REGION", swift_endpoint.get("SWIFT_S3_REGION", "us-east-1")
    )
    # a session of its own: boto3's default session keeps the credentials it
    # found first (another test's moto keys)
    client = boto3.session.Session().client(
        "s3", config=Config(s3={"addressing_style": "path"})
    )
    name = f"cm-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    try:
        yield name, client
    finally:
        client.close()


def bucket_contents(client: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        o["Key"][len(prefix) :]: client.get_object(Bucket=bucket, Key=o["Key"])[
            "Body"
        ].read()
        for o in listed
    }


@pytest.mark.s3
@pytest.mark.swift
def test_cli_copies_to_swift_with_no_options(
    tmp_path: Path, swift_bucket: tuple[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """plan + run + verify + resume to s3:// on Swift, configured by AWS_* only."""
    bucket, client = swift_bucket
    objects = {"a.bin": b"a" * 1000, "b/c.bin": data_of(3000), "d/e/f": b"f"}
    fill(tmp_path / "src", objects)
    plan, ledger = str(tmp_path / "p.jsonl"), str(tmp_path / "l.db")
    url = f"s3://{bucket}/new"

    code, _, err = cli(capsys, "plan", str(tmp_path / "src"), url, "-o", plan)
    assert code == 0, err
    code, _, err = cli(capsys, "run", plan, "--ledger", ledger)
    assert code == 0, err
    assert states(ledger) == {ItemState.UNVERIFIABLE: 3}  # a folder vouches for nothing
    assert bucket_contents(client, bucket, "new/") == objects
    code, _, err = cli(capsys, "verify", "--ledger", ledger)
    assert code == 0, err
    code, _, err = cli(capsys, "resume", "--ledger", ledger)
    assert code == 0, err
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.s3
@pytest.mark.swift
def test_cli_destination_options_reach_the_s3_store(
    tmp_path: Path, swift_bucket: tuple[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Explicit options: multipart mode, 64 KiB parts, no checksums; big objects too."""
    bucket, client = swift_bucket
    objects = {"big": data_of(5 * PART + 11), "small": b"s" * 10}
    fill(tmp_path / "src", objects)
    plan, ledger = str(tmp_path / "p.jsonl"), str(tmp_path / "l.db")
    url = f"s3://{bucket}/opt"
    opts = [
        "--destination-option", "conditional_write=multipart",
        "--destination-option", f"part_size={PART}",
        "--destination-option", "checksums=false",
    ]  # fmt: skip

    code, _, err = cli(capsys, "plan", str(tmp_path / "src"), url, "-o", plan, *opts)
    assert code == 0, err
    code, _, err = cli(capsys, "run", plan, "--ledger", ledger, *opts)
    assert code == 0, err
    assert states(ledger) == {ItemState.UNVERIFIABLE: 2}
    assert bucket_contents(client, bucket, "opt/") == objects
    head = client.head_object(Bucket=bucket, Key="opt/big")
    assert head["ETag"].strip('"').endswith("-6")  # six 64 KiB parts: part_size arrived
    code, _, err = cli(capsys, "verify", "--ledger", ledger, *opts)
    assert code == 0, err
