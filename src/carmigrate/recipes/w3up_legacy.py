"""web3.storage legacy uploads → w3up, a recipe on the recipe contract.

Input: the legacy upload listing (JSON Lines, see
[parse_legacy_uploads][carmigrate.recipes.parse_legacy_uploads]), legacy
buckets and the destination bucket (w3up's carpark). A round finds every
shard not verified yet in the destination first, then in the legacy buckets
in the order given (by the CAR CID a key names in either scheme,
``…/<CAR CID>.car`` or ``…/<base32 multihash>.car``), and plans it from the
first place that has it: ``VERIFY`` in place (the "``store/add`` succeeds at
once" case: read, never written) or ``COPY`` from a bucket. A shard found
nowhere is missing and fails its uploads. Every item vouches for the SHA-256
its CAR CID names; the policy is size + sha256 + car (every block
re-hashed), plus commP and MD5 with ``commp=True`` (for
[backfill_filecoin][carmigrate.recipes.backfill_filecoin], which then reads
nothing again). Cohorts are tenants, interleaved round robin for the
engine's order and its per-tenant limits.

An upload is complete only if all its shards verified with every CAR block
checked *and* its root is a root of one of its shards' CAR headers; else it
fails with each shard's reason. ``records.jsonl`` gets the ``store/add``
and ``upload/add`` invocations of every complete upload (the legacy name as
a fact), and ``exports/`` a space-export CAR per tenant.

What the migration knows is in its work ledger
([work_ledger][carmigrate.recipes.work_ledger]). Each upload is a unit of
kind ``upload``, named ``upload:<tenant>/<root>`` (``upload:<root>``
without a tenant), owned by its tenant; its data is the listing's record
(``root``, ``name``, ``created``, ``dagSize``, ``tenant``, ``seq``: its
place in the listing, ``shards``: the CAR CIDs) and its members are the
shards' destination keys (``layout.format(cid=<CAR CID>)``), in the same
order. A member's record is its shard's ledger item: the size, the key it
was read from, ``COPY`` or ``VERIFY`` (in place), the CAR check, the first
root of the CAR header, the PieceCIDs with ``commp``.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import sys
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.cid import CID
from carmigrate.errors import FormatError, ObjectNotFound, PlanError
from carmigrate.migrate import (
    Action,
    Check,
    ItemState,
    Ledger,
    ListingEntry,
    MemberState,
    Plan,
    PlanItem,
    Stage,
    Unit,
    Verdict,
    VerificationPolicy,
)
from carmigrate.recipes._recipe import (
    Recipe,
    RecipeContext,
    RecipeResult,
    RoundPlans,
    option,
    register_recipe,
    run_recipe,
)
from carmigrate.recipes._w3up_records import (
    LegacyUpload,
    Shard,
    UploadRecords,
    car_cid_from_key,
    parse_legacy_uploads,
    w3up_records,
    write_space_export,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence
    from concurrent.futures import Executor
    from pathlib import Path

    from carmigrate.migrate import Limits, MemberRecord, Reporter, UnitRecord
    from carmigrate.storage import ObjectInfo, Store

    Listing = str | os.PathLike[str] | Iterable[str] | Iterable[LegacyUpload]

__all__ = [
    "DEFAULT_LAYOUT",
    "W3UP_LEGACY",
    "W3upLegacyOptions",
    "export_name",
    "migrate_w3up_legacy",
]

DEFAULT_LAYOUT: Final = "{cid}/{cid}.car"
"""Destination key of a shard: w3up's carpark layout, ``<CAR CID>/<CAR CID>.car``."""

_STAT_AT_MOST: Final = 2000  # shards to find: ask the destination for each, not list it


def _listing_arg(text: str) -> Any:
    return sys.stdin if text == "-" else text


def _check_layout(_: object, __: object, layout: str) -> None:
    try:
        ok = "{cid}" in layout and bool(layout.format(cid="x"))
    except (KeyError, IndexError, ValueError) as exc:
        raise PlanError(f"layout {layout!r}: not a template of cid: {exc}") from exc
    if not ok:
        raise PlanError(f"layout {layout!r} must contain {{cid}}")


