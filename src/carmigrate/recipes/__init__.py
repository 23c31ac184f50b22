"""Recipes: the real migrations, built only on the engine and the layers below.

- web3.storage legacy uploads → w3up: CAR CIDs from backup URLs, w3up
  records, and the space-export CAR.
"""

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

__all__ = [
    "CAR_CODEC",
    "EXPORT_PAGE_SIZE",
    "LegacyUpload",
    "Shard",
    "UploadRecords",
    "car_cid_from_key",
    "parse_legacy_uploads",
    "read_space_export",
    "w3up_records",
    "write_space_export",
]
