"""Train/validation/test splits: the seed's leaky beat-level 80/20 split and de Chazal's
inter-patient split (DS1 trains, DS2 tests), saved as CSV manifests.

Imports: config, data, NumPy, pandas.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import config
from .data import CLASSES, DS1, DS2, VAL_RECORDS, load_beats


def seed_split(beats, test_frac=0.2, seed=0) -> pd.DataFrame:
    """Return the seed's split: each class shuffled, its first test_frac to test, the rest to train.

    Only beats the seed had images of are kept. Beats of one patient land on
    both sides: that is the leak this project measures.
    """
    beats = beats[beats["seed_image"]]
    rng = np.random.default_rng(seed)
    split = pd.Series("train", index=beats.index)
    for cls in CLASSES:
        idx = rng.permutation(beats.index[beats["aami"] == cls].to_numpy())
        split[idx[:int(len(idx) * test_frac)]] = "test"
    return beats[["record", "sample", "symbol", "aami"]].assign(split=split)


def inter_patient_split(beats, val_records=VAL_RECORDS) -> pd.DataFrame:
    """Return the de Chazal split: DS1 less val_records trains, val_records validate, DS2 tests.

    Paced records belong to neither and are left out.
    """
    split = np.select([beats["record"].isin(val_records), beats["record"].isin(DS1),
                       beats["record"].isin(DS2)], ["val", "train", "test"], default="")
    out = beats[["record", "sample", "symbol", "aami"]].assign(split=split)
    return out[out["split"] != ""]


def save_split(manifest, name) -> Path:
    """Write a split manifest to data/splits/NAME.csv under the output root; return the path."""
    config.SPLITS_DIR.mkdir(parents=True, exist_ok=True)
    path = config.SPLITS_DIR / f"{name}.csv"
    manifest.to_csv(path, index=False)
    return path


def load_split(name) -> pd.DataFrame:
    """Return a split manifest ("seed" or "inter_patient") with the beat table's columns joined.

    Reads data/splits/NAME.csv, written by the wrangling notebook.
    """
    path = config.SPLITS_DIR / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run notebooks/02_wrangling.ipynb first")
    manifest = pd.read_csv(path)
    beats = load_beats(sorted(manifest["record"].unique()))
    merged = manifest[["record", "sample", "split"]].merge(beats.reset_index(), on=["record", "sample"])
    return merged.set_index("index").rename_axis(None)
