"""Cross-validation by patient: the folds, out-of-fold scoring, and decision thresholds."""
import numpy as np
import pandas as pd
import pytest

from ekg import cv
from ekg.data import CLASSES, DS1, DS2, load_beats


def test_folds_cover_ds1_exactly_once_and_no_ds2():
    listed = [r for fold in cv.DS1_FOLDS for r in fold]
    assert len(listed) == len(set(listed)) == len(DS1)
    assert set(listed) == set(DS1)
    assert not set(listed) & set(DS2)
    assert len(cv.DS1_FOLDS) in (5, 6)
    assignment = cv.fold_assignments()
    assert sorted(assignment.index) == sorted(DS1)
    for f, train, held in cv.folds(DS1):
        assert not set(train) & set(held)  # a held-out patient never trains its own fold
        assert sorted(train + held) == sorted(DS1)
        assert set(held) == set(cv.DS1_FOLDS[f])


def test_ds2_records_are_refused():
    with pytest.raises(ValueError, match="DS2"):
        cv.fold_assignments([101, DS2[0]])
    oof = pd.DataFrame({"record": [DS2[0]] * 3, "aami_true": ["N", "S", "V"], "aami_pred": ["N", "S", "V"]})
    with pytest.raises(ValueError, match="DS2"):
        cv.oof_score(oof, n_boot=10)


def test_folds_in_fast_mode_keep_records_in_their_folds(monkeypatch):
    monkeypatch.setattr(cv.config, "FAST", True)
    records = cv.cv_records()
    assert records and set(records) <= set(DS1)
    found = cv.folds()
    assert len(found) >= 2
    assert sorted(r for _, _, held in found for r in held) == sorted(records)
    with pytest.raises(ValueError, match="fewer than two folds"):
        cv.folds([cv.DS1_FOLDS[0][0]])


def test_ds1_folds_follow_the_documented_rule():
    counts = cv.class_counts(load_beats(DS1))
    assert [tuple(f) for f in cv.balanced_folds(counts, len(cv.DS1_FOLDS))] == list(cv.DS1_FOLDS)
    fold = cv.fold_assignments()
    for cls in ["S", "V"]:  # the five richest patients of each ectopic class sit in five different folds
        richest = counts[cls].sort_values(ascending=False).index[:len(cv.DS1_FOLDS)]
        assert fold[richest].nunique() == len(cv.DS1_FOLDS), cls


def test_balanced_folds_spread_rich_records():
    # four records rich in S, four in V, four plain ones: four folds get one of each
    counts = pd.DataFrame({"N": [1000] * 12, "S": [100] * 4 + [0] * 8, "V": [0] * 4 + [100] * 4 + [0] * 4,
                           "F": [0] * 12}, index=range(1, 13))
    found = cv.balanced_folds(counts, 4)
    assert sorted(r for f in found for r in f) == list(range(1, 13))
    for f in found:
        assert len(f) == 3
        assert sum(r <= 4 for r in f) == 1 and sum(5 <= r <= 8 for r in f) == 1


def synthetic_oof(records=(101, 106)):
    """A classified-beats table where S beats have p_S 0.3 and N beats 0.1: argmax calls no S."""
    rows = []
    for r in records:
        for cls, n, p in [("N", 90, [0.85, 0.1, 0.05, 0, 0]), ("S", 10, [0.6, 0.3, 0.1, 0, 0]),
                          ("V", 10, [0.1, 0.05, 0.85, 0, 0])]:
            rows += [{"record": r, "aami_true": cls, **{f"p_{c}": v for c, v in zip(CLASSES, p)}}] * n
    oof = pd.DataFrame(rows)
    oof["aami_pred"] = np.asarray(CLASSES)[oof[cv.PROB_COLUMNS].to_numpy().argmax(1)]
    return oof


def test_oof_score_adds_patient_bootstrap_intervals():
    oof = synthetic_oof()
    result = cv.oof_score(oof, n_boot=50)
    assert result["gross"]["SVEB Se"] == 0 and result["gross"]["VEB Se"] == 1
    assert result["intervals"].loc["VEB Se", "low"] == result["intervals"].loc["VEB Se", "high"] == 1
    row = cv.summary_row(result)
    assert row["VEB Se"] == 1 and row["SVEB Se"] == 0 and row["VEB Se CI"] == "100.0-100.0"


def test_apply_thresholds_rule():
    probs = np.array([[0.60, 0.35, 0.05, 0, 0],   # S passes 0.3: S
                      [0.20, 0.45, 0.35, 0, 0],   # S below 0.5: the best other class, V (not S, not argmax)
                      [0.50, 0.20, 0.30, 0, 0]])  # nothing passes: argmax of the rest, N
    assert list(cv.apply_thresholds(probs)) == [0, 1, 0]
    assert list(cv.apply_thresholds(probs, {"S": 0.3})) == [1, 1, 0]
    assert list(cv.apply_thresholds(probs, {"S": 0.5})) == [0, 2, 0]
    # two thresholded classes passing: the larger p / t wins
    assert list(cv.apply_thresholds(probs[:1], {"S": 0.3, "N": 0.55})) == [1]
    with pytest.raises(ValueError):
        cv.apply_thresholds(probs, {"X": 0.5})
    with pytest.raises(ValueError):
        cv.apply_thresholds(probs, {"S": 0})


def test_pick_thresholds_finds_the_s_threshold_that_maximises_s_f1():
    oof = synthetic_oof()
    picked = cv.pick_thresholds(oof, ("S",))
    assert set(picked) == {"S"} and isinstance(picked["S"], float)
    assert 0.1 < picked["S"] <= 0.3  # between the N beats' p_S and the S beats' p_S
    pred = cv.apply_thresholds(oof[cv.PROB_COLUMNS].to_numpy(), picked)
    assert (pred[oof["aami_true"] == "S"] == 1).all() and not (pred[oof["aami_true"] != "S"] == 1).any()
    effect = cv.threshold_effect(oof, picked)
    assert effect.loc["S", ("argmax", "F1")] == 0 and effect.loc["S", ("thresholds", "F1")] == 1
    with pytest.raises(ValueError, match="DS2"):
        cv.pick_thresholds(synthetic_oof(records=(DS2[0],)))


def test_out_of_fold_never_trains_on_the_held_out_patients(monkeypatch):
    monkeypatch.setattr(cv.config, "FAST", True)
    seen = []

    def fit_predict(train, held):
        seen.append((set(train), set(held)))
        n = len(load_beats(held))
        return np.tile([1.0, 0, 0, 0, 0], (n, 1))

    oof = cv.out_of_fold(fit_predict)
    assert all(not train & held for train, held in seen)
    assert sorted(oof["record"].unique()) == sorted(cv.cv_records())
    assert (oof["aami_pred"] == "N").all() and set(oof["fold"]) == {cv.fold_assignments()[r] for r in cv.cv_records()}


def test_out_of_fold_in_processes_gives_the_same_table(monkeypatch):
    # the folds fitted in two processes: each fold's probabilities on its own held-out beats, in fold order
    monkeypatch.setattr(cv.config, "FAST", True)

    def fit_predict(train, held):
        n = len(load_beats(held))
        row = np.array([1.0 + sum(held) % 7, len(train), 1.0, 0.5, 0.25])
        return np.tile(row / row.sum(), (n, 1))

    serial = cv.out_of_fold(fit_predict)
    assert serial["p_N"].nunique() > 1  # the folds' probabilities differ: a mix-up would show
    pd.testing.assert_frame_equal(cv.out_of_fold(fit_predict, workers=2), serial)
