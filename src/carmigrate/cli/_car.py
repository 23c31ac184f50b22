"""The ``carmigrate car`` commands: roots, ls, verify, inspect, index."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from carmigrate.cli._output import fail

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from carmigrate.car import CarLimits, CarSummary, VerifyResult

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["register"]

_CODECS = ("index-sorted", "multihash-index-sorted")
"""``--codec`` names (``carmigrate.car`` is imported only when a command runs)."""


def _codec(name: str) -> int:
    from carmigrate.car import INDEX_SORTED, MULTIHASH_INDEX_SORTED

    return {
        "multihash-index-sorted": MULTIHASH_INDEX_SORTED,
        "index-sorted": INDEX_SORTED,
    }[name]


def register(subparsers: Subparsers) -> None:
    """Add the ``car`` command group to the top-level parser."""
    car = subparsers.add_parser(
        "car",
        help="read, verify, inspect and index CAR files",
        description="Read, verify, inspect and index CARv1 and CARv2 files.",
    )
    sub = car.add_subparsers(dest="car_command", metavar="COMMAND", required=True)

    p = sub.add_parser("roots", help="print the root CIDs, one per line")
    _add_input(p)
    p.add_argument(
        "--json", action="store_true", help='print one JSON object: {"roots": [...]}'
    )
    p.set_defaults(handler=_roots)

    p = sub.add_parser(
        "ls", help="list the blocks: CID, offset and length of each block's data"
    )
    _add_input(p)
    p.add_argument(
        "--json",
        action="store_true",
        help='one JSON object per line: {"cid": ..., "offset": ..., "length": ...}',
    )
    p.set_defaults(handler=_ls)

    p = sub.add_parser(
        "verify",
        help="re-hash every block; exit 0 only if the CAR is well-formed and every block matches",
        description="Re-hash every block and check the structure (and a CARv2 index). "
        "Exit 0 when the CAR is well-formed and every block matches its CID, 1 otherwise.",
    )
    _add_input(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--all",
        action="store_true",
        help="keep going after a mismatch and report every one",
    )
    p.add_argument(
        "--allow-unverifiable",
        action="store_true",
        help="exit 0 even if some blocks use a hash function carmigrate cannot compute",
    )
    p.set_defaults(handler=_verify)

    p = sub.add_parser(
        "inspect",
        help="summarise: version, roots, block count and sizes, codecs, index",
    )
    _add_input(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_inspect)

    p = sub.add_parser(
        "index",
        help="write a CARv2 with an index holding the same roots and blocks",
    )
    _add_input(p)
    p.add_argument(
        "-o", "--output", required=True, type=Path, help="the CARv2 to write"
    )
    p.add_argument(
        "--codec",
        choices=sorted(_CODECS),
        default="multihash-index-sorted",
        help="index format (default: %(default)s, as go-car)",
    )
    p.add_argument(
        "--store-identity-cids",
        action="store_true",
        help="index identity-hash CIDs too and mark the CAR fully indexed",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="do not re-hash the blocks while copying",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_index)


def _add_input(p: argparse.ArgumentParser) -> None:
    from carmigrate.car import CarLimits

    p.add_argument("file", metavar="FILE", help="the CAR file, or - for standard input")
    p.add_argument(
        "--max-header-size",
        type=_size,
        default=CarLimits().max_header_size,
        metavar="BYTES",
        help="largest header accepted (default: %(default)s)",
    )
    p.add_argument(
        "--max-section-size",
        type=_size,
        default=CarLimits().max_section_size,
        metavar="BYTES",
        help="largest section (CID and block) accepted (default: %(default)s)",
    )
    p.add_argument(
        "--zero-length-section-as-eof",
        action="store_true",
        help="treat a zero-length section as the end of the data (default: an error)",
    )


def _size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a positive number of bytes, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _limits(args: argparse.Namespace) -> CarLimits:
    from carmigrate.car import CarLimits

    return CarLimits(
        max_header_size=args.max_header_size, max_section_size=args.max_section_size
    )


@contextlib.contextmanager
def _opened(name: str) -> Iterator[BinaryIO]:
    if name == "-":
        yield sys.stdin.buffer
        return
    with Path(name).open("rb") as f:
        yield f


def _guard(
    handler: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            return fail(args, str(exc), kind=type(exc).__name__)

    run.__name__ = handler.__name__
    return run


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


@_guard
def _roots(args: argparse.Namespace) -> int:
    from carmigrate.car import CarBlockReader

    with _opened(args.file) as f:
        reader = CarBlockReader(
            f,
            limits=_limits(args),
            zero_length_section_as_eof=args.zero_length_section_as_eof,
        )
        roots = [str(root) for root in reader.roots]
    if args.json:
        _out(json.dumps({"roots": roots}))
        return 0
    for root in roots:
        _out(root)
    return 0


@_guard
def _ls(args: argparse.Namespace) -> int:
    from carmigrate.car import CarBlockReader

    with _opened(args.file) as f:
        reader = CarBlockReader(
            f,
            limits=_limits(args),
            zero_length_section_as_eof=args.zero_length_section_as_eof,
        )
        if not args.json:
            _out(f"{'OFFSET':>12} {'LENGTH':>10}  CID")
        for loc in reader.locations():
            if args.json:
                _out(
                    json.dumps(
                        {
                            "cid": str(loc.cid),
                            "offset": loc.offset,
                            "length": loc.length,
                        }
                    )
                )
            else:
                _out(f"{loc.offset:>12} {loc.length:>10}  {loc.cid}")
    return 0


def _verify_failure(
    result: VerifyResult, allow_unverifiable: bool
) -> tuple[str, int | None] | None:
    failure = result.first_failure
    if failure is not None:
        return failure.reason, failure.offset
    if result.unverifiable and not allow_unverifiable:
        from carmigrate.cid import hash_name

        names = ", ".join(sorted(hash_name(c) for c in result.unverifiable_hashes))
        msg = (
            f"{result.unverifiable} blocks use hash functions carmigrate cannot verify ({names}); "
            "pass --allow-unverifiable to accept them"
        )
        return msg, result.first_unverifiable_offset
    return None


@_guard
def _verify(args: argparse.Namespace) -> int:
    from carmigrate.car import verify_car

    with _opened(args.file) as f:
        result = verify_car(
            f,
            all_mismatches=args.all,
            limits=_limits(args),
            zero_length_section_as_eof=args.zero_length_section_as_eof,
        )
    failure = _verify_failure(result, args.allow_unverifiable)
    if args.json:
        doc: dict[str, object] = {
            "ok": failure is None,
            "version": result.version,
            "blocks": result.blocks,
            "bytes": result.bytes,
            "verified": result.verified,
            "unverifiable": result.unverifiable,
            "mismatches": [
                {"cid": m.cid, "offset": m.offset} for m in result.mismatches
            ],
            "index_checked": result.index_checked,
        }
        if failure is not None:
            doc["error"], doc["offset"] = failure
        _out(json.dumps(doc))
    else:
        for m in result.mismatches[1:]:
            _out(f"mismatch at offset {m.offset}: {m.reason}")
        if failure is None:
            extra = (
                f", {result.unverifiable} unverifiable" if result.unverifiable else ""
            )
            index = ", index checked" if result.index_checked else ""
            _out(
                f"ok: {result.blocks} blocks, {result.bytes} bytes, "
                f"{result.verified} verified{extra}{index}"
            )
        else:
            message, offset = failure
            where = f" at offset {offset}" if offset is not None else ""
            _out(f"FAILED{where}: {message} (after {result.blocks} blocks)")
    return 0 if failure is None else 1


def _summary_json(s: CarSummary) -> dict[str, object]:
    v2 = s.header.v2
    return {
        "version": s.version,
        "roots": [str(r) for r in s.roots],
        "roots_present": s.roots_present,
        "blocks": s.blocks,
        "unique_cids": s.unique_cids,
        "data_bytes": s.data_bytes,
        "min_block_size": s.min_block_size,
        "max_block_size": s.max_block_size,
        "codecs": dict(s.codecs),
        "hashes": dict(s.hashes),
        "v2": None
        if v2 is None
        else {
            "data_offset": v2.data_offset,
            "data_size": v2.data_size,
            "index_offset": v2.index_offset,
            "fully_indexed": v2.characteristics.fully_indexed,
            "characteristics": v2.encode()[:16].hex(),
        },
        "index": None
        if s.index is None
        else {"codec": s.index.codec_name, "entries": len(s.index), "checked": True},
    }


@_guard
def _inspect(args: argparse.Namespace) -> int:
    from carmigrate.car import inspect_car

    with _opened(args.file) as f:
        summary = inspect_car(
            f,
            limits=_limits(args),
            zero_length_section_as_eof=args.zero_length_section_as_eof,
        )
    doc = _summary_json(summary)
    if args.json:
        _out(json.dumps(doc))
        return 0
    _out(f"version: {summary.version}")
    _out(
        f"roots: {len(summary.roots)}"
        + ("" if summary.roots_present else " (not all present)")
    )
    for root in summary.roots:
        _out(f"  {root}")
    _out(f"blocks: {summary.blocks} ({summary.unique_cids} distinct CIDs)")
    _out(
        f"block data: {summary.data_bytes} bytes "
        f"(smallest {summary.min_block_size}, largest {summary.max_block_size})"
    )
    _out("codecs: " + ", ".join(f"{name} {n}" for name, n in summary.codecs))
    _out("hash functions: " + ", ".join(f"{name} {n}" for name, n in summary.hashes))
    v2 = summary.header.v2
    if v2 is not None:
        _out(
            f"CARv2: data offset {v2.data_offset}, data size {v2.data_size}, "
            f"index offset {v2.index_offset}, fully indexed: "
            f"{'yes' if v2.characteristics.fully_indexed else 'no'}"
        )
    if summary.index is not None:
        _out(
            f"index: {summary.index.codec_name}, {len(summary.index)} entries, checked"
        )
    elif v2 is not None:
        _out("index: none")
    return 0


@_guard
def _index(args: argparse.Namespace) -> int:
    from carmigrate.car import index_car

    out: Path = args.output
    if str(out) == "-":
        return fail(args, "a CARv2 must be written to a file, not -", kind="usage")
    out_dir = out.resolve().parent
    if not out_dir.is_dir():
        return fail(
            args,
            f"cannot write {str(out)!r}: {str(out.parent)!r} is not a folder",
            kind="NotADirectoryError",
        )
    with _opened(args.file) as f:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{out.name}.", suffix=".tmp", dir=out_dir
        )
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "w+b") as sink:
                header = index_car(
                    f,
                    sink,
                    index_codec=_codec(args.codec),
                    store_identity_cids=args.store_identity_cids,
                    verify=not args.no_verify,
                    limits=_limits(args),
                    zero_length_section_as_eof=args.zero_length_section_as_eof,
                )
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o666 & ~umask)
            tmp.replace(out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    v2 = header.v2
    assert v2 is not None
    if args.json:
        _out(
            json.dumps(
                {
                    "path": str(out),
                    "version": 2,
                    "data_offset": v2.data_offset,
                    "data_size": v2.data_size,
                    "index_offset": v2.index_offset,
                    "index_codec": args.codec,
                }
            )
        )
        return 0
    _out(
        f"wrote {out}: CARv2, data offset {v2.data_offset}, data size {v2.data_size}, "
        f"{args.codec} index at offset {v2.index_offset}"
    )
    return 0