@attrs.frozen(kw_only=True)
class W3upLegacyOptions:
    """The options of the ``w3up-legacy`` recipe (``carmigrate recipe w3up-legacy``).

    Attributes:
        listing: A JSON Lines file (``-``: stdin), its lines, or parsed uploads.
        buckets: The legacy buckets (stores or URLs), searched in this order.
        destination: The destination bucket (store or URL).
        layout: Destination key of a shard, with ``{cid}`` for its CAR CID.
        commp: Also compute PieceCIDs (and MD5) in the same read.

    Raises:
        PlanError: A layout without ``{cid}`` or with other fields.
    """

    listing: Listing = option(
        "the legacy listing ('-': stdin)",
        positional=True,
        metavar="LISTING",
        parse=_listing_arg,
    )
    buckets: tuple[Store | str, ...] = option(
        "a legacy bucket (repeat for several; searched in order)",
        flag="--bucket",
        repeat=True,
        metavar="URL",
        converter=tuple,
    )
    destination: Store | str = option("the destination bucket", metavar="URL")
    layout: str = option(
        "destination key of a shard, with {cid} for its CAR CID (default: {cid}/{cid}.car)",
        metavar="LAYOUT",
        default=DEFAULT_LAYOUT,
        validator=_check_layout,
    )
    commp: bool = option(
        "also compute PieceCIDs (and MD5) in the same read, for the Filecoin backfill",
        default=False,
    )


def export_name(tenant: str | None) -> str:
    """The file name of a tenant's space export under ``exports/``.

    ``default.car`` without a tenant, else ``tenant-<percent-encoded tenant>.car``;
    a tenant whose encoded name would pass 200 bytes (file systems stop at
    255) keeps the whole characters that fit 100 bytes and gets a hash of
    the whole:
    ``tenant-<start>-<16 hex digits of its SHA-256>.car``.
    """
    if not tenant:
        return "default.car"
    quoted = urllib.parse.quote(tenant, safe="")
    if len(quoted) > 200:
        digest = hashlib.sha256(tenant.encode("utf-8")).hexdigest()[:16]
        start = tenant[:100]
        while len(urllib.parse.quote(start, safe="")) > 100:
            start = start[:-1]  # whole characters, never half an escape
        quoted = f"{urllib.parse.quote(start, safe='')}-{digest}"
    return "tenant-" + quoted + ".car"


# ----------------------------------------------------------------------
# the recipe


def _same_root(root: str, text: str | None) -> bool:
    try:
        return text is not None and CID.decode(root).to_v1() == CID.decode(text).to_v1()
    except (FormatError, ValueError):
        return False


def _problem(m: MemberRecord | None) -> str | None:
    """Why a CAR's member is not a CAR verified block by block (``None``: it is, or it is pending).

    Also the Filecoin backfill's words for a CAR.
    """
    if m is None or m.state in (MemberState.PENDING, MemberState.UNVERIFIABLE):
        return None
    rec, why = m.record, m.reason
    if m.state is MemberState.VERIFIED:
        check = None if rec is None else rec.car_check
        if check == "partial":
            return "only partly verified as a CAR: some blocks use hash functions carmigrate cannot compute"
        return None if check == "verified" else f"not fully verified as a CAR: {check}"
    if m.state is MemberState.FAILED and rec is not None:
        if rec.offset is not None:
            why = f"{why} (at byte {rec.offset})"
        if rec.item.sha256 and "sha256" in str(why):  # it vouched for that digest
            why = f"not the bytes its CAR CID names: {why}"
    return why or m.state.value


