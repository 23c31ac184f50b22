"""Recipes: the real migrations, built only on the engine and the layers below.

- [carmigrate.recipes.w3up_legacy][]: web3.storage legacy uploads → w3up.
  The listing format, CAR CIDs from backup URLs and bucket keys, the shard
  CARs copied (or verified where they already are) by the migration engine,
  w3up records for every upload whose shards all verified, and a
  deterministic space-export CAR per tenant; per-tenant rate limits.
- [carmigrate.recipes.filecoin_backfill][]: CARs stored before the Filecoin
  pipeline existed → PieceCIDs (from migration ledgers, or scanned in the
  read that verifies them) → the aggregate queue → aggregates, deal
  manifests, and per CAR its aggregate and inclusion proof.
- [carmigrate.recipes.bag_backfill][]: every BagIt bag version of a
  storage service's register → a verified replica at each new provider:
  objects restored from cold tiers in batches, copied (server-side where
  possible), every byte compared with the register's digests, the replica
  verified as a bag, then registered in a new revision of its storage
  manifest; and the coverage of bags x providers
  ([bag_coverage][carmigrate.recipes.bag_coverage]).
- The bag register ([BagRegister][carmigrate.recipes.BagRegister]): storage
  manifests per bag version as versioned JSON records in any store; and the
  fixity cache ([FixityCache][carmigrate.recipes.FixityCache],
  [verify_replica][carmigrate.recipes.verify_replica]): digests verified per
  object version, so a replica gone cold is re-verified without a restore.
- [carmigrate.recipes.osparc][]: oSPARC projects between deployments. The
  shipped record mapping (contexts, ID rules, natural keys, implicit
  references), one project staged and planned through the records layer,
  a fidelity report of what is not carried, the source's defects (missing
  and orphan objects, multipart ETags, NULL checksums, soft links), and a
  verifiable, optionally signed CARv2 archive of a project's rows and files.
- [carmigrate.recipes.owncloud][]: ownCloud 10 → oCIS. An inventory of an
  instance (database and data directory): per user its files, folders,
  versions, trash, shares and bytes, and where the two sides disagree
  ([owncloud_inventory][carmigrate.recipes.owncloud_inventory]).
- [carmigrate.recipes.owncloud_ocis][]: ownCloud 10 → oCIS by cohorts of
  users: homes (files, versions, trash) into personal spaces, in a
  store layout or oCIS's decomposedfs, file ids, etags, mtimes and
  checksums kept and proved per file after reading the target back; delta
  passes; shares as the records of oCIS's JSON share managers
  ([ocis_share_records][carmigrate.recipes.ocis_share_records]).

What a recipe knows is in its work ledger, read with
[work_ledger][carmigrate.recipes.work_ledger]: one unit per upload or CAR,
with the recipe's data and a verdict with its reasons.
"""

