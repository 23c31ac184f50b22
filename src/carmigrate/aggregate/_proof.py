"""FRC-0058 inclusion proofs, computed from the tree and verified offline (§8)."""

from __future__ import annotations

from typing import Any, Final

import attrs

from carmigrate.aggregate._index import ENTRY_SIZE, SegmentIndexEntry, max_entries
from carmigrate.aggregate._tree import MAX_HEIGHT
from carmigrate.cid import decode_dag_cbor, encode_dag_cbor
from carmigrate.commp.lowlevel import hash_node
from carmigrate.errors import AggregateError, FormatError

__all__ = ["InclusionProof", "ProofData"]

_NODE: Final = 32
_MAX_TREE_BYTES: Final = 32 << MAX_HEIGHT


def _node_tuple(path: object) -> tuple[bytes, ...]:
    if not isinstance(path, list | tuple):
        msg = f"a proof path is a list of nodes, got {type(path).__name__}"
        raise AggregateError(msg)
    if len(path) > MAX_HEIGHT:
        msg = f"proof path of {len(path)} nodes is longer than {MAX_HEIGHT}"
        raise AggregateError(msg)
    nodes = []
    for p in path:
        if not isinstance(p, bytes | bytearray | memoryview) or len(p) != _NODE:
            what = (
                f"{len(p)} bytes"
                if isinstance(p, bytes | bytearray)
                else type(p).__name__
            )
            msg = f"proof nodes are {_NODE} bytes, got {what}"
            raise AggregateError(msg)
        nodes.append(bytes(p))
    return tuple(nodes)


def _index(value: object) -> int:
    if type(value) is not int or value < 0:
        msg = f"a proof index is a non-negative integer, got {value!r}"
        raise AggregateError(msg)
    return value


@attrs.frozen
class ProofData:
    """A Merkle path: the proven node's index at its level and its siblings.

    Attributes:
        index: Index of the proven node within its level.
        path: Sibling nodes, bottom-up (sibling of the proven node first,
            child of the root last).
    """

    index: int = attrs.field(converter=_index)
    path: tuple[bytes, ...] = attrs.field(converter=_node_tuple)

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.index < (1 << len(self.path)):
            msg = (
                f"proof index {self.index} does not fit a path of "
                f"{len(self.path)} nodes"
            )
            raise AggregateError(msg)

    def fold(self, node: bytes) -> bytes:
        """The root reached from ``node`` by this path."""
        acc = node
        idx = self.index
        for sibling in self.path:
            acc = hash_node(sibling, acc) if idx & 1 else hash_node(acc, sibling)
            idx >>= 1
        return acc

    def to_json(self) -> dict[str, object]:
        """``{"offset": index, "path": [hex, ...]}`` as in the deal manifest and CLI."""
        return {"offset": self.index, "path": [p.hex() for p in self.path]}

    @classmethod
    def from_json(cls, data: object) -> ProofData:
        """Inverse of [to_json][carmigrate.aggregate.ProofData.to_json].

        The offset may be a JSON number or a decimal string (as the
        data-segment vectors write it).

        Raises:
            AggregateError: If fields are missing or malformed.
        """
        try:
            if not isinstance(data, dict):
                raise TypeError(f"expected an object, got {type(data).__name__}")
            path, offset = data["path"], data["offset"]
            if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
                raise TypeError("path must be a list of hex strings")
            if isinstance(offset, str) and offset.isdigit():
                offset = int(offset)
            return cls(offset, [bytes.fromhex(p) for p in path])
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"malformed proof JSON: {exc}"
            raise AggregateError(msg) from exc


