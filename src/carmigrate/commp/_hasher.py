"""PieceHasher (hashlib's shape) and the one-shot ``commp`` function."""

from __future__ import annotations

import io
import os
import queue
import stat
import threading
from typing import TYPE_CHECKING, BinaryIO, Final, Protocol

from carmigrate.commp._backend import (
    REFERENCE,
    new_engine,
    resolve_implementation,
)
from carmigrate.commp._piece import PieceInfo
from carmigrate.commp._sizes import MAX_HEIGHT, MIN_HEIGHT, QUAD, PayloadSize, as_int
from carmigrate.errors import PieceError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from carmigrate.cid import Buffer
    from carmigrate.commp._backend import Engine

__all__ = ["GO_MIN_PAYLOAD", "PieceHasher", "commp"]

GO_MIN_PAYLOAD: Final = 65
"""The smallest payload go-fil-commp-hashhash accepts (its ``MinPiecePayload``).

Pass ``min_payload=GO_MIN_PAYLOAD`` to refuse smaller payloads the same way;
by default carmigrate follows FRC-0069 and accepts every size from 0.
"""

_MAX_PAYLOAD: Final = QUAD << (MAX_HEIGHT - MIN_HEIGHT)
_REFERENCE_READ: Final = 1 << 20


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes | None: ...


def _default_threads() -> int:
    return os.cpu_count() or 1


def _check_threads(threads: int | None) -> int:
    if threads is None:
        return _default_threads()
    n = as_int(threads, "threads")
    if n < 1:
        msg = f"threads must be at least 1, got {n}"
        raise PieceError(msg)
    return n


