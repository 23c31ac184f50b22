"""Helpers for the bag-backfill tests: LoC-made bags of two versions, uploaded to a store.

The bags are made by the Library of Congress ``bagit`` package through
``tests/bagit/bag_helpers.py`` (imported, not copied). Version 2 of a bag
changes one file and fetches another from version 1, as a storage
service's later versions do.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bagit"))

from bag_helpers import make_loc_bag, reseal

from carmigrate.storage import Store, write_bytes

SPACE = "digitised"
PAYLOAD_V1 = {
    "a.txt": b"hello\n",
    "pages/page-1.tif": b"page one " * 200,
    "pages/page-2.tif": b"page two " * 3000,
}


def upload(folder: Path, store: Store, prefix: str) -> list[str]:
    """Write every file of a bag folder under ``prefix``; the keys written."""
    keys = []
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            key = f"{prefix}/{f.relative_to(folder).as_posix()}"
            write_bytes(store, key, f.read_bytes())
            keys.append(key)
    return keys


def make_bag_versions(tmp: Path, store: Store, external_id: str) -> list[str]:
    """Bag ``external_id`` v1 and v2 into ``store`` under ``digitised/<id>/v<N>``.

    v2 changes ``a.txt`` and fetches ``pages/page-2.tif`` from v1 (its URL
    under ``store.url``). Both are checked with sha256 and sha512
    manifests. Returns the keys written.
    """
    info = {"External-Identifier": external_id}
    v1 = make_loc_bag(tmp / f"{external_id}-v1", PAYLOAD_V1, info=info)
    keys = upload(v1, store, f"{SPACE}/{external_id}/v1")
    v2_payload = {**PAYLOAD_V1, "a.txt": b"hello again\n"}
    v2 = make_loc_bag(tmp / f"{external_id}-v2", v2_payload, info=info)
    size = len(PAYLOAD_V1["pages/page-2.tif"])
    (v2 / "data" / "pages" / "page-2.tif").unlink()
    url = f"{store.url}/{SPACE}/{external_id}/v1/data/pages/page-2.tif"
    (v2 / "fetch.txt").write_text(f"{url} {size} data/pages/page-2.tif\n")
    reseal(v2)
    return keys + upload(v2, store, f"{SPACE}/{external_id}/v2")