def _problems(
    u: UnitRecord, shards: Sequence[tuple[str, MemberRecord | None]]
) -> list[str]:
    """Why a judged upload is not complete, in the recipe's words (none: it is)."""
    if not shards:
        return ["the listing names no shards"]
    bad = [f"shard {x}: {why}" for x, m in shards if (why := _problem(m)) is not None]
    roots = {
        m.record.car_root for _, m in shards if m and m.record and m.record.car_root
    }
    if bad or any(_same_root(u.unit.data["root"], r) for r in roots):
        return bad
    named = ", ".join(sorted(roots)) or "none"
    return [
        f"root {u.unit.data['root']} is not a root of any of its shards "
        f"(their CAR headers name: {named})"
    ]


def _unit_name(root: str, tenant: str | None) -> str:
    return f"upload:{tenant}/{root}" if tenant else f"upload:{root}"


def _uploads(listing: Listing) -> Iterator[LegacyUpload]:
    if isinstance(listing, (str, os.PathLike)):
        with open(listing, encoding="utf-8") as f:
            yield from parse_legacy_uploads(f)
        return
    it = iter(listing)
    first = next(it, None)
    if isinstance(first, LegacyUpload):
        yield first
        yield from (u for u in it if isinstance(u, LegacyUpload))
    elif first is not None:
        yield from parse_legacy_uploads(str(x) for x in itertools.chain([first], it))


def _units(o: W3upLegacyOptions) -> dict[str, Unit]:
    """One unit per upload of the listing, in listing order."""
    units: dict[str, Unit] = {}
    for seq, up in enumerate(_uploads(o.listing)):
        name = _unit_name(str(up.root), up.tenant)
        links = [str(s.link) for s in up.shards]
        data: dict[str, Any] = {
            "root": str(up.root),
            "name": up.name,
            "created": up.created,
            "dagSize": up.dag_size,
            "tenant": up.tenant,
            "seq": seq,
        }
        if name in units:  # named twice in one listing: the union of its shards
            data = dict(units[name].data)
            links = data["shards"] + [x for x in links if x not in data["shards"]]
        members = tuple(o.layout.format(cid=x) for x in links)
        data["shards"] = links
        units[name] = Unit(
            name=name, kind="upload", owner=up.tenant, members=members, data=data
        )
    return units


def _stat(store: Store, key: str) -> ObjectInfo | None:
    try:
        return store.stat(key)
    except ObjectNotFound:
        return None


def _car_link(key: str) -> str | None:
    try:
        return str(car_cid_from_key(key)) if key.lower().endswith(".car") else None
    except FormatError:
        return None


def _locate(
    needed: Mapping[str, str], dest: Store, buckets: Sequence[Store], layout: str
) -> list[dict[str, ObjectInfo]]:
    """Where each needed shard is: the destination, else the first bucket that has it."""
    by_key = {layout.format(cid=link): link for link in needed}
    if len(by_key) <= _STAT_AT_MOST:  # a few shards (a re-run): ask, don't list
        with ThreadPoolExecutor(16) as pool:
            infos = pool.map(lambda k: _stat(dest, k), by_key)
            pairs = zip(by_key.values(), infos, strict=True)
            in_dest = {link: i for link, i in pairs if i is not None}
    else:
        in_dest = {by_key[i.key]: i for i in dest.list() if i.key in by_key}
    found, taken = [in_dest], set(in_dest)
    for bucket in buckets:
        here: dict[str, ObjectInfo] = {}
        for info in bucket.list() if len(taken) < len(needed) else ():
            link = _car_link(info.key)
            if (
                link is not None
                and link in needed
                and link not in taken
                and (link not in here or info.key < here[link].key)
            ):
                here[link] = info
        taken |= here.keys()
        found.append(here)
    return found


def _item(link: str, info: ObjectInfo, dkey: str, cohort: str, copy: bool) -> PlanItem:
    digests = dict(ListingEntry.from_info(info).digests or {})
    cid = CID.decode(link)
    if cid.hash_code == 0x12 and len(cid.digest) == 32:
        digests["sha256"] = cid.digest.hex()  # what the CAR CID vouches for
    return PlanItem(
        source_key=info.key,
        destination_key=dkey,
        size=info.size,
        action=Action.COPY if copy else Action.VERIFY,
        stage="all",
        cohort=cohort,
        digests=digests,
        etag=info.etag,
        cold=info.cold,
        destination_size=None if copy else info.size,
    )


