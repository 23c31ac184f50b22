"""The compiled core reading file descriptors itself: files, pipes, errors."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from commp_payloads import NATIVE, counter

from carmigrate.commp import PieceHasher, commp

pytestmark = pytest.mark.skipif(not NATIVE, reason="compiled core not built")


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """4-quad chunks and 3 chunks per call: every path through absorb_fd."""
    from carmigrate.commp import _native_engine

    monkeypatch.setattr(_native_engine, "CHUNK_LOG2", 2)
    monkeypatch.setattr(_native_engine, "BATCH_CHUNKS", 2)
    monkeypatch.setattr(_native_engine, "FD_CHUNKS", 3)


def _writer(fd: int, data: bytes, step: int, pause: float = 0.0) -> threading.Thread:
    def run() -> None:
        with open(fd, "wb", buffering=0) as f:
            for off in range(0, len(data), step):
                f.write(data[off : off + step])
                if pause:
                    time.sleep(pause)

    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.mark.parametrize("impl", NATIVE)
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("size", [0, 1, 507, 508, 509, 508 * 3, 508 * 3 + 5, 50_000])
def test_files_and_pipes(
    impl: str, threads: int, size: int, tmp_path: Path, small_chunks: None
) -> None:
    data = counter(size)
    want = commp(data, implementation=impl)
    path = tmp_path / "p.bin"
    path.write_bytes(data)
    assert commp(path, implementation=impl, threads=threads) == want
    with open(path, "rb", buffering=0) as f:
        assert isinstance(f, io.FileIO)
        assert commp(f, implementation=impl, threads=threads) == want
    r, w = os.pipe()
    writer = _writer(w, data, 333)
    with open(r, "rb", buffering=0) as f:
        assert commp(f, implementation=impl, threads=threads) == want
    writer.join()


def test_reads_from_the_current_position(tmp_path: Path) -> None:
    data = counter(300_000)
    path = tmp_path / "p.bin"
    path.write_bytes(data)
    with open(path, "rb", buffering=0) as f:
        f.seek(12_345)
        assert commp(f) == commp(data[12_345:])
        assert f.read() == b""


def test_after_unaligned_updates(tmp_path: Path, small_chunks: None) -> None:
    """Bytes already in the hasher are completed to a chunk before the core reads."""
    data = counter(20_000)
    want = commp(data)
    for head in (1, 507, 508, 1234, 1524):
        path = tmp_path / f"rest-{head}.bin"
        path.write_bytes(data[head:])
        h = PieceHasher(data[:head])
        with open(path, "rb", buffering=0) as f:
            assert h._update_from_fd(f.fileno())
        assert h.payload_size == len(data)
        assert h.piece_info() == want


def test_read_errors_are_oserrors(tmp_path: Path) -> None:
    from carmigrate.commp import _backend, _native  # type: ignore[attr-defined]

    kernel = _backend._KERNELS[NATIVE[0]]
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(IsADirectoryError):
            _native.hash_fd(kernel, fd, 2, 2, 10)
    finally:
        os.close(fd)
    with pytest.raises(IsADirectoryError):
        commp(tmp_path)


def test_interrupted_reads_resume(small_chunks: None) -> None:
    """A signal handler that returns lets every interrupted read resume."""
    data = counter(40_000)
    hits = []
    old = signal.signal(signal.SIGALRM, lambda *_: hits.append(1))
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    try:
        r, w = os.pipe()
        writer = _writer(w, data, 1000, pause=0.002)
        with open(r, "rb", buffering=0) as f:
            got = commp(f, threads=2)
        writer.join()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
    assert got == commp(data)
    assert hits
