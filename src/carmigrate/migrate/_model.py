"""The values a plan is made of: actions, states, policies, rules and items.

Everything here is a frozen attrs class or an enum, serialised by the one
converter in [carmigrate.migrate.serde][]. Keep field annotations real (not
under ``TYPE_CHECKING``): cattrs resolves them at run time.
"""

from __future__ import annotations

import enum
import fnmatch
import re
import uuid
from collections.abc import Mapping
from typing import Any, Final

import attrs

from carmigrate.digests import DigestMap, algorithm_names, canonical_name, is_registered
from carmigrate.errors import PlanError
from carmigrate.migrate._schema import ColumnKind, Record, column

__all__ = [
    "FORMAT_VERSION",
    "Action",
    "Check",
    "CohortRule",
    "IdKind",
    "IdRule",
    "ItemOutcome",
    "ItemState",
    "Limits",
    "Overwrite",
    "PlanHeader",
    "PlanItem",
    "Stage",
    "StageTotal",
    "TransferPolicy",
    "VerificationPolicy",
]

FORMAT_VERSION: Final = 2
"""Version of the plan file format (line 1 of every plan file names it).

Version 2 (carmigrate 0.2) holds an item's digests as one ``digests`` object
(``{"md5": …, "sha512": …}``) where version 1 had ``md5`` and ``sha256`` keys;
version 1 files are still read (their keys become ``digests``)."""


class Action(enum.Enum):
    """What the plan does with one key (decided by the diff of the listings).

    Attributes:
        COPY: Missing at the destination: copy it.
        SKIP: Present at the destination and proven equal from the listings
            (same size and an equal digest both sides vouch for).
        VERIFY: Present with the same size, but nothing in the listings proves
            it equal: the executor compares content at run time.
        CONFLICT: Present and different. Never overwritten unless the
            transfer policy says ``overwrite=IF_DIFFERENT``.
        EXTRA: Only at the destination. Reported; a plan run never deletes it.
        UNMIGRATABLE: At the source but not migratable, and listed so nothing
            is left out silently: an entry the source lists but cannot offer
            as an object (a symlink, a FIFO, a name that is not UTF-8, a
            reserved ``.carmigrate.*`` name, a key that breaks the key
            rules), or a destination key that can never be written. Its
            ``reason`` says which; its key is the entry's name as text. Never
            run; a migration with such items is not complete.
    """

    COPY = "copy"
    SKIP = "skip"
    VERIFY = "verify"
    CONFLICT = "conflict"
    EXTRA = "extra"
    UNMIGRATABLE = "unmigratable"

    # Members are singletons compared by identity; the C-level identity hash
    # keeps the planner's per-item dict lookups cheap (Enum's own hashes the
    # name in Python).
    __hash__ = object.__hash__


class ItemState(enum.Enum):
    """Where one plan item stands in the ledger.

    ``PENDING → WARMING → COPYING → COPIED → VERIFIED`` is the full path;
    most items go ``PENDING → COPYING → VERIFIED`` because checks run while
    the bytes stream. Terminal outcomes: ``VERIFIED``, ``UNVERIFIABLE``,
    ``SKIPPED``, ``CONFLICT``, ``ROLLED_BACK``; ``FAILED`` is retried by
    ``resume`` when the failure was transient.

    Attributes:
        PENDING: Not started (or reset after an interrupted attempt).
        WARMING: Waiting for a restore from a cold storage tier.
        COPYING: Handed to a worker. After a crash, ``resume`` redoes it from
            scratch: writes are atomic, so nothing partial is visible.
        COPIED: At the destination, but not yet checked (a server-side copy
            whose check read did not finish). ``resume`` only checks it.
        VERIFIED: At the destination and proven equal to the source by at
            least one independent check, with no check failing.
        UNVERIFIABLE: At the destination and no check failed, but nothing
            independent of the copy itself could be compared (no digest from
            the source, no CAR, no content-addressed key). Never counted as
            verified; [verify][carmigrate.migrate.verify] with
            ``reread_source=True`` can promote it.
        FAILED: Did not complete; ``reason``, ``attempts`` and ``offset`` say
            why and where.
        SKIPPED: Nothing to do (``SKIP`` and ``EXTRA`` items).
        CONFLICT: Different at the destination and left alone.
        ROLLED_BACK: Created by this plan and deleted again by
            [rollback][carmigrate.migrate.rollback].
        UNMIGRATABLE: An ``UNMIGRATABLE`` item: never run, and the migration
            is not complete while any exists (the source must not be
            decommissioned: these objects are not at the destination).
    """

    PENDING = "pending"
    WARMING = "warming"
    COPYING = "copying"
    COPIED = "copied"
    VERIFIED = "verified"
    UNVERIFIABLE = "unverifiable"
    FAILED = "failed"
    SKIPPED = "skipped"
    CONFLICT = "conflict"
    ROLLED_BACK = "rolled_back"
    UNMIGRATABLE = "unmigratable"

    __hash__ = object.__hash__


