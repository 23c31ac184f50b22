"""carmigrate.records on SQLite files and a private PostgreSQL 15 cluster.

Every test taking ``pair`` or ``new_database`` runs once per engine.
"""

from __future__ import annotations

import hashlib
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
import schema
import sqlalchemy as sa
from records_helpers import build

from carmigrate.errors import PreflightError, RecordsError
from carmigrate.records import (
    FindingKind,
    RecordMapping,
    Resolution,
    RowAction,
    Scope,
    load_record_plan,
    open_database,
    parse_mapping,
    plan_records,
    row_digest,
    save_record_plan,
)


def mapping(extra: str = "", *, drop_policies: bool = False) -> RecordMapping:
    text = schema.MAPPING_TOML
    if drop_policies:
        text = text[: text.index("[[policies]]")]
    return parse_mapping(tomllib.loads(text + extra))


MERGE_MEMBERSHIPS = """
[[policies]]
kind = "key_clash"
table = "user_to_groups"
policy = "merge"
"""


def plan_of(
    pair: tuple[str, str], m: RecordMapping | None = None, scope: Scope | None = None
):
    with open_database(pair[0]) as src, open_database(pair[1]) as dst:
        return plan_records(
            src, dst, m if m is not None else mapping(MERGE_MEMBERSHIPS), scope
        )


def by_key(plan, table: str) -> dict[tuple[Any, ...], Any]:
    return {r.key: r for r in plan.rows_of(table)}


# -- item 1: reflection, streaming, digest -------------------------------------------


def test_reflection(pair: tuple[str, str]) -> None:
    with open_database(pair[0]) as db:
        s = db.reflect()
    assert {t.name for t in s} == {
        "groups",
        "users",
        "user_to_groups",
        "projects",
        "nodes",
        "files",
        "tags",
    }
    users = s.table("users")
    assert users.primary_key == ("id",)
    assert [u.columns for u in users.unique] == [("name",)]
    (fk,) = users.foreign_keys
    assert (fk.columns, fk.referred_table, fk.referred_columns) == (
        ("primary_gid",),
        "groups",
        ("gid",),
    )
    assert fk.nullable
    assert s.table("user_to_groups").primary_key == ("uid", "gid")
    (nfk,) = s.table("nodes").foreign_keys
    assert (nfk.referred_table, nfk.referred_columns) == ("projects", ("uuid",))
    (trigger,) = s.triggers
    assert (trigger.name, trigger.table, trigger.timing, trigger.events) == (
        "user_primary_group",
        "users",
        "AFTER",
        ("INSERT",),
    )
    if s.dialect == "postgresql":
        assert fk.deferrable


def test_rows_stream_in_key_order_in_small_batches(pair: tuple[str, str]) -> None:
    with open_database(pair[0]) as db:
        rows = list(db.iter_rows("nodes", batch_size=2))
        assert [r["id"] for r in rows] == [1, 2, 3, 4]
        assert all(isinstance(r["uuid"], uuid.UUID) for r in rows)
        memberships = list(db.iter_rows("user_to_groups", batch_size=1))
        keys = [(r["uid"], r["gid"]) for r in memberships]
        assert keys == sorted(keys)
        assert len(keys) == 6
        picked = list(db.iter_rows("nodes", keys=[(3,), (1,)], batch_size=1))
        assert [r["id"] for r in picked] == [1, 3]
        projects = list(
            db.iter_rows("projects", where=db.table("projects").c.name == "gamma")
        )
        assert [p["name"] for p in projects] == ["gamma"]
        assert isinstance(projects[0]["workbench"], dict)
        with pytest.raises(RecordsError, match="batch_size"):
            next(db.iter_rows("nodes", batch_size=0))


