"""oSPARC projects as rows: the shipped mapping, the staging copy, the fidelity report.

One project moves at a time. Its rows (the project, its nodes, its files'
metadata, the users, the product and the services they name) are first copied into an
empty *staging* database holding only the carried tables and columns; the
record plan is then made from the staging database to the destination with
the mapping of [osparc_mapping][carmigrate.recipes.osparc_mapping]. What is
not carried is counted per project by
[osparc_fidelity][carmigrate.recipes.osparc_fidelity]; nothing is dropped
silently.

The table and column names are those of the platform's schema
(``packages/postgres-database/src/simcore_postgres_database/models/`` of
ITISFoundation/osparc-simcore).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.errors import PlanError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import sqlalchemy as sa

    from carmigrate.records import RecordMapping, RecordPlan

__all__ = [
    "CARRIED_COLUMNS",
    "FILE_PATH",
    "NOT_CARRIED",
    "NotCarried",
    "OsparcFidelity",
    "new_project_uuid",
    "osparc_fidelity",
    "osparc_mapping",
    "plan_osparc_project",
    "preflight_problems",
    "read_osparc_rows",
    "rows_columns",
    "stage_osparc_project",
]

CARRIED_COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    "products": ("name",),
    "users": ("id", "name", "email"),
    "services_meta_data": ("key", "version", "name"),
    "projects": (
        "id",
        "type",
        "template_type",
        "uuid",
        "name",
        "description",
        "thumbnail",
        "prj_owner",
        "ui",
        "dev",
        "published",
        "hidden",
        "creation_date",
        "last_change_date",
        "classifiers",
        "quality",
        "product_name",
    ),
    "projects_nodes": (
        "project_node_id",
        "project_uuid",
        "node_id",
        "required_resources",
        "created",
        "key",
        "version",
        "label",
        "progress",
        "input_access",
        "input_nodes",
        "inputs",
        "inputs_required",
        "inputs_units",
        "outputs",
        "run_hash",
        "state",
        "boot_options",
        "ui",
    ),
    "file_meta_data": (
        "file_id",
        "location_id",
        "location",
        "bucket_name",
        "object_name",
        "project_id",
        "node_id",
        "user_id",
        "created_at",
        "last_modified",
        "file_size",
        "entity_tag",
        "is_soft_link",
        "is_directory",
        "sha256_checksum",
    ),
}
"""The tables and columns a project carries, in the order of the mapping's contexts.

``products``, ``users`` and ``services_meta_data`` are carried only to be
matched (a product by name, a user by case-folded e-mail, a service by key
and version) with the destination's rows: the platform, the accounts and
the services are set up at the destination beforehand, so an import never
creates them. Columns a table has that are not listed here
are in [NOT_CARRIED][carmigrate.recipes.NOT_CARRIED] or are simply
the destination's business (a user's groups, status and role).
"""

NOT_CARRIED: Final[Mapping[str, str]] = {
    "tags": "projects_tags: tags are not carried",
    "sharing": "project_to_groups rows other than the owner's own: sharing is not "
    "carried (the destination gives the owner's primary group full access)",
    "workspace": "projects.workspace_id: the project lands in the owner's private "
    "workspace, at its root",
    "folder": "projects_to_folders: folder placement is not carried",
    "history": "comp_runs, comp_tasks and resource_tracker_service_runs: the history "
    "of service runs is not carried",
    "trash": "projects.trashed, trashed_by, trashed_explicitly: the trash state is "
    "not carried",
    "uploads": "file_meta_data.upload_id: uploads in progress are not carried",
    "node_modified": "projects_nodes.modified: set to the import time by the "
    "destination's trigger",
}
"""What a project does not carry, by name, with why: every count in a fidelity report is one of these."""

_MAPPING_TOML: Final = """
version = 1
stop_tables = ["users", "products", "services_meta_data"]

[[contexts]]
name = "platform"
tables = ["products"]

[[contexts]]
name = "users"
tables = ["users"]

[[contexts]]
name = "services"
tables = ["services_meta_data"]

[[contexts]]
name = "studies"
tables = ["projects", "projects_nodes", "file_meta_data"]

[[ids]]
table = "users"
rule = "offset"
margin = 1000

[[ids]]
table = "projects"
rule = "offset"
margin = 1000

[[ids]]
table = "projects"
column = "uuid"
rule = "uuid5"
namespace = "{namespace}"

