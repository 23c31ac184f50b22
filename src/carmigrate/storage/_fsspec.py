"""FsspecStore: any fsspec filesystem behind the Store Protocol.

``OSError`` raised by fsspec implementations is translated here.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import secrets
from typing import TYPE_CHECKING, Any, BinaryIO, Final, NoReturn, final
from urllib.parse import urlsplit

from carmigrate.errors import (
    BackendUnavailable,
    CarmigrateError,
    InvalidKey,
    ObjectExists,
    ObjectNotFound,
    StorageError,
)
from carmigrate.storage._base import (
    Capabilities,
    ObjectInfo,
    WriteData,
    derive_capabilities,
)
from carmigrate.storage._io import (
    CheckedRangeReader,
    Digests,
    check_range,
    clip_range,
    iter_chunks,
    normalize_checksums,
    open_checked,
    size_mismatch,
    verify_checksums,
)
from carmigrate.storage._keys import (
    DEFAULT_MAX_KEY_LENGTH,
    validate_key,
    validate_prefix,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = ["FsspecStore"]

RESERVED_PREFIX: Final = ".carmigrate."
_READ_ONLY_PROTOCOLS: Final = frozenset({"http", "https"})


def _mtime(info: Mapping[str, Any]) -> datetime.datetime | None:
    for name in (
        "mtime",
        "LastModified",
        "last_modified",
        "updated",
        "modified",
        "created",
    ):
        value = info.get(name)
        if value is None:
            continue
        if isinstance(value, datetime.datetime):
            return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        if isinstance(value, (int, float)):
            return datetime.datetime.fromtimestamp(float(value), datetime.UTC)
        if isinstance(value, str):
            try:
                parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
    return None


@final
class FsspecStore:
    """Adapts an fsspec filesystem (``gs://``, ``az://``, ``memory://``, local ...).

    Writes stream into a temporary file next to the key
    (``.carmigrate.tmp.*``), check size and checksums, then ``mv`` it over the
    key, so a failed write never leaves a partial object under its key; how
    atomic the final move is depends on the filesystem (a rename locally, a
    server-side copy on object stores). Listing collects ``find()`` and sorts.
    ``if_absent`` cannot be atomic through fsspec: it is refused unless
    ``emulate_if_absent`` allows a check-then-move. ``http(s)://`` stores are
    read-only.

    State: the filesystem object (fsspec caches instances) and the root.

    Args:
        fs: An ``fsspec.AbstractFileSystem``.
        root: Path inside ``fs`` that keys are relative to.
        read_only: Refuse ``write`` and ``delete``.
        emulate_if_absent: Allow a non-atomic ``if_absent`` (check, then move).
        hierarchical_keys: Whether ``a`` and ``a/b`` exclude each other
            (default ``True``, the safe answer for file-like systems).
        url: The URL shown for this store (default: built from the
            filesystem's protocol and ``root``).
    """

    def __init__(
        self,
        fs: Any,
        root: str = "",
        *,
        read_only: bool = False,
        emulate_if_absent: bool = False,
        hierarchical_keys: bool = True,
        url: str | None = None,
    ) -> None:
        self._fs = fs
        self._root = str(fs._strip_protocol(root)).rstrip("/") if root else ""
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self._protocol = str(protocol)
        self._emulate_if_absent = emulate_if_absent
        self._url = url or str(fs.unstrip_protocol(self._root or "/"))
        self._capabilities = derive_capabilities(
            Capabilities(
                sorted_listing=True,
                atomic_write=True,
                conditional_write=False,
                read_only=read_only,
                hierarchical_keys=hierarchical_keys,
                max_key_length=DEFAULT_MAX_KEY_LENGTH,
            ),
            self,
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        read_only: bool | None = None,
        emulate_if_absent: bool = False,
        hierarchical_keys: bool = True,
        **storage_options: Any,
    ) -> FsspecStore:
        """Open an fsspec URL; ``storage_options`` go to the filesystem.

        ``http://`` and ``https://`` URLs are read-only unless ``read_only``
        says otherwise.

        Raises:
            ImportError: fsspec or the protocol's package is not installed.
            ValueError: fsspec does not know the protocol.
        """
        import fsspec.core

        fs, path = fsspec.core.url_to_fs(url, **storage_options)
        scheme = urlsplit(url).scheme
        if read_only is None:
            read_only = scheme in _READ_ONLY_PROTOCOLS
        if scheme in _READ_ONLY_PROTOCOLS:
            root = url.rstrip("/")
            shown = root
        else:
            root = str(path)
            shown = url
        return cls(
            fs,
            root,
            read_only=read_only,
            emulate_if_absent=emulate_if_absent,
            hierarchical_keys=hierarchical_keys,
            url=shown,
        )

    def __repr__(self) -> str:
        return f"FsspecStore({self._url!r})"

    @property
    def url(self) -> str:
        """The URL the store was opened with (or built from protocol and root)."""
        return self._url

    @property
    def fs(self) -> Any:
        """The underlying fsspec filesystem."""
        return self._fs

    @property
    def capabilities(self) -> Capabilities:
        """Sorted listing (sorted here), no conditional write, no metadata, no
        optional Protocols; keys of at most 1,024 bytes.
        """  # noqa: D205
        return self._capabilities

    # ------------------------------------------------------------------

    def _path(self, key: str) -> str:
        validate_key(key)
        for part in key.split("/"):
            if part.startswith(RESERVED_PREFIX):
                raise InvalidKey(
                    f"{self._url}: names starting with {RESERVED_PREFIX!r} are reserved",
                    key=key,
                )
        return f"{self._root}/{key}"

    def _raise(self, e: BaseException, key: str, action: str) -> NoReturn:
        if isinstance(e, CarmigrateError):
            raise e
        where = f"{self._url}: cannot {action} {key!r}"
        if isinstance(e, FileNotFoundError) or (
            isinstance(e, NotADirectoryError) and action in ("stat", "open", "delete")
        ):
            raise ObjectNotFound(f"{self._url}: no object {key!r}", key=key) from e
        if isinstance(e, (NotADirectoryError, FileExistsError, IsADirectoryError)):
            raise InvalidKey(
                f"{where}: a path segment is an object, or the key is a folder", key=key
            ) from e
        if isinstance(e, (ConnectionError, TimeoutError)) or (
            isinstance(e, OSError) and e.errno in (errno.EAGAIN, errno.EBUSY)
        ):
            raise BackendUnavailable(f"{where}: {e}", key=key) from e
        if isinstance(e, OSError):
            raise StorageError(f"{where}: {e}", key=key, transient=False) from e
        raise e

    def _check_writable(self, key: str) -> None:
        if self._capabilities.read_only:
            raise StorageError(f"{self._url}: the store is read-only", key=key)

    def _info(self, key: str, path: str) -> Mapping[str, Any]:
        try:
            info: Mapping[str, Any] = self._fs.info(path)
        except Exception as e:
            self._raise(e, key, "stat")
        if info.get("type", "file") != "file":
            raise ObjectNotFound(f"{self._url}: no object {key!r}", key=key)
        return info

    def stat(self, key: str) -> ObjectInfo:
        """Describe an object with ``fs.info`` (see [Store.stat][carmigrate.storage.Store.stat])."""
        info = self._info(key, self._path(key))
        return ObjectInfo(key=key, size=int(info.get("size") or 0), mtime=_mtime(info))

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        """Open a range with ``fs.open`` and ``seek`` (see [Store.open_read][carmigrate.storage.Store.open_read])."""
        check_range(start, end)
        path = self._path(key)
        size = int(self._info(key, path).get("size") or 0)
        begin, stop = clip_range(start, end, size)
        try:
            f = self._fs.open(path, "rb")
            if begin:
                f.seek(begin)
        except Exception as e:
            self._raise(e, key, "open")

        def fill(view: memoryview) -> int:
            try:
                data = f.read(len(view))
            except Exception as e:
                self._raise(e, key, "read")
            n = len(data)
            view[:n] = data
            return n

        return open_checked(
            CheckedRangeReader(
                fill,
                length=stop - begin,
                url=self._url,
                key=key,
                offset=begin,
                on_close=f.close,
            )
        )

    def write(
        self,
        key: str,
        data: WriteData,
        *,
        size: int | None = None,
        if_absent: bool = False,
        checksums: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Store an object via a temporary file and ``mv`` (see [Store.write][carmigrate.storage.Store.write]).

        Raises:
            StorageError: Also for ``metadata`` (not kept), for ``if_absent``
                without ``emulate_if_absent``, and on a read-only store.
        """
        path = self._path(key)
        self._check_writable(key)
        expected = normalize_checksums(checksums)
        if metadata:
            raise StorageError(
                f"{self._url}: FsspecStore keeps no user metadata", key=key
            )
        if if_absent and not self._emulate_if_absent:
            raise StorageError(
                f"{self._url}: if-absent writes cannot be atomic through fsspec; open "
                "the store with emulate_if_absent=True to accept a check-then-write",
                key=key,
            )
        parent = path.rpartition("/")[0]
        tmp = f"{parent}/{RESERVED_PREFIX}tmp.{secrets.token_hex(8)}"
        try:
            if parent:
                self._fs.makedirs(parent, exist_ok=True)
            f = self._fs.open(tmp, "wb")
        except Exception as e:
            self._raise(e, key, "write")
        published = False
        try:
            digests = Digests(expected)
            written = 0
            try:
                for chunk in iter_chunks(data):
                    digests.update(chunk)
                    try:
                        f.write(chunk)
                    except Exception as e:
                        self._raise(e, key, "write")
                    written += len(chunk)
                    if size is not None and written > size:
                        raise size_mismatch(self._url, key, size, written)
            finally:
                try:
                    f.close()
                except Exception as e:
                    self._raise(e, key, "write")
            if size is not None and written != size:
                raise size_mismatch(self._url, key, size, written)
            actual = digests.hexdigests()
            verify_checksums(expected, actual, url=self._url, key=key)
            try:
                if self._fs.isdir(path):
                    # mv would move the file *into* the folder
                    raise InvalidKey(
                        f"{self._url}: key {key!r} is a folder of other objects",
                        key=key,
                    )
                if if_absent and self._fs.exists(path):
                    raise ObjectExists(f"{self._url}: {key!r} already exists", key=key)
                self._fs.mv(tmp, path)
            except Exception as e:
                self._raise(e, key, "write")
            published = True
        finally:
            if not published:
                # best effort: the error that got us here is the one to report
                with contextlib.suppress(Exception):
                    self._fs.rm_file(tmp)
        return ObjectInfo(key=key, size=written, checksums=actual)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in key order (``fs.find``, then sorted)."""
        validate_prefix(prefix)
        folder = prefix.rpartition("/")[0]
        base = f"{self._root}/{folder}" if folder else (self._root or "/")
        try:
            found: Mapping[str, Mapping[str, Any]] = self._fs.find(
                base, withdirs=False, detail=True
            )
        except FileNotFoundError:
            return iter(())
        except Exception as e:
            self._raise(e, prefix, "list")
        cut = len(self._root) + 1
        infos = []
        for name, info in found.items():
            rel = str(name)[cut:] if self._root else str(name).lstrip("/")
            if not rel.startswith(prefix) or info.get("type", "file") != "file":
                continue
            if any(p.startswith(RESERVED_PREFIX) for p in rel.split("/")):
                continue
            infos.append(
                ObjectInfo(key=rel, size=int(info.get("size") or 0), mtime=_mtime(info))
            )
        infos.sort(key=lambda i: i.key)
        return iter(infos)

    def delete(self, key: str) -> None:
        """Remove an object; a missing key is not an error. Empty folders stay."""
        path = self._path(key)
        self._check_writable(key)
        try:
            info = self._fs.info(path)
            if info.get("type", "file") == "file":
                self._fs.rm_file(path)
        except FileNotFoundError:
            return
        except Exception as e:
            self._raise(e, key, "delete")

    def close(self) -> None:
        """Nothing to release (fsspec owns and caches the filesystem)."""

    def __enter__(self) -> FsspecStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
