"""open_store: from a URL to a Store, with entry-point plugins."""

from __future__ import annotations

import importlib.metadata
import os
import re
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from carmigrate.errors import StorageError
from carmigrate.storage._base import Store

__all__ = ["ENTRY_POINT_GROUP", "is_local_url", "open_store"]

ENTRY_POINT_GROUP: Final = "carmigrate.stores"
"""Entry point group for third-party backends.

Each entry point's name is a URL scheme; its object is a callable
``factory(url: str, **options) -> Store``.
"""

_SCHEME_RE: Final = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    return url.replace(parts.netloc, parts.netloc.rpartition("@")[2], 1)


def _plugin(scheme: str) -> importlib.metadata.EntryPoint | None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == scheme:
            return ep
    return None


def is_local_url(url: str | os.PathLike[str]) -> bool:
    """Whether ``url`` names a local folder (a path or a ``file://`` URL)."""
    if isinstance(url, os.PathLike):
        return True
    m = _SCHEME_RE.match(url)
    return m is None or m.group("scheme").lower() == "file"


def open_store(url: str | os.PathLike[str], **options: Any) -> Store:
    """Open the store a URL points at.

    Resolution order:

    1. A path (``str`` without ``scheme://``, or ``os.PathLike``) or a
       ``file://`` URL: [LocalStore][carmigrate.storage.LocalStore]. Its
       folder must exist unless ``create=True`` is given: a mistyped path is
       an error, never a new empty store.
    2. ``memory://name``: a new, empty [MemoryStore][carmigrate.storage.MemoryStore].
    3. ``s3://bucket/prefix``: [S3Store][carmigrate.storage.S3Store]
       (``endpoint_url``, ``region`` and the other options; credentials from
       the environment: ``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ...).
    4. A scheme registered by an installed package in the ``carmigrate.stores``
       entry point group: its factory is called as ``factory(url, **options)``.
    5. Any other protocol fsspec knows (``gs://``, ``az://``, ``https://``
       read-only, ...): [FsspecStore][carmigrate.storage.FsspecStore], with the
       options as fsspec storage options.

    Credentials are never accepted inside the URL (``user:password@``): pass
    them as options or through the environment, so they never end up in a
    store's ``url``, in logs or in plans.

    Args:
        url: Where the store is.
        **options: Keyword options for the backend.

    Returns:
        A store; close it when done (``contextlib.closing`` or ``with``).

    Raises:
        ValueError: The URL carries credentials or is malformed for its
            backend.
        TypeError: An option is not accepted by the backend.
        StorageError: No backend handles the scheme, its package is missing,
            or the backend cannot be opened (a missing root, ...).
    """
    if isinstance(url, os.PathLike) or _SCHEME_RE.match(url) is None:
        from carmigrate.storage._local import LocalStore

        return LocalStore(url, **{"create": False, **options})
    m = _SCHEME_RE.match(url)
    assert m is not None
    scheme = m.group("scheme").lower()
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"credentials in store URLs are not accepted ({_redact(url)!r}); pass them as "
            "options or through the environment"
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file:// URLs must be local, got host {parts.netloc!r}")
        from carmigrate.storage._local import LocalStore

        return LocalStore(unquote(parts.path), **{"create": False, **options})
    if scheme == "memory":
        from carmigrate.storage._memory import MemoryStore

        return MemoryStore(url[len("memory://") :], **options)
    if scheme == "s3":
        from carmigrate.storage._s3 import S3Store

        return S3Store.from_url(url, **options)
    ep = _plugin(scheme)
    if ep is not None:
        factory = ep.load()
        store = factory(url, **options)
        if not isinstance(store, Store):
            raise TypeError(
                f"entry point {ep.value!r} for {scheme}:// returned "
                f"{type(store).__name__}, which is not a Store"
            )
        return store
    try:
        import fsspec
    except ImportError as e:
        raise StorageError(
            f"no backend for {scheme}:// (install carmigrate[fsspec] for fsspec "
            "protocols, or a package registering the scheme)"
        ) from e
    try:
        fsspec.get_filesystem_class(scheme)
    except ValueError as e:
        raise StorageError(f"no backend for {scheme}:// URLs: {e}") from e
    except ImportError as e:
        raise StorageError(f"the {scheme}:// backend needs a package: {e}") from e
    from carmigrate.storage._fsspec import FsspecStore

    return FsspecStore.from_url(url, **options)
