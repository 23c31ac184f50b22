"""AzureBlobStore against Azurite (Azure Blob Storage's emulator) on 127.0.0.1.

What Azurite does, as these tests found (azurite 3.35):

- It implements blocks (Put Block, Get Block List, Put Block List), Put
  Blob, conditional writes (``If-None-Match: *`` on Put Blob and Put Block
  List), Content-MD5 checks, service SAS tokens and their expiry, the
  Archive tier (a read is refused with 409 ``BlobArchived``), synchronous
  Copy Blob From URL with ``If-None-Match``, and deleting a blob that holds
  only uncommitted blocks.
- It completes a rehydration from the Archive tier at once (no
  ``rehydrate-pending-*`` phase: that path is tested with an injected
  ``archive_status``).
- It does not implement Put Blob From URL nor Put Block From URL (501
  ``APINotImplemented``): the copy from presigned URLs is tested through
  its feature detection and streaming fallback, and with the two calls
  emulated (the "service" fetches the presigned URL itself).
- It lists names in UTF-16 code unit order, not code point order.
- It ignores ``If-None-Match: *`` on Delete Blob, and reports a copy's
  failed source condition as 412 ``ConditionNotMet`` (Azure:
  ``SourceConditionNotMet``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure_helpers import ACCOUNT, ACCOUNT_KEY, BLOCK, AzuriteServer
from storage_helpers import S3Server

from carmigrate.cli import main
from carmigrate.errors import (
    BackendUnavailable,
    ChecksumMismatch,
    ColdObject,
    InvalidKey,
    ObjectExists,
    ObjectNotFound,
    StorageError,
)
from carmigrate.migrate import ItemState, Ledger
from carmigrate.storage import (
    AzureBlobStore,
    RetryPolicy,
    SupportsRestore,
    SupportsUploadCleanup,
    capabilities_of,
    check_store_options,
    copy_object,
    open_store,
    read_bytes,
    restore_object,
)
from carmigrate.testing import STORE_CHECKS, check_store

NO_WAIT = RetryPolicy(max_attempts=2, sleep=lambda _: None)


def blocks(n: int, seed: int = 0, size: int = BLOCK) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(size) for _ in range(n)]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def uncommitted(store: AzureBlobStore, key: str) -> list[Any]:
    blob = store.container_client.get_blob_client(store.prefix + key)
    try:
        return list(blob.get_block_list("uncommitted")[1])
    except Exception as e:
        if type(e).__name__ == "ResourceNotFoundError":
            return []
        raise


class StageSpy:
    """Count the blocks and bytes sent by Put Block (``BlobClient.stage_block``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from azure.storage.blob import BlobClient

        self.calls = 0
        self.bytes = 0
        self._lock = threading.Lock()
        original = BlobClient.stage_block

        def stage_block(
            client: Any, block_id: str, data: Any, *a: Any, **kw: Any
        ) -> Any:
            with self._lock:
                self.calls += 1
                self.bytes += len(data)
            return original(client, block_id, data, *a, **kw)

        monkeypatch.setattr(BlobClient, "stage_block", stage_block)


# ----------------------------------------------------------------------
# the contract


@pytest.mark.parametrize("check", STORE_CHECKS)
def test_azure_conformance(azurite: AzuriteServer, check: str) -> None:
    """AzureBlobStore keeps the Store contract on Azurite (blocks of 64 KiB)."""
    check_store(
        azurite.store_factory(),
        checks=[check],
        large_size=8 * BLOCK + 123,
        # the url names account, container and prefix; where and who: options
        open_url=lambda url: open_store(
            url, connection_string=azurite.connection_string, block_size=BLOCK
        ),
    )


def test_capabilities_and_protocols(azurite: AzuriteServer) -> None:
    """What the store declares, and the Protocols behind the derived flags."""
    store = azurite.store()
    caps = capabilities_of(store)

    assert caps == store.capabilities
    assert caps.atomic_write
    assert caps.conditional_write
    assert caps.sorted_listing
    assert caps.native_checksums == frozenset({"md5"})
    assert caps.user_metadata
    assert caps.resumable_uploads
    assert caps.server_side_copy
    assert caps.presigned_urls
    assert caps.cold_tier
    assert isinstance(store, SupportsUploadCleanup)
    plain = azurite.store(cold_tier=False, resume_uploads=False)
    assert not isinstance(plain, SupportsRestore)
    assert not capabilities_of(plain).cold_tier
    assert not plain.capabilities.resumable_uploads


# ----------------------------------------------------------------------
# URLs, options, credentials (no server needed for most)


def test_az_urls_open_without_network() -> None:
    """az://account/container/prefix; the endpoint and key are options."""
    store = open_store(
        "az://devstoreaccount1/cont/a/prefix/",
        account_key=ACCOUNT_KEY,
        endpoint_url="http://127.0.0.1:9/devstoreaccount1",
    )
    try:
        assert isinstance(store, AzureBlobStore)
        assert (store.account, store.container, store.prefix) == (
            "devstoreaccount1",
            "cont",
            "a/prefix/",
        )
        assert store.url == "az://devstoreaccount1/cont/a/prefix"
        assert store.endpoint_url == "http://127.0.0.1:9/devstoreaccount1"
        assert ACCOUNT_KEY not in repr(store)
    finally:
        store.close()
    with open_store("az://acct123/cont", sas_token="?sv=1&sig=s3cr3t") as bare:
        assert bare.url == "az://acct123/cont"
        assert bare.endpoint_url == "https://acct123.blob.core.windows.net"
        assert "s3cr3t" not in repr(bare) + bare.url + bare.endpoint_url


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("az://acct123/cont/p?sig=s3cr3t", "query"),
        ("az://user:s3cr3t@acct123/cont", "credentials"),
        ("az://acct123", "az://account/container"),
        ("az://acct123/", "az://account/container"),
        ("az://Not_An_Account/cont", "storage account"),
        ("az://acct123/UPPER", "container"),
    ],
)
def test_malformed_az_urls(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as raised:
        open_store(url, account_key=ACCOUNT_KEY)
    assert "s3cr3t" not in str(raised.value)


def test_credentials_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """One credential at most; a connection string must name the URL's account."""
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="account_key and sas_token"):
        AzureBlobStore("acct123", "cont", account_key="k", sas_token="s")
    other = (
        "DefaultEndpointsProtocol=https;AccountName=otheracct;"
        f"AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net"
    )
    with pytest.raises(ValueError, match="'otheracct', the URL names 'acct123'") as e:
        AzureBlobStore("acct123", "cont", connection_string=other)
    assert ACCOUNT_KEY not in str(e.value)
    with pytest.raises(ValueError, match="malformed") as e:
        AzureBlobStore("acct123", "cont", connection_string=f"nonsense{ACCOUNT_KEY}")
    assert ACCOUNT_KEY not in str(e.value)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", other)
    with pytest.raises(ValueError, match="otheracct"):
        AzureBlobStore("acct123", "cont")  # the environment's is checked too
    with pytest.raises(ValueError, match="endpoint_url"):
        AzureBlobStore(
            "otheracct", "cont", connection_string=other, endpoint_url="http://x"
        )


