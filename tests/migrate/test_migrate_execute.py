"""execute, verify and report on real local and in-memory stores."""

from __future__ import annotations

import io
import json
import os

import pytest
from migrate_helpers import car_key, contents, corrupt, fill, keys, make_car, missing

from carmigrate.commp import commp
from carmigrate.migrate import (
    Action,
    Check,
    EventKind,
    ItemState,
    JsonLinesReporter,
    Ledger,
    Overwrite,
    TqdmReporter,
    TransferPolicy,
    VerificationPolicy,
    execute,
    plan,
    report,
    resume,
    status,
    verify,
)
from carmigrate.storage import LocalStore, MemoryStore

ALL = VerificationPolicy(
    checks=[Check.SIZE, Check.MD5, Check.SHA256, Check.CAR, Check.COMMP]
)


def _scenario(src: LocalStore, dst: LocalStore) -> dict[str, bytes]:
    good = make_car(6, seed=b"good")
    named = make_car(3, seed=b"named")
    bad = corrupt(make_car(5, seed=b"bad"))
    objects = {
        car_key(good, "carpark"): good,
        "cars/named.car": named,
        "cars/bad.car": bad,
        car_key(b"not what the key says", "carpark").replace(
            ".car", ".bin"
        ): b"something else!",
        "docs/readme.txt": b"hello",
        "docs/same.txt": b"same bytes",
        "docs/conflict.txt": b"source version",
    }
    fill(src, objects)
    fill(
        dst,
        {
            "docs/same.txt": b"same bytes",
            "docs/conflict.txt": b"other",
            "old/extra": b"e",
        },
    )
    return objects


def test_end_to_end_local_with_car_sha256_and_commp(src, dst, ledger, tmp_path) -> None:
    """Good CARs verify block by block; a corrupt CAR fails at its offset and never appears."""
    objects = _scenario(src, dst)
    p = plan(src, dst, verification=ALL)
    events: list = []
    result = execute(p, ledger, source=src, destination=dst, reporters=[events.append])
    rec = {r.item.key: r for r in ledger.items()}
    good_key = next(
        k for k in objects if k.startswith("carpark/") and k.endswith(".car")
    )
    fake_key = next(k for k in objects if k.endswith(".bin"))

    assert result.stop_reason == "done"
    assert result.complete
    # the corrupt CAR: failed with the offset of the bad block, nothing published
    bad = rec["cars/bad.car"]
    assert bad.state is ItemState.FAILED
    assert "CAR check failed" in bad.reason
    assert bad.offset is not None
    assert 0 < bad.offset < len(objects["cars/bad.car"])
    assert missing(dst, "cars/bad.car")
    assert not [
        n
        for _, _, files in os.walk(dst.root)
        for n in files
        if n.startswith(".carmigrate")
    ]
    # a content-addressed CAR: key digest, every block, commP
    good = rec[good_key]
    assert good.state is ItemState.VERIFIED
    assert set(good.checks) == {"car", "sha256:key"}
    assert good.car_check == "verified"
    assert good.car_blocks == 6
    info = commp(objects[good_key])
    assert good.piece_cid == str(info.cid_v1)
    assert good.piece_cid_v2 == str(info.cid_v2)
    assert good.created
    assert not good.replaced
    # a CAR under a plain name: its blocks are the independent truth
    assert rec["cars/named.car"].state is ItemState.VERIFIED
    assert rec["cars/named.car"].checks == ("car",)
    # a key that names other bytes: refused before publishing
    assert rec[fake_key].state is ItemState.FAILED
    assert "key" in rec[fake_key].reason
    assert missing(dst, fake_key)
    # a plain file with nothing to compare: carried, not verified
    assert rec["docs/readme.txt"].state is ItemState.UNVERIFIABLE
    assert rec["docs/readme.txt"].checks == ()
    # same content read on both sides: verified, not ours
    assert rec["docs/same.txt"].item.action is Action.VERIFY
    assert rec["docs/same.txt"].state is ItemState.VERIFIED
    assert rec["docs/same.txt"].checks == ("compare",)
    assert not rec["docs/same.txt"].created
    # a conflict is left alone; an extra is not touched
    assert rec["docs/conflict.txt"].state is ItemState.CONFLICT
    assert contents(dst)["docs/conflict.txt"] == b"other"
    assert contents(dst)["old/extra"] == b"e"
    assert set(keys(dst)) == {
        good_key,
        "cars/named.car",
        "docs/readme.txt",
        "docs/same.txt",
        "docs/conflict.txt",
        "old/extra",
    }
    for key in (good_key, "cars/named.car", "docs/readme.txt"):
        assert contents(dst)[key] == objects[key]
    kinds = [e.kind for e in events]
    assert kinds[0] is EventKind.RUN_STARTED
    assert kinds[-1] is EventKind.RUN_FINISHED
    assert kinds.count(EventKind.FAILED) == 2
    assert any(e.kind is EventKind.BYTES for e in events)


