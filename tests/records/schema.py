"""A synthetic schema of two "deployments", built the same on SQLite and PostgreSQL.

What it has, on purpose: integer ids that clash between deployments (both
count from 1), UUID keys (projects, nodes), a JSON column holding node ids
(``projects.workbench``: keyed by node UUID, inputs naming other nodes), a
string-template column (``files.object_key`` =
``{project_uuid}/{node_uuid}/{name}``), a trigger with a side effect
(inserting a user inserts its primary group and points the user at it), a
foreign-key cycle (``users.primary_gid`` -> ``groups``, ``groups.owner_id``
-> ``users``; on PostgreSQL ``users.primary_gid`` is DEFERRABLE), a natural
key (``users.email``, case-folded), a unique name (``users.name``) and a
string primary key (``tags.id``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import sqlalchemy as sa

NS = uuid.UUID("3b0f64a1-7b1d-4c55-9d5e-0a8c1d2e3f40")

metadata = sa.MetaData()

groups = sa.Table(
    "groups",
    metadata,
    sa.Column("gid", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(80), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id", use_alter=True)),
)
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(120), nullable=False),
    sa.Column("name", sa.String(80), nullable=False, unique=True),
    sa.Column(
        "primary_gid",
        sa.Integer,
        sa.ForeignKey(
            "groups.gid", use_alter=True, deferrable=True, initially="DEFERRED"
        ),
    ),
)
user_to_groups = sa.Table(
    "user_to_groups",
    metadata,
    sa.Column("uid", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("gid", sa.Integer, sa.ForeignKey("groups.gid"), primary_key=True),
)
projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("uuid", sa.UUID, nullable=False, unique=True),
    sa.Column("name", sa.String(80), nullable=False),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("workbench", sa.JSON, nullable=False),
)
nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("uuid", sa.UUID, nullable=False, unique=True),
    sa.Column("project_uuid", sa.UUID, sa.ForeignKey("projects.uuid"), nullable=False),
    sa.Column("label", sa.String(80), nullable=False),
)
files = sa.Table(
    "files",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("object_key", sa.String(300), nullable=False),
)
tags = sa.Table(
    "tags",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("label", sa.String(80), nullable=False),
)

TRIGGER_SQLITE = """
CREATE TRIGGER user_primary_group AFTER INSERT ON users
BEGIN
  INSERT INTO groups (name, kind, owner_id) VALUES ('primary:' || NEW.name, 'primary', NEW.id);
  UPDATE users SET primary_gid = (
    SELECT gid FROM groups WHERE owner_id = NEW.id AND kind = 'primary'
  ) WHERE id = NEW.id;
END
"""
TRIGGER_POSTGRES = [
    """
CREATE FUNCTION user_primary_group() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO groups (name, kind, owner_id) VALUES ('primary:' || NEW.name, 'primary', NEW.id);
  UPDATE users SET primary_gid = (
    SELECT gid FROM groups WHERE owner_id = NEW.id AND kind = 'primary'
  ) WHERE id = NEW.id;
  RETURN NEW;
END $$
""",
    "CREATE TRIGGER user_primary_group AFTER INSERT ON users "
    "FOR EACH ROW EXECUTE FUNCTION user_primary_group()",
]


@dataclass
class Project:
    name: str
    owner: str  # the owner's e-mail
    nodes: list[str] = field(default_factory=list)
    files: list[tuple[int, str]] = field(default_factory=list)  # (node index, name)


@dataclass
class Deployment:
    label: str
    users: list[tuple[str, str]]  # (email, name)
    projects: list[Project] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


def project_uuid(d: Deployment, p: Project) -> uuid.UUID:
    return uuid.uuid5(NS, f"{d.label}:project:{p.name}")


def node_uuid(d: Deployment, p: Project, i: int) -> uuid.UUID:
    return uuid.uuid5(NS, f"{d.label}:node:{p.name}:{i}")


def create(engine: sa.Engine) -> None:
    """Create the schema (tables, constraints, the trigger) in an empty database."""
    # a copy per database: create_all on PostgreSQL marks the cycle's
    # use_alter constraints as emitted, and SQLite would then lose them
    fresh = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(fresh)
    fresh.create_all(engine)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(TRIGGER_SQLITE)
        else:
            for statement in TRIGGER_POSTGRES:
                conn.exec_driver_sql(statement)


def populate(engine: sa.Engine, d: Deployment) -> None:
    """Insert a deployment's rows; ids come from the database (1, 2, ...)."""
    with engine.begin() as conn:
        ids: dict[str, int] = {}
        for email, name in d.users:
            ids[email] = conn.execute(
                users.insert().values(email=email, name=name).returning(users.c.id)
            ).scalar_one()
        everyone = conn.execute(
            groups.insert()
            .values(name=f"everyone@{d.label}", kind="standard")
            .returning(groups.c.gid)
        ).scalar_one()
        for uid in ids.values():
            primary = conn.execute(
                sa.select(users.c.primary_gid).where(users.c.id == uid)
            ).scalar_one()
            conn.execute(user_to_groups.insert().values(uid=uid, gid=primary))
            conn.execute(user_to_groups.insert().values(uid=uid, gid=everyone))
        for p in d.projects:
            puuid = project_uuid(d, p)
            uuids = [node_uuid(d, p, i) for i in range(len(p.nodes))]
            workbench = {
                str(u): {
                    "label": label,
                    "inputs": (
                        {"in": {"nodeUuid": str(uuids[i - 1]), "output": "out"}}
                        if i
                        else {}
                    ),
                }
                for i, (u, label) in enumerate(zip(uuids, p.nodes, strict=True))
            }
            pid = conn.execute(
                projects.insert()
                .values(
                    uuid=puuid, name=p.name, owner_id=ids[p.owner], workbench=workbench
                )
                .returning(projects.c.id)
            ).scalar_one()
            for u, label in zip(uuids, p.nodes, strict=True):
                conn.execute(
                    nodes.insert().values(uuid=u, project_uuid=puuid, label=label)
                )
            for i, name in p.files:
                conn.execute(
                    files.insert().values(
                        project_id=pid, object_key=f"{puuid}/{uuids[i]}/{name}"
                    )
                )
        for t in d.tags:
            conn.execute(tags.insert().values(id=t, label=f"tag {t}"))


