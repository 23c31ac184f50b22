"""A generator of oSPARC-like deployments on PostgreSQL, for the osparc recipe's tests.

The tables, columns, types, constraints and triggers follow the real schema
of ITISFoundation/osparc-simcore (``packages/postgres-database/src/
simcore_postgres_database/models/``; see README-osparc.md beside this file for
the files read). Only the tables the recipe touches or reports on are made,
with the columns that matter to it; the DDL is written here from what those
files declare, not copied.

What two deployments made by [populate][] have, on purpose: integer ids that
clash (both count from 1), a user in both with the e-mail in another case,
a project UUID present in both, node ids keyed in JSON documents, file links
``<project_uuid>/<node_uuid>/<name>`` inside ``inputs``/``outputs``, and the
real triggers enabled (a user's primary group and memberships, the owner's
access to a new project, ``projects_nodes.modified``).
"""

from __future__ import annotations

import datetime
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

DDL = r"""
CREATE TYPE grouptype AS ENUM ('STANDARD', 'PRIMARY', 'EVERYONE');
CREATE TYPE userstatus AS ENUM ('CONFIRMATION_PENDING', 'ACTIVE', 'EXPIRED', 'BANNED', 'DELETED');
CREATE TYPE userrole AS ENUM ('ANONYMOUS', 'GUEST', 'USER', 'TESTER', 'PRODUCT_OWNER', 'ADMIN');
CREATE TYPE projecttype AS ENUM ('TEMPLATE', 'STANDARD');
CREATE TYPE projecttemplatetype AS ENUM ('TEMPLATE', 'TUTORIAL', 'HYPERTOOL');

CREATE TABLE groups (
    gid BIGSERIAL PRIMARY KEY,
    name VARCHAR NOT NULL,
    description VARCHAR NOT NULL,
    type grouptype NOT NULL DEFAULT 'STANDARD',
    thumbnail VARCHAR,
    inclusion_rules JSONB NOT NULL DEFAULT '{}'::jsonb,
    created TIMESTAMP NOT NULL DEFAULT now(),
    modified TIMESTAMP NOT NULL DEFAULT now()
);
CREATE TABLE users (
    id BIGSERIAL NOT NULL,
    name VARCHAR NOT NULL,
    primary_gid BIGINT,
    first_name VARCHAR,
    last_name VARCHAR,
    email VARCHAR NOT NULL,
    phone VARCHAR,
    status userstatus NOT NULL DEFAULT 'ACTIVE',
    role userrole NOT NULL DEFAULT 'USER',
    created_at TIMESTAMP NOT NULL DEFAULT now(),
    modified TIMESTAMP NOT NULL DEFAULT now(),
    expires_at TIMESTAMP,
    CONSTRAINT user_pkey PRIMARY KEY (id),
    CONSTRAINT user_name_ukey UNIQUE (name),
    CONSTRAINT user_login_key UNIQUE (email),
    CONSTRAINT fk_users_gid_groups FOREIGN KEY (primary_gid) REFERENCES groups (gid)
        ON UPDATE CASCADE ON DELETE RESTRICT
);
CREATE TABLE user_to_groups (
    uid BIGINT REFERENCES users (id) ON UPDATE CASCADE ON DELETE CASCADE,
    gid BIGINT REFERENCES groups (gid) ON UPDATE CASCADE ON DELETE CASCADE,
    access_rights JSONB NOT NULL
        DEFAULT '{"read": true, "write": false, "delete": false}'::jsonb,
    created TIMESTAMP NOT NULL DEFAULT now(),
    modified TIMESTAMP NOT NULL DEFAULT now(),
    UNIQUE (uid, gid)
);
CREATE TABLE products (
    name VARCHAR NOT NULL,
    display_name VARCHAR NOT NULL DEFAULT 'o2S2PARC',
    host_regex VARCHAR NOT NULL,
    base_url VARCHAR NOT NULL,
    group_id BIGINT UNIQUE REFERENCES groups (gid) ON UPDATE CASCADE ON DELETE SET NULL,
    CONSTRAINT products_pk PRIMARY KEY (name)
);
CREATE TABLE services_meta_data (
    key VARCHAR NOT NULL,
    version VARCHAR NOT NULL,
    owner BIGINT REFERENCES groups (gid) ON UPDATE CASCADE ON DELETE RESTRICT,
    name VARCHAR NOT NULL,
    description VARCHAR NOT NULL,
    classifiers VARCHAR[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (key, version)
);
CREATE TABLE workspaces (
    workspace_id BIGSERIAL PRIMARY KEY,
    name VARCHAR NOT NULL,
    owner_primary_gid BIGINT NOT NULL REFERENCES groups (gid)
        ON UPDATE CASCADE ON DELETE RESTRICT,
    product_name VARCHAR NOT NULL REFERENCES products (name)
        ON UPDATE CASCADE ON DELETE CASCADE,
    created TIMESTAMPTZ NOT NULL DEFAULT now(),
    modified TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE projects (
    id BIGSERIAL PRIMARY KEY,
    type projecttype NOT NULL,
    template_type projecttemplatetype,
    uuid VARCHAR NOT NULL UNIQUE,
    name VARCHAR NOT NULL,
    description VARCHAR,
    thumbnail VARCHAR,
    prj_owner BIGINT REFERENCES users (id) ON UPDATE CASCADE ON DELETE RESTRICT,
    workspace_id BIGINT REFERENCES workspaces (workspace_id)
        ON UPDATE CASCADE ON DELETE CASCADE,
    ui JSONB NOT NULL DEFAULT '{}'::jsonb,
    dev JSONB NOT NULL DEFAULT '{}'::jsonb,
    published BOOLEAN NOT NULL,
    hidden BOOLEAN NOT NULL,
    creation_date TIMESTAMP NOT NULL DEFAULT now(),
    last_change_date TIMESTAMP NOT NULL DEFAULT now(),
    trashed TIMESTAMPTZ,
    trashed_by BIGINT REFERENCES users (id) ON UPDATE CASCADE ON DELETE SET NULL,
    trashed_explicitly BOOLEAN NOT NULL DEFAULT false,
    classifiers VARCHAR[] NOT NULL DEFAULT '{}',
    quality JSONB NOT NULL DEFAULT '{}'::jsonb,
    product_name VARCHAR NOT NULL REFERENCES products (name)
        ON UPDATE CASCADE ON DELETE CASCADE
);
CREATE TABLE projects_nodes (
    project_node_id SERIAL PRIMARY KEY,
    project_uuid VARCHAR NOT NULL REFERENCES projects (uuid)
        ON UPDATE CASCADE ON DELETE CASCADE,
    node_id VARCHAR NOT NULL,
    required_resources JSONB NOT NULL DEFAULT '{}'::jsonb,
    created TIMESTAMPTZ NOT NULL DEFAULT now(),
    modified TIMESTAMPTZ NOT NULL DEFAULT now(),
    key VARCHAR NOT NULL,
    version VARCHAR NOT NULL,
    label VARCHAR NOT NULL,
    progress NUMERIC,
    input_access JSONB,
    input_nodes JSONB,
    inputs JSONB,
    inputs_required JSONB,
    inputs_units JSONB,
    outputs JSONB,
    run_hash VARCHAR,
    state JSONB,
    boot_options JSONB,
    ui JSONB NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (project_uuid, node_id)
);
CREATE TABLE project_to_groups (
    project_uuid VARCHAR NOT NULL REFERENCES projects (uuid)
        ON UPDATE CASCADE ON DELETE CASCADE,
    gid BIGINT NOT NULL REFERENCES groups (gid) ON UPDATE CASCADE ON DELETE CASCADE,
    read BOOLEAN NOT NULL DEFAULT false,
    write BOOLEAN NOT NULL DEFAULT false,
    delete BOOLEAN NOT NULL DEFAULT false,
    created TIMESTAMPTZ NOT NULL DEFAULT now(),
    modified TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (project_uuid, gid)
);
CREATE TABLE tags (
    id BIGSERIAL PRIMARY KEY,
    name VARCHAR NOT NULL,
    color VARCHAR NOT NULL
);
CREATE TABLE projects_tags (
    project_id BIGINT REFERENCES projects (id) ON UPDATE CASCADE ON DELETE SET NULL,
    tag_id BIGINT NOT NULL REFERENCES tags (id) ON UPDATE CASCADE ON DELETE CASCADE,
    project_uuid_for_rut VARCHAR NOT NULL,
    CONSTRAINT project_tags_project_uuid_unique UNIQUE (project_uuid_for_rut, tag_id)
);
CREATE TABLE file_meta_data (
    location_id VARCHAR,
    location VARCHAR,
    bucket_name VARCHAR,
    object_name VARCHAR,
    project_id VARCHAR REFERENCES projects (uuid) ON UPDATE CASCADE ON DELETE CASCADE,
    node_id VARCHAR,
    user_id BIGINT NOT NULL REFERENCES users (id) ON UPDATE CASCADE ON DELETE CASCADE,
    file_id VARCHAR PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    last_modified TIMESTAMPTZ NOT NULL,
    file_size BIGINT,
    entity_tag VARCHAR,
    is_soft_link BOOLEAN NOT NULL DEFAULT false,
    upload_id VARCHAR,
    is_directory BOOLEAN NOT NULL DEFAULT false,
    sha256_checksum VARCHAR
);

INSERT INTO groups (name, description, type) VALUES ('Everyone', 'all users', 'EVERYONE');

CREATE FUNCTION set_user_groups() RETURNS TRIGGER AS $$
DECLARE
    group_id BIGINT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO groups (name, description, type)
            VALUES (NEW.name, 'primary group', 'PRIMARY') RETURNING gid INTO group_id;
        INSERT INTO user_to_groups (uid, gid) VALUES (NEW.id, group_id);
        UPDATE users SET primary_gid = group_id WHERE id = NEW.id;
        INSERT INTO user_to_groups (uid, gid)
            VALUES (NEW.id, (SELECT gid FROM groups WHERE type = 'EVERYONE'));
    ELSIF TG_OP = 'UPDATE' THEN
        UPDATE groups SET name = NEW.name WHERE gid = NEW.primary_gid;
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM groups WHERE gid = OLD.primary_gid;
    END IF;
    RETURN NULL;
END; $$ LANGUAGE plpgsql;
CREATE TRIGGER user_modification AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE PROCEDURE set_user_groups();

CREATE FUNCTION set_project_to_owner_group() RETURNS TRIGGER AS $$
DECLARE
    group_id BIGINT;
BEGIN
    SELECT u.primary_gid INTO group_id FROM users u WHERE u.id = NEW.prj_owner LIMIT 1;
    IF group_id IS NOT NULL AND TG_OP = 'INSERT' THEN
        INSERT INTO project_to_groups (gid, project_uuid, read, write, delete)
            VALUES (group_id, NEW.uuid, TRUE, TRUE, TRUE);
    END IF;
    RETURN NULL;
END; $$ LANGUAGE plpgsql;
CREATE TRIGGER project_creation AFTER INSERT ON projects
    FOR EACH ROW EXECUTE PROCEDURE set_project_to_owner_group();

CREATE FUNCTION projects_nodes_auto_update_modified_timestamp() RETURNS TRIGGER AS $$
BEGIN
    NEW.modified := current_timestamp;
    RETURN NEW;
END; $$ LANGUAGE plpgsql;
CREATE TRIGGER auto_update_modified_timestamp BEFORE INSERT OR UPDATE ON projects_nodes
    FOR EACH ROW EXECUTE PROCEDURE projects_nodes_auto_update_modified_timestamp();
"""

