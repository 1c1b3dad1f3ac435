"""notebooks/equilibrium.ipynb: a smoke sweep, its analysis, the spectrum and an intuition report,
end to end, with every figure shown."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def test_equilibrium_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("RBC_RAY_NOTEBOOK_OUT", str(tmp_path / "out"))
    nb = nbformat.read(ROOT / "notebooks" / "equilibrium.ipynb", as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3  # epsilon, spectrum, intuition
    analysis = tmp_path / "out" / "analysis"
    for name in ("epsilon.parquet", "verdicts.parquet", "spectrum.parquet", "curves.parquet"):
        assert (analysis / name).exists(), name
    assert (tmp_path / "out" / "intuition" / "intuition.parquet").exists()
