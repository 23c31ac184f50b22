"""LocalStore: objects as files under one directory, written atomically."""

from __future__ import annotations

import contextlib
import datetime
import errno
import functools
import hashlib
import os
import secrets
import stat as stat_mod
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, NoReturn, final

from carmigrate.errors import (
    CarmigrateError,
    InvalidKey,
    ObjectExists,
    ObjectNotFound,
    StorageError,
)
from carmigrate.storage._base import (
    BufferLike,
    Capabilities,
    ObjectInfo,
    Store,
    TemporaryCleanup,
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
from carmigrate.storage._unlisted import Unmigratable, name_as_text

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Iterable, Iterator, Mapping

__all__ = ["LocalStore"]

RESERVED_PREFIX: Final = ".carmigrate."
_RESERVED: Final = (
    "reserved name: .carmigrate.* is kept for carmigrate's temporary files"
)
_NOT_UTF8: Final = "name is not UTF-8, so it cannot be a key"


def _remove_one(
    folder_fd: int,
    name: str,
    folder: str,
    cutoff: float,
    left: list[tuple[str, str]],
    *,
    inclusive: bool = False,
) -> int:
    """Remove one temporary file older than ``cutoff``; 1 if it went.

    What is old enough but stays (not a regular file, or unlink failed) is
    appended to ``left`` as ``(path relative to the root, why)``.
    """
    path = f"{folder}/{name}" if folder else name
    try:
        st = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except FileNotFoundError:
        return 0  # its writer finished meanwhile
    except OSError as e:
        left.append((path, f"cannot be read: {e.strerror}"))
        return 0
    if not (st.st_mtime <= cutoff if inclusive else st.st_mtime < cutoff):
        return 0  # young: a writer may still be at it
    if not stat_mod.S_ISREG(st.st_mode):
        left.append((path, "has a temporary name but is not a regular file"))
        return 0
    try:
        os.unlink(name, dir_fd=folder_fd)
    except FileNotFoundError:
        return 0
    except OSError as e:
        left.append((path, f"cannot be removed: {e.strerror}"))
        return 0
    return 1


def _size_of(entry: os.DirEntry[str]) -> int:
    """A regular file's size, else 0 (a folder's contents are not counted)."""
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return 0
    return st.st_size if stat_mod.S_ISREG(st.st_mode) else 0


def _special(mode: int) -> str:
    """Why a non-regular, non-folder entry is not an object."""
    if stat_mod.S_ISLNK(mode):
        return "symbolic link (never followed)"
    if stat_mod.S_ISFIFO(mode):
        return "FIFO (named pipe), not a regular file"
    if stat_mod.S_ISSOCK(mode):
        return "socket, not a regular file"
    if stat_mod.S_ISBLK(mode) or stat_mod.S_ISCHR(mode):
        return "device file, not a regular file"
    return "not a regular file"


_TEMP_MARKER: Final = f"{RESERVED_PREFIX}tmp."


def _temp_prefix(name: str) -> str:
    """The start of the temporary files of writes of objects named ``name``."""
    tag = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{_TEMP_MARKER}{tag}."


"""Names starting with this are the store's own (temporary files)."""

_NAME_MAX: Final = 255

_WRITE_SLICE: Final = 32 << 10
"""The most one ``write(2)`` is given.

On Linux 6.x the page cache takes large folios for large writes, and filling
fresh ones was the main kernel cost of a local copy, varying with the state
of memory. Migrating 1,000 CARs of 1 MiB, 32 KiB writes cost 1.8-2.1 s of
kernel time in six paired rounds against 2.6-4.1 s with 256 KiB writes; for
20 CARs of 100 MiB (blocks reserved) 2.6-2.7 s against 3.2-4.8 s, the page
copy itself falling from 21-33% of all CPU samples to 3.5%
(``benchmarks/RESULTS.md``, "Local writes").
"""


def _load_write_whole() -> Callable[[int, memoryview, int], int] | None:
    """The compiled whole-buffer write, or None where it was not built."""
    try:
        from carmigrate.storage import _fastio  # type: ignore[attr-defined]
    except ImportError:
        return None
    function: Callable[[int, memoryview, int], int] = _fastio.write_all
    return function


_write_whole = _load_write_whole()
"""Writes a chunk in ``_WRITE_SLICE`` pieces with the GIL given up once: with
four workers, one ``os.write`` per piece meant one wait for the GIL per 32 KiB."""


def _write_pieces(fd: int, data: BufferLike) -> None:
    """Write all of ``data`` to ``fd``, at most ``_WRITE_SLICE`` per ``write(2)``."""
    view = memoryview(data).cast("B")
    if _write_whole is not None:
        _write_whole(fd, view, _WRITE_SLICE)
        return
    while view:
        view = view[os.write(fd, view[:_WRITE_SLICE]) :]


_PREALLOCATE_MIN: Final = 8 << 20
"""Objects of a known size at least this large get their blocks reserved first.

Writing 20 files of 100 MiB in 256 KiB writes from one thread took 0.4 s of
kernel time with their blocks reserved and 3.3-3.7 s without (ext4, delayed
allocation); for files of 1 MiB reserving made no clear difference
(``benchmarks/RESULTS.md``, "Local writes").
"""

_FALLOC_FL_KEEP_SIZE: Final = 1

if TYPE_CHECKING:
    _Fallocate = Callable[[int, int, int, int], int]


def _linux_call(name: str, args: str) -> Any:
    """The C library's function ``name`` through ctypes, or None.

    ``args`` spells the argument types, one letter each: ``i`` int, ``u``
    unsigned int, ``q`` 64-bit int, ``s`` a path as bytes. The function
    returns an int and sets errno (``ctypes.get_errno``). None off Linux or
    where the C library lacks it.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    types = {"i": ctypes.c_int, "u": ctypes.c_uint, "q": ctypes.c_int64}
    function.argtypes = [types.get(c, ctypes.c_char_p) for c in args]
    function.restype = ctypes.c_int
    return function


@functools.cache
def _fallocate() -> _Fallocate | None:
    """Linux ``fallocate(2)``, or None where there is none.

    Not ``os.posix_fallocate``: where a filesystem cannot reserve blocks,
    glibc emulates it by writing every block, which is slow on network
    filesystems; the system call just says no.
    """
    function: _Fallocate | None = _linux_call("fallocate64", "iiqq")
    return function


_RENAME_NOREPLACE: Final = 1


@functools.cache
def _renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    """Linux ``renameat2(2)``, or None where the C library has none."""
    function: Callable[[int, bytes, int, bytes, int], int] | None = _linux_call(
        "renameat2", "isisu"
    )
    return function


def _rename_noreplace(tmp: str, name: str, dir_fd: int) -> bool:
    """Move ``tmp`` to ``name`` unless ``name`` exists, in one step.

    Returns False where the system or filesystem cannot do it (the caller
    then links and unlinks); raises ``FileExistsError`` if ``name`` exists.
    """
    function = _renameat2()
    if function is None:
        return False
    if function(dir_fd, os.fsencode(tmp), dir_fd, os.fsencode(name), _RENAME_NOREPLACE):
        import ctypes

        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            return False
        raise OSError(err, os.strerror(err), name)
    return True


def _preallocate(fd: int, size: int | None) -> None:
    """Reserve ``size`` bytes of disk for a new file; best effort.

    The file's size is unchanged (``FALLOC_FL_KEEP_SIZE``), so a short write
    is still seen as short. Failure (no support, no space) is ignored: the
    writes that follow report a real lack of space themselves.
    """
    if size is None or size < _PREALLOCATE_MIN:
        return
    function = _fallocate()
    if function is not None:
        function(fd, _FALLOC_FL_KEEP_SIZE, 0, size)


_DONTNEED: Final = getattr(os, "POSIX_FADV_DONTNEED", None)
_DROP_EVERY: Final = 8 << 20
_LARGEST_FOLIO: Final = 2 << 20


_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_COPY_CHUNK: Final = 8 * 1024 * 1024


def _mtime(st: os.stat_result) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(st.st_mtime_ns / 1e9, datetime.UTC)


class _Vanished(Exception):
    """A folder disappeared under a concurrent delete; walk again."""


class _Dirs:
    """File descriptors of a key's ancestor directories, root first."""

    __slots__ = ("fds", "names")

    def __init__(self, root_fd: int) -> None:
        self.fds = [root_fd]
        self.names: list[str] = []

    @property
    def leaf(self) -> int:
        return self.fds[-1]

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


@final
class LocalStore:
    """A store whose objects are files under one directory.

    Writes go to a temporary file in the destination directory, are fsynced
    and then renamed over the key, so readers see the old object or the new
    one, never a part. ``if_absent`` publishes with ``renameat2(2)`` and
    ``RENAME_NOREPLACE`` (``link(2)`` where the system lacks it), which fails
    if the name exists: race-free between processes too. Missing directories
    are created on write and removed again when a delete empties them.

    Keys map to paths below the root and can never leave it: every path
    component is opened relative to its parent with ``O_NOFOLLOW``, so a
    symbolic link below the root is never followed. A key that crosses one
    raises ``InvalidKey``, and ``list`` skips links. Names starting with
    ``.carmigrate.`` are reserved for temporary files (``InvalidKey``); a
    crashed writer can leave such a file behind, never a partial object
    ([remove_temporary][carmigrate.storage.LocalStore.remove_temporary]
    deletes them). Besides the Store Protocol it implements
    [SupportsServerSideCopy][carmigrate.storage.SupportsServerSideCopy]
    (between local stores) and
    [SupportsTemporaryCleanup][carmigrate.storage.SupportsTemporaryCleanup].

    State: the root path; safe to share between threads.

    Args:
        root: The directory; its own symbolic links are resolved once here.
        create: Create ``root`` (and parents) if missing; otherwise a missing
            root is an error.
        fsync: Flush file data and the directory entry to disk before a
            write returns (turn off only for scratch data).
        cache_reads: Keep what reads bring into the page cache (the
            system's default). With False, each range a stream has read is
            dropped from the cache at once (``POSIX_FADV_DONTNEED``), as
            rclone does: right for reading a large body of data once, as a
            migration's source does, where the cached copies would only
            push out other data, and the memory freed is reused for the
            destination's writes (measured in ``benchmarks/RESULTS.md``). It
            drops pages other readers may have cached too. Ignored where the
            system has no ``posix_fadvise``.

    Raises:
        StorageError: ``root`` does not exist (with ``create=False``) or is
            not a directory.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        create: bool = True,
        fsync: bool = True,
        cache_reads: bool = True,
    ) -> None:
        path = Path(root).expanduser()
        try:
            if create:
                path.mkdir(parents=True, exist_ok=True)
            self._root = os.path.realpath(path, strict=True)
        except OSError as e:
            raise StorageError(f"cannot use {str(path)!r} as a store root: {e}") from e
        if not os.path.isdir(self._root):
            raise StorageError(f"store root {self._root!r} is not a directory")
        self._fsync = fsync
        self._drop = not cache_reads and _DONTNEED is not None
        self._url = Path(self._root).as_uri()
        self._capabilities = derive_capabilities(
            Capabilities(
                sorted_listing=True,
                atomic_write=True,
                conditional_write=True,
                hierarchical_keys=True,
                max_key_length=DEFAULT_MAX_KEY_LENGTH,
            ),
            self,
        )

    def __repr__(self) -> str:
        return f"LocalStore({self._root!r})"

    @property
    def url(self) -> str:
        """The root as a ``file://`` URL."""
        return self._url

    @property
    def root(self) -> str:
        """The absolute root directory, symbolic links resolved."""
        return self._root

    @property
    def capabilities(self) -> Capabilities:
        """Sorted listing, atomic if-absent writes, server-side copy between
        local stores, temporary-file cleanup; hierarchical keys of at most
        1,024 bytes; no stored checksums or metadata.
        """  # noqa: D205
        return self._capabilities

    # ------------------------------------------------------------------
    # paths

    def _split(self, key: str) -> list[str]:
        validate_key(key)
        parts = key.split("/")
        for part in parts:
            if part.startswith(RESERVED_PREFIX):
                raise InvalidKey(
                    f"{self.url}: key {key!r}: names starting with "
                    f"{RESERVED_PREFIX!r} are reserved",
                    key=key,
                )
            if len(part.encode("utf-8")) > _NAME_MAX:
                raise InvalidKey(
                    f"{self.url}: key {key!r} has a segment longer than "
                    f"{_NAME_MAX} bytes",
                    key=key,
                )
        return parts

    def _error(self, e: OSError, key: str, action: str) -> NoReturn:
        if isinstance(
            e, CarmigrateError
        ):  # already ours (ObjectNotFound is an OSError)
            raise e
        transient = e.errno in (errno.EAGAIN, errno.EINTR, errno.EBUSY, errno.ENOSPC)
        raise StorageError(
            f"{self.url}: cannot {action} {key!r}: {e.strerror or e}",
            key=key,
            transient=transient,
        ) from e

    def _crossing(self, dir_fd: int, name: str, key: str, *, missing: str) -> NoReturn:
        """Explain why ``name`` under ``dir_fd`` could not be opened as a dir."""
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.url}: no object {key!r}", key=key) from None
        if stat_mod.S_ISLNK(st.st_mode):
            raise InvalidKey(
                f"{self.url}: key {key!r} crosses the symbolic link {name!r}", key=key
            )
        if missing == "raise":
            raise InvalidKey(
                f"{self.url}: key {key!r} needs {name!r} to be a directory, "
                "but it is an object",
                key=key,
            )
        raise ObjectNotFound(f"{self.url}: no object {key!r}", key=key)

    def _open_dirs(self, key: str, names: list[str], *, create: bool) -> _Dirs:
        """Open the directories ``names`` below the root, never following links.

        With ``create``, missing directories are made; if a concurrent delete
        removes one meanwhile, the walk starts over.
        """
        for _attempt in range(20):
            try:
                root_fd = os.open(
                    self._root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
                )
            except OSError as e:
                self._error(e, key, "open the root for")
            dirs = _Dirs(root_fd)
            try:
                for name in names:
                    fd = self._open_component(dirs.leaf, name, key, create=create)
                    dirs.fds.append(fd)
                    dirs.names.append(name)
            except _Vanished:
                dirs.close()
                continue
            except OSError as e:
                dirs.close()
                self._error(e, key, "open the folders of")
            except BaseException:
                dirs.close()
                raise
            return dirs
        raise StorageError(
            f"{self.url}: folders of {key!r} keep disappearing (concurrent deletes)",
            key=key,
            transient=True,
        )

    def _open_component(self, parent: int, name: str, key: str, *, create: bool) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise ObjectNotFound(
                    f"{self.url}: no object {key!r}", key=key
                ) from None
        except OSError as e:
            if e.errno in (errno.ENOTDIR, errno.ELOOP):
                self._crossing(parent, name, key, missing="raise" if create else "404")
            raise
        try:
            os.mkdir(name, 0o777, dir_fd=parent)
        except FileExistsError:
            pass
        except FileNotFoundError:
            raise _Vanished from None  # the parent was removed meanwhile
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            raise _Vanished from None  # removed again before we opened it
        except OSError as e:
            if e.errno in (errno.ENOTDIR, errno.ELOOP):
                self._crossing(parent, name, key, missing="raise")
            raise

    # ------------------------------------------------------------------
    # reading

    def _open_file(self, key: str) -> tuple[int, os.stat_result]:
        parts = self._split(key)
        dirs = self._open_dirs(key, parts[:-1], create=False)
        try:
            try:
                fd = os.open(
                    parts[-1],
                    # O_NONBLOCK: opening a FIFO must not wait for a writer
                    os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                    dir_fd=dirs.leaf,
                )
            except FileNotFoundError:
                raise ObjectNotFound(
                    f"{self.url}: no object {key!r}", key=key
                ) from None
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise InvalidKey(
                        f"{self.url}: key {key!r} is a symbolic link", key=key
                    ) from e
                self._error(e, key, "open")
        finally:
            dirs.close()
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            os.close(fd)
            raise ObjectNotFound(f"{self.url}: no object {key!r}", key=key)
        return fd, st

    def stat(self, key: str) -> ObjectInfo:
        """Describe an object (see [Store.stat][carmigrate.storage.Store.stat]).

        Reports size and mtime; a plain file keeps no checksums. One
        ``lstat`` in the opened parent folder, without opening the file.
        """
        parts = self._split(key)
        dirs = self._open_dirs(key, parts[:-1], create=False)
        try:
            st = os.stat(parts[-1], dir_fd=dirs.leaf, follow_symlinks=False)
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.url}: no object {key!r}", key=key) from None
        except OSError as e:
            self._error(e, key, "stat")
        finally:
            dirs.close()
        if stat_mod.S_ISLNK(st.st_mode):
            raise InvalidKey(f"{self.url}: key {key!r} is a symbolic link", key=key)
        if not stat_mod.S_ISREG(st.st_mode):
            raise ObjectNotFound(f"{self.url}: no object {key!r}", key=key)
        return ObjectInfo(key=key, size=st.st_size, mtime=_mtime(st))

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        """Open a range of an object (see [Store.open_read][carmigrate.storage.Store.open_read]).

        The stream reads the file that had the key when it was opened, even
        if the key is replaced meanwhile; if that file shrinks, the read
        raises instead of returning short data.
        """
        check_range(start, end)
        fd, st = self._open_file(key)
        begin, stop = clip_range(start, end, st.st_size)
        pos = begin
        drop = self._drop
        dropped = begin  # cache dropped up to here (but for partial folios)

        def fill(view: memoryview) -> int:
            nonlocal pos, dropped
            try:
                n = os.preadv(fd, [view], pos)
            except OSError as e:
                self._error(e, key, "read")
            pos += n
            if drop and pos - dropped >= _DROP_EVERY:
                # the kernel drops only whole folios (up to 2 MiB): ask again
                # for the tail of the last range, whose folio may span both
                start = max(begin, dropped - _LARGEST_FOLIO)
                with contextlib.suppress(OSError):
                    os.posix_fadvise(fd, start, pos - start, _DONTNEED)  # type: ignore[arg-type]
                dropped = pos
            return n

        def close() -> None:
            try:
                if drop and pos > begin:
                    with contextlib.suppress(OSError):
                        os.posix_fadvise(fd, begin, pos - begin, _DONTNEED)  # type: ignore[arg-type]
            finally:
                os.close(fd)

        return open_checked(
            CheckedRangeReader(
                fill,
                length=stop - begin,
                url=self.url,
                key=key,
                offset=begin,
                on_close=close,
            )
        )

    # ------------------------------------------------------------------
    # writing

    def _temp_name(self, name: str) -> str:
        return f"{_temp_prefix(name)}{secrets.token_hex(8)}"

    def _publish(
        self,
        key: str,
        parts: list[str],
        fill: Callable[[int], tuple[os.stat_result, dict[str, str]]],
        *,
        if_absent: bool,
    ) -> ObjectInfo:
        """Create a temp file, let ``fill`` write it, then move it to ``key``.

        ``fill(fd)`` writes the data, checks it and returns the final stat and
        digests; whatever raises, the temp file is removed. Exceptions from
        ``fill`` propagate unchanged.
        """
        name = parts[-1]
        attempt = 0
        while True:
            attempt += 1
            dirs = self._open_dirs(key, parts[:-1], create=True)
            try:
                tmp = self._temp_name(name)
                try:
                    fd = os.open(
                        tmp,
                        os.O_WRONLY
                        | os.O_CREAT
                        | os.O_EXCL
                        | os.O_NOFOLLOW
                        | os.O_CLOEXEC,
                        0o666,
                        dir_fd=dirs.leaf,
                    )
                except FileNotFoundError as e:
                    # a concurrent delete removed the (then empty) folder
                    if attempt < 10:
                        continue
                    self._error(e, key, "write")
                except OSError as e:
                    self._error(e, key, "write")
                try:
                    try:
                        st, digests = fill(fd)
                    finally:
                        os.close(fd)
                    self._commit(key, tmp, name, dirs, if_absent=if_absent)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp, dir_fd=dirs.leaf)
                    raise
            finally:
                dirs.close()
            return ObjectInfo(
                key=key, size=st.st_size, mtime=_mtime(st), checksums=digests
            )

    def _commit(
        self, key: str, tmp: str, name: str, dirs: _Dirs, *, if_absent: bool
    ) -> None:
        try:
            if if_absent:
                # one directory operation where the system has it, else two
                try:
                    if not _rename_noreplace(tmp, name, dirs.leaf):
                        os.link(
                            tmp,
                            name,
                            src_dir_fd=dirs.leaf,
                            dst_dir_fd=dirs.leaf,
                            follow_symlinks=False,
                        )
                        os.unlink(tmp, dir_fd=dirs.leaf)
                except FileExistsError:
                    raise ObjectExists(
                        f"{self.url}: {key!r} already exists", key=key
                    ) from None
            else:
                try:
                    os.rename(tmp, name, src_dir_fd=dirs.leaf, dst_dir_fd=dirs.leaf)
                except IsADirectoryError:
                    raise InvalidKey(
                        f"{self.url}: key {key!r} is a folder of other objects", key=key
                    ) from None
            if self._fsync:
                os.fsync(dirs.leaf)
        except OSError as e:
            self._error(e, key, "write")

    def _write_all(self, fd: int, chunk: BufferLike, key: str) -> None:
        try:
            _write_pieces(fd, chunk)
        except OSError as e:
            self._error(e, key, "write")

    def _finish(self, fd: int, key: str) -> os.stat_result:
        try:
            if self._fsync:
                os.fsync(fd)
            return os.fstat(fd)
        except OSError as e:
            self._error(e, key, "write")

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
        """Store an object atomically (see [Store.write][carmigrate.storage.Store.write]).

        Computes only the digests asked for in ``checksums``.

        Raises:
            StorageError: ``metadata`` was given: plain files keep none.
        """
        parts = self._split(key)
        expected = normalize_checksums(checksums)
        if metadata:
            raise StorageError(
                f"{self.url}: LocalStore keeps no user metadata "
                "(capabilities.user_metadata is False)",
                key=key,
            )
        chunks = iter_chunks(data)

        def fill(fd: int) -> tuple[os.stat_result, dict[str, str]]:
            digests = Digests(expected)
            written = 0
            _preallocate(fd, size)
            for chunk in chunks:
                digests.update(chunk)
                self._write_all(fd, chunk, key)
                written += len(chunk)
                if size is not None and written > size:
                    raise size_mismatch(self.url, key, size, written)
            if size is not None and written != size:
                raise size_mismatch(self.url, key, size, written)
            actual = digests.hexdigests()
            verify_checksums(expected, actual, url=self.url, key=key)
            return self._finish(fd, key), actual

        return self._publish(key, parts, fill, if_absent=if_absent)

    # ------------------------------------------------------------------
    # listing and deleting

    def _walk(
        self, dir_fd: int, base: str, name_prefix: str, problems: bool = False
    ) -> Iterator[ObjectInfo | Unmigratable]:
        """Objects under a folder in key order; with ``problems``, what is left out too."""
        with os.scandir(dir_fd) as it:
            entries: list[tuple[str, str, os.stat_result | tuple[str, int] | None]] = []
            for entry in it:
                name = entry.name
                if not name.startswith(name_prefix):
                    continue
                if name.startswith(RESERVED_PREFIX):
                    if problems:
                        entries.append((name, name, (_RESERVED, _size_of(entry))))
                    continue
                try:
                    name.encode("utf-8")
                except UnicodeEncodeError:  # not representable as a key
                    if problems:
                        entries.append((name, name, (_NOT_UTF8, _size_of(entry))))
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed meanwhile
                if stat_mod.S_ISDIR(st.st_mode):
                    entries.append((name + "/", name, None))
                elif stat_mod.S_ISREG(st.st_mode):
                    entries.append((name, name, st))
                elif problems:
                    entries.append((name, name, (_special(st.st_mode), 0)))
        entries.sort(key=lambda e: e[0])
        for _, name, what in entries:
            if isinstance(what, os.stat_result):
                yield ObjectInfo(key=base + name, size=what.st_size, mtime=_mtime(what))
                continue
            if isinstance(what, tuple):
                reason, size = what
                yield Unmigratable(
                    name=name_as_text(base + name), reason=reason, size=size
                )
                continue
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                continue  # removed meanwhile
            except OSError as e:
                if problems:
                    yield Unmigratable(
                        name=name_as_text(base + name + "/"),
                        reason=f"folder cannot be read ({e.strerror}): nothing in it "
                        "is listed",
                    )
                continue
            try:
                yield from self._walk(sub, base + name + "/", "", problems)
            finally:
                os.close(sub)

    def list_all(self, prefix: str = "") -> Iterator[ObjectInfo | Unmigratable]:
        """``list(prefix)`` and everything it leaves out.

        See [SupportsFullListing][carmigrate.storage.SupportsFullListing].
        Left out of ``list`` and reported here: symbolic links (never
        followed), FIFOs, sockets and device files, names that are not UTF-8
        (a folder's contents are then not listed, which its entry says),
        reserved ``.carmigrate.*`` names, and folders that cannot be read.
        """
        validate_prefix(prefix)
        folder, _, name_prefix = prefix.rpartition("/")
        names = folder.split("/") if folder else []
        return self._list(prefix, names, name_prefix, problems=True)

    def remove_temporary(
        self, older_than: float = 3600.0, *, keys: Iterable[str] | None = None
    ) -> TemporaryCleanup:
        """Delete temporary files that writers left behind; say what could not go.

        See [SupportsTemporaryCleanup][carmigrate.storage.SupportsTemporaryCleanup].

        A writer killed mid-write (SIGKILL, power loss) leaves its
        ``.carmigrate.tmp.*`` file: never visible as an object, but taking
        space. This removes those, anywhere under the root, whose last
        change is more than ``older_than`` seconds old; a live writer keeps
        changing its file, so one still writing is left alone unless it
        stalled for that long (its write then fails and can be retried).
        Symbolic links are neither followed nor removed, and every file is
        removed relative to its folder's descriptor, so a folder swapped for
        a link meanwhile leads nowhere outside the root. Folders or files
        that cannot be read or removed (permissions, a read-only mount) are
        skipped: this is housekeeping and never fails for them.
        [resume][carmigrate.migrate.resume] calls this on a local destination
        after a crash. It walks the whole tree: on a very large one, prefer
        to run it when convenient.

        A temporary file is named ``.carmigrate.tmp.<tag>.<random>`` in the
        folder of its key, the tag being a hash of the key's last segment:
        with ``keys``, only the folders of those keys are looked into, and
        only their own temporary files removed (files of earlier versions,
        without a tag, only by the walk).

        Args:
            older_than: Minimum age in seconds of a file to delete.
            keys: Only the temporary files of writes of these keys.

        Returns:
            How many files went, and the temporary names old enough that
            are still there (relative to the root), each with why.

        Raises:
            ValueError: ``older_than`` is negative.
        """
        if older_than < 0:
            raise ValueError(f"older_than must be >= 0, got {older_than}")
        cutoff = time.time() - older_than
        if keys is not None:
            return self._remove_temporary_of(keys, cutoff)
        removed = 0
        left: builtins.list[tuple[str, str]] = []
        marker = f"{RESERVED_PREFIX}tmp."
        for folder, dirs, files, folder_fd in os.fwalk(self._root):
            base = os.path.relpath(folder, self._root)
            for name in (*files, *dirs):
                if name.startswith(marker):
                    removed += _remove_one(
                        folder_fd, name, "" if base == "." else base, cutoff, left
                    )
        return TemporaryCleanup(removed=removed, left=tuple(left))

    def _remove_temporary_of(
        self, keys: Iterable[str], cutoff: float
    ) -> TemporaryCleanup:
        by_folder: dict[tuple[str, ...], set[str]] = {}
        for key in keys:
            parts = key.split("/")
            by_folder.setdefault(tuple(parts[:-1]), set()).add(_temp_prefix(parts[-1]))
        removed = 0
        left: builtins.list[tuple[str, str]] = []
        for folder, prefixes in by_folder.items():
            try:
                dirs = self._open_dirs(
                    "/".join(folder) or ".", list(folder), create=False
                )
            except (StorageError, OSError):
                continue  # no such folder: nothing was written there
            try:
                for name in os.listdir(dirs.leaf):
                    if not name.startswith(_TEMP_MARKER) or not any(
                        name.startswith(p) for p in prefixes
                    ):
                        continue
                    removed += _remove_one(
                        dirs.leaf, name, "/".join(folder), cutoff, left, inclusive=True
                    )
            finally:
                dirs.close()
        return TemporaryCleanup(removed=removed, left=tuple(left))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in key order (see [Store.list][carmigrate.storage.Store.list]).

        Walks only the folder that holds ``prefix``; skips symbolic links,
        other non-regular files, names that are not UTF-8 and reserved
        ``.carmigrate.*`` names, which
        [list_all][carmigrate.storage.LocalStore.list_all] reports.
        """
        validate_prefix(prefix)
        folder, _, name_prefix = prefix.rpartition("/")
        names = folder.split("/") if folder else []
        return self._list(prefix, names, name_prefix)  # type: ignore[return-value]

    def _list(
        self,
        prefix: str,
        names: builtins.list[str],
        name_prefix: str,
        problems: bool = False,
    ) -> Iterator[ObjectInfo | Unmigratable]:
        try:
            dirs = self._open_dirs(prefix or ".", names, create=False)
        except (ObjectNotFound, InvalidKey):
            return
        try:
            base = "".join(n + "/" for n in names)
            try:
                yield from self._walk(dirs.leaf, base, name_prefix, problems)
            except OSError as e:
                self._error(e, prefix, "list")
        finally:
            dirs.close()

    def delete(self, key: str) -> None:
        """Remove an object and any folders it leaves empty; a missing key is fine."""
        parts = self._split(key)
        try:
            dirs = self._open_dirs(key, parts[:-1], create=False)
        except ObjectNotFound:
            return
        try:
            try:
                st = os.stat(parts[-1], dir_fd=dirs.leaf, follow_symlinks=False)
            except FileNotFoundError:
                return
            if stat_mod.S_ISLNK(st.st_mode):
                raise InvalidKey(f"{self.url}: key {key!r} is a symbolic link", key=key)
            if not stat_mod.S_ISREG(st.st_mode):
                return
            try:
                os.unlink(parts[-1], dir_fd=dirs.leaf)
            except FileNotFoundError:
                return
            # remove folders the delete left empty, deepest first
            for depth in range(len(dirs.names), 0, -1):
                try:
                    os.rmdir(dirs.names[depth - 1], dir_fd=dirs.fds[depth - 1])
                except OSError:
                    break
        except OSError as e:
            self._error(e, key, "delete")
        finally:
            dirs.close()

    # ------------------------------------------------------------------
    # server-side copy

    def can_copy_from(self, source: Store) -> bool:
        """True for any LocalStore: the kernel copies between local files."""
        return isinstance(source, LocalStore)

    def copy_from(
        self,
        source: Store,
        source_key: str,
        key: str,
        *,
        if_absent: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Copy a file from another LocalStore with ``copy_file_range(2)``.

        Atomic like ``write``; ``metadata`` must be empty.
        """
        if not isinstance(source, LocalStore):
            raise StorageError(f"{self.url}: can only copy from a LocalStore", key=key)
        if metadata:
            raise StorageError(
                f"{self.url}: LocalStore keeps no user metadata", key=key
            )
        parts = self._split(key)
        src_fd, src_st = source._open_file(source_key)

        def fill(fd: int) -> tuple[os.stat_result, dict[str, str]]:
            remaining = src_st.st_size
            offset = 0
            while remaining > 0:
                try:
                    n = _copy_range(src_fd, fd, offset, min(remaining, _COPY_CHUNK))
                except OSError as e:
                    self._error(e, key, "copy to")
                if n == 0:
                    raise StorageError(
                        f"{source.url}: {source_key!r} shrank while being copied",
                        key=source_key,
                        transient=True,
                    )
                offset += n
                remaining -= n
            return self._finish(fd, key), {}

        try:
            return self._publish(key, parts, fill, if_absent=if_absent)
        finally:
            os.close(src_fd)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _copy_range(src: int, dst: int, offset: int, count: int) -> int:
    """Copy ``count`` bytes at ``offset`` of ``src`` to the end of ``dst``."""
    copy_file_range = getattr(os, "copy_file_range", None)
    if copy_file_range is not None:
        try:
            return int(copy_file_range(src, dst, count, offset))
        except OSError as e:
            if e.errno not in (
                errno.EXDEV,
                errno.ENOSYS,
                errno.EINVAL,
                errno.EOPNOTSUPP,
            ):
                raise
    data = os.pread(src, count, offset)
    _write_pieces(dst, data)
    return len(data)
