"""open_store: from URLs and paths to stores, plugins through entry points."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from carmigrate.errors import StorageError
from carmigrate.storage import (
    ENTRY_POINT_GROUP,
    LocalStore,
    MemoryStore,
    RetryPolicy,
    S3Store,
    Store,
    check_store_options,
    open_store,
)


def test_paths_and_file_urls(tmp_path: Path) -> None:
    """Plain paths, PathLike objects and file:// URLs give a LocalStore."""
    for target in (
        str(tmp_path),
        tmp_path,
        tmp_path.as_uri(),
        f"file://localhost{tmp_path}",
    ):
        store = open_store(target)
        assert isinstance(store, LocalStore)
        assert store.root == str(tmp_path.resolve())
    with pytest.raises(ValueError, match="local"):
        open_store("file://elsewhere/tmp")


def test_memory_urls_are_fresh_stores() -> None:
    """memory:// gives a new, empty MemoryStore each time."""
    a = open_store("memory://one")
    a.write("k", b"v")
    b = open_store("memory://one")

    assert isinstance(a, MemoryStore)
    assert isinstance(b, MemoryStore)
    assert a.url == "memory://one"
    assert list(b.list()) == []


def test_s3_urls_do_not_connect() -> None:
    """s3:// builds an S3Store without any network access."""
    store = open_store(
        "s3://bucket/a/prefix/", endpoint_url="http://127.0.0.1:9", access_key_id="x"
    )
    try:
        assert isinstance(store, S3Store)
        assert store.bucket == "bucket"
        assert store.prefix == "a/prefix/"
        assert store.url == "s3://bucket/a/prefix"
    finally:
        store.close()
    with pytest.raises(ValueError, match="query"):
        open_store("s3://bucket/p?endpoint_url=x")


def test_credentials_in_urls_are_refused() -> None:
    """user:password@ in any URL is refused, and the message does not echo it."""
    for url in (
        "s3://AKIA:s3cr3t@bucket/p",
        "ftp://user:s3cr3t@host/p",
        "memory://u:s3cr3t@x",
    ):
        with pytest.raises(ValueError, match="credentials") as raised:
            open_store(url)
        assert "s3cr3t" not in str(raised.value)


def test_unknown_scheme() -> None:
    """A scheme nobody handles is a StorageError naming the scheme."""
    with pytest.raises(StorageError, match="nosuchscheme"):
        open_store("nosuchscheme://x")


class PluginStore:
    """A third-party store, as an entry point would provide it."""

    def __init__(self, url: str, **options: object) -> None:
        self.inner = MemoryStore("plugin")
        self.options = options
        self.url = url
        self.capabilities = self.inner.capabilities

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    # the Protocol's methods, delegated explicitly for isinstance(…, Store)
    def stat(self, key: str):  # type: ignore[no-untyped-def]
        return self.inner.stat(key)

    def open_read(self, key: str, *, start: int = 0, end: int | None = None):  # type: ignore[no-untyped-def]
        return self.inner.open_read(key, start=start, end=end)

    def write(self, key: str, data, **kw):  # type: ignore[no-untyped-def]
        return self.inner.write(key, data, **kw)

    def list(self, prefix: str = ""):  # type: ignore[no-untyped-def]
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


def test_entry_point_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """A package registering a scheme in carmigrate.stores is used for it."""
    ep = importlib.metadata.EntryPoint(
        name="plug", value=f"{__name__}:PluginStore", group=ENTRY_POINT_GROUP
    )
    bad = importlib.metadata.EntryPoint(
        name="bad", value="builtins:str", group=ENTRY_POINT_GROUP
    )
    real = importlib.metadata.entry_points

    def fake(**kwargs: object) -> object:
        if kwargs.get("group") == ENTRY_POINT_GROUP:
            return importlib.metadata.EntryPoints([ep, bad])
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    store = open_store("plug://somewhere", flavour="x")

    assert isinstance(store, PluginStore)
    assert isinstance(store, Store)
    assert store.options == {"flavour": "x"}
    with pytest.raises(TypeError, match="not a Store"):
        open_store("bad://x")


# ----------------------------------------------------------------------
# check_store_options


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("s3://b/p", {"foo": 1}, "unknown option 'foo' for s3 stores$"),
        (
            "s3://b/p",
            {"part_sise": 1},
            r"unknown option 'part_sise' for s3 stores \(did you mean 'part_size'\?\)",
        ),
        (
            "s3://b",
            {"part_size": "8M"},
            "option 'part_size' of s3 stores takes int, not str '8M'",
        ),
        ("s3://b", {"part_size": True}, "takes int, not bool True"),
        ("s3://b", {"checksums": "no"}, "takes bool, not str 'no'"),
        (
            "s3://b",
            {"conditional_write": "maybe"},
            "takes 'auto' \\| 'put' \\| 'multipart' \\| 'none', not str 'maybe'",
        ),
        ("s3://b", {"retry": 3}, "takes RetryPolicy \\| None, not int 3"),
        ("s3://b", {"client": "x"}, "takes S3Client \\| None, not str 'x'"),
        ("/tmp", {"fsync": "yes"}, "option 'fsync' of local stores takes bool"),
        ("file:///tmp", {"bucket": "x"}, "unknown option 'bucket' for local stores"),
        ("memory://m", {"name": "x"}, "unknown option 'name' for memory stores"),
        (
            "gs://b/p",
            {"read_only": "yes"},
            "option 'read_only' of gs stores takes bool",
        ),
    ],
)
def test_bad_options_are_named(
    url: str, options: dict[str, object], message: str
) -> None:
    """Unknown names and values of the wrong type, by the backend's signature."""
    with pytest.raises(TypeError, match=message):
        check_store_options(url, options)


def test_good_options_pass_and_open_store_checks_them(tmp_path: Path) -> None:
    """Values of the right types pass; open_store refuses the bad ones itself."""
    check_store_options(
        "s3://b/p",
        {
            "part_size": 1 << 20,
            "read_timeout": 5,  # an int is a float
            "verify": False,
            "storage_class": None,
            "conditional_write": "multipart",
            "addressing_style": "path",
            "retry": RetryPolicy(),
        },
    )
    check_store_options(tmp_path, {"fsync": False, "create": True})
    check_store_options("gs://b", {"token": "anon", "anything": [1, 2]})  # fsspec's
    with pytest.raises(TypeError, match="unknown option 'foo' for s3 stores"):
        open_store("s3://b/p", foo=1)
    with pytest.raises(TypeError, match="unknown option 'foo' for local stores"):
        open_store(tmp_path, foo=1)