SLEEPER = ("simcore/services/comp/itis/sleeper", "2.1.4")
RAW_GRAPHS = ("simcore/services/dynamic/raw-graphs", "2.11.1")
NS = uuid.UUID("6f1d2a4e-3c5b-4a7d-9e8f-0b1c2d3e4f50")
T0 = datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC)


@dataclass
class File:
    """One file of a node: ``name`` under ``<project>/<node>/``.

    ``data`` None: the row exists, the object does not (a source defect).
    ``etag`` "multipart": the row's entity tag is a multipart ETag.
    ``sha256`` False: the row's checksum is NULL.
    ``link_to``: a soft link to another file's key (its row has no object).
    ``children``: a directory row (no checksum, no ETag); its objects are
    ``<key>/<child>``.
    """

    node: int
    name: str
    data: bytes | None = b""
    etag: str = "md5"
    sha256: bool = True
    link_to: str | None = None
    children: dict[str, bytes] | None = None  # a directory row and its objects


@dataclass
class Project:
    """A project: its name, owner e-mail, node labels and files."""

    name: str
    owner: str
    nodes: list[str]
    files: list[File] = field(default_factory=list)
    uuid: uuid.UUID | None = None  # forced (a collision); else derived
    tags: list[str] = field(default_factory=list)
    shared_with_everyone: bool = False
    in_workspace: bool = False
    service: tuple[str, str] = SLEEPER  # every node's (key, version)


