"""Tagged values, the mapping file, the summary's escaping, and a planning property."""

from __future__ import annotations

import datetime
import decimal
import uuid
from pathlib import Path

import pytest
import schema
from hypothesis import given, settings
from hypothesis import strategies as st
from records_helpers import build

from carmigrate.errors import MappingError, RecordsError
from carmigrate.records import (
    JsonPath,
    KeyRuleKind,
    RecordPlan,
    RecordStage,
    RowAction,
    RowPlan,
    Template,
    decode_value,
    encode_value,
    load_mapping,
    open_database,
    parse_mapping,
    plan_records,
    row_digest,
)

VALUES = [
    None,
    True,
    0,
    -7,
    "x",
    1.5,
    decimal.Decimal("1.50"),
    uuid.UUID(int=5),
    b"\x00\xff",
    datetime.datetime(2024, 1, 2, 3, 4, 5),
    datetime.date(2024, 1, 2),
    datetime.time(1, 2),
    {"a": [1, "b", None]},
    [1, 2],
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_values_round_trip(value: object) -> None:
    back = decode_value(encode_value(value))
    if isinstance(value, decimal.Decimal):
        assert back == value
    else:
        assert back == value
        assert type(back) is type(value)


def test_digest_is_order_free_and_typed() -> None:
    assert row_digest({"a": 1, "b": "x"}) == row_digest({"b": "x", "a": 1})
    assert row_digest({"a": 1}) != row_digest({"a": "1"})
    assert row_digest({"a": 1}) != row_digest({"a": 1.0})
    u = uuid.uuid4()
    assert row_digest({"a": u}) != row_digest({"a": str(u)})
    with pytest.raises(RecordsError):
        row_digest({"a": float("nan")})
    with pytest.raises(RecordsError, match="tagged"):
        decode_value({"$nope": "1"})


def test_json_path_and_template() -> None:
    doc = {"a": {"in": {"x": {"nodeUuid": "a"}}}, "b": {"in": {}}}
    path = JsonPath.parse("*.in.*.nodeUuid")
    assert list(path.values(doc)) == ["a"]
    assert path.rewrite(doc, str.upper)["a"]["in"]["x"]["nodeUuid"] == "A"
    assert doc["a"]["in"]["x"]["nodeUuid"] == "a"
    assert JsonPath.parse("~").rewrite(doc, str.upper).keys() == {"A", "B"}
    for bad in ("a..b", "~.a"):
        with pytest.raises(ValueError, match="JSON path"):
            JsonPath.parse(bad)
    t = Template("{p}/{n}/{name}")
    assert t.parse("P/N/a/b.txt") == {"p": "P", "n": "N", "name": "a/b.txt"}
    assert t.parse("no-slashes") is None
    with pytest.raises(ValueError, match="literal text"):
        Template("{a}{b}")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.toml"
    path.write_text(text)
    return path


def test_load_mapping(tmp_path: Path) -> None:
    m = load_mapping(write(tmp_path, schema.MAPPING_TOML))
    assert [c.name for c in m.contexts] == ["accounts", "studies"]
    assert {(r.table, r.column, r.kind) for r in m.id_rules} >= {
        ("users", None, KeyRuleKind.OFFSET),
        ("projects", "uuid", KeyRuleKind.UUID5),
        ("tags", None, KeyRuleKind.PREFIX),
    }
    assert m.natural_key("users") is not None
    assert m.natural_key("users").casefold
    assert m.source == str(tmp_path / "mapping.toml")


@pytest.mark.parametrize(
    ("text", "table", "key", "words"),
    [
        ("colour = 1\n", None, "colour", "unknown key"),
        (
            '[[ids]]\ntable = "users"\nrule = "shuffle"\n',
            "users",
            "ids[0].rule",
            "unknown ID rule",
        ),
        (
            '[[ids]]\ntable = "users"\nrule = "uuid5"\n',
            "users",
            "ids[0].namespace",
            "namespace",
        ),
        (
            '[[ids]]\ntable = "users"\nrule = "offset"\nmargin = "x"\n',
            "users",
            "ids[0].margin",
            "must be a int",
        ),
        (
            '[[policies]]\nkind = "dangling_reference"\npolicy = "merge"\n',
            None,
            "policies[0].policy",
            "does not apply",
        ),
        (
            '[[policies]]\nkind = "unique_clash"\npolicy = "rename"\ntable = "users"\n',
            "users",
            "policies[0].rename",
            "needs a 'rename'",
        ),
        (
            '[[references]]\ntable = "f"\ncolumn = "k"\ntemplate = "{a}{b}"\ntargets = {a = "x.y"}\n',
            "f",
            "references[0].template",
            "literal text",
        ),
        (
            '[[references]]\ntable = "f"\ncolumn = "k"\njson_path = "a"\ntarget = "nodes"\n',
            "f",
            "references[0].target",
            "table.column",
        ),
        (
            '[[contexts]]\nname = "a"\ntables = ["t"]\n[[contexts]]\nname = "b"\ntables = ["t"]\n',
            "t",
            "contexts[1].tables",
            "contexts 'a' and 'b'",
        ),
        ("version = 2\n", None, "version", "not supported"),
    ],
)
def test_bad_mappings_name_file_table_and_key(
    tmp_path: Path, text: str, table: str | None, key: str, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(MappingError) as e:
        load_mapping(path)
    assert (e.value.path, e.value.table, e.value.key) == (str(path), table, key)
    assert words in str(e.value)
    assert str(path) in str(e.value)


def test_unreadable_mapping(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="not valid TOML"):
        load_mapping(write(tmp_path, "[[ids]\n"))
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping(tmp_path / "missing.toml")


def test_mapping_checked_against_the_schema(tmp_path: Path) -> None:
    url = build(f"sqlite:///{tmp_path}/b.sqlite", schema.SOURCE)
    m = parse_mapping(
        {"ids": [{"table": "users", "column": "nope", "rule": "keep"}]}, path="m.toml"
    )
    with (
        open_database(url) as db,
        pytest.raises(MappingError, match="no column 'nope'") as e,
    ):
        plan_records(db, db, m)
    assert e.value.table == "users"


def test_summary_escapes_names() -> None:
    evil = "<b>x</b>|`y`\nz"
    plan = RecordPlan(
        source="sqlite:///<a>",
        destination="sqlite:///b",
        stages=(RecordStage(name="<s>", tables=(evil,)),),
        rows=(
            RowPlan(
                table=evil,
                key=(1,),
                action=RowAction.INSERT,
                target_key=(1,),
                digest="0",
            ),
        ),
        id_map=(),
    )
    html = plan._repr_html_()
    assert "<b>x</b>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert "&lt;a&gt;" in html
    md = plan.to_markdown()
    assert "\\|" in md
    assert "\\`y\\`" in md
    assert "\nz" not in md.split("| rows |")[1]
    assert plan.summary().to_dict()["by_action"]["insert"] == 1


users_st = st.lists(
    st.tuples(
        st.sampled_from(["a", "A", "b", "c", "d"]),
        st.sampled_from(["x", "y", "z", "w"]),
    ),
    min_size=1,
    max_size=5,
    unique_by=lambda t: t[1],
)


@settings(max_examples=8)
@given(src_users=users_st, dst_users=users_st, data=st.data())
def test_plan_property(tmp_path_factory, src_users, dst_users, data) -> None:
    """ID map is a bijection on inserted rows; every FK of a planned row resolves."""

    def deployment(label, people):
        seen, users = set(), []
        for e, n in people:
            if e.casefold() not in seen or data.draw(st.booleans()):
                users.append(
                    (f"{e}@{label}.test" if e.islower() else f"{e}@X.test", f"{n}")
                )
                seen.add(e.casefold())
        users = list({u[1]: u for u in users}.values())
        users = list({u[0]: u for u in users}.values())
        projects = [
            schema.Project(f"p{i}", u[0], ["n0", "n1"], [(1, "f")])
            for i, u in enumerate(users)
        ]
        return schema.Deployment(
            label=label, users=users, projects=projects, tags=["t"]
        )

    folder = tmp_path_factory.mktemp("prop")
    src = build(f"sqlite:///{folder}/s.sqlite", deployment("s", src_users))
    dst = build(f"sqlite:///{folder}/d.sqlite", deployment("d", dst_users))
    import tomllib

    m = parse_mapping(
        tomllib.loads(
            schema.MAPPING_TOML
            + '\n[[policies]]\nkind = "key_clash"\npolicy = "merge"\n[[policies]]\nkind = "reference_changed"\npolicy = "merge"\n[[policies]]\nkind = "dangling_reference"\npolicy = "skip"\n'
        )
    )
    with open_database(src) as s, open_database(dst) as d:
        plan = plan_records(s, d, m)
        schema_info = d.reflect()
        existing = {
            (t.name, c): {
                next(r[k] for k in (c,)) for r in d.iter_rows(t.name, columns=[c])
            }
            for t in schema_info
            for c in {
                *t.primary_key,
                *(rc for f in t.foreign_keys for rc in f.referred_columns),
            }
            if c in t.column_names
        }
        for t in schema_info:
            for f in t.foreign_keys:
                for rc in f.referred_columns:
                    existing.setdefault(
                        (f.referred_table, rc),
                        {r[rc] for r in d.iter_rows(f.referred_table, columns=[rc])},
                    )
    for table in {r.table for r in plan.rows}:
        inserted = plan.rows_of(table, RowAction.INSERT)
        olds = [r.key for r in inserted]
        news = [r.target_key for r in inserted]
        assert len(set(olds)) == len(olds)
        assert len(set(news)) == len(news)
        pk = schema_info.table(table).primary_key
        if len(pk) == 1:
            assert not {n[0] for n in news} & existing[table, pk[0]]
    with open_database(src) as s:
        for r in plan.rows:
            if r.action is not RowAction.INSERT:
                continue
            info = schema_info.table(r.table)
            (row,) = s.iter_rows(r.table, keys=[r.key])
            final = {**row, **r.changes}
            for fk in info.foreign_keys:
                for col, ref in zip(fk.columns, fk.referred_columns, strict=True):
                    v = final[col]
                    if v is None:
                        continue
                    planned = set(plan.mapped(fk.referred_table, ref).values())
                    assert v in planned or v in existing[fk.referred_table, ref], (
                        r,
                        col,
                    )


def test_plan_lines_are_the_canonical_json_of_their_values() -> None:
    """The plan file's fast line encoders write exactly canonical_json(to_dict())."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from carmigrate.records import IdMapEntry, RowAction, RowPlan
    from carmigrate.records._plan import _id_line, _row_from, _row_line
    from carmigrate.records._values import canonical_json

    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.text(),
        st.uuids(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.decimals(allow_nan=False, allow_infinity=False),
        st.datetimes(),
        st.binary(max_size=8),
        st.lists(st.integers(), max_size=3),
    )
    keys = st.lists(scalars, min_size=1, max_size=3).map(tuple)

    @settings(max_examples=300, deadline=None)
    @given(
        table=st.text(min_size=1),
        key=keys,
        action=st.sampled_from(list(RowAction)),
        target=st.none() | keys,
        changes=st.dictionaries(st.text(), scalars, max_size=4),
        reason=st.text(max_size=5),
        old=scalars,
        new=scalars,
    )
    def check(
        table: str,
        key: tuple[object, ...],
        action: RowAction,
        target: tuple[object, ...] | None,
        changes: dict[str, object],
        reason: str,
        old: object,
        new: object,
    ) -> None:
        row = RowPlan(
            table=table,
            key=key,
            action=action,
            target_key=target,
            digest="ab" * 32,
            changes=changes,
            reason=reason,
        )
        line = _row_line(row)
        assert line == canonical_json({"row": row.to_dict()})
        import json

        assert _row_from(json.loads(line)["row"]).to_dict() == row.to_dict()
        entry = IdMapEntry(table, "c", old, new, action)
        assert _id_line(entry) == canonical_json({"id": entry.to_dict()})

    check()
