"""BagIt backfill: replicate every registered bag version to new storage providers.

The case: a preservation storage service (the Wellcome Collection's) adds a
storage provider, and every bag it already holds must get a verified
replica there. The recipe ``bag-backfill`` reads the
[bag register][carmigrate.recipes.BagRegister] and, for each bag version
with fewer verified replicas than the policy asks for, goes through four
steps, all resumable from the work ledger:

1. **warm**: the engine restores objects of the primary in a cold tier
   (S3 Glacier and Deep Archive, Azure Archive) in batches of
   ``Limits.restore_batch`` and polls them (item state ``WARMING``); nothing
   is copied before it is readable, and an object whose restore expired
   before its copy is restored again (its copy finds it cold). The unit's
   data records how many of its objects were cold when planned and the
   earliest restore expiry seen.
2. **copy**: one engine plan per new provider, from the primary, every
   file of the manifest (fetched files at the path of the version that
   holds them; the tag files and tag manifests too): server-side where the
   destination can copy from the primary, else streamed through this
   process, the source read once (the Azure backend copies from a presigned
   URL of the source, block by block, where it can).
3. **verify**: every byte of every file is compared with the register's
   digest in the manifest's algorithm, never with a checksum of the
   transfer: by the engine while it copies (a streamed copy is never
   visible if it does not match; a server-side copy is read back), then the
   replica as a whole with every rule of
   [verify_bag][carmigrate.bagit.verify_bag] (fetched files read from the
   replica). Verified digests go to the
   [fixity cache][carmigrate.recipes.FixityCache].
4. **register**: a new revision of the storage manifest with the replica's
   location, written only after the replica verified; the old revision is
   kept.

Replica policy: a bag version is complete when it has ``replicas``
verified copies, the primary included (default: the primary and every
``--to`` provider). A kill at any point, then a re-run, resumes from the
ledgers: a verified object is never copied again, and an unverified
replica is never registered.

Each bag version is a unit of kind ``bag`` named
``bag:<space>/<external identifier>/v<version>``, owned by its space. Its
members are, for each provider it still needs, ``<provider>/<space>/<id>/<path>``
(the provider's name, then the object's key there). Its data:
``space``, ``external_identifier``, ``version``, ``targets`` (the
providers this round copies to), ``registered`` (providers with a
registered replica), ``cold`` and ``restore_expiry`` (warm step),
``files`` and ``bytes``, and ``suspect`` (files a bag rule found bad after
the engine verified them: planned again).

[bag_coverage][carmigrate.recipes.bag_coverage] says, per bag version and
provider, where things stand (``carmigrate recipe bag-coverage``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.bagit import verify_bag
from carmigrate.errors import ObjectExists, ObjectNotFound, PlanError
from carmigrate.migrate import (
    Action,
    MemberState,
    Overwrite,
    Plan,
    PlanItem,
    Stage,
    TransferPolicy,
    Unit,
    Verdict,
    VerificationPolicy,
    redact_url,
    store_bag_source,
    store_fetch_roots,
)
from carmigrate.recipes._bag_register import BagRegister, StorageLocation
from carmigrate.recipes._bag_replicas import (
    ReplicaStore,
    member_key,
    parse_targets,
    unit_name,
)
from carmigrate.recipes._fixity import FixityCache
from carmigrate.recipes._recipe import (
    Recipe,
    RecipeContext,
    RecipeResult,
    RoundPlans,
    option,
    register_recipe,
    run_recipe,
)
from carmigrate.storage import (
    COLD_STORAGE_CLASSES,
    ObjectInfo,
    Store,
)

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence
    from concurrent.futures import Executor

    from carmigrate.migrate import Limits, MemberRecord, Reporter
    from carmigrate.recipes._bag_register import StorageManifest

__all__ = ["BAG_BACKFILL", "BagBackfillOptions", "backfill_bags"]

_STATS: Final = 16  # stat calls in flight while planning


@attrs.frozen(kw_only=True)
class BagBackfillOptions:
    """The options of ``bag-backfill`` (each field is a command-line option).

    Attributes:
        register: The bag register's store (or URL).
        primary: The primary provider's store (or URL): where the register's
            primary locations are.
        to: The new providers, each ``NAME=URL``, a ``(name, store)`` pair
            or a [ReplicaStore][carmigrate.recipes.ReplicaStore], in the
            order they are filled.
        replicas: Verified copies a bag version needs, the primary included
            (``None``: the primary and every provider of ``to``).
        restore_days: Days a restored cold object stays readable.
        restore_tier: Retrieval tier (S3: ``Expedited``, ``Standard``, ``Bulk``).
        restore_poll: Seconds between checks on objects being restored.
        fixity: The fixity cache's store (or URL); default ``WORK/fixity``.

    Raises:
        PlanError: No provider, a bad or repeated provider name, or a
            replica count below 1.
    """

    register: Store | str = option(
        "the bag register (storage manifests)", metavar="URL"
    )
    primary: Store | str = option("the primary provider's store", metavar="URL")
    to: tuple[ReplicaStore, ...] = option(
        "a new provider, NAME=URL (repeatable; filled in this order)",
        flag="--to",
        repeat=True,
        metavar="NAME=URL",
        converter=parse_targets,
    )
    replicas: int | None = option(
        "verified copies a bag needs, the primary included (default: 1 + the --to count)",
        metavar="N",
        parse=int,
        default=None,
    )
    restore_days: int = option(
        "days a restored cold object stays readable (default 2)",
        metavar="D",
        parse=int,
        default=2,
    )
    restore_tier: str = option(
        "retrieval tier of restores (default Standard)",
        choices=("Expedited", "Standard", "Bulk", "High"),
        default="Standard",
    )
    restore_poll: float = option(
        "seconds between checks on objects being restored (default 60)",
        metavar="S",
        parse=float,
        default=60.0,
    )
    fixity: Store | str | None = option(
        "the fixity cache (default: WORK/fixity)", metavar="URL", default=None
    )

    def __attrs_post_init__(self) -> None:
        if not self.to:
            raise PlanError("give at least one --to provider")
        if self.replicas is not None and self.replicas < 1:
            raise PlanError(f"--replicas {self.replicas}: at least 1")

    @property
    def wanted(self) -> int:
        """Verified copies a bag version needs, the primary included."""
        return self.replicas if self.replicas is not None else 1 + len(self.to)


def _fixity(o: BagBackfillOptions, ctx: RecipeContext) -> FixityCache:
    if o.fixity is not None:
        return FixityCache(ctx.store(o.fixity, create=True))
    return FixityCache(ctx.store(str(ctx.output("fixity")), create=True))


def _stat(store: Store, key: str) -> ObjectInfo | None:
    try:
        return store.stat(key)
    except ObjectNotFound:
        return None


def _make_plans(o: BagBackfillOptions, ctx: RecipeContext) -> RoundPlans:
    """Units for every registered bag version; a plan per provider for what is not verified."""
    register = BagRegister(ctx.store(o.register))
    primary = ctx.store(o.primary)
    targets = {t.name: t for t in o.to}
    for t in o.to:
        ctx.store(t)  # a resumed round finds it by its URL
    old = {u.name: u.unit.data for u in ctx.ledger.units(kind="bag")}
    states = ctx.ledger.member_states()
    units: list[Unit] = []
    # per provider: member key -> (source key, size, digests)
    todo: dict[str, dict[str, tuple[str, int, dict[str, str]]]] = {}
    folders: dict[str, set[str]] = {}  # per provider: the bags' folders to list
    at = redact_url(primary.url).rstrip("/")
    for m in register.manifests():
        if m.location.url.rstrip("/") != at:
            raise PlanError(
                f"{m.bag_id}: its primary location is {m.location.url}, "
                f"not the --primary given ({at}); nothing was planned"
            )
        have = [r.provider for r in m.replicas]
        need = max(0, o.wanted - 1 - len(have))
        chosen = [n for n in targets if n not in have][:need]
        suspect = set(old.get(unit_name(m), {}).get("suspect", ()))
        members: list[str] = []
        for name in chosen:
            for f in m.all_files:
                key = member_key(name, m, f.path)
                members.append(key)
                if states.get(key) is not MemberState.VERIFIED or key in suspect:
                    folders.setdefault(name, set()).add(member_key(name, m, ""))
                    todo.setdefault(name, {})[key] = (
                        f"{m.location.prefix}/{f.path}",
                        f.size,
                        {m.algorithm: f.checksum},
                    )
        data = {
            "space": m.space,
            "external_identifier": m.external_identifier,
            "version": m.version,
            "algorithm": m.algorithm,
            "files": len(m.all_files),
            "bytes": m.bytes,
            "targets": chosen,
            "registered": have,
            "cold": 0,
            "restore_expiry": None,
            "suspect": sorted(suspect),
        }
        units.append(
            Unit(
                name=unit_name(m),
                kind="bag",
                owner=m.space,
                members=tuple(members),
                data=data,
            )
        )
    # the warm step's view: what is cold at the primary, and until when restored
    sources = sorted({s for items in todo.values() for s, _, _ in items.values()})
    infos = dict(zip(sources, _stats(primary, sources), strict=True))
    fixity = _fixity(o, ctx) if not ctx.dry_run else None
    plans: list[Plan] = []
    missing: dict[str, str] = {}
    algorithms = {a for items in todo.values() for _, _, d in items.values() for a in d}
    policy = VerificationPolicy(
        checks=["size", *sorted(algorithms)], car_pattern="(?!)", key_cids=False
    )
    transfer = TransferPolicy(
        server_side_copy=True,
        overwrite=Overwrite.IF_DIFFERENT,
        restore_days=o.restore_days,
        restore_tier=o.restore_tier,
        restore_poll=o.restore_poll,
    )
    for name, wanted in todo.items():
        target = targets[name]
        there = {}  # what the provider holds already (a kill, a failed copy)
        for folder in sorted(folders[name]):
            there.update({i.key: i for i in target.list(folder)})
        items = []
        for key, (skey, size, digests) in sorted(wanted.items()):
            info = infos.get(skey)
            if info is None:
                missing[key] = f"not at the primary ({redact_url(primary.url)}/{skey})"
                continue
            if info.size != size:
                missing[key] = (
                    f"the primary's {skey!r} has {info.size} bytes, the register {size}"
                )
                continue
            dest = there.get(key)
            if fixity is not None:
                fixity.forget(redact_url(target.inner.url), key[len(name) + 1 :])
            action = (
                Action.COPY
                if dest is None
                else Action.VERIFY
                if dest.size == size
                else Action.CONFLICT
            )
            items.append(
                PlanItem(
                    source_key=skey,
                    destination_key=key,
                    size=size,
                    action=action,
                    stage="all",
                    cohort=key.split("/", 2)[1],
                    digests=digests,
                    etag=info.etag,
                    cold=info.cold,
                    destination_size=None if dest is None else dest.size,
                )
            )
        if items:
            plans.append(
                Plan.from_items(
                    items,
                    source=primary.url,
                    destination=target.url,
                    stages=(Stage("all"),),
                    verification=policy,
                    transfer=transfer,
                    limits=ctx.limits,
                )
            )
    # record the warm step per bag version
    for i, u in enumerate(units):
        cold = 0
        expiry = None
        prefix = f"{u.data['space']}/{u.data['external_identifier']}/"
        for f_key in {m.split("/", 1)[1] for m in u.members}:
            info = infos.get(f_key)
            if info is None or not f_key.startswith(prefix):
                continue
            if info.storage_class in COLD_STORAGE_CLASSES:
                cold += 1
            if info.restore is not None and info.restore.expiry is not None:
                when = info.restore.expiry.isoformat()
                expiry = when if expiry is None or when < expiry else expiry
        units[i] = attrs.evolve(
            u, data={**u.data, "cold": cold, "restore_expiry": expiry}
        )
    ctx.notes["planned_files"] = sum(p.header.item_count for p in plans)
    return RoundPlans(plans=tuple(plans), units=tuple(units), missing=missing)


def _stats(store: Store, keys: Sequence[str]) -> list[ObjectInfo | None]:
    """``stat`` of each key (``None``: no such object), a few at a time."""
    with ThreadPoolExecutor(_STATS) as pool:
        return list(pool.map(lambda k: _stat(store, k), keys))


def _same(a: ObjectInfo, b: ObjectInfo) -> bool:
    """The same version of an object: nothing wrote it between two ``stat`` calls."""
    return (a.etag, a.mtime, a.size) == (b.etag, b.mtime, b.size)


def _restore_expiry(primary: Store, m: StorageManifest) -> str | None:
    """The earliest expiry of the restored copies of a bag version's cold objects."""
    infos = _stats(primary, [f"{m.location.prefix}/{f.path}" for f in m.all_files])
    found = [
        i.restore.expiry.isoformat()
        for i in infos
        if i is not None and i.restore is not None and i.restore.expiry is not None
    ]
    return min(found, default=None)


