"""How much of the signal CNN's out-of-fold result is the luck of one training seed, and does an
average over seeds depend less on the recorder? DS1 patients only, out of fold; DS2 is never read.

The report shows one signal CNN, trained with seed 0. Its DS2 figures move with the seed as well as
with the patients: notebook 04's patient-bootstrap intervals cover the patients, not the seed. This
script trains the recommended model's architecture, inputs and settings on notebook 03's five DS1
folds once per seed (the seed sets the weights' start, the epoch's draws and the augmentation), each
fold's model predicting its held-out patients at 360 Hz and as a 128-Hz recorder gives them back
(recorder_ds1.out_of_fold, the same code that reproduced notebook 03's numbers for seed 0 on the
machine that trained the committed model; on another CPU seed 0 trains other weights too). For each
seed, S and V thresholds are chosen on its own native out-of-fold predictions, as notebook 03 does.
Then the seeds' probabilities are averaged (the first 3 seeds, and all of them) and scored the same
way.

Printed, per seed and per average: EC57 S and V Se, +P and F1 at 360 Hz, the largest S or V point
loss at 128 Hz, the share of beats decided differently at the two rates, and V Se on the beats
inside reference ventricular tachycardia runs (the monitor's VT alarm can only alarm runs whose
beats the model calls V; tune_vt_ds1.py lists the misses); then the spread (min to max) over seeds.

Question asked of the averages, written before this ran: an average of seeds becomes the next
candidate for the offline classifier (classify_record; not the monitor, where every beat would cost
K model runs) if, out of fold, (a) native S F1 and V F1 each gain at least 1 point over the seed-0
model and (b) the share of beats decided differently at 128 Hz falls to half or less (recorder_ds1's
rule). This script chooses nothing itself.

Run (about 100-200 s per seed on a 2-core machine, once the input cache exists): .venv/bin/python benchmarks/seed_spread_ds1.py [--seeds 0 1 2]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import recorder_ds1  # noqa: E402
from ekg import cv  # noqa: E402
from ekg.data import CLASSES, FS, find_data_dir  # noqa: E402
from ekg.models import load_model, model_path  # noqa: E402
from ekg.monitor.alarms import vt_episodes  # noqa: E402

SEEDS = (0, 1, 2, 3, 4)


def in_vt_runs(frame, data_dir=None) -> np.ndarray:
    """True for each row of a classified-beats table (record, sample) inside a reference ventricular
    tachycardia episode of its record (alarms.vt_episodes, from the "(VT" rhythm label to the next
    rhythm change)."""
    data_dir = find_data_dir() if data_dir is None else Path(data_dir)
    inside = np.zeros(len(frame), bool)
    records = frame["record"].to_numpy()
    seconds = frame["sample"].to_numpy() / FS
    for record in np.unique(records):
        ann = wfdb.rdann(str(data_dir / str(record)), "atr")
        rows = records == record
        for start, end in vt_episodes(ann.symbol, ann.sample, ann.aux_note, FS, np.inf):
            inside[rows] |= (seconds[rows] >= start) & (seconds[rows] < end)
    return inside


def averaged(frames) -> pd.DataFrame:
    """The first classified-beats table with its probabilities replaced by the mean over all of them
    (the same beats in the same order: checked) and aami_pred by their argmax."""
    for f in frames[1:]:
        if not (f["sample"].to_numpy() == frames[0]["sample"].to_numpy()).all():
            raise ValueError("the seeds' out-of-fold tables hold different beats")
    probs = np.mean([f[cv.PROB_COLUMNS].to_numpy() for f in frames], axis=0)
    out = frames[0].copy()
    out[cv.PROB_COLUMNS] = probs
    out["aami_pred"] = np.asarray(CLASSES)[probs.argmax(1)]
    return out


def v_se_in_runs(native, thresholds, runs) -> float:
    """Percent of the V beats inside reference VT runs that the thresholds decide V."""
    decided = np.asarray(CLASSES)[cv.apply_thresholds(native[cv.PROB_COLUMNS].to_numpy(), thresholds)]
    v_in_runs = runs & (native["aami_true"].to_numpy() == "V")
    return 100 * float(np.mean(decided[v_in_runs] == "V"))


def row(native, via128, runs) -> dict:
    """One line of the table: native S/V statistics, the 128-Hz loss and flips, V Se in VT runs."""
    table, drop, flips, thresholds = recorder_ds1.summary(native, via128)
    native_stats = table.loc["360 Hz"]
    return {"S Se": native_stats["SVEB Se"], "S +P": native_stats["SVEB +P"], "S F1": native_stats["F1 S"],
            "V Se": native_stats["VEB Se"], "V +P": native_stats["VEB +P"], "V F1": native_stats["F1 V"],
            "largest S/V loss at 128 Hz": drop[["SVEB Se", "SVEB +P", "VEB Se", "VEB +P"]].max(),
            "beats changing class at 128 Hz (%)": 100 * flips,
            "V Se in VT runs": v_se_in_runs(native, thresholds, runs),
            "thresholds S/V": f"{thresholds['S']:.2f}/{thresholds['V']:.2f}"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    args = parser.parse_args()
    meta = load_model(model_path("recommended")).meta
    print(f"signal CNN as notebook 03 trains it ({meta['arch']} {meta['arch_kwargs']}, cfg {meta['cfg']}); "
          f"{len(cv.cv_records())} DS1 patients in {len(cv.folds())} folds; seeds {args.seeds}")
    pd.set_option("display.width", 220)
    runs_by_seed, rows, runs = {}, {}, None
    for seed in args.seeds:
        t0 = time.perf_counter()
        native, via128 = recorder_ds1.out_of_fold("current", {**meta, "cfg": {**meta["cfg"], "seed": seed}})
        runs = in_vt_runs(native) if runs is None else runs
        runs_by_seed[seed] = (native, via128)
        rows[f"seed {seed}"] = row(native, via128, runs)
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s; " + ", ".join(
            f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[f"seed {seed}"].items()))
    seeds = list(runs_by_seed)
    for k in sorted({min(3, len(seeds)), len(seeds)}):
        if k > 1:
            rows[f"mean of seeds {seeds[0]}..{seeds[k - 1]}"] = row(
                averaged([runs_by_seed[s][0] for s in seeds[:k]]), averaged([runs_by_seed[s][1] for s in seeds[:k]]),
                runs)
    table = pd.DataFrame(rows).T
    numbers = table.drop(columns="thresholds S/V").astype(float)
    print(f"\nDS1 out of fold, percent ({int((runs & (runs_by_seed[seeds[0]][0]['aami_true'] == 'V')).sum())} "
          "V beats inside reference VT runs):")
    print(numbers.round(1).join(table["thresholds S/V"]).to_string())
    single = numbers.loc[[f"seed {s}" for s in seeds]]
    print("\nspread over single seeds (max - min, points):", (single.max() - single.min()).round(1).to_dict())
    base = numbers.loc[f"seed {seeds[0]}"]
    print(f"\nThe question asked of the averages (against seed {seeds[0]}): (a) S F1 and V F1 each up at least 1 "
          "point, (b) beats changing class at 128 Hz halved or better")
    for name in [n for n in numbers.index if n.startswith("mean")]:
        r = numbers.loc[name]
        a = r["S F1"] >= base["S F1"] + 1 and r["V F1"] >= base["V F1"] + 1
        b = r["beats changing class at 128 Hz (%)"] <= base["beats changing class at 128 Hz (%)"] / 2
        print(f"  {name}: (a) {'met' if a else 'not met'}, (b) {'met' if b else 'not met'} "
              f"-> {'the next candidate for classify_record' if a and b else 'not a candidate'}")


if __name__ == "__main__":
    main()
