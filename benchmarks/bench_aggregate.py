"""Packing simulator: a stream of pieces through each policy into 32 GiB deals.

The synthetic stream is shaped after what a public upload service receives:
most uploads are small (JSON, metadata, thumbnails), many are a few MiB
(images, documents), and a thin heavy tail runs up to 4 GiB CAR shards
(video, datasets; w3filecoin caps shards at 4 GiB padded). Precisely, payload
sizes are drawn from a mixture, clipped to [100 B, 127·2^25 B]:

- 55 %: log-normal, median 16 KiB, sigma 1.5;
- 40 %: log-normal, median 1.5 MiB, sigma 1.2;
- 5 %: Pareto (alpha 1.1) from 16 MiB.

Pieces arrive as a Poisson stream at a steady rate (the whole stream spans
30 simulated days). The simulator calls the policy whenever the buffer holds
a deal's worth of padded bytes, and whenever the oldest waiting piece
reaches the age deadline (24 h), and records every aggregate it emits.

Reported per policy: aggregates (and how many were deadline flushes),
alignment waste (holes between pieces, % of all deal bytes), padded fill of
non-deadline aggregates (mean and minimum), payload fill (real payload bytes
over deal bytes: fr32 and power-of-two padding included), mean and maximum
wait of a piece, packing time, and the time to build every emitted
aggregate's tree with all inclusion proofs. Also: one 32 GiB aggregate of
100k pieces built with all proofs, and one ``largest_first`` call on 300k
waiting pieces (the stream's first 300k, packed at once at the last one's
arrival: most are past half the deadline, so urgent), its time and fill.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time

import attrs

from carmigrate.aggregate import (
    AggregateBuilder,
    PackingConstraints,
    PackItem,
    PlannedAggregate,
    pack,
)
from carmigrate.commp import PieceInfo

DEAL = 1 << 35
MAX_PAYLOAD = 127 << 25
DAY = 86400.0


def padded_size(n: int) -> int:
    q = max(1, -(-n // 127))
    return 128 << (q - 1).bit_length()


def payload_sizes(n: int, rng: random.Random) -> list[int]:
    out = []
    for _ in range(n):
        u = rng.random()
        if u < 0.55:
            s = rng.lognormvariate(math.log(16 * 1024), 1.5)
        elif u < 0.95:
            s = rng.lognormvariate(math.log(1.5 * 1024 * 1024), 1.2)
        else:
            s = 16 * 1024 * 1024 * rng.paretovariate(1.1)
        out.append(int(min(MAX_PAYLOAD, max(100, s))))
    return out


def stream(n: int, seed: int = 58) -> list[PackItem]:
    rng = random.Random(seed)
    sizes = payload_sizes(n, rng)
    rate = n / (30 * DAY)
    t = 0.0
    items = []
    for i, s in enumerate(sizes):
        t += rng.expovariate(rate)
        root = i.to_bytes(8, "big") + b"\x5a" * 23 + b"\x01"
        items.append(
            PackItem(
                PieceInfo(root, padded_size(s)), str(i), payload_size=s, received=t
            )
        )
    return items


@attrs.define
class Outcome:
    emitted: list[tuple[float, PlannedAggregate]] = attrs.field(factory=list)
    pack_seconds: float = 0.0
    leftover: int = 0


def simulate(items: list[PackItem], policy: str, max_age: float | None) -> Outcome:
    c = PackingConstraints(deal_size=DEAL, max_age=max_age)
    capacity = DEAL - (DEAL >> 11)  # index area: 16 MiB of 32 GiB
    out = Outcome()
    buffer: list[PackItem] = []
    buffered = 0
    oldest = math.inf
    for it in items:
        buffer.append(it)
        buffered += it.size
        oldest = min(oldest, it.received)
        now = it.received
        due = max_age is not None and now - oldest >= max_age
        if buffered < capacity and not due:
            continue
        t0 = time.perf_counter()
        res = pack(buffer, c, policy=policy, now=now)
        out.pack_seconds += time.perf_counter() - t0
        out.emitted.extend((now, a) for a in res.aggregates)
        buffer = list(res.leftover)
        buffered = sum(i.size for i in buffer)
        oldest = min((i.received for i in buffer), default=math.inf)
    out.leftover = len(buffer)
    return out


def build_all(aggs: list[PlannedAggregate]) -> float:
    t0 = time.perf_counter()
    for a in aggs:
        built = a.build()
        built.proofs()
    return time.perf_counter() - t0


def report(
    name: str, items: list[PackItem], o: Outcome, build_seconds: float | None
) -> str:
    aggs = [a for _, a in o.emitted]
    full = [a for a in aggs if a.reason == "full"]
    waits = [t - i.received for t, a in o.emitted for i in a.items]
    deal_bytes = len(aggs) * DEAL
    waste = sum(a.alignment_waste for a in aggs) / deal_bytes if aggs else 0.0
    fills = [a.used / DEAL for a in full] or [0.0]
    payload = sum(a.payload for a in aggs) / deal_bytes if aggs else 0.0
    deadline = len(aggs) - len(full)
    outside = sum(not a.in_window for a in aggs)
    bt = f"{build_seconds:.1f}" if build_seconds is not None else "-"
    return (
        f"| {name} | {len(aggs)} ({deadline}, {outside}) | {waste:.4%} | {statistics.mean(fills):.3%} "
        f"/ {min(fills):.3%} | {payload:.3%} | {statistics.mean(waits) / 3600:.1f} h / "
        f"{max(waits) / 3600:.1f} h | {o.leftover} | {o.pack_seconds:.1f} | {bt} |"
    )


def big_aggregate(n: int) -> tuple[float, float]:
    rng = random.Random(7)
    sizes = sorted((1 << rng.randint(7, 19) for _ in range(n)), reverse=True)
    pieces = [
        PieceInfo(i.to_bytes(8, "big") + b"\x33" * 23 + b"\x01", s)
        for i, s in enumerate(sizes)
    ]
    t0 = time.perf_counter()
    b = AggregateBuilder(DEAL)
    for p in pieces:
        b.add(p)
    agg = b.build()
    proofs = agg.proofs()
    t1 = time.perf_counter()
    for j in range(0, n, max(1, n // 100)):
        pl = agg.placements[j]
        proofs[j].verify(pl.root, pl.size, agg.root, DEAL)
    return t1 - t0, b.data_end / DEAL


def one_call(items: list[PackItem]) -> tuple[float, int, float, int]:
    """One ``largest_first`` call on all of ``items``, at the last one's arrival.

    Returns:
        Seconds, aggregates emitted, the lowest padded fill of a full one, and
        the pieces left waiting.
    """
    c = PackingConstraints(deal_size=DEAL, max_age=DAY)
    t0 = time.perf_counter()
    res = pack(items, c, policy="largest_first", now=items[-1].received)
    secs = time.perf_counter() - t0
    full = [a.used / DEAL for a in res.aggregates if a.reason == "full"] or [0.0]
    return secs, len(res.aggregates), min(full), len(res.leftover)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50k pieces instead of 1M")
    ap.add_argument("--pieces", type=int, default=None)
    ap.add_argument(
        "--one-call",
        type=int,
        default=None,
        metavar="N",
        help="pieces of the single largest_first call (300k; --quick 30k)",
    )
    args = ap.parse_args()
    n = args.pieces or (50_000 if args.quick else 1_000_000)
    items = stream(n)
    total = sum(i.payload for i in items)
    sizes = sorted(i.payload for i in items)
    print(
        f"Stream: {n:,} pieces over 30 simulated days, {total / 2**40:.2f} TiB of payload; "
        f"payload median {sizes[n // 2]:,} B, p99 {sizes[int(n * 0.99)]:,} B, "
        f"max {sizes[-1]:,} B. Deals: 32 GiB; deadline 24 h.\n"
    )
    print(
        "| policy | aggregates (deadline, outside window) | alignment waste | padded fill of full aggregates "
        "(mean / min) | payload fill | wait (mean / max) | left waiting | pack s | build s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    runs = [
        ("in_order (data-segment)", "in_order", DAY),
        ("smallest_first (w3up, no deadline)", "smallest_first", None),
        ("smallest_first + 24 h deadline", "smallest_first", DAY),
        ("largest_first (carmigrate)", "largest_first", DAY),
    ]
    for label, policy, age in runs:
        o = simulate(items, policy, age)
        bt = build_all([a for _, a in o.emitted]) if policy == "largest_first" else None
        print(report(label, items, o, bt))
    secs, fill = big_aggregate(10_000 if args.quick else 100_000)
    count = "10k" if args.quick else "100k"
    print(
        f"\nOne 32 GiB aggregate of {count} pieces (128 B to 512 KiB, largest first; "
        f"{fill:.1%} of the deal), tree and all inclusion proofs: {secs:.2f} s."
    )
    m = args.one_call or (30_000 if args.quick else 300_000)
    batch = items[:m] if m <= n else stream(m)
    secs, aggs, low, left = one_call(batch)
    print(
        f"\nOne largest_first call on {m:,} waiting pieces (24 h deadline, at the "
        f"last arrival): {aggs} aggregates, padded fill of full ones at least "
        f"{low:.3%}, {left:,} left waiting; {secs:.2f} s."
    )


if __name__ == "__main__":
    main()
