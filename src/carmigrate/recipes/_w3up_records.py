"""web3.storage legacy uploads → w3up records: input format, CAR CIDs, export CAR.

The legacy listing is JSON Lines, one upload per line::

    {"cid": "<root CID>", "name": "…", "created": "2021-…", "dagSize": 123,
     "backupUrls": ["https://…/<CAR CID or base32 multihash>.car", …]}

or, instead of ``backupUrls``, ``"shards": ["<CAR CID>", …]``. (``root`` is
accepted for ``cid``.) An optional ``"tenant"`` (the legacy user, or the w3up
space the uploads go to) groups uploads for per-tenant rate limits and
per-space exports. The legacy API kept no CAR CIDs in its database but
encoded them in backup URLs and bucket keys, in two naming schemes:
``…/<CAR CID>.car`` (``bagbaiera…``) and ``…/<base32 multihash>.car``
(``ciq…``, the sha2-256 multihash of the CAR in unprefixed base32).

For every upload whose shards all verify, w3up gets one ``store/add`` per
shard (``{link, size}``) and one ``upload/add`` (``{root, shards}``), with the
legacy name carried as a fact. The same records are written as a
*space export*: a CAR of DAG-CBOR blocks whose root indexes the uploads, which
can be imported again (export → import → export gives the same bytes).
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.car import CarBlockReader, CarWriter
from carmigrate.cid import CID, Multihash, decode_dag_cbor, encode_dag_cbor
from carmigrate.errors import FormatError, PlanError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from typing import BinaryIO

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

CAR_CODEC: Final = 0x0202
"""The multicodec of a CAR file's CID (``bagbaiera…``)."""

EXPORT_PAGE_SIZE: Final = 4096
"""Uploads per index page of a space export (keeps every block small)."""

_EXPORT_TYPE: Final = "carmigrate/w3up-space-export"


def car_cid_from_key(key: str) -> CID:
    """The CAR CID named by a backup URL or bucket key.

    Understands ``…/<CAR CID>.car`` (a ``car`` CID, or a ``raw`` sha2-256
    CID of the CAR's bytes, re-tagged as ``car``) and
    ``…/<base32 multihash>.car`` (unprefixed, as the legacy API wrote
    them). URLs are parsed: query strings and fragments are ignored and the
    path is percent-decoded.

    Raises:
        FormatError: Naming every scheme tried and why it failed.
    """
    path = urllib.parse.unquote(urllib.parse.urlsplit(key).path)
    name = path.rstrip("/").rsplit("/", 1)[-1]
    stem = name[:-4] if name.lower().endswith(".car") else name
    reasons = []
    try:
        cid = CID.decode(stem)
    except FormatError as exc:
        reasons.append(f"not a CID ({exc})")
    else:
        if cid.codec == CAR_CODEC:
            return cid
        if cid.codec == 0x55 and cid.hash_code == 0x12:
            # A raw CID of the CAR's bytes names the same CAR.
            return CID.create(1, CAR_CODEC, cid.multihash)
        msg = (
            f"{key!r} names {cid} ({cid.codec_name}), a DAG root or other "
            "content, not a CAR file"
        )
        raise FormatError(msg)
    try:
        raw = base64.b32decode(stem.upper() + "=" * (-len(stem) % 8))
        mh = Multihash.from_bytes(raw)
        if mh.code != 0x12 or len(mh.digest) != 32:
            msg = f"multihash {mh.name} with a {len(mh.digest)}-byte digest"
            raise FormatError(msg)
        return CID.create(1, CAR_CODEC, mh)
    except (binascii.Error, ValueError) as exc:
        reasons.append(f"not a base32 sha2-256 multihash ({exc})")
    msg = f"cannot derive a CAR CID from {key!r}: " + "; ".join(reasons)
    raise FormatError(msg)


@attrs.frozen
class Shard:
    """One CAR shard of an upload.

    Attributes:
        link: The CAR CID.
        key: Where the shard was found (backup URL path or bucket key), if
            known.
        size: Its size in bytes, once known.
    """

    link: CID
    key: str | None = None
    size: int | None = None


