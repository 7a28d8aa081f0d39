"""Fitting and scoring the VF detector offline (not on the live path): window tables from the
Creighton (cudb) and MIT-BIH records, leave-records-out cross-validation, the tree ensemble written
to vf_model.json, and episode-level scores (detected within 10 s, time to alarm, false alarms).

    python -m ekg.monitor.vf_fit      # rebuilds the window table (cached) and vf_model.json

Choices come from out-of-fold predictions over cudb (17 records) and the MIT-BIH DS1 records
(207's flutter included); DS2 is never used to fit or choose. Artifact examples: DS1 with
nstdb em and ma noise added (channel 1; the noise stress test of DS2 uses channel 0) at 6 and 0 dB.

Imports: config, data, signals, monitor.vf, monitor.nst, NumPy, pandas, wfdb, scikit-learn.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import config
from ..data import BEAT_SYMBOLS, DS1, FS, RECORDS, find_data_dir
from ..signals import read_signal, resample
from . import nst
from .vf import FEATURES, MODEL_PATH, VF_SETTINGS, TreeModel, VFDetector

CUDB_RECORDS = [f"cu{i:02d}" for i in range(1, 18)]
TRAIN_NOISE = [("em", 1, 6), ("em", 1, 0), ("ma", 1, 6), ("ma", 1, 0)]  # (noise, channel, SNR dB)
CATEGORIES = ["VF", "VF + noise", "NSR", "other", "artifact"]


def episode_spans(symbols, samples, n_samples) -> list:
    """(start, end) samples of the reference VF/VFL episodes ("[" to "]"; open at the end: to the end)."""
    spans, start = [], None
    for sym, s in zip(symbols, samples):
        if sym == "[":
            start = int(s)
        elif sym == "]" and start is not None:
            spans.append((start, int(s)))
            start = None
    if start is not None:
        spans.append((start, int(n_samples)))
    return spans


def _rhythm(ann, n_samples) -> np.ndarray:
    """The reference rhythm label ("(N", "(VT", ...; "" before the first) at each sample."""
    label = np.full(n_samples, "", object)
    current, last = "", 0
    for s, note in zip(ann.sample, ann.aux_note):
        note = note.strip("\x00")
        if note.startswith("("):
            label[last:s] = current
            current, last = note, s
    label[last:] = current
    return label


def window_table(signal, fs, spans, record, source, rhythm=None) -> pd.DataFrame:
    """Features of every window of one recording (resampled to the analysis rate FS) with its labels:
    end (s), vf_frac (share of the window inside reference VF), nan_s, rhythm, verdict ("flat",
    "missing" or "unscored")."""
    x = resample(signal, fs, FS) if fs != FS else np.asarray(signal, dtype=np.float64)
    detector = VFDetector(FS, model=None)
    windows = detector.feed(x)
    ends = np.array([int(round(w["time"] * FS)) for w in windows], dtype=int)
    inside = np.zeros(len(x), bool)
    for a, b in spans:
        inside[int(round(a * FS / fs)):int(round(b * FS / fs))] = True
    c = np.r_[0, np.cumsum(inside)]
    nan = np.r_[0, np.cumsum(np.isnan(x))]
    out = pd.DataFrame(np.stack([w["features"] for w in windows]), columns=FEATURES)
    out["record"], out["source"], out["end"] = record, source, ends / FS
    width = int(round(detector.settings["window_s"] * FS))  # the window in input samples
    out["vf_frac"] = (c[ends] - c[ends - width]) / width
    out["nan_s"] = (nan[ends] - nan[ends - width]) / FS
    out["rhythm"] = rhythm[np.clip(np.round((ends - 1) * fs / FS).astype(int), 0, len(rhythm) - 1)] \
        if rhythm is not None else ""
    out["verdict"] = [w["verdict"] for w in windows]
    return out


def build_windows(mitdb_records=RECORDS, data_dir=None, cudb_dir=None, noise_dir=None, train_noise=True,
                  cache=True, cudb_records=CUDB_RECORDS) -> pd.DataFrame:
    """The window table of the given cudb and MIT-BIH records, plus noisy copies of their DS1 records
    (TRAIN_NOISE); cached in config.CACHE_DIR."""
    import wfdb

    data_dir = Path(find_data_dir(data_dir))
    cudb_dir = Path(cudb_dir or data_dir.parent / "cudb")
    noise_dir = Path(noise_dir or data_dir.parent / "nstdb-noise")
    key = f"{len(cudb_records)}_{len(mitdb_records)}_{sum(int(r) for r in mitdb_records)}_{int(train_noise)}"
    path = Path(config.CACHE_DIR) / f"vf_windows_{key}.pkl"
    if cache and path.is_file():
        return pd.read_pickle(path)
    parts = []
    for r in cudb_records:
        signal, fs, _ = read_signal(cudb_dir / r)
        ann = wfdb.rdann(str(cudb_dir / r), "atr")
        parts.append(window_table(signal, fs, episode_spans(ann.symbol, ann.sample, len(signal)), r, "cudb"))
    noises = {(k, ch): nst.read_noise(k, ch, noise_dir)[0] for k, ch, _ in TRAIN_NOISE} if train_noise else {}
    for r in mitdb_records:
        signal, fs, _ = read_signal(data_dir / str(r))
        ann = wfdb.rdann(str(data_dir / str(r)), "atr")
        spans = episode_spans(ann.symbol, ann.sample, len(signal))
        rhythm = _rhythm(ann, len(signal))
        parts.append(window_table(signal, fs, spans, str(r), "mitdb", rhythm))
        if train_noise and r in DS1:
            normal = nst.normal_beats(ann.symbol, ann.sample)
            amp = nst.qrs_amplitude(signal, normal, fs)
            for kind, ch, snr in TRAIN_NOISE:
                noise = noises[(kind, ch)]
                noisy = signal + nst.noise_gain(snr, amp, nst.noise_rms(noise, fs)) * noise[:len(signal)]
                parts.append(window_table(noisy, fs, spans, str(r), f"{kind}{ch}@{snr}", rhythm))
    table = pd.concat(parts, ignore_index=True)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_pickle(path)
    return table


def label(table) -> pd.DataFrame:
    """Add y (1: wholly inside VF, 0: no VF in it, -1: mixed), category (VF, VF + noise (207's flutter
    with noise added), NSR, other, artifact, mixed) and judged (a verdict the model gives: not flat,
    not missing)."""
    t = table.copy()
    t["y"] = np.where(t["vf_frac"] >= 1, 1, np.where(t["vf_frac"] <= 0, 0, -1))
    noisy = t["source"].str.contains("@")
    t["category"] = np.select(
        [t["y"] == -1, (t["y"] == 1) & ~noisy, t["y"] == 1, noisy, (t["source"] == "mitdb") & (t["rhythm"] == "(N")],
        ["mixed", "VF", "VF + noise", "artifact", "NSR"], "other")
    t["judged"] = (t["nan_s"] <= VF_SETTINGS["max_missing_s"]) & \
        (10 ** t["log_ptp"] >= VF_SETTINGS["min_ptp_mv"])
    return t


def _classifier():
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_depth=3, max_iter=100, random_state=0)


def _weights(category) -> np.ndarray:
    """Each category (VF with or without noise, NSR, other, artifact) weighs the same in the fit,
    whatever its size."""
    category = category.replace({"VF + noise": "VF"})
    w = category.map(1 / category.value_counts()).to_numpy()
    return w / w.mean()


def fit(table) -> dict:
    """Fit the tree ensemble on the pure, judged windows of a labelled table; return its spec."""
    train = table[(table["y"] >= 0) & table["judged"]]
    clf = _classifier().fit(train[FEATURES].to_numpy(), train["y"].to_numpy(), sample_weight=_weights(train["category"]))
    return export_trees(clf)


def export_trees(clf) -> dict:
    """A fitted HistGradientBoostingClassifier as plain numbers for TreeModel. Reads its fitted
    predictors' node tables (a private attribute: scikit-learn offers no public export)."""
    trees = []
    for (predictor,) in clf._predictors:
        nodes = predictor.nodes
        trees.append({"feature": nodes["feature_idx"].tolist(), "threshold": nodes["num_threshold"].tolist(),
                      "left": nodes["left"].tolist(), "right": nodes["right"].tolist(),
                      "leaf": nodes["is_leaf"].astype(int).tolist(), "value": nodes["value"].tolist()})
    return {"features": list(FEATURES), "baseline": float(np.ravel(clf._baseline_prediction)[0]), "trees": trees,
            "fitted_on": "cudb cu01-cu17 + MIT-BIH DS1 (+ em/ma noise ch 1 at 6 and 0 dB), monitor.vf_fit"}


