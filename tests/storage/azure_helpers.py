"""Helpers for the Azure Blob Storage tests (Azurite; imported by conftest and tests)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carmigrate.storage import AzureBlobStore

REPO = Path(__file__).resolve().parents[2]
INSTALL_AZURITE = REPO / "scripts" / "install-azurite"

ACCOUNT = "devstoreaccount1"
# Azurite's well-known development account key, published by Microsoft
# (https://learn.microsoft.com/azure/storage/common/storage-use-azurite)
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
    "K1SZFPTOtr/KBHBeksoGMGw=="
)
BLOCK = 64 * 1024
"""Block size of the test stores: multi-block writes on small objects."""


@dataclass
class AzuriteServer:
    """One running Azurite blob service and the stores made on it."""

    endpoint: str
    _stores: list[AzureBlobStore] = field(default_factory=list)
    _counter: Iterator[int] = field(default_factory=itertools.count)

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};"
            f"AccountKey={ACCOUNT_KEY};BlobEndpoint={self.endpoint};"
        )

    def service(self) -> Any:
        """A raw BlobServiceClient (the caller closes it)."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(
            self.connection_string, retry_total=0
        )

    def container(self) -> str:
        """A new, empty container."""
        name = f"cm-{uuid.uuid4().hex[:16]}"
        with self.service() as service:
            service.create_container(name)
        return name

    def store(
        self, container: str | None = None, prefix: str = "", **options: Any
    ) -> AzureBlobStore:
        """An AzureBlobStore on Azurite (closed at teardown)."""
        merged: dict[str, Any] = {
            "connection_string": self.connection_string,
            "block_size": BLOCK,
            **options,
        }
        store = AzureBlobStore(ACCOUNT, container or self.container(), prefix, **merged)
        self._stores.append(store)
        return store

    def store_factory(self, **options: Any) -> Callable[[], AzureBlobStore]:
        """A ``make_store`` for check_store: fresh prefixes in one container."""
        container = self.container()
        return lambda: self.store(container, f"c{next(self._counter)}", **options)

    def close(self) -> None:
        for store in self._stores:
            store.close()
        self._stores.clear()