def _fair(items: Iterable[PlanItem]) -> list[PlanItem]:
    """Interleave tenants (cohorts) round robin; each tenant's items keep their order."""
    queues: dict[str, list[PlanItem]] = {}
    for item in items:
        queues.setdefault(item.cohort, []).append(item)
    lists = [queues[t] for t in sorted(queues)]
    depth = max((len(q) for q in lists), default=0)
    return [q[i] for i in range(depth) for q in lists if i < len(q)]


def _make_plans(o: W3upLegacyOptions, ctx: RecipeContext) -> RoundPlans:
    dest = ctx.store(o.destination, create=True)
    buckets = [ctx.store(b) for b in o.buckets]
    units = _units(o)
    done = ctx.ledger.member_states()
    needed: dict[str, str] = {}  # CAR CID -> tenant of the first upload needing it
    for u in units.values():
        for link, key in zip(u.data["shards"], u.members, strict=True):
            if done.get(key) is not MemberState.VERIFIED:
                needed.setdefault(link, u.owner or "")
    if not needed:
        return RoundPlans(units=tuple(units.values()))
    found = _locate(needed, dest, buckets, o.layout)
    checks = [Check.SIZE, Check.SHA256, Check.CAR]
    checks += [Check.COMMP, Check.MD5] if o.commp else []
    # every item is a CAR, whatever its key looks like
    policy = VerificationPolicy(checks=checks, car_pattern="^", key_cids=True)
    plans = []
    for k, (store, here) in enumerate(zip([dest, *buckets], found, strict=True)):
        items = [
            _item(link, here[link], o.layout.format(cid=link), tenant, copy=k > 0)
            for link, tenant in needed.items()
            if link in here
        ]
        if items:
            plans.append(
                Plan.from_items(
                    _fair(items),
                    source=store.url,
                    destination=dest.url,
                    stages=(Stage("all"),),
                    verification=policy,
                    limits=ctx.limits,
                )
            )
    looked = ", ".join(b.url for b in buckets)
    where = f"in no legacy bucket ({looked}) and not in the destination ({dest.url})"
    missing = {
        o.layout.format(cid=link): where
        for link in needed
        if not any(link in here for here in found)
    }
    return RoundPlans(plans=tuple(plans), units=tuple(units.values()), missing=missing)