DEST = Deployment(
    label="a",
    users=[("alice@example.org", "alice"), ("bob@a.example", "bob")],
    projects=[Project("alpha", "alice@example.org", ["n0"], [(0, "x.dat")])],
    tags=["red"],
)
"""Deployment A: the destination."""

SOURCE = Deployment(
    label="b",
    users=[
        ("Alice@Example.org", "alice"),  # same person, e-mail in another case
        ("bob@b.example", "bob"),  # another person called bob
        ("carol@b.example", "carol"),
    ],
    projects=[
        Project(
            "beta",
            "carol@b.example",
            ["n0", "n1", "n2"],
            [(0, "in.csv"), (2, "out.csv")],
        ),
        Project("gamma", "Alice@Example.org", ["m0"], [(0, "y.dat")]),
    ],
    tags=["red", "blue"],
)
"""Deployment B: the source, to merge into A."""

MAPPING_TOML = f"""
version = 1
stop_tables = ["users", "groups"]

[[contexts]]
name = "accounts"
tables = ["groups", "users", "user_to_groups"]

[[contexts]]
name = "studies"
tables = ["projects", "nodes", "files", "tags"]

[[ids]]
table = "users"
rule = "offset"
margin = 1000

[[ids]]
table = "groups"
rule = "offset"
margin = 1000

[[ids]]
table = "projects"
rule = "offset"
margin = 100

[[ids]]
table = "projects"
column = "uuid"
rule = "uuid5"
namespace = "{NS}"

[[ids]]
table = "nodes"
rule = "offset"
margin = 100

[[ids]]
table = "nodes"
column = "uuid"
rule = "uuid4"

[[ids]]
table = "files"
rule = "offset"
margin = 100

[[ids]]
table = "tags"
rule = "prefix"
prefix = "b_"

[[natural_keys]]
table = "users"
columns = ["email"]
casefold = true

[[references]]
table = "projects"
column = "workbench"
json_path = "~"
target = "nodes.uuid"

[[references]]
table = "projects"
column = "workbench"
json_path = "*.inputs.*.nodeUuid"
target = "nodes.uuid"

[[references]]
table = "files"
column = "object_key"
template = "{{project_uuid}}/{{node_uuid}}/{{name}}"
targets = {{ project_uuid = "projects.uuid", node_uuid = "nodes.uuid" }}
object_key = true

[[policies]]
kind = "case_variant"
policy = "merge"

[[policies]]
kind = "unique_clash"
table = "users"
policy = "rename"
rename = "{{value}}_{{n}}"

[[policies]]
kind = "unique_clash"
table = "groups"
policy = "merge"

[[policies]]
kind = "reference_changed"
policy = "fail"
"""
"""The mapping that merges B into A."""


# The policies that resolve every finding of merging SOURCE into DEST, so the
# plan is executable: memberships merged, groups renamed on a name clash, and
# merged users keep the destination's primary group.
EXECUTABLE = """
[[policies]]
kind = "key_clash"
table = "user_to_groups"
policy = "merge"

[[policies]]
kind = "unique_clash"
table = "groups"
policy = "rename"
rename = "{value}_{n}"

[[policies]]
kind = "reference_changed"
table = "users"
policy = "merge"
"""
