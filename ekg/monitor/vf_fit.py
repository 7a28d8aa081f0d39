"""Fitting and scoring the VF detector offline (not on the live path): window tables from the
Creighton (cudb) and MIT-BIH records, leave-records-out cross-validation, the tree ensemble written
to vf_model.json, and episode-level scores (detected within 10 s, time to alarm, false alarms).

    python -m ekg.monitor.vf_fit      # rebuilds the window table (cached) and vf_model.json

Choices come from out-of-fold predictions over cudb (17 records) and the MIT-BIH DS1 records
(207's flutter included); DS2 is never used to fit or choose. Noise: nstdb em and ma channel 1 added
at 12, 6, 0 and -6 dB to DS1 (non-VF examples, 207's flutter aside) and to the Creighton records (their
VF stays VF: noise must never silence VF), and the noise records alone (non-VF); channel 0, which the
noise stress test of DS2 adds, is added to DS1 at the same levels to score on, never to fit on.
main() prints the tables the alarm rule is chosen from (settings_grid, choose) and writes the model.

Imports: config, data, signals, monitor.vf, monitor.nst, NumPy, pandas, wfdb, scikit-learn.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import config, trees
from ..data import DS1, FS, RECORDS, find_data_dir
from ..signals import read_signal, resample
from . import nst
from .vf import FEATURES, MODEL_PATH, VF_SETTINGS, TreeModel, VFDetector

CUDB_RECORDS = [f"cu{i:02d}" for i in range(1, 18)]
NOISE_SNRS_DB = (12, 6, 0, -6)  # nst's levels from where noise starts to matter down to the noisiest
# (noise, channel, SNR dB). Channel 1 of the nstdb noise is mixed into the DS1 and Creighton records to
# fit on; channel 0 (what the noise stress test of DS2 adds) into DS1 only, to score on, never fitted
# on. The two channels are the same motion seen by two electrode pairs, so the held-out figure is
# held out by record and by channel, not by noise event.
TRAIN_NOISE = [(kind, 1, snr) for kind in ("em", "ma") for snr in NOISE_SNRS_DB]
HELD_OUT_NOISE = [(kind, 0, snr) for kind in ("em", "ma") for snr in NOISE_SNRS_DB]
NOISE_ONLY = [("em", 1), ("ma", 1)]  # the noise records alone (as recorded), fitted on as non-VF
CATEGORIES = ["VF", "VF + noise", "VF + held-out noise", "NSR", "other", "artifact", "noise only", "held-out noise"]


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


def _mixed(signal, fs, beats, noise, snr_db) -> np.ndarray:
    """signal + noise at snr_db as nst scales it (QRS amplitude of the annotated normal beats; a record
    with fewer than 10 measures the 5th-95th percentile range of the signal instead), all the way."""
    amp = nst.qrs_amplitude(signal, beats, fs) if len(beats) >= 10 else float(np.subtract(
        *np.nanpercentile(signal, [95, 5])))
    return signal + nst.noise_gain(snr_db, amp, nst.noise_rms(noise, fs)) * noise[:len(signal)]


def _cudb_parts(r, cudb_dir, noises, train_noise) -> list:
    """A Creighton record's window tables: as recorded, and with each TRAIN_NOISE (build_windows)."""
    import wfdb

    signal, fs, _ = read_signal(cudb_dir / r)
    ann = wfdb.rdann(str(cudb_dir / r), "atr")
    spans = episode_spans(ann.symbol, ann.sample, len(signal))
    parts = [window_table(signal, fs, spans, r, "cudb")]
    if train_noise:  # mixed at the noise's rate (FS): the Creighton record resampled first
        x = resample(signal, fs, FS)
        beats = np.round(nst.normal_beats(ann.symbol, ann.sample) * FS / fs).astype(int)
        spans_fs = [(int(round(a * FS / fs)), int(round(b * FS / fs))) for a, b in spans]
        for kind, ch, snr in TRAIN_NOISE:
            parts.append(window_table(_mixed(x, FS, beats, noises[(kind, ch)], snr), FS, spans_fs, r,
                                      f"{kind}{ch}@{snr}"))
    return parts