from carmigrate.recipes._bag_coverage import BagCoverage, CoverageRow, bag_coverage
from carmigrate.recipes._bag_register import (
    ALGORITHM_STRENGTH,
    BagRegister,
    ManifestFile,
    StorageLocation,
    StorageManifest,
    register_bag,
)
from carmigrate.recipes._bag_replicas import ReplicaStore
from carmigrate.recipes._fixity import FixityCache, ReplicaCheck, verify_replica
from carmigrate.recipes._ocis_decomposedfs import (
    DfsNode,
    DfsRevision,
    DfsSpace,
    DfsTrashItem,
    DfsTrashView,
    DfsView,
    DfsWriteResult,
    dfs_blob_key,
    dfs_computed_etag,
    dfs_stable_id,
    read_decomposedfs_space,
    read_decomposedfs_trash,
    s3ng_blob_key,
    write_decomposedfs_space,
)
from carmigrate.recipes._ocis_shares import (
    OCIS_PUBLIC_SHARES_FILE,
    OCIS_SHARES_FILE,
    OcisResourceId,
    OcisShareRecords,
    OwncloudShare,
    ShareLoss,
    ShareNotCarried,
    cs3_resource_permissions,
    ocis_share_records,
    read_owncloud_group_members,
    read_owncloud_shares,
    write_ocis_share_records,
)
from carmigrate.recipes._osparc_archive import (
    CHUNK_SIZE,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    OsparcArchive,
    UploadedArchive,
    export_osparc_projects,
    read_osparc_archive,
    schema_fingerprint,
    upload_osparc_archive,
)
from carmigrate.recipes._osparc_files import (
    DEFECT_KINDS,
    OsparcFile,
    SourceDefect,
    check_osparc_files,
)
from carmigrate.recipes._osparc_import import (
    LEASE_SECONDS,
    LEASE_TABLE,
    ImportState,
    OsparcImport,
    import_osparc_archive,
)
from carmigrate.recipes._osparc_jobs import (
    JOBS_ENV,
    JobStatus,
    job_status,
    jobs_folder,
    run_osparc_import_job,
    start_detached,
    submit_osparc_import,
)
from carmigrate.recipes._osparc_merge import (
    MERGE_STATE,
    MergedObject,
    OsparcMerge,
    merge_osparc_deployments,
    rollback_osparc_merge,
    select_osparc_projects,
)
from carmigrate.recipes._osparc_rows import (
    CARRIED_COLUMNS,
    FILE_PATH,
    NOT_CARRIED,
    NotCarried,
    OsparcFidelity,
    new_project_uuid,
    osparc_fidelity,
    osparc_mapping,
    plan_osparc_project,
    preflight_problems,
    read_osparc_rows,
    rows_columns,
    stage_osparc_project,
)
from carmigrate.recipes._owncloud_tree import (
    OwncloudEntry,
    OwncloudHome,
    OwncloudTrashed,
    OwncloudVersion,
    read_owncloud_home,
)
from carmigrate.recipes._recipe import (
    CLI,
    CliOption,
    Recipe,
    RecipeContext,
    RecipeResult,
    RoundPlans,
    get_recipe,
    option,
    recipe_names,
    register_recipe,
    run_recipe,
    work_ledger,
)
from carmigrate.recipes._w3up_records import (
    CAR_CODEC,
    EXPORT_PAGE_SIZE,
    LegacyUpload,
    Shard,
    UploadRecords,
    car_cid_from_key,
    parse_legacy_uploads,
    read_space_export,
    w3up_records,
    write_space_export,
)
from carmigrate.recipes.bag_backfill import (
    BAG_BACKFILL,
    BagBackfillOptions,
    backfill_bags,
)
from carmigrate.recipes.filecoin_backfill import (
    FILECOIN_BACKFILL,
    BackfillOptions,
    backfill_filecoin,
)
from carmigrate.recipes.osparc import OSPARC, OsparcOptions
from carmigrate.recipes.owncloud import (
    OWNCLOUD_FINDING_KINDS,
    OwncloudFinding,
    OwncloudInventory,
    OwncloudUserCounts,
    owncloud_inventory,
    read_owncloud_instance_id,
)
from carmigrate.recipes.owncloud_ocis import (
    LAYOUTS,
    OCIS_STORAGE_ID,
    OWNCLOUD,
    OwncloudNodeView,
    OwncloudOptions,
    SyncCheck,
    ocis_node_id,
    ocis_space_id,
    owncloud_blob_id,
    owncloud_sync_check,
    read_spaces_layout,
)
from carmigrate.recipes.w3up_legacy import (
    DEFAULT_LAYOUT,
    W3UP_LEGACY,
    W3upLegacyOptions,
    export_name,
    migrate_w3up_legacy,
)

