"""The notebook of "carmigrate in Jupyter" runs, and its tables show what the page says.

The notebook (docs/notebooks/carmigrate-in-jupyter.ipynb) is executed in a
real IPython kernel by nbclient, on this interpreter, and the HTML each cell
displays is checked. Its code cells are the page's Python blocks
(docs/how-to/jupyter.md), which tests/docs/test_docs_examples.py runs too.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"
PAGE = DOCS / "how-to" / "jupyter.md"
NOTEBOOK = DOCS / "notebooks" / "carmigrate-in-jupyter.ipynb"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
KERNEL = "carmigrate-test-python"


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_notebook_is_the_page_code_without_outputs() -> None:
    """Same code as the page, block for block; committed clean (no outputs, no counts)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    cells = _code_cells(nb)

    assert [c.source.rstrip("\n") for c in cells] == [
        b.rstrip("\n") for b in BLOCK.findall(PAGE.read_text())
    ], "the notebook's code cells must be the page's ```python blocks, in order"
    assert all(c.outputs == [] and c.execution_count is None for c in cells)


@pytest.fixture
def kernel_manager(tmp_path, monkeypatch) -> AsyncKernelManager:
    """A kernel on this interpreter (the venv's), whatever `python` is on PATH."""
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    spec = tmp_path / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [
                    sys.executable,
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                ],
                "display_name": "carmigrate tests",
                "language": "python",
            }
        )
    )
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def _html(cell) -> str:
    found = [
        o["data"]["text/html"]
        for o in cell.outputs
        if o.output_type in ("execute_result", "display_data")
        and "text/html" in o.get("data", {})
    ]
    assert len(found) == 1, cell.source
    return found[0]


def _stdout(cell) -> str:
    return "".join(
        o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout"
    )


def test_notebook_runs_and_shows_html_tables(tmp_path, kernel_manager) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        km=kernel_manager,
        timeout=180,
        resources={"metadata": {"path": str(tmp_path)}},
    )

    client.execute(
        cleanup_kc=True
    )  # the kernel is ours, not the client's: shut it down

    cells = _code_cells(nb)
    assert not [o for c in cells for o in c.outputs if o.output_type == "error"]
    summary, run, rep, st, packed, aggregate = (
        _html(cells[i]) for i in (1, 2, 3, 4, 5, 6)
    )
    piece = _html(cells[7])
    for fragment in (summary, run, rep, st, packed, aggregate, piece):
        assert fragment.startswith("<div class='carmigrate-repr'>")
        assert "<table>" in fragment
        assert "b'" not in fragment
        assert 'b"' not in fragment
        assert "\\x" not in fragment
        assert "<script" not in fragment

    assert "<b>Plan</b>" in summary
    assert "12 items" in summary
    assert "memory://legacy → memory://new" in summary

    assert "<b>Run 1</b>: done" in run
    assert "<td>verified</td><td style='text-align:right'>11</td>" in run
    assert "<td>failed</td><td style='text-align:right'>1</td>" in run

    assert "<b>Migration report</b>" in rep
    assert "Failures (1)" in rep
    assert "<code>team-2/upload-05.car</code>" in rep
    assert "CAR check failed: block data does not match CID" in rep

    assert "<b>Status</b>" in st
    assert "1 (execute): done; 12 items" in st

    assert "1 aggregate, 3 pieces waiting" in packed
    assert "<td>full</td>" in packed

    printed = _stdout(cells[7]).split()
    aggregate_cid, deal_size = printed[0], printed[1]
    assert aggregate_cid.startswith("baga6ea4seaq")
    assert deal_size == str(1 << 20)
    assert f"<b>Aggregate</b> <code>{aggregate_cid}</code>" in aggregate
    assert "8 of 8 index entries" in aggregate
    assert "bafkzcib" in aggregate

    assert "<b>Piece</b> <code>baga6ea4seaq" in piece
    assert "bafkzcib" in piece
    pieces_in_aggregate = re.findall(r"<code>(baga6ea4seaq\w+)</code>", aggregate)
    assert len(set(pieces_in_aggregate)) == 1 + 8  # the aggregate and its pieces
