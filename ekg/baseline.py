"""A classical feature baseline: RR intervals and beat morphology per beat, with scikit-learn's
linear discriminant (as de Chazal et al. 2004) and a gradient-boosted model, so the CNNs have a
yardstick under the same folds (ekg.cv) and on DS2.

Every feature of a beat is causal (it uses the signal up to FEATURE_WINDOW_S[1] after the beat's
R peak and the beats before it) except those built on the interval to the next beat
(NEXT_RR_FEATURES), which a monitor has once the next beat arrives.
Imports: .config, .data, .signals, .trees (NumPy, pandas at module level; scikit-learn and wfdb inside
the functions that need them).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from . import config
from .data import CLASSES, FS, _records_arg, causal_local_rr, find_data_dir, load_beats
from .signals import read_signal

#: Beats before the current one whose RR intervals form the local rhythm (de Chazal: about 10).
LOCAL_BEATS = 10
#: Seconds of past RR intervals that form the long-term rhythm (the last few minutes).
LONG_WINDOW_S = 300.0
#: Signal kept around each R peak (s before, s after): the P wave to the end of the T wave.
FEATURE_WINDOW_S = (0.28, 0.48)
#: The down-sampled beat: one value every MORPH_STEP_S (the mean over that span) from
#: MORPH_SPAN_S[0] before to MORPH_SPAN_S[1] after the R peak (40 Hz, 29 values).
MORPH_STEP_S = 0.025
MORPH_SPAN_S = (0.25, 0.45)
#: Beats of the patient's own past whose median is the running template and typical amplitude.
TEMPLATE_BEATS = 32
#: Seconds either side of the R peak that hold the QRS complex.
QRS_HALF_S = 0.06

RR_FEATURES = ["rr_prev", "rr_next", "rr_local", "rr_long", "prev/local", "next/local", "prev/long",
               "next/long", "local/long", "next/prev"]
#: The features that use the interval to the next beat: the only ones not causal.
NEXT_RR_FEATURES = ["rr_next", "next/local", "next/long", "next/prev"]
SHAPE_FEATURES = ["qrs_width", "qrs_max", "qrs_min", "qrs_p2p", "qrs_energy", "t_max", "t_min", "p_mean",
                  "p_range", "p2p/typical", "corr_template", "corr_template_qrs", "rms_diff", "rms_diff_p",
                  "rms_diff_qrs"]
MORPH_TIMES = np.round(np.arange(-MORPH_SPAN_S[0], MORPH_SPAN_S[1] + 1e-9, MORPH_STEP_S), 3)
WAVE_FEATURES = [f"w{int(round(1000 * t)):+d}ms" for t in MORPH_TIMES]
DIFF_FEATURES = [f"d{int(round(1000 * t)):+d}ms" for t in MORPH_TIMES]
FEATURES = RR_FEATURES + SHAPE_FEATURES + WAVE_FEATURES + DIFF_FEATURES
#: The classes the classifiers learn: Q (8 beats in DS1) is left out and gets probability 0.
TRAIN_CLASSES = ["N", "S", "V", "F"]
MODELS = ("lda", "gbm")
#: The linear discriminant's features: the down-sampled beat itself left out (on out-of-fold DS1
#: predictions it lowered S and V F1: a linear boundary on absolute waveforms learns patients).
LDA_FEATURES = RR_FEATURES + SHAPE_FEATURES + DIFF_FEATURES
#: Positive, right-skewed features the linear discriminant sees as logarithms (out-of-fold S F1
#: 0.21 -> 0.38 and V F1 0.55 -> 0.66 with them): its classes are Gaussian with one covariance.
LOG_FEATURES = RR_FEATURES + ["qrs_width", "qrs_energy", "qrs_p2p", "p_range", "p2p/typical", "rms_diff",
                              "rms_diff_p", "rms_diff_qrs"]


def rr_features(samples, fs=FS) -> pd.DataFrame:
    """Return the RR features (seconds and ratios, RR_FEATURES) of beats at R-peak samples.

    rr_local: mean of the LOCAL_BEATS intervals before the beat's own; rr_long: mean of the intervals
    that ended in the last LONG_WINDOW_S seconds before the beat's own (the beat's own interval is
    left out of both, so a premature beat does not pull its own reference down). Gaps at the
    record's ends are filled from the nearest interval the beat has: rr_prev of the first beat
    from rr_next, rr_next of the last beat from rr_local.
    """
    samples = np.asarray(samples, dtype=np.int64)
    if samples.ndim != 1 or len(samples) < 2 or np.any(np.diff(samples) <= 0):
        raise ValueError("rr_features needs at least two R peaks in increasing order")
    times = samples / float(fs)
    rr = np.diff(times)
    rr_prev, rr_next = np.r_[np.nan, rr], np.r_[rr, np.nan]
    local = causal_local_rr(rr_prev, LOCAL_BEATS)  # the beat table's and the CNN's rule
    # long-term mean: intervals j < i whose beat time t_j lies within LONG_WINDOW_S before t_i
    past = np.r_[0.0, np.cumsum(np.nan_to_num(rr_prev))]          # sum of rr_prev[:k]
    count = np.r_[0, np.cumsum(~np.isnan(rr_prev))]
    start = np.searchsorted(times, times - LONG_WINDOW_S, side="left")
    idx = np.arange(len(times))
    n_long = count[idx] - count[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        long = np.where(n_long > 0, (past[idx] - past[start]) / np.maximum(n_long, 1), np.nan)
    return rr_frame(rr_prev, rr_next, local, long)


def rr_frame(rr_prev, rr_next, rr_local, rr_long) -> pd.DataFrame:
    """Return RR_FEATURES from each beat's intervals in seconds (NaN where unknown), the gaps filled
    as rr_features fills them at a record's ends (rr_prev from rr_next, rr_local from rr_prev, rr_long
    from rr_local, rr_next from rr_local); the monitor builds its beats' features here too."""
    rr_prev, rr_next, local, long = (np.asarray(a, dtype=np.float64) for a in (rr_prev, rr_next, rr_local, rr_long))
    rr_prev = np.where(np.isnan(rr_prev), rr_next, rr_prev)
    local = np.where(np.isnan(local), rr_prev, local)
    long = np.where(np.isnan(long), local, long)
    rr_next = np.where(np.isnan(rr_next), local, rr_next)
    return pd.DataFrame({"rr_prev": rr_prev, "rr_next": rr_next, "rr_local": local, "rr_long": long,
                         "prev/local": rr_prev / local, "next/local": rr_next / local, "prev/long": rr_prev / long,
                         "next/long": rr_next / long, "local/long": local / long, "next/prev": rr_next / rr_prev})


