"""The notebooks' side: every notebook's setup cell finds utils.py, and the ekg package beside it,
in the repository or in an attached Kaggle input. (utils' re-exports: test_package.py.)"""
import json
import os
import subprocess
import sys

from ekg.config import ROOT


def setup_cells():
    """The first code cell of every notebook, as text."""
    cells = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        cells[path.name] = "".join(code[0]["source"])
    return cells


def test_every_notebook_starts_with_the_same_setup_cell():
    cells = list(setup_cells().values())
    assert len(cells) >= 2 and len(set(cells)) == 1
    assert "import utils" in cells[0]


def run_setup_cell(source, cwd, kaggle_input):
    """Run a setup cell's Python (IPython's %magics left out) in a fresh interpreter; return its output."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("%"))
    code += "\nimport ekg\nprint(utils.__file__)\nprint(ekg.__file__)\n"
    env = {**os.environ, "EKG_KAGGLE_INPUT": str(kaggle_input)}
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_setup_cell_finds_utils_and_ekg_in_a_kaggle_input(tmp_path):
    # an attached repository, laid out as Kaggle mounts a dataset, with a stray utils.py (no ekg
    # beside it) in another input that sorts first; the notebook runs where no utils.py is above it
    kaggle = tmp_path / "input"
    (kaggle / "aaa-other-dataset").mkdir(parents=True)
    (kaggle / "aaa-other-dataset" / "utils.py").write_text("raise SystemExit('the stray utils.py was imported')\n")
    repo = kaggle / "ecg-repository" / "main"
    (repo / "ekg").mkdir(parents=True)
    (repo / "ekg" / "__init__.py").write_text("")
    (repo / "utils.py").write_text("import ekg\n")
    work = tmp_path / "working"
    work.mkdir()
    for name, source in setup_cells().items():
        out = run_setup_cell(source, work, kaggle)
        assert out.returncode == 0, f"{name}: {out.stderr[-500:]}"
        assert out.stdout.split() == [str(repo / "utils.py"), str(repo / "ekg" / "__init__.py")], name


def test_the_setup_cell_prefers_the_repository_it_runs_in(tmp_path):
    kaggle = tmp_path / "input"
    repo = kaggle / "ecg-repository"
    (repo / "ekg").mkdir(parents=True)
    (repo / "ekg" / "__init__.py").write_text("")
    (repo / "utils.py").write_text("raise SystemExit('the Kaggle copy was imported')\n")
    source = next(iter(setup_cells().values()))
    out = run_setup_cell(source, ROOT / "notebooks", kaggle)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.split() == [str(ROOT / "utils.py"), str(ROOT / "ekg" / "__init__.py")]
