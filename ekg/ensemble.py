"""Combining the signal CNN with the feature baseline's gradient-boosted model (ekg.baseline).

Out of fold over the DS1 patients the CNN is the better S classifier and the GBM the better V
classifier (issue 10: a CNN that cannot beat the feature model on V has not earned its place).
Here the two are combined by a weighted average of their class probabilities, with one weight
per class (the GBM's share; classes given no weight keep the CNN's probability), the rows
renormalised to sum to 1, and per-class decision thresholds (models.decide's rule) on top.
"V from the blend, S from the CNN" is the weights {"V": w}; "S from the CNN, the rest from the
GBM" is {"N": 1, "V": 1, "F": 1, "Q": 1}. Weights and thresholds are chosen
on pooled out-of-fold predictions over the DS1 patients only (choose_blend; DS2 raises), and
nested_out_of_fold shows how much choosing on the same predictions flatters.

Also the feature baseline as another recorder gives the signal (features.RECORDERS, e.g. via128):
recorder_features, and the GBM's out-of-fold predictions at several recorders from one fit per
fold (gbm_out_of_fold), for the robustness check at 128 Hz.
Imports: baseline, blend (blend_probs, the one blending rule, shared with the live path; FeatureBlend in
fitted_blend), cv, data, features, trees; NumPy and pandas (tqdm inside).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from . import baseline, cv
from .blend import blend_probs
from .data import CLASSES, DS2, FS, _records_arg, load_beats
from .features import RECORDERS, recorder_signal

#: GBM shares tried for each weighted class (0: the CNN alone, 1: the GBM alone).
WEIGHT_GRID = np.round(np.arange(0.0, 1.0 + 1e-9, 0.1), 2)
#: The families of blends choose_blend searches: one weight for every class; a weight for V alone
#: (S, N, F and Q keep the CNN's probabilities: "V from the blend, S from the CNN"); a weight for
#: S and one for V (N, F, Q the CNN's: the GBM almost never calls F); a weight for S and one for
#: every other class. "all" searches the four, in that order.
FAMILIES = ("one weight", "V", "S and V", "S and rest")
#: The family to choose within, chosen on DS1 out of fold with the choice held out by fold
#: (nested_out_of_fold, benchmarks/ensemble_oof.py): "V" kept the CNN's S (S F1 0.560 against the
#: CNN's 0.562, both nested) and lifted V F1 from 0.673 to 0.800 (the GBM alone: 0.810); "all"
#: reached V F1 0.813 but its S share, free, cost S F1 (0.515). Pooled, both pick {"V": 1.0}.
BLEND_FAMILY = "V"
#: Columns two out-of-fold tables must agree on, row by row, to be blended.
KEY_COLUMNS = ["record", "sample", "aami_true"]


def check_aligned(cnn_table, gbm_table) -> None:
    """Raise ValueError unless two classified-beats tables hold the same beats (record, sample,
    true class) in the same row order, so their probabilities can be blended row by row."""
    missing = [c for c in KEY_COLUMNS + cv.PROB_COLUMNS if c not in cnn_table or c not in gbm_table]
    if missing:
        raise ValueError(f"both tables need the columns {KEY_COLUMNS + cv.PROB_COLUMNS}; missing {missing}")
    if len(cnn_table) != len(gbm_table):
        raise ValueError(f"the tables hold {len(cnn_table)} and {len(gbm_table)} beats: not the same beats")
    for c in KEY_COLUMNS:
        a, b = np.asarray(cnn_table[c]).astype(str), np.asarray(gbm_table[c]).astype(str)
        if not np.array_equal(a, b):
            row = int(np.flatnonzero(a != b)[0])
            raise ValueError(f"the tables differ in {c!r} first at row {row} ({a[row]} against {b[row]}): "
                             "not the same beats in the same order")


def blend_frame(cnn_table, gbm_table, weights, thresholds=None) -> pd.DataFrame:
    """Return a classified-beats table of the blend: cnn_table's beat columns (and fold, if it has
    one), blend_probs of the two tables' p_N .. p_Q, and aami_pred under the thresholds
    (cv.apply_thresholds; argmax without). The tables must hold the same beats (check_aligned)."""
    check_aligned(cnn_table, gbm_table)
    probs = blend_probs(cnn_table[cv.PROB_COLUMNS].to_numpy(float), gbm_table[cv.PROB_COLUMNS].to_numpy(float),
                        weights)
    out = cnn_table.drop(columns=[c for c in cnn_table.columns if c.startswith("p_")] + ["aami_pred"]).copy()
    out["aami_pred"] = np.asarray(CLASSES)[cv.apply_thresholds(probs, thresholds)]
    for i, c in enumerate(CLASSES):
        out[f"p_{c}"] = probs[:, i]
    return out


def class_f1(table, classes=("S", "V")) -> dict:
    """Return {class: F1} of a classified-beats table (every beat counted, as pick_thresholds does)."""
    y_true, y_pred = np.asarray(table["aami_true"]).astype(str), np.asarray(table["aami_pred"]).astype(str)
    return {c: float(cv._f1(y_true, y_pred, c)) for c in classes}


def candidate_weights(family, grid=WEIGHT_GRID) -> list:
    """Return [(family, weights)] that choose_blend tries for a family of FAMILIES or "all" (every
    family, in FAMILIES order), in the order tried."""
    if family == "all":
        return [c for f in FAMILIES for c in candidate_weights(f, grid)]
    if family == "one weight":
        return [(family, float(w)) for w in grid]
    if family == "V":
        return [(family, {"V": float(v)}) for v in grid]
    if family == "S and V":
        return [(family, {"S": float(s), "V": float(v)}) for s in grid for v in grid]
    if family == "S and rest":
        return [(family, {"S": float(s), **{c: float(r) for c in CLASSES if c != "S"}}) for s in grid for r in grid]
    raise ValueError(f"unknown blend family {family!r}; choose one of {FAMILIES} or 'all'")


def choose_blend(cnn_oof, gbm_oof, family=BLEND_FAMILY, grid=WEIGHT_GRID, threshold_grid=cv.THRESHOLD_GRID) -> dict:
    """Choose blend weights and S and V thresholds on pooled out-of-fold predictions (DS1 only).

    For each candidate_weights(family, grid) (a family of FAMILIES, or "all"): blend the two
    tables (blend_frame), choose the S then the V threshold that maximise each class's F1
    (cv.pick_thresholds, as the CNN's own were chosen), and score S F1 + V F1. The best sum wins;
    ties go to the first tried (smaller GBM shares first: the CNN alone unless the GBM adds
    something). Returns {"family" (the winner's), "weights", "thresholds", "f1": {"S", "V"},
    "table": every candidate's family, weights, thresholds and F1 as a DataFrame}.
    DS2 records raise ValueError (cv.pick_thresholds).
    """
    check_aligned(cnn_oof, gbm_oof)
    rows = []
    for kind, weights in candidate_weights(family, grid):
        plain = blend_frame(cnn_oof, gbm_oof, weights)
        thresholds = cv.pick_thresholds(plain, ("S", "V"), threshold_grid)
        probs = plain[cv.PROB_COLUMNS].to_numpy(float)
        f1 = class_f1(plain.assign(aami_pred=np.asarray(CLASSES)[cv.apply_thresholds(probs, thresholds)]))
        rows.append({"family": kind, "weights": weights, "thresholds": thresholds, "F1 S": f1["S"], "F1 V": f1["V"],
                     "F1 S + F1 V": f1["S"] + f1["V"]})
    table = pd.DataFrame(rows)
    best = table.iloc[int(np.argmax(table["F1 S + F1 V"].to_numpy()))]  # argmax: the first of ties
    return {"family": best["family"], "weights": best["weights"], "thresholds": best["thresholds"],
            "f1": {"S": float(best["F1 S"]), "V": float(best["F1 V"])}, "table": table}


def nested_out_of_fold(cnn_oof, gbm_oof, family=BLEND_FAMILY, grid=WEIGHT_GRID,
                       threshold_grid=cv.THRESHOLD_GRID) -> pd.DataFrame:
    """Return the blend's out-of-fold table with the choice itself held out: for each fold, weights
    and thresholds are chosen (choose_blend) on the other folds' out-of-fold predictions and
    applied to this fold's. The pooled result is an honest estimate of the whole procedure
    (choose_blend's own score is chosen on the beats it is scored on, so it flatters).
    Adds the columns "family", "weights" and "thresholds" (as text) each fold received."""
    check_aligned(cnn_oof, gbm_oof)
    if "fold" not in cnn_oof:
        raise ValueError("nested_out_of_fold needs the fold column of an out-of-fold table")
    parts = []
    for f in sorted(pd.unique(cnn_oof["fold"])):
        inner = (cnn_oof["fold"] != f).to_numpy()
        chosen = choose_blend(cnn_oof[inner].reset_index(drop=True), gbm_oof[inner].reset_index(drop=True),
                              family, grid, threshold_grid)
        held = blend_frame(cnn_oof[~inner].reset_index(drop=True), gbm_oof[~inner].reset_index(drop=True),
                           chosen["weights"], chosen["thresholds"])
        parts.append(held.assign(family=chosen["family"], weights=str(chosen["weights"]),
                                 thresholds=str(chosen["thresholds"])))
    return pd.concat(parts, ignore_index=True)


def recorder_beat_features(signal, samples, recorder) -> pd.DataFrame:
    """Return baseline.FEATURES of the beats at samples of a 360-Hz signal (mV) as a recorder
    (features.RECORDERS) would give it: the signal through features.recorder_signal (its rate and
    back to 360 Hz), the R peaks moved to that rate's grid, then baseline.beat_features."""
    if recorder not in RECORDERS:
        raise ValueError(f"recorder must be one of {list(RECORDERS)}, not {recorder!r}")
    x, moved = recorder_signal(signal, samples, recorder)
    return baseline.beat_features(x, moved, FS)


@lru_cache(maxsize=None)
def _recorder_record_features(record: int, recorder: str) -> pd.DataFrame:
    def compute(signal, samples, fs):
        if fs != FS:
            raise ValueError(f"record {record} is sampled at {fs} Hz; recorder versions start from {FS} Hz")
        return recorder_beat_features(signal, samples, recorder)
    return baseline.cached_record_features(record, compute, recorder)


def recorder_features(records=None, recorder="native") -> pd.DataFrame:
    """Return baseline.FEATURES of the reference beats of records as a recorder would give the
    signal (features.RECORDERS: e.g. "via128", the record brought to 128 Hz and back to 360 Hz
    by features.recorder_signal, each R peak moved to the 128-Hz grid), rows as in load_beats.
    "native" is baseline.load_features. Cached on disk like it."""
    if recorder not in RECORDERS:
        raise ValueError(f"recorder must be one of {list(RECORDERS)}, not {recorder!r}")
    if recorder == "native":
        return baseline.load_features(records)
    return pd.concat([_recorder_record_features(r, recorder) for r in _records_arg(records)], ignore_index=True)


def gbm_out_of_fold(records=None, recorders=("native", "via128"), weight_power=baseline.GBM_WEIGHT_POWER,
                    progress=False) -> dict:
    """Return {recorder: out-of-fold classified-beats table} of the feature baseline's GBM.

    Per fold (cv.folds(records)) one GBM is fitted on the training patients' native features
    (baseline.fit_model, as baseline.fit_predict("gbm") does) and predicts the held-out patients'
    features at every recorder (recorder_features), so the tables differ only in the signal the
    features came from. Argmax calls (aami_pred); rows as cv.out_of_fold's.
    """
    from .config import progress_bar as tqdm

    parts: dict = {r: [] for r in recorders}
    for f, train, held in tqdm(cv.folds(records), desc="GBM folds", disable=not progress):
        model = baseline.fit_model("gbm", train, weight_power)
        beats = load_beats(held)
        for r in recorders:
            probs = baseline.predict_proba(model, recorder_features(held, r))
            parts[r].append(cv.classified_frame(beats, probs, fold=f))
    return {r: pd.concat(p, ignore_index=True) for r, p in parts.items()}


def fitted_blend(train_records, weights, thresholds, model=None, gbm=None, **info):
    """Return a blend.FeatureBlend: the feature baseline's GBM fitted on the reference beats of
    train_records (baseline.fit_model("gbm", ...), which saves the fit and reuses it), with the
    blend's weights and decision thresholds (choose_blend's) and the CNN they go with (model, for
    its fingerprint). DS2 records raise. gbm: that GBM already in hand (notebook 04 has it from its
    DS2 table): fit_model's tree model of train_records with the baseline's settings, else ValueError."""
    from .blend import FeatureBlend

    train_records = sorted(int(r) for r in train_records)
    if set(train_records) & set(DS2):
        raise ValueError(f"the blend's GBM is fitted on DS1 patients only, not on DS2 {sorted(set(train_records) & set(DS2))}")
    if gbm is None:
        gbm = baseline.fit_model("gbm", train_records)
    spec = getattr(gbm, "spec", {})
    if spec.get("fitted_on") != train_records or spec.get("params") != baseline.GBM_PARAMS \
            or spec.get("weight_power") != float(baseline.GBM_WEIGHT_POWER) or spec.get("features") != baseline.FEATURES:
        raise ValueError("gbm must be baseline.fit_model('gbm', train_records): its records, settings or features "
                         "differ from the feature baseline's")
    return FeatureBlend.from_spec(dict(spec), weights, thresholds, model, **info)
