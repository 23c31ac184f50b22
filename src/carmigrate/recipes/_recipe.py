"""The recipe contract: options, plans for a round, and a finish from the ledger.

A recipe is one module with one shape:

- **options**: a frozen attrs class; each field declared with
  [option][carmigrate.recipes.option] (its help text and how it is given on
  the command line), so ``carmigrate recipe NAME`` is generated from it;
- **make_plans(options, context)**: reads the recipe's inputs, records its
  units in the work ledger, and returns the engine plans of one round
  ([RoundPlans][carmigrate.recipes.RoundPlans]) for what is still to do;
- **finish(options, context)**: once the round ran and every unit was
  judged, applies the recipe's own checks to the units and writes its outputs
  from the ledger (records, manifests, exports); returns plain data for the
  report.

[run_recipe][carmigrate.recipes.run_recipe] does everything else, the same
way for every recipe: the work ledger (``<work>/ledger.db``), resuming an
open round from its ledgers alone, saving and executing a new round's plans
(``<work>/rounds/NNNN/``), copying every item's outcome to its member,
judging units, and the result, which says ``complete`` only when every unit
is complete and nothing was left out. Register a recipe with
[register_recipe][carmigrate.recipes.register_recipe] and the command line
has it. What a run left behind is read from the work ledger, opened read-only
by [work_ledger][carmigrate.recipes.work_ledger]: each unit's data, verdict
and reasons, each member's latest outcome, the rounds.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import attrs

from carmigrate.errors import PlanError
from carmigrate.migrate import (
    Ledger,
    Limits,
    MemberState,
    Plan,
    PlanSummary,
    RunResult,
    Unit,
    Verdict,
    execute,
    load_plan,
    redact_url,
    resume,
    save_plan,
)
from carmigrate.storage import Store, is_local_url, open_store

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from concurrent.futures import Executor

    from carmigrate.migrate import Reporter

__all__ = [
    "CLI",
    "CliOption",
    "Recipe",
    "RecipeContext",
    "RecipeResult",
    "RoundPlans",
    "get_recipe",
    "option",
    "recipe_names",
    "register_recipe",
    "run_recipe",
    "work_ledger",
]

OptionsT = TypeVar("OptionsT")

CLI: Final = "carmigrate.cli"
"""The attrs metadata key under which an option keeps its [CliOption][carmigrate.recipes.CliOption]."""
WORK_LEDGER: Final = "ledger.db"
_log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class CliOption:
    """How a recipe option is given on the command line (attrs field metadata).

    Attributes:
        help: One line for ``--help``.
        flag: The option's flag (default: ``--`` and the field name with
            ``-`` for ``_``); ``None`` with ``positional``.
        positional: A positional argument instead of a flag.
        metavar: The placeholder in ``--help``.
        repeat: The flag may be given several times (a tuple field).
        parse: Turns the text into the value (default: the text).
        choices: The values allowed.
    """

    help: str
    flag: str | None = None
    positional: bool = False
    metavar: str | None = None
    repeat: bool = False
    parse: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None


def option(
    help: str,
    *,
    flag: str | None = None,
    positional: bool = False,
    metavar: str | None = None,
    repeat: bool = False,
    parse: Callable[[str], Any] | None = None,
    choices: Sequence[str] | None = None,
    **field_kwargs: Any,
) -> Any:
    """A field of a recipe's options, with its help text and command-line form.

    A ``bool`` field with a default of ``False`` becomes a switch; one with
    a default of ``True``, a switch that turns it off (give it a flag such as
    ``--no-build``); a field without a default is required. See
    [CliOption][carmigrate.recipes.CliOption].

    Args:
        help: One line for ``--help``.
        flag: The flag, if not ``--field-name``.
        positional: A positional argument.
        metavar: The placeholder.
        repeat: Given several times (the field holds a tuple).
        parse: Text to value.
        choices: The values allowed.
        **field_kwargs: Passed to ``attrs.field`` (``default``, ``converter``,
            ``validator``, ...).
    """
    meta = CliOption(
        help=help,
        flag=flag,
        positional=positional,
        metavar=metavar,
        repeat=repeat,
        parse=parse,
        choices=None if choices is None else tuple(choices),
    )
    return attrs.field(metadata={CLI: meta}, **field_kwargs)


@attrs.frozen(kw_only=True)
class RoundPlans:
    """What a recipe plans for one round.

    Attributes:
        plans: One engine plan per source store (in memory or file-backed);
            none when nothing is left to do.
        units: Units to record (or replace) before the round runs.
        missing: Members found in no source, with where the recipe looked:
            recorded as ``MISSING``, so the units holding them fail with the
            reason instead of being left out.
    """

    plans: tuple[Plan, ...] = ()
    units: tuple[Unit, ...] = ()
    missing: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Recipe(Generic[OptionsT]):
    """One real migration, in the one shape every recipe has.

    Attributes:
        name: Its command-line name (``"w3up-legacy"``).
        summary: One line for ``carmigrate recipe --help``.
        description: What it does, for ``carmigrate recipe NAME --help``.
        options: Its options class (frozen attrs, fields made with
            [option][carmigrate.recipes.option]).
        make_plans: ``(options, context) -> RoundPlans``: the plans of a new
            round.
        finish: ``(options, context) -> outputs``: the recipe's checks of the
            units and its outputs, from the ledger; plain data for the report.
        unit_label: What a unit is called in reports (``"uploads"``).
    """

    name: str
    summary: str
    options: type[OptionsT]
    make_plans: Callable[[OptionsT, RecipeContext], RoundPlans]
    finish: Callable[[OptionsT, RecipeContext], Mapping[str, Any]]
    description: str = ""
    unit_label: str = "units"


class RecipeContext:
    """What a recipe's functions get: the work folder, the work ledger and stores.

    State: the open work ledger, the stores opened so far (closed by
    [run_recipe][carmigrate.recipes.run_recipe]), the round being planned.

    Attributes:
        work: The work folder.
        ledger: The work ledger: units, members, rounds.
        dry_run: Nothing is executed or written outside a throw-away copy of
            the work ledger.
        round: The number of the round being planned or run.
        limits: The engine's limits for every plan of the run.
        notes: Plain data ``make_plans`` leaves for ``finish`` in the same
            run (counts for the report); empty when an open round is resumed.
    """

    def __init__(
        self,
        work: Path,
        ledger: Ledger,
        *,
        dry_run: bool,
        limits: Limits,
        stores: Iterable[Store] = (),
        store_options: Mapping[str, Any] | None = None,
        scratch: Path | None = None,
    ) -> None:
        self.work = work
        self._rounds = (scratch if dry_run and scratch is not None else work) / "rounds"
        self.ledger = ledger
        self.dry_run = dry_run
        self.limits = limits
        self.round = 0
        self.notes: dict[str, Any] = {}
        self._options = dict(store_options or {})
        self._stores: dict[str, Store] = {redact_url(s.url): s for s in stores}
        self._opened: list[Store] = []
        self._lock = threading.Lock()

    def store(self, store: Store | str, *, create: bool = False) -> Store:
        """A store given as itself or by URL (opened once, with the run's store options).

        Args:
            store: The store, or its URL.
            create: A local folder that does not exist is made (for a
                destination); otherwise it is an error (a mistyped source).

        Raises:
            StorageError: It cannot be opened.
        """
        if not isinstance(store, str):
            self._stores.setdefault(redact_url(store.url), store)
            return store
        key = redact_url(store)
        with self._lock:
            found = self._stores.get(key)
            if found is None:
                options = dict(self._options)
                if create and is_local_url(store):
                    options.setdefault("create", True)
                found = open_store(store, **options)
                self._opened.append(found)
                self._stores[key] = found
        return found

    def plan_path(self, k: int) -> str:
        """Where plan ``k`` of the round being planned is saved (its folder is made).

        In a dry run, a throw-away folder: ``plan(path=...)`` may write there.
        """
        folder = self._rounds / f"{self.round:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder / f"plan-{k}.jsonl")

    def ledger_path(self, k: int) -> str:
        """Where the ledger of plan ``k`` of the round being planned lives."""
        return str(self._rounds / f"{self.round:04d}" / f"ledger-{k}.db")

    def output(self, name: str) -> Path:
        """A path for an output under the work folder (folders made as needed)."""
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def close(self) -> None:
        """Close the stores this context opened."""
        for s in self._opened:
            with contextlib.suppress(Exception):
                s.close()
        self._opened.clear()


@attrs.frozen(kw_only=True)
class RecipeResult:
    """What one run of a recipe did.

    Attributes:
        recipe: The recipe's name.
        dry_run: Nothing was executed or written.
        round: The round planned or resumed (``None``: nothing to do).
        resumed: An open round was continued.
        plans: Summaries of the round's plans.
        runs: The engine's result for each plan run.
        units: Units per verdict (``"complete"``, ``"incomplete"``,
            ``"failed"``) after the run.
        missing: Members found in no source.
        complete: Every unit is complete, nothing is missing and no round is
            open: nothing was left out.
        outputs: What the recipe's finish returned (paths written, counts).
        unit_label: What the recipe calls its units.
        failures: The first failed units (up to 20, by name), each with
            its reasons.
    """

    recipe: str
    dry_run: bool
    round: int | None
    resumed: bool
    plans: tuple[PlanSummary, ...]
    runs: tuple[RunResult, ...]
    units: Mapping[str, int]
    missing: int
    complete: bool
    outputs: Mapping[str, Any] = attrs.field(factory=dict)
    unit_label: str = "units"
    failures: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def failed(self) -> int:
        """Units that failed."""
        return self.units.get(Verdict.FAILED.value, 0)

    @property
    def planned(self) -> int:
        """Items the round's plans hold (to copy or to verify in place)."""
        return sum(p.items for p in self.plans)

    @property
    def finished(self) -> bool:
        """No round is left open: the round ran to its end, or there was nothing to do.

        A limit or a crash leaves a round open (the next run resumes it); a
        dry run of a round finishes nothing.
        """
        if self.round is None:
            return True
        done = all(r.stop_reason == "done" for r in self.runs)
        return not self.dry_run and len(self.runs) == len(self.plans) and done

    @property
    def tenant_waits(self) -> dict[str, float]:
        """Seconds each tenant's items were held back by the per-tenant limits, over the runs."""
        waits: dict[str, float] = {}
        for r in self.runs:
            for tenant, seconds in r.tenant_waits.items():
                waits[tenant] = waits.get(tenant, 0.0) + seconds
        return waits

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for ``--json``)."""
        return {
            "recipe": self.recipe,
            "dry_run": self.dry_run,
            "round": self.round,
            "resumed": self.resumed,
            "plans": [
                {
                    "source": p.source,
                    "items": p.items,
                    "bytes": p.bytes,
                    "transfer_items": p.transfer_items,
                    "compare_items": p.compare_items,
                }
                for p in self.plans
            ],
            "runs": [
                {
                    "stop_reason": r.stop_reason,
                    "items": r.items,
                    "bytes": r.bytes,
                    "failures": r.failures,
                }
                for r in self.runs
            ],
            "units": dict(self.units),
            "missing": self.missing,
            "complete": self.complete,
            "finished": self.finished,
            "tenant_waits": self.tenant_waits,
            "outputs": dict(self.outputs),
            "failures": [{"unit": n, "reasons": list(r)} for n, r in self.failures],
        }

    def to_markdown(self) -> str:
        """A short human report."""
        label = self.unit_label
        lines = [
            f"# {self.recipe}" + (" (dry run)" if self.dry_run else ""),
            "",
            f"- round: {self.round if self.round is not None else 'none (nothing to do)'}"
            + (" (resumed)" if self.resumed else ""),
            f"- {label}: "
            + ", ".join(f"{n} {v}" for v, n in sorted(self.units.items()))
            if self.units
            else f"- {label}: none",
            *(
                f"- plan {k} from {p.source}: {p.items} items, {p.bytes} bytes "
                f"({p.transfer_items} to copy, {p.compare_items} to compare)"
                for k, p in enumerate(self.plans)
            ),
            f"- missing members: {self.missing}",
            f"- complete: {'yes' if self.complete else 'no'}",
        ]
        for k, v in sorted(self.outputs.items()):
            lines.append(f"- {k}: {v}")
        if self.failures:
            lines += ["", f"Failed {label}:", ""]
            lines += [f"- {n}: {'; '.join(r)}" for n, r in self.failures]
        return "\n".join(lines) + "\n"


_REGISTRY: dict[str, Recipe[Any]] = {}


def register_recipe(recipe: Recipe[Any]) -> Recipe[Any]:
    """Add a recipe to the registry (``carmigrate recipe NAME`` then has it).

    Raises:
        ValueError: A different recipe of that name is registered, or its
            options are not an attrs class.
    """
    if not attrs.has(recipe.options):
        raise ValueError(f"recipe {recipe.name!r}: options must be an attrs class")
    old = _REGISTRY.get(recipe.name)
    if old is not None and old is not recipe:
        raise ValueError(f"a recipe named {recipe.name!r} is registered already")
    _REGISTRY[recipe.name] = recipe
    return recipe


def recipe_names() -> tuple[str, ...]:
    """The registered recipes' names, sorted."""
    return tuple(sorted(_REGISTRY))