def test_verify_reads_back_and_rereads_the_source(src, dst, ledger) -> None:
    """verify promotes unverifiable items with a second source read and catches tampering."""
    _scenario(src, dst)
    p = plan(src, dst, verification=ALL)
    execute(p, ledger, source=src, destination=dst)

    first = verify(p, ledger, source=src, destination=dst)
    assert first.ok
    assert first.unverifiable == 1
    assert first.promoted == 0
    second = verify(p, ledger, source=src, destination=dst, reread_source=True)
    assert second.promoted == 1
    assert ledger.find("docs/readme.txt").state is ItemState.VERIFIED
    assert "reread" in ledger.find("docs/readme.txt").checks

    # tamper with one object we wrote, remove another
    dst.write("cars/named.car", b"x" * 10)
    dst.delete("docs/readme.txt")
    third = verify(None, ledger, source=src, destination=dst)
    assert not third.ok
    assert {k for k, _ in third.mismatches} == {"cars/named.car", "docs/readme.txt"}
    with pytest.raises(Exception, match="differ or are missing"):
        third.raise_for_failures()
    # resume puts back the missing one and refuses to overwrite the changed one
    resume(ledger, source=src, destination=dst, retry_failed=True)
    assert (
        ledger.find("docs/readme.txt").state is ItemState.UNVERIFIABLE
    )  # copied again
    assert ledger.find("cars/named.car").state is ItemState.CONFLICT


def test_overwrite_if_different_replaces_and_skips_identical(tmp_path) -> None:
    """IF_DIFFERENT replaces differing objects (marked replaced) and leaves equal ones."""
    src, dst = LocalStore(tmp_path / "s"), LocalStore(tmp_path / "d")
    fill(src, {"a": b"new content", "b": b"same", "c": b"sized"})
    fill(dst, {"a": b"old", "b": b"same", "c": b"SIZED"})
    p = plan(src, dst, transfer=TransferPolicy(overwrite=Overwrite.IF_DIFFERENT))
    led = Ledger(tmp_path / "l.db")
    execute(p, led, source=src, destination=dst)
    rec = {r.item.key: r for r in led.items()}

    assert contents(dst) == {"a": b"new content", "b": b"same", "c": b"sized"}
    assert rec["a"].replaced
    assert not rec["a"].created
    assert rec["c"].replaced
    assert rec["b"].state is ItemState.VERIFIED
    assert not rec["b"].replaced
    assert rec["b"].checks == ("compare",)


def test_source_digests_and_metadata_fidelity() -> None:
    """MemoryStore vouches for MD5 and SHA-256; metadata is carried or recorded as lost."""
    a, b = MemoryStore("a"), MemoryStore("b")
    a.write("x", b"payload", metadata={"owner": "ana"})
    led_path = None
    p = plan(a, b)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        led_path = os.path.join(tmp, "l.db")
        with Ledger(led_path) as led:
            execute(p, led, source=a, destination=b)
            r = led.find("x")

            assert r.state is ItemState.VERIFIED
            assert set(r.checks) == {"md5:source", "sha256:source"}
            assert r.carried == ("metadata:owner",)
            assert "mtime" in r.lost
            assert b.stat("x").metadata == {"owner": "ana"}
            assert report(led).fidelity_losses == (("mtime", 1),)


def test_metadata_the_destination_cannot_keep_is_lost(tmp_path) -> None:
    a = MemoryStore("a")
    a.write("x", b"payload", metadata={"owner": "ana"})
    d = LocalStore(tmp_path / "d")
    with Ledger(tmp_path / "l.db") as led:
        execute(plan(a, d), led, source=a, destination=d)

        assert set(led.find("x").lost) == {"metadata:owner", "mtime"}