@attrs.frozen
class LegacyUpload:
    """One upload of the legacy listing.

    Attributes:
        root: The upload's root CID.
        name: Its legacy name ("" if none).
        created: When it was created, as the listing wrote it.
        dag_size: The DAG size the listing reported, if any.
        shards: Its CAR shards.
        line: Line number in the listing (1-based), for messages.
        tenant: The tenant (legacy user or w3up space), if the listing
            names one.
    """

    root: CID
    name: str
    created: str | None
    dag_size: int | None
    shards: tuple[Shard, ...]
    line: int = 0
    tenant: str | None = None


def parse_legacy_uploads(lines: Iterable[str]) -> Iterator[LegacyUpload]:
    """Parse the legacy upload listing (JSON Lines; see the module docs).

    Blank lines are skipped. Shards named twice in one upload are kept once.

    Raises:
        PlanError: For a malformed line, naming the line number and the
            field; a backup URL whose CAR CID cannot be derived names every
            scheme tried.
    """
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise TypeError(f"expected an object, got {type(obj).__name__}")
            root = CID.decode(obj.get("cid") or obj["root"])
            if "shards" in obj:
                shards = [Shard(car_cid_from_key(s)) for s in _strings(obj["shards"])]
            else:
                shards = [
                    Shard(car_cid_from_key(u), key=u)
                    for u in _strings(obj["backupUrls"])
                ]
            dag = obj.get("dagSize")
            if dag is not None and (type(dag) is not int or dag < 0):
                raise TypeError(f"dagSize must be a non-negative integer, got {dag!r}")
            name, created = obj.get("name") or "", obj.get("created")
            if not isinstance(name, str) or not (
                created is None or isinstance(created, str)
            ):
                raise TypeError("name and created must be strings")
            tenant = obj.get("tenant")
            if tenant is not None and (not isinstance(tenant, str) or not tenant):
                raise TypeError(f"tenant must be a non-empty string, got {tenant!r}")
        except (KeyError, TypeError, ValueError) as exc:
            msg = (
                f"legacy listing line {n}: expected cid/root and backupUrls or shards: "
                f"{exc}"
            )
            raise PlanError(msg) from exc
        seen: dict[CID, Shard] = {}
        for s in shards:
            seen.setdefault(s.link, s)
        yield LegacyUpload(
            root, name, created, dag, tuple(seen.values()), n, tenant=tenant
        )