class PieceHasher:
    """Incremental commP in the shape of a ``hashlib`` object.

    ``update()`` feeds payload bytes; ``digest()`` is the 32-byte commP
    (the root of the v1 PieceCID) and ``piece_info()`` gives the sizes and
    both PieceCIDs. Memory stays bounded (one batch of about 8 MB for the
    compiled core) whatever the payload size.

    State: the payload size so far and the implementation's tree state (one
    pending node per tree level plus the bytes of an unfinished chunk).
    ``digest()``, ``hexdigest()`` and ``piece_info()`` do not change it, so
    more data may follow. Not safe to share between threads without a lock.

    Args:
        data: Optional first bytes, as if passed to ``update()``.
        threads: Threads the compiled core may use for large inputs; default
            ``os.cpu_count()``. The reference ignores it.
        min_payload: Refuse payloads shorter than this in ``digest()`` and
            ``piece_info()``; default 0 (FRC-0069: every size is valid). Use
            [GO_MIN_PAYLOAD][carmigrate.commp.GO_MIN_PAYLOAD] (65) to behave
            like go-fil-commp-hashhash.
        implementation: One of
            [available_implementations()][carmigrate.commp.available_implementations],
            ``"native"`` for the best compiled kernel, or ``None`` for
            [IMPLEMENTATION][carmigrate.commp.IMPLEMENTATION].

    Raises:
        PieceError: For an unavailable implementation, ``threads < 1`` or a
            negative ``min_payload``.
    """

    name: Final = "sha2-256-trunc254-padded"
    """The multihash name of the digest (the v1 PieceCID's hash function)."""

    digest_size: Final = 32
    """Bytes in ``digest()``."""

    block_size: Final = QUAD
    """Payload bytes per quad, the unit fr32 works on."""

    __slots__ = ("_engine", "_implementation", "_min_payload", "_size", "_threads")

    def __init__(
        self,
        data: Buffer | None = None,
        *,
        threads: int | None = None,
        min_payload: int = 0,
        implementation: str | None = None,
    ) -> None:
        self._implementation = resolve_implementation(implementation)
        self._threads = _check_threads(threads)
        self._min_payload = as_int(min_payload, "min_payload")
        if self._min_payload < 0:
            msg = f"min_payload must be non-negative, got {self._min_payload}"
            raise PieceError(msg)
        self._engine: Engine = new_engine(self._implementation, self._threads)
        self._size = 0
        if data is not None:
            self.update(data)

    @property
    def implementation(self) -> str:
        """The implementation this hasher runs (for example ``native-shani``)."""
        return self._implementation

    @property
    def payload_size(self) -> int:
        """Payload bytes absorbed so far."""
        return self._size

    @property
    def read_size(self) -> int:
        """A good size for reads that feed this hasher (no copy is made)."""
        batch = getattr(self._engine, "batch_size", None)
        return batch if isinstance(batch, int) else _REFERENCE_READ

    def update(self, data: Buffer) -> None:
        """Absorb more payload bytes.

        Args:
            data: Any contiguous bytes-like object.

        Raises:
            PieceError: If the payload would exceed the largest piece
                (``127·2**(MAX_HEIGHT-2)`` bytes); the hasher is unchanged.
            TypeError: If ``data`` is not a contiguous bytes-like object.
        """
        with memoryview(data) as view:
            mv = view if view.format == "B" and view.ndim == 1 else view.cast("B")
            n = len(mv)
            if self._size + n > _MAX_PAYLOAD:
                msg = (
                    f"payload of {self._size + n} bytes exceeds the largest piece "
                    f"({_MAX_PAYLOAD} bytes, tree height {MAX_HEIGHT})"
                )
                raise PieceError(msg)
            self._engine.update(mv)
            self._size += n

    def _update_from_fd(self, fd: int) -> bool:
        """Absorb everything ``fd`` yields, if the engine reads descriptors.

        Returns False (having read nothing) when it does not. If a read
        fails, the OSError propagates and the hasher must be discarded.
        """
        absorb = getattr(self._engine, "absorb_fd", None)
        if absorb is None:
            return False
        self._size += int(absorb(fd))
        if self._size > _MAX_PAYLOAD:
            msg = f"payload of {self._size} bytes exceeds the largest piece"
            raise PieceError(msg)
        return True

    def piece_info(self) -> PieceInfo:
        """The piece so far: root, padded size and payload size (spec §1-§3).

        Raises:
            PieceError: If the payload is shorter than ``min_payload``.
        """
        n = self._size
        if n < self._min_payload:
            msg = (
                f"payload of {n} bytes is shorter than the minimum of "
                f"{self._min_payload} bytes set with min_payload"
            )
            if self._min_payload == GO_MIN_PAYLOAD:
                msg += " (go-fil-commp-hashhash's MinPiecePayload)"
            raise PieceError(msg)
        payload = PayloadSize(n)
        size = payload.padded_piece_size()
        return PieceInfo(self._engine.root(size.height), size, payload)

    def digest(self) -> bytes:
        """The 32-byte commP (the piece root) of the payload so far.

        Raises:
            PieceError: If the payload is shorter than ``min_payload``.
        """
        return self.piece_info().root

    def hexdigest(self) -> str:
        """``digest()`` as lowercase hex."""
        return self.digest().hex()

    def copy(self) -> PieceHasher:
        """An independent hasher with the same state."""
        other = PieceHasher.__new__(PieceHasher)
        other._implementation = self._implementation
        other._threads = self._threads
        other._min_payload = self._min_payload
        other._engine = self._engine.copy()
        other._size = self._size
        return other

    def __repr__(self) -> str:
        return (
            f"<PieceHasher {self._implementation} payload_size={self._size} "
            f"threads={self._threads}>"
        )


def _readinto_full(stream: BinaryIO | _Readable, buf: bytearray) -> int:
    """Fill ``buf`` from ``stream``; fewer bytes only at end of stream."""
    view = memoryview(buf)
    filled = 0
    readinto = getattr(stream, "readinto", None)
    while filled < len(buf):
        if readinto is not None:
            n = readinto(view[filled:])
        else:
            chunk: object = stream.read(len(buf) - filled)
            if chunk is None:
                n = None
            elif isinstance(chunk, bytes | bytearray):
                n = len(chunk)
                view[filled : filled + n] = chunk
            else:
                msg = f"stream returned {type(chunk).__name__}, not bytes (text mode?)"
                raise TypeError(msg)
        if n is None:
            msg = "the stream returned None (non-blocking streams are not supported)"
            raise PieceError(msg)
        if n == 0:
            break
        filled += n
    view.release()
    return filled