def out_of_fold(table, folds=5) -> pd.Series:
    """VF probability of every judged window from a model fitted without its record (GroupKFold over
    records; a record's noisy copies stay with it)."""
    from sklearn.model_selection import GroupKFold

    train = table[(table["y"] >= 0) & table["judged"]]
    p = pd.Series(np.nan, index=table.index)
    for fit_i, test_i in GroupKFold(folds).split(train, groups=train["record"]):
        spec = fit(table.loc[train.index[fit_i]])
        held = table["record"].isin(set(train["record"].iloc[test_i])) & table["judged"]
        p[held] = TreeModel(spec).probability(table.loc[held, FEATURES].to_numpy())
    return p


def window_scores(table, p, threshold=VF_SETTINGS["threshold"]) -> pd.DataFrame:
    """Per-window sensitivity (VF) and specificity (other categories) in %, with window counts.
    A window with no verdict (flat, missing) counts as not VF."""
    pure = table[table["y"] >= 0]
    said_vf = (p[pure.index] > threshold).to_numpy()
    rows = []
    for cat in CATEGORIES:
        m = (pure["category"] == cat).to_numpy()
        right = said_vf[m] if cat.startswith("VF") else ~said_vf[m]
        rows.append({"category": cat, "windows": int(m.sum()), "measure": "Se" if cat.startswith("VF") else "Sp",
                     "%": 100 * right.mean() if m.any() else np.nan})
    return pd.DataFrame(rows).set_index("category")