class Check(enum.Enum):
    """Names of checks a policy may ask for (any registered digest name works too).

    A policy's checks are strings: ``"size"``, ``"car"``, ``"commp"`` and the
    name of any digest in [carmigrate.digests][] (``"md5"``, ``"sha1"``,
    ``"sha256"``, ``"sha512"``, ``"adler32"``, ``"blake3"``, ...). These
    members are the common ones, for code that prefers constants.

    Attributes:
        SIZE: The written length equals the planned size (always cheap).
        MD5: Compare MD5 with the source's when the source vouches for one
            (never a multipart ETag).
        SHA256: Compare SHA-256 with the source's, or with a
            content-addressed key. SHA-256 of what was written is always
            computed and recorded (rollback needs it).
        CAR: For keys the policy treats as CARs, re-hash every block against
            its CID while the bytes stream; a mismatch aborts the write.
        COMMP: For CARs, compute the Filecoin piece commitment (PieceCID v1
            and v2) of the bytes and record it.
    """

    SIZE = "size"
    MD5 = "md5"
    SHA256 = "sha256"
    CAR = "car"
    COMMP = "commp"


_NON_DIGEST_CHECKS: Final = frozenset({"size", "car", "commp"})


class Overwrite(enum.Enum):
    """When an existing destination object may be replaced.

    Attributes:
        NEVER: Never; different objects are recorded as ``CONFLICT``.
        IF_DIFFERENT: Replace objects whose content differs from the source.
            A replaced object is never deleted by rollback (what it held
            before is gone).
    """

    NEVER = "never"
    IF_DIFFERENT = "if_different"


class IdKind(enum.Enum):
    """How [IdRule][carmigrate.migrate.IdRule] derives new ids.

    Attributes:
        KEEP: The new id is the old one.
        PREFIX: ``prefix + id``, e.g. ownCloud 10 → oCIS ids of the form
            ``<instance>$<storage>!<fileid>``.
        OFFSET: ``id + offset`` for numeric ids (merging deployments whose
            integer keys would collide, as in oSPARC).
        UUID: ``uuid5(namespace, id)``: fresh, stable ids; the namespace is
            recorded in the plan, so the map can be recomputed from it.
    """

    KEEP = "keep"
    PREFIX = "prefix"
    OFFSET = "offset"
    UUID = "uuid"


def _check_name(value: object, what: str) -> str:
    if isinstance(value, Check):
        return value.value
    if not isinstance(value, str):
        raise TypeError(f"{what} must be names (strings), not {value!r}")
    name = value.strip().lower()
    if name in _NON_DIGEST_CHECKS:
        return name
    if is_registered(name):
        return canonical_name(name)
    raise PlanError(
        f"unknown check {value!r} in {what}; use size, car, commp or a digest: "
        f"{', '.join(algorithm_names())}"
    )


def _names(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, (str, Check)):
        value = (value,)
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise TypeError(f"{what} must be a collection of names, not {value!r}")
    return tuple(sorted({_check_name(v, what) for v in value}))


def _sorted_checks(value: object) -> tuple[str, ...]:
    return _names(value, "checks")


def _digest_names(value: object) -> tuple[str, ...]:
    names = _names(value, "record")
    for n in names:
        if n in _NON_DIGEST_CHECKS:
            raise PlanError(f"record names digests; {n!r} is a check, not a digest")
    return names


