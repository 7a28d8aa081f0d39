"""Fitting and scoring the two-lead noise gate offline (not on the live path): the DS1 patients'
detections with electrode-motion noise on both leads, cross-validation by patient over the five DS1
folds, the threshold, and the trees written to noise_gate.json.gz.

    python -m ekg.monitor.gate_fit      # prints the out-of-fold table and writes noise_gate.json.gz

Data: the 22 DS1 records, both leads, with nstdb's em noise added as WFDB's nst adds it (monitor.nst):
lead 0 gets the noise's channel 1 and lead 1 its channel 0 (nst's own pairing is channel 0 to lead 0,
as notebook 05's noise stress test of DS2 adds it; swapped here, so the DS2 test's lead-0 noise is
never fitted on as lead-0 noise), at 12, 6 and 0 dB. Fitted on: the detections inside the stretches
nst leaves clean (the complement of its noisy spans) and the clean records; scored on: the detections
inside nst's own noisy spans and the clean records, out of fold (each fold's gate fitted on the other
folds' patients). A detection that matches no reference beat within 150 ms (classify.match_beats, as
bxb) is noise; detections inside reference ventricular flutter or fibrillation (record 207) are
neither, and left out (the VF detector's). DS2 is never read.

The threshold, by choose's rule: the lowest of THRESHOLDS at which the out-of-fold gate drops at most
0.05% of the clean records' real beats and at most 0.1% of their V beats. The rule was written after an
exploratory look, in scratch, at the tables of an earlier feature set (with the interval to the next
beat, and 207's flutter counted as noise), and before this module's table was first printed.

Imports: config, cv, data, classify (match_beats), trees, monitor.nst, monitor.qrs, monitor.gate,
monitor.vf_fit (episode spans), NumPy, pandas, wfdb, scikit-learn, joblib.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from .. import config, cv, trees
from ..data import FS, find_data_dir
from . import nst
from .gate import GATE_FEATURES, MODEL_PATH, record_features
from .qrs import detect_beats

SNRS_DB = (12, 6, 0)
LEAD_NOISE = {0: ("em", 1), 1: ("em", 0)}  # lead: (noise, channel)
THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.98)
MAX_CLEAN_REAL_DROPPED, MAX_CLEAN_V_DROPPED = 0.05, 0.1  # % (the threshold rule)
MODEL_PARAMS = {"max_iter": 200, "learning_rate": 0.1, "random_state": 0}


def detection_rows(record, snr_db, stretches, data_dir=None) -> dict:
    """The gate's rows of one DS1 record: features (GATE_FEATURES), noise (bool: matches no reference
    beat), v (a reference V beat) and samples of the lead-0 detections inside the stretches ("nst": nst's
    noisy spans, "training": their complement, "none": the clean record), detections inside reference
    VF/flutter left out. Noise at snr_db on both leads (LEAD_NOISE)."""
    import wfdb

    from ..classify import match_beats
    from ..data import load_beats
    from .vf_fit import episode_spans

    path = Path(find_data_dir(data_dir)) / str(record)
    signals = wfdb.rdrecord(str(path)).p_signal
    if signals.shape[1] < 2:
        raise ValueError(f"record {record} has {signals.shape[1]} lead(s): the gate needs two")
    ann = wfdb.rdann(str(path), "atr")
    n = len(signals)
    spans = {"nst": nst.noisy_spans(n, FS), "training": nst.complement(nst.noisy_spans(n, FS), n),
             "none": [(0, n)]}[stretches]
    leads = []
    for lead in (0, 1):
        x = signals[:, lead].astype(np.float64)
        if stretches != "none":
            x = nst.nst_record(x, nst.normal_beats(ann.symbol, ann.sample), FS, snr_db,
                               nst.read_noise(*LEAD_NOISE[lead])[0], spans=spans)[0]
        leads.append(x.astype(np.float32))
    peaks0, peaks1 = detect_beats(leads[0], FS), detect_beats(leads[1], FS)
    beats = load_beats([record])
    ref_i, det_i = match_beats(beats["sample"].to_numpy(), peaks0, FS)
    noise = np.ones(len(peaks0), bool)
    noise[det_i] = False
    v = np.zeros(len(peaks0), bool)
    v[det_i] = beats["aami"].to_numpy().astype(str)[ref_i] == "V"
    keep = np.any([(peaks0 >= a) & (peaks0 < b) for a, b in spans], axis=0)
    for a, b in episode_spans(ann.symbol, ann.sample, n):
        keep &= ~((peaks0 >= a) & (peaks0 < b))
    features = record_features(leads[0], leads[1], peaks0, peaks1, FS)
    return {"features": features[keep], "noise": noise[keep], "v": v[keep], "samples": peaks0[keep]}


def build_rows(records=None, cache=True) -> dict:
    """{(record, snr or None, stretches): detection_rows} for the fit ("training" at SNRS_DB, and the clean
    records) and the scoring ("nst" at SNRS_DB); in config.WORKERS processes, cached in config.CACHE_DIR."""
    from joblib import Parallel, delayed

    records = cv.cv_records() if records is None else list(records)
    jobs = [(r, s, st) for r in records for s in SNRS_DB for st in ("training", "nst")] + [(r, None, "none") for r in records]
    recipe = repr((jobs, GATE_FEATURES, LEAD_NOISE, Path(__file__).with_name("gate.py").read_bytes()))
    path = Path(config.CACHE_DIR) / f"gate_rows_{hashlib.sha256(recipe.encode()).hexdigest()[:12]}.pkl"
    if cache and path.is_file():
        return pd.read_pickle(path)
    rows = Parallel(n_jobs=max(min(config.WORKERS, len(jobs)), 1))(delayed(detection_rows)(*job) for job in jobs)
    out = dict(zip(jobs, rows))
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.to_pickle(out, path)
    return out


def _classifier():
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(**MODEL_PARAMS)


def fit(rows, records, features=GATE_FEATURES) -> object:
    """The gate's classifier fitted on the records' training rows (noise outside nst's spans, and clean),
    on the named features (GATE_FEATURES or some of them)."""
    columns = [GATE_FEATURES.index(name) for name in features]
    parts = [rows[(r, s, "training")] for r in records for s in SNRS_DB] + [rows[(r, None, "none")] for r in records]
    return _classifier().fit(np.concatenate([p["features"][:, columns] for p in parts]),
                             np.concatenate([p["noise"] for p in parts]))


def fold_gates(rows, records=None, features=GATE_FEATURES, threshold=None) -> list:
    """[(held-out records, exported gate spec)] for the cross-validation folds: each fitted without its patients."""
    return [(held, export(fit(rows, fit_records, features), threshold, features)) for _, fit_records, held in cv.folds(records)]


def export(clf, threshold=None, features=GATE_FEATURES) -> dict:
    spec = trees.export_trees(clf, list(features), fitted_on="MIT-BIH DS1 (22 records, both leads) with nstdb em "
                              f"noise at {', '.join(map(str, SNRS_DB))} dB outside nst's spans, and clean; monitor.gate_fit")
    if threshold is not None:
        spec["threshold"] = float(threshold)
    return spec


def out_of_fold(rows, records=None, features=GATE_FEATURES) -> dict:
    """{12, 6, 0 or "clean": (p(noise), noise, v)} of the scoring rows, each record's from the gate of
    the fold that never saw it (fitted on the named features)."""
    from .gate import NoiseGate

    out = {key: [] for key in [*SNRS_DB, "clean"]}
    for held, spec in fold_gates(rows, records, features):
        gate = NoiseGate(spec)
        for r in held:
            for key, part in [*((s, rows[(r, s, "nst")]) for s in SNRS_DB), ("clean", rows[(r, None, "none")])]:
                out[key].append((gate.probability(part["features"]), part["noise"], part["v"]))
    return {key: tuple(np.concatenate([p[i] for p in parts]) for i in range(3)) for key, parts in out.items()}


def scores(p, noise, v, thresholds=THRESHOLDS) -> pd.DataFrame:
    """Per threshold on p(noise): the noise detections, real beats and V beats dropped (%), QRS +P before
    and after, and the points of QRS Se lost."""
    real = ~noise
    rows = {}
    for t in thresholds:
        drop = p > t
        kept_real, kept_noise = int((real & ~drop).sum()), int((noise & ~drop).sum())
        rows[t] = {"noise dropped (%)": 100 * np.mean(drop[noise]) if noise.any() else np.nan,
                   "real dropped (%)": 100 * np.mean(drop[real]) if real.any() else np.nan,
                   "V beats dropped (%)": 100 * np.mean(drop[v]) if v.any() else np.nan,
                   "+P before": 100 * real.sum() / max(len(p), 1),
                   "+P after": 100 * kept_real / max(kept_real + kept_noise, 1),
                   "Se lost (points)": 100 * (real.sum() - kept_real) / max(real.sum(), 1)}
    return pd.DataFrame(rows).T.rename_axis("p(noise) >")


def choose(clean_scores) -> float:
    """The threshold rule (module docstring): the lowest threshold within both clean limits."""
    ok = clean_scores[(clean_scores["real dropped (%)"] <= MAX_CLEAN_REAL_DROPPED)
                      & (clean_scores["V beats dropped (%)"] <= MAX_CLEAN_V_DROPPED)]
    if ok.empty:
        raise ValueError("no threshold keeps the clean records' beats within the limits")
    return float(ok.index.min())


def main():
    import time

    t0 = time.perf_counter()
    rows = build_rows()
    print(f"DS1 detections with em noise on both leads, built in {time.perf_counter() - t0:.0f} s (or read from the cache)")
    oof = out_of_fold(rows)
    pd.set_option("display.width", 200)
    tables = {}
    for key, (p, noise, v) in oof.items():
        where = "clean records" if key == "clean" else f"{key} dB, inside nst's noisy spans"
        print(f"\n{where}, out of fold: {int((~noise).sum()):,} real beats ({int(v.sum()):,} V), "
              f"{int(noise.sum()):,} noise detections")
        tables[key] = scores(p, noise, v)
        print(tables[key].round(2).to_string())
    threshold = choose(tables["clean"])
    print(f"\nthreshold (the lowest with at most {MAX_CLEAN_REAL_DROPPED}% of clean real beats and "
          f"{MAX_CLEAN_V_DROPPED}% of clean V beats dropped): {threshold}")
    spec = export(fit(rows, cv.cv_records()), threshold)
    trees.write_spec(spec, MODEL_PATH)
    print(f"wrote {MODEL_PATH} ({len(spec['trees'])} trees); {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
