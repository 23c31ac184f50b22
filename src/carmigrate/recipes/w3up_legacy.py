"""web3.storage legacy uploads → w3up, a recipe on the recipe contract.

Input: the legacy upload listing (JSON Lines, see
[parse_legacy_uploads][carmigrate.recipes.parse_legacy_uploads]), legacy
buckets and the destination bucket (w3up's carpark). Each upload is a unit
of the work ledger whose members are its shards' destination keys
(``layout.format(cid=<CAR CID>)``). A round finds every shard not verified
yet in the destination first, then in the legacy buckets in the order given
(by the CAR CID a key names in either scheme, ``…/<CAR CID>.car`` or
``…/<base32 multihash>.car``), and plans it from the first place that has
it: ``VERIFY`` in place (the "``store/add`` succeeds at once" case: read,
never written) or ``COPY`` from a bucket. A shard found nowhere is missing
and fails its uploads. Every item vouches for the SHA-256 its CAR CID
names; the policy is size + sha256 + car (every block re-hashed), plus
commP and MD5 with ``commp=True`` (for
[backfill_filecoin][carmigrate.recipes.backfill_filecoin], which then reads
nothing again). Cohorts are tenants, interleaved round robin for the
engine's order and its per-tenant limits.

An upload is complete only if all its shards verified with every CAR block
checked *and* its root is a root of one of its shards' CAR headers; else it
fails with each shard's reason. ``records.jsonl`` gets the ``store/add``
and ``upload/add`` invocations of every complete upload (the legacy name as
a fact), and ``exports/`` a space-export CAR per tenant.
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
from pathlib import Path
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
    PlanSummary,
    RunResult,
    Stage,
    Unit,
    Verdict,
    VerificationPolicy,
    serde,
)
from carmigrate.recipes._recipe import (
    WORK_LEDGER,
    Recipe,
    RecipeContext,
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

    from carmigrate.migrate import Limits, MemberRecord, Reporter, UnitRecord
    from carmigrate.storage import ObjectInfo, Store

    Listing = str | os.PathLike[str] | Iterable[str] | Iterable[LegacyUpload]

__all__ = [
    "DEFAULT_LAYOUT",
    "ShardOutcome",
    "UploadOutcome",
    "W3UP_LEGACY",
    "W3upLegacyJournal",
    "W3upLegacyOptions",
    "W3upLegacyResult",
    "export_name",
    "migrate_w3up_legacy",
]

DEFAULT_LAYOUT: Final = "{cid}/{cid}.car"
"""Destination key of a shard: w3up's carpark layout, ``<CAR CID>/<CAR CID>.car``."""

_STAT_AT_MOST: Final = 2000  # shards to find: ask the destination for each, not list it
_SHARD: Final = {MemberState.VERIFIED: "verified", MemberState.MISSING: "missing"}
_SHARD_FAILED: Final = (MemberState.FAILED, MemberState.CONFLICT)
_UPLOAD: Final = {Verdict.COMPLETE: "complete", Verdict.FAILED: "failed"}


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


@attrs.frozen(kw_only=True)
class ShardOutcome:
    """Where one shard (CAR) stands.

    Attributes:
        link: The CAR CID.
        status: ``"verified"`` (size, SHA-256 and every block checked),
            ``"failed"``, ``"missing"`` (found nowhere) or ``"pending"``.
        reason: Why it failed or is missing.
        size: Its size in bytes, once known.
        source: URL of the store it was read from (the destination, in place).
        source_key: Its key there.
        destination_key: Its key in the destination.
        copied: This recipe wrote it (``False``: it was there already).
        car_root: The first root of its CAR header.
        piece_cid: PieceCID v1, if commP was computed.
        piece_cid_v2: PieceCID v2, if commP was computed.
        round: The round that last planned it.
    """

    link: CID
    status: str
    reason: str | None = None
    size: int | None = None
    source: str | None = None
    source_key: str | None = None
    destination_key: str | None = None
    copied: bool = False
    car_root: str | None = None
    piece_cid: str | None = None
    piece_cid_v2: str | None = None
    round: int | None = None


