"""examples/crowdhuman_colab.ipynb runs top to bottom in a real Jupyter kernel (nbclient)."""
from __future__ import annotations

import base64
import os
from pathlib import Path

import cv2
import nbformat
import numpy as np
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "crowdhuman_colab.ipynb"


def images_of(cell) -> list[np.ndarray]:  # noqa: ANN001 - a notebook cell
    found = []
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if "image/png" in data:
            found.append(cv2.imdecode(np.frombuffer(base64.b64decode(data["image/png"]), np.uint8), cv2.IMREAD_COLOR))
    return found


def test_colab_notebook_runs_on_the_built_in_dataset(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("DARKNET_PY_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("DARKNET_PY_NOTEBOOK_WORK", str(tmp_path / "work"))
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    train_cell = next(c for c in code if "dn.train(" in c.source)
    charts = images_of(train_cell)
    assert charts and all(image.shape == (600, 800, 3) for image in charts)  # the chart, updated in place
    predictions = images_of(next(c for c in code if "show_inline(predictions)" in c.source))
    assert len(predictions) == 1 and predictions[0].shape[2] == 3
    work = tmp_path / "work"
    assert (work / "predictions.jpg").is_file() and (work / "head-person.onnx").is_file()
    assert sorted(p.name for p in (work / "data" / "backup").glob("*_final.weights"))
    text = "".join(o.get("text", "") for c in code for o in c.get("outputs", []))
    assert "mean average precision (mAP@0.50)" in text
    assert not os.path.exists(tmp_path / "darknet_py_work")  # everything went into WORK