def causal_template(x, n=TEMPLATE_BEATS) -> np.ndarray:
    """Return, for each row i, the median of rows i-n .. i-1 (the first row stands in for its past)."""
    x = np.asarray(x, dtype=np.float64)
    padded = np.concatenate([np.repeat(x[:1], n, axis=0), x])
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, n, axis=0)[:len(x)], axis=-1)


def _corr(a, b) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    denominator = np.sqrt((a ** 2).sum(1) * (b ** 2).sum(1))
    return np.where(denominator > 0, (a * b).sum(1) / np.maximum(denominator, 1e-12), 0.0)


def shape_features(signal, samples, fs=FS) -> pd.DataFrame:
    """Return the morphology features (SHAPE_FEATURES, WAVE_FEATURES, DIFF_FEATURES) of beats at samples.

    Each beat's window (FEATURE_WINDOW_S) less its median (baseline wander) gives: QRS width (span
    where the slope exceeds a fifth of its peak), QRS maximum, minimum, peak-to-peak and energy,
    T-wave extremes, P-region level and range, the down-sampled beat in mV (absolute values kept),
    and the beat against the patient's running template (median of the previous TEMPLATE_BEATS
    down-sampled beats): correlations, RMS differences (whole, P region, QRS) and the down-sampled
    difference, divided by the typical QRS amplitude (median of the previous peak-to-peaks).
    """
    x = np.nan_to_num(np.asarray(signal, dtype=np.float64))
    samples = np.asarray(samples, dtype=np.int64)
    before, after = window_samples(fs)
    padded = np.pad(x, (before, after + 1), mode="edge")
    parts = window_parts(np.lib.stride_tricks.sliding_window_view(padded, before + after + 1)[samples], fs)
    template = causal_template(parts["wave"])
    typical = causal_template(parts["qrs_p2p"][:, None])[:, 0]
    return shape_from_parts(parts, template, typical)