def _write(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a synced temporary file, renamed."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _finish(o: W3upLegacyOptions, ctx: RecipeContext) -> dict[str, Any]:
    led = ctx.ledger
    done: dict[str | None, list[tuple[int, UploadRecords]]] = {}
    for u in list(led.units(kind="upload")):
        if u.verdict is Verdict.INCOMPLETE:
            continue
        d = u.unit.data
        pairs = zip(d["shards"], u.unit.members, strict=True)
        shards = [(x, led.member(key)) for x, key in pairs]
        problems = _problems(u, shards)
        if problems:
            led.set_verdict(u.name, Verdict.FAILED, problems)
            continue
        links = tuple(Shard(CID.decode(x)) for x in d["shards"])
        up = LegacyUpload(CID.decode(d["root"]), d["name"], d["created"], None, links)
        sizes = {CID.decode(x): m.record.item.size for x, m in shards if m and m.record}
        done.setdefault(u.unit.owner, []).append((d["seq"], w3up_records(up, sizes)))
    if ctx.dry_run:
        return {}
    lines = []
    for tenant in sorted(done, key=lambda t: t or ""):
        records = [rec for _, rec in sorted(done[tenant], key=lambda x: x[0])]
        for rec in records:
            line = {
                "tenant": tenant,
                "root": str(rec.root),
                "name": rec.name,
                "created": rec.created,
                "invocations": rec.invocations(),
                "shards": [{"link": str(s.link), "size": s.size} for s in rec.shards],
            }
            lines.append(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
        buf = io.BytesIO()
        write_space_export(records, buf)
        _write(ctx.output(f"exports/{export_name(tenant)}"), buf.getvalue())
    _write(ctx.output("records.jsonl"), "".join(lines).encode("utf-8"))
    # the shards this round verified: copied from a bucket, or checked in place
    moved: list[Action] = []
    for rp in next((r.plans for r in led.rounds() if r.n == ctx.round), ()):
        if os.path.exists(rp.ledger):  # else its plan has not started
            with Ledger(rp.ledger, readonly=True) as run:
                moved += [x.item.action for x in run.items(state=ItemState.VERIFIED)]
    return {
        "records": str(ctx.output("records.jsonl")),
        "exports": len(done),
        "shards_copied": moved.count(Action.COPY),
        "shards_in_place": moved.count(Action.VERIFY),
    }


W3UP_LEGACY: Final = register_recipe(
    Recipe(
        name="w3up-legacy",
        summary="migrate web3.storage legacy uploads to w3up",
        description=(
            "Read the legacy upload listing (JSON lines: cid, name, created, dagSize, "
            "optional tenant, and backupUrls or shards), find every shard CAR in the "
            "destination or the legacy buckets (in the order given), copy the missing "
            "ones and verify all of them (size, sha256, every block; commP with "
            "--commp), and write the w3up records of every upload whose shards all "
            "verified to WORK/records.jsonl and a space-export CAR per tenant to "
            "WORK/exports/. Run again with the same WORK to continue or to retry "
            "the failures. Exit 1 if uploads failed."
        ),
        options=W3upLegacyOptions,
        make_plans=_make_plans,
        finish=_finish,
        unit_label="uploads",
    )
)
"""The registered recipe: ``carmigrate recipe w3up-legacy``."""


def migrate_w3up_legacy(
    listing: Listing,
    buckets: Sequence[Store | str],
    destination: Store | str,
    work_dir: str | os.PathLike[str],
    *,
    layout: str = DEFAULT_LAYOUT,
    commp: bool = False,
    limits: Limits | None = None,
    executor: Executor | None = None,
    reporters: Sequence[Reporter] = (),
    store_options: Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> RecipeResult:
    """Migrate web3.storage legacy uploads to w3up: copy, verify, emit records.

    Runs the ``w3up-legacy`` recipe with
    [run_recipe][carmigrate.recipes.run_recipe]: a round a limit or a crash
    stopped is resumed, else a new round plans what is still to do. The work
    folder holds everything the migration knows (``ledger.db``, the rounds'
    plans and ledgers, ``records.jsonl``, ``exports/``).

    Args:
        listing: A JSON Lines file, its lines, or parsed uploads.
        buckets: The legacy buckets (stores or URLs), searched in this order.
        destination: The destination bucket (store or URL).
        work_dir: The work folder (created if missing).
        layout: Destination key of a shard, with ``{cid}`` for its CAR CID.
        commp: Also compute PieceCIDs (and MD5) in the same read.
        limits: The engine's limits (global and per-tenant) for every plan.
        executor: Where the engine runs items (default: its thread pool).
        reporters: Engine event reporters.
        store_options: Options for stores opened from URLs.
        dry_run: Plan only, nothing executed or written.

    Returns:
        The recipe's result: uploads per verdict (``units``), the failed
        ones with their reasons (``failures``), shards found nowhere
        (``missing``), and in ``outputs`` the records file (``records``),
        the tenants exported (``exports``) and the shards this round
        verified, copied (``shards_copied``) or in place
        (``shards_in_place``). Per upload and per shard: the work ledger.

    Raises:
        PlanError: A malformed listing line (nothing planned), a bad layout,
            or a store that cannot be opened.
        StorageError: Listing a store failed (nothing was planned).
    """
    options = W3upLegacyOptions(
        listing=listing,
        buckets=tuple(buckets),
        destination=destination,
        layout=layout,
        commp=commp,
    )
    return run_recipe(
        W3UP_LEGACY,
        options,
        work_dir,
        limits=limits,
        executor=executor,
        reporters=reporters,
        store_options=store_options,
        dry_run=dry_run,
    )
