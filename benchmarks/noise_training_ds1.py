"""Does training the signal CNN on noisy beats make the monitor's beat labels survive electrode-motion
noise? A study on the DS1 patients out of fold; DS2 is never read.

Under electrode-motion noise the monitor's QRS detector finds bumps of noise as beats, and real beats
change shape; notebook 05's noise stress test shows V +P on DS2 falling to 45% at 12 dB, and noise
alone raising VT alarms. Here the signal CNN (the recommended model's architecture, inputs and
settings, notebook 03's folds and seeds) is also trained on its training patients with noise added:

- noise: nstdb's em record, channel 1 (channel 0 is kept for notebook 05's noise stress test on DS2),
  scaled as WFDB's nst scales it (monitor.nst), at 12 and 6 dB; for training it is added only where
  nst's own noisy spans are not (the first 5 minutes and the clean 2-minute segments), so the noise
  samples the evaluation adds never reach training;
- rows: the beats the monitor's own detector finds in the noisy stretches (monitor.qrs.detect_beats),
  with their inputs built from the noisy signal and the detected positions as the monitor builds them;
  a detection matched to a reference beat within 150 ms (classify.match_beats, as bxb) keeps its
  class, an unmatched one (a bump of noise) is labelled Q.

Each fold's model then predicts its held-out patients clean (reference beats) and with the same noise
channel in nst's own spans at 12 and 6 dB (detected beats inside the noisy spans). The V statistics at
detected beats are metrics.score's EC57 gross ones, as bxb counts them: a reference V beat missed by the
detector or not called V is a false negative; a detection called V is a false positive when it matches
an N or S beat or no beat at all (noise), not when it matches an F or Q beat.

Variants: current (no noisy rows: the committed model's out-of-fold numbers); noisy (12 and 6 dB
rows); noisy12 (12 dB rows only); noisy_long (12 and 6 dB rows, 24,000 beats drawn per epoch instead of
12,000, as the training set doubles).

Adoption rule, written before any variant ran: a variant replaces the current training if, out of fold,
(1) clean S F1 and V F1 (thresholds re-picked on its own clean out-of-fold predictions) each lose at
most 1 point against the current model, and (2) at 12 dB V +P at detected beats rises by at least 10
points while V Se falls by at most 2 points.

Run (about 2 minutes per variant alone on 2 cores, the first a minute longer):
.venv/bin/python benchmarks/noise_training_ds1.py [--variants current noisy]
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
from recorder_ds1 import CPU, variant_set  # noqa: E402
from ekg import cv, features  # noqa: E402
from ekg.batches import BeatSet, predict  # noqa: E402
from ekg.classify import match_beats  # noqa: E402
from ekg.config import seed_everything  # noqa: E402
from ekg.data import CLASSES, find_data_dir, load_beats  # noqa: E402
from ekg.metrics import score  # noqa: E402
from ekg.models import ARCHITECTURES, load_model, model_path  # noqa: E402
from ekg.monitor import nst  # noqa: E402
from ekg.monitor.nst import complement  # noqa: E402,F401  (tests and noise_gate_ds1 read it here too)
from ekg.monitor.qrs import detect_beats  # noqa: E402
from ekg.signals import read_signal  # noqa: E402
from ekg.training import fit  # noqa: E402

NOISE = ("em", 1)
EVAL_SNRS_DB = (12, 6)
VARIANTS = {"current": {"snrs": (), "epoch_size": None}, "noisy": {"snrs": (12, 6), "epoch_size": None},
            "noisy12": {"snrs": (12,), "epoch_size": None}, "noisy_long": {"snrs": (12, 6), "epoch_size": 24_000}}
V, Q = CLASSES.index("V"), CLASSES.index("Q")


def noisy_detections(record, snr_db, noise, stretches="nst") -> dict:
    """Every beat the monitor's detector finds in one DS1 record with noise at snr_db added in the
    stretches: "nst" (nst's own spans), "training" (their complement) or "none" (the clean record; no
    noise, every detection inside). Returns context, inputs, labels (reference class, Q where no
    reference beat matches), unmatched (bool), inside (bool: in the noisy stretches), samples, and
    missed (the AAMI classes of the reference beats inside the stretches that no detection matched)."""
    path = find_data_dir() / str(record)
    clean, fs, _ = read_signal(path)
    nst_spans = nst.noisy_spans(len(clean), fs)
    spans = {"nst": nst_spans, "training": complement(nst_spans, len(clean)), "none": [(0, len(clean))]}[stretches]
    x = clean
    if stretches != "none":
        ann = wfdb.rdann(str(path), "atr")
        x = nst.nst_record(clean, nst.normal_beats(ann.symbol, ann.sample), fs, snr_db, noise,
                           spans=spans)[0].astype(np.float32)
    detected = detect_beats(x, fs)
    beats = load_beats([record])
    ref_i, det_i = match_beats(beats["sample"].to_numpy(), detected, fs)
    labels = np.full(len(detected), Q, np.int64)
    labels[det_i] = pd.Categorical(beats["aami"].to_numpy()[ref_i], categories=CLASSES).codes
    unmatched = np.ones(len(detected), bool)
    unmatched[det_i] = False
    context, rr_prev, rr_next, rr_local = features.beats_from_signal(x, detected)
    inputs = features.patient_inputs(context, rr_prev, rr_next, rr_local)

    def inside(samples, stretches):
        return np.any([(samples >= a) & (samples < b) for a, b in stretches], axis=0)

    in_stretches = np.flatnonzero(inside(beats["sample"].to_numpy(), spans))
    return {"context": context, "inputs": inputs, "labels": labels, "unmatched": unmatched,
            "inside": inside(detected, spans), "samples": detected,
            "missed": beats["aami"].to_numpy().astype(str)[np.setdiff1d(in_stretches, ref_i)]}


def inside_only(rows) -> dict:
    """noisy_detections' rows inside the noisy stretches only."""
    keep = rows["inside"]
    return {"context": rows["context"][keep], "inputs": {k: v[keep] for k, v in rows["inputs"].items()},
            "labels": rows["labels"][keep], "unmatched": rows["unmatched"][keep], "missed": rows["missed"]}


