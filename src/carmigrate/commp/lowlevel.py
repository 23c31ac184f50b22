"""The building blocks of the commitment tree, not needed to compute a commP.

In the spirit of ``trio.lowlevel``: computing commitments and PieceCIDs is in
[carmigrate.commp][]; what someone building trees over commitments
(FRC-0058 aggregates and their proofs) or checking the spec step by step
needs is here.

- [fr32_pad][carmigrate.commp.lowlevel.fr32_pad] and
  [fr32_unpad][carmigrate.commp.lowlevel.fr32_unpad] turn 127 payload bytes
  into 128 padded bytes and back (commp-spec §2);
- [hash_node][carmigrate.commp.lowlevel.hash_node] is the tree's node hash
  ``H`` (commp-spec §3);
- [ZERO_COMMITMENTS][carmigrate.commp.lowlevel.ZERO_COMMITMENTS] are the
  roots of all-zero subtrees by level (commp-spec §4).
"""

from carmigrate.commp._fr32 import fr32_pad, fr32_unpad
from carmigrate.commp._reference import hash_node
from carmigrate.commp._zero import ZERO_COMMITMENTS

__all__ = [
    "ZERO_COMMITMENTS",
    "fr32_pad",
    "fr32_unpad",
    "hash_node",
]
