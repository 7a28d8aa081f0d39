"""Cross-validation by patient over DS1: the folds, out-of-fold predictions, their EC57 scores
with patient-bootstrap intervals, and per-class decision thresholds chosen on them.

Every model choice (inputs, architecture, epochs, class weights, thresholds) is made on pooled
out-of-fold predictions over all 22 DS1 patients; DS2 is never opened here (the scorers refuse it).

Imports: config, data, metrics and models (the decision rule, models.decide), NumPy and pandas;
training and the notebooks use it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import config
from .data import CLASSES, DS1, DS2, FAST_RECORDS, load_beats
from .metrics import bootstrap_by_record, score
from .models import decide

#: The folds: DS1's 22 patients (records) in five groups, each record in exactly one.
#: Made by balanced_folds(class_counts(load_beats(DS1)), 5) (a test checks it still is), whose rule
#: spreads the class-rich patients: each fold holds one of the five S-richest records (209, 201,
#: 207, 118, 220) and one of the five V-richest (208, 106, 223, 119, 203); 208 (373 of DS1's 415 F
#: beats) is alone with its F, and the other F beats (223, 205, 124, 114) sit in three other folds.
#: Beats per fold, N/S/V/F: 10192/101/993/373, 10875/384/668/2, 7428/152/744/10, 8225/131/713/13,
#: 9146/176/670/17.
DS1_FOLDS = (
    (101, 112, 208, 220, 230),
    (106, 109, 115, 116, 209),
    (114, 124, 203, 207),
    (119, 122, 201, 205),
    (108, 118, 215, 223),
)
N_FOLDS = len(DS1_FOLDS)
#: The probability columns of a classified-beats table, in CLASSES order.
PROB_COLUMNS = [f"p_{c}" for c in CLASSES]


def class_counts(beats) -> pd.DataFrame:
    """Return beats per record (rows) and AAMI class N, S, V, F (columns) of a beat table."""
    return (pd.crosstab(beats["record"], beats["aami"].astype(str))
            .reindex(columns=CLASSES[:4], fill_value=0).astype(int))


def balanced_folds(counts, n_folds=5) -> list[list[int]]:
    """Return n_folds sorted lists of records that spread each class's beats across the folds.

    counts: beats per record and class (class_counts). The rule: every record is described by the
    share of each class's beats (N, S, V, F) it holds. Records are placed one at a time, the one
    with the largest share of S, V or F first, each into the fold (fold sizes differ by at most
    one, larger folds first) where it adds least to the cost, the sum over folds and classes of the
    squared share a fold holds; then two records in different folds are swapped as long as a
    swap lowers the cost. Deterministic: ties go to the lower fold and the lower record.
    """
    counts = counts.sort_index()
    share = (counts / counts.sum().replace(0, 1)).to_numpy(float)
    records = [int(r) for r in counts.index]
    n = len(records)
    if not 2 <= n_folds <= n:
        raise ValueError(f"need 2 to {n} folds for {n} records, not {n_folds}")
    sizes = [n // n_folds + (f < n % n_folds) for f in range(n_folds)]
    order = sorted(range(n), key=lambda i: (-share[i, 1:].max(), records[i]))
    members: list[list[int]] = [[] for _ in range(n_folds)]
    load = np.zeros((n_folds, share.shape[1]))
    for i in order:
        cost = [((load[f] + share[i]) ** 2).sum() - (load[f] ** 2).sum() if len(members[f]) < sizes[f]
                else np.inf for f in range(n_folds)]
        f = int(np.argmin(cost))
        members[f].append(i)
        load[f] += share[i]

    def total(ms):
        return sum((share[m].sum(0) ** 2).sum() for m in ms)

    best, improved = total(members), True
    while improved:  # first-improvement pairwise swaps; the cost falls each time, so this ends
        improved = False
        for a in range(n_folds):
            for b in range(a + 1, n_folds):
                for i in range(len(members[a])):
                    for j in range(len(members[b])):
                        trial = [list(m) for m in members]
                        trial[a][i], trial[b][j] = trial[b][j], trial[a][i]
                        cost = total(trial)
                        if cost < best - 1e-12:
                            members, best, improved = trial, cost, True
    return [sorted(records[i] for i in m) for m in members]


def cv_records() -> list[int]:
    """Return the records cross-validation runs over: all of DS1, or in fast mode its FAST_RECORDS."""
    return [r for r in DS1 if r in FAST_RECORDS] if config.FAST else list(DS1)


def fold_assignments(records=None) -> pd.Series:
    """Return each record's fold (0 .. N_FOLDS-1) as a Series indexed by record (default: all DS1).

    Raises ValueError for a record outside DS1 (DS2 never enters cross-validation).
    """
    fold_of = {r: f for f, members in enumerate(DS1_FOLDS) for r in members}
    records = list(DS1) if records is None else [int(r) for r in records]
    outside = sorted(set(records) - set(fold_of))
    if outside:
        raise ValueError(f"records {outside} are not DS1 records: cross-validation uses DS1 only"
                         + (" (DS2 is scored once per final candidate)" if set(outside) & set(DS2) else ""))
    return pd.Series({r: fold_of[r] for r in records}, name="fold").rename_axis("record")


def folds(records=None) -> list[tuple[int, list[int], list[int]]]:
    """Return [(fold, training records, held-out records)] over the given DS1 records (default cv_records()).

    Folds with no held-out record among the given ones are skipped (fast mode runs three
    one-record folds); at least two folds must remain.
    """
    assigned = fold_assignments(cv_records() if records is None else records)
    out = []
    for f in range(N_FOLDS):
        held = sorted(int(r) for r in assigned.index[assigned == f])
        if held:
            out.append((f, sorted(int(r) for r in assigned.index[assigned != f]), held))
    if len(out) < 2:
        raise ValueError(f"records {sorted(assigned.index)} fall in fewer than two folds: nothing to cross-validate")
    return out


def classified_frame(beats, probs, thresholds=None, fold=None) -> pd.DataFrame:
    """Return a classified-beats table (for score/oof_score) from beat-table rows and class probabilities.

    beats: rows of load_beats (record, sample, symbol, aami); probs: (n, 5) in CLASSES order.
    Columns: record, sample, symbol, aami_true, aami_pred, p_N .. p_Q and, if given, fold.
    aami_pred is apply_thresholds(probs, thresholds) (argmax when thresholds is empty).
    """
    probs = np.asarray(probs, dtype=float)
    if probs.shape != (len(beats), len(CLASSES)):
        raise ValueError(f"probs has shape {probs.shape}; expected ({len(beats)}, {len(CLASSES)})")
    out = pd.DataFrame({"record": np.asarray(beats["record"]).astype(int), "sample": np.asarray(beats["sample"]),
                        "symbol": np.asarray(beats["symbol"]),
                        "aami_true": np.asarray(beats["aami"]).astype(str),
                        "aami_pred": np.asarray(CLASSES)[apply_thresholds(probs, thresholds)]})
    for i, c in enumerate(CLASSES):
        out[f"p_{c}"] = probs[:, i]
    if fold is not None:
        out["fold"] = fold
    return out


def out_of_fold(fit_predict, records=None, progress=False, workers=1) -> pd.DataFrame:
    """Run fit_predict over the folds and return the pooled out-of-fold classified-beats table.

    fit_predict(train_records, held_out_records) trains on the first list only and returns
    class probabilities (n, 5) for load_beats(held_out_records), rows in that order.
    Returns classified_frame(...) of every held-out beat with its fold, records in fold order.
    workers > 1 fits the folds in that many processes (joblib's loky workers, each held to
    one thread): for models whose own threads hardly help, as the feature baseline's GBM
    (one DS1 fold: 52.9 s on one thread, 47.7 s on two, the same probabilities). fit_predict
    must then pickle (a module-level function or a closure over picklable values); the table
    is the same. progress is ignored there.
    """
    from .config import progress_bar as tqdm

    runs = list(folds(records))
    if workers > 1 and len(runs) > 1:
        from joblib import Parallel, delayed

        # loky limits each worker's OpenMP and BLAS threads to cores // workers (one on two cores)
        probs = Parallel(n_jobs=min(workers, len(runs)))(delayed(fit_predict)(train, held) for _, train, held in runs)
    else:
        probs = [fit_predict(train, held) for _, train, held in tqdm(runs, desc="folds", disable=not progress)]
    parts = [classified_frame(load_beats(held), p, fold=f) for (f, _, held), p in zip(runs, probs)]
    return pd.concat(parts, ignore_index=True)


def _check_ds1(oof) -> None:
    if not {"record", "aami_true", "aami_pred"} <= set(oof.columns):
        raise ValueError("an out-of-fold table needs the columns record, aami_true and aami_pred")
    ds2 = sorted(set(oof["record"].astype(int)) & set(DS2))
    if ds2:
        raise ValueError(f"DS2 records {ds2} in an out-of-fold table: choices are made on DS1 only")


def oof_score(oof, n_boot=1000, seed=0) -> dict:
    """Return score(oof) (EC57 gross and per-record statistics, per-class table, macro-F1) plus
    "intervals": 95% patient-bootstrap intervals (bootstrap_by_record) of the gross statistics
    and per-class F1. oof: pooled out-of-fold predictions of DS1 records (DS2 raises ValueError)."""
    _check_ds1(oof)
    out = score(oof)
    out["intervals"] = bootstrap_by_record(oof, n_boot=n_boot, seed=seed)
    return out


#: The statistics of summary tables: EC57 gross (S, V) and per-class (F) numbers, and macro-F1.
SUMMARY_STATS = ["SVEB Se", "SVEB +P", "F1 S", "VEB Se", "VEB +P", "F1 V", "F Se", "F +P", "macro-F1"]


def summary_row(result) -> dict:
    """Return {statistic: value} for SUMMARY_STATS from a score() or oof_score() result, and where
    the result has "intervals" also {statistic + " CI": "low-high"} (percent, one decimal)."""
    classes, gross = result["classes"], result["gross"]
    row = {"SVEB Se": gross["SVEB Se"], "SVEB +P": gross["SVEB +P"], "F1 S": classes.loc["S", "F1"],
           "VEB Se": gross["VEB Se"], "VEB +P": gross["VEB +P"], "F1 V": classes.loc["V", "F1"],
           "F Se": classes.loc["F", "Se"], "F +P": classes.loc["F", "+P"], "macro-F1": result["macro_f1"]}
    ci = result.get("intervals")
    if ci is not None:
        for name in ["SVEB Se", "SVEB +P", "F1 S", "VEB Se", "VEB +P", "F1 V", "macro-F1"]:
            row[f"{name} CI"] = f"{100 * ci.loc[name, 'low']:.1f}-{100 * ci.loc[name, 'high']:.1f}"
    return row


def summary_table(results) -> pd.DataFrame:
    """Return one row per model (results: {name: score or oof_score result}); values in percent."""
    table = pd.DataFrame({name: summary_row(r) for name, r in results.items()}).T
    numeric = [c for c in table.columns if not c.endswith(" CI")]
    table[numeric] = (100 * table[numeric].astype(float)).round(1)
    return table


def apply_thresholds(probs, thresholds=None) -> np.ndarray:
    """Return class indices (CLASSES order) for probabilities (n, 5) under per-class thresholds.

    thresholds: {class: t}, e.g. {"S": 0.3}: the rule of models.decide (which classify_record and
    the monitor apply with the thresholds stored in a model's metadata), here for out-of-fold
    probabilities that have no model file yet. Without thresholds this is the plain argmax.
    """
    return decide(probs, {"thresholds": thresholds})


#: Thresholds tried by pick_thresholds: fine steps near 0, where a model that rarely calls a class
#: for a new patient puts its best threshold (the feature baseline's S threshold is 0.02).
THRESHOLD_GRID = np.round(np.r_[np.arange(0.005, 0.02, 0.005), np.arange(0.02, 0.99, 0.01)], 3)


def _f1(y_true, y_pred, k) -> float:
    tp = np.sum((y_true == k) & (y_pred == k))
    denominator = np.sum(y_true == k) + np.sum(y_pred == k)
    return 2 * tp / denominator if denominator else 0.0


def pick_thresholds(oof, classes=("S",), grid=THRESHOLD_GRID) -> dict:
    """Return {class: threshold} maximising each class's F1 on pooled out-of-fold predictions.

    oof: an out-of-fold table with aami_true and p_N .. p_Q (DS2 raises ValueError). Classes
    are set one after another in the given order, each with the thresholds already set applied
    (apply_thresholds). Ties go to the lowest threshold. Plain floats, to store in a model's
    metadata (meta["thresholds"]) and apply with apply_thresholds.
    """
    _check_ds1(oof)
    beats = oof[oof["aami_true"].isin(CLASSES)]
    y_true = beats["aami_true"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    probs = beats[PROB_COLUMNS].to_numpy(float)
    chosen: dict = {}
    for c in classes:
        k = CLASSES.index(c)
        f1 = [_f1(y_true, apply_thresholds(probs, {**chosen, c: t}), k) for t in grid]
        chosen[c] = float(grid[int(np.argmax(f1))])
    return chosen


def threshold_effect(oof, thresholds) -> pd.DataFrame:
    """Return per-class Se, +P and F1 of an out-of-fold table with argmax and with the thresholds
    (rows: classes; columns: (rule, statistic)), to show what a threshold bought."""
    _check_ds1(oof)
    probs = oof[PROB_COLUMNS].to_numpy(float)
    tables = {}
    for rule, th in [("argmax", None), ("thresholds", thresholds)]:
        frame = oof.assign(aami_pred=np.asarray(CLASSES)[apply_thresholds(probs, th)])
        tables[rule] = score(frame)["classes"][["Se", "+P", "F1"]]
    return pd.concat(tables, axis=1)