def get_recipe(name: str) -> Recipe[Any]:
    """The registered recipe called ``name``.

    Raises:
        KeyError: No such recipe; the message lists the registered ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"no recipe {name!r}; registered: {', '.join(recipe_names())}"
        ) from None


def work_ledger(work_dir: str | os.PathLike[str]) -> Ledger:
    """A recipe's work ledger, opened read-only: what its runs know.

    The one view of a recipe's work for users and tools, a
    [Ledger][carmigrate.migrate.Ledger]: ``units()`` and ``unit(name)``
    (each a [UnitRecord][carmigrate.migrate.UnitRecord]: the recipe's data,
    the verdict and its reasons), ``member(key)`` and ``members()`` (each a
    [MemberRecord][carmigrate.migrate.MemberRecord]: the latest outcome,
    with the ledger record of its item) and ``rounds()`` (each a
    [RoundRecord][carmigrate.migrate.RoundRecord]: its plan and ledger
    files). A run may write it meanwhile. Close it when done (``with``).

    Args:
        work_dir: The recipe's work folder.

    Raises:
        PlanError: ``work_dir`` holds no work ledger.
    """
    path = Path(work_dir) / WORK_LEDGER
    if not path.exists():
        raise PlanError(f"no work ledger in {os.fspath(work_dir)!r}")
    return Ledger(path, readonly=True)


def _open_work_ledger(work: Path, dry_run: bool) -> tuple[Ledger, str | None]:
    path = work / WORK_LEDGER
    if not dry_run:
        work.mkdir(parents=True, exist_ok=True)
        return Ledger(path), None
    # a dry run works on a throw-away copy
    tmp = tempfile.mkdtemp(prefix="carmigrate-dry-run-")
    copy = os.path.join(tmp, WORK_LEDGER)
    if path.exists():
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
    return Ledger(copy), tmp


def run_recipe(
    recipe: Recipe[OptionsT],
    options: OptionsT,
    work_dir: str | os.PathLike[str],
    *,
    limits: Limits | None = None,
    executor: Executor | None = None,
    reporters: Sequence[Reporter] = (),
    stores: Iterable[Store] = (),
    store_options: Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> RecipeResult:
    """Run one round of a recipe: resume the open one, or plan and run a new one.

    1. An open round (a limit or a crash stopped it) is resumed from its
       ledgers alone; otherwise ``make_plans`` plans a new round for what is
       left, its plans are saved under ``<work>/rounds/NNNN/`` and its units
       recorded in the work ledger (a round with no plans is not recorded).
    2. Each plan is executed (or resumed) in order, with its own ledger; the
       round is finished when every plan ran to the end.
    3. Every item's outcome is copied to its member, every unit is judged,
       and ``finish`` applies the recipe's checks and writes its outputs.

    Args:
        recipe: The recipe.
        options: Its options.
        work_dir: The work folder (created if missing).
        limits: The engine's limits for every plan (default ``Limits()``).
        executor: Where the engine runs items (default: its thread pool).
        reporters: Engine event reporters.
        stores: Stores to use for the URLs plans name, besides those the
            options hold (a field that is a store, or a tuple holding some);
            others are opened with ``store_options``. A round is resumed
            with the same stores.
        store_options: Options for stores opened from URLs.
        dry_run: Plan only, on a throw-away copy of the work ledger: nothing
            is executed, saved or written (an open round is only summarised).

    Returns:
        What the run did.

    Raises:
        PlanError: The recipe's inputs cannot be planned, or a plan needs a
            store that cannot be opened.
        StorageError: Listing a store failed (nothing was planned).
    """
    work = Path(work_dir)
    lim = limits or Limits()
    held: Any = options  # an attrs instance: register_recipe checks its class
    values = [getattr(held, f.name) for f in attrs.fields(type(held))]
    values = [x for v in values for x in (v if isinstance(v, tuple) else (v,))]
    ledger, tmp = _open_work_ledger(work, dry_run)
    ctx = RecipeContext(
        work,
        ledger,
        dry_run=dry_run,
        limits=lim,
        stores=[*stores, *(v for v in values if isinstance(v, Store))],
        store_options=store_options,
        scratch=None if tmp is None else Path(tmp),
    )
    try:
        return _run(recipe, options, ctx, executor=executor, reporters=reporters)
    finally:
        ctx.close()
        ledger.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _run(
    recipe: Recipe[OptionsT],
    options: OptionsT,
    ctx: RecipeContext,
    *,
    executor: Executor | None,
    reporters: Sequence[Reporter],
) -> RecipeResult:
    ledger = ctx.ledger
    open_round = ledger.open_round()
    resumed = open_round is not None
    loaded: dict[str, Plan] = {}
    if open_round is not None:
        ctx.round = open_round.n
        plan_files = [(rp.plan, rp.ledger) for rp in open_round.plans]
        for rp in open_round.plans:
            loaded[rp.plan] = load_plan(rp.plan, check=False)
    else:
        ctx.round = (max((r.n for r in ledger.rounds()), default=0)) + 1
        planned = recipe.make_plans(options, ctx)
        ledger.add_units(planned.units)
        if planned.missing:
            ledger.mark_missing(planned.missing, ctx.round)
        plan_files = []
        for k, plan in enumerate(planned.plans):
            path = ctx.plan_path(k)
            if not ctx.dry_run:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if plan.path is None or os.path.abspath(plan.path) != os.path.abspath(
                    path
                ):
                    plan = save_plan(plan, path)
            loaded[path] = plan
            plan_files.append((path, ctx.ledger_path(k)))
        if plan_files:
            n = ledger.add_round(
                [(loaded[p].header.source, p, lg) for p, lg in plan_files]
            ).n
            ctx.round = n
    summaries = tuple(loaded[p].summary() for p, _ in plan_files)
    _log.info(
        "%s: round %d %s, %d plans, %d items",
        recipe.name,
        ctx.round,
        "resumed" if resumed else "planned",
        len(summaries),
        sum(s.items for s in summaries),
    )
    results: list[RunResult] = []
    if plan_files and not ctx.dry_run:
        for path, ledger_path in plan_files:
            plan = loaded[path]
            source = ctx.store(plan.header.source)
            destination = ctx.store(plan.header.destination, create=True)
            with Ledger(ledger_path) as round_ledger:
                run = execute if round_ledger.plan_id is None else _resume
                result = run(
                    plan,
                    round_ledger,
                    source=source,
                    destination=destination,
                    executor=executor,
                    limits=ctx.limits,
                    reporters=reporters,
                )
                ledger.record_members(ctx.round, round_ledger)
            results.append(result)
            if result.stop_reason != "done":
                break
        if len(results) == len(plan_files) and all(
            r.stop_reason == "done" for r in results
        ):
            ledger.finish_round(ctx.round)
    ledger.judge_units()
    outputs = recipe.finish(options, ctx)
    counts = {v.value: n for v, n in ledger.unit_counts().items()}
    missing = sum(1 for _ in ledger.members(state=MemberState.MISSING))
    still_open = ledger.open_round() is not None
    complete = (
        not still_open
        and not ctx.dry_run
        and counts.get(Verdict.COMPLETE.value, 0) == sum(counts.values())
        and missing == 0
    )
    return RecipeResult(
        recipe=recipe.name,
        dry_run=ctx.dry_run,
        round=ctx.round if plan_files else None,
        resumed=resumed,
        plans=summaries,
        runs=tuple(results),
        units=counts,
        missing=missing,
        complete=complete,
        outputs=outputs,
        unit_label=recipe.unit_label,
        failures=tuple(
            (u.name, u.reasons)
            for u in itertools.islice(ledger.units(verdict=Verdict.FAILED), 20)
        ),
    )


def _resume(plan: Plan, ledger: Ledger, **kwargs: Any) -> RunResult:
    ledger.check_plan(plan)
    return resume(ledger, **kwargs)
