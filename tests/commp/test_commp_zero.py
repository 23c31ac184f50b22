"""The generated zero-commitment table (spec §4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from commp_payloads import NATIVE

from carmigrate.commp import MAX_HEIGHT, commp
from carmigrate.commp.lowlevel import ZERO_COMMITMENTS, hash_node

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "scripts" / "gen_zero_commitments.py"
MODULE = ROOT / "src" / "carmigrate" / "commp" / "_zero.py"


def test_generated_module_is_current() -> None:
    """Regenerate the table and compare with the committed module."""
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--stdout"], capture_output=True, check=True
    )
    assert out.stdout.decode() == MODULE.read_text(encoding="utf-8")
    check = subprocess.run([sys.executable, str(SCRIPT), "--check"], check=False)
    assert check.returncode == 0


def test_table_follows_the_definition() -> None:
    assert len(ZERO_COMMITMENTS) == MAX_HEIGHT + 1
    assert ZERO_COMMITMENTS[0] == bytes(32)
    for level in range(MAX_HEIGHT):
        z = ZERO_COMMITMENTS[level]
        assert ZERO_COMMITMENTS[level + 1] == hash_node(z, z)


@pytest.mark.parametrize(
    ("level", "hex_"),
    [
        (1, "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb0b"),
        (2, "3731bb99ac689f66eef5973e4a94da188f4ddcae580724fc6f3fd60dfd488333"),
        (3, "642a607ef886b004bf2c1978463ae1d4693ac0f410eb2d1b7a47fe205e5e750f"),
        (15, "d99887b973573a96e11393645236c17b1f4c7034d723c7a99f709bb4da61162b"),
        (30, "077e5fde35c50a9303a55009e3498a4ebedff39c42b710b730d8ec7ac7afa63e"),
        (31, "e64005a6bfe3777953b8ad6ef93f0fca1049b2041654f2a411f7702799cece02"),
    ],
)
def test_spec_values(level: int, hex_: str) -> None:
    """commp-spec §4's table (levels 30 and 31 are FRC-0069's 32/64 GiB pieces)."""
    assert ZERO_COMMITMENTS[level].hex() == hex_


def test_zero_payload_is_a_zero_commitment() -> None:
    assert commp(bytes(127 << 13)).root == ZERO_COMMITMENTS[15]


@pytest.mark.skipif(not NATIVE, reason="compiled core not built")
def test_native_core_computes_the_same_table() -> None:
    from carmigrate.commp import _native  # type: ignore[attr-defined]

    assert _native.MAX_HEIGHT == MAX_HEIGHT
    for level, z in enumerate(ZERO_COMMITMENTS):
        assert _native.zero_commitment(level) == z
    with pytest.raises(ValueError, match="outside"):
        _native.zero_commitment(MAX_HEIGHT + 1)
