"""Does drawing the V beats inside runs more often teach the signal CNN to call them V? DS1 patients
only, out of fold; DS2 is never read.

Why: the monitor alarms ventricular tachycardia only on runs whose beats the model calls V, and the
model calls 59-62% of the 323 V beats inside DS1's reference VT runs V, whatever the seed
(seed_spread_ds1.py), against about 80% of all V beats. Most V beats it learns from are single
premature beats followed by a pause; inside a run the beat before and after is V too, the intervals
are short on both sides and the running rhythm follows the run. Those beats are few (457 of 3,788 DS1
V beats are in runs of 3 or more, 419 of them in records 223, 207, 203 and 205), so under the
square-root class sampling an epoch of 12,000 draws sees few of them.

What runs: the recommended model's architecture, inputs and settings, trained on notebook 03's five
DS1 folds as recorder_ds1.out_of_fold does (each fold's model predicts its held-out patients at
360 Hz and as a 128-Hz recorder gives them back), once per seed and arm. An arm multiplies the chance
that a training V beat inside a run of at least 3 consecutive V beats (reference beat labels, within a
record) is drawn (training.fit's draw_boost): "current" 1 (the shipped settings), "boost4" 4 and
"boost8" 8. S and V thresholds are chosen on each run's own native out-of-fold predictions, as
notebook 03 does.

Printed per arm and seed, then the mean over seeds: EC57 S and V Se, +P and F1 at 360 Hz, the largest
S or V loss at 128 Hz, the share of beats changing class at 128 Hz, V Se on the V beats inside the
reference VT runs (seed_spread_ds1.in_vt_runs), and the DS1 VT episodes (alarms.vt_episodes) in which
three reference beats in a row are decided V: the most the monitor's VT rule could alarm from them.
First, before any training, the committed model's own out-of-fold predictions (data/oof/, notebook
03's) are asked which DS1 episodes hold no three V calls in a row, and whether those runs' beats look
unlike the patient's normal beats as the monitor's normal-likeness gate measures it (quality.
beat_similarity against the median of the last stream.NORMAL_TEMPLATE_BEATS beats called N, on the
model's baseline-free beat windows): a rule on shape alone could alarm only runs that do.

Rule, written before this ran: a boosted arm becomes the next candidate signal CNN if, on the mean
over the seeds, (a) V Se in VT runs rises at least 10 points above the current arm's, (b) S F1 and
V F1 each lose at most 1 point against it and (c) V +P loses at most 2 points. Of several that pass,
the one with the higher V Se in VT runs. This script chooses nothing itself; a candidate still has to
go through notebook 03 (its folds and final model) and the monitor's DS1 replays before DS2 is scored.

Run (about 2-4 minutes per seed and arm on 2 cores, once the input cache exists; --missed-only: the
first table alone, seconds):
.venv/bin/python benchmarks/vt_runs_ds1.py [--seeds 0 1 2] [--arms current boost4] [--missed-only]
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
import seed_spread_ds1  # noqa: E402
from ekg import cv, features  # noqa: E402
from ekg.config import ROOT  # noqa: E402
from ekg.data import CLASSES, CONTEXT, FS, find_data_dir, load_beats, load_windows  # noqa: E402
from ekg.models import load_model, model_path  # noqa: E402
from ekg.monitor.alarms import vt_episodes  # noqa: E402
from ekg.monitor.quality import beat_similarity  # noqa: E402
from ekg.monitor.stream import NORMAL_TEMPLATE_BEATS  # noqa: E402

ARMS = {"current": 1.0, "boost4": 4.0, "boost8": 8.0}
SEEDS = (0, 1, 2)
RUN_BEATS = 3


def in_v_runs(beats, min_beats=RUN_BEATS) -> np.ndarray:
    """True for each beat of a beat table (record, aami; rows in time order within each record) that
    belongs to a run of at least min_beats consecutive V beats of its record."""
    is_v = (beats["aami"].astype(str) == "V").to_numpy()
    records = beats["record"].to_numpy()
    # a run starts where V begins or the record changes; its length is counted per run id
    starts = np.r_[True, (records[1:] != records[:-1]) | (is_v[1:] != is_v[:-1])]
    run_id = np.cumsum(starts)
    length = np.bincount(run_id)[run_id]
    return is_v & (length >= min_beats)


def episodes_with_three_v(native, thresholds, data_dir=None) -> tuple:
    """Return (DS1 VT episodes in which 3 consecutive reference beats are decided V, all episodes)."""
    data_dir = find_data_dir() if data_dir is None else Path(data_dir)
    decided = np.asarray(CLASSES)[cv.apply_thresholds(native[cv.PROB_COLUMNS].to_numpy(), thresholds)]
    found = total = 0
    for record in np.unique(native["record"]):
        ann = wfdb.rdann(str(data_dir / str(record)), "atr")
        rows = np.flatnonzero(native["record"].to_numpy() == record)
        seconds = native["sample"].to_numpy()[rows] / FS
        for start, end in vt_episodes(ann.symbol, ann.sample, ann.aux_note, FS, np.inf):
            calls = "".join(decided[rows[(seconds >= start) & (seconds < end)]])
            total += 1
            found += "V" * RUN_BEATS in calls
    return found, total


def normal_likeness(windows, called_n) -> np.ndarray:
    """Each beat's QRS likeness (quality.beat_similarity) to the median of the last NORMAL_TEMPLATE_BEATS
    beats before it that were called N (windows: one record's beat windows in time order); NaN before
    the first beat called N. The monitor's normal-likeness gate, here for every beat, not only V calls."""
    template = np.full(windows.shape, np.nan)
    normal = []
    for i in range(len(windows)):
        if normal:
            template[i] = np.median(windows[normal[-NORMAL_TEMPLATE_BEATS:]], axis=0)
        if called_n[i]:
            normal.append(i)
    return beat_similarity(windows, template, FS)


def missed_runs(oof, thresholds, data_dir=None) -> pd.DataFrame:
    """The DS1 VT episodes in which no 3 consecutive reference beats are decided V under thresholds, one
    row each: record, start (s), the decided classes of its beats, how many, and their normal-likeness
    (normal_likeness: median, and the share at most the VT rule's 0.85)."""
    from ekg.monitor import ALARM_THRESHOLDS

    data_dir = find_data_dir() if data_dir is None else Path(data_dir)
    decided = np.asarray(CLASSES)[cv.apply_thresholds(oof[cv.PROB_COLUMNS].to_numpy(), thresholds)]
    out = []
    for record in np.unique(oof["record"]):
        rows = np.flatnonzero(oof["record"].to_numpy() == record)
        beats = load_beats([int(record)])
        if len(beats) != len(rows) or (beats["sample"].to_numpy() != oof["sample"].to_numpy()[rows]).any():
            raise ValueError(f"the out-of-fold table's beats of record {record} are not load_beats' beats")
        _, windows, _ = features.beat_parts(load_windows([int(record)], *CONTEXT))
        likeness = normal_likeness(windows, decided[rows] == "N")
        ann = wfdb.rdann(str(data_dir / str(record)), "atr")
        seconds = beats["sample"].to_numpy() / FS
        for start, end in vt_episodes(ann.symbol, ann.sample, ann.aux_note, FS, np.inf):
            inside = (seconds >= start) & (seconds < end)
            calls = "".join(decided[rows[inside]])
            if "V" * RUN_BEATS not in calls:
                like = likeness[inside]
                out.append({"record": int(record), "start (s)": round(float(start), 1), "beats": int(inside.sum()),
                            "decided": calls if len(calls) <= 24 else calls[:21] + "...",
                            "normal-likeness, median": float(np.nanmedian(like)),
                            "unlike normal (%)": 100 * float(np.mean(like <= ALARM_THRESHOLDS["vt_max_normal_similarity"]))})
    return pd.DataFrame(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--missed-only", action="store_true", help="only the committed model's missed runs")
    args = parser.parse_args()
    arms = ["current"] + [a for a in args.arms if a != "current"]  # the rule compares with it
    meta = load_model(model_path("recommended")).meta
    beats = load_beats(cv.cv_records())
    print(f"signal CNN as notebook 03 trains it ({meta['arch']} {meta['arch_kwargs']}, cfg {meta['cfg']}); "
          f"{len(cv.cv_records())} DS1 patients in {len(cv.folds())} folds; seeds {args.seeds}; arms "
          f"{ {a: ARMS[a] for a in arms} }; {int(in_v_runs(beats).sum())} DS1 V beats in runs of {RUN_BEATS} or more "
          f"(by record: {beats[in_v_runs(beats)].groupby('record').size().sort_values(ascending=False).to_dict()})",
          flush=True)
    pd.set_option("display.width", 240)
    oof = pd.read_csv(ROOT / "data" / "oof" / "signal_cnn.csv.gz")
    missed = missed_runs(oof, meta["thresholds"])
    print(f"\nThe committed model out of fold (data/oof/, thresholds {meta['thresholds']}): {len(missed)} DS1 VT "
          f"episodes without {RUN_BEATS} V calls in a row; their beats' likeness to the patient's last "
          f"{NORMAL_TEMPLATE_BEATS} beats called N:")
    print(missed.round(2).to_string(index=False), flush=True)
    if args.missed_only:
        return
    rows, runs = {}, None
    for seed in args.seeds:
        for arm in arms:
            t0 = time.perf_counter()
            boost = None if ARMS[arm] == 1 else np.where(in_v_runs(beats), ARMS[arm], 1.0)
            native, via128 = recorder_ds1.out_of_fold("current", {**meta, "cfg": {**meta["cfg"], "seed": seed}}, boost)
            runs = seed_spread_ds1.in_vt_runs(native) if runs is None else runs
            row = seed_spread_ds1.row(native, via128, runs)
            found, total = episodes_with_three_v(native, cv.pick_thresholds(native, ("S", "V")))
            row["VT episodes with 3 V in a row"] = found
            rows[(arm, seed)] = row
            print(f"{arm} seed {seed}: {time.perf_counter() - t0:.0f} s; " + ", ".join(
                f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
                + f" (of {total})", flush=True)
    table = pd.DataFrame(rows).T
    numbers = table.drop(columns="thresholds S/V").astype(float)
    means = numbers.groupby(level=0, sort=False).mean()
    print(f"\nDS1 out of fold, percent; VT episodes of {total}:")
    print(numbers.round(1).join(table["thresholds S/V"]).to_string())
    print(f"\nmean over seeds {args.seeds}:")
    print(means.round(1).to_string())
    base = means.loc["current"]
    print("\nThe rule (against current, on the means): (a) V Se in VT runs up at least 10 points, (b) S F1 and "
          "V F1 each down at most 1 point, (c) V +P down at most 2 points")
    passing = {}
    for arm in [a for a in means.index if a != "current"]:
        r = means.loc[arm]
        checks = {"a": r["V Se in VT runs"] >= base["V Se in VT runs"] + 10,
                  "b": r["S F1"] >= base["S F1"] - 1 and r["V F1"] >= base["V F1"] - 1,
                  "c": r["V +P"] >= base["V +P"] - 2}
        if all(checks.values()):
            passing[arm] = r["V Se in VT runs"]
        print(f"  {arm}: " + ", ".join(f"({k}) {'met' if v else 'not met'}" for k, v in checks.items()))
    print("-> next candidate:", max(passing, key=passing.get) if passing else "none; the shipped settings stay")


if __name__ == "__main__":
    main()
