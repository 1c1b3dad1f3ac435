"""notebooks/training.ipynb runs the smoke experiment end to end and shows the curves."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def test_training_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("RBC_RAY_NOTEBOOK_OUT", str(tmp_path / "out"))
    nb = nbformat.read(ROOT / "notebooks" / "training.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the training curves are shown"
    assert (tmp_path / "out" / "metrics.parquet").exists()
    assert (tmp_path / "out" / "plots" / "training.png").exists()