def with_rows(data, rows) -> BeatSet:
    """A BeatSet of data's beats and the noisy rows; every recorder version of a noisy row is the row itself."""
    versions = {name: {k: np.concatenate([inputs[k]] + [r["inputs"][k] for r in rows]) for k in inputs}
                for name, inputs in data.recorder_inputs().items()}
    return BeatSet.from_arrays(np.concatenate([data.context] + [r["context"] for r in rows]), versions["native"],
                               np.concatenate([data.labels] + [r["labels"] for r in rows]), recorders=versions)


def v_at_detections(probs, rows, thresholds) -> dict:
    """V Se and +P at detected beats, the EC57 gross statistics of metrics.score (as bxb counts them: a
    detection with no reference beat is O, a reference beat no detection matched is called O), and how
    the noise bumps were called."""
    called = cv.apply_thresholds(np.concatenate(probs), thresholds)
    labels = np.concatenate([r["labels"] for r in rows])
    unmatched = np.concatenate([r["unmatched"] for r in rows])
    missed = np.concatenate([r["missed"] for r in rows])
    table = pd.DataFrame({"aami_true": np.r_[np.where(unmatched, "O", np.asarray(CLASSES)[labels]), missed],
                          "aami_pred": np.r_[np.asarray(CLASSES)[called], np.full(len(missed), "O")]})
    gross = score(table)["gross"]
    return {"V Se": 100 * gross["VEB Se"], "V +P": 100 * gross["VEB +P"],
            "V calls on noise": int(np.sum((called == V) & unmatched)),
            "noise called Q (%)": 100 * np.mean(called[unmatched] == Q) if unmatched.any() else np.nan,
            "real beats called Q": int(np.sum((called == Q) & ~unmatched))}