def test_a_source_changed_or_gone_since_the_plan_fails(src, dst, ledger) -> None:
    fill(src, {"grows": b"12345", "goes": b"x", "same-size": b"abc"})
    p = plan(src, dst)
    src.write("grows", b"123456")
    src.delete("goes")
    execute(p, ledger, source=src, destination=dst)

    assert "changed since the plan" in ledger.find("grows").reason
    assert "gone" in ledger.find("goes").reason
    assert ledger.find("grows").transient is False
    assert keys(dst) == ["same-size"]


def test_server_side_copy_checks_after_and_removes_a_bad_object(
    src, dst, ledger
) -> None:
    """Server-side copies are read back once; a failing one is deleted again."""
    good, bad = make_car(3), corrupt(make_car(3, seed=b"b"))
    fill(src, {"good.car": good, "bad.car": bad})
    p = plan(src, dst, transfer=TransferPolicy(server_side_copy=True))
    execute(p, ledger, source=src, destination=dst)

    assert ledger.find("good.car").state is ItemState.VERIFIED
    assert ledger.find("good.car").server_side
    assert ledger.find("good.car").bytes_moved == 0
    assert ledger.find("bad.car").state is ItemState.FAILED
    assert "deleted again" in ledger.find("bad.car").reason
    assert keys(dst) == ["good.car"]


def test_reporters_json_lines_tqdm_and_a_broken_one(src, dst, ledger, tmp_path) -> None:
    """Events reach every reporter; a failing reporter is dropped with a warning."""
    fill(src, {f"f{i}": bytes(100) for i in range(5)})
    out = io.StringIO()
    bar = io.StringIO()

    def broken(event) -> None:
        raise RuntimeError("no")

    with (
        pytest.warns(RuntimeWarning, match="reporter"),
        JsonLinesReporter(tmp_path / "events.jsonl") as jl,
    ):
        execute(
            plan(src, dst),
            ledger,
            source=src,
            destination=dst,
            reporters=[
                broken,
                jl,
                JsonLinesReporter(out),
                TqdmReporter(file=bar, mininterval=0),
            ],
        )
    lines = [
        json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()
    ]

    assert lines[0]["kind"] == "run_started"
    assert lines[-1]["kind"] == "run_finished"
    assert sum(1 for x in lines if x["kind"] == "done") == 5
    assert out.getvalue().count("\n") == len(lines)
    assert "500" in bar.getvalue() or "run" in bar.getvalue()


def test_report_and_status(src, dst, ledger) -> None:
    _scenario(src, dst)
    p = plan(src, dst, verification=ALL)
    execute(p, ledger, source=src, destination=dst)
    rep = report(ledger)
    st = status(ledger)
    data = json.loads(rep.to_json())

    assert rep.failures_count == 2
    assert {e.key for e in rep.failures} == {
        "cars/bad.car",
        next(r.item.key for r in ledger.items() if r.item.key.endswith(".bin")),
    }
    assert rep.conflicts_count == 1
    assert rep.unverifiable == 1
    assert rep.extras == 1
    # failed and conflicting items are not at the destination: not complete
    assert not rep.complete
    assert not st.complete
    assert st.open == "2 failed, 1 conflict"
    assert (
        "complete: no (1 runs); not complete while any item is 2 failed, 1 conflict"
        in (rep.to_markdown())
    )
    assert data["plan_id"] == p.id
    md = rep.to_markdown()
    assert "## Failures" in md
    assert "cars/bad.car" in md
    assert st.counts[ItemState.VERIFIED] == rep.verified
    assert not st.running
    assert st.last_run is not None
    assert st.last_run.stop_reason == "done"


def test_execute_refuses_foreign_stores_and_stages(src, dst, ledger, tmp_path) -> None:
    fill(src, {"a": b"1"})
    p = plan(src, dst)
    other = LocalStore(tmp_path / "other")

    with pytest.raises(Exception, match="plan's destination"):
        execute(p, ledger, source=src, destination=other)
    with pytest.raises(Exception, match="unknown stages"):
        execute(p, ledger, source=src, destination=dst, stages=["nope"])


def test_stores_are_opened_from_the_plan_urls(src, dst, ledger) -> None:
    """Without store objects, the coordinator opens the plan's file:// URLs itself."""
    fill(src, {"a/b": b"12", "c": b"3"})
    p = plan(src, dst)
    execute(p, ledger)

    assert contents(dst) == {"a/b": b"12", "c": b"3"}


