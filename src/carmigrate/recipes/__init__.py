"""Recipes: the real migrations, built only on the engine and the layers below.

- [carmigrate.recipes.w3up_legacy][]: web3.storage legacy uploads → w3up.
  The listing format, CAR CIDs from backup URLs and bucket keys, the shard
  CARs copied (or verified where they already are) by the migration engine,
  w3up records for every upload whose shards all verified, and a
  deterministic space-export CAR per tenant; per-tenant rate limits.
- [carmigrate.recipes.filecoin_backfill][]: CARs stored before the Filecoin
  pipeline existed → PieceCIDs (from migration ledgers, or scanned in the
  read that verifies them) → the aggregate queue → aggregates, deal
  manifests and a per-CAR report with inclusion proofs.
"""

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
from carmigrate.recipes.filecoin_backfill import (
    FILECOIN_BACKFILL,
    BackfillEntry,
    BackfillJournal,
    BackfillOptions,
    BackfillResult,
    backfill_filecoin,
)
from carmigrate.recipes.w3up_legacy import (
    DEFAULT_LAYOUT,
    W3UP_LEGACY,
    ShardOutcome,
    UploadOutcome,
    W3upLegacyJournal,
    W3upLegacyOptions,
    W3upLegacyResult,
    export_name,
    migrate_w3up_legacy,
)

__all__ = [
    "BackfillEntry",
    "BackfillJournal",
    "BackfillOptions",
    "BackfillResult",
    "CAR_CODEC",
    "CLI",
    "CliOption",
    "DEFAULT_LAYOUT",
    "EXPORT_PAGE_SIZE",
    "FILECOIN_BACKFILL",
    "LegacyUpload",
    "Recipe",
    "RecipeContext",
    "RecipeResult",
    "RoundPlans",
    "Shard",
    "ShardOutcome",
    "UploadOutcome",
    "UploadRecords",
    "W3UP_LEGACY",
    "W3upLegacyJournal",
    "W3upLegacyOptions",
    "W3upLegacyResult",
    "backfill_filecoin",
    "car_cid_from_key",
    "export_name",
    "get_recipe",
    "migrate_w3up_legacy",
    "option",
    "parse_legacy_uploads",
    "read_space_export",
    "recipe_names",
    "register_recipe",
    "run_recipe",
    "w3up_records",
    "write_space_export",
]
