"""``carmigrate aggregate``: build FRC-0058 aggregates and check proofs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carmigrate.cli._output import fail
from carmigrate.errors import AggregateError, AggregateFullError, CarmigrateError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from carmigrate.commp import PieceInfo

__all__ = ["register"]

_ORDERS: dict[
    str, Callable[[list[tuple[int, PieceInfo]]], list[tuple[int, PieceInfo]]]
] = {
    "in_order": lambda ps: list(ps),
    "smallest_first": lambda ps: sorted(ps, key=lambda t: t[1].padded_size),
    "largest_first": lambda ps: sorted(ps, key=lambda t: -t[1].padded_size),
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``aggregate`` command group."""
    p = sub.add_parser(
        "aggregate",
        help="build FRC-0058 aggregates and verify inclusion proofs",
        description="Build FRC-0058 aggregates from PieceCIDs and verify inclusion proofs.",
    )
    cmds = p.add_subparsers(dest="aggregate_command", metavar="COMMAND", required=True)

    b = cmds.add_parser(
        "build",
        help="place pieces read from standard input into one aggregate",
        description=(
            "Read JSON lines {'piece_cid': '<v2>'} or {'piece_cid': '<v1>', "
            "'padded_size': N} from standard input, place them into one aggregate "
            "and print its CID, the pieces' offsets and their inclusion proofs. "
            "Exit 2 when they do not fit (with --json, also {'error': {'message', 'failed_at', ...}})."
        ),
    )
    b.add_argument(
        "--deal-size", type=int, required=True, help="padded deal size in bytes"
    )
    b.add_argument(
        "--policy",
        choices=sorted(_ORDERS),
        default="in_order",
        help="placement order: as given (default), smallest first, or largest first",
    )
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(handler=_build)

    v = cmds.add_parser(
        "verify-proof",
        help="check an inclusion proof against an aggregate CID",
        description=(
            "Check that a piece is included in an aggregate. Exit 0 if the proof "
            "holds, 1 if it does not, 2 on malformed input."
        ),
    )
    v.add_argument("--aggregate", required=True, help="aggregate PieceCID (v1 or v2)")
    v.add_argument(
        "--deal-size", type=int, help="padded deal size (needed with a v1 CID)"
    )
    v.add_argument("--piece", required=True, help="the piece's PieceCID (v1 or v2)")
    v.add_argument(
        "--padded-size", type=int, help="the piece's padded size (with a v1 CID)"
    )
    v.add_argument(
        "--proof",
        required=True,
        help="file with the proof JSON ({'tree': …, 'index': …} or a piece object "
        "from 'aggregate build'); '-' for standard input",
    )
    v.add_argument("--json", action="store_true", help="print the verdict as JSON")
    v.set_defaults(handler=_verify)


def _read_pieces(lines: list[str]) -> list[PieceInfo]:
    from carmigrate.commp import PieceInfo

    pieces = []
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            size = obj.get("padded_size")
            pieces.append(PieceInfo.from_cid(obj["piece_cid"], padded_size=size))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            msg = (
                f"line {n + 1}: expected {{'piece_cid': …[, 'padded_size': N]}}: {exc}"
            )
            raise AggregateError(msg) from exc
    return pieces


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")


def _build(args: argparse.Namespace) -> int:
    from carmigrate.aggregate import AggregateBuilder
    from carmigrate.commp import PieceInfo

    try:
        pieces = _read_pieces(sys.stdin.read().splitlines())
        builder = AggregateBuilder(args.deal_size)
    except CarmigrateError as exc:
        return fail(args, str(exc), kind=type(exc).__name__, failed_at=None)
    order = _ORDERS[args.policy](list(enumerate(pieces)))
    placed: list[tuple[int, PieceInfo]] = []
    for index, piece in order:
        try:
            builder.add(piece)
        except AggregateFullError as exc:
            return fail(
                args,
                f"piece {index} (input line {index + 1}) does not fit: {exc.reason}",
                kind=type(exc).__name__,
                failed_at=index,
            )
        placed.append((index, piece))
    if not placed:
        return fail(args, "no pieces on standard input", kind="usage", failed_at=None)
    agg = builder.build()
    info = PieceInfo(agg.root, agg.deal_size, agg.deal_size // 128 * 127)
    out = {
        "aggregate_cid": str(info.cid_v1),
        "aggregate_cid_v2": str(info.cid_v2),
        "deal_size": agg.deal_size,
        "pieces": [
            {
                "input": index,
                "piece_cid": str(piece.cid_v1),
                "padded_size": pl.size,
                "offset": pl.offset,
                "proof": agg.proof(pl.position).to_json(),
            }
            for (index, piece), pl in zip(placed, agg.placements, strict=True)
        ],
    }
    if args.json:
        _emit(out)
    else:
        print(f"aggregate {out['aggregate_cid']} ({agg.deal_size} bytes padded)")
        for p in out["pieces"]:  # type: ignore[attr-defined]
            print(f"  {p['offset']:>14}  {p['padded_size']:>12}  {p['piece_cid']}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from carmigrate.aggregate import InclusionProof
    from carmigrate.commp import PieceInfo

    try:
        text = sys.stdin.read() if args.proof == "-" else Path(args.proof).read_text()
        obj = json.loads(text)
        if isinstance(obj, dict) and "proof" in obj:
            obj = obj["proof"]
        proof = InclusionProof.from_json(obj)
        piece = PieceInfo.from_cid(args.piece, padded_size=args.padded_size)
        agg = PieceInfo.from_cid(args.aggregate, padded_size=args.deal_size)
    except (OSError, ValueError, CarmigrateError) as exc:
        return fail(args, str(exc), kind=type(exc).__name__)
    try:
        proof.verify(piece.root, piece.padded_size, agg.root, agg.padded_size)
    except AggregateError as exc:
        if args.json:
            _emit({"ok": False, "error": str(exc)})
        else:
            print(f"NOT included: {exc}")
        return 1
    if args.json:
        _emit({"ok": True})
    else:
        print(f"included: {piece.cid_v1} is in {agg.cid_v1} ({agg.padded_size} bytes)")
    return 0
