"""The osparc recipe's rows: one project moved deployment to deployment through the records layer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import osparc_schema as gen
import pytest
import sqlalchemy as sa

from carmigrate.errors import PlanError
from carmigrate.migrate import Ledger, execute_records, rollback_records
from carmigrate.recipes import (
    CARRIED_COLUMNS,
    NOT_CARRIED,
    new_project_uuid,
    osparc_fidelity,
    osparc_mapping,
    plan_osparc_project,
    preflight_problems,
    stage_osparc_project,
)
from carmigrate.records import RowAction

NS = uuid.UUID("0f0e0d0c-0b0a-4908-8706-050403020100")


def deployments(new_pg: Callable[[], str]) -> tuple[str, str]:
    src, dst = new_pg(), new_pg()
    for url, d in ((src, gen.SOURCE), (dst, gen.DEST)):
        gen.create(url)
        gen.populate(url, d)
    gen.add_links(src, gen.SOURCE)
    return src, dst


def survey() -> gen.Project:
    return next(p for p in gen.SOURCE.projects if p.name == "survey")


def fetch(url: str, sql: str, **params: object) -> list[dict[str, object]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]
    finally:
        engine.dispose()


def test_mapping_names_only_real_columns(new_pg: Callable[[], str]) -> None:
    """The shipped mapping checks against the generator's schema (the real names)."""
    from carmigrate.records import open_database

    src, _ = deployments(new_pg)
    mapping = osparc_mapping(gen.project_uuid(gen.SOURCE, survey()), NS)
    with open_database(src) as db:
        mapping.check(db.reflect())
    assert [c.name for c in mapping.contexts] == [
        "platform",
        "users",
        "services",
        "studies",
    ]
    assert list(CARRIED_COLUMNS) == [t for c in mapping.contexts for t in c.tables]