def _compile(pattern: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise PlanError(
            f"{what} {pattern!r} is not a valid regular expression: {e}"
        ) from e


def _valid_regex(
    instance: object, attribute: attrs.Attribute[Any], value: str | None
) -> None:
    if value is not None:
        _compile(value, attribute.name)


@attrs.frozen(kw_only=True)
class VerificationPolicy:
    """Which checks an item gets, which digests are recorded, and which items are CARs.

    An item ends ``VERIFIED`` only if at least one check compared the bytes
    with a truth independent of the copy: a digest the source vouches for
    (its listing, ``stat`` or the plan), the digest named by a
    content-addressed key, every block of a CAR against its CID (together
    with the size), or, in [verify][carmigrate.migrate.verify], a second read
    of the source. Otherwise it ends ``UNVERIFIABLE``.

    Every digest is computed in the one read of the object. A digest named
    in ``checks`` is computed when it has something to be compared with (the
    source vouches for it, or it was recorded earlier) and for every CAR
    (deal manifests list a CAR's MD5); a digest named in ``record`` is
    computed and recorded for every object; SHA-256 is always computed and
    recorded (rollback and the content checks need it).

    Attributes:
        checks: The checks to run: ``"size"``, ``"car"``, ``"commp"`` and any
            digest name of [carmigrate.digests][] (see
            [Check][carmigrate.migrate.Check]). Spellings are normalised
            (``"SHA-512"`` is ``"sha512"``) and sorted.
        record: Digests to compute and record for every object even when
            nothing vouches for them (for a manifest to be written later:
            BagIt ``sha512``, ownCloud's ``adler32``).
        car_pattern: Regular expression searched in the source key; matching
            items are treated as CARs (block check, commP).
        key_cids: If the last segment of a key, without extension, is a
            CIDv1 with codec ``raw`` or ``car`` and a sha2-256 multihash (as
            web3.storage's ``<cid>/<cid>.car`` carpark keys), the object's
            SHA-256 must equal that digest.

    Raises:
        PlanError: An unknown check or digest name, or a bad pattern.
    """

    checks: tuple[str, ...] = attrs.field(
        default=("car", "md5", "sha256", "size"),
        converter=_sorted_checks,
    )
    record: tuple[str, ...] = attrs.field(default=(), converter=_digest_names)
    car_pattern: str = attrs.field(default=r"(?i)\.car$", validator=_valid_regex)
    key_cids: bool = True

    def wants(self, check: Check | str) -> bool:
        """Whether ``check`` (a name or a [Check][carmigrate.migrate.Check]) is part of the policy."""
        name = check.value if isinstance(check, Check) else check
        return name in self.checks

    @property
    def digests(self) -> tuple[str, ...]:
        """The digest names among ``checks`` (sorted)."""
        return tuple(c for c in self.checks if c not in _NON_DIGEST_CHECKS)

    def is_car(self, key: str) -> bool:
        """Whether the item with this source key is treated as a CAR."""
        return _compile(self.car_pattern, "car_pattern").search(key) is not None


@attrs.frozen(kw_only=True)
class TransferPolicy:
    """How bytes move and what may be replaced.

    Attributes:
        server_side_copy: Copy on the server when the destination supports
            it for this source (no bytes through this process). The object
            is then checked by reading the destination once *after* it was
            published, and deleted again if a check fails; with ``False``
            (the default) bytes stream through the checks and a failing
            object is never visible.
        overwrite: Whether differing destination objects may be replaced.
        metadata: Carry user metadata when the destination keeps it
            (otherwise it is recorded as lost).
        restore_days: Days a restored cold object stays readable.
        restore_tier: Retrieval tier for restores (S3: ``Expedited``,
            ``Standard``, ``Bulk``).
        restore_poll: Seconds between checks on objects being restored.
    """

    server_side_copy: bool = False
    overwrite: Overwrite = Overwrite.NEVER
    metadata: bool = True
    restore_days: int = 1
    restore_tier: str = "Standard"
    restore_poll: float = attrs.field(default=60.0, converter=float)


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _optional_positive(
    instance: object, attribute: attrs.Attribute[Any], value: float | None
) -> None:
    if value is not None and value <= 0:
        raise PlanError(f"{attribute.name} must be positive, got {value}")


def _at_least_one(
    instance: object, attribute: attrs.Attribute[int], value: int
) -> None:
    if value < 1:
        raise PlanError(f"{attribute.name} must be at least 1, got {value}")


def _non_negative(
    instance: object, attribute: attrs.Attribute[int], value: int
) -> None:
    if value < 0:
        raise PlanError(f"{attribute.name} must not be negative, got {value}")


@attrs.frozen(kw_only=True)
class Limits:
    """How fast and how much one run may go.

    Rates are token buckets: a run never starts more than ``items_per_second``
    items or ``bytes_per_second`` bytes per second on average, with bursts of
    one second's worth (a single larger object may go at once and is paid
    for afterwards). The per-run maxima stop a run cleanly: nothing new
    starts, items in flight finish, and [resume][carmigrate.migrate.resume]
    carries on.

    Objects of up to 2 MiB are handed to workers in groups (at most 16
    objects and 8 MiB each), which spares them most of the per-task cost.
    Per-tenant rates hold each cohort (a tenant: user, account, space) to
    a rate of its own with the same token buckets, so one large account
    cannot turn a run into a spike on its backend: an item whose tenant is
    over its rate is held back (it stays ``PENDING``) and the run goes on
    with other tenants' items; it starts once its tenant's tokens are due.
    The coordinator does the pacing, so it works with every executor.

    A group is in flight as a whole: a stop lets every worker finish its
    group. With ``max_failures`` set every object is its own task, so the
    limit is not overshot; so too with an executor other than a thread pool
    (Dask may run a task again after a worker died).

    Attributes:
        concurrency: Objects worked on at once (workers).
        items_per_second: Start rate, if limited.
        bytes_per_second: Byte rate (by object size at start), if limited.
        max_bytes: Stop starting items once this many bytes were started in
            this run.
        max_seconds: Stop starting items after this many seconds.
        max_items: Stop after starting this many items in this run (a canary
            run).
        max_failures: Stop after this many items failed in this run (a
            circuit breaker for a broken destination).
        tenant_items_per_second: Items each tenant may start per second (a
            tenant is an item's cohort: a user, an account, a space), on top
            of the global rates.
        tenant_bytes_per_second: Bytes each tenant may start per second.
        retries: Retries of a transient error per item (so ``retries + 1``
            attempts).
        retry_base_delay: Upper bound of the first retry delay, in seconds;
            doubles each retry, full jitter.
        retry_max_delay: Cap on a retry delay, in seconds.
        restore_batch: Cold objects asked to be restored at once.
    """

    concurrency: int = attrs.field(default=8, validator=_at_least_one)
    items_per_second: float | None = attrs.field(
        default=None, converter=_opt_float, validator=_optional_positive
    )
    bytes_per_second: float | None = attrs.field(
        default=None, converter=_opt_float, validator=_optional_positive
    )
    max_bytes: int | None = attrs.field(default=None, validator=_optional_positive)
    max_seconds: float | None = attrs.field(
        default=None, converter=_opt_float, validator=_optional_positive
    )
    max_items: int | None = attrs.field(default=None, validator=_optional_positive)
    max_failures: int | None = attrs.field(default=None, validator=_optional_positive)
    tenant_items_per_second: float | None = attrs.field(
        default=None, converter=_opt_float, validator=_optional_positive
    )
    tenant_bytes_per_second: float | None = attrs.field(
        default=None, converter=_opt_float, validator=_optional_positive
    )
    retries: int = attrs.field(default=5, validator=_non_negative)
    retry_base_delay: float = attrs.field(default=0.2, converter=float)
    retry_max_delay: float = attrs.field(default=20.0, converter=float)
    restore_batch: int = attrs.field(default=1000, validator=_at_least_one)


@attrs.frozen(kw_only=True)
class CohortRule:
    """How an item's cohort is computed from its key.

    A cohort is a group that moves together ("these users first"); stages
    are ordered lists of cohorts. With ``pattern``, the cohort is the named
    group ``cohort`` of the first match in the key (or group 1, or the whole
    match); without, it is the first ``segments`` folder segments of the
    key. Keys that do not match, or have fewer folders, fall in the cohort
    ``""``.

    Attributes:
        segments: Folder segments that make up the cohort (0: one cohort).
        pattern: Regular expression searched in the key.
    """

    segments: int = attrs.field(default=0, validator=_non_negative)
    pattern: str | None = attrs.field(default=None, validator=_valid_regex)

    def cohort_of(self, key: str) -> str:
        """The cohort of ``key``."""
        if self.pattern is not None:
            m = _compile(self.pattern, "pattern").search(key)
            if m is None:
                return ""
            if "cohort" in m.re.groupindex:
                return m.group("cohort") or ""
            return (m.group(1) if m.re.groups else m.group(0)) or ""
        if self.segments == 0:
            return ""
        parts = key.split("/")[:-1]
        return "/".join(parts[: self.segments])


def _cohort_patterns(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"cohorts must be a sequence of strings, not {value!r}")
    return tuple(str(v) for v in value)


@attrs.frozen
class Stage:
    """One ordered step of a migration: the cohorts it moves.

    Attributes:
        name: Shown in reports and used to select stages (``run --stage``).
        cohorts: Cohort names or ``fnmatch`` patterns (``"user-a*"``,
            ``"*"``). An item belongs to the first stage with a matching
            pattern.
    """

    name: str
    cohorts: tuple[str, ...] = attrs.field(default=("*",), converter=_cohort_patterns)

    def matches(self, cohort: str) -> bool:
        """Whether ``cohort`` belongs to this stage."""
        return any(c == cohort or fnmatch.fnmatchcase(cohort, c) for c in self.cohorts)


@attrs.frozen(kw_only=True)
class IdRule:
    """How objects get new ids in the destination system.

    The id is found in the source key by ``pattern`` (its named group ``id``,
    or group 1, or the whole match; default: the whole key). The plan
    records each item's old and new id, which makes the id map (source id →
    new id) part of the reviewed, hashed plan.

    Attributes:
        kind: How the new id is derived (see [IdKind][carmigrate.migrate.IdKind]).
        pattern: Regular expression finding the id in the key. A key without
            a match gets no id.
        prefix: For ``PREFIX``: prepended to the id.
        offset: For ``OFFSET``: added to the numeric id.
        namespace: For ``UUID``: the UUID namespace (``plan()`` draws a random
            one when it is ``None`` and records it).
        rewrite_key: Also replace the id in the destination key by the new
            id (the destination listing is then sorted by the new keys).
    """

    kind: IdKind = IdKind.KEEP
    pattern: str | None = attrs.field(default=None, validator=_valid_regex)
    prefix: str = ""
    offset: int = 0
    namespace: str | None = None
    rewrite_key: bool = False

    def __attrs_post_init__(self) -> None:
        if self.namespace is not None:
            try:
                uuid.UUID(self.namespace)
            except ValueError as e:
                raise PlanError(f"namespace {self.namespace!r} is not a UUID") from e
        if self.kind is IdKind.KEEP and self.rewrite_key:
            raise PlanError("rewrite_key needs a rule that changes ids")

    @property
    def active(self) -> bool:
        """Whether items carry ids at all (any kind but a plain ``KEEP``)."""
        return self.kind is not IdKind.KEEP or self.pattern is not None

    def find(self, key: str) -> tuple[str, int, int] | None:
        """The id in ``key`` and its span, or ``None`` if the key has none."""
        if self.pattern is None:
            return key, 0, len(key)
        m = _compile(self.pattern, "pattern").search(key)
        if m is None:
            return None
        group: int | str = (
            "id" if "id" in m.re.groupindex else (1 if m.re.groups else 0)
        )
        value = m.group(group)
        if value is None:
            return None
        return value, m.start(group), m.end(group)

    def new_id(self, old: str) -> str:
        """The new id for ``old``.

        Raises:
            PlanError: ``OFFSET`` with an id that is not an integer, or
                ``UUID`` without a namespace.
        """
        if self.kind is IdKind.KEEP:
            return old
        if self.kind is IdKind.PREFIX:
            return self.prefix + old
        if self.kind is IdKind.OFFSET:
            try:
                return str(int(old, 10) + self.offset)
            except ValueError:
                raise PlanError(
                    f"id {old!r} is not an integer; an OFFSET rule needs numeric ids"
                ) from None
        if self.namespace is None:
            raise PlanError("a UUID rule needs a namespace (plan() records one)")
        return str(uuid.uuid5(uuid.UUID(self.namespace), old))


@attrs.frozen(kw_only=True)
class StageTotal:
    """Items and bytes of one action in one stage (part of the plan header).

    Attributes:
        stage: The stage name.
        action: The action.
        count: Items.
        bytes: Sum of their sizes.
    """

    stage: str
    action: Action
    count: int
    bytes: int


def _digest_map(value: Mapping[str, str] | None) -> DigestMap:
    if type(value) is DigestMap:
        return value
    try:
        return DigestMap(value)
    except ValueError as e:
        raise PlanError(f"digests: {e}") from None


_TEXT_NN: Final = "TEXT NOT NULL"
_INT_NN: Final = "INTEGER NOT NULL"


class _CommonDigests:
    """``md5`` and ``sha256`` read from ``digests``, for code written before digests."""

    __slots__ = ()
    digests: Mapping[str, str]

    @property
    def md5(self) -> str | None:
        """``digests["md5"]``, if there is one."""
        return self.digests.get("md5")

    @property
    def sha256(self) -> str | None:
        """``digests["sha256"]``, if there is one."""
        return self.digests.get("sha256")


@attrs.frozen(kw_only=True)
class PlanItem(_CommonDigests):
    """One line of a plan: what happens to one key.

    This class is the declaration of an item's planned fields: the plan
    line's keys, the ledger's planned columns and their decoding are derived
    from it (see the explanation page "Plans, ledgers and verification").

    Attributes:
        source_key: The key at the source (``None`` for ``EXTRA``).
        destination_key: The key at the destination.
        size: Size in bytes at the source (at the destination for ``EXTRA``).
        action: What the plan does.
        stage: Name of the stage the item belongs to.
        cohort: The item's cohort.
        digests: Digests the source vouched for when it was listed (registry
            names of [carmigrate.digests][] to lowercase hex). An MD5 comes
            only from a source that says it is one (never a multipart ETag).
        etag: The source's ETag, used to notice a source changed since the
            plan was made.
        cold: The source object was in a cold tier when listed.
        destination_size: Size at the destination, if an object was there.
        reason: Why the diff chose ``SKIP`` or ``CONFLICT``.
        source_id: The id found in the source key by the plan's ID rule.
        new_id: The id it gets at the destination.
    """

    source_key: str | None = column()
    destination_key: str = column(sql=_TEXT_NN, omit_if_same_as="source_key")
    size: int = column(kind=ColumnKind.INT, sql=_INT_NN)
    action: Action = column(
        kind=ColumnKind.ENUM, sql=_TEXT_NN, type=Action, line_cache=True
    )
    stage: str = column(sql=_TEXT_NN, line_cache=True)
    cohort: str = column(sql=_TEXT_NN, line_cache=True)
    digests: Mapping[str, str] = column(
        name="plan_digests",
        kind=ColumnKind.DIGESTS,
        default=DigestMap(),
        converter=_digest_map,
    )
    etag: str | None = column(name="plan_etag", default=None)
    cold: bool = column(
        kind=ColumnKind.BOOL, sql="INTEGER NOT NULL DEFAULT 0", default=False
    )
    destination_size: int | None = column(
        kind=ColumnKind.INT, sql="INTEGER", default=None
    )
    reason: str | None = column(name="plan_reason", default=None)
    source_id: str | None = column(default=None)
    new_id: str | None = column(default=None)

    @property
    def key(self) -> str:
        """The key the item is reported under: the source key, or the destination key for ``EXTRA``."""
        return self.destination_key if self.source_key is None else self.source_key


@attrs.frozen(kw_only=True)
class ItemOutcome(_CommonDigests):
    """What happened to one item: the outcome fields, declared once.

    A worker reports these for each item it handled; the ledger keeps them
    (columns derived from this declaration, each recorded when its
    [Record][carmigrate.migrate.lowlevel.Record] rule says) and
    [ItemRecord][carmigrate.migrate.ItemRecord] carries them back. Digests
    here were computed by carmigrate over the bytes it wrote or read back;
    the source's own digests are the planned item's ``digests``.

    Attributes:
        reason: Why it failed, conflicted or was skipped; or what a check
            noted.
        offset: Byte offset of a failure, if one is known (a CAR block that
            does not match, where a read was cut).
        transient: Whether the last failure was transient (``resume``
            retries those; permanent ones need ``retry_failed``).
        digests: Digests of the bytes written or read back, by registry
            name: always ``sha256``, and whatever the policy asked for.
        car_root: The CAR's first root CID, for CARs.
        car_blocks: Blocks checked in the CAR.
        car_check: ``"verified"`` (every block matched), ``"partial"`` (some
            blocks had hash functions carmigrate cannot compute) or
            ``"failed"``.
        piece_cid: PieceCID v1 (commP) of the bytes, if computed.
        piece_cid_v2: PieceCID v2 (FRC-0069), if computed.
        written_etag: The destination's ETag for what was written, if any.
        created: This plan created the destination object (rollback may
            delete it).
        replaced: This plan overwrote a different object that was there
            (rollback never deletes those).
        checks: The independent checks that passed (``"sha256:source"``,
            ``"sha512:source"``, ``"sha256:key"``, ``"car"``, ``"compare"``,
            ``"reread"``).
        carried: Metadata carried to the destination (``"metadata:name"``).
        lost: Metadata the destination could not keep (``"mtime"``,
            ``"metadata:name"``, ``"storage_class"``).
        bytes_moved: Bytes sent to the destination (0 for server-side copies
            and comparisons).
        server_side: The bytes were copied by the server.
    """

    reason: str | None = column(default=None, record=Record.ALWAYS)
    offset: int | None = column(
        name="error_offset",
        kind=ColumnKind.INT,
        sql="INTEGER",
        default=None,
        record=Record.ALWAYS,
    )
    transient: bool | None = column(
        kind=ColumnKind.BOOL, sql="INTEGER", default=None, record=Record.ALWAYS
    )
    digests: Mapping[str, str] = column(
        kind=ColumnKind.DIGESTS,
        default=DigestMap(),
        converter=_digest_map,
        record=Record.IF_SET,
    )
    car_root: str | None = column(default=None, record=Record.IF_SET)
    car_blocks: int | None = column(
        kind=ColumnKind.INT, sql="INTEGER", default=None, record=Record.IF_SET
    )
    car_check: str | None = column(default=None, record=Record.IF_SET)
    piece_cid: str | None = column(default=None, record=Record.IF_SET)
    piece_cid_v2: str | None = column(default=None, record=Record.IF_SET)
    written_etag: str | None = column(default=None, record=Record.IF_SET)
    created: bool = column(
        kind=ColumnKind.BOOL,
        sql="INTEGER NOT NULL DEFAULT 0",
        default=False,
        record=Record.ON_SUCCESS,
    )
    replaced: bool = column(
        kind=ColumnKind.BOOL,
        sql="INTEGER NOT NULL DEFAULT 0",
        default=False,
        record=Record.ON_SUCCESS,
    )
    checks: tuple[str, ...] = column(
        kind=ColumnKind.LIST, default=(), converter=tuple, record=Record.ON_SUCCESS
    )
    carried: tuple[str, ...] = column(
        kind=ColumnKind.LIST, default=(), converter=tuple, record=Record.ON_SUCCESS
    )
    lost: tuple[str, ...] = column(
        kind=ColumnKind.LIST, default=(), converter=tuple, record=Record.ON_SUCCESS
    )
    bytes_moved: int = column(
        kind=ColumnKind.INT,
        sql="INTEGER NOT NULL DEFAULT 0",
        default=0,
        record=Record.ON_SUCCESS,
    )
    server_side: bool = column(
        kind=ColumnKind.BOOL,
        sql="INTEGER NOT NULL DEFAULT 0",
        default=False,
        record=Record.ON_SUCCESS,
    )


@attrs.frozen(kw_only=True)
class PlanHeader:
    """Everything about a plan but its items: line 1 of a plan file.

    The header includes the number of items and a SHA-256 over their
    canonical lines, so it pins the items down too: the plan id is the CID
    of the header's DAG-CBOR encoding (see
    [plan_id][carmigrate.migrate.serde.plan_id]).

    Attributes:
        format_version: [FORMAT_VERSION][carmigrate.migrate.FORMAT_VERSION].
        source: The source store's URL (never with credentials).
        destination: The destination store's URL (never with credentials).
        prefix: Only keys starting with this were listed.
        stages: The stages, in order.
        cohorts: How cohorts were computed.
        verification: The verification policy.
        transfer: The transfer policy.
        limits: The default limits of a run.
        ids: The ID rule.
        item_count: Items in the plan, extras included.
        items_digest: Hex SHA-256 over the canonical item lines, each
            followed by a newline, in plan order.
        extras_count: ``EXTRA`` items (only at the destination).
        totals: Items and bytes per stage and action.
    """

    format_version: int = FORMAT_VERSION
    source: str
    destination: str
    prefix: str = ""
    stages: tuple[Stage, ...]
    cohorts: CohortRule = CohortRule()
    verification: VerificationPolicy = VerificationPolicy()
    transfer: TransferPolicy = TransferPolicy()
    limits: Limits = Limits()
    ids: IdRule = IdRule()
    item_count: int
    items_digest: str
    extras_count: int = 0
    totals: tuple[StageTotal, ...] = ()

    @property
    def id(self) -> str:
        """The plan id: CIDv1 (dag-cbor, sha2-256) of the header's encoding."""
        from carmigrate.migrate.serde import plan_id

        return plan_id(self)

    def stage_names(self) -> tuple[str, ...]:
        """The stage names, in order."""
        return tuple(s.name for s in self.stages)
