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

What a recipe knows is in its work ledger, read with
[work_ledger][carmigrate.recipes.work_ledger]: one unit per upload or CAR,
with the recipe's data and a verdict with its reasons.
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
from carmigrate.recipes.filecoin_backfill import (
    FILECOIN_BACKFILL,
    BackfillOptions,
    backfill_filecoin,
)
from carmigrate.recipes.w3up_legacy import (
    DEFAULT_LAYOUT,
    W3UP_LEGACY,
    W3upLegacyOptions,
    export_name,
    migrate_w3up_legacy,
)

__all__ = [
    "BackfillOptions",
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
    "UploadRecords",
    "W3UP_LEGACY",
    "W3upLegacyOptions",
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
    "work_ledger",
    "write_space_export",
]
