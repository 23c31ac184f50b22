"""oSPARC project archives: a CARv2 whose first root is a DAG-CBOR manifest.

Layout of an archive written by
[export_osparc_projects][carmigrate.recipes.export_osparc_projects]:

- every carried row is one DAG-CBOR block ``{"table": ..., "row": {column:
  value}}``, each value in the records layer's tagged encoding
  ([encode_value][carmigrate.records.encode_value]);
- every carried file is a list of raw blocks of at most
  [CHUNK_SIZE][carmigrate.recipes.CHUNK_SIZE] bytes (a directory row's
  objects are carried one by one, each with the directory's key);
- the manifest (the first root) names the format and version, the UTC
  creation time, the source deployment, the schema fingerprint, and per
  project its fidelity report, its source defects, the CIDs of its rows per
  table and, per file, its original key, size, SHA-256, what the source
  vouched for and the CIDs of its blocks;
- optionally a second root: a signature block ``{"signs": manifest CID,
  "algorithm": "ed25519", "public_key": 32 bytes, "signature": 64 bytes}``,
  the Ed25519 signature over the manifest CID's bytes.

Every block is under the manifest's CID (the manifest links them all), so a
change to any byte changes a CID: the archive is tamper-evident by
construction, and the signature, when there is one, binds the whole.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.car import CarReader, CarWriter, verify_car
from carmigrate.cid import CID, decode_dag_cbor, encode_dag_cbor
from carmigrate.errors import FormatError, VerificationError
from carmigrate.recipes._osparc_files import SourceDefect, check_osparc_files
from carmigrate.recipes._osparc_rows import (
    CARRIED_COLUMNS,
    osparc_fidelity,
    read_osparc_rows,
    rows_columns,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    import sqlalchemy as sa

    from carmigrate.storage import Store

__all__ = [
    "CHUNK_SIZE",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "OsparcArchive",
    "UploadedArchive",
    "export_osparc_projects",
    "read_osparc_archive",
    "schema_fingerprint",
    "upload_osparc_archive",
]

EXPORT_FORMAT: Final = "carmigrate/osparc-project-export"
"""The manifest's ``format``."""
EXPORT_VERSION: Final = 1
"""The manifest's ``version`` this release writes and reads."""
CHUNK_SIZE: Final = 1 << 20
"""Largest raw block of a file's bytes (1 MiB, under the CAR section limit)."""


