"""Where things are and how a run behaves: the repository root, fast mode, output folders, seeds.

The bottom of the package: imports only the standard library and NumPy. Paths that tests
or other programs may redirect (OUTPUT_ROOT, PLOTS_DIR, SPLITS_DIR, CACHE_DIR) are read by
the other modules at call time as config.NAME, so changing them here takes effect everywhere.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np


#: The repository root (the folder holding ekg/, models/, data/ and the notebooks).
ROOT = Path(__file__).resolve().parent.parent


#: Fast mode (EKG_FAST=1): a few records and tiny epochs, so the test suite can
#: re-run every notebook in minutes. Outputs then go to a temporary folder.
FAST = os.environ.get("EKG_FAST", "0") not in ("", "0", "false", "False")


#: EKG_RETRAIN=1: notebook 03 trains every model again instead of reusing a saved one with the same
#: settings (models.saved_model), as a timed GPU run does.
RETRAIN = os.environ.get("EKG_RETRAIN", "0") not in ("", "0", "false", "False")


#: Processes for the work that splits by recording (monitor replays, detector runs): EKG_WORKERS, else
#: every core the machine has (2 here, 4 on Kaggle), else 1 in fast mode, where starting the processes
#: would cost more than they save. The results are the same for any number (tests check it).
def _workers() -> int:
    value = os.environ.get("EKG_WORKERS", "")
    if not value:
        return 1 if FAST else os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"EKG_WORKERS must be a whole number of processes, 1 or more, not {value!r}")
    return int(value)


WORKERS = _workers()


def kaggle_input() -> Path:
    """Return where Kaggle mounts attached data sets ($EKG_KAGGLE_INPUT lets tests fake it)."""
    return Path(os.environ.get("EKG_KAGGLE_INPUT", "/kaggle/input"))


ON_KAGGLE = Path("/kaggle/working").is_dir()


def _output_root() -> Path:
    if os.environ.get("EKG_OUTPUT_DIR"):
        return Path(os.environ["EKG_OUTPUT_DIR"])
    if ON_KAGGLE:  # the repository is read-only there
        return Path("/kaggle/working")
    if FAST:  # never overwrite the committed plots, splits or models
        return Path(tempfile.mkdtemp(prefix="ekg_fast_"))
    return ROOT


#: Everything the notebooks write (plots/, models/, data/splits/) goes under here.
OUTPUT_ROOT = _output_root()


PLOTS_DIR = OUTPUT_ROOT / "plots"


SPLITS_DIR = OUTPUT_ROOT / "data" / "splits"


#: The beat-table cache is the same in fast and full mode, so it stays in the repo.
CACHE_DIR = Path(os.environ.get("EKG_CACHE_DIR", (Path("/kaggle/working") if ON_KAGGLE else ROOT) / "data" / "cache"))


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and (if imported) PyTorch so runs repeat."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def progress_bar(iterable=None, **kwargs):
    """Return tqdm.auto's progress bar over iterable (keyword arguments as tqdm's), switched off when
    the environment sets TQDM_DISABLE (as `make report` does: a bar frozen at 0% in a committed
    notebook tells the reader nothing). tqdm's console bar reads that variable itself; its notebook
    bar, which tqdm.auto picks inside Jupyter, does not, hence this wrapper."""
    from tqdm.auto import tqdm

    if os.environ.get("TQDM_DISABLE", "") not in ("", "0", "false", "False"):
        kwargs["disable"] = True
    return tqdm(iterable, **kwargs)
