"""The recipe contract: units, rounds in the work ledger, run_recipe, the generated CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import attrs
import pytest

from carmigrate.cli import main
from carmigrate.errors import PlanError
from carmigrate.migrate import (
    ItemState,
    Ledger,
    Limits,
    ListingEntry,
    MemberState,
    Unit,
    Verdict,
    VerificationPolicy,
    plan,
)
from carmigrate.migrate._units import judge
from carmigrate.recipes import (
    Recipe,
    RecipeContext,
    RoundPlans,
    get_recipe,
    option,
    recipe_names,
    register_recipe,
    run_recipe,
    work_ledger,
)
from carmigrate.storage import LocalStore, MemoryStore


@attrs.frozen(kw_only=True)
class CopyOptions:
    """A toy recipe: copy the objects a manifest lists, grouped in folders."""

    manifest: str = option("manifest: JSON lines of key, sha256", positional=True)
    source: str = option("source store", metavar="URL")
    destination: str = option("destination store", metavar="URL")
    check_size: bool = option("also check sizes", default=False)


def _manifest(options: CopyOptions) -> list[dict]:
    return [json.loads(x) for x in Path(options.manifest).read_text().splitlines()]


def _make_plans(options: CopyOptions, ctx: RecipeContext) -> RoundPlans:
    src, dst = ctx.store(options.source), ctx.store(options.destination, create=True)
    rows = _manifest(options)
    folders: dict[str, list[str]] = {}
    for r in rows:
        folders.setdefault(r["key"].split("/")[0], []).append(r["key"])
    units = tuple(
        Unit(name=f"folder:{f}", kind="folder", owner=f, members=tuple(keys))
        for f, keys in sorted(folders.items())
    )
    done = ctx.ledger.member_states()
    listing, missing = [], {}
    for r in rows:
        if done.get(r["key"]) is MemberState.VERIFIED:
            continue
        try:
            size = src.stat(r["key"]).size
        except FileNotFoundError:
            missing[r["key"]] = "not in the source"
            continue
        listing.append(
            ListingEntry.checked(r["key"], size, digests={"sha256": r["sha256"]})
        )
    if not listing:
        return RoundPlans(units=units, missing=missing)
    checks = ["sha256", "size"] if options.check_size else ["sha256"]
    p = plan(
        src,
        dst,
        source_listing=sorted(listing),
        destination_listing=[],
        verification=VerificationPolicy(checks=checks),
        path=ctx.plan_path(0),
    )
    return RoundPlans(plans=(p,), units=units, missing=missing)


def _finish(options: CopyOptions, ctx: RecipeContext) -> dict:
    done = [r.unit.owner for r in ctx.ledger.units(verdict=Verdict.COMPLETE)]
    return {"complete_folders": ",".join(str(d) for d in done)}


TOY = register_recipe(
    Recipe(
        name="toy-copy",
        summary="copy what a manifest lists (a test recipe)",
        options=CopyOptions,
        make_plans=_make_plans,
        finish=_finish,
        unit_label="folders",
    )
)


def _setup(tmp_path: Path, *, lose: str | None = None) -> CopyOptions:
    src = LocalStore(tmp_path / "src", create=True)
    LocalStore(tmp_path / "dst", create=True)
    rows = []
    for folder in ("a", "b"):
        for i in range(3):
            key = f"{folder}/{i}.bin"
            body = f"{key}\n".encode() * 100
            rows.append({"key": key, "sha256": hashlib.sha256(body).hexdigest()})
            if key != lose:
                src.write(key, body)
    (tmp_path / "manifest.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    return CopyOptions(
        manifest=str(tmp_path / "manifest.jsonl"),
        source=str(tmp_path / "src"),
        destination=str(tmp_path / "dst"),
    )


def test_a_complete_run_and_a_run_with_nothing_left(tmp_path: Path) -> None:
    options = _setup(tmp_path)
    first = run_recipe(TOY, options, tmp_path / "work")
    assert first.complete
    assert first.units == {"complete": 2}
    assert first.round == 1
    assert first.outputs == {"complete_folders": "a,b"}
    assert first.planned == 6
    assert first.finished
    assert first.to_dict()["plans"] == [
        {
            "source": LocalStore(tmp_path / "src").url,
            "items": 6,
            "bytes": first.plans[0].bytes,
            "transfer_items": 6,
            "compare_items": 0,
        }
    ]
    with work_ledger(tmp_path / "work") as led:
        assert [u.name for u in led.units()] == ["folder:a", "folder:b"]
        assert {u.verdict for u in led.units()} == {Verdict.COMPLETE}
    with pytest.raises(PlanError, match="no work ledger"):
        work_ledger(tmp_path / "elsewhere")
    with Ledger(tmp_path / "work" / "ledger.db", readonly=True) as led:
        assert [r.n for r in led.rounds()] == [1]
        assert not led.rounds()[0].open
        rec = led.member("a/0.bin")
        assert rec is not None
        assert rec.state is MemberState.VERIFIED
        assert rec.record is not None
        assert rec.record.state is ItemState.VERIFIED
        assert "sha256:source" in rec.record.checks
    second = run_recipe(TOY, options, tmp_path / "work")
    assert second.round is None  # nothing to plan: no new round
    assert second.complete
    assert second.finished
    assert second.planned == 0


def test_a_stopped_round_is_resumed_from_its_ledgers(tmp_path: Path) -> None:
    options = _setup(tmp_path)
    first = run_recipe(
        TOY, options, tmp_path / "work", limits=Limits(max_items=2, concurrency=1)
    )
    assert not first.complete
    assert not first.finished
    assert first.runs[0].stop_reason == "max_items"
    assert first.units == {"incomplete": 2}
    second = run_recipe(TOY, options, tmp_path / "work")
    assert second.resumed
    assert second.round == 1
    assert second.complete
    assert second.finished
    assert sum(r.items for r in (*first.runs, *second.runs)) == 6  # nothing twice


def test_stores_in_the_options_serve_a_resumed_round(tmp_path: Path) -> None:
    """A store given in the options (not a URL) is used again when its round is resumed."""
    options = _setup(tmp_path)
    source = MemoryStore("old")  # memory:// cannot be opened again from its URL
    for info in LocalStore(tmp_path / "src").list():
        source.write(info.key, (tmp_path / "src" / info.key).read_bytes())
    options = attrs.evolve(options, source=source)
    first = run_recipe(
        TOY, options, tmp_path / "work", limits=Limits(max_items=2, concurrency=1)
    )
    assert not first.finished
    second = run_recipe(TOY, options, tmp_path / "work")
    assert second.resumed
    assert second.complete


def test_missing_and_failed_members_fail_their_unit_with_reasons(
    tmp_path: Path,
) -> None:
    options = _setup(tmp_path, lose="b/1.bin")
    (tmp_path / "src" / "a" / "2.bin").write_bytes(b"tampered")
    result = run_recipe(TOY, options, tmp_path / "work")
    assert not result.complete
    assert result.missing == 1
    assert result.units == {"failed": 2}
    with Ledger(tmp_path / "work" / "ledger.db", readonly=True) as led:
        a, b = led.unit("folder:a"), led.unit("folder:b")
    assert a is not None
    assert b is not None
    assert a.reasons[0].startswith("a/2.bin: failed: ")
    assert b.reasons == ("b/1.bin: missing: not in the source",)
    assert not (tmp_path / "dst" / "a" / "2.bin").exists()


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    options = _setup(tmp_path)
    result = run_recipe(TOY, options, tmp_path / "work", dry_run=True)
    assert result.dry_run
    assert [p.items for p in result.plans] == [6]
    assert result.planned == 6
    assert not result.finished
    assert not result.runs
    assert not (tmp_path / "work").exists()
    assert not any((tmp_path / "dst").iterdir())


def test_generated_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = _setup(tmp_path)
    with pytest.raises(SystemExit):
        main(["recipe", "toy-copy", "--help"])
    help_text = capsys.readouterr().out
    assert "manifest: JSON lines" in help_text
    assert "--check-size" in help_text
    assert "--tenant-items-per-second" in help_text
    code = main(
        [
            "recipe",
            "toy-copy",
            options.manifest,
            "--source",
            options.source,
            "--destination",
            options.destination,
            "--check-size",
            "--work",
            str(tmp_path / "work"),
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["complete"] is True
    assert out["units"] == {"complete": 2}
    with Ledger(tmp_path / "work" / "ledger.db", readonly=True) as led:
        plan_file = led.rounds()[0].plans[0].plan
    header = json.loads(Path(plan_file).read_text().splitlines()[0])
    assert header["verification"]["checks"] == ["sha256", "size"]
    # a missing member: exit 1
    (tmp_path / "src" / "a" / "0.bin").unlink()
    code = main(
        [
            "recipe",
            "toy-copy",
            options.manifest,
            "--source",
            options.source,
            "--destination",
            str(tmp_path / "dst2"),
            "--work",
            str(tmp_path / "work2"),
        ]
    )
    assert code == 1


def test_registry() -> None:
    assert "toy-copy" in recipe_names()
    assert get_recipe("toy-copy") is TOY
    with pytest.raises(KeyError, match="no recipe 'nope'; registered: "):
        get_recipe("nope")
    with pytest.raises(ValueError, match="registered already"):
        register_recipe(attrs.evolve(TOY, summary="another"))
    with pytest.raises(ValueError, match="attrs class"):
        register_recipe(attrs.evolve(TOY, name="not-attrs", options=dict))


def test_judge_rules() -> None:
    v, s, p, f, m, u = (
        MemberState.VERIFIED,
        MemberState.PENDING,
        MemberState.PENDING,
        MemberState.FAILED,
        MemberState.MISSING,
        MemberState.UNVERIFIABLE,
    )
    assert judge(["x"], {"x": (v, None)}) == (Verdict.COMPLETE, ())
    assert judge(["x", "y"], {"x": (v, None), "y": (s, None)})[0] is Verdict.INCOMPLETE
    assert (
        judge(["x", "y"], {"x": (f, "boom"), "y": (p, None)})[0] is Verdict.INCOMPLETE
    )
    assert judge(["x", "y"], {"x": (f, "boom"), "y": (v, None)}) == (
        Verdict.FAILED,
        ("x: failed: boom",),
    )
    assert judge(["x"], {"x": (m, "gone")}) == (Verdict.FAILED, ("x: missing: gone",))
    assert judge(["x"], {"x": (u, None)}) == (
        Verdict.INCOMPLETE,
        ("x: unverifiable: nothing independent was compared",),
    )
    assert judge(["x"], {}) == (Verdict.INCOMPLETE, ("x: not planned yet",))
    with pytest.raises(Exception, match="twice"):
        Unit(name="u", kind="k", members=("x", "x"))


def test_many_units_judged_and_listed_in_pages(tmp_path: Path) -> None:
    """Units are judged in one pass and listed in pages; verdicts may change mid-listing."""
    n = 2500
    with Ledger(tmp_path / "work.db") as led:
        led.add_units(
            Unit(
                name=f"u{i:05d}",
                kind="k",
                owner=f"t{i % 3}",
                members=(f"m{i}", f"s{i % 7}"),
            )
            for i in range(n)
        )
        led.mark_missing({f"m{i}": "gone" for i in range(0, n, 5)})
        led.mark_missing(
            {f"s{j}": "x" for j in range(7)}
        )  # every unit has a missing member
        counts = led.judge_units()
        assert counts == {Verdict.FAILED: n // 5, Verdict.INCOMPLETE: n - n // 5}
        seen = []
        for rec in led.units(verdict=Verdict.INCOMPLETE, owner="t1"):
            seen.append(rec.name)
            assert rec.unit.members == (
                f"m{int(rec.name[1:])}",
                f"s{int(rec.name[1:]) % 7}",
            )
            led.set_verdict(rec.name, Verdict.COMPLETE)
        expected = [f"u{i:05d}" for i in range(n) if i % 3 == 1 and i % 5 != 0]
        assert seen == expected
        assert led.unit_counts()[Verdict.COMPLETE] == len(expected)