__all__ = [
    "ALGORITHM_STRENGTH",
    "BAG_BACKFILL",
    "BackfillOptions",
    "BagBackfillOptions",
    "BagCoverage",
    "BagRegister",
    "CARRIED_COLUMNS",
    "CAR_CODEC",
    "CHUNK_SIZE",
    "CLI",
    "CliOption",
    "CoverageRow",
    "DEFAULT_LAYOUT",
    "DEFECT_KINDS",
    "DfsNode",
    "DfsRevision",
    "DfsSpace",
    "DfsTrashItem",
    "DfsTrashView",
    "DfsView",
    "DfsWriteResult",
    "EXPORT_FORMAT",
    "EXPORT_PAGE_SIZE",
    "EXPORT_VERSION",
    "FILECOIN_BACKFILL",
    "FILE_PATH",
    "FixityCache",
    "ImportState",
    "JOBS_ENV",
    "JobStatus",
    "LAYOUTS",
    "LEASE_SECONDS",
    "LEASE_TABLE",
    "LegacyUpload",
    "MERGE_STATE",
    "ManifestFile",
    "MergedObject",
    "NOT_CARRIED",
    "NotCarried",
    "OCIS_PUBLIC_SHARES_FILE",
    "OCIS_SHARES_FILE",
    "OCIS_STORAGE_ID",
    "OSPARC",
    "OWNCLOUD",
    "OWNCLOUD_FINDING_KINDS",
    "OcisResourceId",
    "OcisShareRecords",
    "OsparcArchive",
    "OsparcFidelity",
    "OsparcFile",
    "OsparcImport",
    "OsparcMerge",
    "OsparcOptions",
    "OwncloudEntry",
    "OwncloudFinding",
    "OwncloudHome",
    "OwncloudInventory",
    "OwncloudNodeView",
    "OwncloudOptions",
    "OwncloudShare",
    "OwncloudTrashed",
    "OwncloudUserCounts",
    "OwncloudVersion",
    "Recipe",
    "RecipeContext",
    "RecipeResult",
    "ReplicaCheck",
    "ReplicaStore",
    "RoundPlans",
    "Shard",
    "ShareLoss",
    "ShareNotCarried",
    "SourceDefect",
    "StorageLocation",
    "StorageManifest",
    "SyncCheck",
    "UploadRecords",
    "UploadedArchive",
    "W3UP_LEGACY",
    "W3upLegacyOptions",
    "backfill_bags",
    "backfill_filecoin",
    "bag_coverage",
    "car_cid_from_key",
    "check_osparc_files",
    "cs3_resource_permissions",
    "dfs_blob_key",
    "dfs_computed_etag",
    "dfs_stable_id",
    "export_name",
    "export_osparc_projects",
    "get_recipe",
    "import_osparc_archive",
    "job_status",
    "jobs_folder",
    "merge_osparc_deployments",
    "migrate_w3up_legacy",
    "new_project_uuid",
    "ocis_node_id",
    "ocis_share_records",
    "ocis_space_id",
    "option",
    "osparc_fidelity",
    "osparc_mapping",
    "owncloud_blob_id",
    "owncloud_inventory",
    "owncloud_sync_check",
    "parse_legacy_uploads",
    "plan_osparc_project",
    "preflight_problems",
    "read_decomposedfs_space",
    "read_decomposedfs_trash",
    "read_osparc_archive",
    "read_osparc_rows",
    "read_owncloud_group_members",
    "read_owncloud_home",
    "read_owncloud_instance_id",
    "read_owncloud_shares",
    "read_space_export",
    "read_spaces_layout",
    "recipe_names",
    "register_bag",
    "register_recipe",
    "rollback_osparc_merge",
    "rows_columns",
    "run_osparc_import_job",
    "run_recipe",
    "s3ng_blob_key",
    "schema_fingerprint",
    "select_osparc_projects",
    "stage_osparc_project",
    "start_detached",
    "submit_osparc_import",
    "upload_osparc_archive",
    "verify_replica",
    "w3up_records",
    "work_ledger",
    "write_decomposedfs_space",
    "write_ocis_share_records",
    "write_space_export",
]
