"""Choosing the implementation: IMPLEMENTATION, CARMIGRATE_COMMP, no compiled core.

Each case runs in a fresh interpreter, since the choice is made at import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from commp_payloads import NATIVE

from carmigrate.commp import IMPLEMENTATION, available_implementations

BLOCK_NATIVE = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "carmigrate.commp._native":
            raise ImportError("blocked by the test")
        return None
sys.meta_path.insert(0, _Block())
"""

REPORT = """
import json, logging, warnings
records = []
class _Keep(logging.Handler):
    def emit(self, record):
        records.append((record.name, record.levelname, record.getMessage()))
logging.getLogger("carmigrate").addHandler(_Keep())
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        import carmigrate.commp as c
    except ImportError as exc:
        print(json.dumps({"error": str(exc)}))
        raise SystemExit(0)
    at_import = list(records)
    info = c.commp(bytes(range(200)))
    c.commp(bytes(range(100)))  # a second computation logs nothing more
print(json.dumps({
    "impl": c.IMPLEMENTATION,
    "available": list(c.available_implementations()),
    "warnings": [str(w.message) for w in caught],
    "logged_at_import": at_import,
    "logged": records,
    "cid": str(info.cid_v1),
}))
"""


def _run(env_value: str | None, *, block: bool = False) -> dict[str, object]:
    env = dict(os.environ)
    env.pop("CARMIGRATE_COMMP", None)
    if env_value is not None:
        env["CARMIGRATE_COMMP"] = env_value
    code = (BLOCK_NATIVE if block else "") + REPORT
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_implementation_is_listed() -> None:
    assert IMPLEMENTATION in available_implementations()
    assert available_implementations()[-1] == "reference"
    if NATIVE and "CARMIGRATE_COMMP" not in os.environ:
        assert NATIVE[0] == IMPLEMENTATION


@pytest.mark.skipif(not NATIVE, reason="compiled core not built")
def test_default_picks_the_best_native_kernel_silently() -> None:
    got = _run(None)
    assert got["impl"] == NATIVE[0]
    assert got["warnings"] == []


@pytest.mark.skipif(not NATIVE, reason="compiled core not built")
@pytest.mark.parametrize("value", ["native", "NATIVE", " auto ", *NATIVE])
def test_env_selects_native(value: str) -> None:
    got = _run(value)
    want = value.strip().lower()
    assert got["impl"] == (NATIVE[0] if want in {"native", "auto"} else want)
    assert got["warnings"] == []


def test_env_forces_reference() -> None:
    got = _run("reference")
    assert got["impl"] == "reference"
    assert got["warnings"] == []


def test_every_implementation_gives_the_same_cid() -> None:
    cids = {_run(impl)["cid"] for impl in available_implementations()}
    assert cids == {_run(None)["cid"]}


def test_env_rejects_unknown_values() -> None:
    got = _run("native-sparc")
    assert "CARMIGRATE_COMMP='native-sparc' is not available" in str(got["error"])


def test_without_the_core_the_reference_runs_and_says_so_once() -> None:
    """No warning at import (every command would pay it); one log record on use."""
    got = _run(None, block=True)
    assert got["impl"] == "reference"
    assert got["available"] == ["reference"]
    assert got["warnings"] == []
    assert got["logged_at_import"] == []
    assert len(got["logged"]) == 1, got["logged"]  # type: ignore[arg-type]
    name, level, message = got["logged"][0]  # type: ignore[index]
    assert (name, level) == ("carmigrate.commp", "WARNING")
    assert "compiled core is not available" in message
    assert "blocked by the test" in message
    assert "20 times slower" in message
    assert got["cid"] == _run("reference")["cid"]


def test_without_the_core_version_names_the_reference_without_a_warning() -> None:
    code = BLOCK_NATIVE + "from carmigrate.cli import main; main(['--version'])"
    out = subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "commp reference" in out.stdout
    assert out.stderr == ""


def test_without_the_core_native_is_an_import_error() -> None:
    got = _run("native", block=True)
    assert "requires the compiled commP core" in str(got["error"])
    assert "blocked by the test" in str(got["error"])


def test_without_the_core_an_explicit_reference_is_silent() -> None:
    got = _run("reference", block=True)
    assert got["impl"] == "reference"
    assert got["warnings"] == []
    assert got["logged"] == []
