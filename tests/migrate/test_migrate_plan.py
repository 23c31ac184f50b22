"""Plans: the planner, the canonical encodings, exact round trips and stable ids."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from migrate_helpers import fill

from carmigrate.digests import algorithm, algorithm_names
from carmigrate.errors import PlanError
from carmigrate.migrate import (
    FORMAT_VERSION,
    Action,
    Check,
    CohortRule,
    IdKind,
    IdRule,
    Limits,
    ListingEntry,
    Overwrite,
    Plan,
    PlanHeader,
    PlanItem,
    Stage,
    TransferPolicy,
    VerificationPolicy,
    load_plan,
    plan,
    redact_url,
    save_plan,
    serde,
)
from carmigrate.storage import MemoryStore

text = st.text(max_size=20)
opt_text = st.none() | text
digest_maps = st.dictionaries(
    st.sampled_from(algorithm_names()), st.just(None), max_size=4
).flatmap(
    lambda names: st.fixed_dictionaries(
        {
            n: st.text(
                "0123456789abcdef",
                min_size=algorithm(n).hex_length,
                max_size=algorithm(n).hex_length,
            )
            for n in names
        }
    )
)
items = st.builds(
    PlanItem,
    source_key=opt_text,
    destination_key=text,
    size=st.integers(0, 2**62),
    action=st.sampled_from(Action),
    stage=text,
    cohort=text,
    digests=digest_maps,
    etag=opt_text,
    cold=st.booleans(),
    destination_size=st.none() | st.integers(0, 2**62),
    reason=opt_text,
    source_id=opt_text,
    new_id=opt_text,
)


@given(items)
def test_item_line_is_canonical_json_of_the_converter(item: PlanItem) -> None:
    """The fast line encoders equal canonical_json(unstructure(item)) and decode back."""
    line = serde.encode_item(item)
    fast = serde.item_line(
        **{f.name: getattr(item, f.name) for f in attrs.fields(PlanItem)}
    )

    lines = serde._LINES
    values = {k: getattr(item, k) for k in lines.keys}
    pieced = lines.body(
        lines.head(*[values[k] for k in lines.head_keys]),
        lines.tail(*[values[k] for k in lines.tail_keys]),
        *[values[k] for k in lines.body_keys],
    )

    assert line == serde.canonical_json(serde.unstructure(item))
    assert fast == line
    assert pieced == line
    # a listing's plain dict of digests (one, or several) encodes the same
    plain = lines.full(*[dict(v) if k == "digests" else v for k, v in values.items()])
    assert plain == line
    assert line.isascii()
    assert serde.decode_item(line) == item


def _stores() -> tuple[MemoryStore, MemoryStore]:
    a, b = MemoryStore("a"), MemoryStore("b")
    fill(a, {f"user{i % 3}/dir/f{i:02d}": bytes([i]) * i for i in range(12)})
    fill(a, {"root.bin": b"r", "user1/dir/f04": b"\x04" * 4})
    fill(
        b,
        {
            "user0/dir/f00": b"",
            "user0/dir/f03": b"zzz",
            "user2/dir/f05": b"\x05" * 5,
            "zz/extra": b"e",
        },
    )
    return a, b


def test_file_plan_equals_memory_plan_and_round_trips(tmp_path) -> None:
    """plan(path=...) streams the same items as the in-memory plan; load(save(p)) == p."""
    a, b = _stores()
    kwargs = {"cohorts": CohortRule(segments=1), "stages": [Stage("first", ["user1"])]}
    mem = plan(a, b, **kwargs)
    disk = plan(a, b, path=tmp_path / "plan.jsonl", **kwargs)
    saved = save_plan(mem, tmp_path / "saved.jsonl")
    loaded = load_plan(tmp_path / "saved.jsonl")
    loaded_mem = load_plan(tmp_path / "plan.jsonl", in_memory=True)

    assert disk == mem
    assert disk.id == mem.id
    assert list(disk.items()) == list(mem.items())
    assert loaded == mem
    assert loaded.header == mem.header
    assert list(loaded.items()) == list(mem.items())
    assert loaded_mem.in_memory
    assert list(loaded_mem.items()) == list(mem.items())
    assert saved.path == str(tmp_path / "saved.jsonl")
    # line 1 is the header (the streamed file pads it with spaces)
    first = (tmp_path / "plan.jsonl").read_text().splitlines()[0]
    assert json.loads(first)["format_version"] == FORMAT_VERSION
    assert first.rstrip() == serde.encode_header(mem.header)
    # one canonical line per item after it
    lines = (tmp_path / "saved.jsonl").read_text().splitlines()
    assert lines[1:] == [serde.encode_item(i) for i in mem.items()]


def test_plan_actions_and_stages() -> None:
    """The diff's actions land in the items; stages follow the cohorts; totals add up."""
    a, b = _stores()
    p = plan(a, b, cohorts=CohortRule(segments=1), stages=[Stage("first", ["user1"])])
    by_key = {i.key: i for i in p.items()}

    assert p.header.stage_names() == ("first", "rest")
    assert by_key["user0/dir/f00"].action is Action.SKIP
    assert by_key["user0/dir/f03"].action is Action.CONFLICT
    assert by_key["user0/dir/f03"].destination_size == 3
    assert by_key["user2/dir/f05"].action is Action.SKIP
    assert by_key["zz/extra"].action is Action.EXTRA
    assert by_key["zz/extra"].source_key is None
    assert by_key["user1/dir/f01"].stage == "first"
    assert by_key["user1/dir/f01"].cohort == "user1"
    assert by_key["root.bin"].cohort == ""
    assert by_key["root.bin"].stage == "rest"
    assert [i.destination_key for i in p.items()] == sorted(by_key)
    assert sum(t.count for t in p.header.totals) == len(p) == len(by_key)
    assert p.header.extras_count == 1
    summary = p.summary()
    assert {a: n for a, n, _ in summary.by_action}["extra"] == 1
    assert summary.transfer_items == sum(
        1 for i in p.items() if i.action is Action.COPY
    )
    assert "first" in summary.to_markdown()
    assert "<table>" in p._repr_html_()


