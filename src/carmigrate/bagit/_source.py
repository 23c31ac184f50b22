"""Where a bag's files are read from: the BagSource Protocol and a local folder."""

from __future__ import annotations

import os
import stat as stat_mod
from typing import TYPE_CHECKING, BinaryIO, Protocol, final, runtime_checkable

from carmigrate.errors import BagError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["BagSource", "folder_source"]


@runtime_checkable
class BagSource(Protocol):
    """The files of one bag, addressed by their path relative to the bag's root.

    The verifier needs only these three members, so a source is a few lines
    over any place that can list and read files: a local folder
    ([folder_source][carmigrate.bagit.folder_source]), a prefix of a store
    ([carmigrate.migrate.store_bag_source][]), or a test double. Paths use
    ``/`` as separator and never start with it (``"bagit.txt"``,
    ``"data/a/b.tif"``).

    A source is also what a fetch root is: a URL listed in ``fetch.txt`` is
    read through the source whose URL prefix it starts with, the rest of the
    URL (percent-decoded) being the path.

    Attributes:
        url: Where the files are, for messages (never with credentials).
    """

    @property
    def url(self) -> str:
        """Where the files are, for messages."""
        ...

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Every file whose path starts with ``prefix``, as ``(path, size)``.

        ``prefix`` is a plain string prefix (``""`` lists everything). The
        order does not matter. Folders themselves are not listed.

        Raises:
            OSError: The source cannot be listed (a
                [StorageError][carmigrate.errors.StorageError] for a store).
        """
        ...

    def open_read(self, path: str) -> BinaryIO:
        """Open one file for reading; the caller closes it.

        Raises:
            FileNotFoundError: No file has this path (a store's
                [ObjectNotFound][carmigrate.errors.ObjectNotFound] is one).
            OSError: The file cannot be read.
        """
        ...


@final
class _FolderSource:
    """A bag in a local folder, read with plain ``os`` calls.

    State: the folder's absolute path (nothing is opened until asked).
    """

    __slots__ = ("_root",)

    def __init__(self, root: str) -> None:
        self._root = root

    @property
    def url(self) -> str:
        return self._root

    def __repr__(self) -> str:
        return f"folder_source({self._root!r})"

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        folder, _, _ = prefix.rpartition("/")
        if folder and {"", ".", ".."} & set(folder.split("/")):
            return  # names nothing in the bag
        start = os.path.join(self._root, folder) if folder else self._root
        if folder and not os.path.isdir(start):
            return
        base = f"{folder}/" if folder else ""
        yield from self._walk(start, base, prefix)

    def _walk(self, folder: str, base: str, prefix: str) -> Iterator[tuple[str, int]]:
        with os.scandir(folder) as entries:
            found = [(e.name, e) for e in entries]
        for name, entry in found:
            path = base + name
            if not (path.startswith(prefix) or prefix.startswith(path + "/")):
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(entry.path, path + "/", prefix)
            elif entry.is_file(follow_symlinks=False):
                yield path, entry.stat(follow_symlinks=False).st_size

    def open_read(self, path: str) -> BinaryIO:
        parts = path.split("/")
        if "" in parts or "." in parts or ".." in parts or "\0" in path:
            raise FileNotFoundError(f"{self._root}: {path!r} is not a path in the bag")
        full = f"{self._root}/{path}"
        # no symbolic link is followed at the last step, as the listing skips them
        fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
                raise FileNotFoundError(f"{full}: not a regular file")
            return os.fdopen(fd, "rb", buffering=0)
        except BaseException:
            os.close(fd)
            raise


def folder_source(path: str | os.PathLike[str]) -> BagSource:
    """The bag in a local folder.

    Files are listed with ``os.scandir`` (symbolic links and other
    non-regular files are left out, as a store's listing leaves them out)
    and opened with ``os.open``; a path with an empty, ``.`` or ``..``
    segment never reaches the file system.

    Args:
        path: The bag's folder (the one holding ``bagit.txt``).

    Returns:
        A [BagSource][carmigrate.bagit.BagSource] over the folder.

    Raises:
        BagError: ``path`` is not a folder.
    """
    root = os.path.abspath(os.fspath(path))
    if not os.path.isdir(root):
        raise BagError(f"no bag at {root!r}: not a folder")
    return _FolderSource(root)