def _mitdb_parts(r, data_dir, noises, train_noise) -> list:
    """An MIT-BIH record's window tables: as recorded and, for DS1, with each TRAIN_NOISE and
    HELD_OUT_NOISE (build_windows)."""
    import wfdb

    signal, fs, _ = read_signal(data_dir / str(r))
    ann = wfdb.rdann(str(data_dir / str(r)), "atr")
    spans = episode_spans(ann.symbol, ann.sample, len(signal))
    rhythm = _rhythm(ann, len(signal))
    parts = [window_table(signal, fs, spans, str(r), "mitdb", rhythm)]
    if train_noise and r in DS1:
        beats = nst.normal_beats(ann.symbol, ann.sample)
        for kind, ch, snr in TRAIN_NOISE + HELD_OUT_NOISE:
            parts.append(window_table(_mixed(signal, fs, beats, noises[(kind, ch)], snr), fs, spans, str(r),
                                      f"{kind}{ch}@{snr}", rhythm))
    return parts


def build_windows(mitdb_records=RECORDS, data_dir=None, cudb_dir=None, noise_dir=None, train_noise=True,
                  cache=True, cudb_records=CUDB_RECORDS) -> pd.DataFrame:
    """The window table of the given cudb and MIT-BIH records, plus, with train_noise, noisy copies
    of the cudb and DS1 records (TRAIN_NOISE, and HELD_OUT_NOISE for DS1 only; source "em1@6" ...)
    and the noise records alone (NOISE_ONLY; record "em1 alone", source "noise"); cached in
    config.CACHE_DIR, keyed to the records, the noise and the features."""
    import hashlib

    from joblib import Parallel, delayed

    data_dir = Path(find_data_dir(data_dir))
    cudb_dir = Path(cudb_dir or data_dir.parent / "cudb")
    noise_dir = Path(noise_dir or data_dir.parent / "nstdb-noise")
    recipe = repr((list(cudb_records), [str(r) for r in mitdb_records], bool(train_noise), TRAIN_NOISE,
                   HELD_OUT_NOISE, NOISE_ONLY, FEATURES, VF_SETTINGS["window_s"], VF_SETTINGS["analysis_hz"]))
    key = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    path = Path(config.CACHE_DIR) / f"vf_windows_{key}.pkl"
    if cache and path.is_file():
        return _plain(pd.read_pickle(path))
    kinds = {(k, ch) for k, ch, _ in TRAIN_NOISE + HELD_OUT_NOISE} | set(NOISE_ONLY) if train_noise else set()
    noises = {(k, ch): nst.read_noise(k, ch, noise_dir)[0] for k, ch in sorted(kinds)}
    # one job per record (its windows and noisy copies), in config.WORKERS processes: the same table
    # in the same order (the 17 Creighton and 22 DS1 records: 97 s in one process, 59 s in two)
    jobs = [delayed(_cudb_parts)(r, cudb_dir, noises, train_noise) for r in cudb_records]
    jobs += [delayed(_mitdb_parts)(r, data_dir, noises, train_noise) for r in mitdb_records]
    parts = [part for record_parts in Parallel(n_jobs=min(config.WORKERS, len(jobs)) or 1)(jobs)
             for part in record_parts]
    for kind, ch in (NOISE_ONLY if train_noise else []):
        parts.append(window_table(noises[(kind, ch)], FS, [], f"{kind}{ch} alone", "noise"))
    table = pd.concat(parts, ignore_index=True)
    for column in ("record", "source", "rhythm", "verdict"):
        table[column] = table[column].astype(str).astype("category")
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_pickle(path)
    return _plain(table)


def _plain(table) -> pd.DataFrame:
    """The table with its text columns as plain strings (stored as categories: a quarter of the size)."""
    for column in ("record", "source", "rhythm", "verdict"):
        table[column] = table[column].astype(str)
    return table


def label(table) -> pd.DataFrame:
    """Add y (1: wholly inside VF, 0: no VF in it, -1: mixed), category (VF; VF + noise: VF with
    training noise added; NSR; other; artifact: a non-VF record with training noise added; noise only;
    held-out noise and VF + held-out noise: the channel-0 mixtures; mixed), fit (a window the model may
    be fitted on: pure, judged, not held-out noise) and judged (a verdict the model gives: not flat,
    not missing)."""
    t = table.copy()
    source = t["source"].astype(str)
    t["y"] = np.where(t["vf_frac"] >= 1, 1, np.where(t["vf_frac"] <= 0, 0, -1))
    noisy = source.str.contains("@")
    held_out = source.isin({f"{k}{ch}@{snr}" for k, ch, snr in HELD_OUT_NOISE})
    t["category"] = np.select(
        [t["y"] == -1, (t["y"] == 1) & held_out, held_out, (t["y"] == 1) & ~noisy, t["y"] == 1, noisy,
         source == "noise", (source == "mitdb") & (t["rhythm"].astype(str) == "(N")],
        ["mixed", "VF + held-out noise", "held-out noise", "VF", "VF + noise", "artifact", "noise only", "NSR"],
        "other")
    t["judged"] = (t["nan_s"] <= VF_SETTINGS["max_missing_s"]) & \
        (10 ** t["log_ptp"] >= VF_SETTINGS["min_ptp_mv"])
    t["fit"] = (t["y"] >= 0) & t["judged"] & ~held_out
    return t