def test_plan_id_is_stable_and_content_addressed() -> None:
    """Same inputs give the same id; any change in policy or items changes it."""
    a, b = _stores()
    p1 = plan(a, b)
    p2 = plan(a, b)
    p3 = plan(a, b, limits=Limits(concurrency=3))
    fill(a, {"new": b"n"})
    p4 = plan(a, b)

    assert p1.id == p2.id
    assert p1.id.startswith("bafyrei")  # CIDv1 dag-cbor sha2-256
    assert len({p1.id, p3.id, p4.id}) == 3
    assert p1.id == serde.plan_id(serde.decode_header(serde.encode_header(p1.header)))


def test_header_round_trips_every_policy() -> None:
    """Every policy value survives the header's JSON round trip exactly, id included."""
    header = PlanHeader(
        source="s3://a/b",
        destination="file:///x",
        prefix="p/",
        stages=(Stage("s1", ["u*", "v"]), Stage("s2")),
        cohorts=CohortRule(pattern=r"^(?P<cohort>[^/]+)/"),
        verification=VerificationPolicy(
            checks=[Check.COMMP, Check.SHA256], car_pattern=r"\.car$", key_cids=False
        ),
        transfer=TransferPolicy(
            server_side_copy=True, overwrite=Overwrite.IF_DIFFERENT, restore_poll=5
        ),
        limits=Limits(
            concurrency=2,
            items_per_second=10,
            bytes_per_second=1e6,
            max_bytes=5,
            max_seconds=3,
            retries=0,
        ),
        ids=IdRule(kind=IdKind.UUID, pattern=r"(\d+)", namespace=str(uuid.UUID(int=7))),
        item_count=0,
        items_digest="0" * 64,
    )
    back = serde.decode_header(serde.encode_header(header))

    assert back == header
    assert back.id == header.id
    assert back.limits.max_seconds == 3.0