@dataclass
class Deployment:
    """A deployment: label, product, users ``(email, name)``, projects, stray objects."""

    label: str
    users: list[tuple[str, str]]
    projects: list[Project] = field(default_factory=list)
    product: str = "osparc"
    services: list[tuple[str, str]] = field(default_factory=lambda: [SLEEPER])
    orphans: list[str] = field(default_factory=list)  # keys of objects no row names


def project_uuid(d: Deployment, p: Project) -> str:
    """The project's UUID (forced, or derived from the deployment and name)."""
    return str(p.uuid or uuid.uuid5(NS, f"{d.label}:project:{p.name}"))


def node_uuid(d: Deployment, p: Project, i: int) -> str:
    """The UUID of a project's node ``i``."""
    return str(uuid.uuid5(NS, f"{d.label}:node:{p.name}:{i}"))


def file_key(d: Deployment, p: Project, f: File) -> str:
    """``<project_uuid>/<node_uuid>/<name>``: the file's id and S3 key."""
    return f"{project_uuid(d, p)}/{node_uuid(d, p, f.node)}/{f.name}"


def create(url: str) -> None:
    """Create the schema, with its triggers and the Everyone group."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(DDL)
    finally:
        engine.dispose()


def populate(url: str, d: Deployment, put: Any = None) -> None:
    """Insert a deployment's rows; ``put(key, data)`` stores each file's object.

    Ids come from the database's sequences (1, 2, ...), so two deployments
    clash; the triggers make the primary groups, memberships and owner
    access rows.
    """
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            x = conn.exec_driver_sql
            x(
                "INSERT INTO products (name, host_regex, base_url) VALUES (%s, %s, %s)",
                (d.product, ".*", f"https://{d.label}.example"),
            )
            for key, version in d.services:
                x(
                    "INSERT INTO services_meta_data (key, version, name, description) "
                    "VALUES (%s, %s, %s, %s)",
                    (key, version, key.rsplit("/", 1)[-1], f"{key} {version}"),
                )
            ids: dict[str, int] = {}
            for email, name in d.users:
                ids[email] = x(
                    "INSERT INTO users (name, email) VALUES (%s, %s) RETURNING id",
                    (name, email),
                ).scalar_one()
            everyone = x("SELECT gid FROM groups WHERE type = 'EVERYONE'").scalar_one()
            tag_ids: dict[str, int] = {}
            for p in d.projects:
                pu = project_uuid(d, p)
                nodes = [node_uuid(d, p, i) for i in range(len(p.nodes))]
                ws = None
                if p.in_workspace:
                    gid = x(
                        "SELECT primary_gid FROM users WHERE id = %s", (ids[p.owner],)
                    ).scalar_one()
                    ws = x(
                        "INSERT INTO workspaces (name, owner_primary_gid, product_name) "
                        "VALUES (%s, %s, %s) RETURNING workspace_id",
                        (f"ws of {p.name}", gid, d.product),
                    ).scalar_one()
                ui = {
                    "workbench": {
                        n: {"position": {"x": 10 * i, "y": 5}}
                        for i, n in enumerate(nodes)
                    },
                    "slideshow": {nodes[0]: {"position": 0}} if nodes else {},
                }
                pid = x(
                    "INSERT INTO projects (type, uuid, name, description, prj_owner, "
                    "workspace_id, ui, dev, published, hidden, creation_date, "
                    "last_change_date, classifiers, quality, product_name) VALUES "
                    "('STANDARD', %s, %s, %s, %s, %s, %s, '{}', false, false, %s, %s, "
                    "%s, '{}', %s) RETURNING id",
                    (
                        pu,
                        p.name,
                        f"{p.name} (mentions {pu} in its text)",
                        ids[p.owner],
                        ws,
                        _json(ui),
                        T0.replace(tzinfo=None),
                        T0.replace(tzinfo=None),
                        ["RRID:SCR_018997"],
                        d.product,
                    ),
                ).scalar_one()
                outputs: dict[int, dict[str, Any]] = {}
                for f in p.files:
                    if f.link_to is None:
                        outputs.setdefault(f.node, {})[
                            f"out_{len(outputs.get(f.node, {})) + 1}"
                        ] = {
                            "store": 0,
                            "path": file_key(d, p, f),
                        }
                for i, (n, label) in enumerate(zip(nodes, p.nodes, strict=True)):
                    inputs: dict[str, Any] = {"x": 1.5}
                    input_nodes: list[str] = []
                    if i:
                        inputs["in_1"] = {"nodeUuid": nodes[i - 1], "output": "out_1"}
                        input_nodes.append(nodes[i - 1])
                        prev = outputs.get(i - 1, {})
                        if prev:
                            inputs["in_2"] = {
                                "store": 0,
                                "path": next(iter(prev.values()))["path"],
                            }
                    x(
                        "INSERT INTO projects_nodes (project_uuid, node_id, key, version, "
                        "label, inputs, input_nodes, outputs, state) VALUES "
                        "(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (
                            pu,
                            n,
                            p.service[0],
                            p.service[1],
                            label,
                            _json(inputs),
                            _json(input_nodes),
                            _json(outputs.get(i, {})),
                            _json({"currentStatus": "SUCCESS"}),
                        ),
                    )
                for f in p.files:
                    key = file_key(d, p, f)
                    data = f.data or b""
                    if f.children is not None:
                        data = b"".join(f.children.values())
                    etag = (
                        hashlib.md5(data).hexdigest()  # the S3 ETag
                        if f.etag == "md5"
                        else "9b2cf535f27731c974343645a3985328-2"
                    )
                    x(
                        "INSERT INTO file_meta_data (location_id, location, bucket_name, "
                        "object_name, project_id, node_id, user_id, file_id, created_at, "
                        "last_modified, file_size, entity_tag, is_soft_link, "
                        "sha256_checksum, is_directory) VALUES ('0', 'simcore.s3', %s, %s, "
                        "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (
                            f"{d.label}-simcore",
                            f.link_to or key,
                            pu,
                            node_uuid(d, p, f.node),
                            ids[p.owner],
                            key,
                            T0,
                            T0,
                            len(data),
                            None if f.children is not None else etag,
                            f.link_to is not None,
                            hashlib.sha256(data).hexdigest()
                            if f.sha256 and f.children is None
                            else None,
                            f.children is not None,
                        ),
                    )
                    if put is not None and f.children is not None:
                        for child, body in f.children.items():
                            put(f"{key}/{child}", body)
                    elif put is not None and f.data is not None and f.link_to is None:
                        put(key, f.data)
                if p.shared_with_everyone:
                    x(
                        "INSERT INTO project_to_groups (project_uuid, gid, read) "
                        "VALUES (%s, %s, true)",
                        (pu, everyone),
                    )
                for t in p.tags:
                    if t not in tag_ids:
                        tag_ids[t] = x(
                            "INSERT INTO tags (name, color) VALUES (%s, '#fff') RETURNING id",
                            (t,),
                        ).scalar_one()
                    x(
                        "INSERT INTO projects_tags (project_id, tag_id, project_uuid_for_rut) "
                        "VALUES (%s, %s, %s)",
                        (pid, tag_ids[t], pu),
                    )
        if put is not None:
            for key in d.orphans:
                put(key, b"an object no row names")
    finally:
        engine.dispose()


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


COLLIDING = uuid.UUID("00000000-0000-4000-8000-00000000c011")

DEST = Deployment(
    label="a",
    users=[
        ("alice@example.org", "alice"),
        ("dora@a.example", "dora"),
    ],
    projects=[
        Project("alpha", "alice@example.org", ["n0"], [File(0, "x.dat", b"alpha x")]),
        Project(
            "clash",
            "dora@a.example",
            ["c0"],
            [File(0, "c.dat", b"dest clash")],
            uuid=COLLIDING,
        ),
    ],
)
"""Deployment A, the destination."""

SOURCE = Deployment(
    label="b",
    users=[
        ("bob@b.example", "bob"),
        ("Alice@Example.org", "alice_b"),  # alice, e-mail in another case
        ("carol@b.example", "carol"),
    ],
    projects=[
        Project("filler", "bob@b.example", ["f0"], [File(0, "f.dat", b"filler")]),
        Project(
            "survey",
            "Alice@Example.org",
            ["sim", "post", "view"],
            [
                File(0, "mesh.vtk", b"mesh " * 2000),
                File(1, "result.csv", b"t,v\n0,1\n"),
                File(1, "big.h5", b"H" * 3_000_000, etag="multipart"),
                File(1, "raw.dat", b"raw bytes", etag="multipart", sha256=False),
                File(2, "notes.txt", b"no checksum", sha256=False),
                File(2, "lost.bin", None),  # a row without its object
                File(
                    0, "outputs", children={"a.txt": b"first", "sub/b.txt": b"second"}
                ),
            ],
            uuid=COLLIDING,  # the same project UUID as A's "clash"
            tags=["review"],
            shared_with_everyone=True,
            in_workspace=True,
        ),
        Project("orphaned-owner", "carol@b.example", ["o0"], service=RAW_GRAPHS),
    ],
    services=[SLEEPER, RAW_GRAPHS],  # A has only the sleeper
    orphans=[f"{COLLIDING}/00000000-0000-4000-8000-0000000000aa/stray.bin"],
)
"""Deployment B, the source: "survey" is the project that moves to A."""


def add_links(url: str, d: Deployment) -> None:
    """Add to "survey" a soft link inside the project and one to another project's file."""
    survey = next(p for p in d.projects if p.name == "survey")
    filler = next(p for p in d.projects if p.name == "filler")
    inside = file_key(d, survey, survey.files[0])
    outside = file_key(d, filler, filler.files[0])
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for name, target in (("link-in", inside), ("link-out", outside)):
                conn.exec_driver_sql(
                    "INSERT INTO file_meta_data (location_id, location, bucket_name, "
                    "object_name, project_id, node_id, user_id, file_id, created_at, "
                    "last_modified, file_size, entity_tag, is_soft_link) "
                    "SELECT location_id, location, bucket_name, %s, project_id, %s, "
                    "user_id, %s, created_at, last_modified, file_size, entity_tag, true "
                    "FROM file_meta_data WHERE file_id = %s",
                    (
                        target,
                        node_uuid(d, survey, 2),
                        f"{project_uuid(d, survey)}/{node_uuid(d, survey, 2)}/{name}",
                        inside,
                    ),
                )
    finally:
        engine.dispose()