def test_digests_agree_across_engines(postgres_socket: str, tmp_path: Path) -> None:
    lite = build(f"sqlite:///{tmp_path}/b.sqlite", schema.SOURCE)
    admin = sa.create_engine(
        f"postgresql+psycopg://postgres@/postgres?host={postgres_socket}&port=5499",
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS digests WITH (FORCE)")
        conn.exec_driver_sql("CREATE DATABASE digests")
    pg = build(
        f"postgresql+psycopg://postgres@/digests?host={postgres_socket}&port=5499",
        schema.SOURCE,
    )
    try:
        with open_database(lite) as a, open_database(pg) as b:
            for table in a.reflect():
                da = [row_digest(r) for r in a.iter_rows(table.name)]
                db_ = [row_digest(r) for r in b.iter_rows(table.name)]
                assert da == db_, table.name
                assert da
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql("DROP DATABASE IF EXISTS digests WITH (FORCE)")
        admin.dispose()


# -- item 2: scopes ----------------------------------------------------------------


def test_closure_with_stop_tables(pair: tuple[str, str]) -> None:
    with open_database(pair[0]) as src:
        selection = Scope.closure("projects", [1]).select(src, mapping())
    assert selection["projects"] == {(1,)}
    assert selection["nodes"] == {(1,), (2,), (3,)}
    assert selection["files"] == {(1,), (2,)}
    # the owner (carol, id 3) and her primary group come along; users and
    # groups are stop tables, so nothing reached only through them does
    assert selection["users"] == {(3,)}
    assert selection["groups"] == {(3,)}
    assert "user_to_groups" not in selection
    assert "tags" not in selection


def test_closure_without_stop_tables_reaches_further(pair: tuple[str, str]) -> None:
    with open_database(pair[0]) as src:
        selection = Scope.closure("projects", [1]).select(src, RecordMapping())
    # carol's memberships lead to the shared group, and from it to everyone
    assert {(3, 3), (3, 4)} <= selection["user_to_groups"]
    assert selection["users"] == {(1,), (2,), (3,)}
    assert selection["projects"] == {(1,), (2,)}
    with open_database(pair[0]) as src, pytest.raises(RecordsError, match="key"):
        Scope.closure("projects", [99]).select(src, RecordMapping())


def test_contexts_scope_plans_only_their_tables(pair: tuple[str, str]) -> None:
    plan = plan_of(
        pair, scope=Scope.of_contexts("studies"), m=mapping(MERGE_MEMBERSHIPS)
    )
    assert [s.name for s in plan.stages] == ["studies"]
    assert {r.table for r in plan.rows} == {"projects", "nodes", "files", "tags"}


# -- item 3: ID rules and implicit references ------------------------------------------


def test_id_rules(pair: tuple[str, str]) -> None:
    plan = plan_of(pair)
    offsets = {(t, c): o for t, c, o in plan.offsets}
    assert offsets["projects", "id"] == 1 + 100  # destination max 1, margin 100
    assert offsets["users", "id"] == 2 + 1000
    projects = plan.mapped("projects", "id")
    assert projects == {1: 102, 2: 103}
    assert plan.mapped("tags", "id") == {"blue": "b_blue", "red": "b_red"}
    with open_database(pair[0]) as src:
        olds = {r["id"]: r["uuid"] for r in src.iter_rows("projects")}
        node_olds = {r["uuid"] for r in src.iter_rows("nodes")}
    puuids = plan.mapped("projects", "uuid")
    assert puuids == {u: uuid.uuid5(schema.NS, str(u)) for u in olds.values()}
    nuuids = plan.mapped("nodes", "uuid")
    assert set(nuuids) == node_olds
    assert len(set(nuuids.values())) == 4
    assert not set(nuuids.values()) & node_olds
    # the foreign key nodes.project_uuid follows projects.uuid's rule
    for r in plan.rows_of("nodes", RowAction.INSERT):
        assert r.changes["project_uuid"] in puuids.values()
    # kept keys (no rule): memberships keep the shape (uid, gid), mapped through FKs
    carol = plan.mapped("users", "id")[3]
    assert (3, 3) in by_key(plan, "user_to_groups")
    assert by_key(plan, "user_to_groups")[3, 3].target_key == (
        carol,
        plan.mapped("groups", "gid")[3],
    )


def test_implicit_references_are_rewritten_structurally(pair: tuple[str, str]) -> None:
    plan = plan_of(pair)
    nuuids = {str(k): str(v) for k, v in plan.mapped("nodes", "uuid").items()}
    puuids = {str(k): str(v) for k, v in plan.mapped("projects", "uuid").items()}
    with open_database(pair[0]) as src:
        before = {r["id"]: r["workbench"] for r in src.iter_rows("projects")}
    beta = by_key(plan, "projects")[1,].changes["workbench"]
    assert sorted(beta) == sorted(nuuids[k] for k in before[1])
    for old_key, node in before[1].items():
        new = beta[nuuids[old_key]]
        assert new["label"] == node["label"]
        if node["inputs"]:
            assert new["inputs"]["in"] == {
                "nodeUuid": nuuids[node["inputs"]["in"]["nodeUuid"]],
                "output": "out",
            }
    keys = {o.old: o.new for o in plan.object_keys}
    assert len(keys) == 3
    for old, new in keys.items():
        p, n, name = old.split("/")
        assert new == f"{puuids[p]}/{nuuids[n]}/{name}"


def test_a_template_value_is_never_text_replaced(pair: tuple[str, str]) -> None:
    """A node id that also appears in a file's name stays in the name."""
    engine = sa.create_engine(pair[0])
    with engine.begin() as conn:
        n = conn.execute(
            sa.select(schema.nodes.c.uuid).where(schema.nodes.c.id == 1)
        ).scalar_one()
        p = conn.execute(
            sa.select(schema.projects.c.uuid).where(schema.projects.c.id == 1)
        ).scalar_one()
        conn.execute(
            schema.files.update()
            .where(schema.files.c.id == 1)
            .values(object_key=f"{p}/{n}/copy-of-{n}")
        )
    engine.dispose()
    plan = plan_of(pair)
    (change,) = [o for o in plan.object_keys if o.key == (1,)]
    assert change.new.endswith(f"/copy-of-{n}")
    assert str(n) not in change.new.rsplit("/", 1)[0]


# -- item 4: merges and findings ---------------------------------------------------------


def test_natural_key_merge_and_case_variant_policies(pair: tuple[str, str]) -> None:
    plan = plan_of(pair)
    alice = by_key(plan, "users")[1,]
    assert alice.action is RowAction.MERGE
    assert alice.target_key == (1,)
    assert plan.mapped("users", "id")[1] == 1
    (finding,) = [f for f in plan.findings if f.kind is FindingKind.CASE_VARIANT]
    assert finding.key == (1,)
    assert finding.policy is Resolution.MERGE
    assert "Alice@Example.org" in finding.message
    # gamma (owned by alice) is inserted, owned by the destination's alice
    gamma = by_key(plan, "projects")[2,]
    assert gamma.action is RowAction.INSERT
    assert "owner_id" not in gamma.changes

    for policy, action in [("skip", RowAction.SKIP), ("fail", RowAction.CONFLICT)]:
        m = mapping(
            MERGE_MEMBERSHIPS
            + f'\n[[policies]]\nkind = "case_variant"\ntable = "users"\npolicy = "{policy}"\n'
            + '\n[[policies]]\nkind = "dangling_reference"\npolicy = "skip"\n'
        )
        plan = plan_of(pair, m)
        assert by_key(plan, "users")[1,].action is action
        # whatever needed alice is now dangling and skipped, never silently kept
        assert by_key(plan, "projects")[2,].action is RowAction.SKIP
        assert 1 not in plan.mapped("users", "id")


def test_unique_clash_policies(pair: tuple[str, str]) -> None:
    plan = plan_of(pair)
    bob = by_key(plan, "users")[2,]
    clash = [
        f
        for f in plan.findings
        if f.kind is FindingKind.UNIQUE_CLASH and f.table == "users"
    ]
    assert [f.policy for f in clash] == [Resolution.RENAME]
    # bob is renamed, but his primary group merged into the other bob's:
    # the merge would change the group's owner -> reference_changed, fail
    changed = [f for f in plan.findings if f.kind is FindingKind.REFERENCE_CHANGED]
    assert [(f.table, f.key, f.policy) for f in changed] == [
        ("groups", (2,), Resolution.FAIL)
    ]
    assert bob.action is RowAction.CONFLICT  # its primary group is in conflict
    # renaming the groups too resolves it: everything of bob is inserted
    rename_groups = MERGE_MEMBERSHIPS + (
        '\n[[policies]]\nkind = "unique_clash"\ntable = "groups"\npolicy = "rename"\nrename = "{value}_{n}"\n'
    )
    plan = plan_of(pair, mapping(rename_groups))
    # but then merged alice would point at her renamed source group, not at
    # her primary group at the destination: found, and failing by default
    (changed,) = [f for f in plan.findings if f.kind is FindingKind.REFERENCE_CHANGED]
    assert (changed.table, changed.key, changed.columns) == (
        "users",
        (1,),
        ("primary_gid",),
    )
    assert by_key(plan, "users")[1,].action is RowAction.CONFLICT
    accept = '\n[[policies]]\nkind = "reference_changed"\ntable = "users"\npolicy = "merge"\n'
    plan = plan_of(pair, mapping(rename_groups + accept))
    assert by_key(plan, "users")[1,].action is RowAction.MERGE
    bob = by_key(plan, "users")[2,]
    assert bob.action is RowAction.INSERT
    assert bob.changes["name"] == "bob_1"
    assert by_key(plan, "groups")[2,].changes["name"] == "primary:bob_1"
    assert by_key(plan, "groups")[1,].changes["name"] == "primary:alice_1"
    assert plan.ok
    for policy, action in [("skip", RowAction.SKIP), ("fail", RowAction.CONFLICT)]:
        m = mapping(
            MERGE_MEMBERSHIPS
            + f'\n[[policies]]\nkind = "unique_clash"\npolicy = "{policy}"\n'
            + '\n[[policies]]\nkind = "dangling_reference"\npolicy = "skip"\n',
            drop_policies=True,
        )
        plan = plan_of(pair, m)
        assert by_key(plan, "users")[2,].action is action
    merge_users = mapping(
        '\n[[policies]]\nkind = "unique_clash"\npolicy = "merge"\n'
        '\n[[policies]]\nkind = "case_variant"\npolicy = "merge"\n'
        '\n[[policies]]\nkind = "reference_changed"\npolicy = "merge"\n'
        + MERGE_MEMBERSHIPS,
        drop_policies=True,
    )
    plan = plan_of(pair, merge_users)
    assert by_key(plan, "users")[2,].action is RowAction.MERGE
    assert plan.mapped("users", "id")[2] == 2


def test_key_clash_policies_with_kept_ids(pair: tuple[str, str]) -> None:
    base = tomllib.loads(schema.MAPPING_TOML)
    base["ids"] = [r for r in base["ids"] if r["table"] != "tags"]
    plan = plan_of(pair, parse_mapping(base))
    red = by_key(plan, "tags")["red",]
    assert red.action is RowAction.CONFLICT
    (f,) = [
        f
        for f in plan.findings
        if f.kind is FindingKind.KEY_CLASH and f.table == "tags"
    ]
    assert "'red'" in f.message
    assert f.policy is Resolution.FAIL
    with pytest.raises(PreflightError) as e:
        plan.raise_for_conflicts()
    assert f in e.value.findings
    for policy, action, target in [
        ("merge", RowAction.MERGE, ("red",)),
        ("skip", RowAction.SKIP, None),
        ("rename", RowAction.INSERT, ("red_1",)),
    ]:
        extra = {"kind": "key_clash", "table": "tags", "policy": policy}
        if policy == "rename":
            extra["rename"] = "{value}_{n}"
        data = {**base, "policies": [*base["policies"], extra]}
        red = by_key(plan_of(pair, parse_mapping(data)), "tags")["red",]
        assert (red.action, red.target_key) == (action, target)


@pytest.mark.parametrize("policy", ["skip", "fail"])
def test_dangling_references_cascade(pair: tuple[str, str], policy: str) -> None:
    """Studies without their owners: users.id has an offset rule, so no owner resolves."""
    m = mapping(f'\n[[policies]]\nkind = "dangling_reference"\npolicy = "{policy}"\n')
    plan = plan_of(pair, m, Scope.of_contexts("studies"))
    action = RowAction.SKIP if policy == "skip" else RowAction.CONFLICT
    for table in ("projects", "nodes", "files"):
        assert {r.action for r in plan.rows_of(table)} == {action}, table
    assert {r.action for r in plan.rows_of("tags")} == {RowAction.INSERT}
    dangling = [f for f in plan.findings if f.kind is FindingKind.DANGLING_REFERENCE]
    assert {f.table for f in dangling} == {"projects", "nodes", "files"}
    owner = next(f for f in dangling if f.table == "projects")
    assert "owner_id" in owner.columns
    assert "users.id" in owner.message
    assert not plan.mapped("projects", "id")
    assert plan.object_keys == ()


# -- item 5: the plan as a value ---------------------------------------------------------


def test_stages_and_cycle_breaks(pair: tuple[str, str]) -> None:
    plan = plan_of(pair)
    assert [s.name for s in plan.stages] == ["accounts", "studies"]
    accounts, studies = plan.stages
    assert set(accounts.tables) == {"users", "groups", "user_to_groups"}
    assert accounts.tables[-1] == "user_to_groups"
    assert studies.tables.index("projects") < studies.tables.index("nodes")
    assert studies.tables.index("projects") < studies.tables.index("files")
    methods = {(b.table, b.columns): b.method for b in accounts.cycle_breaks}
    deferred = "deferred" if plan.destination.startswith("postgresql") else "update"
    assert methods == {
        ("users", ("primary_gid",)): deferred,
        ("groups", ("owner_id",)): "update",
    }
    assert studies.cycle_breaks == ()


def test_contexts_out_of_order_are_refused(pair: tuple[str, str]) -> None:
    data = tomllib.loads(schema.MAPPING_TOML)
    data["contexts"].reverse()
    from carmigrate.errors import MappingError

    with pytest.raises(MappingError, match="comes before"):
        plan_of(pair, parse_mapping(data))


def _snapshot(url: str) -> Any:
    if url.startswith("sqlite"):
        path = sa.make_url(url).database
        assert path is not None
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    engine = sa.create_engine(url)
    out = {}
    with engine.connect() as conn:
        for t in schema.metadata.sorted_tables:
            out[t.name] = conn.execute(sa.select(t).order_by(*t.primary_key)).all()
    engine.dispose()
    return out


def test_planning_writes_nothing(pair: tuple[str, str]) -> None:
    before = [_snapshot(u) for u in pair]
    plan = plan_of(pair)
    assert plan.rows
    assert [_snapshot(u) for u in pair] == before


def test_summary_and_round_trip(pair: tuple[str, str], tmp_path: Path) -> None:
    plan = plan_of(pair)
    summary = plan.summary()
    assert summary.count("insert") + summary.count("merge") + summary.count(
        "skip"
    ) + summary.count("conflict") == len(plan.rows)
    md = plan.to_markdown()
    assert "| accounts | users | merge | 1 |" in md
    assert plan.to_dict()["counts"]["rows"] == len(plan.rows)
    path = tmp_path / "plan.jsonl"
    save_record_plan(plan, path)
    back = load_record_plan(path)
    assert back == plan
    assert back.id == plan.id
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], *lines[2:]]) + "\n")
    with pytest.raises(RecordsError, match="lines_sha256"):
        load_record_plan(path)