def _problem(m: MemberRecord | None, alg: str, checksum: str) -> str | None:
    """Why a replica's file is not proven to hold the register's bytes (``None``: it is)."""
    if m is None:
        return "not copied yet"
    if m.state is not MemberState.VERIFIED:
        state: str = m.state.value
        return state + (f": {m.reason}" if m.reason else "")
    got = None if m.record is None else m.record.digests.get(alg)
    if got is None:
        return f"verified, but no {alg} was computed over its bytes"
    if got != checksum:
        return f"{alg} {got}, the register says {checksum}"
    return None


def _finish(o: BagBackfillOptions, ctx: RecipeContext) -> dict[str, Any]:
    """Verify each fully copied replica as a bag, register it, and judge the policy."""
    register = BagRegister(ctx.store(o.register))
    targets = {t.name: t for t in o.to}
    led = ctx.ledger
    fixity = None if ctx.dry_run else _fixity(o, ctx)
    out: dict[str, Any] = {"registered": 0, "bag_rule_failures": 0}
    out["planned_files"] = ctx.notes.get("planned_files", 0)
    changed: dict[str, dict[str, Any]] = {}
    for u in list(led.units(kind="bag")):
        d = dict(u.unit.data)
        m = register.get(d["space"], d["external_identifier"], d["version"])
        problems: list[str] = []
        suspect: list[str] = []
        for name in d.get("targets", []):
            if m.replica(name) is not None:
                continue
            bad = [
                f"{name}: {f.name}: {why}"
                for f in m.all_files
                if (
                    why := _problem(
                        led.member(member_key(name, m, f.path)), m.algorithm, f.checksum
                    )
                )
                is not None
            ]
            if bad:
                problems += bad
                continue
            if ctx.dry_run:
                continue
            replica = targets[name].inner
            location = StorageLocation(
                provider=name, url=redact_url(replica.url), prefix=m.location.prefix
            )
            keys = [f"{m.location.prefix}/{f.path}" for f in m.all_files]
            seen = _stats(replica, keys)  # the versions the bag check reads
            result = verify_bag(
                store_bag_source(replica, f"{m.location.prefix}/v{m.version}"),
                external_identifier=m.external_identifier,
                fetch_roots=store_fetch_roots({m.location.url: replica})
                | store_fetch_roots({location.url: replica}),
            )
            if not result.valid:
                out["bag_rule_failures"] += 1
                by_name = {f.name: f.path for f in m.all_files}
                for fail in result.failures:
                    problems.append(f"{name}: {fail.rule}: {fail.message}")
                    if fail.path in by_name:
                        suspect.append(member_key(name, m, by_name[fail.path]))
                continue
            assert fixity is not None
            now = _stats(replica, keys)
            for f, was, is_ in zip(m.all_files, seen, now, strict=True):
                if was is not None and is_ is not None and _same(was, is_):
                    fixity.remember(location.url, was, {m.algorithm: f.checksum})
            try:
                m = register.add_replica(m, location)
            except ObjectExists:  # another writer added a revision: add to that
                m = register.add_replica(m, location)
            out["registered"] += 1
        if d.get("cold") and d.get("restore_expiry") is None and not ctx.dry_run:
            d["restore_expiry"] = _restore_expiry(ctx.store(o.primary), m)
        have = [r.provider for r in m.replicas]
        copies = 1 + len(have)
        d |= {"registered": have, "suspect": sorted(suspect), "revision": m.revision}
        changed[u.name] = d
        if copies >= o.wanted:
            led.set_verdict(u.name, Verdict.COMPLETE)
        elif problems and (suspect or u.verdict is not Verdict.INCOMPLETE):
            led.set_verdict(u.name, Verdict.FAILED, problems)
        elif u.verdict is Verdict.COMPLETE or not d.get("targets"):
            why = (
                f"{copies} verified copies of the {o.wanted} wanted; "
                f"no other provider given (providers: {', '.join(targets)})"
            )
            led.set_verdict(u.name, Verdict.FAILED, [*problems, why])
    if changed and not ctx.dry_run:
        led.set_unit_data(changed)
    return out