def test_load_plan_refuses_edited_or_newer_files(tmp_path) -> None:
    """An edited item, a cut file or a newer format version is a PlanError."""
    a, b = _stores()
    path = tmp_path / "p.jsonl"
    plan(a, b, path=path)
    lines = path.read_text().splitlines(keepends=True)
    (tmp_path / "edited.jsonl").write_text(
        "".join([*lines[:2], lines[2].replace('"size":', '"size":1'), *lines[3:]])
    )
    (tmp_path / "cut.jsonl").write_text("".join(lines[:-1]))
    newer = json.loads(lines[0])
    newer["format_version"] = FORMAT_VERSION + 1
    (tmp_path / "newer.jsonl").write_text(json.dumps(newer) + "\n" + "".join(lines[1:]))
    (tmp_path / "junk.jsonl").write_text("hello\n")

    with pytest.raises(PlanError, match="digest"):
        load_plan(tmp_path / "edited.jsonl")
    with pytest.raises(PlanError, match="items but its header says"):
        load_plan(tmp_path / "cut.jsonl")
    with pytest.raises(PlanError, match="newer"):
        load_plan(tmp_path / "newer.jsonl")
    with pytest.raises(PlanError, match="not a plan header"):
        load_plan(tmp_path / "junk.jsonl")
    assert (
        load_plan(tmp_path / "edited.jsonl", check=False).header.item_count
        == len(lines) - 1
    )


def test_urls_never_carry_credentials() -> None:
    """User info and secret-looking query parameters are stripped from plan URLs."""
    assert redact_url("s3://key:secret@bucket/p") == "s3://bucket/p"
    assert (
        redact_url("https://h/x?X-Amz-Signature=abc&region=eu&token=t")
        == "https://h/x?region=eu"
    )
    assert redact_url("/local/path") == "/local/path"
    p = plan("https://u:pw@h/a", "s3://b", source_listing=[], destination_listing=[])
    assert p.header.source == "https://h/a"


def test_cohort_rules() -> None:
    """Segments count folders only; a pattern takes its cohort group, or group 1."""
    assert CohortRule(segments=2).cohort_of("a/b/c/d") == "a/b"
    assert CohortRule(segments=2).cohort_of("a/file") == "a"
    assert CohortRule(segments=1).cohort_of("file") == ""
    assert (
        CohortRule(pattern=r"^users/(?P<cohort>\w+)/").cohort_of("users/bob/x") == "bob"
    )
    assert CohortRule(pattern=r"^(\d+)-").cohort_of("42-x") == "42"
    assert CohortRule(pattern=r"^x").cohort_of("y") == ""
    with pytest.raises(PlanError):
        CohortRule(pattern="(")


def test_id_rules_make_a_reproducible_map() -> None:
    """PREFIX, OFFSET and UUID rules; the UUID namespace recorded makes the map reproducible."""
    src = [ListingEntry(f"projects/{n}/data.bin", 3) for n in (7, 12, 105)]
    oc = plan(
        "file:///s",
        "file:///d",
        source_listing=src,
        destination_listing=[],
        ids=IdRule(kind=IdKind.PREFIX, pattern=r"projects/(\d+)/", prefix="oc10$1!"),
    )
    off = plan(
        "file:///s",
        "file:///d",
        source_listing=src,
        destination_listing=[],
        ids=IdRule(
            kind=IdKind.OFFSET,
            pattern=r"projects/(\d+)/",
            offset=1000,
            rewrite_key=True,
        ),
    )
    uu = plan(
        "file:///s",
        "file:///d",
        source_listing=src,
        destination_listing=[],
        ids=IdRule(kind=IdKind.UUID, pattern=r"projects/(\d+)/"),
    )

    assert list(oc.id_map()) == [
        ("105", "oc10$1!105"),
        ("12", "oc10$1!12"),
        ("7", "oc10$1!7"),
    ]
    assert [i.destination_key for i in off.items()] == [
        "projects/1007/data.bin",
        "projects/1012/data.bin",
        "projects/1105/data.bin",
    ]
    assert dict(off.id_map()) == {"7": "1007", "12": "1012", "105": "1105"}
    ns = uu.header.ids.namespace
    assert ns is not None
    assert dict(uu.id_map()) == {
        n: str(uuid.uuid5(uuid.UUID(ns), n)) for n in ("7", "12", "105")
    }
    with pytest.raises(PlanError, match="not an integer"):
        plan(
            "file:///s",
            "file:///d",
            source_listing=[ListingEntry("projects/x/y", 1)],
            destination_listing=[],
            ids=IdRule(kind=IdKind.OFFSET, pattern=r"projects/(\w+)/"),
        )
    with pytest.raises(PlanError, match="two source keys map to one"):
        plan(
            "file:///s",
            "file:///d",
            source_listing=[ListingEntry("n01/x", 1), ListingEntry("n1/x", 1)],
            destination_listing=[],
            ids=IdRule(kind=IdKind.OFFSET, pattern=r"^n(\d+)/", rewrite_key=True),
        )


