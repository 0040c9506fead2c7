"""dsage in Jupyter, as a notebook user runs it: a real kernel (this venv's python, nbclient) runs
start_all, a map with its progress bar, the HTML views of a job and a batch, streamed output and
shutdown."""
from __future__ import annotations

import json
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

KERNEL = "dsage-test-python"


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A kernelspec for the python running these tests, first on JUPYTER_PATH, so neither a user's
    own ``python3`` kernel nor the system's is used instead."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "dsage tests", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    return KERNEL


def _run(cells, kernel):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbclient.NotebookClient(nb, kernel_name=kernel, timeout=120, allow_errors=False).execute()
    return nb


def _texts(cell, mime, kind="execute_result"):
    """The *mime* payloads of a cell's outputs of one kind: "execute_result" (the cell's value),
    "display_data" (after its updates) or "stream" (printed text)."""
    out = []
    for o in cell.outputs:
        if o.output_type == kind == "stream":
            out.append(o.text)
        elif o.output_type == kind and mime in o.get("data", {}):
            out.append(o.data[mime])
    return out


def test_notebook_map_progress_html_output_shutdown(kernel, tmp_path):
    """In a notebook: a waited map shows an HTML progress bar that ends at total/total, a batch and
    a job render as HTML with their status and results, show_output streams into the cell, and
    shutdown stops the processes start_all began."""
    home = tmp_path / "home"
    nb = _run([
        f"import dsage_core as dsage\nD = dsage.start_all(workers=2, home={str(home)!r})",
        "def square(x):\n    return x * x\njobs = D.map(square, range(20))\njobs.wait().results",
        "jobs",
        "j = D('2+2').wait()\nj",
        "D.eval(\"print('streamed line')\\nDSAGE_RESULT = 1\").wait(show_output=True).result",
        "procs = D.cluster.procs\nD.shutdown()\nall(p.poll() is not None for p in procs)",
    ], kernel)
    start, wait, batch, job, stream, stop = nb.cells
    assert eval(_texts(wait, "text/plain")[0]) == [x * x for x in range(20)]
    bars = _texts(wait, "text/html", "display_data")
    assert len(bars) == 1 and '<progress value="100.0"' in bars[0] and "20/20 done" in bars[0]
    html = _texts(batch, "text/html")[0]
    assert "20 jobs: 20 completed" in html and "20/20 done" in html and "… 10 more" in html
    assert _texts(batch, "text/plain")[0].endswith("# 20 jobs: 20 completed")
    jhtml, jtext = _texts(job, "text/html")[0], _texts(job, "text/plain")[0]
    assert "completed" in jhtml and ">4</pre>" in jhtml
    assert jtext.startswith("<Job ") and jtext.endswith(" completed: 4>")
    assert _texts(stream, "", "stream") == ["streamed line\n"] and _texts(stream, "text/plain") == ["1"]
    assert _texts(stop, "text/plain") == ["True"]
