"""open_store: from a URL to a Store, with entry-point plugins."""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.metadata
import inspect
import os
import re
import sys
import typing
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

from carmigrate.errors import StorageError
from carmigrate.storage._base import Store

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["ENTRY_POINT_GROUP", "check_store_options", "is_local_url", "open_store"]

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


_PLAIN: Final[Mapping[str, tuple[type, ...]]] = {
    "bool": (bool,),
    "int": (int,),
    "float": (float, int),
    "str": (str,),
}
_TEXT_VALUES: Final = (str, int, float, bool, list, dict)
"""What option values read from text (``--destination-option``) can be."""


def _accepts(member: str, namespace: Mapping[str, Any], value: Any) -> bool | None:
    """Whether ``value`` fits one member of a union annotation; ``None``: cannot tell."""
    if member == "None":
        return value is None
    if member == "Any":
        return True
    plain = _PLAIN.get(member)
    if plain is not None:
        if isinstance(value, bool) and bool not in plain:
            return False
        return isinstance(value, plain)
    if member.startswith("Literal[") and member.endswith("]"):
        try:
            choices = ast.literal_eval(f"({member[8:-1]},)")
        except (ValueError, SyntaxError):
            return None
        return value in choices
    if not member.isidentifier():
        return None  # a generic or dotted type: not checked
    found = namespace.get(member)
    if found is None:
        # a type only known to the type checker (a boto3 client): nothing
        # written as text can be one
        return not isinstance(value, _TEXT_VALUES)
    if typing.get_origin(found) is typing.Literal:
        return value in typing.get_args(found)
    if isinstance(found, type):
        return isinstance(value, found)
    return None


def _members(annotation: str) -> list[str]:
    """The members of a union annotation (split on the top-level ``|``)."""
    depth = 0
    members: list[str] = []
    start = 0
    for i, ch in enumerate(annotation):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            members.append(annotation[start:i].strip())
            start = i + 1
    members.append(annotation[start:].strip())
    return members


