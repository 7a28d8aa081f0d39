"""Can the monitor tell a bump of electrode-motion noise from a beat before it classifies it? A
feasibility study on the DS1 patients out of fold; DS2 is never read, and nothing in the monitor uses
it yet.

Electrode-motion noise makes the QRS detector find beats that are not there; they raise the rate,
make V runs and feed the patient's template. Training the classifier on them (noise_training_ds1.py)
costs S beats on clean signal. A separate gate would leave the classifier alone: a small model that
looks at each detection with what the monitor already computes for it (its likeness to the beat
before it and to the patient's running template, its amplitude against the patient's typical one,
the intervals around it) and a few shape measures, and drops the detection if it is noise.

Data: the DS1 patients with nstdb's em noise, channel 1 (channel 0 is kept for notebook 05's noise
stress test on DS2), added as WFDB's nst adds it (monitor.nst): for training, at 12, 6 and 0 dB, only
outside nst's own spans, and the clean records; for evaluation, in nst's spans at 12, 6 and 0 dB, and
the clean records. Every detection of the monitor's detector (monitor.qrs.detect_beats) inside the
noisy stretches is a row; a detection that matches no reference beat within 150 ms (classify.match_beats,
as bxb) is noise. The gate, scikit-learn's histogram gradient boosting (as the VF detector's model,
which monitor.vf evaluates from exported trees), is fitted on the training patients of each of the
five DS1 folds and scores the held-out patients.

Printed, per threshold on p(noise): the share of noise detections the gate would drop and the share of
real beats it would drop, clean and at each level, and what QRS +P and Se would become.

Run (about 3 minutes on 2 cores): .venv/bin/python benchmarks/noise_gate_ds1.py
"""
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from noise_training_ds1 import NOISE, noisy_detections  # noqa: E402
from ekg import cv, features  # noqa: E402
from ekg.data import CLASSES, FS  # noqa: E402
from ekg.monitor import nst  # noqa: E402
from ekg.monitor.quality import beat_similarity  # noqa: E402

SNRS_DB = (12, 6, 0)
THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
#: The gate's inputs, one column each (detection_features).
FEATURES = ["likeness to the beat before", "likeness to the template", "rr_prev / local RR", "rr_next / local RR",
            "amplitude / typical", "local RR sd / local RR", "QRS roughness", "distance from the template",
            "2-s peak-to-peak / typical", "steepest slope / typical"]
#: Half-width of the QRS region the shape measures look at (100 ms).
QRS_HALF = int(0.1 * FS)


def detection_features(context, rhythm) -> np.ndarray:
    """Return FEATURES (n, 10) for detections in time order: context windows (n, 720) at 360 Hz and
    the signal model's rhythm inputs (features.RHYTHM_FEATURES columns)."""
    ctx, beat, amplitude = features.beat_parts(context)
    typical = np.maximum(features.causal_median(amplitude), 0.05)
    template = features.causal_median(beat)
    previous = np.r_[beat[:1], beat[:-1]]  # the first detection is its own predecessor
    centre = beat.shape[1] // 2
    qrs, qrs_template = (b[:, centre - QRS_HALF:centre + QRS_HALF] for b in (beat, template))
    column = {name: rhythm[:, features.RHYTHM_FEATURES.index(name)]
              for name in ("rr_prev / local RR", "rr_next / local RR", "amplitude / typical", "local RR sd / local RR")}
    return np.column_stack([
        beat_similarity(beat, previous, FS), beat_similarity(beat, template, FS),
        column["rr_prev / local RR"], column["rr_next / local RR"], column["amplitude / typical"],
        column["local RR sd / local RR"],
        np.abs(np.diff(qrs, 2, axis=1)).sum(1) / np.maximum(np.ptp(qrs, axis=1), 1e-3),
        np.linalg.norm(qrs - qrs_template, axis=1) / np.maximum(np.linalg.norm(qrs_template, axis=1), 1e-3),
        np.ptp(ctx, axis=1) / typical,
        np.abs(np.diff(qrs, axis=1)).max(1) / typical,
    ]).astype(np.float32)


def gate_rows(record, snr_db, noise, stretches) -> tuple:
    """(features, is noise, is a reference V beat) of the detections inside the noisy stretches of one record."""
    rows = noisy_detections(record, snr_db, noise, stretches)
    keep = rows["inside"]
    is_v = ~rows["unmatched"] & (rows["labels"] == CLASSES.index("V"))
    return detection_features(rows["context"], rows["inputs"]["rhythm"])[keep], rows["unmatched"][keep], is_v[keep]


def scores(p, is_noise, is_v, thresholds=THRESHOLDS) -> pd.DataFrame:
    """Per threshold: noise detections, real beats and V beats dropped (%), and QRS +P before and after
    and the points of QRS Se lost (%)."""
    real, noise = ~is_noise, is_noise
    n_real, n_noise = int(real.sum()), int(noise.sum())
    rows = {}
    for t in thresholds:
        drop = p > t
        kept_real, kept_noise = n_real - int((drop & real).sum()), n_noise - int((drop & noise).sum())
        rows[t] = {"noise dropped (%)": 100 * np.mean(drop[noise]) if n_noise else np.nan,
                   "real dropped (%)": 100 * np.mean(drop[real]) if n_real else np.nan,
                   "V beats dropped (%)": 100 * np.mean(drop[is_v]) if is_v.any() else np.nan,
                   "+P before": 100 * n_real / max(n_real + n_noise, 1),
                   "+P after": 100 * kept_real / max(kept_real + kept_noise, 1),
                   "Se lost (points)": 100 * (n_real - kept_real) / max(n_real, 1)}
    return pd.DataFrame(rows).T.rename_axis("p(noise) >")


def main():
    from sklearn.ensemble import HistGradientBoostingClassifier

    t0 = time.perf_counter()
    records = cv.cv_records()
    noise, _ = nst.read_noise(*NOISE)
    train = {(r, s): gate_rows(r, s, noise, "training") for r in records for s in SNRS_DB}
    test = {(r, s): gate_rows(r, s, noise, "nst") for r in records for s in SNRS_DB}
    clean = {r: gate_rows(r, None, noise, "none") for r in records}
    print(f"{len(records)} DS1 patients, noise {NOISE[0]} channel {NOISE[1]}: detections built in "
          f"{time.perf_counter() - t0:.0f} s")
    out = {key: [] for key in [*SNRS_DB, "clean"]}
    for _, fit_records, held in cv.folds(records):
        parts = [train[(r, s)] for r in fit_records for s in SNRS_DB] + [clean[r] for r in fit_records]
        gate = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=0)
        gate.fit(np.concatenate([x for x, _, _ in parts]), np.concatenate([y for _, y, _ in parts]))
        for r in held:
            for key, (x, y, v) in [*((s, test[(r, s)]) for s in SNRS_DB), ("clean", clean[r])]:
                out[key].append((gate.predict_proba(x)[:, 1], y, v))
    pd.set_option("display.width", 200)
    for key, parts in out.items():
        p, y, v = (np.concatenate([part[i] for part in parts]) for i in range(3))
        where = "clean records" if key == "clean" else f"{key} dB, inside nst's noisy spans"
        print(f"\n{where}: {int((~y).sum()):,} real beats ({int(v.sum()):,} V), {int(y.sum()):,} noise detections "
              "(out of fold)")
        print(scores(p, y, v).round(2).to_string())
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
