"""``carmigrate commp``: piece commitments (PieceCIDs) of files or stdin."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, BinaryIO

from carmigrate.cli._output import fail

if TYPE_CHECKING:
    from carmigrate.commp import PieceInfo

__all__ = ["register"]

_PIPE_SIZE = 1 << 20


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"expected a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 1:
        msg = f"expected a positive integer, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``commp`` command to the ``carmigrate`` parser."""
    parser = subparsers.add_parser(
        "commp",
        help="compute the piece commitment (PieceCID) of files",
        description=(
            "Compute the Filecoin piece commitment of each FILE (a CAR, usually) "
            "and print its v1 PieceCID (baga...), v2 PieceCID (bafkzcib...), "
            "padded piece size and payload size. '-' reads standard input as a "
            "stream. Exit status 2 if a file cannot be read."
        ),
    )
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="file to hash; '-' is standard input"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per file (keys: file, payload_size, piece_cid, "
        "piece_cid_v2, padded_size)",
    )
    parser.add_argument(
        "--threads",
        type=_positive,
        default=None,
        metavar="N",
        help="hashing threads (default: all CPUs)",
    )
    parser.set_defaults(handler=_run)


def _stdin() -> BinaryIO:
    # Nothing has read standard input yet, so its raw, unbuffered file object
    # holds every byte; commp() then lets the compiled core read the
    # descriptor directly.
    stream: BinaryIO = getattr(sys.stdin.buffer, "raw", sys.stdin.buffer)
    try:  # a larger pipe buffer means fewer wake-ups; harmless if refused
        import fcntl

        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    except (ImportError, AttributeError, OSError, ValueError):
        pass
    return stream


def _line(name: str, info: PieceInfo, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {
                "file": name,
                "payload_size": info.payload_size,
                "piece_cid": str(info.cid_v1),
                "piece_cid_v2": str(info.cid_v2),
                "padded_size": info.padded_size,
            }
        )
    return (
        f"{info.cid_v1}  {info.cid_v2}  {info.padded_size}  {info.payload_size}  {name}"
    )


def commp(source: BinaryIO | str, *, threads: int | None) -> PieceInfo:
    """[carmigrate.commp.commp][], imported when a ``commp`` command runs."""
    from carmigrate.commp import commp as compute

    return compute(source, threads=threads)


def _run(args: argparse.Namespace) -> int:
    status = 0
    for name in args.files:
        try:
            source = _stdin() if name == "-" else name
            info = commp(source, threads=args.threads)
        except OSError as exc:
            status = fail(
                args, f"{name}: {exc.strerror or exc}", kind=type(exc).__name__
            )
            continue
        print(_line(name, info, args.json), flush=True)
    return status
