"""Train/validation/test splits: the seed's leaky beat-level 80/20 split and de Chazal's
inter-patient split (DS1 trains, DS2 tests), saved as CSV manifests.

Imports: config, data, NumPy, pandas.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import config
from .data import CLASSES, DS1, DS2, FAST_RECORDS, RECORDS, VAL_RECORDS, load_beats


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

    Reads data/splits/NAME.csv, written by the wrangling notebook. Where that file is missing (a
    notebook run on its own, as on Kaggle, where the outputs of 02 are not kept), builds the split
    with the same calls 02 makes (all 48 records, or the fast-mode records) and saves it first.
    """
    builders = {"seed": seed_split, "inter_patient": inter_patient_split}
    path = config.SPLITS_DIR / f"{name}.csv"
    if not path.is_file() and name not in builders:
        raise FileNotFoundError(f"{path} not found, and {name!r} is none of the splits notebook 02 makes "
                                f"({sorted(builders)})")
    if not path.is_file():
        records = FAST_RECORDS if config.FAST else RECORDS
        path = save_split(builders[name](load_beats(records)), name)
        print(f"{name} split not found: built it as notebook 02 does and saved it to {path}")
    manifest = pd.read_csv(path)
    beats = load_beats(sorted(manifest["record"].unique()))
    merged = manifest[["record", "sample", "split"]].merge(beats.reset_index(), on=["record", "sample"])
    return merged.set_index("index").rename_axis(None)