def run(variant, meta, clean, record_of, noise) -> dict:
    """Train the variant on every fold; return its clean out-of-fold row and its V statistics in noise."""
    setting = VARIANTS[variant]
    cfg = {**meta["cfg"], **({"epoch_size": setting["epoch_size"]} if setting["epoch_size"] else {})}
    records = sorted(set(record_of))
    training_rows = {(r, s): inside_only(noisy_detections(r, s, noise, "training"))
                     for r in records for s in setting["snrs"]}
    eval_rows = {(r, s): inside_only(noisy_detections(r, s, noise, "nst")) for r in records for s in EVAL_SNRS_DB}
    if training_rows:
        labels = np.concatenate([v["labels"] for v in training_rows.values()])
        counts = dict(zip(CLASSES, np.bincount(labels, minlength=len(CLASSES)).tolist()))
        print(f"   noisy training rows: {len(labels):,} ({counts})")
    in_noise = {s: [] for s in EVAL_SNRS_DB}

    def fit_predict(train, held):
        seed_everything(cfg["seed"])
        model = ARCHITECTURES[meta["arch"]](**meta["arch_kwargs"])
        data = with_rows(clean.subset(np.isin(record_of, train)),
                         [training_rows[(r, s)] for r in train for s in setting["snrs"]])
        model, _ = fit(f"{variant}_{held[0]}", model, meta["input"], data, None, cfg, CPU, None)
        for s in EVAL_SNRS_DB:
            for r in held:
                rows = eval_rows[(r, s)]
                probs = predict(model, BeatSet.from_arrays(rows["context"], rows["inputs"], rows["labels"]),
                                meta["input"], CPU)
                in_noise[s].append((probs, rows))
        return predict(model, clean.subset(np.isin(record_of, held)), meta["input"], CPU)

    oof = cv.out_of_fold(fit_predict, records)
    thresholds = cv.pick_thresholds(oof, ("S", "V"))
    called = cv.apply_thresholds(oof[cv.PROB_COLUMNS].to_numpy(), thresholds)
    decided = oof.assign(aami_pred=np.asarray(CLASSES)[called])
    row = {f"clean {k}": 100 * v for k, v in cv.summary_row(score(decided)).items()}
    row["thresholds"] = thresholds
    for s in EVAL_SNRS_DB:
        stats = v_at_detections([p for p, _ in in_noise[s]], [r for _, r in in_noise[s]], thresholds)
        row.update({f"{k} {s} dB": v for k, v in stats.items()})
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    variants = ["current"] + [v for v in args.variants if v != "current"]  # the rule compares with it
    meta = load_model(model_path("recommended")).meta
    records = cv.cv_records()
    clean = variant_set("current", records)
    record_of = load_beats(records)["record"].to_numpy()
    noise, _ = nst.read_noise(*NOISE)
    print(f"signal CNN as notebook 03 trains it; {len(records)} DS1 patients in {len(cv.folds())} folds; "
          f"noise {NOISE[0]} channel {NOISE[1]}")
    rows = {}
    for variant in variants:
        t0 = time.perf_counter()
        print(f"== {variant}")
        rows[variant] = run(variant, meta, clean, record_of, noise)
        print(f"   {time.perf_counter() - t0:.0f} s; thresholds {rows[variant]['thresholds']}")
    table = pd.DataFrame(rows).T.drop(columns="thresholds")
    shown = ["clean F1 S", "clean F1 V", "clean SVEB Se", "clean SVEB +P", "clean VEB Se", "clean VEB +P", "clean F +P",
             *[f"{k} {s} dB" for s in EVAL_SNRS_DB for k in ("V Se", "V +P", "V calls on noise", "noise called Q (%)",
                                                             "real beats called Q")]]
    base = table.loc["current"]
    table["adopt"] = [v != "current" and r["clean F1 S"] >= base["clean F1 S"] - 1
                      and r["clean F1 V"] >= base["clean F1 V"] - 1
                      and r["V +P 12 dB"] >= base["V +P 12 dB"] + 10 and r["V Se 12 dB"] >= base["V Se 12 dB"] - 2
                      for v, r in table.iterrows()]
    pd.set_option("display.width", 250)
    print("\nOut of fold over the DS1 patients (percent; in noise: detected beats inside the noisy spans):")
    print(table[shown].astype(float).round(1).T.to_string())
    print("\nThe adoption rule ((1) clean S and V F1 within 1 point, (2) at 12 dB V +P up 10 points, "
          "V Se down at most 2):")
    print(table["adopt"].to_string())


if __name__ == "__main__":
    main()