def test_store_options_are_checked() -> None:
    """check_store_options knows the az:// options, their types and near misses."""
    check_store_options("az://acct123/cont", {"block_size": BLOCK, "blob_tier": "Cool"})
    with pytest.raises(TypeError, match="unknown option 'blok_size' for az stores"):
        check_store_options("az://acct123/cont", {"blok_size": 1})
    with pytest.raises(TypeError, match="'blob_tier' of az stores takes"):
        check_store_options("az://acct123/cont", {"blob_tier": "Glacier"})
    with pytest.raises(TypeError, match="'credential' of az stores"):
        check_store_options("az://acct123/cont", {"credential": "text"})


def test_import_carmigrate_without_the_sdk() -> None:
    """azure-storage-blob is imported lazily; without it the store says what to install."""
    code = (
        "import sys\n"
        "sys.modules['azure'] = None\n"
        "import carmigrate, carmigrate.storage, carmigrate.cli, carmigrate.migrate\n"
        "from carmigrate.storage import AzureBlobStore, open_store\n"
        "try:\n"
        "    open_store('az://acct123/cont')\n"
        "except ImportError as e:\n"
        "    print('ImportError:', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "pip install 'carmigrate[azure]'" in out.stdout


def test_environment_connection_string(
    azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AZURE_STORAGE_CONNECTION_STRING alone opens the store."""
    container = azurite.container()
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    with open_store(f"az://{ACCOUNT}/{container}/env") as store:
        store.write("k", b"from the environment")
    with azurite.store(container, "env") as again:
        assert read_bytes(again, "k") == b"from the environment"


def test_key_and_metadata_rules(azurite: AzuriteServer) -> None:
    """Backslashes, too many segments and non-identifier metadata names are refused."""
    store = azurite.store()
    for key in ("a\\b", "/".join(["s"] * 255)):
        with pytest.raises(InvalidKey):
            store.write(key, b"x")
        with pytest.raises(InvalidKey):
            store.stat(key)
    store.write("/".join(["s"] * 254), b"deep")
    for meta in ({"content-type": "x"}, {"1st": "x"}, {"ok": "caf\u00e9"}):
        with pytest.raises(StorageError, match="metadata"):
            store.write("meta", b"x", metadata=meta)
    with pytest.raises(ObjectNotFound):
        store.stat("meta")


# ----------------------------------------------------------------------
# writes: conditional, blocks, checksums, resume


def test_conditional_block_writes_race(azurite: AzuriteServer) -> None:
    """Of six racing if-absent writers (three with block uploads), exactly one wins."""
    store = azurite.store()
    payloads = [
        b"".join(blocks(3, seed)) if seed % 2 else f"small {seed}".encode()
        for seed in range(6)
    ]
    barrier = threading.Barrier(len(payloads))
    results: list[object] = [None] * len(payloads)

    def write(i: int) -> None:
        barrier.wait()
        try:
            store.write("race", payloads[i], if_absent=True)
            results[i] = "won"
        except ObjectExists:
            results[i] = "lost"
        except BaseException as e:
            results[i] = e

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(map(str, results)) == ["lost"] * 5 + ["won"]
    winner = results.index("won")
    assert read_bytes(store, "race") == payloads[winner]
    with pytest.raises(ObjectExists):
        store.write("race", b"".join(blocks(3, 99)), if_absent=True)
    assert read_bytes(store, "race") == payloads[winner]


def test_block_upload_commits_once_and_reports_md5(azurite: AzuriteServer) -> None:
    """Blocks of block_size, one commit; the whole MD5 is stored and listed."""
    store = azurite.store()
    data = b"".join(blocks(5)) + b"tail"
    info = store.write(
        "big",
        io.BytesIO(data),
        size=len(data),
        checksums={"sha1": hashlib.sha1(data).hexdigest()},
    )

    md5 = hashlib.md5(data).hexdigest()
    assert info.checksums["md5"] == md5
    assert info.checksums["sha1"] == hashlib.sha1(data).hexdigest()
    assert store.stat("big").checksums == {"md5": md5}
    assert [i.checksums for i in store.list()] == [{"md5": md5}]
    blob = store.container_client.get_blob_client("big")
    committed, pending = blob.get_block_list("all")
    assert [b.size for b in committed] == [BLOCK] * 5 + [4]
    assert pending == []
    assert read_bytes(store, "big") == data


def test_nothing_visible_before_the_commit(azurite: AzuriteServer) -> None:
    """While blocks are staged, readers see the old object, or none."""
    store = azurite.store(max_concurrency=1)
    store.write("old", b"the previous object")
    seen: list[object] = []

    def observing(key: str) -> Iterator[bytes]:
        parts = blocks(6, 3)
        yield from parts[:4]
        seen.append(len(uncommitted(store, key)))  # staged for real
        try:
            seen.append(store.stat(key).size)
        except ObjectNotFound:
            seen.append("absent")
        seen.append(read_bytes(store, key) if key == "old" else None)
        seen.append([i.key for i in store.list()])
        yield from parts[4:]

    store.write("new", observing("new"))
    staged, stat, _, listed = seen
    assert isinstance(staged, int)
    assert staged >= 2
    assert (stat, listed) == ("absent", ["old"])
    seen.clear()
    store.write("old", observing("old"))
    staged, stat, read, _ = seen
    assert isinstance(staged, int)
    assert staged >= 2
    assert (stat, read) == (len(b"the previous object"), b"the previous object")
    assert read_bytes(store, "old") == b"".join(blocks(6, 3))


@pytest.mark.parametrize("size", [1000, 5 * BLOCK + 7])
def test_checksum_mismatch_leaves_nothing(azurite: AzuriteServer, size: int) -> None:
    """A wrong expected digest fails before the Put Blob or the commit."""
    store = azurite.store()
    data = random.Random(size).randbytes(size)
    store.write("old", b"old")
    for key in ("new", "old"):
        with pytest.raises(ChecksumMismatch):
            store.write(
                key, data, checksums={"sha512": hashlib.sha512(b"x").hexdigest()}
            )
    with pytest.raises(ObjectNotFound):
        store.stat("new")
    assert read_bytes(store, "old") == b"old"
    assert [i.key for i in store.list()] == ["old"]


def test_bytes_damaged_on_the_way_are_refused(
    azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every Put Block and Put Blob carries a Content-MD5 the service checks."""
    from azure.storage.blob import BlobClient

    store = azurite.store(retry=NO_WAIT)
    stage, upload = BlobClient.stage_block, BlobClient.upload_blob

    def damaged(data: Any) -> bytes:
        return b"\xff" + bytes(data)[1:]

    monkeypatch.setattr(
        BlobClient, "stage_block",
        lambda self, i, data, *a, **k: stage(self, i, damaged(data), *a, **k),
    )  # fmt: skip
    monkeypatch.setattr(
        BlobClient, "upload_blob",
        lambda self, data, *a, **k: upload(self, damaged(data), *a, **k),
    )  # fmt: skip
    for data in (b"small object", b"".join(blocks(3))):
        with pytest.raises(StorageError, match="different bytes") as raised:
            store.write("damaged", data)
        assert raised.value.transient
        with pytest.raises(ObjectNotFound):
            store.stat("damaged")


CRASHING_WRITER = """
import os, random, signal, sys
from carmigrate.storage import AzureBlobStore

account, container, cs, block, n, crash_at = sys.argv[1:]
block, n, crash_at = int(block), int(n), int(crash_at)
store = AzureBlobStore(account, container, connection_string=cs, block_size=block,
                       max_concurrency=1)
rng = random.Random(0)
parts = [rng.randbytes(block) for _ in range(n)]

def data():
    for i, part in enumerate(parts):
        if i == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)
        yield part

store.write("crashed", data())
"""


def test_a_crashed_block_upload_resumes_from_its_staged_blocks(
    azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer killed mid-upload leaves uncommitted blocks; the next write of
    the same data reuses them: every byte is staged once, none twice.
    """
    container = azurite.container()
    n = 10
    proc = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, ACCOUNT, container,
         azurite.connection_string, str(BLOCK), str(n), "7"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == -9, proc.stderr
    store = azurite.store(container)
    with pytest.raises(ObjectNotFound):
        store.stat("crashed")
    staged = uncommitted(store, "crashed")
    assert len(staged) >= 4, staged
    assert all(b.size == BLOCK for b in staged)

    spy = StageSpy(monkeypatch)
    data = b"".join(blocks(n))
    info = store.write("crashed", data, checksums={"sha256": sha(data)})

    assert info.size == len(data)
    assert spy.calls == n - len(staged)
    assert spy.bytes + len(staged) * BLOCK == len(data)  # staged once, not re-sent
    assert sha(read_bytes(store, "crashed")) == sha(data)
    assert uncommitted(store, "crashed") == []


def test_staged_blocks_of_other_data_are_not_reused(
    azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block is reused only when its offset, length and MD5 match."""
    store = azurite.store()

    def broken(parts: list[bytes]) -> Iterator[bytes]:
        yield from parts[:5]
        raise BackendUnavailable("the source broke off")

    with pytest.raises(BackendUnavailable):
        store.write("key", broken(blocks(8, 1)))
    assert len(uncommitted(store, "key")) >= 3
    spy = StageSpy(monkeypatch)
    other = blocks(8, 2)
    other[0] = blocks(8, 1)[0]  # the first block is the same
    store.write("key", other)

    assert spy.calls == 7
    assert read_bytes(store, "key") == b"".join(other)

    # without resume_uploads nothing is looked up or reused
    plain = azurite.store(store.container, resume_uploads=False)
    with pytest.raises(BackendUnavailable):
        plain.write("again", broken(blocks(8, 1)))
    spy.calls = 0
    plain.write("again", b"".join(blocks(8, 1)))
    assert spy.calls == 8


# ----------------------------------------------------------------------
# reads


def test_reads_reconnect_pinned_to_the_etag(
    azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read broken mid-stream continues where it stopped, never mixing versions."""
    from azure.core.exceptions import ServiceResponseError
    from azure.storage.blob import StorageStreamDownloader

    store = azurite.store(retry=RetryPolicy(sleep=lambda _: None))
    data = random.Random(5).randbytes(9 * 1024 * 1024 + 5)  # 3 GETs of 4 MiB
    store.write("obj", data)
    chunks = StorageStreamDownloader.chunks
    breaks: list[int] = []
    on_break: list[Any] = []

    def breaking(self: Any) -> Iterator[bytes]:
        for n, chunk in enumerate(chunks(self)):
            yield chunk
            if n == 0 and len(breaks) < 2:
                breaks.append(n)
                for action in on_break:
                    action()
                raise ServiceResponseError("connection reset by peer")

    monkeypatch.setattr(StorageStreamDownloader, "chunks", breaking)
    assert read_bytes(store, "obj", start=10) == data[10:]
    assert len(breaks) == 2

    breaks.clear()
    on_break.append(lambda: store.write("obj", b"replaced meanwhile"))
    with pytest.raises(StorageError, match="changed while being read"):
        read_bytes(store, "obj")


def test_short_data_is_never_silent(
    azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.storage.blob import StorageStreamDownloader

    store = azurite.store()
    store.write("obj", random.Random(6).randbytes(6 * 1024 * 1024))
    chunks = StorageStreamDownloader.chunks
    monkeypatch.setattr(
        StorageStreamDownloader, "chunks", lambda self: iter([next(chunks(self))])
    )
    with pytest.raises(StorageError, match="ended early"):
        read_bytes(store, "obj")


# ----------------------------------------------------------------------
# listing


def test_listing_is_in_code_point_order(azurite: AzuriteServer) -> None:
    """Azurite lists in UTF-16 order; the store yields code point order."""
    store = azurite.store()
    keys = [
        "o/\uff01",  # U+FF01: after U+10000.. in UTF-16, before in code points
        "o/\U0001f600",
        "o/\U0001f600/x",
        "o/\ufb01-x",
        "o/a",
        "o/\U00010000",
        "o/z\U0001f600",
        "o/z\uff01",
        "p",
    ]
    for key in keys:
        store.write(key, b"x")
    raw = [b.name for b in store.container_client.list_blobs()]

    assert raw != sorted(keys)  # the service's own order differs
    assert [i.key for i in store.list()] == sorted(keys)
    assert [i.key for i in store.list("o/z")] == ["o/z\uff01", "o/z\U0001f600"]
    # under a prefix that holds such characters itself
    emoji = azurite.store(store.container, "\U0001f600")
    for key in ("\uff01", "\U0001f600", "b"):
        emoji.write(key, b"x")
    assert [i.key for i in emoji.list()] == ["b", "\uff01", "\U0001f600"]
    assert [i.key for i in emoji.list("\U0001f600")] == ["\U0001f600"]


def test_list_all_reports_names_that_are_not_keys(azurite: AzuriteServer) -> None:
    store = azurite.store()
    store.write("fine", b"x")
    client = store.container_client
    client.get_blob_client("a//b").upload_blob(b"bad")
    assert [i.key for i in store.list()] == ["fine"]
    entries = list(store.list_all())
    assert [getattr(e, "key", getattr(e, "name", None)) for e in entries] == [
        "a//b",
        "fine",
    ]
    assert "key rules" in entries[0].reason  # type: ignore[union-attr]


# ----------------------------------------------------------------------
# uncommitted blocks left behind


def test_abort_uploads_removes_blocks_of_blobs_never_committed(
    azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = azurite.store(prefix="p")

    def read_once(items: list[str], log: list[str]) -> Iterator[str]:
        for item in items:
            log.append(item)
            yield item

    untouched: list[str] = []
    assert store.abort_uploads(read_once(["x"], untouched)).aborted == ()
    assert untouched == []  # nothing pending: the keys are not read

    def broken() -> Iterator[bytes]:
        yield from blocks(4, 7)
        raise BackendUnavailable("killed")

    store.write("committed", b"an object")
    for key in ("gone", "kept", "committed"):
        with pytest.raises(BackendUnavailable):
            store.write(key, broken())
        assert uncommitted(store, key)
    result = store.abort_uploads(
        ["gone", "committed", "unknown"], keep_resumable=["kept"]
    )

    assert [u.key for u in result.aborted] == ["gone"]
    assert [u.key for u in result.kept] == ["kept"]
    assert result.failed == ()
    assert uncommitted(store, "gone") == []
    assert read_bytes(store, "committed") == b"an object"
    assert uncommitted(store, "kept")
    spy = StageSpy(monkeypatch)
    store.write("kept", blocks(6, 7))
    assert spy.calls < 6  # the kept blocks were reused


# ----------------------------------------------------------------------
# the Archive tier


def test_archive_tier_is_cold_until_rehydrated(azurite: AzuriteServer) -> None:
    """Archive -> cold, ColdObject on read -> request_restore -> readable."""
    store = azurite.store(rehydrate_tier="Cool")
    store.write("cold", b"frozen")
    store.container_client.get_blob_client("cold").set_standard_blob_tier("Archive")

    info = store.stat("cold")
    assert (info.storage_class, info.cold, info.restore) == ("Archive", True, None)
    assert [i.cold for i in store.list()] == [True]
    for start, end in ((0, None), (2, 2)):
        with pytest.raises(ColdObject) as raised:
            read_bytes(store, "cold", start=start, end=end)
        assert raised.value.storage_class == "Archive"
        assert not raised.value.restore_in_progress
    with pytest.raises(ValueError, match="tier"):
        store.request_restore("cold", tier="Glacial")

    store.request_restore("cold", tier="Expedited")

    after = store.stat("cold")  # Azurite rehydrates at once
    assert (after.storage_class, after.cold) == ("Cool", False)
    assert read_bytes(store, "cold") == b"frozen"
    with pytest.raises(StorageError, match="not Archive"):
        store.request_restore("cold")
    with pytest.raises(ObjectNotFound):
        store.request_restore("missing")


def test_writes_into_the_archive_tier_and_restore_object(
    azurite: AzuriteServer,
) -> None:
    store = azurite.store(blob_tier="Archive")
    assert store.write("a", b"archived at once").storage_class == "Archive"
    assert store.write("big", blocks(3)).storage_class == "Archive"
    assert store.stat("a").cold
    assert store.stat("big").cold

    assert not restore_object(store, "a", poll_interval=0).cold
    assert store.stat("a").storage_class == "Hot"
    assert read_bytes(store, "a") == b"archived at once"


def test_a_rehydration_under_way(
    azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """archive_status rehydrate-pending-*: in progress, not asked again (injected:
    Azurite never shows this phase)."""
    from azure.storage.blob import BlobClient

    store = azurite.store()
    store.write("cold", b"frozen")
    store.container_client.get_blob_client("cold").set_standard_blob_tier("Archive")
    props = BlobClient.get_blob_properties

    def pending(self: Any, **kw: Any) -> Any:
        p = props(self, **kw)
        p.archive_status = "rehydrate-pending-to-hot"
        return p

    monkeypatch.setattr(BlobClient, "get_blob_properties", pending)
    asked: list[object] = []
    monkeypatch.setattr(
        BlobClient, "set_standard_blob_tier", lambda *a, **k: asked.append(a)
    )
    info = store.stat("cold")
    assert info.cold
    assert info.restore is not None
    assert info.restore.in_progress
    store.request_restore("cold")
    assert asked == []
    with pytest.raises(ColdObject) as raised:
        read_bytes(store, "cold")
    assert raised.value.restore_in_progress


# ----------------------------------------------------------------------
# SAS URLs


def test_sas_urls_work_and_expire(azurite: AzuriteServer) -> None:
    store = azurite.store(prefix="sas")
    store.write("obj", b"shared")
    url = store.presign("obj", expires_in=300)
    assert ACCOUNT_KEY not in url
    assert "sig=" in url
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == b"shared"

    put = store.presign("new", method="PUT", expires_in=300)
    request = urllib.request.Request(
        put, data=b"put through a SAS", method="PUT",
        headers={"x-ms-blob-type": "BlockBlob"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 201
    assert read_bytes(store, "new") == b"put through a SAS"
    refused = urllib.request.Request(
        url, data=b"x", method="PUT", headers={"x-ms-blob-type": "BlockBlob"}
    )
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(refused, timeout=10)
    denied.value.close()
    assert denied.value.code == 403  # a GET URL does not allow a PUT

    short = store.presign("obj", expires_in=1)
    time.sleep(2.5)
    with pytest.raises(urllib.error.HTTPError) as expired:
        urllib.request.urlopen(short, timeout=10)
    expired.value.close()
    assert expired.value.code == 403
    with pytest.raises(ValueError, match="GET or PUT"):
        store.presign("obj", method="DELETE")


def test_presign_needs_the_account_key(azurite: AzuriteServer) -> None:
    container = azurite.container()
    store = AzureBlobStore(
        ACCOUNT, container, sas_token="sv=2020-01-01&sig=bm90IGEga2V5",
        endpoint_url=azurite.endpoint,
    )  # fmt: skip
    try:
        with pytest.raises(StorageError, match="account key") as raised:
            store.presign("k")
        assert not raised.value.transient
    finally:
        store.close()


# ----------------------------------------------------------------------
# copies


def test_copies_within_the_account(azurite: AzuriteServer) -> None:
    """Synchronous Copy Blob From URL: atomic, metadata kept or replaced, if-absent."""
    src = azurite.store(prefix="src")
    dst = azurite.store(src.container, "dst", blob_tier="Cool")
    src.write("obj", b"copy me", metadata={"color": "blue"})
    assert dst.can_copy_from(src)

    info = dst.copy_from(src, "obj", "copy")
    assert (info.size, dict(info.metadata), info.storage_class) == (
        7, {"color": "blue"}, "Cool",
    )  # fmt: skip
    assert read_bytes(dst, "copy") == b"copy me"
    with pytest.raises(ObjectExists):
        dst.copy_from(src, "obj", "copy", if_absent=True, metadata={"color": "red"})
    assert dst.stat("copy").metadata == {"color": "blue"}
    with pytest.raises(ObjectNotFound):
        dst.copy_from(src, "missing", "x")
    src.container_client.get_blob_client("src/obj").set_standard_blob_tier("Archive")
    with pytest.raises(ColdObject):
        dst.copy_from(src, "obj", "y")
    with pytest.raises(ObjectNotFound):
        dst.stat("y")


def test_a_copy_is_pinned_to_the_source_it_looked_at(
    azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copy Blob From URL carries the source's ETag: a source replaced since its
    stat fails the copy (transient), and nothing is written."""
    import attrs

    store = azurite.store()
    store.write("src", b"version 1")
    stale = attrs.evolve(store.stat("src"), etag="0x8DC0000DEADBEEF")
    monkeypatch.setattr(store, "stat", lambda key: stale)
    with pytest.raises(StorageError, match="changed") as raised:
        store.copy_from(store, "src", "dst")
    assert raised.value.transient
    monkeypatch.undo()
    with pytest.raises(ObjectNotFound):
        store.stat("dst")


def test_large_copies_within_the_account_fall_back_to_streaming(
    azurite: AzuriteServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Over the Copy Blob From URL limit a copy stages blocks from a URL; Azurite
    cannot, so the copy streams, and later ones stream at once."""
    import carmigrate.storage._azure as azure_module

    monkeypatch.setattr(azure_module, "SYNC_COPY_LIMIT", 10)
    store = azurite.store(copy_block_size=BLOCK)
    data = b"".join(blocks(3, 4))
    store.write("src", data)
    with caplog.at_level(logging.INFO, logger="carmigrate.storage"):
        info = store.copy_from(store, "src", "dst", metadata={"m": "1"})

    assert info.size == len(data)
    assert read_bytes(store, "dst") == data
    assert store.stat("dst").metadata == {"m": "1"}
    assert not store.url_copy
    assert store.can_copy_from(store)  # the same account: always
    assert "does not implement copies from URLs" in caplog.text


@pytest.mark.s3
@pytest.mark.parametrize("size", [1000, 3 * BLOCK + 5])
def test_copy_from_a_presigned_url_is_detected_and_streams(
    azurite: AzuriteServer,
    moto: S3Server,
    size: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Azurite refuses Put Blob/Block From URL (501): detected once, then streamed."""
    source = moto.store()
    data = random.Random(size).randbytes(size)
    source.write("obj", data, metadata={"origin": "s3"})
    dest = azurite.store(copy_block_size=BLOCK)
    assert dest.url_copy
    assert dest.can_copy_from(source)

    with caplog.at_level(logging.INFO, logger="carmigrate.storage"):
        info = dest.copy_from(source, "obj", "copied")

    assert info.size == size
    assert read_bytes(dest, "copied") == data
    assert dest.stat("copied").metadata == {"origin": "s3"}
    assert dest.stat("copied").checksums["md5"] == hashlib.md5(data).hexdigest()
    assert not dest.url_copy
    assert not dest.can_copy_from(source)
    assert caplog.text.count("does not implement copies from URLs") == 1
    with pytest.raises(StorageError, match="cannot copy on the service"):
        dest.copy_from(source, "obj", "again")
    # copy_object streams from now on
    copy_object(source, "obj", dest, "streamed", verify=True)
    assert read_bytes(dest, "streamed") == data


class EmulatedUrlCopies:
    """Put Blob/Block From URL as Azure does them: the service fetches the URL.

    Azurite does not implement them, so they are replaced by calls that
    fetch the presigned URL themselves and stage or upload what they got.
    Each request "takes" ``duration`` seconds of the store's (fake) clock.
    """

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        store: AzureBlobStore,
        source: Any,
        duration: float,
    ) -> None:
        from azure.storage.blob import BlobClient

        self.now = 0.0
        self.duration = duration
        self.presigned: dict[str, tuple[float, int]] = {}
        self.uses: list[tuple[str, float]] = []
        self.fail_at: int | None = None
        self.md5s: list[bytes | None] = []
        self.during: list[Any] = []
        store._clock = lambda: self.now  # type: ignore[method-assign]
        presign = source.presign

        def recording_presign(key: str, **kw: Any) -> str:
            # a fragment tells apart the URLs presigned in the same second
            url = f"{presign(key, **kw)}#presigned-{len(self.presigned)}"
            self.presigned[url] = (self.now, kw["expires_in"])
            return url

        monkeypatch.setattr(source, "presign", recording_presign)

        def fetch(
            url: str, first: int | None = None, length: int | None = None
        ) -> bytes:
            self.uses.append((url, self.now))
            headers = {}
            if first is not None and length is not None:
                headers["Range"] = f"bytes={first}-{first + length - 1}"
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=10
            ) as r:
                data = r.read()
            self.now += self.duration
            return data

        def stage_block_from_url(
            client: Any, block_id: str, source_url: str,
            source_offset: int | None = None, source_length: int | None = None,
            **kw: Any,
        ) -> Any:  # fmt: skip
            if self.fail_at is not None and len(self.uses) == self.fail_at:
                from azure.core.exceptions import ServiceResponseError

                self.fail_at = None
                raise ServiceResponseError("connection reset by peer")
            for action in self.during:
                action(len(self.uses))
            data = fetch(source_url, source_offset, source_length)
            return client.stage_block(block_id, data, length=len(data))

        def upload_blob_from_url(client: Any, source_url: str, **kw: Any) -> Any:
            data = fetch(source_url)
            md5 = kw.get("source_content_md5")
            self.md5s.append(md5)
            assert md5 is None or md5 == hashlib.md5(data).digest()
            return client.upload_blob(
                data,
                overwrite=kw["overwrite"],
                metadata=kw.get("metadata"),
                standard_blob_tier=kw.get("standard_blob_tier"),
            )

        monkeypatch.setattr(BlobClient, "stage_block_from_url", stage_block_from_url)
        monkeypatch.setattr(BlobClient, "upload_blob_from_url", upload_blob_from_url)

    def check_validity(self) -> None:
        """Every request ran on a URL that was still valid when it finished."""
        for url, started in self.uses:
            presigned_at, expires_in = self.presigned[url]
            assert started + self.duration <= presigned_at + expires_in, (
                f"a request at t={started} s used a URL presigned at "
                f"t={presigned_at} s for {expires_in} s"
            )


@pytest.mark.s3
def test_a_long_copy_from_url_never_meets_an_expired_url(
    azurite: AzuriteServer, moto: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 002: Azure copies failed after an hour when the presigned source URL
    expired. Twenty blocks of 700 s each (almost 4 h) with URLs valid for an
    hour: each request gets a URL valid until it ends."""
    source = moto.store()
    data = b"".join(blocks(20, 8, size=4096))
    source.write("obj", data)
    dest = azurite.store(copy_block_size=4096, copy_url_expiry=3600)
    service = EmulatedUrlCopies(monkeypatch, dest, source, duration=700)
    visible: list[object] = []

    def look(n: int) -> None:
        if n == 10:
            try:
                visible.append(dest.stat("copied"))
            except ObjectNotFound:
                visible.append("absent")

    service.during.append(look)
    info = dest.copy_from(source, "obj", "copied", if_absent=True)

    assert info.size == len(data)
    assert read_bytes(dest, "copied") == data
    assert visible == ["absent"]  # nothing before the commit
    assert len(service.uses) == 20
    assert len(service.presigned) >= 4  # presigned again as the copy went on
    service.check_validity()
    assert dest.url_copy
    with pytest.raises(ObjectExists):
        dest.copy_from(source, "obj", "copied", if_absent=True)


@pytest.mark.s3
def test_a_broken_copy_from_url_resumes_from_its_staged_blocks(
    azurite: AzuriteServer, moto: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = moto.store()
    data = b"".join(blocks(8, 9, size=4096))
    source.write("obj", data)
    dest = azurite.store(copy_block_size=4096, retry=RetryPolicy(max_attempts=1))
    service = EmulatedUrlCopies(monkeypatch, dest, source, duration=1)
    service.fail_at = 5

    with pytest.raises(BackendUnavailable):
        dest.copy_from(source, "obj", "copied")
    with pytest.raises(ObjectNotFound):
        dest.stat("copied")
    assert len(uncommitted(dest, "copied")) == 5
    service.uses.clear()
    dest.copy_from(source, "obj", "copied")

    assert len(service.uses) == 3  # only the blocks not staged before
    assert read_bytes(dest, "copied") == data


@pytest.mark.s3
def test_a_small_copy_from_url_is_one_request_checked_by_md5(
    azurite: AzuriteServer, moto: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = moto.store()
    source.write("obj", b"small", metadata={"k": "v"})
    dest = azurite.store()
    service = EmulatedUrlCopies(monkeypatch, dest, source, duration=1)

    info = dest.copy_from(source, "obj", "copied")

    assert len(service.uses) == 1
    assert service.md5s == [hashlib.md5(b"small").digest()]  # checked by the service
    assert info.size == 5
    assert dict(info.metadata) == {"k": "v"}
    assert read_bytes(dest, "copied") == b"small"


# ----------------------------------------------------------------------
# errors


def test_bad_credentials_are_access_denied(azurite: AzuriteServer) -> None:
    container = azurite.container()
    wrong = "d3Jvbmcga2V5IGJ1dCB2YWxpZCBiYXNlNjQgd3Jvbmcga2V5IGJ1dCB2YWxpZCE="
    store = AzureBlobStore(
        ACCOUNT, container, account_key=wrong, endpoint_url=azurite.endpoint
    )
    try:
        for call in (
            lambda: store.stat("k"),
            lambda: store.write("k", b"x"),
            lambda: list(store.list()),
        ):
            with pytest.raises(StorageError, match="access denied") as raised:
                call()
            assert not isinstance(raised.value, ObjectNotFound)
            assert not raised.value.transient
            assert wrong not in str(raised.value)
    finally:
        store.close()


def test_a_missing_container_is_named(azurite: AzuriteServer) -> None:
    store = azurite.store("no-such-container")
    for call in (
        lambda: store.stat("k"),
        lambda: store.write("k", b"x"),
        lambda: list(store.list()),
        lambda: store.delete("k"),
    ):
        with pytest.raises(
            StorageError, match="container 'no-such-container' does not exist"
        ) as raised:
            call()
        assert not isinstance(raised.value, ObjectNotFound)
        assert not raised.value.transient


def test_an_unreachable_endpoint_is_transient() -> None:
    store = AzureBlobStore(
        ACCOUNT, "cont", account_key=ACCOUNT_KEY,
        endpoint_url=f"http://127.0.0.1:9/{ACCOUNT}", retry=NO_WAIT,
    )  # fmt: skip
    try:
        with pytest.raises(BackendUnavailable) as raised:
            store.stat("k")
        assert raised.value.transient
    finally:
        store.close()


def _http_error(status: int, code: str, message: str = "msg") -> Exception:
    from azure.core.exceptions import HttpResponseError

    error = HttpResponseError(message=message)
    error.status_code = status
    error.error_code = code
    return error


@pytest.mark.parametrize(
    ("status", "code", "kind", "transient"),
    [
        (404, "BlobNotFound", ObjectNotFound, False),
        (404, "ContainerNotFound", StorageError, False),
        (409, "BlobAlreadyExists", ObjectExists, False),
        (412, "ConditionNotMet", ObjectExists, False),
        (412, "LeaseIdMissing", StorageError, False),
        (412, "SourceConditionNotMet", StorageError, True),
        (409, "BlobArchived", ColdObject, False),
        (409, "BlobBeingRehydrated", ColdObject, False),
        (503, "ServerBusy", BackendUnavailable, True),
        (500, "InternalError", BackendUnavailable, True),
        (500, "OperationTimedOut", BackendUnavailable, True),
        (429, "", BackendUnavailable, True),
        (403, "AuthenticationFailed", StorageError, False),
        (403, "AuthorizationPermissionMismatch", StorageError, False),
        (400, "Md5Mismatch", StorageError, True),
        (400, "InvalidBlockList", StorageError, True),
        (501, "APINotImplemented", StorageError, False),
        (400, "InvalidHeaderValue", StorageError, False),
    ],
)
def test_service_errors_are_translated(
    status: int, code: str, kind: type[StorageError], transient: bool
) -> None:
    store = AzureBlobStore(ACCOUNT, "cont", account_key=ACCOUNT_KEY)
    try:
        err = store._translate(_http_error(status, code), "k", "op")
    finally:
        store.close()
    assert type(err) is kind
    assert err is not None
    assert err.transient is transient
    assert err.key == "k"


def test_connection_errors_are_transient() -> None:
    from azure.core.exceptions import (
        ClientAuthenticationError,
        IncompleteReadError,
        ServiceRequestError,
        ServiceResponseError,
    )

    store = AzureBlobStore(ACCOUNT, "cont", account_key=ACCOUNT_KEY)
    try:
        for exc in (
            ServiceRequestError("refused"),
            ServiceResponseError("reset"),
            IncompleteReadError("short"),
            ConnectionResetError("reset"),
        ):
            err = store._translate(exc, "k", "read")
            assert isinstance(err, BackendUnavailable), exc
        token = store._translate(ClientAuthenticationError("no token"), None, "list")
        assert type(token) is StorageError
        assert not token.transient
        assert store._translate(KeyError("foreign"), None, "list") is None
    finally:
        store.close()


# ----------------------------------------------------------------------
# the command line


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_copies_to_az_urls_with_store_options(
    tmp_path: Path, azurite: AzuriteServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """plan, run, verify and resume take az:// URLs and --destination-option."""
    src = tmp_path / "src"
    objects = {"a.bin": b"a" * 1000, "big": b"".join(blocks(5, 11)) + b"!", "d/e": b"f"}
    for key, data in objects.items():
        (src / key).parent.mkdir(parents=True, exist_ok=True)
        (src / key).write_bytes(data)
    container = azurite.container()
    url = f"az://{ACCOUNT}/{container}/new"
    plan, ledger = str(tmp_path / "p.jsonl"), str(tmp_path / "l.db")
    opts = [
        "--destination-option", f"connection_string={azurite.connection_string}",
        "--destination-option", f"block_size={BLOCK}",
        "--destination-option", "blob_tier=Cool",
    ]  # fmt: skip

    for argv in (
        ["plan", str(src), url, "-o", plan],
        ["run", plan, "--ledger", ledger],
        ["verify", "--ledger", ledger],
        ["resume", "--ledger", ledger],
    ):
        code, _, err = _cli(capsys, *argv, *opts)
        assert code == 0, err
    with Ledger(ledger, readonly=True) as done:
        counts = dict(done.counts())
    assert sum(counts.values()) == 3
    assert ItemState.FAILED not in counts
    store = azurite.store(container, "new")
    assert {i.key: read_bytes(store, i.key) for i in store.list()} == objects
    assert store.stat("a.bin").storage_class == "Cool"  # the options arrived
    committed, _ = store.container_client.get_blob_client("new/big").get_block_list(
        "committed"
    )
    assert len(committed) == 6
    for path in (plan, ledger):  # the secret is never recorded
        assert ACCOUNT_KEY.encode() not in Path(path).read_bytes()

    code, _, err = _cli(
        capsys, "plan", str(src), url, "-o", str(tmp_path / "q.jsonl"),
        "--destination-option", "blok_size=1",
    )  # fmt: skip
    assert code == 2
    assert (
        "unknown option 'blok_size' for az stores (did you mean 'block_size'?)" in err
    )
    code, _, err = _cli(
        capsys, "plan", str(src), url, "-o", str(tmp_path / "q.jsonl"),
        "--destination-option", "block_size=big",
    )  # fmt: skip
    assert code == 2
    assert "option 'block_size' of az stores takes int, not str 'big'" in err


def test_cli_reads_credentials_from_the_environment(
    tmp_path: Path,
    azurite: AzuriteServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "k").write_bytes(b"v")
    container = azurite.container()
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    plan, ledger = str(tmp_path / "p.jsonl"), str(tmp_path / "l.db")
    url = f"az://{ACCOUNT}/{container}"

    assert _cli(capsys, "plan", str(src), url, "-o", plan)[0] == 0
    assert _cli(capsys, "run", plan, "--ledger", ledger)[0] == 0
    assert read_bytes(azurite.store(container), "k") == b"v"
    assert os.environ["AZURE_STORAGE_CONNECTION_STRING"] not in Path(plan).read_text()