#: The tree ensemble's size (scikit-learn's HistGradientBoostingClassifier; seeded, so refits repeat).
MODEL_PARAMS = {"max_depth": 3, "max_iter": 100, "learning_rate": 0.1}


def _classifier(params=None):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(**{**MODEL_PARAMS, **(params or {})}, random_state=0)


#: How much each category weighs in the fit, all its windows together, whatever its size.
CATEGORY_WEIGHTS = {"VF": 1.0, "VF + noise": 0.5, "NSR": 1.0, "other": 1.0, "artifact": 1.0, "noise only": 0.25}


def _weights(category, weights=None) -> np.ndarray:
    """Return each window's weight: its category's (CATEGORY_WEIGHTS) shared by its windows."""
    weights = {**CATEGORY_WEIGHTS, **(weights or {})}
    category = pd.Series(category).astype(str)
    w = category.map(lambda c: weights[c]) * category.map(1 / category.value_counts())
    w = w.to_numpy()
    return w / w.mean()


def fit(table, features=FEATURES, weights=None, params=None) -> dict:
    """Fit the tree ensemble on the windows of a labelled table marked fit; return its spec."""
    train = table[table["fit"]]
    clf = _classifier(params).fit(train[features].to_numpy(), train["y"].to_numpy(),
                            sample_weight=_weights(train["category"], weights))
    return export_trees(clf, features)


def export_trees(clf, features=FEATURES) -> dict:
    """A fitted HistGradientBoostingClassifier as plain numbers for TreeModel (trees.export_trees),
    with a note of what it was fitted on."""
    return trees.export_trees(clf, features, fitted_on="cudb cu01-cu17 + MIT-BIH DS1, each also with nstdb em/ma "
                              f"noise channel 1 at {', '.join(map(str, NOISE_SNRS_DB))} dB, + the em/ma noise alone; "
                              "monitor.vf_fit")


def out_of_fold(table, folds=5, features=FEATURES, weights=None, params=None) -> pd.Series:
    """VF probability of every judged window from a model fitted without its record (GroupKFold over
    records; a record's noisy copies, held-out noise included, stay with it)."""
    from sklearn.model_selection import GroupKFold

    train = table[table["fit"]]
    records = train["record"].astype(str)
    p = pd.Series(np.nan, index=table.index)
    for fit_i, test_i in GroupKFold(folds).split(train, groups=records):
        model = _Subset(fit(table.loc[train.index[fit_i]], features, weights, params))
        held = table["record"].astype(str).isin(set(records.iloc[test_i])) & table["judged"]
        p[held] = model.probability(table.loc[held, features].to_numpy())
    return p


class _Subset(TreeModel):
    """A TreeModel over a subset of FEATURES (for comparing feature sets in cross-validation)."""

    def __init__(self, spec):
        super().__init__({**spec, "features": FEATURES})


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


