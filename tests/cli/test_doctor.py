"""``carmigrate doctor`` and ``--version`` name the compiled cores in use."""

from __future__ import annotations

import json

import pytest

from carmigrate.cli import main
from carmigrate.commp import IMPLEMENTATION


def test_version_names_the_cores(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("carmigrate ")
    assert f"commp {IMPLEMENTATION}" in out


def test_doctor_measures_here(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["commp"] == IMPLEMENTATION
    assert data["sha256_ranges"] in ("native", "hashlib")
    assert data["sha256_mb_s"] > 0
    assert data["commp_mb_s"] > 0
    assert main(["doctor"]) == 0
    assert "x the SHA-256 bound" in capsys.readouterr().out


def test_doctor_measures_the_reference_slowdown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The slowdown of the fallback is measured here, never only stated."""
    assert main(["doctor", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["commp_reference_mb_s"] > 0
    assert data["commp_x_reference"] == pytest.approx(
        data["commp_mb_s"] / data["commp_reference_mb_s"], rel=0.1
    )