[[ids]]
table = "projects_nodes"
rule = "offset"
margin = 1000

[[ids]]
table = "projects_nodes"
column = "node_id"
rule = "uuid5"
namespace = "{new_project}"

[[natural_keys]]
table = "users"
columns = ["email"]
casefold = true

[[references]]
table = "projects"
column = "ui"
json_path = "workbench.~"
target = "projects_nodes.node_id"

[[references]]
table = "projects"
column = "ui"
json_path = "slideshow.~"
target = "projects_nodes.node_id"

[[references]]
table = "projects_nodes"
column = "inputs"
json_path = "*.nodeUuid"
target = "projects_nodes.node_id"

[[references]]
table = "projects_nodes"
column = "input_nodes"
json_path = "*"
target = "projects_nodes.node_id"

[[references]]
table = "file_meta_data"
column = "node_id"
template = "{{node}}"
targets = {{ node = "projects_nodes.node_id" }}

[[references]]
table = "file_meta_data"
column = "file_id"
template = "{{project}}/{{node}}/{{name}}"
targets = {{ project = "projects.uuid", node = "projects_nodes.node_id" }}

[[references]]
table = "file_meta_data"
column = "object_name"
template = "{{project}}/{{node}}/{{name}}"
targets = {{ project = "projects.uuid", node = "projects_nodes.node_id" }}
object_key = true

[[policies]]
kind = "case_variant"
table = "users"
policy = "merge"

[[policies]]
kind = "key_clash"
table = "products"
policy = "merge"

[[policies]]
kind = "reference_changed"
table = "users"
policy = "merge"

[[policies]]
kind = "key_clash"
table = "services_meta_data"
policy = "merge"

[[policies]]
kind = "reference_changed"
table = "services_meta_data"
policy = "merge"

[[policies]]
kind = "reference_changed"
table = "products"
policy = "merge"

[[policies]]
kind = "dangling_reference"
table = "file_meta_data"
policy = "skip"
"""

FILE_PATH: Final = "{project}/{node}/{name}"
"""The shape of a file's id, S3 key and of ``path`` in node ports: ``<project_uuid>/<node_uuid>/<name>``."""


def new_project_uuid(old: str, namespace: uuid.UUID) -> str:
    """The project's UUID at the destination: ``uuid5(namespace, old)``.

    A fresh ``namespace`` per import makes a fresh UUID that re-runs of
    the same import agree on.
    """
    return str(uuid.uuid5(namespace, old))


def osparc_mapping(project_uuid: str, namespace: uuid.UUID) -> RecordMapping:
    """The shipped mapping for moving the project ``project_uuid``.

    Contexts in order: ``platform`` (``products``, matched by name),
    ``users`` (matched by case-folded e-mail), ``services``
    (``services_meta_data``, matched by key and version: the services a
    project's nodes run), ``studies`` (``projects``, ``projects_nodes``,
    ``file_meta_data``); the first three are never inserted. Integer ids are
    offset past the destination's largest; the project UUID is
    ``uuid5(namespace, old)``, and each node id is ``uuid5(new project
    UUID, old node id)``, as the platform derives node ids when it copies a
    project. Node ids are followed into ``projects.ui`` (``workbench`` and
    ``slideshow`` keys), ``projects_nodes.inputs`` (``nodeUuid``),
    ``input_nodes``, ``file_meta_data.node_id``, and the keys
    ``<project_uuid>/<node_uuid>/<name>`` of ``file_id`` and
    ``object_name``; file paths inside ``inputs``/``outputs`` are rewritten
    by [plan_osparc_project][carmigrate.recipes.plan_osparc_project]. A
    file row whose key names a project or node that does not move (a soft
    link to another project's file) is skipped and reported.

    Args:
        project_uuid: The project's UUID at the source.
        namespace: The import's namespace (a fresh UUID per import).
    """
    text = _MAPPING_TOML.format(
        namespace=namespace, new_project=new_project_uuid(project_uuid, namespace)
    )
    import tomllib

    from carmigrate.records import parse_mapping

    return parse_mapping(tomllib.loads(text), path="<osparc mapping>")


@attrs.frozen
class NotCarried:
    """Something of a project that an import does not carry.

    Attributes:
        what: A key of [NOT_CARRIED][carmigrate.recipes.NOT_CARRIED].
        count: How many rows (or values) of the project it concerns.
        reason: Why, and what the destination has instead.
    """

    what: str
    count: int
    reason: str