def test_memory_stores_must_be_passed_as_objects(tmp_path) -> None:
    """A memory:// URL cannot be reopened; the coordinator says so instead of copying nothing."""
    a, b = MemoryStore("a"), MemoryStore("b")
    fill(a, {"k": b"v"})
    with (
        Ledger(tmp_path / "l.db") as led,
        pytest.raises(Exception, match="memory store"),
    ):
        execute(plan(a, b), led)


def test_empty_objects_and_raw_cid_keys(tmp_path) -> None:
    """Zero-byte objects copy; a raw-codec CID key is a SHA-256 truth, a DAG root CID is not."""
    from carmigrate.cid import CID
    from carmigrate.migrate import key_sha256

    payload = b"raw block bytes"
    raw_key = f"blocks/{CID.from_data(payload)}"
    dag_root = str(CID.from_data(payload, codec="dag-cbor"))
    src, dst = LocalStore(tmp_path / "s"), LocalStore(tmp_path / "d")
    fill(src, {"empty": b"", raw_key: payload, f"roots/{dag_root}": b"not the block"})
    with Ledger(tmp_path / "l.db") as led:
        execute(plan(src, dst), led, source=src, destination=dst)

        assert led.find("empty").state is ItemState.UNVERIFIABLE
        assert led.find(raw_key).checks == ("sha256:key",)
        assert led.find(f"roots/{dag_root}").state is ItemState.UNVERIFIABLE
    assert key_sha256(raw_key) is not None
    assert key_sha256(f"x/{dag_root}.car") is None
    assert key_sha256("plain.txt") is None
    assert contents(dst)["empty"] == b""


def test_every_result_value_is_plain_data(src, dst, ledger) -> None:
    """Results, reports and records go through the one converter to JSON (for --json output)."""
    from carmigrate.migrate import rollback, serde

    _scenario(src, dst)
    p = plan(src, dst, verification=ALL)
    events: list = []
    run = execute(p, ledger, source=src, destination=dst, reporters=[events.append])
    values = [
        run,
        p.summary(),
        report(ledger),
        status(ledger),
        ledger.runs()[-1],
        ledger.item(0),
        ledger.history(0)[0],
        verify(p, ledger, source=src, destination=dst),
        rollback(ledger, "all", destination=dst, dry_run=True),
        *events,
    ]
    for value in values:
        json.dumps(serde.unstructure(value))


def test_verify_after_the_source_moved_on(tmp_path) -> None:
    """A source changed after the run does not fail the destination; it is held to the plan."""
    a, b = MemoryStore("a"), MemoryStore("b")
    fill(a, {"k": b"version 1"})
    p = plan(a, b)
    with Ledger(tmp_path / "l.db") as led:
        execute(p, led, source=a, destination=b)
        a.write("k", b"version two")
        rep = verify(p, led, source=a, destination=b, reread_source=True)

        assert rep.ok
        assert led.find("k").state is ItemState.VERIFIED
        assert "checked against the planned digests" in led.find("k").reason


def _digest_fixture(tmp_path, data: dict[str, bytes]):
    src = LocalStore(tmp_path / "s", create=True)
    dst = LocalStore(tmp_path / "d", create=True)
    fill(src, data)
    return src, dst


def test_any_digest_the_source_vouches_for_is_compared(tmp_path) -> None:
    """A listing that vouches for SHA-512 and Adler-32 (a BagIt manifest, ownCloud's
    checksums) is compared in the one read; a lie fails and nothing is published."""
    import hashlib
    import zlib

    from carmigrate.migrate import ListingEntry

    data = {"a.bin": b"alpha" * 1000, "b.bin": b"bravo" * 1000}
    src, dst = _digest_fixture(tmp_path, data)
    listing = [
        ListingEntry.checked(
            k,
            len(v),
            digests={
                "SHA512": hashlib.sha512(v).hexdigest(),
                "ADLER32": f"{zlib.adler32(v):08x}",
            },
        )
        for k, v in sorted(data.items())
    ]
    # the manifest lies about b.bin's SHA-512
    listing[1] = ListingEntry.checked(
        "b.bin",
        len(data["b.bin"]),
        digests={"sha512": "0" * 128, "adler32": f"{zlib.adler32(data['b.bin']):08x}"},
    )
    policy = VerificationPolicy(checks=["size", "SHA-512", "adler32"])
    p = plan(src, dst, source_listing=listing, verification=policy)
    assert p.header.verification.checks == ("adler32", "sha512", "size")
    with Ledger(tmp_path / "l.db") as ledger:
        execute(p, ledger, source=src, destination=dst)
        a = ledger.find("a.bin")
        b = ledger.find("b.bin")

    assert a is not None
    assert b is not None
    assert a.state is ItemState.VERIFIED
    assert set(a.checks) == {"adler32:source", "sha512:source"}
    assert a.digests == {
        "adler32": f"{zlib.adler32(data['a.bin']):08x}",
        "sha256": hashlib.sha256(data["a.bin"]).hexdigest(),
        "sha512": hashlib.sha512(data["a.bin"]).hexdigest(),
    }
    assert b.state is ItemState.FAILED
    assert "sha512" in (b.reason or "")
    assert "0" * 128 in (b.reason or "")
    assert keys(dst) == ["a.bin"]