def window_samples(fs=FS) -> tuple:
    """Return the samples (before, after) the R peak that a beat's feature window holds at fs."""
    return tuple(int(np.ceil(s * fs)) for s in FEATURE_WINDOW_S)


def window_parts(windows, fs=FS) -> dict:
    """Return what each beat's own window (rows: window_samples(fs) around the R peak, in mV) gives
    before the patient's template enters: the SHAPE_FEATURES that need no template, as arrays, and
    "wave", the down-sampled beat (n, len(MORPH_TIMES)). The window's median is taken off first."""
    windows = np.asarray(windows, dtype=np.float64)
    before, _ = window_samples(fs)
    windows = windows - np.median(windows, axis=1, keepdims=True)
    t = (np.arange(windows.shape[1]) - before) / fs

    def span(a, b):
        return (t >= a) & (t <= b)

    qrs = windows[:, span(-QRS_HALF_S, QRS_HALF_S)]
    slope = np.abs(np.gradient(qrs, axis=1)) * fs
    active = slope >= 0.2 * slope.max(1, keepdims=True)
    first = active.argmax(1)
    last = active.shape[1] - 1 - active[:, ::-1].argmax(1)
    tw = windows[:, span(0.15, MORPH_SPAN_S[1])]
    pw = windows[:, span(-MORPH_SPAN_S[0], -0.08)]
    # down-sampling: the mean over each MORPH_STEP_S span (an anti-alias filter and decimation in one)
    wave = np.stack([windows[:, span(c - MORPH_STEP_S / 2, c + MORPH_STEP_S / 2 - 1e-9)].mean(1)
                     for c in MORPH_TIMES], axis=1)
    return {"qrs_width": (last - first) / fs, "qrs_max": qrs.max(1), "qrs_min": qrs.min(1),
            "qrs_p2p": qrs.max(1) - qrs.min(1), "qrs_energy": (qrs ** 2).sum(1) / fs, "t_max": tw.max(1),
            "t_min": tw.min(1), "p_mean": pw.mean(1), "p_range": pw.max(1) - pw.min(1), "wave": wave}


def shape_from_parts(parts, template, typical) -> pd.DataFrame:
    """Return SHAPE_FEATURES, WAVE_FEATURES and DIFF_FEATURES from window_parts and each beat's
    template (the median of its previous TEMPLATE_BEATS waves, (n, len(MORPH_TIMES))) and typical
    QRS peak-to-peak (the median of the previous TEMPLATE_BEATS, (n,))."""
    wave, p2p = parts["wave"], parts["qrs_p2p"]
    typical = np.maximum(np.asarray(typical, dtype=np.float64), 0.05)  # never divide by noise
    diff = (wave - template) / typical[:, None]
    p_part, q_part = MORPH_TIMES <= -0.1, np.abs(MORPH_TIMES) <= QRS_HALF_S
    out = pd.DataFrame({
        **{k: v for k, v in parts.items() if k != "wave"}, "p2p/typical": p2p / typical,
        "corr_template": _corr(wave, template), "corr_template_qrs": _corr(wave[:, q_part], template[:, q_part]),
        "rms_diff": np.sqrt((diff ** 2).mean(1)), "rms_diff_p": np.sqrt((diff[:, p_part] ** 2).mean(1)),
        "rms_diff_qrs": np.sqrt((diff[:, q_part] ** 2).mean(1))})
    return pd.concat([out, pd.DataFrame(wave, columns=WAVE_FEATURES), pd.DataFrame(diff, columns=DIFF_FEATURES)],
                     axis=1)


def beat_features(signal, samples, fs=FS) -> pd.DataFrame:
    """Return FEATURES (one row per beat, float) of the beats at R-peak samples of a one-channel
    signal in mV sampled at fs. Needs at least two beats (ValueError otherwise)."""
    samples = np.asarray(samples, dtype=np.int64)
    if len(samples) and (samples.min() < 0 or samples.max() >= len(signal)):
        raise ValueError("beat samples lie outside the signal")
    features = pd.concat([rr_features(samples, fs), shape_features(signal, samples, fs)], axis=1)
    return features[FEATURES].astype(np.float64)


