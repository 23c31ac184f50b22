"""oSPARC projects exported from one deployment, for import into another.

The real case: an oSPARC deployment (ITISFoundation/osparc-simcore) is shut
down, and its users' projects move to another deployment, where the users
already have accounts. A project is its row in ``projects``, its nodes
(``projects_nodes``), its files' rows (``file_meta_data``) and the objects
``<project_uuid>/<node_uuid>/<name>`` in the deployment's S3 bucket.

What this release does:

- the shipped mapping ([osparc_mapping][carmigrate.recipes.osparc_mapping])
  and the path that moves one project between two databases through the
  records layer: [stage_osparc_project][carmigrate.recipes.stage_osparc_project],
  [plan_osparc_project][carmigrate.recipes.plan_osparc_project] and
  ``carmigrate.migrate.execute_records``; the fidelity report of what is not
  carried ([osparc_fidelity][carmigrate.recipes.osparc_fidelity]);
- the source defects ([check_osparc_files][carmigrate.recipes.check_osparc_files]);
- the archive ([export_osparc_projects][carmigrate.recipes.export_osparc_projects],
  [read_osparc_archive][carmigrate.recipes.read_osparc_archive]), its
  upload with a download link
  ([upload_osparc_archive][carmigrate.recipes.upload_osparc_archive]), and
  the command ``carmigrate recipe osparc export [--upload URL]``;
- importing a one-project archive
  ([import_osparc_archive][carmigrate.recipes.import_osparc_archive], and
  ``carmigrate recipe osparc import``): verified first, a pre-flight
  report, a lease on the project, files then rows, everything written
  removed on failure; with ``--detach``, a job
  ([submit_osparc_import][carmigrate.recipes.submit_osparc_import]) run in
  a new process, followed with ``carmigrate job status ID`` and resumed
  after a kill with ``carmigrate job run ID``;
- merging one deployment into another
  ([merge_osparc_deployments][carmigrate.recipes.merge_osparc_deployments],
  ``carmigrate recipe osparc merge``): projects one by one, objects copied
  and checked, then rows context by context; resumed by running it again,
  undone by [rollback_osparc_merge][carmigrate.recipes.rollback_osparc_merge].
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from carmigrate.migrate import Unit, Verdict
from carmigrate.recipes._osparc_archive import (
    export_osparc_projects,
    upload_osparc_archive,
)
from carmigrate.recipes._osparc_import import import_osparc_archive
from carmigrate.recipes._osparc_jobs import start_detached, submit_osparc_import
from carmigrate.recipes._osparc_merge import merge_osparc_deployments
from carmigrate.recipes._recipe import (
    Recipe,
    RecipeContext,
    RoundPlans,
    option,
    register_recipe,
)

if TYPE_CHECKING:
    from carmigrate.storage import Store

__all__ = ["OSPARC", "OsparcOptions"]


def _read_key(path: str) -> bytes:
    """A raw 32-byte Ed25519 private key from a file (raw bytes, or PEM PKCS#8)."""
    data = Path(path).read_bytes()
    if len(data) == 32:
        return data
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        msg = f"{path}: not an Ed25519 private key"
        raise ValueError(msg)
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def _check(options: OsparcOptions) -> None:
    if options.action == "merge":
        sides = (options.from_db, options.from_s3, options.to_db, options.to_s3)
        if any(x is None for x in sides) or options.staging is None:
            msg = "merge needs --from-db, --from-s3, --to-db, --to-s3 and --staging"
            raise ValueError(msg)
        if options.archive:
            msg = "merge takes no ARCHIVE"
            raise ValueError(msg)
        return
    if not options.db or not options.s3:
        msg = f"{options.action} needs --db and --s3"
        raise ValueError(msg)
    if options.action == "export" and (not options.project or options.output is None):
        msg = "export needs --project (at least one) and -o"
        raise ValueError(msg)
    if options.action == "import" and (
        len(options.archive) != 1 or options.ledger is None or options.staging is None
    ):
        msg = "import needs one ARCHIVE, --ledger and --staging"
        raise ValueError(msg)
    if options.action == "export" and options.archive:
        msg = "export takes no ARCHIVE"
        raise ValueError(msg)
    if options.upload is not None and "/" not in options.upload.rstrip("/"):
        msg = f"--upload needs a store URL and a key, not {options.upload!r}"
        raise ValueError(msg)
    if options.link_expiry <= 0:
        msg = f"--link-expiry must be positive, not {options.link_expiry}"
        raise ValueError(msg)


@attrs.frozen(kw_only=True)
class OsparcOptions:
    """The options of ``carmigrate recipe osparc``.

    Attributes:
        action: ``export`` (projects to an archive), ``import`` (an
            archive into a deployment) or ``merge`` (deployment A into
            deployment B).
        archive: For ``import``: the archive (one project).
        db: The deployment's database URL (the source for ``export``, the
            destination for ``import``).
        s3: Its bucket (``s3://bucket``; credentials and endpoint from the
            ``AWS_*`` environment variables).
        project: For ``export`` and ``merge``: the UUIDs of the projects.
        output: For ``export``: the archive to write.
        deployment: For ``export``: a name for the source deployment.
        signing_key: For ``export``: a file with an Ed25519 private key (32
            raw bytes or PEM): sign the archive.
        upload: For ``export``: also store the archive at this URL (a
            store URL and the key, e.g. ``s3://exports/alice/project.car``)
            and print a presigned download link.
        link_expiry: For ``export --upload``: the link's validity, seconds.
        ledger: For ``import``: the record ledger (a new SQLite file).
        staging: For ``import``: an empty PostgreSQL database for the rows;
            for ``merge``: a PostgreSQL database for the rows of the project
            being merged (the carried tables are made and dropped there).
        public_key: For ``import``: a file with the 32-byte Ed25519 public
            key the archive must be signed with.
        from_db: For ``merge``: deployment A's database URL.
        from_s3: For ``merge``: A's bucket.
        to_db: For ``merge``: deployment B's database URL.
        to_s3: For ``merge``: B's bucket.
        from_profile: For ``merge``: the AWS named profile with A's
            credentials (default: the ``AWS_*`` environment variables).
        to_profile: For ``merge``: the AWS named profile with B's
            credentials (default: the ``AWS_*`` environment variables).
        user: For ``merge``: merge the projects of these users (e-mails);
            with neither ``user`` nor ``project``, every project.
        detach: For ``import``: submit a job, start it in a new process
            and return its id at once.

    Raises:
        ValueError: An option the action needs is missing.
    """

    action: str = option(
        "export, import or merge",
        positional=True,
        choices=("export", "import", "merge"),
    )
    archive: tuple[str, ...] = option(
        "import: the archive",
        positional=True,
        repeat=True,
        default=(),
        metavar="ARCHIVE",
    )
    db: str = option(
        "export, import: the deployment's database URL", default="", metavar="URL"
    )
    s3: str = option(
        "export, import: the deployment's bucket", default="", metavar="URL"
    )
    project: tuple[str, ...] = option(
        "export, merge: a project UUID (repeatable)",
        repeat=True,
        default=(),
        metavar="UUID",
    )
    output: str | None = option(
        "export: the archive (CARv2) to write", flag="-o", default=None, metavar="FILE"
    )
    deployment: str = option(
        "export: a name for the source deployment", default="", metavar="NAME"
    )
    signing_key: str | None = option(
        "export: sign with this Ed25519 private key (raw or PEM)",
        default=None,
        metavar="FILE",
    )
    upload: str | None = option(
        "export: also store the archive at this URL (store URL/key) and print a download link",
        default=None,
        metavar="URL",
    )
    link_expiry: int = option(
        "export --upload: the download link's validity in seconds",
        default=7 * 24 * 3600,
        metavar="SECONDS",
        parse=int,
    )
    ledger: str | None = option(
        "import: the record ledger (a new file)", default=None, metavar="FILE"
    )
    staging: str | None = option(
        "import: an empty PostgreSQL database for the rows; merge: a PostgreSQL "
        "database for the rows of the project being merged",
        default=None,
        metavar="URL",
    )
    public_key: str | None = option(
        "import: require a signature by this Ed25519 public key (32 raw bytes)",
        default=None,
        metavar="FILE",
    )

    from_db: str | None = option(
        "merge: deployment A's database URL (merged from)", default=None, metavar="URL"
    )
    from_s3: str | None = option(
        "merge: A's bucket (s3://bucket)", default=None, metavar="URL"
    )
    to_db: str | None = option(
        "merge: deployment B's database URL (merged into)", default=None, metavar="URL"
    )
    to_s3: str | None = option(
        "merge: B's bucket (s3://bucket)", default=None, metavar="URL"
    )
    from_profile: str | None = option(
        "merge: the AWS profile (~/.aws) with A's credentials",
        default=None,
        metavar="NAME",
    )
    to_profile: str | None = option(
        "merge: the AWS profile (~/.aws) with B's credentials",
        default=None,
        metavar="NAME",
    )
    user: tuple[str, ...] = option(
        "merge: the projects of this user (e-mail, any case; repeatable)",
        repeat=True,
        default=(),
        metavar="EMAIL",
    )

    detach: bool = option(
        "import: run as a job in a new process; print its id (carmigrate job status ID)",
        default=False,
    )

    def __attrs_post_init__(self) -> None:
        _check(self)


def _make_plans(options: OsparcOptions, ctx: RecipeContext) -> RoundPlans:
    if options.action == "merge":
        return RoundPlans(
            units=(
                Unit(
                    name="merge",
                    kind="osparc-merge",
                    owner="",
                    data={"action": "merge"},
                ),
            )
        )
    names = options.project if options.action == "export" else options.archive
    units = tuple(
        Unit(
            name=f"{options.action}:{n}",
            kind=f"osparc-{options.action}",
            owner=n,
            data={"action": options.action},
        )
        for n in names
    )
    return RoundPlans(units=units)


def _finish(options: OsparcOptions, ctx: RecipeContext) -> dict[str, Any]:
    if ctx.dry_run:
        return {"action": options.action}
    if options.action == "merge":
        return _merge(options, ctx)
    store = ctx.store(options.s3)
    if options.action == "import":
        assert options.ledger is not None  # _check
        assert options.staging is not None
        if options.detach:
            job = submit_osparc_import(
                options.archive[0],
                database=options.db,
                s3=options.s3,
                ledger=options.ledger,
                staging=options.staging,
                public_key=options.public_key,
            )
            pid = start_detached(job)
            ctx.ledger.set_verdict(f"import:{options.archive[0]}", Verdict.COMPLETE, [])
            return {"job": job, "pid": pid}
        key = (
            None
            if options.public_key is None
            else Path(options.public_key).read_bytes()
        )
        done = import_osparc_archive(
            options.archive[0],
            database=options.db,
            store=store,
            ledger=options.ledger,
            staging=options.staging,
            public_key=key,
        )
        ctx.ledger.set_verdict(f"import:{options.archive[0]}", Verdict.COMPLETE, [])
        return {
            "project": done.project,
            "new_project": done.new_project,
            "preflight": list(done.preflight),
            "objects": len(done.objects),
            "rows": dict(done.rows),
        }
    assert options.output is not None  # _check
    signing = None if options.signing_key is None else _read_key(options.signing_key)
    root = export_osparc_projects(
        options.db,
        store,
        options.project,
        options.output,
        deployment=options.deployment,
        signing_key=signing,
    )
    out: dict[str, Any] = {
        "archive": options.output,
        "root": str(root),
        "signed": signing is not None,
    }
    if options.upload is not None:
        where, _, name = options.upload.rstrip("/").rpartition("/")
        uploaded = upload_osparc_archive(
            options.output, ctx.store(where), name, expires_in=options.link_expiry
        )
        out["upload"] = attrs.asdict(uploaded)
    for p in options.project:
        ctx.ledger.set_verdict(f"export:{p}", Verdict.COMPLETE, [])
    return out


def _merge(options: OsparcOptions, ctx: RecipeContext) -> dict[str, Any]:
    from carmigrate.storage import open_store

    assert options.from_db is not None  # _check
    assert options.to_db is not None
    assert options.from_s3 is not None
    assert options.to_s3 is not None
    assert options.staging is not None

    opened: list[Store] = []

    def side(url: str, profile: str | None) -> Store:
        if profile is None:
            return ctx.store(url)
        opened.append(open_store(url, profile=profile))
        return opened[-1]

    try:
        done = merge_osparc_deployments(
            options.from_db,
            side(options.from_s3, options.from_profile),
            options.to_db,
            side(options.to_s3, options.to_profile),
            ctx.work / "osparc-merge",
            staging=options.staging,
            users=options.user,
            projects=options.project,
        )
    finally:
        for store in opened:
            store.close()
    ctx.ledger.set_verdict("merge", Verdict.COMPLETE, [])
    return done.to_dict()


OSPARC: Recipe[OsparcOptions] = register_recipe(
    Recipe(
        name="osparc",
        summary="oSPARC projects: export to a verifiable CAR archive, import into a deployment, merge deployments",
        description=(
            "export: oSPARC projects (rows of projects, projects_nodes, file_meta_data "
            "and their S3 objects) to a CARv2 archive whose root is a DAG-CBOR manifest, "
            "with a fidelity report and the source's defects; optionally signed (Ed25519). "
            "import: verify an archive, pre-flight, lock the project, write its files "
            "then its rows, and remove everything written if anything fails. "
            "merge: every project of deployment A (or --user/--project) into B, "
            "users merged by e-mail, objects copied and checked against the rows' "
            "checksums, then the rows context by context; run again to resume."
        ),
        options=OsparcOptions,
        make_plans=_make_plans,
        finish=_finish,
        unit_label="projects",
    )
)
"""The registered recipe: ``carmigrate recipe osparc export --db URL --s3 URL --project UUID -o FILE --work DIR``, ``carmigrate recipe osparc import ARCHIVE --db URL --s3 URL --ledger FILE --staging URL --work DIR``, ``carmigrate recipe osparc merge --from-db URL --from-s3 URL --to-db URL --to-s3 URL --staging URL --work DIR``."""
