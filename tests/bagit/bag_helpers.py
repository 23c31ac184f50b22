"""Shared helpers for the bagit tests: real bags made by the LoC ``bagit`` package.

Every bag is made at test time by ``bagit.make_bag`` (the Library of
Congress reference implementation, https://github.com/LibraryOfCongress/bagit-python);
broken variants are copies edited the way a careless tool or a failing disk
would, then re-sealed where a test needs only one rule to fail.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path

import bagit
from carmigrate.bagit import BagVerifyResult, folder_source, verify_bag

logging.getLogger("bagit").setLevel(logging.ERROR)

EXTERNAL_IDENTIFIER = "b12345678"
NFC_NAME = unicodedata.normalize("NFC", "café crème.txt")
NFD_NAME = unicodedata.normalize("NFD", "résumé.txt")
BIG_SIZE = 3 * 1024 * 1024 + 17

# the payload of the standard bag: nested folders, unicode names (one
# stored NFD), an empty file and a few-MB file
PAYLOAD: dict[str, bytes] = {
    "a.txt": b"hello\n",
    "nested/deeper/b.txt": b"b" * 1000,
    "nested/deeper/still/c.bin": bytes(range(256)) * 4,
    f"unicode/{NFC_NAME}": "crème brûlée\n".encode(),
    f"unicode/{NFD_NAME}": b"stored with a decomposed name\n",
    "empty.txt": b"",
    "big/three-megabytes.bin": (
        hashlib.sha512(b"seed").digest() * (BIG_SIZE // 64 + 1)
    )[:BIG_SIZE],
}


def make_loc_bag(
    path: Path,
    payload: Mapping[str, bytes] = PAYLOAD,
    *,
    checksums: Iterable[str] = ("sha256", "sha512"),
    info: Mapping[str, str] | None = None,
) -> Path:
    """Write ``payload`` into ``path`` and turn it into a bag with the LoC package."""
    path.mkdir(parents=True)
    for name, data in payload.items():
        f = path / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
    bag_info = {"External-Identifier": EXTERNAL_IDENTIFIER}
    bag_info.update(info or {})
    bagit.make_bag(str(path), bag_info, checksums=list(checksums))
    return path


def copy_bag(bag: Path, to: Path) -> Path:
    """A copy of a bag (a replica, or a variant to break)."""
    shutil.copytree(bag, to)
    return to


def reseal(bag: Path) -> None:
    """Rewrite every tag manifest from the tag files as they are now.

    What LoC's ``Bag.save()`` does for tag manifests, without its checks
    (it refuses to open some of the broken bags the tests make): each
    ``tagmanifest-<alg>.txt`` lists every file outside ``data/`` except
    the tag manifests.
    """
    tag_files = sorted(
        p.relative_to(bag).as_posix()
        for p in bag.rglob("*")
        if p.is_file()
        and not p.relative_to(bag).as_posix().startswith("data/")
        and not p.name.startswith("tagmanifest-")
    )
    for manifest in bag.glob("tagmanifest-*.txt"):
        alg = manifest.name[len("tagmanifest-") : -len(".txt")]
        lines = [
            f"{hashlib.new(alg, (bag / name).read_bytes()).hexdigest()} {name}\n"
            for name in tag_files
        ]
        manifest.write_text("".join(lines), encoding="utf-8")


def edit_bag_info(bag: Path, changes: Mapping[str, str | None]) -> None:
    """Set (or, with ``None``, remove) fields of bag-info.txt, then reseal."""
    lines = (bag / "bag-info.txt").read_text(encoding="utf-8").splitlines()
    kept = [ln for ln in lines if ln.split(":", 1)[0] not in changes]
    kept += [f"{k}: {v}" for k, v in changes.items() if v is not None]
    (bag / "bag-info.txt").write_text("\n".join(kept) + "\n", encoding="utf-8")
    reseal(bag)


def add_manifest_line(bag: Path, path: str, data: bytes) -> None:
    """List ``path`` with the digests of ``data`` in every payload manifest, then reseal."""
    for manifest in bag.glob("manifest-*.txt"):
        alg = manifest.name[len("manifest-") : -len(".txt")]
        with manifest.open("a", encoding="utf-8") as f:
            f.write(f"{hashlib.new(alg, data).hexdigest()}  {path}\n")
    reseal(bag)


def drop_manifest_line(bag: Path, manifest: str, path: str) -> None:
    """Remove the line of ``path`` from one manifest, then reseal."""
    m = bag / manifest
    lines = m.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [ln for ln in lines if not ln.rstrip("\n").endswith(f" {path}")]
    assert len(kept) == len(lines) - 1, f"{path} is not listed once in {manifest}"
    m.write_text("".join(kept), encoding="utf-8")
    reseal(bag)


def verify(bag: Path, **options: object) -> BagVerifyResult:
    """carmigrate's verification of a local bag."""
    return verify_bag(folder_source(bag), **options)  # type: ignore[arg-type]


def rules(result: BagVerifyResult) -> set[str]:
    """The rules that failed."""
    return {f.rule for f in result.failures}


def loc_valid(bag: Path) -> bool:
    """What the LoC package says: ``Bag(path).is_valid()`` (False if it cannot open it)."""
    try:
        return bool(bagit.Bag(str(bag)).is_valid())
    except bagit.BagError:
        return False


def loc_errors(bag: Path) -> str:
    """The message of LoC's ``Bag(path).validate()``, or ``""`` if it passes."""
    try:
        bagit.Bag(str(bag)).validate()
    except bagit.BagError as e:
        return str(e)
    return ""


def payload_size(payload: Mapping[str, bytes] = PAYLOAD) -> int:
    """The bytes of a payload."""
    return sum(len(v) for v in payload.values())