def test_planner_refuses_bad_input() -> None:
    """Repeated stage names, unsorted presorted listings and URL-only stores fail early."""
    with pytest.raises(PlanError, match="unique"):
        plan(
            "file:///s",
            "file:///d",
            source_listing=[],
            destination_listing=[],
            stages=[Stage("a"), Stage("a")],
        )
    with pytest.raises(PlanError, match="not sorted"):
        plan(
            "file:///s",
            "file:///d",
            presorted=True,
            source_listing=[ListingEntry("b", 1), ListingEntry("a", 1)],
            destination_listing=[],
        )
    with pytest.raises(PlanError, match="source_listing"):
        plan("file:///s", MemoryStore())


def test_unsorted_listings_are_sorted_and_prefix_applies() -> None:
    """Given listings in any order are sorted externally; a prefix filters both sides."""
    src = [ListingEntry(k, 1) for k in ("p/c", "q/x", "p/a", "p/b")]
    dst = [ListingEntry(k, 1) for k in ("p/z", "p/a")]
    p = plan(
        "file:///s",
        "file:///d",
        source_listing=src,
        destination_listing=dst,
        prefix="p/",
        run_size=2,
    )

    assert [(i.key, i.action.value) for i in p.items()] == [
        ("p/a", "verify"),
        ("p/b", "copy"),
        ("p/c", "copy"),
        ("p/z", "extra"),
    ]


def test_from_items_builds_a_consistent_header() -> None:
    """Plan.from_items computes count, digest and totals like the planner."""
    a, b = _stores()
    p = plan(a, b)
    again = Plan.from_items(
        p.items(), source=p.header.source, destination=p.header.destination
    )

    assert again == p


def test_unsorted_listings_keep_their_digests_through_the_sort(tmp_path) -> None:
    """Digests ride the external sort (as JSON text) and come out the same,
    in memory and in the plan file, and the diff still decides on them."""
    md5 = {f"k{i}": f"{i:032x}" for i in range(50)}
    src = [
        ListingEntry.checked(
            f"k{i}", 10, digests={"md5": md5[f"k{i}"], "adler32": f"{i:08x}"}
        )
        for i in reversed(range(50))
    ]
    dst = [
        ListingEntry.checked(f"k{i}", 10, digests={"md5": md5[f"k{i}"]})
        for i in range(0, 50, 2)
    ]
    for path in (None, tmp_path / "p.jsonl"):
        p = plan(
            "memory://s",
            "memory://d",
            source_listing=src,
            destination_listing=dst,
            run_size=7,
            path=path,
        )
        items = {i.key: i for i in p.items()}
        assert items["k3"].digests == {"adler32": f"{3:08x}", "md5": md5["k3"]}
        assert items["k3"].action is Action.COPY
        assert items["k4"].action is Action.SKIP
        assert items["k4"].reason == "same size and md5"


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("a\tb", "control character"),
        ("a//b", "empty"),
        ("./x", "'.'"),
        ("a/../b", "'..'"),
        ("//lead", "absolute"),
        ("dir/", "ends with"),
        ("k" * 1100, "longer than 1024"),
    ],
)
def test_keys_that_can_never_be_written_are_refused_at_plan_time(
    key: str, rule: str
) -> None:
    """A given listing's key that no store accepts is planned UNMIGRATABLE, naming key and rule."""
    listing = [ListingEntry("fine/key", 1), ListingEntry(key, 1)]
    made = plan(
        "memory://s",
        MemoryStore("d"),
        source_listing=listing,
        destination_listing=[],
    )
    items = {i.destination_key: i for i in made.items()}
    assert items["fine/key"].action is Action.COPY
    bad = items[key]
    assert bad.action is Action.UNMIGRATABLE
    assert bad.reason is not None
    assert "can never be written" in bad.reason
    assert repr(key)[:40] in bad.reason
    assert rule in bad.reason
    assert made.summary().unmigratable == 1


