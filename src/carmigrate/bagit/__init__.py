"""BagIt bags: read their tag files as streams and verify them as a storage service does.

A bag (RFC 8493) is a folder with a payload under ``data/`` and tag files
that describe it: the declaration ``bagit.txt``, the metadata
``bag-info.txt``, payload manifests ``manifest-<alg>.txt``, tag manifests
``tagmanifest-<alg>.txt`` and, for files stored elsewhere, ``fetch.txt``.

- [verify_bag][carmigrate.bagit.verify_bag] applies every rule of
  [RULES][carmigrate.bagit.RULES], the rules a preservation storage
  service applies before it accepts a bag or a replica of one (those of the
  Wellcome Collection storage service), and reports every failure at once
  in a [BagVerifyResult][carmigrate.bagit.BagVerifyResult];
- [read_declaration][carmigrate.bagit.read_declaration],
  [read_bag_info][carmigrate.bagit.read_bag_info],
  [iter_manifest][carmigrate.bagit.iter_manifest] and
  [iter_fetch][carmigrate.bagit.iter_fetch] read single tag files from a
  binary stream, in bounded memory.

A bag is read through a [BagSource][carmigrate.bagit.BagSource]: anything
that lists ``(path, size)`` pairs and opens a path.
[folder_source][carmigrate.bagit.folder_source] reads a local folder;
[carmigrate.migrate.store_bag_source][] reads a bag under a prefix of any
[Store][carmigrate.storage.Store] (this package does not know about
stores). A bag that cannot be read at all raises
[BagError][carmigrate.errors.BagError]; a bag that can be read but breaks
a rule is a result with failures.

Spec: RFC 8493, https://www.rfc-editor.org/rfc/rfc8493
"""

from typing import TYPE_CHECKING

from carmigrate._lazy import lazy_names

if TYPE_CHECKING:
    from carmigrate.bagit._names import check_external_identifier
    from carmigrate.bagit._source import BagSource, folder_source
    from carmigrate.bagit._tagfiles import (
        BAGIT_ALGORITHMS,
        MAX_DECLARATION_SIZE,
        MAX_LINE,
        MAX_TAG_FILE_SIZE,
        BagDeclaration,
        BagInfo,
        FetchEntry,
        ManifestEntry,
        PayloadOxum,
        decode_path,
        encode_path,
        iter_fetch,
        iter_manifest,
        read_bag_info,
        read_declaration,
    )
    from carmigrate.bagit._verify import (
        DEFAULT_MAX_FAILURES_PER_RULE,
        RULES,
        BagFailure,
        BagVerifyResult,
        verify_bag,
    )

__all__ = [
    "BAGIT_ALGORITHMS",
    "BagDeclaration",
    "BagFailure",
    "BagInfo",
    "BagSource",
    "BagVerifyResult",
    "DEFAULT_MAX_FAILURES_PER_RULE",
    "FetchEntry",
    "MAX_DECLARATION_SIZE",
    "MAX_LINE",
    "MAX_TAG_FILE_SIZE",
    "ManifestEntry",
    "PayloadOxum",
    "RULES",
    "check_external_identifier",
    "decode_path",
    "encode_path",
    "folder_source",
    "iter_fetch",
    "iter_manifest",
    "read_bag_info",
    "read_declaration",
    "verify_bag",
]

# Names load from their submodules on first use (PEP 562): importing this
# package costs nothing until one is used, so the command line starts fast.
_SOURCES: dict[str, str] = {
    "BAGIT_ALGORITHMS": "carmigrate.bagit._tagfiles",
    "BagDeclaration": "carmigrate.bagit._tagfiles",
    "BagFailure": "carmigrate.bagit._verify",
    "BagInfo": "carmigrate.bagit._tagfiles",
    "BagSource": "carmigrate.bagit._source",
    "BagVerifyResult": "carmigrate.bagit._verify",
    "DEFAULT_MAX_FAILURES_PER_RULE": "carmigrate.bagit._verify",
    "FetchEntry": "carmigrate.bagit._tagfiles",
    "MAX_DECLARATION_SIZE": "carmigrate.bagit._tagfiles",
    "MAX_LINE": "carmigrate.bagit._tagfiles",
    "MAX_TAG_FILE_SIZE": "carmigrate.bagit._tagfiles",
    "ManifestEntry": "carmigrate.bagit._tagfiles",
    "PayloadOxum": "carmigrate.bagit._tagfiles",
    "RULES": "carmigrate.bagit._verify",
    "check_external_identifier": "carmigrate.bagit._names",
    "decode_path": "carmigrate.bagit._tagfiles",
    "encode_path": "carmigrate.bagit._tagfiles",
    "folder_source": "carmigrate.bagit._source",
    "iter_fetch": "carmigrate.bagit._tagfiles",
    "iter_manifest": "carmigrate.bagit._tagfiles",
    "read_bag_info": "carmigrate.bagit._tagfiles",
    "read_declaration": "carmigrate.bagit._tagfiles",
    "verify_bag": "carmigrate.bagit._verify",
}


if not TYPE_CHECKING:  # type checkers see the imports above instead
    __getattr__, __dir__ = lazy_names(__name__, _SOURCES)