def test_recorded_digests_without_a_voucher_stay_unverifiable(tmp_path) -> None:
    """Digests the policy records are computed for every object, but compare
    nothing: with no truth, the item is UNVERIFIABLE, never VERIFIED; verify
    later checks the destination against every recorded digest."""
    import hashlib

    data = {"x/one.txt": b"one" * 300, "x/two.txt": b"two" * 300}
    src, dst = _digest_fixture(tmp_path, data)
    policy = VerificationPolicy(checks=["size"], record=["sha512", "adler32", "md5"])
    p = plan(src, dst, verification=policy)
    with Ledger(tmp_path / "l.db") as ledger:
        execute(p, ledger, source=src, destination=dst)
        recs = {r.item.key: r for r in ledger.items()}
        for k, v in data.items():
            assert recs[k].state is ItemState.UNVERIFIABLE
            assert recs[k].checks == ()
            assert set(recs[k].digests) == {"adler32", "md5", "sha256", "sha512"}
            assert recs[k].digests["sha512"] == hashlib.sha512(v).hexdigest()
        # same size, other bytes: verify names a recorded digest that differs
        path = tmp_path / "d" / "x" / "two.txt"
        path.write_bytes(b"TWO" * 300)
        rep = verify(p, ledger, source=src, destination=dst)
        two = ledger.find("x/two.txt")

    assert two is not None
    assert two.state is ItemState.FAILED
    assert "differs from the" in (two.reason or "")
    assert [k for k, _ in rep.mismatches] == ["x/two.txt"]
    assert not rep.ok


def test_policy_names_are_checked_and_normalised() -> None:
    from carmigrate.errors import PlanError

    p = VerificationPolicy(checks=["SHA-256", Check.CAR, "Adler32", "commp"])
    assert p.checks == ("adler32", "car", "commp", "sha256")
    assert p.digests == ("adler32", "sha256")
    assert p.wants(Check.SHA256)
    assert p.wants("adler32")
    with pytest.raises(PlanError, match="unknown check 'crc64'"):
        VerificationPolicy(checks=["crc64"])
    with pytest.raises(PlanError, match="is a check, not a digest"):
        VerificationPolicy(record=["car"])


def test_markdown_report_escapes_keys(tmp_path) -> None:
    """Keys with pipes, backticks and line breaks keep every table row whole."""
    import re

    src = MemoryStore("esc-src")
    dst = MemoryStore("esc-dst")
    nasty = ["a|b.car", "back`tick`.car", "``x``.car"]
    for k in nasty:
        src.write(k, corrupt(make_car(2, seed=k.encode())))  # all fail: listed
    p = plan(src, dst)
    with Ledger(tmp_path / "l.db") as led:
        execute(p, led, source=src, destination=dst)
        text = report(led).to_markdown()
    section = text.split("## Failures")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == len(nasty)
    for row in rows:
        # four cells: unescaped pipes are the cell borders only
        assert len(re.findall(r"(?<!\\)\|", row)) == 5, row
    assert "``back`tick`.car``" in section
    assert "``` ``x``.car ```" in section
    # stores refuse line breaks in keys; a reason or an inventory key may hold one
    from carmigrate.migrate._report import _cell, _code

    assert _code("two\nlines|x") == "`two\\nlines\\|x`"
    assert _cell("why\nnot|this") == "why not\\|this"