def _cache_file(record, version=""):
    return config.CACHE_DIR / "baseline_features_v2" / version / f"{record}.npz"


def cached_record_features(record: int, compute, version: str = "") -> pd.DataFrame:
    """Return compute(signal, samples, fs) (a FEATURES table) for the reference beats of record,
    computed from the raw signal once and then read from CACHE_DIR/baseline_features_v2/VERSION/.
    version names another version of the signal (a recorder: ekg.ensemble); "" is the record as
    recorded. A cache of other features, or of other beats (a changed beat table), is rebuilt."""
    samples = load_beats([record])["sample"].to_numpy()
    path = _cache_file(record, version)
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if list(z["columns"]) == FEATURES and np.array_equal(z["samples"], samples):
                return pd.DataFrame(z["values"], columns=FEATURES)
    signal, fs, _ = read_signal(find_data_dir() / str(record))
    features = compute(signal, samples, fs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # own name: cross-validation folds may build it at once
    np.savez(tmp, values=features.to_numpy(), columns=np.asarray(features.columns, dtype=str), samples=samples)
    tmp.replace(path)  # an interrupted build never leaves half a cache file
    return features


@lru_cache(maxsize=None)
def _record_features(record: int) -> pd.DataFrame:
    return cached_record_features(record, beat_features)


def load_features(records=None) -> pd.DataFrame:
    """Return FEATURES of the reference beats of the given records, rows as in load_beats(records);
    computed from the raw signal once, then read from the on-disk cache."""
    return pd.concat([_record_features(r) for r in _records_arg(records)], ignore_index=True)


_LDA_COLUMNS = [FEATURES.index(c) for c in LDA_FEATURES]
_LOG_MASK = np.isin(LDA_FEATURES, LOG_FEATURES)


def _lda_inputs(X) -> np.ndarray:
    """The LDA's columns of a FEATURES matrix, LOG_FEATURES as logarithms (a module-level function,
    so a fitted pipeline pickles)."""
    X = np.asarray(X, dtype=np.float64)[:, _LDA_COLUMNS].copy()
    X[:, _LOG_MASK] = np.log(np.clip(X[:, _LOG_MASK], 1e-4, None))
    return X


#: The GBM's settings (make_model("gbm")); a saved fit (fit_model) is reused only with these.
GBM_PARAMS = {"learning_rate": 0.1, "max_iter": 200, "max_leaf_nodes": 31, "min_samples_leaf": 40,
              "l2_regularization": 1.0, "early_stopping": False, "random_state": 0}


def make_model(kind):
    """Return an unfitted scikit-learn classifier: "lda" (LDA_FEATURES, LOG_FEATURES as logarithms,
    standardised; shrinkage linear discriminant with equal class priors, as de Chazal's class
    weighting) or "gbm" (all FEATURES, histogram gradient
    boosting; class imbalance through sample weights in fit_model)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    if kind == "lda":
        priors = np.full(len(TRAIN_CLASSES), 1 / len(TRAIN_CLASSES))
        return make_pipeline(FunctionTransformer(_lda_inputs), StandardScaler(),
                             LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto", priors=priors))
    if kind == "gbm":
        return HistGradientBoostingClassifier(**GBM_PARAMS)
    raise ValueError(f"unknown model {kind!r}; choose one of {MODELS}")


def sample_weights(labels, power=0.5) -> np.ndarray:
    """Return per-beat weights (n_largest_class / n_class) ** power, so rare classes count more."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    weight = dict(zip(classes, (counts.max() / counts) ** power))
    return np.array([weight[c] for c in labels])


#: The GBM's class weighting, chosen on out-of-fold DS1 predictions: power 1 (each class weighs as
#: much as N) gave macro-F1 0.521, S F1 0.274, V F1 0.833; power 0.5 gave 0.515, 0.250, 0.834.
#: (Without the down-sampled beat the GBM fell to 0.502, 0.222, 0.815, so it keeps all FEATURES.)
GBM_WEIGHT_POWER = 1.0


def fit_model(kind, records, weight_power=GBM_WEIGHT_POWER):
    """Fit make_model(kind) on the reference beats of records (Q beats left out); return the model.
    The LDA uses its equal priors. The GBM weighs beats by sample_weights(power=weight_power) and is
    returned as a trees.TreeModel (predict_proba and classes_ as scikit-learn's, the same numbers),
    saved under models/gbm/ and reused from there (see saved_gbm_path)."""
    beats = load_beats(records)
    keep = beats["aami"].isin(TRAIN_CLASSES).to_numpy()
    X = load_features(records).to_numpy()[keep]
    y = beats["aami"].astype(str).to_numpy()[keep]
    if kind == "gbm":
        return _fitted_gbm(records, weight_power, X, y)
    model = make_model(kind)
    model.fit(X, y)
    return model


def gbm_key(records, weight_power, X, y, params=None) -> str:
    """Return the 16-hex-digit SHA-256 of what a GBM fit depends on: the training records, FEATURES,
    the model's settings (params, default GBM_PARAMS), the weight power and the training matrix and
    labels themselves (so a changed feature computation or beat table never reuses an old fit)."""
    import hashlib
    import json

    settings = {"records": sorted(int(r) for r in records), "features": FEATURES,
                "params": GBM_PARAMS if params is None else params, "power": float(weight_power)}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update("\n".join(map(str, y)).encode())
    return h.hexdigest()[:16]


def saved_gbm_path(key, write=False) -> Path:
    """Return models/gbm/baseline_gbm_KEY.json.gz: with write, under the output root; else the first
    that exists of the output root's and the repository's (the committed fits), or None."""
    name = Path("models") / "gbm" / f"baseline_gbm_{key}.json.gz"
    if write:
        return config.OUTPUT_ROOT / name
    return next((base / name for base in (config.OUTPUT_ROOT, config.ROOT) if (base / name).is_file()), None)


def _fitted_gbm(records, weight_power, X, y):
    """fit_model's GBM: the saved trees of the same fit (gbm_key) unless config.RETRAIN, else fitted,
    saved and read back as trees. Saved like notebook 03's CNNs: the same fit on another CPU or thread
    count may give other trees, and a rerun of the report should score the models it reported; a fit
    takes 35-50 s per DS1 fold on two cores, two thirds of it scikit-learn 1.9's binning of the features
    under the class weights (benchmarks/logs/gbm_binning_2026-11-29.txt)."""
    from .trees import TreeModel, export_trees, write_spec

    model = make_model("gbm")
    # the settings of the model actually fitted, not GBM_PARAMS alone: a stand-in (a test's smaller
    # model) gets a key of its own, so it never takes, nor leaves behind, the real model's fit
    params = {name: model.get_params()[name] for name in GBM_PARAMS}
    key = gbm_key(records, weight_power, X, y, params)
    saved = None if config.RETRAIN else saved_gbm_path(key)
    if saved is not None:
        return TreeModel.load(saved)
    model.fit(X, y, sample_weight=sample_weights(y, weight_power))
    spec = export_trees(model, FEATURES, fitted_on=sorted(int(r) for r in records), weight_power=float(weight_power),
                        params=params, key=key)
    path = saved_gbm_path(key, write=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.gz")  # own name: folds may fit in parallel
    write_spec(spec, tmp).replace(path)
    return TreeModel(spec)


def predict_proba(model, features) -> np.ndarray:
    """Return class probabilities (n, 5) in CLASSES order (Q, never learned, gets 0)."""
    X = features[FEATURES].to_numpy() if isinstance(features, pd.DataFrame) else np.asarray(features)
    probs = model.predict_proba(X)
    out = np.zeros((len(X), len(CLASSES)))
    for j, c in enumerate(model.classes_):
        out[:, CLASSES.index(c)] = probs[:, j]
    return out


def fit_predict(kind, weight_power=GBM_WEIGHT_POWER):
    """Return a fit_predict(train_records, held_out_records) for ekg.cv.out_of_fold."""
    def run(train, held):
        return predict_proba(fit_model(kind, train, weight_power), load_features(held))
    return run