@attrs.frozen
class OsparcFidelity:
    """What one project keeps and what it loses in a move.

    Attributes:
        project: The project's UUID at the source.
        name: Its name.
        carried: The project's rows, per table (rows that a source defect
            keeps out, such as a file row without its object, are reported by
            [check_osparc_files][carmigrate.recipes.check_osparc_files]).
        not_carried: Everything it does not carry, each with a count
            (zero when the project has none of it).
    """

    project: str
    name: str
    carried: Mapping[str, int]
    not_carried: tuple[NotCarried, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON and DAG-CBOR compatible)."""
        return {
            "project": self.project,
            "name": self.name,
            "carried": dict(self.carried),
            "not_carried": [
                {"what": n.what, "count": n.count, "reason": n.reason}
                for n in self.not_carried
            ],
        }

    def to_markdown(self) -> str:
        """A Markdown table: each thing not carried, its count and why."""
        lines = [
            f"Project {self.name} ({self.project}): "
            + ", ".join(f"{n} {t}" for t, n in self.carried.items()),
            "",
            "| not carried | count | why |",
            "| --- | ---: | --- |",
        ]
        lines += [f"| {n.what} | {n.count} | {n.reason} |" for n in self.not_carried]
        return "\n".join(lines)


def _count(conn: sa.Connection, table: str, sql: str, params: dict[str, Any]) -> int:
    import sqlalchemy as sa

    if not sa.inspect(conn).has_table(table):
        return 0
    return int(conn.execute(sa.text(sql), params).scalar_one())


def osparc_fidelity(source: str, project_uuid: str) -> OsparcFidelity:
    """The fidelity report of moving ``project_uuid`` out of the database at ``source``.

    Reads only. Tables the deployment does not have count zero.

    Raises:
        PlanError: No such project.
        RecordsError: The database failed.
    """
    import sqlalchemy as sa

    from carmigrate.records import open_database

    with open_database(source) as db, db.engine.connect() as conn:
        row = (
            conn.execute(
                sa.text(
                    "SELECT id, name, prj_owner, workspace_id, trashed "
                    "FROM projects WHERE uuid = :u"
                ),
                {"u": project_uuid},
            )
            .mappings()
            .first()
        )
        if row is None:
            msg = f"no project {project_uuid} in {db.url}"
            raise PlanError(msg)
        p = {"u": project_uuid, "id": row["id"], "owner": row["prj_owner"]}
        counts = {
            "tags": _count(
                conn,
                "projects_tags",
                "SELECT count(*) FROM projects_tags WHERE project_id = :id",
                p,
            ),
            "sharing": _count(
                conn,
                "project_to_groups",
                "SELECT count(*) FROM project_to_groups WHERE project_uuid = :u AND "
                "gid IS DISTINCT FROM (SELECT primary_gid FROM users WHERE id = :owner)",
                p,
            ),
            "workspace": int(row["workspace_id"] is not None),
            "folder": _count(
                conn,
                "projects_to_folders",
                "SELECT count(*) FROM projects_to_folders WHERE project_uuid = :u",
                p,
            ),
            "history": _count(
                conn,
                "comp_runs",
                "SELECT count(*) FROM comp_runs WHERE project_uuid = :u",
                p,
            )
            + _count(
                conn,
                "comp_tasks",
                "SELECT count(*) FROM comp_tasks WHERE project_id = :u",
                p,
            )
            + _count(
                conn,
                "resource_tracker_service_runs",
                "SELECT count(*) FROM resource_tracker_service_runs "
                "WHERE project_id = :u",
                p,
            ),
            "trash": int(row["trashed"] is not None),
            "uploads": _count(
                conn,
                "file_meta_data",
                "SELECT count(*) FROM file_meta_data WHERE project_id = :u "
                "AND upload_id IS NOT NULL",
                p,
            ),
            "node_modified": _count(
                conn,
                "projects_nodes",
                "SELECT count(*) FROM projects_nodes WHERE project_uuid = :u",
                p,
            ),
        }
        carried = {
            "projects": 1,
            "projects_nodes": counts["node_modified"],
            "file_meta_data": _count(
                conn,
                "file_meta_data",
                "SELECT count(*) FROM file_meta_data WHERE project_id = :u",
                p,
            ),
        }
    return OsparcFidelity(
        project=project_uuid,
        name=str(row["name"]),
        carried=carried,
        not_carried=tuple(NotCarried(k, counts[k], v) for k, v in NOT_CARRIED.items()),
    )


def rows_columns(table: sa.Table, name: str) -> tuple[str, ...]:
    """The columns staged for ``name``: the carried ones, then nullable foreign keys not carried.

    Foreign-key columns that are not carried are staged NULL: the planner
    follows every foreign key of the destination's table.
    """
    carried = CARRIED_COLUMNS[name]
    nulled = tuple(
        c.name
        for c in table.columns
        if c.foreign_keys and c.name not in carried and c.nullable
    )
    return (*carried, *nulled)


def read_osparc_rows(
    source: str, project_uuid: str, *, skip_files: frozenset[str] = frozenset()
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, sa.Table]]:
    """One project's carried rows at ``source``, and the source's tables.

    Rows per table of [CARRIED_COLUMNS][carmigrate.recipes.CARRIED_COLUMNS]
    (with the nullable foreign-key columns not carried set to ``None``):
    the project, its nodes, its file rows (except ``skip_files``), the users
    they name and the product. Reads only, in one snapshot.

    Raises:
        PlanError: No such project.
        RecordsError: The database failed.
    """
    from carmigrate.records import open_database

    with open_database(source) as db:
        tables = {t: db.table(t) for t in CARRIED_COLUMNS}
        rows: dict[str, list[dict[str, Any]]] = {}

        def read(name: str, where: Any) -> list[dict[str, Any]]:
            return [
                dict(r)
                for r in db.iter_rows(name, where=where, columns=CARRIED_COLUMNS[name])
            ]

        rows["projects"] = read("projects", tables["projects"].c.uuid == project_uuid)
        if not rows["projects"]:
            msg = f"no project {project_uuid} in {db.url}"
            raise PlanError(msg)
        rows["projects_nodes"] = read(
            "projects_nodes", tables["projects_nodes"].c.project_uuid == project_uuid
        )
        rows["file_meta_data"] = [
            r
            for r in read(
                "file_meta_data", tables["file_meta_data"].c.project_id == project_uuid
            )
            if r["file_id"] not in skip_files
        ]
        user_ids = {rows["projects"][0]["prj_owner"]} | {
            r["user_id"] for r in rows["file_meta_data"]
        }
        rows["users"] = [
            {c: r[c] for c in CARRIED_COLUMNS["users"]}
            for r in db.select_in(
                "users", ["id"], [(u,) for u in user_ids if u is not None]
            )
        ]
        rows["products"] = [{"name": rows["projects"][0]["product_name"]}]
        services = {(n["key"], n["version"]) for n in rows["projects_nodes"]}
        rows["services_meta_data"] = [
            {c: r[c] for c in CARRIED_COLUMNS["services_meta_data"]}
            for r in db.select_in("services_meta_data", ["key", "version"], services)
        ]
    for name, table in tables.items():
        extra = rows_columns(table, name)[len(CARRIED_COLUMNS[name]) :]
        for r in rows[name]:
            r.update(dict.fromkeys(extra))
    return {t: rows[t] for t in CARRIED_COLUMNS}, tables


def stage_osparc_project(
    source: str,
    staging: str,
    project_uuid: str,
    *,
    skip_files: frozenset[str] = frozenset(),
) -> dict[str, int]:
    """Copy one project's carried rows from ``source`` into the empty database ``staging``.

    Creates the tables of [CARRIED_COLUMNS][carmigrate.recipes.CARRIED_COLUMNS]
    at ``staging`` (each with the source's column types and primary key, no
    foreign keys) and copies the project, its nodes, its file rows (except
    the ``file_id`` values in ``skip_files``), the users they name (owner and
    uploaders) and the product, in one transaction. Reads ``source`` only.

    Returns:
        Rows copied per table.

    Raises:
        PlanError: No such project, or ``staging`` already has one of the
            tables (nothing is written then).
        RecordsError: A database failed.
    """
    import sqlalchemy as sa

    rows, tables = read_osparc_rows(source, project_uuid, skip_files=skip_files)
    meta = sa.MetaData()
    made = [
        sa.Table(
            name,
            meta,
            *(
                sa.Column(
                    c, t.c[c].type, primary_key=t.c[c].primary_key, autoincrement=False
                )
                for c in rows_columns(t, name)
            ),
        )
        for name, t in tables.items()
    ]
    engine = sa.create_engine(staging)
    try:
        present = set(sa.inspect(engine).get_table_names())
        clash = sorted(present & set(CARRIED_COLUMNS))
        if clash:
            msg = f"the staging database already has the table {clash[0]!r}: give an empty one"
            raise PlanError(msg)
        with engine.begin() as conn:
            meta.create_all(conn)
            for t in made:
                if rows[t.name]:
                    conn.execute(t.insert(), rows[t.name])
    finally:
        engine.dispose()
    return {t: len(r) for t, r in rows.items()}


def plan_osparc_project(
    staging: str,
    destination: str,
    project_uuid: str,
    namespace: uuid.UUID,
    *,
    bucket: str | None = None,
) -> RecordPlan:
    """Plan moving the staged project into ``destination`` with the shipped mapping.

    Besides what [osparc_mapping][carmigrate.recipes.osparc_mapping]
    maps, every ``path`` of a node's ``inputs`` and ``outputs`` of the shape
    ``<project_uuid>/<node_uuid>/<name>`` whose project and node move is
    rewritten to the new key, and, if ``bucket`` is given,
    ``file_meta_data.bucket_name`` becomes it. Writes nothing.

    Args:
        staging: The staging database ([stage_osparc_project][carmigrate.recipes.stage_osparc_project]).
        destination: The destination deployment's database.
        project_uuid: The project's UUID at the source.
        namespace: The import's namespace.
        bucket: The destination's bucket, for ``file_meta_data.bucket_name``.

    Raises:
        MappingError, RecordsError: From the planner.
    """
    from carmigrate.records import (
        RowAction,
        Scope,
        Template,
        open_database,
        plan_records,
    )

    template = Template(FILE_PATH)
    mapping = osparc_mapping(project_uuid, namespace)
    with open_database(staging) as src, open_database(destination) as dst:
        plan = plan_records(src, dst, mapping, Scope.database())
        node_rows = {
            r["project_node_id"]: r
            for r in src.iter_rows(
                "projects_nodes", columns=("project_node_id", "inputs", "outputs")
            )
        }
    projects = plan.mapped("projects", "uuid")
    nodes = plan.mapped("projects_nodes", "node_id")

    def path(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        fields = template.parse(value)
        if fields is None or fields["project"] not in projects:
            return value
        if fields["node"] not in nodes:
            return value
        fields["project"] = str(projects[fields["project"]])
        fields["node"] = str(nodes[fields["node"]])
        return template.render(fields)

    def ports(doc: Any) -> Any:
        if not isinstance(doc, dict):
            return doc
        return {
            k: (
                {**v, "path": path(v["path"])}
                if isinstance(v, dict) and "path" in v
                else v
            )
            for k, v in doc.items()
        }

    rows = []
    for r in plan.rows:
        changes = dict(r.changes)
        if r.action is RowAction.INSERT and r.table == "projects_nodes":
            src_row = node_rows[r.key[0]]
            for col in ("inputs", "outputs"):
                current = changes.get(col, src_row[col])
                new = ports(current)
                if new != src_row[col]:
                    changes[col] = new
        if r.action is RowAction.INSERT and r.table == "file_meta_data" and bucket:
            changes["bucket_name"] = bucket
        rows.append(attrs.evolve(r, changes=changes) if changes != r.changes else r)
    return attrs.evolve(plan, rows=tuple(rows))


def preflight_problems(plan: RecordPlan) -> list[str]:
    """What stops an import, from the plan: missing owners, products and services, conflicts.

    A user, product or service the destination does not have would be
    inserted by the plan; an import never creates accounts, platform
    configuration or services, so each is a problem here.
    """
    from carmigrate.records import RowAction

    return [
        *(
            f"missing owner: user {r.key[0]} has no account at the destination"
            for r in plan.rows_of("users", RowAction.INSERT)
        ),
        *(
            f"missing product: {r.key[0]!r} is not at the destination"
            for r in plan.rows_of("products", RowAction.INSERT)
        ),
        *(
            f"missing service: {r.key[0]}:{r.key[1]} is not at the destination"
            for r in plan.rows_of("services_meta_data", RowAction.INSERT)
        ),
        *(f"conflict: {r.table} {r.key!r}: {r.reason}" for r in plan.conflicts),
    ]