def alarm_intervals(windows, p, settings=None) -> list:
    """Replay VFDetector's alarm rule over one recording's windows (in time order) with probabilities
    p; return the alarms as (start s, end s)."""
    settings = {**VF_SETTINGS, **(settings or {})}
    rule = VFDetector(FS, settings, model=None)
    out, start = [], None
    for t, judged, pk in zip(windows["end"], windows["judged"], p):
        verdict = ("vf" if pk > settings["threshold"] else "not vf") if judged else "missing"
        change = rule.alarm_step(verdict)
        if change == "on":
            start = t
        elif change == "off":
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, float(windows["end"].iloc[-1])))
    return out


def episode_scores(table, p, settings=None, within_s=10.0, reference=None) -> tuple:
    """Episode-level results: (episodes, false alarms) DataFrames. An episode (reference "[" to "]")
    is detected when a VF alarm is on at some time from its onset to onset + within_s; time to alarm
    is from onset to the first alarm on during it. A false alarm starts outside every episode (from
    1 s before its onset to 4 s, one window, after its end). reference: {record: spans in s}."""
    episodes, false = [], []
    for (record, source), w in table.groupby(["record", "source"], sort=False):
        w = w.sort_values("end")
        alarms = alarm_intervals(w, p[w.index], settings)
        spans = reference[record]
        if source in ("cudb", "mitdb"):
            for a, b in spans:
                during = [s for s, e in alarms if e >= a and s <= b]
                episodes.append({"record": record, "onset_s": a, "length_s": b - a,
                                 "detected": any(s <= a + within_s for s in during),
                                 "time_to_alarm_s": max(min(during) - a, 0) if during else np.nan})
        false += [{"record": record, "source": source, "time_s": s} for s, _ in alarms
                  if not any(a - 1 <= s <= b + VF_SETTINGS["window_s"] for a, b in spans)]
    return pd.DataFrame(episodes), pd.DataFrame(false, columns=["record", "source", "time_s"])


def reference_spans(records, data_dir=None, cudb_dir=None) -> dict:
    """{record name: [(start s, end s), ...]} of the reference VF episodes."""
    import wfdb

    data_dir = Path(find_data_dir(data_dir))
    cudb_dir = Path(cudb_dir or data_dir.parent / "cudb")
    out = {}
    for r in records:
        path = cudb_dir / r if str(r).startswith("cu") else data_dir / str(r)
        ann, header = wfdb.rdann(str(path), "atr"), wfdb.rdheader(str(path))
        out[str(r)] = [(a / header.fs, b / header.fs)
                       for a, b in episode_spans(ann.symbol, ann.sample, header.sig_len)]
    return out


def main():
    table = label(build_windows(mitdb_records=DS1))
    table = table[table["source"].ne("mitdb") | table["record"].astype(str).isin([str(r) for r in DS1])]
    p = out_of_fold(table)
    print(window_scores(table, p))
    episodes, false = episode_scores(table, p, reference=reference_spans(CUDB_RECORDS + [str(r) for r in DS1]))
    print(f"episodes alarmed within 10 s: {episodes['detected'].sum()}/{len(episodes)}, "
          f"median time to alarm {episodes['time_to_alarm_s'].median():.1f} s")
    print("false alarms by source:", false.groupby("source").size().to_dict())
    spec = fit(table)
    MODEL_PATH.write_text(json.dumps(spec))
    print(f"wrote {MODEL_PATH}")


if __name__ == "__main__":
    main()