def _fits(annotation: str, namespace: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value`` may be passed for a parameter annotated ``annotation``."""
    answers = [_accepts(m, namespace, value) for m in _members(annotation)]
    return any(answers) or None in answers


def _describe(annotation: str, namespace: Mapping[str, Any]) -> str:
    """``annotation`` for a message, with literal types spelt out."""
    out: list[str] = []
    for member in _members(annotation):
        found = namespace.get(member) if member.isidentifier() else None
        if found is not None and typing.get_origin(found) is typing.Literal:
            out += [repr(v) for v in typing.get_args(found)]
        elif member.startswith("Literal[") and member.endswith("]"):
            out += [v.strip() for v in member[8:-1].split(",")]
        else:
            out.append(member)
    return " | ".join(out)


@functools.cache
def _parameters(
    factory: Callable[..., Any],
) -> tuple[dict[str, inspect.Parameter], bool, Mapping[str, Any]]:
    """The keyword-only parameters of ``factory``, whether it takes ``**kwargs``,
    and its module's namespace (to resolve annotations).
    """  # noqa: D205
    signature = inspect.signature(factory)
    named = {
        name: p
        for name, p in signature.parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    more = any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    )
    module = sys.modules.get(getattr(factory, "__module__", ""), None)
    return named, more, vars(module) if module is not None else {}


def _backend(url: str | os.PathLike[str]) -> tuple[str, Callable[..., Any] | None]:
    """The kind of store ``url`` opens (for messages) and the callable that
    takes its options, ``None`` for plugins (whose options are their own).
    """  # noqa: D205
    if isinstance(url, os.PathLike) or _SCHEME_RE.match(url) is None:
        from carmigrate.storage._local import LocalStore

        return "local", LocalStore.__init__
    m = _SCHEME_RE.match(url)
    assert m is not None
    scheme = m.group("scheme").lower()
    if scheme == "file":
        from carmigrate.storage._local import LocalStore

        return "local", LocalStore.__init__
    if scheme == "memory":
        from carmigrate.storage._memory import MemoryStore

        return "memory", MemoryStore.__init__
    if scheme == "s3":
        from carmigrate.storage._s3 import S3Store

        return "s3", S3Store.__init__
    if scheme == "az":
        from carmigrate.storage._azure import AzureBlobStore

        return "az", AzureBlobStore.__init__
    if _plugin(scheme) is not None:
        return scheme, None
    from carmigrate.storage._fsspec import FsspecStore

    return scheme, FsspecStore.from_url


def check_store_options(
    url: str | os.PathLike[str], options: Mapping[str, Any]
) -> None:
    """Check the ``options`` of an [open_store][carmigrate.storage.open_store] call without opening anything.

    For the built-in backends, each option must be a keyword option of the
    backend (the keyword-only parameters of
    [LocalStore][carmigrate.storage.LocalStore],
    [MemoryStore][carmigrate.storage.MemoryStore],
    [S3Store][carmigrate.storage.S3Store] or
    [AzureBlobStore][carmigrate.storage.AzureBlobStore]; for fsspec URLs
    [FsspecStore.from_url][carmigrate.storage.FsspecStore.from_url], whose
    other options go to fsspec unchecked), and its value must have the type
    the parameter's annotation names, as far as it names ``bool``, ``int``,
    ``float``, ``str``, ``None``, literal values or a class (``True`` is not
    an ``int``; an ``int`` is a ``float``). Options of stores from
    ``carmigrate.stores`` plugins are not checked. ``open_store`` runs this
    check itself; call it to report bad options before any work starts (the
    command line does, for ``--source-option`` and ``--destination-option``).

    Args:
        url: What ``open_store`` would be given.
        options: The options it would be given.

    Raises:
        TypeError: An option the backend does not take (``unknown option
            'foo' for s3 stores``, with a suggestion when one is close) or a
            value of the wrong type; the message names the option.
    """
    kind, factory = _backend(url)
    if factory is None:
        return
    named, more, namespace = _parameters(factory)
    for name, value in options.items():
        param = named.get(name)
        if param is None:
            if more:
                continue
            close = difflib.get_close_matches(name, list(named), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"unknown option {name!r} for {kind} stores{hint}")
        annotation = param.annotation
        if isinstance(annotation, str) and not _fits(annotation, namespace, value):
            raise TypeError(
                f"option {name!r} of {kind} stores takes "
                f"{_describe(annotation, namespace)}, not {type(value).__name__} "
                f"{value!r}"
            )


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
    4. ``az://account/container/prefix``:
       [AzureBlobStore][carmigrate.storage.AzureBlobStore] (``connection_string``,
       ``endpoint_url`` and the other options; credentials from the
       environment: ``AZURE_STORAGE_CONNECTION_STRING``, ...).
    5. A scheme registered by an installed package in the ``carmigrate.stores``
       entry point group: its factory is called as ``factory(url, **options)``.
    6. Any other protocol fsspec knows (``gs://``, ``abfs://``, ``https://``
       read-only, ...): [FsspecStore][carmigrate.storage.FsspecStore], with the
       options as fsspec storage options.

    Credentials are never accepted inside the URL (``user:password@``): pass
    them as options or through the environment, so they never end up in a
    store's ``url``, in logs or in plans. Options are checked first with
    [check_store_options][carmigrate.storage.check_store_options].

    Args:
        url: Where the store is.
        **options: Keyword options for the backend.

    Returns:
        A store; close it when done (``contextlib.closing`` or ``with``).

    Raises:
        ValueError: The URL carries credentials or is malformed for its
            backend.
        TypeError: An option is not accepted by the backend, or its value
            has the wrong type.
        StorageError: No backend handles the scheme, its package is missing,
            or the backend cannot be opened (a missing root, ...).
    """
    if options:
        check_store_options(url, options)
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
    if scheme == "az":
        from carmigrate.storage._azure import AzureBlobStore

        return AzureBlobStore.from_url(url, **options)
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
