"""benchmarks/run_notebook.py: the timed GPU run of notebook 03 ran through it, so it must run cells
as a kernel would (one namespace, magics skipped, last values shown) and stop at a failing cell."""
import json
import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[1] / "benchmarks" / "run_notebook.py"


def notebook(path, *sources):
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "# title"}]
    cells += [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": s}
              for s in sources]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def run(path):
    return subprocess.run([sys.executable, str(RUNNER), str(path)], capture_output=True, text=True, timeout=120)


def test_cells_share_one_namespace_skip_magics_and_show_last_values(tmp_path):
    nb = notebook(tmp_path / "nb.ipynb", "%matplotlib inline\nx = 40", "x + 2", "import pandas as pd\n"
                  "display(pd.DataFrame({'beats': [7]}))\ny = 1", "print('cwd', __import__('os').getcwd())")
    out = run(nb)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "42" in lines  # the value of the second cell's last expression
    assert any(line.split() == ["0", "7"] for line in lines)  # display() of a table, as text
    assert f"cwd {tmp_path}" in lines  # cells run where the notebook is, as Jupyter starts them
    assert "nb.ipynb: 4 code cells in" in lines[-1]


def test_a_failing_cell_stops_the_run_with_exit_code_1(tmp_path):
    nb = notebook(tmp_path / "nb.ipynb", "x = 1", "raise ValueError('broken cell')", "print('never reached')")
    out = run(nb)
    assert out.returncode == 1
    assert "ValueError: broken cell" in out.stderr + out.stdout
    assert "cell 2 failed" in out.stdout
    assert "never reached" not in out.stdout