def episode_scores(table, p, settings=None, within_s=10.0, reference=None, sources=("cudb", "mitdb")) -> tuple:
    """Episode-level results: (episodes, false alarms) DataFrames. An episode (reference "[" to "]")
    is detected when a VF alarm is on at some time from its onset to onset + within_s; time to alarm
    is from onset to the first alarm on during it. A false alarm starts outside every episode (from
    1 s before its onset to 4 s, one window, after its end). reference: {record: spans in s};
    sources: the sources whose episodes count (the noisy copies' too: "em1@0", ...)."""
    episodes, false = [], []
    for (record, source), w in table.groupby(["record", "source"], sort=False, observed=True):
        w = w.sort_values("end")
        alarms = alarm_intervals(w, p[w.index], settings)
        spans = reference.get(str(record), [])
        if source in sources:
            for a, b in spans:
                during = [s for s, e in alarms if e >= a and s <= b]
                episodes.append({"record": record, "source": source, "onset_s": a, "length_s": b - a,
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


SNR_SOURCES = [f"{k}{ch}@{snr}" for k, ch in (("em", 0), ("ma", 0), ("em", 1)) for snr in NOISE_SNRS_DB]


def snr_scores(table, p, threshold=VF_SETTINGS["threshold"]) -> pd.DataFrame:
    """Per noisy source (em0@12 ...): window specificity outside VF and sensitivity inside it, in %."""
    pure = table[table["y"] >= 0]
    said_vf = p[pure.index] > threshold
    rows = {}
    for source in SNR_SOURCES:
        m = pure["source"].astype(str) == source
        rows[source] = {"Sp % (non-VF windows)": 100 * (1 - said_vf[m & (pure["y"] == 0)].mean()),
                        "Se % (VF windows)": 100 * said_vf[m & (pure["y"] == 1)].mean()}
    return pd.DataFrame(rows).T


def settings_grid(table, p, reference, thresholds=(0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95),
                  on_windows=(2, 3, 4)) -> pd.DataFrame:
    """Replay the alarm rule over the out-of-fold probabilities for each threshold and on_windows;
    return one row per setting: episodes alarmed within 10 s (clean, and with em noise ch 1 at each
    level), median time to alarm, and false alarms by source (DS1 clean "mitdb", the Creighton
    records' non-VF stretches "cudb", DS1 with held-out channel-0 noise "em0@0" ...)."""
    rows = []
    keep = table["source"].astype(str).isin(["cudb", "mitdb", "noise"] + SNR_SOURCES)
    for th in thresholds:
        for on in on_windows:
            episodes, false = episode_scores(table[keep], p, {"threshold": th, "on_windows": on}, reference=reference,
                                             sources=("cudb", "mitdb", *SNR_SOURCES))
            clean = episodes[episodes["source"].isin(["cudb", "mitdb"])]
            count = false.groupby("source").size()
            row = {"threshold": th, "on_windows": on, "episodes in 10 s": int(clean["detected"].sum()),
                   "of": len(clean), "median s to alarm": clean["time_to_alarm_s"].median()}
            for snr in NOISE_SNRS_DB:
                row[f"episodes em1@{snr}"] = int(episodes.loc[episodes["source"] == f"em1@{snr}", "detected"].sum())
            for source in ["mitdb", "cudb", "noise"] + [f"{k}0@{snr}" for k in ("em", "ma") for snr in NOISE_SNRS_DB]:
                row[f"FA {source}"] = int(count.get(source, 0))
            rows.append(row)
    return pd.DataFrame(rows)


def choose(grid) -> pd.Series:
    """The setting chosen from settings_grid: among those with no false alarm on clean DS1 and none on
    DS1 with held-out electrode-motion noise at 12, 6 or 0 dB, the most episodes alarmed within 10 s,
    then the fewest false alarms with electrode-motion noise at -6 dB and on the Creighton records."""
    ok = grid[(grid["FA mitdb"] == 0) & (grid[["FA em0@12", "FA em0@6", "FA em0@0"]].sum(axis=1) == 0)]
    if ok.empty:  # none meets it: the fewest false alarms from noise at 0 dB and above, then episodes
        ok = grid.assign(fa=grid[["FA mitdb", "FA em0@12", "FA em0@6", "FA em0@0"]].sum(axis=1))
        ok = ok[ok["fa"] == ok["fa"].min()]
    return ok.sort_values(["episodes in 10 s", "FA em0@-6", "FA cudb"], ascending=[False, True, True]).iloc[0]


def main():
    """Cross-validate, print the tables the settings are chosen from, refit on everything, write the
    model. The windows are cached; the fit is seeded, so a rerun writes the same file."""
    pd.set_option("display.width", 250)
    table = label(build_windows(mitdb_records=DS1))
    reference = reference_spans(CUDB_RECORDS + [str(r) for r in DS1])
    p = out_of_fold(table)
    grid = settings_grid(table, p, reference)
    print("alarm rule over out-of-fold probabilities (false alarms FA: DS1 clean and each noisy copy 11 h,"
          " cudb non-VF 2.4 h):")
    print(grid.round(2).to_string(index=False))
    best = choose(grid)
    print(f"chosen: threshold {best['threshold']}, on_windows {int(best['on_windows'])} "
          f"(VF_SETTINGS has threshold {VF_SETTINGS['threshold']}, on_windows {VF_SETTINGS['on_windows']})")
    for th in sorted({VF_SETTINGS["threshold"], 0.5}):
        print(f"per 4-s window at threshold {th}:")
        print(window_scores(table, p, th).round(2).to_string())
        print(snr_scores(table, p, th).round(2).to_string())
    spec = fit(table)
    MODEL_PATH.write_text(json.dumps(spec))
    print(f"wrote {MODEL_PATH}")


if __name__ == "__main__":
    main()