def schema_fingerprint(tables: Mapping[str, sa.Table]) -> tuple[str, dict[str, Any]]:
    """The carried tables' columns and types, and their SHA-256 (``sha256:`` hex).

    Per table of [CARRIED_COLUMNS][carmigrate.recipes.CARRIED_COLUMNS], each
    staged column as ``[name, SQL type, primary key]``; the digest is over
    its canonical JSON, so two deployments with the same carried schema
    agree.
    """
    described = {
        name: [
            [c, str(t.c[c].type), bool(t.c[c].primary_key)]
            for c in rows_columns(t, name)
        ]
        for name, t in tables.items()
    }
    text = json.dumps(described, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest(), described


def _dag(value: Any) -> bytes:
    return encode_dag_cbor(value)


def _cid(block: bytes, codec: str) -> CID:
    return CID.from_data(block, codec=codec)


def export_osparc_projects(
    database: str,
    store: Store,
    projects: Sequence[str],
    output: str | os.PathLike[str],
    *,
    deployment: str = "",
    signing_key: bytes | None = None,
    created: datetime.datetime | None = None,
) -> CID:
    """Write the projects' rows and files to a CARv2 at ``output``; return the manifest CID.

    For each project: its fidelity report and source defects are taken
    first (objects under a directory row are carried one by one, marked
    ``"unverifiable"``); its carried rows are read (rows of missing objects and of soft
    links out of the project are left out, and listed as defects); each of
    its files is read once, cut into raw blocks and hashed (SHA-256 and
    MD5), and checked against what the row vouches for (``sha256_checksum``,
    else a single-part ``entity_tag``; else it is marked
    ``"unverifiable"``) and its ``file_size``. Blocks go to a temporary CAR
    beside ``output``; the final CARv2 (manifest first root, signature
    second) is written from it and renamed into place, so ``output`` is
    either the whole archive or absent.

    Args:
        database: The source deployment's database URL.
        store: Its bucket.
        projects: Project UUIDs.
        output: The archive's path.
        deployment: A name for the source deployment (the manifest's
            ``source.deployment``).
        signing_key: A raw 32-byte Ed25519 private key: sign the manifest
            CID (needs the ``cryptography`` package, extra ``osparc``).
        created: The creation time (UTC now by default).

    Raises:
        VerificationError: A file's bytes do not match its row (nothing is
            written at ``output``).
        PlanError: No such project.
        RecordsError, StorageError: The database or the bucket failed.
        ImportError: Signing without the ``cryptography`` package.
    """
    out = Path(output)
    when = (created or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{out.name}.", suffix=".tmp", dir=out.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    final_tmp = tmp.with_suffix(".car.tmp")
    try:
        entries: list[dict[str, Any]] = []
        fingerprint = ""
        described: dict[str, Any] = {}
        with CarWriter.open(tmp, version=1) as blocks:
            for project in projects:
                entry, tables = _export_project(database, store, project, blocks)
                fingerprint, described = schema_fingerprint(tables)
                entries.append(entry)
        manifest = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "created": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "source": {
                "deployment": deployment,
                "database": _safe_url(database),
                "s3": store.url,
            },
            "schema": {"fingerprint": fingerprint, "tables": described},
            "projects": entries,
        }
        mblock = _dag(manifest)
        root = _cid(mblock, "dag-cbor")
        roots = [root]
        sblock = None
        if signing_key is not None:
            sblock = _dag(_sign(root, signing_key))
            roots.append(_cid(sblock, "dag-cbor"))
        with CarWriter.open(final_tmp, roots, version=2) as car:
            car.write(root, mblock)
            if sblock is not None:
                car.write(roots[1], sblock)
            with CarReader.open(tmp) as reader:
                for b in reader.iter_blocks():
                    car.write(b.cid, b.data)
        final_tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
        final_tmp.unlink(missing_ok=True)
    return root


def _safe_url(url: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


def _export_project(
    database: str, store: Store, project: str, blocks: CarWriter
) -> tuple[dict[str, Any], dict[str, sa.Table]]:
    from carmigrate.records import encode_value

    fidelity = osparc_fidelity(database, project)
    files, defects = check_osparc_files(database, store, project)
    skip = frozenset(
        f.file_id
        for f in files
        if not f.present
        or (f.is_soft_link and not f.object_name.startswith(f"{project}/"))
    )
    rows, tables = read_osparc_rows(database, project, skip_files=skip)
    row_cids: dict[str, list[CID]] = {}
    for name in CARRIED_COLUMNS:
        row_cids[name] = []
        for r in rows[name]:
            block = _dag(
                {"table": name, "row": {c: encode_value(v) for c, v in r.items()}}
            )
            cid = _cid(block, "dag-cbor")
            blocks.write(cid, block)
            row_cids[name].append(cid)
    exported = []
    failures: list[Exception] = []
    for f in files:
        if not f.carried:
            continue
        if f.is_directory:
            # a directory row stands for every object under it; nothing
            # vouches for their bytes one by one
            prefix = f.object_name.rstrip("/") + "/"
            for info in sorted(store.list(prefix), key=lambda i: i.key):
                dsha, _, dsize, dcids = _copy(store, info.key, blocks)
                exported.append(
                    {
                        "key": info.key,
                        "file_id": f.file_id,
                        "directory": f.object_name,
                        "size": dsize,
                        "sha256": dsha.hexdigest(),
                        "check": "unverifiable",
                        "blocks": dcids,
                    }
                )
            continue
        sha, md5, size, cids = _copy(store, f.object_name, blocks)
        problem = None
        if f.size is not None and f.size != size:
            problem = f"{f.file_id}: {size} bytes, the row says {f.size}"
        elif f.check == "sha256" and sha.hexdigest() != f.sha256:
            problem = (
                f"{f.file_id}: sha256 {sha.hexdigest()} is not the row's {f.sha256}"
            )
        elif (
            f.check == "md5" and md5.hexdigest() != str(f.entity_tag).strip('"').lower()
        ):
            problem = f"{f.file_id}: md5 {md5.hexdigest()} is not the row's ETag {f.entity_tag}"
        if problem:
            failures.append(VerificationError(problem))
        exported.append(
            {
                "key": f.object_name,
                "file_id": f.file_id,
                "directory": None,
                "size": size,
                "sha256": sha.hexdigest(),
                "check": f.check,
                "blocks": cids,
            }
        )
    if failures:
        msg = f"{len(failures)} files of project {project} do not match their rows"
        raise VerificationError(msg, failures)
    entry = {
        "uuid": project,
        "fidelity": fidelity.to_dict(),
        "defects": [d.to_dict() for d in defects],
        "rows": dict(row_cids),
        "files": exported,
    }
    return entry, tables


def _copy(store: Store, key: str, blocks: CarWriter) -> tuple[Any, Any, int, list[CID]]:
    """Read an object once into raw blocks: (sha256, md5, size, CIDs)."""
    sha, md5, size, cids = hashlib.sha256(), hashlib.md5(), 0, []  # noqa: S324 - ETag check
    with store.open_read(key) as stream:
        while chunk := stream.read(CHUNK_SIZE):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
            cid = _cid(chunk, "raw")
            blocks.write(cid, chunk)
            cids.append(cid)
    return sha, md5, size, cids


def _sign(root: CID, key: bytes) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.from_private_bytes(key)
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return {
        "signs": root,
        "algorithm": "ed25519",
        "public_key": public,
        "signature": private.sign(bytes(root)),
    }


@attrs.frozen
class OsparcArchive:
    """A verified archive: its manifest, rows and the place of each file's blocks.

    Attributes:
        path: The archive's path.
        root: The manifest's CID (the first root).
        manifest: The decoded manifest.
        signature: ``"verified"`` (signed, and the signature checked with
            the public key given), ``"unsigned"``, or ``"unverifiable"``
            (signed, but no public key was given to check it with).
        rows: Per project UUID, per table, the rows (tagged values decoded).
        defects: Per project UUID, its source defects.
    """

    path: Path
    root: CID
    manifest: Mapping[str, Any]
    signature: str
    rows: Mapping[str, Mapping[str, tuple[dict[str, Any], ...]]]
    defects: Mapping[str, tuple[SourceDefect, ...]]

    def files(self) -> Iterable[Mapping[str, Any]]:
        """Every file entry of the manifest (key, size, sha256, check, blocks)."""
        for p in self.manifest["projects"]:
            yield from p["files"]

    def read_file(self, key: str) -> bytes:
        """The bytes of the file with original key ``key``, checked against the manifest.

        Raises:
            KeyError: No such file in the archive.
            VerificationError: Its bytes do not match the manifest.
        """
        entry = next((f for f in self.files() if f["key"] == key), None)
        if entry is None:
            raise KeyError(key)
        with CarReader.open(self.path) as reader:
            data = b"".join(reader[c].data for c in entry["blocks"])
        if (
            len(data) != entry["size"]
            or hashlib.sha256(data).hexdigest() != entry["sha256"]
        ):
            msg = f"{key}: the bytes in the archive do not match its manifest"
            raise VerificationError(msg)
        return data


def read_osparc_archive(
    path: str | os.PathLike[str], *, public_key: bytes | None = None
) -> OsparcArchive:
    """Verify an archive completely, then decode it; nothing is trusted before.

    Every block is re-hashed against its CID; the manifest must be the
    first root and every other block (but the signature) must be linked
    from it, and every block it links must be present; each file's blocks
    must add up to its size and SHA-256. With ``public_key`` (raw 32-byte
    Ed25519), the archive must be signed by that key over the manifest CID.

    Raises:
        BlockHashMismatch: A block's bytes do not match its CID.
        FormatError: Not an archive of this format and version, or a
            block is missing or not under the root.
        VerificationError: A file does not match its manifest entry, or the
            signature is missing, of another key, or wrong.
    """
    p = Path(path)
    with p.open("rb") as f:
        verify_car(f, all_mismatches=False).raise_for_failure()
    with CarReader.open(p) as reader:
        roots = reader.roots
        if not roots or roots[0].codec_name != "dag-cbor":
            msg = f"{p}: the first root is not a DAG-CBOR manifest"
            raise FormatError(msg)
        manifest = decode_dag_cbor(reader[roots[0]].data)
        if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
            msg = f"{p}: not an {EXPORT_FORMAT} archive"
            raise FormatError(msg)
        if manifest.get("version") != EXPORT_VERSION:
            msg = f"{p}: archive version {manifest.get('version')!r}, this release reads {EXPORT_VERSION}"
            raise FormatError(msg)
        linked: set[CID] = set()
        rows: dict[str, dict[str, tuple[dict[str, Any], ...]]] = {}
        defects: dict[str, tuple[SourceDefect, ...]] = {}
        for project in manifest["projects"]:
            tables: dict[str, tuple[dict[str, Any], ...]] = {}
            for name, cids in project["rows"].items():
                decoded = []
                for cid in cids:
                    linked.add(cid)
                    block = _block(reader, cid, p)
                    decoded.append(_decode_row(decode_dag_cbor(block)))
                tables[name] = tuple(decoded)
            rows[project["uuid"]] = tables
            defects[project["uuid"]] = tuple(
                SourceDefect(d["kind"], d["key"], d["detail"])
                for d in project["defects"]
            )
            for entry in project["files"]:
                sha, size = hashlib.sha256(), 0
                for cid in entry["blocks"]:
                    linked.add(cid)
                    data = _block(reader, cid, p)
                    sha.update(data)
                    size += len(data)
                if size != entry["size"] or sha.hexdigest() != entry["sha256"]:
                    msg = f"{entry['key']}: its blocks do not add up to the manifest's size and SHA-256"
                    raise VerificationError(msg)
        allowed = {roots[0], *roots[1:2]} | linked
        stray = [c for c in reader if c not in allowed]
        if stray or len(roots) > 2:
            msg = f"{p}: block {stray[0] if stray else roots[2]} is not under the manifest"
            raise FormatError(msg)
        signature = _check_signature(reader, roots, p, public_key)
    return OsparcArchive(
        path=p,
        root=roots[0],
        manifest=manifest,
        signature=signature,
        rows=rows,
        defects=defects,
    )


def _block(reader: CarReader, cid: Any, path: Path) -> bytes:
    if not isinstance(cid, CID):
        msg = f"{path}: the manifest links {cid!r}, not a CID"
        raise FormatError(msg)
    block = reader.get(cid)
    if block is None:
        msg = f"{path}: block {cid} linked from the manifest is missing"
        raise FormatError(msg)
    return block.data


def _decode_row(value: Any) -> dict[str, Any]:
    from carmigrate.records import decode_value

    if not isinstance(value, dict) or not isinstance(value.get("row"), dict):
        msg = "a row block is not {'table': ..., 'row': {...}}"
        raise FormatError(msg)
    return {c: decode_value(v) for c, v in value["row"].items()}


def _check_signature(
    reader: CarReader, roots: Sequence[CID], path: Path, public_key: bytes | None
) -> str:
    if len(roots) < 2:
        if public_key is not None:
            msg = f"{path}: the archive is not signed"
            raise VerificationError(msg)
        return "unsigned"
    sig = decode_dag_cbor(reader[roots[1]].data)
    if (
        not isinstance(sig, dict)
        or sig.get("signs") != roots[0]
        or sig.get("algorithm") != "ed25519"
    ):
        msg = f"{path}: the second root is not an Ed25519 signature of the manifest"
        raise FormatError(msg)
    if public_key is None:
        return "unverifiable"
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if sig.get("public_key") != public_key:
        msg = f"{path}: signed by another key"
        raise VerificationError(msg)
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            bytes(sig["signature"]), bytes(roots[0])
        )
    except (InvalidSignature, TypeError, ValueError) as e:
        msg = f"{path}: the signature does not verify"
        raise VerificationError(msg) from e
    return "verified"


@attrs.frozen
class UploadedArchive:
    """An archive stored for its user to download.

    Attributes:
        url: Where it is (the store's URL and the key).
        size: Its size in bytes.
        sha256: Its SHA-256 (hex), which the store checked before the
            object became visible.
        link: A presigned download link, or ``None`` when the store cannot
            make one (then ``url`` is all there is).
        expires: The link's expiry (UTC, ISO 8601), or ``None``.
    """

    url: str
    size: int
    sha256: str
    link: str | None
    expires: str | None


def upload_osparc_archive(
    path: str | os.PathLike[str],
    store: Store,
    key: str,
    *,
    expires_in: int = 7 * 24 * 3600,
) -> UploadedArchive:
    """Store an archive under ``key`` of ``store`` and make a download link.

    The archive is read twice: once to digest it, once to stream it to the
    store, which checks the SHA-256 before the object becomes visible (a
    partial upload is never visible under ``key``). On S3 the upload is
    multipart and resumable: after a crash, writing the same archive again
    continues the interrupted upload instead of starting over (see
    ``S3Store``'s ``resume_uploads``). A store that can presign URLs
    ([SupportsPresignedUrls][carmigrate.storage.SupportsPresignedUrls])
    gives a link valid for ``expires_in`` seconds.

    Raises:
        StorageError: The store failed, or the bytes it received do not
            have the archive's digest (nothing is visible under ``key``).
        ValueError: ``expires_in`` is not positive.
    """
    from carmigrate.storage import SupportsPresignedUrls

    if expires_in <= 0:
        msg = f"expires_in must be positive, not {expires_in}"
        raise ValueError(msg)
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    sha256 = digest.hexdigest()
    with open(path, "rb") as f:
        store.write(key, f, size=size, checksums={"sha256": sha256})
    link = expires = None
    if isinstance(store, SupportsPresignedUrls):
        link = store.presign(key, expires_in=expires_in)
        when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
            seconds=expires_in
        )
        expires = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return UploadedArchive(
        url=f"{store.url.rstrip('/')}/{key}",
        size=size,
        sha256=sha256,
        link=link,
        expires=expires,
    )