@attrs.frozen
class InclusionProof:
    """Proof that a piece sits in an aggregate and is named by its index.

    Attributes:
        subtree: Path from the piece's root node to the aggregate root.
        index: Path from the piece's index entry (its level-1 node) to the
            aggregate root.
    """

    subtree: ProofData
    index: ProofData

    def resolve(self, piece_root: bytes, piece_size: int) -> tuple[bytes, int]:
        """Compute the aggregate ``(root, padded size)`` this proof implies.

        Follows commp-spec §8 steps 1 to 6: both paths must reach the same root
        and size, and the index entry must lie in the index area.

        Raises:
            AggregateError: If the two paths disagree or the entry is outside
                the index area.
        """
        if piece_size < 128 or piece_size & (piece_size - 1):
            msg = f"piece size {piece_size} is not a power of two >= 128"
            raise AggregateError(msg)
        if len(piece_root) != _NODE:
            msg = f"a piece root is {_NODE} bytes, got {len(piece_root)}"
            raise AggregateError(msg)
        size_a = piece_size << len(self.subtree.path)
        if size_a > _MAX_TREE_BYTES:
            msg = (
                f"proof describes a tree of {size_a} bytes, more than {_MAX_TREE_BYTES}"
            )
            raise AggregateError(msg)
        root_a = self.subtree.fold(piece_root)
        offset = self.subtree.index * piece_size
        entry = SegmentIndexEntry(piece_root, offset, piece_size).to_bytes()
        root_b = self.index.fold(hash_node(entry[:32], entry[32:]))
        size_b = ENTRY_SIZE << len(self.index.path)
        if root_a != root_b or size_a != size_b:
            msg = "the subtree proof and the index proof reach different aggregates"
            raise AggregateError(msg)
        if self.index.index * ENTRY_SIZE < size_a - ENTRY_SIZE * max_entries(size_a):
            msg = "the index entry named by the proof lies outside the index area"
            raise AggregateError(msg)
        return root_a, size_a

    def verify(
        self, piece_root: bytes, piece_size: int, aggregate_root: bytes, deal_size: int
    ) -> None:
        """Check this proof against a known aggregate.

        Raises:
            AggregateError: If the proof does not lead to exactly that
                aggregate root and deal size.
        """
        root, size = self.resolve(piece_root, piece_size)
        if root != aggregate_root or size != deal_size:
            msg = (
                f"proof leads to an aggregate of {size} bytes with root {root.hex()}, "
                f"not the {deal_size}-byte aggregate {aggregate_root.hex()}"
            )
            raise AggregateError(msg)

    def to_json(self) -> dict[str, object]:
        """``{"tree": {...}, "index": {...}}`` with hex paths, bottom-up."""
        return {"tree": self.subtree.to_json(), "index": self.index.to_json()}

    @classmethod
    def from_json(cls, data: object) -> InclusionProof:
        """Inverse of [to_json][carmigrate.aggregate.InclusionProof.to_json].

        Raises:
            AggregateError: If fields are missing or malformed.
        """
        if not isinstance(data, dict):
            msg = f"malformed proof JSON: expected an object, got {type(data).__name__}"
            raise AggregateError(msg)
        try:
            tree, index = data["tree"], data["index"]
        except KeyError as exc:
            msg = f"malformed proof JSON: missing {exc}"
            raise AggregateError(msg) from None
        if not isinstance(tree, dict) or not isinstance(index, dict):
            msg = "malformed proof JSON: tree and index must be objects"
            raise AggregateError(msg)
        return cls(ProofData.from_json(tree), ProofData.from_json(index))

    def to_dag_cbor(self) -> bytes:
        """DAG-CBOR ``[[index, [node…]], [index, [node…]]]``, as go-data-segment."""
        return encode_dag_cbor(
            [
                [self.subtree.index, list(self.subtree.path)],
                [self.index.index, list(self.index.path)],
            ]
        )

    @classmethod
    def from_dag_cbor(cls, data: bytes) -> InclusionProof:
        """Inverse of [to_dag_cbor][carmigrate.aggregate.InclusionProof.to_dag_cbor].

        Raises:
            AggregateError: If the bytes are not a proof in that shape.
        """
        try:
            value: Any = decode_dag_cbor(data)
            (ti, tp), (ii, ip) = value
            return cls(ProofData(ti, tp), ProofData(ii, ip))
        except (FormatError, TypeError, ValueError) as exc:
            msg = f"not an inclusion proof: {exc}"
            raise AggregateError(msg) from exc
