"""The bag register: one storage manifest per bag version, as versioned JSON records in a Store.

A [StorageManifest][carmigrate.recipes.StorageManifest] is what a
preservation storage service (the Wellcome Collection's) keeps about one
version of a bag: its space, bag-info, version, the file manifest of the
chosen algorithm (the strongest one present in both the payload and the tag
manifests) with each file's checksum, name, path and size, the tag
manifest, the primary location, the replica locations and the created date.

A file's ``name`` is its path in the bag (``data/page-1.tif``); its
``path`` is where it is stored, relative to the bag's folder of a location
(``<space>/<external identifier>``): ``v1/data/page-1.tif``. A file that
version 2 lists in ``fetch.txt`` keeps the path of the version that holds
it (``v1/data/page-1.tif``), so it is stored once.

A [BagRegister][carmigrate.recipes.BagRegister] keeps the manifests in any
Store, one JSON record per revision:
``<space>/<external identifier>/v<version>/r<revision>.json``. A record is
written with ``if_absent=True`` and never replaced: a new replica makes a
new revision, the old one is kept.

The register joins storage and bagit, so it lives above both.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import unicodedata
import urllib.parse
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.bagit import (
    BagInfo,
    iter_fetch,
    iter_manifest,
    read_bag_info,
    verify_bag,
)
from carmigrate.errors import ObjectNotFound, PlanError
from carmigrate.migrate import redact_url, store_bag_source, store_fetch_roots
from carmigrate.storage import read_bytes, write_bytes

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from carmigrate.storage import Store

__all__ = [
    "ALGORITHM_STRENGTH",
    "BagRegister",
    "ManifestFile",
    "StorageLocation",
    "StorageManifest",
    "register_bag",
]

ALGORITHM_STRENGTH: Final = ("sha512", "sha256", "sha1", "md5")
"""BagIt algorithms from the strongest to the weakest: a manifest uses the first one
present in both the payload and the tag manifests."""

_RECORD: Final = re.compile(
    r"^(?P<space>[^/]+)/(?P<id>.+)/v(?P<v>\d+)/r(?P<r>\d+)\.json$"
)
_FORMAT: Final = 1


@attrs.frozen(kw_only=True)
class ManifestFile:
    """One file of a storage manifest.

    Attributes:
        name: Its path in the bag (``data/page-1.tif``, ``bag-info.txt``).
        path: Where it is stored, relative to the bag's folder of a
            location (``v1/data/page-1.tif``); a fetched file keeps the path
            of the version that holds it.
        size: Its length in bytes.
        checksum: Its digest in the manifest's algorithm (lowercase hex).
    """

    name: str
    path: str
    size: int
    checksum: str

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "name": self.name,
            "path": self.path,
            "size": self.size,
            "checksum": self.checksum,
        }


@attrs.frozen(kw_only=True)
class StorageLocation:
    """Where a copy of a bag is: a provider's store and the bag's folder in it.

    Attributes:
        provider: The provider's name (``"primary"``, or a replica's name,
            such as ``"azure"``).
        url: The store's URL (without credentials).
        prefix: The bag's folder in the store: ``<space>/<external identifier>``.
    """

    provider: str
    url: str
    prefix: str

    @property
    def bag_url(self) -> str:
        """The URL of the bag's folder (``s3://bucket/digitised/b1``)."""
        return f"{self.url.rstrip('/')}/{self.prefix}"

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {"provider": self.provider, "url": self.url, "prefix": self.prefix}


def _files(value: Any) -> tuple[ManifestFile, ...]:
    return tuple(f if isinstance(f, ManifestFile) else ManifestFile(**f) for f in value)


def _location(value: Any) -> StorageLocation:
    return value if isinstance(value, StorageLocation) else StorageLocation(**value)


def _locations(value: Any) -> tuple[StorageLocation, ...]:
    return tuple(_location(v) for v in value)


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in value)