def test_move_one_project_every_reference_follows(
    new_pg: Callable[[], str], tmp_path: Path
) -> None:
    src, dst = deployments(new_pg)
    staging = new_pg()
    p = survey()
    old = gen.project_uuid(gen.SOURCE, p)
    old_nodes = [gen.node_uuid(gen.SOURCE, p, i) for i in range(len(p.nodes))]
    counts = stage_osparc_project(src, staging, old)
    assert counts == {
        "projects": 1,
        "projects_nodes": 3,
        "file_meta_data": 9,
        "users": 1,
        "products": 1,
        "services_meta_data": 1,
    }
    plan = plan_osparc_project(staging, dst, old, NS, bucket="a-simcore")
    assert preflight_problems(plan) == []
    new = new_project_uuid(old, NS)
    assert new != old
    assert plan.mapped("projects", "uuid") == {old: new}
    # node ids as the platform derives them when it copies a project
    node_map = plan.mapped("projects_nodes", "node_id")
    assert node_map == {n: str(uuid.uuid5(uuid.UUID(new), n)) for n in old_nodes}
    # alice's account at B (e-mail in another case) is merged into A's
    (user,) = plan.rows_of("users")
    assert user.action is RowAction.MERGE
    # the soft link to another project's file cannot follow: skipped, reported
    (skipped,) = plan.rows_of("file_meta_data", RowAction.SKIP)
    assert skipped.key[0].endswith("/link-out")
    assert {f.kind.value for f in plan.findings} == {
        "case_variant",
        "key_clash",
        "dangling_reference",
    }
    before = fetch(dst, "SELECT uuid, name, prj_owner FROM projects ORDER BY id")
    with Ledger(tmp_path / "ledger.db") as ledger:
        result = execute_records(plan, ledger, source=staging, destination=dst)
    assert [c.state for c in result.executed] == ["committed"] * 4

    # A's own project with the same UUID is untouched
    after = fetch(dst, "SELECT uuid, name, prj_owner FROM projects ORDER BY id")
    assert after[: len(before)] == before
    (moved,) = fetch(dst, "SELECT * FROM projects WHERE uuid = :u", u=new)
    alice = fetch(dst, "SELECT id FROM users WHERE email = 'alice@example.org'")
    assert moved["prj_owner"] == alice[0]["id"]
    assert moved["workspace_id"] is None  # workspace placement not carried
    assert moved["name"] == "survey"
    assert (
        moved["description"] == f"survey (mentions {old} in its text)"
    )  # text is text
    new_nodes = {node_map[n] for n in old_nodes}
    assert set(moved["ui"]["workbench"]) == new_nodes
    assert set(moved["ui"]["slideshow"]) == {node_map[old_nodes[0]]}
    # the destination's trigger gave the owner's primary group full access
    access = fetch(
        dst,
        "SELECT g.gid, pg.write FROM project_to_groups pg JOIN groups g ON g.gid = pg.gid "
        "WHERE pg.project_uuid = :u",
        u=new,
    )
    primary = fetch(
        dst, "SELECT primary_gid FROM users WHERE id = :i", i=alice[0]["id"]
    )
    assert access == [{"gid": primary[0]["primary_gid"], "write": True}]

    nodes = fetch(dst, "SELECT * FROM projects_nodes WHERE project_uuid = :u", u=new)
    assert {n["node_id"] for n in nodes} == new_nodes
    files = fetch(dst, "SELECT * FROM file_meta_data WHERE project_id = :u", u=new)
    file_ids = {f["file_id"] for f in files}
    assert len(files) == 8
    for f in files:
        project, node, _ = f["file_id"].split("/")
        assert (project, f["node_id"], f["user_id"]) == (new, node, alice[0]["id"])
        assert node in new_nodes
        assert f["bucket_name"] == "a-simcore"
        if f["is_soft_link"]:
            assert f["object_name"] in file_ids  # the link follows its target
        else:
            assert f["object_name"] == f["file_id"]
    for n in nodes:
        for port in (n["inputs"] or {}).values():
            if isinstance(port, dict) and "nodeUuid" in port:
                assert port["nodeUuid"] in new_nodes
            if isinstance(port, dict) and "path" in port:
                assert port["path"] in file_ids
        for port in (n["outputs"] or {}).values():
            assert port["path"] in file_ids
        assert set(n["input_nodes"] or []) <= new_nodes
    # no old id is left in any moved row's JSON documents
    text = repr(
        [moved["ui"], [(n["inputs"], n["outputs"], n["input_nodes"]) for n in nodes]]
    )
    assert old not in text
    assert not any(n in text for n in old_nodes)
    # the object engine's list: each old key and its new key
    keys = {c.old: c.new for c in plan.object_keys}
    assert (
        keys[f"{old}/{old_nodes[0]}/mesh.vtk"]
        == f"{new}/{node_map[old_nodes[0]]}/mesh.vtk"
    )

    # everything this move wrote is rolled back, trigger rows included
    with Ledger(tmp_path / "ledger.db") as ledger:
        for stage in ("studies", "services", "users", "platform"):
            rollback_records(ledger, dst, stage=stage)
    assert (
        fetch(dst, "SELECT uuid, name, prj_owner FROM projects ORDER BY id") == before
    )
    assert (
        fetch(dst, "SELECT * FROM project_to_groups WHERE project_uuid = :u", u=new)
        == []
    )
    assert fetch(dst, "SELECT * FROM file_meta_data WHERE project_id = :u", u=new) == []


def test_missing_owner_stops_the_import(new_pg: Callable[[], str]) -> None:
    src, dst = deployments(new_pg)
    staging = new_pg()
    orphan = next(p for p in gen.SOURCE.projects if p.name == "orphaned-owner")
    old = gen.project_uuid(gen.SOURCE, orphan)
    stage_osparc_project(src, staging, old)
    plan = plan_osparc_project(staging, dst, old, NS)
    assert preflight_problems(plan) == [
        "missing owner: user 3 has no account at the destination",
        "missing service: simcore/services/dynamic/raw-graphs:2.11.1 is not at the destination",
    ]


def test_fidelity_report_counts_what_is_not_carried(new_pg: Callable[[], str]) -> None:
    src, _ = deployments(new_pg)
    report = osparc_fidelity(src, gen.project_uuid(gen.SOURCE, survey()))
    counts = {n.what: n.count for n in report.not_carried}
    assert set(counts) == set(NOT_CARRIED)
    assert counts["tags"] == 1
    assert (
        counts["sharing"] == 1
    )  # shared with Everyone; the owner's own row is not counted
    assert counts["workspace"] == 1
    assert counts["node_modified"] == 3
    assert counts["folder"] == counts["history"] == counts["trash"] == 0
    assert report.carried == {"projects": 1, "projects_nodes": 3, "file_meta_data": 9}
    assert "| tags | 1 |" in report.to_markdown()
    other = osparc_fidelity(src, gen.project_uuid(gen.SOURCE, gen.SOURCE.projects[0]))
    assert {n.what: n.count for n in other.not_carried}["tags"] == 0
    with pytest.raises(PlanError):
        osparc_fidelity(src, str(uuid.uuid4()))
