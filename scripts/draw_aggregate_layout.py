"""Draw docs/explanation/aggregate-layout.svg from real packing decisions.

The same seven pieces are packed into a 1 MiB deal by each built-in policy,
and each layout is drawn as a bar: pieces, alignment holes, free space and
the data segment index at the end. Run it after changing a policy; a test
checks that the committed picture is current.

    python scripts/draw_aggregate_layout.py [OUT]
"""

from __future__ import annotations

import sys
from pathlib import Path

from carmigrate.aggregate import PackingConstraints, PackItem, pack
from carmigrate.aggregate.lowlevel import index_start
from carmigrate.commp import PieceInfo

DEAL = 1 << 20
SIZES = [1 << 12, 1 << 17, 1 << 10, 1 << 18, 1 << 15, 1 << 16, 1 << 13]
POLICIES = ["in_order", "smallest_first", "largest_first"]
WIDTH, BAR, GAP, LEFT = 760, 34, 30, 120
COLOURS = ["#4e79a7", "#59a14f", "#9c755f", "#f28e2b", "#76b7b2", "#edc948", "#b07aa1"]
OUT = (
    Path(__file__).resolve().parent.parent
    / "docs"
    / "explanation"
    / "aggregate-layout.svg"
)


def _items() -> list[PackItem]:
    return [
        PackItem(PieceInfo(bytes([i + 1]) * 31 + b"\x01", s), f"p{i}")
        for i, s in enumerate(SIZES)
    ]


def _x(offset: int) -> float:
    return LEFT + offset / DEAL * (WIDTH - LEFT - 10)


def _label(size: int) -> str:
    return f"{size >> 10} KiB" if size >= 1024 else f"{size} B"


def render() -> str:
    """The SVG text, deterministic for a given set of policies."""
    c = PackingConstraints(deal_size=DEAL, max_age=0.0)
    rows = []
    height = 40 + len(POLICIES) * (BAR + GAP) + 24
    rows.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="sans-serif" font-size="11">'
    )
    rows.append(
        '<defs><pattern id="hole" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#e15759" stroke-width="2"/></pattern></defs>'
    )
    rows.append(
        f'<text x="{LEFT}" y="18">Seven pieces in a 1 MiB deal, as each policy lays them out '
        "(padded bytes, offset 0 on the left)</text>"
    )
    idx = index_start(DEAL)
    for r, policy in enumerate(POLICIES):
        y = 34 + r * (BAR + GAP)
        (agg,) = pack(_items(), c, policy=policy, now=1.0).aggregates
        rows.append(f'<text x="4" y="{y + BAR / 2 + 4}">{policy}</text>')
        rows.append(
            f'<rect x="{_x(0)}" y="{y}" width="{_x(DEAL) - _x(0)}" height="{BAR}" '
            'fill="#f4f4f4" stroke="#999"/>'
        )
        end = 0
        for piece, off in zip(agg.pieces, agg.offsets, strict=True):
            if off > end:
                rows.append(
                    f'<rect x="{_x(end)}" y="{y}" width="{_x(off) - _x(end)}" height="{BAR}" '
                    'fill="url(#hole)" stroke="#e15759"/>'
                )
            colour = COLOURS[SIZES.index(piece.padded_size)]
            rows.append(
                f'<rect x="{_x(off)}" y="{y}" width="{max(1.0, _x(off + piece.padded_size) - _x(off))}" '
                f'height="{BAR}" fill="{colour}" stroke="#333"/>'
            )
            if piece.padded_size >= 1 << 16:
                rows.append(
                    f'<text x="{_x(off) + 3}" y="{y + BAR / 2 + 4}" fill="#fff">'
                    f"{_label(piece.padded_size)}</text>"
                )
            end = off + piece.padded_size
        rows.append(
            f'<rect x="{_x(idx)}" y="{y}" width="{max(2.0, _x(DEAL) - _x(idx))}" height="{BAR}" '
            'fill="#222"/>'
        )
        rows.append(
            f'<text x="{_x(0)}" y="{y + BAR + 13}" fill="#555">alignment holes: '
            f"{_label(agg.alignment_waste)}; pieces end at {_label(agg.data_end)}</text>"
        )
    y = 34 + len(POLICIES) * (BAR + GAP) + 6
    rows.append(
        f'<rect x="{LEFT}" y="{y}" width="14" height="10" fill="url(#hole)" stroke="#e15759"/>'
        f'<text x="{LEFT + 18}" y="{y + 9}">alignment hole</text>'
        f'<rect x="{LEFT + 120}" y="{y}" width="14" height="10" fill="#f4f4f4" stroke="#999"/>'
        f'<text x="{LEFT + 138}" y="{y + 9}">free (zeros)</text>'
        f'<rect x="{LEFT + 230}" y="{y}" width="14" height="10" fill="#222"/>'
        f'<text x="{LEFT + 248}" y="{y + 9}">data segment index (8 entries, 512 B, at the end)</text>'
    )
    rows.append("</svg>")
    return "\n".join(rows) + "\n"


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    out.write_text(render())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