@attrs.frozen(kw_only=True)
class StorageManifest:
    """What the register knows about one version of a bag, at one revision.

    Attributes:
        space: The space the bag belongs to (``digitised``).
        external_identifier: bag-info's ``External-Identifier``.
        version: The bag's version (``1`` for ``v1``).
        bag_info: bag-info's fields, in order, as ``(label, value)`` pairs.
        algorithm: The manifest algorithm of ``files`` and ``tag_files``.
        files: The payload files, by name.
        tag_files: The tag files (tag manifests included, with the digest of
            their bytes), by name.
        location: The primary location.
        replicas: The replica locations, each added once it verified.
        created_date: When the bag version was registered (ISO 8601, UTC).
        revision: The record's revision: 1, then one more per change.
    """

    space: str
    external_identifier: str
    version: int
    bag_info: tuple[tuple[str, str], ...] = attrs.field(converter=_pairs)
    algorithm: str
    files: tuple[ManifestFile, ...] = attrs.field(converter=_files)
    tag_files: tuple[ManifestFile, ...] = attrs.field(converter=_files)
    location: StorageLocation = attrs.field(converter=_location)
    replicas: tuple[StorageLocation, ...] = attrs.field(
        default=(), converter=_locations
    )
    created_date: str
    revision: int = 1

    @property
    def bag_id(self) -> str:
        """``<space>/<external identifier>/v<version>``."""
        return f"{self.space}/{self.external_identifier}/v{self.version}"

    @property
    def key(self) -> str:
        """The record's key in the register."""
        return record_key(
            self.space, self.external_identifier, self.version, self.revision
        )

    @property
    def all_files(self) -> tuple[ManifestFile, ...]:
        """Payload and tag files."""
        return self.files + self.tag_files

    @property
    def bytes(self) -> int:
        """The size of every file, payload and tag files."""
        return sum(f.size for f in self.all_files)

    def replica(self, provider: str) -> StorageLocation | None:
        """The replica location of ``provider``, if registered."""
        return next((r for r in self.replicas if r.provider == provider), None)

    def with_replica(self, location: StorageLocation) -> StorageManifest:
        """The next revision, with ``location`` added to the replicas.

        Raises:
            PlanError: The provider has a replica already, or is the primary's.
        """
        if location.provider == self.location.provider or self.replica(
            location.provider
        ):
            raise PlanError(
                f"{self.bag_id}: {location.provider!r} holds a copy already"
            )
        return attrs.evolve(
            self, replicas=(*self.replicas, location), revision=self.revision + 1
        )

    def to_json(self) -> dict[str, Any]:
        """Plain data (the record's content)."""
        return {
            "format": _FORMAT,
            "space": self.space,
            "externalIdentifier": self.external_identifier,
            "version": self.version,
            "revision": self.revision,
            "bagInfo": [list(p) for p in self.bag_info],
            "manifest": {
                "algorithm": self.algorithm,
                "files": [f.to_json() for f in self.files],
            },
            "tagManifest": {
                "algorithm": self.algorithm,
                "files": [f.to_json() for f in self.tag_files],
            },
            "location": self.location.to_json(),
            "replicaLocations": [r.to_json() for r in self.replicas],
            "createdDate": self.created_date,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StorageManifest:
        """Read a record's content.

        Raises:
            PlanError: Not a storage manifest of a format this version reads.
        """
        try:
            if data["format"] != _FORMAT:
                raise PlanError(f"storage manifest format {data['format']!r}")
            return cls(
                space=data["space"],
                external_identifier=data["externalIdentifier"],
                version=int(data["version"]),
                revision=int(data["revision"]),
                bag_info=data["bagInfo"],
                algorithm=data["manifest"]["algorithm"],
                files=data["manifest"]["files"],
                tag_files=data["tagManifest"]["files"],
                location=data["location"],
                replicas=data["replicaLocations"],
                created_date=data["createdDate"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(f"not a storage manifest: {exc!r}") from exc


def record_key(
    space: str, external_identifier: str, version: int, revision: int
) -> str:
    """The register key of one revision of a bag version's manifest."""
    return f"{space}/{external_identifier}/v{version}/r{revision}.json"


class BagRegister:
    """The storage manifests of bags, as versioned JSON records in a Store.

    State: the store (not closed by the register).

    Args:
        store: Where the records are (``<space>/<id>/v<N>/r<M>.json``).
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"BagRegister({self.store.url!r})"

    def put(self, manifest: StorageManifest) -> StorageManifest:
        """Write a new revision (never replacing one).

        Raises:
            ObjectExists: That revision is written already (another writer
                won); nothing is changed.
            StorageError: The store failed; nothing is visible.
        """
        text = json.dumps(manifest.to_json(), indent=1, ensure_ascii=False)
        write_bytes(self.store, manifest.key, f"{text}\n".encode(), if_absent=True)
        return manifest

    def revisions(
        self, space: str, external_identifier: str, version: int
    ) -> list[StorageManifest]:
        """Every revision of one bag version's manifest, oldest first."""
        prefix = f"{space}/{external_identifier}/v{version}/"
        found = []
        for info in self.store.list(prefix):
            m = _RECORD.match(info.key)
            if (
                m is not None
                and info.key.startswith(prefix)
                and "/" not in info.key[len(prefix) :]
            ):
                found.append((int(m["r"]), info.key))
        return [self._read(key) for _, key in sorted(found)]

    def get(
        self, space: str, external_identifier: str, version: int
    ) -> StorageManifest:
        """The latest revision of one bag version's manifest.

        Raises:
            ObjectNotFound: The register has no such bag version.
        """
        found = self.revisions(space, external_identifier, version)
        if not found:
            raise ObjectNotFound(
                f"{self.store.url}: no manifest of {space}/{external_identifier}/v{version}",
                key=f"{space}/{external_identifier}/v{version}/",
            )
        return found[-1]

    def manifests(self) -> Iterator[StorageManifest]:
        """The latest revision of every bag version, by space, identifier and version."""
        latest: dict[tuple[str, str, int], tuple[int, str]] = {}
        for info in self.store.list():
            m = _RECORD.match(info.key)
            if m is None:
                continue
            bag = (m["space"], m["id"], int(m["v"]))
            if bag not in latest or int(m["r"]) > latest[bag][0]:
                latest[bag] = (int(m["r"]), info.key)
        for bag in sorted(latest):
            yield self._read(latest[bag][1])

    def add_replica(
        self, manifest: StorageManifest, location: StorageLocation
    ) -> StorageManifest:
        """Register a verified replica: a new revision of the latest manifest with it.

        The caller must have verified the replica. Idempotent: if the
        latest revision has the provider already, it is returned unchanged.

        Raises:
            ObjectExists: Another writer added a revision meanwhile; nothing
                was changed (read the latest and try again).
            StorageError: The store failed.
        """
        latest = self.get(
            manifest.space, manifest.external_identifier, manifest.version
        )
        if latest.replica(location.provider) is not None:
            return latest
        return self.put(latest.with_replica(location))

    def _read(self, key: str) -> StorageManifest:
        try:
            data = json.loads(read_bytes(self.store, key))
        except ValueError as exc:
            raise PlanError(f"{self.store.url}: {key!r} is not JSON: {exc}") from exc
        return StorageManifest.from_json(data)


def _strongest(algorithms: set[str]) -> str | None:
    return next((a for a in ALGORITHM_STRENGTH if a in algorithms), None)


def register_bag(
    register: BagRegister,
    store: Store,
    *,
    space: str,
    external_identifier: str,
    version: int,
    provider: str = "primary",
    verify: bool = True,
    created: datetime.datetime | None = None,
) -> StorageManifest:
    """Register a bag version stored at ``<space>/<external identifier>/v<version>/`` of ``store``.

    Reads the tag files (never the payload), picks the strongest algorithm
    present in both the payload and the tag manifests, and writes revision 1
    of its manifest. Files of ``fetch.txt`` must be URLs under the bag's
    folder in this store (``<store url>/<space>/<id>/v<k>/...``); they keep
    that path. With ``verify`` the bag is first verified with every rule of
    [verify_bag][carmigrate.bagit.verify_bag] (every byte read; fetched
    files through the same store).

    Returns:
        The manifest written.

    Raises:
        PlanError: The bag breaks a rule, has no algorithm common to its
            payload and tag manifests, or fetches a file from outside its
            folder; nothing is written.
        ObjectExists: The bag version is registered already.
        StorageError: A store failed (a cold tag file included).
    """
    location = StorageLocation(
        provider=provider,
        url=redact_url(store.url),
        prefix=f"{space}/{external_identifier}",
    )
    folder = f"{location.prefix}/v{version}"
    source = store_bag_source(store, folder)
    if verify:
        result = verify_bag(
            source,
            external_identifier=external_identifier,
            fetch_roots=store_fetch_roots({location.url: store}),
            allowed_fetch_prefix=location.bag_url,
        )
        if not result.valid:
            why = "; ".join(f"{f.rule}: {f.message}" for f in result.failures[:5])
            raise PlanError(f"{folder}: not a valid bag: {why}")
    sizes = dict(source.list())
    stored = {unicodedata.normalize("NFC", n): n for n in sizes}
    payload_algs = {
        n[len("manifest-") : -4] for n in sizes if re.fullmatch(r"manifest-\w+\.txt", n)
    }
    tag_algs = {
        n[len("tagmanifest-") : -4]
        for n in sizes
        if re.fullmatch(r"tagmanifest-\w+\.txt", n)
    }
    alg = _strongest(payload_algs & tag_algs)
    if alg is None:
        raise PlanError(f"{folder}: no algorithm in both payload and tag manifests")
    with source.open_read("bag-info.txt") as f:
        info: BagInfo = read_bag_info(f)
    fetched: dict[str, tuple[str, int | None]] = {}
    if "fetch.txt" in sizes:
        with source.open_read("fetch.txt") as f:
            for entry in iter_fetch(f):
                root = location.bag_url + "/"
                if not entry.url.startswith(root):
                    raise PlanError(
                        f"{folder}: fetch.txt fetches {entry.path!r} from {entry.url}, "
                        f"outside the bag's folder {location.bag_url}"
                    )
                path = urllib.parse.unquote(entry.url[len(root) :])
                fetched[unicodedata.normalize("NFC", entry.path)] = (path, entry.length)

    def read(name: str) -> list[ManifestFile]:
        out = []
        with source.open_read(name) as f:
            for e in iter_manifest(f, alg):
                nfc = unicodedata.normalize("NFC", e.path)
                if nfc in fetched:
                    path, length = fetched[nfc]
                    size = (
                        length
                        if length is not None
                        else store.stat(f"{location.prefix}/{path}").size
                    )
                else:
                    if nfc not in stored:
                        raise PlanError(
                            f"{folder}: {e.path!r} is listed but not stored"
                        )
                    key = stored[nfc]
                    path, size = f"v{version}/{key}", sizes[key]
                out.append(
                    ManifestFile(name=e.path, path=path, size=size, checksum=e.digest)
                )
        return out

    files = read(f"manifest-{alg}.txt")
    tags = read(f"tagmanifest-{alg}.txt")
    for name in sorted(n for n in sizes if re.fullmatch(r"tagmanifest-\w+\.txt", n)):
        data = read_bytes(store, f"{folder}/{name}")
        tags.append(
            ManifestFile(
                name=name,
                path=f"v{version}/{name}",
                size=len(data),
                checksum=hashlib.new(alg, data).hexdigest(),
            )
        )
    when = created or datetime.datetime.now(datetime.UTC)
    manifest = StorageManifest(
        space=space,
        external_identifier=external_identifier,
        version=version,
        bag_info=info.fields,
        algorithm=alg,
        files=sorted(files, key=lambda f: f.name),
        tag_files=sorted(tags, key=lambda f: f.name),
        location=location,
        created_date=when.isoformat(timespec="seconds"),
    )
    return register.put(manifest)