def test_a_destination_foreign_key_the_source_lacks_is_left_null(
    tmp_path: Path,
) -> None:
    """A newer destination schema may add a nullable foreign key: rows go in without it."""
    import sqlite3

    from carmigrate.migrate import Ledger, execute_records

    src, dst = tmp_path / "s.db", tmp_path / "d.db"
    with sqlite3.connect(src) as s:
        s.executescript(
            "CREATE TABLE owners (id INTEGER PRIMARY KEY);"
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);"
            "INSERT INTO owners VALUES (1); INSERT INTO items VALUES (1, 'a');"
        )
    with sqlite3.connect(dst) as d:
        d.executescript(
            "CREATE TABLE owners (id INTEGER PRIMARY KEY);"
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, "
            "owner_id INTEGER REFERENCES owners(id));"
        )
    with (
        open_database(f"sqlite:///{src}") as a,
        open_database(f"sqlite:///{dst}") as b,
    ):
        plan = plan_records(a, b)
    assert plan.summary().count("insert") == 2
    with Ledger(tmp_path / "l.db") as lg:
        execute_records(
            plan, lg, source=f"sqlite:///{src}", destination=f"sqlite:///{dst}"
        )
    with sqlite3.connect(dst) as d:
        assert d.execute("SELECT id, name, owner_id FROM items").fetchall() == [
            (1, "a", None)
        ]