def _strings(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("expected a list of strings")
    return value


@attrs.frozen
class UploadRecords:
    """The w3up records of one migrated upload.

    Attributes:
        root: The upload's root CID.
        shards: Its shards with their sizes, in listing order.
        name: The legacy name, carried as a fact.
        created: The legacy creation time.
    """

    root: CID
    shards: tuple[Shard, ...]
    name: str
    created: str | None

    def invocations(self) -> list[dict[str, Any]]:
        """``store/add`` per shard, then ``upload/add``, as JSON-ready dicts.

        Links are DAG-JSON style ``{"/": "<cid>"}``; the legacy name and
        creation time ride in ``fct`` (facts), which w3up keeps but does not
        interpret.
        """
        out: list[dict[str, Any]] = [
            {"can": "store/add", "nb": {"link": {"/": str(s.link)}, "size": s.size}}
            for s in self.shards
        ]
        out.append(
            {
                "can": "upload/add",
                "nb": {
                    "root": {"/": str(self.root)},
                    "shards": [{"/": str(s.link)} for s in self.shards],
                },
                "fct": [{"name": self.name, "created": self.created}],
            }
        )
        return out

    def to_ipld(self) -> dict[str, Any]:
        """The DAG-CBOR record stored in a space export."""
        return {
            "root": self.root,
            "shards": [{"link": s.link, "size": s.size} for s in self.shards],
            "name": self.name,
            "created": self.created,
        }

    @classmethod
    def from_ipld(cls, value: object) -> UploadRecords:
        """Inverse of [to_ipld][carmigrate.recipes.UploadRecords.to_ipld].

        Raises:
            FormatError: If the value is not an upload record.
        """

        def fail(why: str) -> FormatError:
            return FormatError(f"not an upload record: {why}")

        if not isinstance(value, dict) or not isinstance(value.get("root"), CID):
            raise fail("expected a map with a CID root")
        raw_shards = value.get("shards")
        if not isinstance(raw_shards, list):
            raise fail("shards must be a list")
        shards = []
        for s in raw_shards:
            if not isinstance(s, dict) or not isinstance(s.get("link"), CID):
                raise fail("each shard needs a CID link")
            size = s.get("size")
            if size is not None and (type(size) is not int or size < 0):
                raise fail(f"shard size must be a non-negative integer, got {size!r}")
            shards.append(Shard(s["link"], size=size))
        name, created = value.get("name"), value.get("created")
        if not isinstance(name, str) or not (
            created is None or isinstance(created, str)
        ):
            raise fail("name and created must be strings")
        return cls(value["root"], tuple(shards), name, created)


def w3up_records(upload: LegacyUpload, sizes: dict[CID, int]) -> UploadRecords:
    """The records of an upload whose shards all verified.

    Args:
        upload: The legacy upload.
        sizes: Verified size of each shard, by CAR CID.

    Raises:
        PlanError: If a shard has no verified size (nothing is emitted for an
            upload with a missing or bad shard).
    """
    missing = [str(s.link) for s in upload.shards if s.link not in sizes]
    if missing:
        msg = f"upload {upload.root} has unverified shards: {', '.join(missing)}"
        raise PlanError(msg)
    shards = tuple(attrs.evolve(s, size=sizes[s.link]) for s in upload.shards)
    return UploadRecords(upload.root, shards, upload.name, upload.created)


def _block(value: object) -> tuple[CID, bytes]:
    data = encode_dag_cbor(value)
    return CID.from_data(data, codec="dag-cbor"), data


def write_space_export(records: Sequence[UploadRecords], sink: BinaryIO) -> CID:
    """Write the uploads as a space-export CAR; return its root CID.

    Deterministic: upload records are ordered by their own block CIDs, so
    the same set of records always gives the same bytes, whatever the input
    order (uploads sharing a root included). Layout: one DAG-CBOR block per
    upload record, index pages of at most ``EXPORT_PAGE_SIZE`` links, and a
    root ``{"type": "carmigrate/w3up-space-export", "version": 1, "uploads":
    N, "pages": [...]}``.
    """
    blocks = sorted(
        (_block(r.to_ipld()) for r in records), key=lambda b: (bytes(b[0]), b[1])
    )
    pages = [
        _block({"uploads": [cid for cid, _ in blocks[i : i + EXPORT_PAGE_SIZE]]})
        for i in range(0, len(blocks), EXPORT_PAGE_SIZE)
    ]
    root = _block(
        {
            "type": _EXPORT_TYPE,
            "version": 1,
            "uploads": len(blocks),
            "pages": [cid for cid, _ in pages],
        }
    )
    with CarWriter(sink, [root[0]]) as writer:
        for cid, data in [root, *pages, *blocks]:
            writer.write(cid, data)
    return root[0]


def read_space_export(source: BinaryIO) -> list[UploadRecords]:
    """Read the uploads back from a space-export CAR, verifying every block.

    Raises:
        FormatError: If the CAR is malformed, a block does not match its
            CID, or the structure is not a space export (missing blocks
            included).
    """
    reader = CarBlockReader(source, verify=True)
    blocks = {block.cid: bytes(block.data) for block in reader}
    roots = tuple(reader.roots)
    if len(roots) != 1 or roots[0] not in blocks:
        msg = "a space export has exactly one root, present in the CAR"
        raise FormatError(msg)

    def get(cid: object) -> object:
        if not isinstance(cid, CID) or cid not in blocks:
            msg = f"space export is missing block {cid}"
            raise FormatError(msg)
        return decode_dag_cbor(blocks[cid])

    head = get(roots[0])
    if not isinstance(head, dict) or head.get("type") != _EXPORT_TYPE:
        msg = "the root block is not a carmigrate w3up space export"
        raise FormatError(msg)
    if head.get("version") != 1 or not isinstance(head.get("pages"), list):
        msg = f"unsupported space export (version {head.get('version')!r}, pages missing?)"
        raise FormatError(msg)
    out: list[UploadRecords] = []
    for page_cid in head["pages"]:
        page = get(page_cid)
        if not isinstance(page, dict) or not isinstance(page.get("uploads"), list):
            msg = f"index page {page_cid} is not a map with an uploads list"
            raise FormatError(msg)
        out.extend(UploadRecords.from_ipld(get(c)) for c in page["uploads"])
    if len(out) != head.get("uploads"):
        msg = f"space export says {head.get('uploads')} uploads but holds {len(out)}"
        raise FormatError(msg)
    return out
