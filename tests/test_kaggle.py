"""kaggle/kernel-metadata.json: what `kaggle kernels push -p kaggle/` reads to rerun the training notebook on a GPU."""
import json
import os
import re
import subprocess
import sys

import pytest

from ekg.config import ROOT

FOLDER = ROOT / "kaggle"


@pytest.fixture(scope="module")
def meta():
    return json.loads((FOLDER / "kernel-metadata.json").read_text())


def slug(text):
    """Kaggle's slug of a title: lower case, runs of anything but letters and digits as one dash."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def test_the_kernel_is_the_training_notebook_on_a_gpu_that_downloads_the_records(meta):
    # the Kaggle client joins code_file to the folder it pushes
    assert (FOLDER / meta["code_file"]).resolve() == ROOT / "notebooks" / "03_training.ipynb"
    assert meta["kernel_type"] == "notebook" and meta["language"] == "python"
    assert meta["enable_gpu"] is True and meta["enable_tpu"] is False
    # no WFDB copy of MIT-BIH on Kaggle has been checked from here (the one named before was CSV):
    # the notebook downloads the records from PhysioNet, each checked against data/mitdb.sha256
    assert meta["enable_internet"] is True
    assert meta["is_private"] is True


def test_the_id_and_sources_have_the_form_kaggle_checks(meta):
    owner, name = meta["id"].split("/")
    assert owner and name == slug(meta["title"]) and len(meta["title"]) >= 5
    sources = meta["dataset_sources"]
    assert len(sources) == 1 and all(re.fullmatch(r"[a-z0-9-]+/[a-z0-9-]+", s) for s in sources)
    assert "ekg" in sources[0], "the repository (utils.py, ekg/, data/mitdb.sha256) must be attached"
    for key in ("competition_sources", "kernel_sources", "model_sources"):
        assert meta[key] == []


def test_the_training_notebook_finds_the_repository_under_a_kaggle_input(tmp_path):
    """The setup cell, run outside the repository, puts a copy attached under the Kaggle input on sys.path."""
    nb = json.loads((ROOT / "notebooks" / "03_training.ipynb").read_text())
    setup = "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])
    code = "\n".join(line for line in setup.splitlines()
                     if not line.startswith("%") and line.strip() != "import utils")  # no IPython here
    attached = tmp_path / "input" / "ekg-repository"
    attached.mkdir(parents=True)
    (attached / "utils.py").symlink_to(ROOT / "utils.py")
    (attached / "ekg").symlink_to(ROOT / "ekg")
    (tmp_path / "work").mkdir()
    done = subprocess.run([sys.executable, "-c", code + "\nprint(sys.path[0])"], cwd=tmp_path / "work",
                          env={**os.environ, "EKG_KAGGLE_INPUT": str(tmp_path / "input")},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(attached)
