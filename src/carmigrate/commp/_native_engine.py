"""Streaming over the compiled core: aligned chunks hashed on several threads.

The root of any aligned run of ``2**k`` quads depends only on those bytes
(spec §3, "Independence of subtrees"), so the payload is cut into chunks of
``127·2**CHUNK_LOG2`` bytes. Chunks are collected into batches; the core
hashes a batch's chunks on up to ``threads`` threads with the GIL released,
and their roots are pushed onto a stack of pending nodes (one per level
above the chunk level). The last, partial chunk is finished with zero
commitments. Memory is one batch buffer, whatever the payload size.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Final

from carmigrate.commp._sizes import QUAD
from carmigrate.commp._zero import ZERO_COMMITMENTS

if TYPE_CHECKING:
    from carmigrate.commp._loader import NativeCore

__all__ = ["BATCH_CHUNKS", "CHUNK_LOG2", "FD_CHUNKS", "NativeEngine"]

CHUNK_LOG2: Final = 11
"""log2 of the quads in one chunk: ``127·2**11`` = 260 096 bytes."""

BATCH_CHUNKS: Final = 32
"""Chunks collected before the core is called: about 8 MB per batch."""

FD_CHUNKS: Final = 1024
"""Chunks read from a file descriptor per call into the core (about 266 MB)."""

_SPARE: list[bytearray] = []
"""Buffers of one-chunk engines that are gone, for the next ones to reuse.