@attrs.frozen(kw_only=True)
class UploadOutcome:
    """Where one legacy upload stands.

    Attributes:
        root: The upload's root CID.
        tenant: Its tenant, if the listing named one.
        name: The legacy name.
        created: The legacy creation time.
        status: ``"complete"`` (records emitted), ``"failed"`` or
            ``"pending"``.
        reason: Why it is not complete: each failed or missing shard with
            its reason, a root in none of its shards, or what is pending.
        shards: Its shards, in listing order.
    """

    root: CID
    tenant: str | None
    name: str
    created: str | None
    status: str
    reason: str | None
    shards: tuple[ShardOutcome, ...]

    def records(self) -> UploadRecords:
        """The w3up records of a complete upload.

        Raises:
            PlanError: The upload is not complete (nothing is emitted for an
                upload with a missing, bad or unverified shard).
        """
        if self.status != "complete":
            msg = f"upload {self.root} is {self.status}: {self.reason or 'not done'}"
            raise PlanError(msg)
        shards = tuple(Shard(s.link) for s in self.shards)
        upload = LegacyUpload(self.root, self.name, self.created, None, shards)
        sizes = {s.link: s.size for s in self.shards if s.size is not None}
        return w3up_records(upload, sizes)


@attrs.frozen(kw_only=True)
class W3upLegacyResult:
    """What one run of [migrate_w3up_legacy][carmigrate.recipes.migrate_w3up_legacy] did (or, dry, would do).

    Attributes:
        dry_run: Nothing was executed or written.
        round: The round planned or resumed (``None``: nothing to do).
        resumed: The round was left open by an earlier run and continued.
        plans: The summaries of the round's plans (in-place plan first).
        runs: The engine runs of this call, in plan order.
        complete: Whether the round finished (every plan ran to the end).
        uploads: Uploads in the work ledger.
        uploads_complete: Uploads with records.
        uploads_failed: Uploads that failed ([W3upLegacyJournal][carmigrate.recipes.W3upLegacyJournal]
            says why).
        uploads_pending: Uploads not decided yet.
        shards_planned: Shards this round planned.
        shards_copied: Of those, written to the destination.
        shards_in_place: Verified where they already were in the destination.
        shards_failed: Failed in this round.
        shards_missing: Found nowhere.
        bytes_copied: Bytes written to the destination in this call.
        records_path: The records file (JSON Lines), if written.
        tenant_waits: Seconds each tenant's items were held back by the
            per-tenant limits.
    """

    dry_run: bool
    round: int | None
    resumed: bool
    plans: tuple[PlanSummary, ...]
    runs: tuple[RunResult, ...]
    complete: bool
    uploads: int
    uploads_complete: int
    uploads_failed: int
    uploads_pending: int
    shards_planned: int
    shards_copied: int
    shards_in_place: int
    shards_failed: int
    shards_missing: int
    bytes_copied: int
    records_path: str | None
    tenant_waits: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        data: dict[str, Any] = serde.unstructure(self)
        return data

    def to_markdown(self) -> str:
        """A short report for people: the plans, the counts and the failures."""
        what = "Dry run" if self.dry_run else "Run"
        what += f" of round {self.round}" if self.round else ": nothing to do"
        lines = [
            what + (" (resumed)" if self.resumed else "") + ".",
            "",
            f"Uploads: {self.uploads} ({self.uploads_complete} complete, "
            f"{self.uploads_failed} failed, {self.uploads_pending} pending).",
            f"Shards this round: {self.shards_planned} planned, {self.shards_copied} "
            f"copied, {self.shards_in_place} verified in place, {self.shards_failed} "
            f"failed, {self.shards_missing} missing; {self.bytes_copied} bytes copied.",
            *(
                f"- plan from {p.source}: {p.items} items, {p.bytes} bytes, "
                f"{p.transfer_items} to copy, {p.compare_items} to check in place"
                for p in self.plans
            ),
        ]
        return "\n".join(lines) + "\n"


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
# shards and uploads, from the work ledger


def _same_root(root: CID, text: str | None) -> bool:
    try:
        return text is not None and root.to_v1() == CID.decode(text).to_v1()
    except (FormatError, ValueError):
        return False


def _shard(
    link: str, key: str, m: MemberRecord | None, source: str | None = None
) -> ShardOutcome:
    """A shard's outcome from its member, in the recipe's words."""
    if m is None or m.record is None:
        status = "pending" if m is None else _SHARD.get(m.state, "pending")
        reason, rnd = (None, None) if m is None else (m.reason, m.round)
        return ShardOutcome(
            link=CID.decode(link),
            status=status,
            reason=reason,
            destination_key=key,
            round=rnd,
        )
    rec, reason = m.record, m.reason
    status = "failed" if m.state in _SHARD_FAILED else _SHARD.get(m.state, "pending")
    if status == "verified" and rec.car_check != "verified":
        status, reason = "failed", f"not fully verified as a CAR: {rec.car_check}"
    if m.state is MemberState.FAILED and rec.offset is not None:
        reason = f"{reason} (at byte {rec.offset})"
    if m.state is MemberState.FAILED and rec.item.sha256 and "sha256" in str(reason):
        reason = f"not the bytes its CAR CID names: {reason}"  # it vouched for it
    return ShardOutcome(
        link=CID.decode(link),
        status=status,
        reason=reason,
        size=rec.item.size,
        source=source,
        source_key=rec.item.source_key,
        destination_key=key,
        copied=rec.created,
        car_root=rec.car_root,
        piece_cid=rec.piece_cid,
        piece_cid_v2=rec.piece_cid_v2,
        round=m.round,
    )