class _ReadAhead:
    """Reads a stream on a background thread while the caller hashes.

    Uses at most ``depth + 1`` buffers of ``size`` bytes, allocated as
    needed: one being hashed, the others being filled or waiting. The reader
    is a daemon thread; if the consumer stops early, it is told to stop at
    its next read.
    """

    def __init__(self, stream: BinaryIO | _Readable, size: int, depth: int = 1) -> None:
        self._stream = stream
        self._size = size
        self._spare = depth  # buffers that may still be allocated
        self._free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
        self._full: queue.SimpleQueue[tuple[bytearray, int] | BaseException] = (
            queue.SimpleQueue()
        )
        self._stop = threading.Event()
        self._free.put(bytearray(size))
        self._thread = threading.Thread(
            target=self._run, name="carmigrate-commp-reader", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                if self._spare and self._free.empty():
                    self._spare -= 1
                    buf: bytearray | None = bytearray(self._size)
                else:
                    buf = self._free.get()
                if buf is None or self._stop.is_set():
                    return
                n = _readinto_full(self._stream, buf)
                self._full.put((buf, n))
                if n < len(buf):
                    return
        except BaseException as exc:  # handed to the consumer
            self._full.put(exc)

    def __iter__(self) -> Iterator[memoryview]:
        try:
            while True:
                item = self._full.get()
                if isinstance(item, BaseException):
                    raise item
                buf, n = item
                with memoryview(buf) as whole, whole[:n] as view:
                    yield view
                if n < len(buf):
                    return
                self._free.put(buf)
        finally:
            self._stop.set()
            self._free.put(None)


def _feed(
    hasher: PieceHasher, stream: BinaryIO | _Readable, expected: int | None = None
) -> None:
    size = hasher.read_size
    if expected is not None:
        # a file's size is known: no buffer larger than it (plus one byte to
        # see the end); a file that grows meanwhile is still read to its end
        size = max(1, min(size, expected + 1))
    if hasher.implementation == REFERENCE:
        buf = bytearray(size)
        while True:
            n = _readinto_full(stream, buf)
            with memoryview(buf) as whole, whole[:n] as view:
                hasher.update(view)
            if n < size:
                return
    for view in _ReadAhead(stream, size):
        hasher.update(view)


def commp(
    source: Buffer | BinaryIO | str | os.PathLike[str],
    *,
    threads: int | None = None,
    min_payload: int = 0,
    implementation: str | None = None,
) -> PieceInfo:
    """Compute the piece commitment of a payload (spec §1-§3).

    Streams in bounded memory whatever the size. With the compiled core, a
    path or an unbuffered ``io.FileIO`` (a file, a pipe, standard input's
    ``.raw``) is read by the core's worker threads themselves, one 254 KiB
    chunk each at a time; any other stream is read on a background thread
    into two rotating batches of about 8 MB while the core hashes.

    Args:
        source: The payload: a bytes-like object, a binary stream (anything
            with ``readinto`` or ``read``, read from its current position to
            its end, including ``sys.stdin.buffer`` or a pipe), or a
            filesystem path.
        threads: Threads for the compiled core; default ``os.cpu_count()``.
        min_payload: Refuse shorter payloads (see
            [PieceHasher][carmigrate.commp.PieceHasher]); default 0.
        implementation: As for [PieceHasher][carmigrate.commp.PieceHasher].

    Returns:
        The piece's root, padded size and payload size; ``.cid_v1`` and
        ``.cid_v2`` give the PieceCIDs.

    Raises:
        PieceError: If the payload is shorter than ``min_payload``, larger
            than the largest piece, or an argument is invalid.
        OSError: If the file or stream cannot be read; nothing is returned.
        TypeError: If ``source`` is none of the accepted kinds.
    """
    hasher = PieceHasher(
        threads=threads, min_payload=min_payload, implementation=implementation
    )
    if isinstance(source, str | os.PathLike):
        with open(source, "rb", buffering=0) as f:
            if not hasher._update_from_fd(f.fileno()):
                st = os.fstat(f.fileno())
                _feed(hasher, f, st.st_size if stat.S_ISREG(st.st_mode) else None)
    elif isinstance(source, io.FileIO) and not source.closed:
        # unbuffered, so its descriptor holds no bytes read ahead elsewhere
        if not hasher._update_from_fd(source.fileno()):
            _feed(hasher, source)
    elif isinstance(source, bytes | bytearray | memoryview):
        hasher.update(source)
    elif hasattr(source, "readinto") or hasattr(source, "read"):
        _feed(hasher, source)
    else:
        try:
            view = memoryview(source)  # type: ignore[arg-type]
        except TypeError:
            msg = (
                "commp() takes bytes, a binary stream or a path, "
                f"not {type(source).__name__}"
            )
            raise TypeError(msg) from None
        with view:
            hasher.update(view)
    return hasher.piece_info()