A migration makes one engine per object: a fresh 254 KiB buffer for each
costs page faults and zeroing, about a fifth of hashing a 1 MiB object.
list.append and list.pop are atomic, so threads share this safely.
"""
_SPARE_MAX: Final = 16


class NativeEngine:
    """Streaming tree state over the compiled core.

    State: the batch buffer and how much of it is filled, the number of
    chunks hashed, and the pending chunk-level roots (``stack[i]`` is a node
    of level ``chunk_height + i`` or None).

    Args:
        core: The compiled module.
        kernel: Kernel id from ``core.kernels()``.
        threads: Threads per batch (>= 1).
        chunk_log2: log2 of the quads per chunk; default ``CHUNK_LOG2``, read
            when the engine is made (tests patch it to split small inputs).
        batch_chunks: Chunks per batch; default ``BATCH_CHUNKS``.
    """

    __slots__ = (
        "_batch",
        "_buf",
        "_chunk",
        "_chunk_log2",
        "_core",
        "_fill",
        "_kernel",
        "_stack",
        "_threads",
    )

    def __init__(
        self,
        core: NativeCore,
        kernel: int,
        threads: int,
        *,
        chunk_log2: int | None = None,
        batch_chunks: int | None = None,
    ) -> None:
        if chunk_log2 is None:
            chunk_log2 = CHUNK_LOG2
        if batch_chunks is None:
            # Batches exist to split work across threads; with one thread a
            # one-chunk batch hashes as soon as a chunk is complete and keeps
            # the buffer small (no per-object growth to BATCH_CHUNKS chunks).
            batch_chunks = 1 if threads == 1 else BATCH_CHUNKS
        self._core = core
        self._kernel = kernel
        self._threads = threads
        self._chunk_log2 = chunk_log2
        self._chunk = QUAD << chunk_log2
        self._batch = self._chunk * max(batch_chunks, threads)
        self._buf: bytearray | None = None
        self._fill = 0
        self._stack: list[bytes | None] = []

    @property
    def batch_size(self) -> int:
        """Bytes per batch; reads of this size avoid any copy."""
        return self._batch

    def _absorb(self, data: memoryview | bytearray, stack: list[bytes | None]) -> None:
        """Hash whole chunks and push their roots onto ``stack``."""
        roots = self._core.chunk_roots(
            self._kernel, data, self._chunk_log2, self._threads
        )
        for off in range(0, len(roots), 32):
            self._push(stack, roots[off : off + 32])

    def _push(self, stack: list[bytes | None], node: bytes) -> None:
        node_fn, kernel = self._core.node, self._kernel
        i = 0
        while i < len(stack):
            left = stack[i]
            if left is None:
                stack[i] = node
                return
            stack[i] = None
            node = node_fn(kernel, left, node)
            i += 1
        stack.append(node)

    def update(self, data: memoryview) -> None:
        """Absorb more payload bytes (``data`` is a byte-format memoryview)."""
        batch = self._batch
        while data:
            if self._fill == 0 and len(data) >= batch:
                full = len(data) - len(data) % self._chunk
                self._absorb(data[:full], self._stack)
                data = data[full:]
                continue
            n = min(len(data), batch - self._fill)
            if self._buf is None and _SPARE and batch == self._chunk:
                with contextlib.suppress(IndexError):  # another thread took it
                    spare = _SPARE.pop()
                    if len(spare) == batch:  # another chunk size: not for us
                        self._buf = spare
            if self._buf is None or len(self._buf) < self._fill + n:
                # grow geometrically up to one batch; small payloads stay small
                have = 0 if self._buf is None else len(self._buf)
                grown = bytearray(min(batch, max(2 * have, self._fill + n, 1 << 16)))
                if self._buf is not None:
                    grown[: self._fill] = self._buf[: self._fill]
                self._buf = grown
            self._buf[self._fill : self._fill + n] = data[:n]
            self._fill += n
            data = data[n:]
            if self._fill == batch:
                self._absorb(self._buf, self._stack)
                self._fill = 0

    def absorb_fd(self, fd: int) -> int:
        """Read ``fd`` to its end and absorb everything; return the byte count.

        The core reads the descriptor itself, one chunk per thread at a
        time, so each chunk is hashed while it is still in that core's
        cache and no batch buffer is filled. Pipes work as well as files.

        Raises:
            OSError: If a read fails (the state then holds part of the input).
        """
        total = 0
        core, chunk = self._core, self._chunk
        while True:
            # Chunks must start at multiples of the chunk size: complete a
            # partial chunk left by update() or an interrupted read first.
            while self._fill % chunk:
                data = os.read(fd, chunk - self._fill % chunk)
                if not data:
                    return total
                self.update(memoryview(data))
                total += len(data)
            if self._fill:
                assert self._buf is not None
                with memoryview(self._buf) as whole:
                    self._absorb(whole[: self._fill], self._stack)
                self._fill = 0
            roots, tail, eof = core.hash_fd(
                self._kernel, fd, self._chunk_log2, self._threads, FD_CHUNKS
            )
            for off in range(0, len(roots), 32):
                self._push(self._stack, roots[off : off + 32])
            total += len(roots) // 32 * chunk
            if tail:
                self.update(memoryview(tail))
                total += len(tail)
            if eof:
                return total

    def root(self, height: int) -> bytes:
        """The root of the tree of ``height`` over everything absorbed so far.

        Leaves the state unchanged.
        """
        core, kernel = self._core, self._kernel
        chunk_height = self._chunk_log2 + 2
        tail = memoryview(self._buf if self._buf is not None else b"")[: self._fill]
        if height <= chunk_height:
            # Everything fits in one chunk: either that chunk was absorbed
            # whole (then height == chunk_height) or it is still in the buffer.
            if self._stack:
                return self._stack[0]  # type: ignore[return-value]
            return core.subtree_root(kernel, tail, height)
        stack = list(self._stack)
        full = len(tail) - len(tail) % self._chunk
        if full:
            self._absorb(tail[:full], stack)
        if full < len(tail):
            self._push(stack, core.subtree_root(kernel, tail[full:], chunk_height))
        acc: bytes | None = None
        for i, left in enumerate(stack[: height - chunk_height]):
            level = chunk_height + i
            if left is not None:
                right = ZERO_COMMITMENTS[level] if acc is None else acc
                acc = core.node(kernel, left, right)
            elif acc is not None:
                acc = core.node(kernel, acc, ZERO_COMMITMENTS[level])
        if acc is not None:
            return acc
        top = height - chunk_height
        if top < len(stack) and stack[top] is not None:
            return stack[top]  # type: ignore[return-value]
        return ZERO_COMMITMENTS[height]

    def __del__(self) -> None:
        try:
            buf = getattr(self, "_buf", None)
            if buf is not None and len(buf) == self._chunk and len(_SPARE) < _SPARE_MAX:
                self._buf = None
                _SPARE.append(buf)
        except Exception:  # noqa: S110 - at interpreter exit the list may be gone
            pass

    def copy(self) -> NativeEngine:
        """An independent copy of the state."""
        other = NativeEngine.__new__(NativeEngine)
        other._core = self._core
        other._kernel = self._kernel
        other._threads = self._threads
        other._chunk_log2 = self._chunk_log2
        other._chunk = self._chunk
        other._batch = self._batch
        other._buf = (
            bytearray(self._buf[: self._fill]) if self._buf is not None else None
        )
        other._fill = self._fill
        other._stack = list(self._stack)
        return other