def _upload(u: UnitRecord, shards: Iterable[ShardOutcome]) -> UploadOutcome:
    data = u.unit.data
    return UploadOutcome(
        root=CID.decode(data["root"]),
        tenant=u.unit.owner,
        name=data["name"],
        created=data["created"],
        status=_UPLOAD.get(u.verdict, "pending"),
        reason="; ".join(u.reasons) or None,
        shards=tuple(shards),
    )


def _problems(up: UploadOutcome) -> list[str]:
    """Why a judged upload is not complete, in the recipe's words (none: it is)."""
    if not up.shards:
        return ["the listing names no shards"]
    bad = [
        f"shard {s.link}: {s.reason or s.status}"
        for s in up.shards
        if s.status in ("failed", "missing")
    ]
    if bad or any(_same_root(up.root, s.car_root) for s in up.shards):
        return bad
    named = ", ".join(sorted({s.car_root for s in up.shards if s.car_root})) or "none"
    return [
        f"root {up.root} is not a root of any of its shards "
        f"(their CAR headers name: {named})"
    ]


def _pairs(u: UnitRecord) -> Iterator[tuple[str, str]]:
    """(CAR CID, destination key) of each shard of an upload."""
    return zip(u.unit.data["shards"], u.unit.members, strict=True)


class W3upLegacyJournal:
    """What the work ledger of a w3up legacy migration knows, per upload and per shard.

    Read-only: [migrate_w3up_legacy][carmigrate.recipes.migrate_w3up_legacy]
    (or ``carmigrate recipe w3up-legacy``) alone writes the work ledger.

    State: the work ledger, and the round ledgers opened to name a shard's
    source, all read-only.

    Args:
        work_dir: The work folder of the migration.

    Raises:
        PlanError: There is no work ledger in ``work_dir``.
    """

    def __init__(self, work_dir: str | os.PathLike[str]) -> None:
        path = Path(work_dir) / WORK_LEDGER
        if not path.exists():
            msg = f"no w3up legacy journal in {os.fspath(work_dir)!r}"
            raise PlanError(msg)
        self._ledger = Ledger(path, readonly=True)
        self._rounds: dict[str, Ledger | None] = {}

    def close(self) -> None:
        """Close the ledgers. Idempotent."""
        for led in [self._ledger, *self._rounds.values()]:
            if led is not None:
                led.close()
        self._rounds.clear()

    def __enter__(self) -> W3upLegacyJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _shard(self, link: str, key: str) -> ShardOutcome:
        m = self._ledger.member(key)
        plans = (
            [] if m is None or m.round is None else self._ledger.round(m.round).plans
        )
        for rp in plans:
            if rp.ledger not in self._rounds:
                there = os.path.exists(rp.ledger)
                self._rounds[rp.ledger] = (
                    Ledger(rp.ledger, readonly=True) if there else None
                )
            led = self._rounds[rp.ledger]
            if led is not None and led.find(key) is not None:
                return _shard(link, key, m, rp.source)
        return _shard(link, key, m)

    def shards(self, *, status: str | None = None) -> Iterator[ShardOutcome]:
        """Every shard (or those with ``status``), by CAR CID."""
        keys = dict(p for u in self._ledger.units(kind="upload") for p in _pairs(u))
        shards = (self._shard(link, keys[link]) for link in sorted(keys))
        return (s for s in shards if status is None or s.status == status)

    def uploads(
        self, *, status: str | None = None, tenant: str | None = None
    ) -> Iterator[UploadOutcome]:
        """Uploads in listing order, optionally only those with ``status`` or of ``tenant`` (``""``: none)."""
        units = [
            u
            for u in self._ledger.units(kind="upload")
            if status in (None, _UPLOAD.get(u.verdict, "pending"))
            and tenant in (None, u.unit.owner or "")
        ]
        for u in sorted(units, key=lambda u: (u.unit.data["seq"], u.name)):
            yield _upload(u, (self._shard(*p) for p in _pairs(u)))

    def upload(
        self, root: CID | str, tenant: str | None = None
    ) -> UploadOutcome | None:
        """One upload by root (and tenant), if the work ledger has it."""
        u = self._ledger.unit(_unit_name(str(root), tenant))
        return None if u is None else _upload(u, (self._shard(*p) for p in _pairs(u)))

    def counts(self) -> dict[str, int]:
        """Uploads per status."""
        counts = self._ledger.unit_counts().items()
        return {_UPLOAD.get(v, "pending"): n for v, n in counts}

    def tenants(self) -> list[str | None]:
        """The tenants with complete uploads (``None`` for uploads without one), sorted."""
        done = self._ledger.units(kind="upload", verdict=Verdict.COMPLETE)
        return sorted({u.unit.owner for u in done}, key=lambda t: t or "")

    def records(self, tenant: str | None = None) -> list[UploadRecords]:
        """The records of a tenant's complete uploads (or those without a tenant), in listing order."""
        done = self.uploads(status="complete", tenant=tenant or "")
        return [u.records() for u in done]

    def ledgers(self) -> list[str]:
        """The ledger files of every round, oldest first (input for the Filecoin backfill)."""
        rounds = self._ledger.rounds()
        return [p.ledger for r in rounds for p in r.plans if os.path.exists(p.ledger)]


