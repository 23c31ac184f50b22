"""Migrations against a real S3-speaking server (moto, on 127.0.0.1)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from migrate_helpers import contents, fill, make_car

from carmigrate.migrate import (
    ItemState,
    Ledger,
    StoreOptions,
    TransferPolicy,
    execute,
    plan,
    verify,
)
from carmigrate.storage import LocalStore, S3Store

pytestmark = pytest.mark.s3


def _bucket(options: dict[str, Any]) -> str:
    import boto3

    name = f"cm-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        aws_access_key_id=options["access_key_id"],
        aws_secret_access_key=options["secret_access_key"],
        region_name=options["region"],
    )
    client.create_bucket(Bucket=name)
    client.close()
    return name


def test_local_to_s3_and_back_with_md5_from_the_listing(tmp_path, s3_options) -> None:
    """Up to S3, then back down: the S3 listing's single-part MD5s verify the download."""
    src = LocalStore(tmp_path / "src")
    objects = {"a/one.car": make_car(3), "a/two.bin": b"two" * 100, "b/three": b"3"}
    fill(src, objects)
    bucket = _bucket(s3_options)
    with S3Store(bucket, "data", **s3_options) as s3:
        up = plan(src, s3)
        execute(up, Ledger(tmp_path / "up.db"), source=src, destination=s3)

        down_dir = LocalStore(tmp_path / "down")
        down = plan(s3, down_dir)
        led = Ledger(tmp_path / "down.db")
        result = execute(down, led, source=s3, destination=down_dir)

        assert result.complete
        assert contents(down_dir) == objects
        assert up.header.destination == f"s3://{bucket}/data"
        assert set(led.find("a/two.bin").checks) >= {"md5:source"}
        assert led.find("a/one.car").checks == ("car", "md5:source", "sha256:source")


def test_s3_to_s3_server_side_copy_by_url(tmp_path, s3_options) -> None:
    """Stores opened from the plan's URLs with StoreOptions; the server copies the bytes."""
    bucket = _bucket(s3_options)
    with (
        S3Store(bucket, "old", **s3_options) as old,
        S3Store(bucket, "new", **s3_options) as new,
    ):
        fill(old, {"x": b"x" * 1000, "y/z": make_car(2)})
        p = plan(old, new, transfer=TransferPolicy(server_side_copy=True))
        led = Ledger(tmp_path / "l.db")
        opts = StoreOptions(source=s3_options, destination=s3_options)
        result = execute(p, led, store_options=opts)

        assert result.complete
        assert all(r.server_side and r.bytes_moved == 0 for r in led.items())
        assert contents(new) == contents(old)
        assert verify(p, led, store_options=opts).ok


def test_glacier_objects_are_restored_then_copied(tmp_path, s3_options) -> None:
    """GLACIER sources are planned cold, restored through the S3 API, then copied."""
    bucket = _bucket(s3_options)
    with S3Store(bucket, "cold", storage_class="GLACIER", **s3_options) as writer:
        fill(writer, {"frozen.bin": b"ice" * 50})
    with S3Store(bucket, "cold", **s3_options) as src:
        fill(src, {"warm.bin": b"sun"})
        dst = LocalStore(tmp_path / "dst")
        p = plan(src, dst, transfer=TransferPolicy(restore_poll=0.01))
        assert [i.cold for i in p.items()] == [True, False]
        led = Ledger(tmp_path / "l.db")
        result = execute(p, led, source=src, destination=dst)

        assert result.complete, result
        assert contents(dst) == {"frozen.bin": b"ice" * 50, "warm.bin": b"sun"}
        assert ItemState.WARMING in [
            t.state for t in led.history(led.find("frozen.bin").seq)
        ]
