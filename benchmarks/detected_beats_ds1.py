"""Where does the signal CNN lose S beats when it classifies the beats the detector finds instead of the
annotated ones? DS1 patients only, out of fold, with the committed fold models (nothing is trained);
DS2 is never read.

Why: notebook 05 finds the recommended model's S Se on DS2 64.1% at the reference beats and 49.8% at
the monitor's own detected beats, while the detector itself finds 99.85% of the beats. Two things
differ between the two: where each beat's R peak is placed (the detector's point against the
cardiologists'), and which beats there are (a missed beat or an extra detection changes the RR
intervals, the running template and the typical amplitude of the beats after it).

What runs: qrs.detect_beats (the monitor's detector, offline) on every DS1 record's native signal;
detections matched to the reference beats as bxb does (classify.match_beats). Each fold model
classifies its held-out patients' matched beats three ways (classify.classify_beats): at the
reference positions with the reference beat list (the usual out-of-fold figures), at the detected
positions with the detected beat list (what the monitor sees), and with the detected beat list but
every matched beat moved back to its reference position (the beat list's share alone). Only matched
beats are scored, with the recommended model's thresholds. Printed: per record the beats, detections,
matches and unmatched detections, and how many of those lie inside reference-marked ventricular
flutter or fibrillation (classify.vf_spans, "[" to "]"); S and V Se and +P of each way; and per
record with S beats, the S beats found each way. This script chooses nothing.

Run (about 2 minutes on 2 cores): .venv/bin/python benchmarks/detected_beats_ds1.py
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import recorder_ds1  # noqa: E402
from ekg import cv  # noqa: E402
from ekg.classify import classify_beats, in_spans, match_beats, vf_spans  # noqa: E402
from ekg.data import FS, find_data_dir  # noqa: E402
from ekg.metrics import score  # noqa: E402
from ekg.models import load_model, model_path  # noqa: E402
from ekg.monitor.qrs import detect_beats  # noqa: E402

WAYS = ("reference beats", "detected beats", "detected beat list, reference positions")


def with_reference_positions(detected, reference, ref_i, det_i) -> tuple:
    """(the detected beat list with every matched detection moved to its reference position, in time
    order; each matched detection's row in it)."""
    mixed = np.asarray(detected).copy()
    mixed[det_i] = np.asarray(reference)[ref_i]
    order = np.argsort(mixed, kind="stable")
    return mixed[order], np.argsort(order)[det_i]


def main():
    thresholds = load_model(model_path("recommended")).meta["thresholds"]
    probs, beats, counts = {w: [] for w in WAYS}, [], []
    for _, model, record, table, signal in recorder_ds1.committed_folds():
        reference = table["sample"].to_numpy()
        detected = detect_beats(signal, FS)
        ref_i, det_i = match_beats(reference, detected, FS)
        mixed, mixed_i = with_reference_positions(detected, reference, ref_i, det_i)
        probs["reference beats"].append(classify_beats(model, signal, reference)[ref_i])
        probs["detected beats"].append(classify_beats(model, signal, detected)[det_i])
        probs["detected beat list, reference positions"].append(classify_beats(model, signal, mixed)[mixed_i])
        beats.append(table.iloc[ref_i])
        unmatched = np.delete(detected, det_i)
        ann = wfdb.rdann(str(find_data_dir() / str(record)), "atr")
        counts.append({"record": record, "reference beats": len(reference), "detections": len(detected),
                       "matched": len(ref_i), "unmatched detections": len(unmatched),
                       "of them in reference VF/flutter": int(in_spans(unmatched, vf_spans(ann.symbol, ann.sample)).sum())})
    beats = pd.concat(beats, ignore_index=True)
    pd.set_option("display.width", 220)
    print(f"committed fold models, {len(beats):,} matched DS1 beats, thresholds {thresholds}")
    print(pd.DataFrame(counts).set_index("record").T.to_string())
    rows, found = {}, {}
    truth = beats["aami"].astype(str).to_numpy()
    for way, p in probs.items():
        frame = cv.classified_frame(beats, np.concatenate(p), thresholds)
        stats = cv.summary_row(score(frame))
        rows[way] = {k: 100 * float(stats[k]) for k in ("SVEB Se", "SVEB +P", "VEB Se", "VEB +P")}
        found[way] = pd.Series((truth == "S") & (frame["aami_pred"].to_numpy() == "S")).groupby(beats["record"]).sum()
    print("\nmatched beats, percent:")
    print(pd.DataFrame(rows).T.round(1).to_string())
    per_record = pd.DataFrame({"S beats": pd.Series(truth == "S").groupby(beats["record"]).sum(), **found})
    print("\nS beats found, per record with S beats:")
    print(per_record[per_record["S beats"] > 0].astype(int).T.to_string())


if __name__ == "__main__":
    main()