BAG_BACKFILL: Final[Recipe[BagBackfillOptions]] = register_recipe(
    Recipe(
        name="bag-backfill",
        summary="replicate every registered BagIt bag to new storage providers, verified",
        description=(
            "For every bag version of the register (--register) with fewer verified "
            "copies than --replicas, restore its objects from cold tiers at the primary "
            "(--primary) in batches, copy them to each new provider (--to NAME=URL; "
            "server-side where possible), compare every byte with the register's "
            "digests, verify the replica as a bag, and only then add it to a new "
            "revision of the bag's storage manifest. Run again with the same WORK to "
            "resume or retry; verified objects are never copied again. "
            "Exit 1 if bags failed."
        ),
        options=BagBackfillOptions,
        make_plans=_make_plans,
        finish=_finish,
        unit_label="bags",
    )
)
"""The registered recipe: ``carmigrate recipe bag-backfill``."""


def backfill_bags(
    register: Store | str,
    primary: Store | str,
    to: Sequence[Any],
    work_dir: str | os.PathLike[str],
    *,
    replicas: int | None = None,
    limits: Limits | None = None,
    executor: Executor | None = None,
    reporters: Sequence[Reporter] = (),
    store_options: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    **options: Any,
) -> RecipeResult:
    """Replicate every registered bag version to new providers: warm, copy, verify, register.

    [run_recipe][carmigrate.recipes.run_recipe] of
    [BAG_BACKFILL][carmigrate.recipes.BAG_BACKFILL] (see the module docs).
    A round a limit or a crash stopped is resumed; else a new round plans
    what is still to do.

    Args:
        register: The bag register's store (or URL).
        primary: The primary provider's store (or URL).
        to: The new providers: ``"NAME=URL"``, ``(name, store)`` or
            [ReplicaStore][carmigrate.recipes.ReplicaStore] values.
        work_dir: The work folder.
        replicas: Verified copies a bag version needs, the primary included.
        limits: The engine's limits (``restore_batch``: restores asked at once).
        executor: Where the engine runs items.
        reporters: Engine event reporters.
        store_options: Options for stores opened from URLs.
        dry_run: Plan only.
        **options: The other fields of
            [BagBackfillOptions][carmigrate.recipes.BagBackfillOptions]
            (``restore_days``, ``restore_tier``, ``restore_poll``, ``fixity``).

    Returns:
        The recipe's result: bag versions per verdict (``units``), files
        found nowhere (``missing``), and in ``outputs``: ``registered``
        (replicas registered by this run), ``bag_rule_failures`` and
        ``planned_files``.

    Raises:
        PlanError: Bad options, an unreadable register, or a bag version whose
            primary location is not the primary given (nothing is planned).
        StorageError: A store failed while planning (nothing was planned).
    """
    o = BagBackfillOptions(
        register=register, primary=primary, to=tuple(to), replicas=replicas, **options
    )
    return run_recipe(
        BAG_BACKFILL,
        o,
        work_dir,
        limits=limits,
        executor=executor,
        reporters=reporters,
        store_options=store_options,
        dry_run=dry_run,
    )
