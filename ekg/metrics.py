"""Scores: per-class Se, +P, specificity and F1; the EC57 statistics as WFDB's bxb computes them;
confidence intervals by resampling patients.

Imports: data (the class list), NumPy, pandas, scikit-learn.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .data import CLASSES


def macro_f1(y_true, y_pred) -> float:
    """Return the mean F1 over N, S, V, F (Q is too rare in DS1 to score), classes as integers."""
    from sklearn.metrics import f1_score

    if len(y_true) == 0:  # no matched beat: every class scores 0, as zero_division=0 counts an absent one
        return 0.0
    return float(f1_score(y_true, y_pred, labels=[0, 1, 2, 3], average="macro", zero_division=0))


def per_class_scores(y_true, y_pred) -> pd.DataFrame:
    """Return per-class Se (recall), +P (precision), specificity, F1 and support, rows in CLASSES order."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(CLASSES)))
    if len(y_true) == 0:  # no matched beat (scikit-learn refuses an empty sample)
        return pd.DataFrame({"Se": 0.0, "+P": 0.0, "Sp": 0.0, "F1": 0.0, "beats": 0}, index=CLASSES)
    p, r, f, n = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    tn = cm.sum() - cm.sum(0) - cm.sum(1) + np.diag(cm)
    spec = tn / np.maximum(tn + cm.sum(0) - np.diag(cm), 1)
    return pd.DataFrame({"Se": r, "+P": p, "Sp": spec, "F1": f, "beats": n}, index=CLASSES)


#: Row/column labels of an EC57 comparison: the five classes, and O for "no beat on this side"
#: (a reference beat the detector missed, or a detection with no reference beat).
EC57_LABELS = CLASSES + ["O"]


def ec57_confusion(beats_df) -> pd.DataFrame:
    """Return the 6x6 reference-by-prediction count table (N, S, V, F, Q, O) of a classified-beats table.

    Rows whose aami_true is "*" (detections inside reference-marked ventricular
    flutter or fibrillation) are not counted, as bxb does not count them. A label that is
    none of these (nor None, counted as O) raises ValueError.
    """
    counted = beats_df[beats_df["aami_true"] != "*"]
    true = counted["aami_true"].astype(object).fillna("O")
    pred = counted["aami_pred"].astype(object).fillna("O")
    unknown = sorted(map(str, (set(true) | set(pred)) - set(EC57_LABELS)))
    if unknown:
        raise ValueError(f"labels {unknown} are none of {EC57_LABELS} (or '*' for a detection inside "
                         f"reference-marked ventricular flutter)")
    codes = {c: i for i, c in enumerate(EC57_LABELS)}
    counts = np.zeros((len(EC57_LABELS), len(EC57_LABELS)), dtype=np.int64)
    np.add.at(counts, (true.map(codes).to_numpy(), pred.map(codes).to_numpy()), 1)
    return pd.DataFrame(counts, index=EC57_LABELS, columns=EC57_LABELS)


def _ec57_from_counts(m) -> dict:
    """EC57 statistics from count tables m[..., 6, 6] (rows reference, columns prediction), as bxb does.

    VEB: a fusion or unknown beat called V is not a false positive. SVEB: an unknown
    beat called S is not a false positive. QRS: O counts missed and extra beats.
    An undefined statistic (no beats in its denominator) is NaN.
    """
    N, S, V, Fu, Q, O = range(6)
    beats = [N, S, V, Fu, Q]
    m = np.asarray(m)

    def ratio(a, b):
        return np.where(b > 0, a / np.maximum(b, 1), np.nan)

    vtp, stp = m[..., V, V], m[..., S, S]
    vfn = m[..., V, :].sum(-1) - vtp
    vfp = m[..., N, V] + m[..., S, V] + m[..., O, V]
    vtn = m[..., [N, S, Fu, Q, O], :][..., [N, S, Fu, Q]].sum((-1, -2))
    sfn = m[..., S, :].sum(-1) - stp
    sfp = m[..., N, S] + m[..., V, S] + m[..., Fu, S] + m[..., O, S]
    qtp = m[..., beats, :][..., beats].sum((-1, -2))
    return {"QRS Se": ratio(qtp, qtp + m[..., beats, O].sum(-1)),
            "QRS +P": ratio(qtp, qtp + m[..., O, beats].sum(-1)),
            "VEB Se": ratio(vtp, vtp + vfn), "VEB +P": ratio(vtp, vtp + vfp), "VEB FPR": ratio(vfp, vtn + vfp),
            "SVEB Se": ratio(stp, stp + sfn), "SVEB +P": ratio(stp, stp + sfp)}