# ----------------------------------------------------------------------
# the recipe


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
    done: dict[str | None, list[tuple[int, UploadOutcome]]] = {}
    for u in list(led.units(kind="upload")):
        if u.verdict is Verdict.INCOMPLETE:
            continue
        up = _upload(u, (_shard(x, key, led.member(key)) for x, key in _pairs(u)))
        problems = _problems(up)
        if problems:
            led.set_verdict(u.name, Verdict.FAILED, problems)
        else:
            done.setdefault(up.tenant, []).append((u.unit.data["seq"], up))
    if ctx.dry_run:
        return {}
    lines = []
    for tenant in sorted(done, key=lambda t: t or ""):
        records = [up.records() for _, up in sorted(done[tenant], key=lambda x: x[0])]
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
    return {"records": str(ctx.output("records.jsonl")), "exports": len(done)}


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
) -> W3upLegacyResult:
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

    Raises:
        PlanError: A malformed listing line (nothing planned), a bad layout,
            or a store that cannot be opened.
        StorageError: Listing a store failed (nothing was planned).
    """
    kw: dict[str, Any] = {"layout": layout, "commp": commp}
    options = W3upLegacyOptions(
        listing=listing, buckets=tuple(buckets), destination=destination, **kw
    )
    stores = [s for s in (*buckets, destination) if not isinstance(s, str)]
    kw = {"limits": limits, "executor": executor, "reporters": reporters}
    kw |= {"stores": stores, "store_options": store_options, "dry_run": dry_run}
    r = run_recipe(W3UP_LEGACY, options, work_dir, **kw)
    shards = dict.fromkeys(("copied", "in_place", "failed"), 0)
    waits: dict[str, float] = {}
    for p, run in zip(r.plans, r.runs, strict=False):
        shards["copied" if p.transfer_items else "in_place"] += run.counts.get(
            ItemState.VERIFIED, 0
        )
        shards["failed"] += sum(
            run.counts.get(s, 0) for s in (ItemState.FAILED, ItemState.CONFLICT)
        )
        for tenant, seconds in run.tenant_waits.items():
            waits[tenant] = waits.get(tenant, 0.0) + seconds
    done = len(r.runs) == len(r.plans) and all(x.stop_reason == "done" for x in r.runs)
    units = {v: r.units.get(v.value, 0) for v in Verdict}
    return W3upLegacyResult(
        dry_run=dry_run,
        round=r.round,
        resumed=r.resumed,
        plans=r.plans,
        runs=r.runs,
        complete=r.round is None or (done and not dry_run),
        uploads=sum(units.values()),
        uploads_complete=units[Verdict.COMPLETE],
        uploads_failed=units[Verdict.FAILED],
        uploads_pending=units[Verdict.INCOMPLETE],
        shards_planned=sum(p.items for p in r.plans),
        shards_copied=shards["copied"],
        shards_in_place=shards["in_place"],
        shards_failed=shards["failed"],
        shards_missing=r.missing,
        bytes_copied=sum(x.bytes for x in r.runs),
        records_path=r.outputs.get("records"),
        tenant_waits=tuple(sorted(waits.items())),
    )