def test_an_id_rule_that_makes_a_bad_key_is_refused() -> None:
    src = MemoryStore("s")
    src.write("p/abc/data.bin", b"x")
    src.write("p/ok/data.bin", b"y")
    made = plan(
        src,
        MemoryStore("d"),
        ids=IdRule(
            kind=IdKind.PREFIX, prefix="../", pattern="p/(abc)/", rewrite_key=True
        ),
    )
    by_source = {i.source_key: i for i in made.items()}
    bad = by_source["p/abc/data.bin"]
    assert bad.action is Action.UNMIGRATABLE
    assert bad.reason is not None
    assert "planned for source key 'p/abc/data.bin'" in bad.reason
    assert by_source["p/ok/data.bin"].action is Action.COPY


@pytest.mark.parametrize("position", [0, 8192, 9_999])
@pytest.mark.parametrize("bad", ["x\nb", "x/./y", "x/../y", "x//y", "x\x7f", "x/"])
@pytest.mark.parametrize("in_memory", [False, True])
def test_a_bad_key_anywhere_in_a_long_listing_is_found(
    position: int, bad: str, in_memory: bool, tmp_path: Path
) -> None:
    """Keys are checked a batch at a time: a bad key in any batch is planned
    UNMIGRATABLE, every other item as before, and the totals agree."""
    keys = [f"k{i:06d}" for i in range(10_000)]
    keys[position] = keys[position] + bad
    listing = [ListingEntry(k, 1 + i % 7) for i, k in enumerate(keys)]
    made = plan(
        "memory://s",
        MemoryStore("d"),
        source_listing=listing,
        destination_listing=[],
        presorted=True,
        path=None if in_memory else tmp_path / "p.jsonl",
    )
    items = list(made.items())
    assert [i.destination_key for i in items] == keys
    for i, item in enumerate(items):
        if i == position:
            assert item.action is Action.UNMIGRATABLE
            assert item.reason is not None
            assert repr(keys[position]) in item.reason
        else:
            assert item.action is Action.COPY, item
    by_action = {a: (n, b) for a, n, b in made.summary().by_action}
    assert by_action["unmigratable"] == (1, 1 + position % 7)
    assert by_action["copy"][0] == 9_999
    assert made.header.item_count == 10_000
    if not in_memory:
        assert load_plan(tmp_path / "p.jsonl").id == made.id


@given(
    st.dictionaries(
        st.text("abc/", min_size=1, max_size=6).filter(
            lambda k: not k.startswith("/") and not k.endswith("/") and "//" not in k
        ),
        st.tuples(
            st.integers(0, 3),
            st.sampled_from([None, "md5", "both", "sha1"]),
            st.sampled_from([None, "same", "other", "md5", "both"]),
        ),
        max_size=25,
    ),
    st.integers(1, 7),
    st.booleans(),
)
def test_unsorted_listings_plan_as_sorted_ones(
    spec: dict[str, tuple[int, str | None, str | None]], run_size: int, in_memory: bool
) -> None:
    """Through the external sort (digests carried as items or JSON text, spilled
    in runs of any size) a plan has the same items as from sorted listings."""
    import tempfile

    md5, sha1 = "0" * 31 + "1", "0" * 39 + "2"

    def digests(kind: str | None) -> dict[str, str] | None:
        return {
            None: None,
            "md5": {"md5": md5},
            "sha1": {"sha1": sha1},
            "both": {"md5": md5, "sha1": sha1},
            "same": {"md5": md5},
            "other": {"md5": "f" * 32},
        }[kind]

    keys = sorted(spec)
    src = [ListingEntry(k, spec[k][0], None, digests(spec[k][1])) for k in keys]
    dst = [
        ListingEntry(k, spec[k][0], None, digests(spec[k][2]))
        for k in keys
        if spec[k][2] is not None
    ]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for presorted in (True, False):
            made = plan(
                "memory://s",
                "memory://d",
                source_listing=src if presorted else list(reversed(src)),
                destination_listing=dst if presorted else list(reversed(dst)),
                presorted=presorted,
                run_size=run_size,
                path=None if in_memory else os.path.join(tmp, f"p{presorted}.jsonl"),
            )
            results.append(
                [(i.key, i.action, i.reason, dict(i.digests)) for i in made.items()]
            )
    assert results[0] == results[1]