def score(beats_df) -> dict:
    """Return the EC57 statistics of a classified-beats table (from classify_record or a test split).

    beats_df needs aami_true and aami_pred (None or "O" where a side has no beat) and,
    for per-record results, a record column. Returns a dict:
      confusion      6x6 counts, reference rows by predicted columns (N, S, V, F, Q, O)
      classes        per-class Se, +P, specificity, F1 and support over matched beats
      accuracy, macro_f1 (N, S, V, F) over matched beats
      gross          EC57 Series (QRS, VEB and SVEB Se/+P, VEB FPR) from the summed counts
      per_record     the same statistics per record (when there is a record column)
      record_average the mean over records of each per-record statistic (undefined ones skipped)
    e and j count as N (the AAMI class table, de Chazal 2004); bxb's SVEB option counts them as S.
    """
    confusion = ec57_confusion(beats_df)
    matched = beats_df[beats_df["aami_true"].isin(CLASSES) & beats_df["aami_pred"].isin(CLASSES)]
    codes = {c: i for i, c in enumerate(CLASSES)}
    y_true, y_pred = matched["aami_true"].map(codes).to_numpy(), matched["aami_pred"].map(codes).to_numpy()
    out = {"confusion": confusion, "classes": per_class_scores(y_true, y_pred),
           "accuracy": float((y_true == y_pred).mean()) if len(matched) else float("nan"),
           "macro_f1": macro_f1(y_true, y_pred),
           "gross": pd.Series(_ec57_from_counts(confusion.to_numpy()))}
    if "record" in beats_df:
        per_record = {r: _ec57_from_counts(ec57_confusion(g).to_numpy()) for r, g in beats_df.groupby("record")}
        out["per_record"] = pd.DataFrame(per_record).T.astype(float)
        out["record_average"] = out["per_record"].mean()
    return out


def bootstrap_by_record(beats_df, n_boot=1000, seed=0, level=0.95) -> pd.DataFrame:
    """Return percentile confidence intervals of the gross EC57 statistics and per-class F1,
    resampling whole records (patients) with replacement, never single beats."""
    records = sorted(beats_df["record"].unique())
    counts = np.stack([ec57_confusion(beats_df[beats_df["record"] == r]).to_numpy() for r in records])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(records), (n_boot, len(records)))
    totals = counts[draws].sum(1)  # (n_boot, 6, 6)
    stats = _ec57_from_counts(totals)
    block = totals[:, :5, :5]
    tp = np.diagonal(block, axis1=1, axis2=2)
    # F1 = 2 TP / (beats of the class + calls of it); 0 when both are 0 (then TP is 0 too), as
    # scikit-learn's zero_division=0 gives the point estimate (macro_f1), so interval and estimate agree
    f1 = 2 * tp / np.maximum(block.sum(1) + block.sum(2), 1)
    for i, c in enumerate(CLASSES[:4]):
        stats[f"F1 {c}"] = f1[:, i]
    stats["macro-F1"] = f1[:, :4].mean(axis=1)
    alpha = (1 - level) / 2

    def interval(v):  # a statistic undefined in every resample (no S beats at all, say) has none: NaN
        v = np.asarray(v, dtype=float)
        if np.isnan(v).all():
            return {"low": np.nan, "high": np.nan}
        return {"low": np.nanquantile(v, alpha), "high": np.nanquantile(v, 1 - alpha)}

    return pd.DataFrame({name: interval(v) for name, v in stats.items()}).T
