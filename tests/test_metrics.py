"""EC57 statistics as WFDB's bxb computes them, per-class scores, and the bootstrap by patient."""
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, strategies as st

from ekg.data import CLASSES
from ekg.metrics import EC57_LABELS, bootstrap_by_record, ec57_confusion, macro_f1, per_class_scores, score


def table(pairs, record=1):
    true, pred = zip(*pairs)
    return pd.DataFrame({"record": record, "aami_true": list(true), "aami_pred": list(pred)})


def from_counts(counts, record=1):
    """A classified-beats table holding counts[i][j] beats of reference class i called j (O = no beat)."""
    rows = [(t, p) for i, t in enumerate(EC57_LABELS) for j, p in enumerate(EC57_LABELS)
            for _ in range(int(counts[i][j]))]
    frame = table(rows, record)
    return frame.replace({"aami_true": {"O": None}, "aami_pred": {"O": None}})


# A 6x6 reference-by-algorithm table with every cell non-zero and distinct, so that dropping or
# moving any one cell changes at least one statistic. Rows: reference N S V F Q O; columns: the
# algorithm's n s v f q o (O: no beat on that side; the O/O cell means nothing and must be ignored).
COUNTS = [
    # n    s   v   f   q   o
    [500, 11, 13, 2, 3, 17],  # N
    [19, 40, 5, 7, 4, 6],  # S
    [23, 8, 90, 29, 9, 31],  # V
    [37, 12, 41, 30, 14, 10],  # F
    [43, 15, 47, 16, 20, 18],  # Q
    [53, 21, 59, 22, 24, 25],  # O
]


def test_ec57_statistics_of_a_table_with_every_cell_filled():
    # Worked by hand from bxb.c (WFDB), whose matrix has the same layout (its shutdown row and
    # column X are empty here):
    #   QRS  TP = the 5x5 beat block = 529+75+159+134+141 = 1038; FN = No+So+Vo+Fo+Qo = 17+6+31+10+18 = 82;
    #        FP = On+Os+Ov+Of+Oq = 53+21+59+22+24 = 179
    #   VEB  TP = Vv = 90; FN = Vn+Vs+Vf+Vq+Vo = 23+8+29+9+31 = 100; FP = Nv+Sv+Ov = 13+5+59 = 77
    #        (a fusion or unknown beat called V is not a false positive);
    #        TN = N,S,F,Q,O rows x n,s,f,q columns = 516+70+93+94+120 = 893
    #   SVEB TP = Ss = 40; FN = Sn+Sv+Sf+Sq+So = 19+5+7+4+6 = 41; FP = Ns+Vs+Fs+Os = 11+8+12+21 = 52
    #        (an unknown beat called S is not a false positive)
    df = from_counts(COUNTS)
    gross = score(df)["gross"]
    expected = {"QRS Se": 1038 / (1038 + 82), "QRS +P": 1038 / (1038 + 179),
                "VEB Se": 90 / 190, "VEB +P": 90 / 167, "VEB FPR": 77 / (893 + 77),
                "SVEB Se": 40 / 81, "SVEB +P": 40 / 92}
    assert set(gross.index) == set(expected)
    for name, value in expected.items():
        assert gross[name] == pytest.approx(value, rel=1e-12), name
    confusion = score(df)["confusion"]
    assert list(confusion.index) == list(confusion.columns) == EC57_LABELS
    np.testing.assert_array_equal(confusion.to_numpy(), np.array(COUNTS))
    assert (confusion.dtypes == np.int64).all()


def test_flutter_rows_are_left_out_of_every_count():
    # "*": a detection inside reference-marked ventricular flutter, which bxb does not count
    df = from_counts(COUNTS)
    flutter = table([("*", "V")] * 30 + [("*", "N")] * 20 + [("*", "S")] * 7 + [("*", None)] * 3)
    both = pd.concat([df, flutter], ignore_index=True)
    np.testing.assert_array_equal(ec57_confusion(both).to_numpy(), np.array(COUNTS))
    pd.testing.assert_series_equal(score(both)["gross"], score(df)["gross"])
    assert score(both)["accuracy"] == score(df)["accuracy"]


def test_ec57_counts_like_bxb():
    df = table([("V", "V")] * 8 + [("V", "N")] * 2 + [("N", "V")] * 1 + [("F", "V")] * 5 + [("Q", "V")] * 3
               + [("S", "S")] * 3 + [("S", "N")] * 1 + [("Q", "S")] * 4 + [("N", "S")] * 1
               + [("N", "N")] * 100 + [("N", "O")] * 2 + [("O", "N")] * 3)
    gross = score(df)["gross"]
    assert gross["VEB Se"] == pytest.approx(8 / 10)
    assert gross["VEB +P"] == pytest.approx(8 / 9)  # fusion and unknown beats called V are not false positives
    assert gross["SVEB Se"] == pytest.approx(3 / 4)
    assert gross["SVEB +P"] == pytest.approx(3 / 4)  # unknown beats called S are not false positives
    beats = len(df) - 5
    assert gross["QRS Se"] == pytest.approx((beats) / (beats + 2))
    assert gross["QRS +P"] == pytest.approx((beats) / (beats + 3))


def test_undefined_statistics_are_nan_not_zero():
    gross = score(table([("N", "N")] * 10))["gross"]
    assert np.isnan(gross["VEB Se"]) and np.isnan(gross["VEB +P"]) and np.isnan(gross["SVEB Se"])
    assert gross["VEB FPR"] == 0 and gross["QRS Se"] == 1 and gross["QRS +P"] == 1


def test_per_class_scores_and_record_average():
    df = pd.concat([table([("V", "V")] * 9 + [("V", "N")] + [("N", "N")] * 90, record=1),
                    table([("V", "V")] * 1 + [("V", "N")] * 9 + [("N", "N")] * 90, record=2)])
    result = score(df)
    assert result["classes"].loc["V", "Se"] == pytest.approx(10 / 20)
    assert result["classes"].loc["V", "+P"] == pytest.approx(1.0)
    assert result["classes"].loc["N", "Sp"] == pytest.approx(10 / 20)
    assert result["per_record"].loc[1, "VEB Se"] == pytest.approx(0.9)
    assert result["per_record"].loc[2, "VEB Se"] == pytest.approx(0.1)
    assert result["record_average"]["VEB Se"] == pytest.approx(0.5)
    assert result["accuracy"] == pytest.approx(190 / 200)


def test_per_class_specificity_and_f1_by_hand():
    # 3 classes present: N 6 (5 right, 1 called S), S 3 (2 right, 1 called N), V 2 (both called V)
    y_true = [0] * 6 + [1] * 3 + [2] * 2
    y_pred = [0] * 5 + [1] + [1, 1, 0] + [2, 2]
    scores = per_class_scores(y_true, y_pred)
    assert list(scores.index) == CLASSES
    assert scores.loc["N", "Se"] == pytest.approx(5 / 6) and scores.loc["N", "+P"] == pytest.approx(5 / 6)
    # S: TP 2, FP 1 (an N), TN = 11 - 3 - 3 + 2 = 7 beats neither S nor called S
    assert scores.loc["S", "Sp"] == pytest.approx(7 / 8)
    assert scores.loc["S", "F1"] == pytest.approx(2 * 2 / (3 + 3))
    assert scores.loc["V", "F1"] == 1 and scores.loc["F", "F1"] == 0 and scores.loc["F", "beats"] == 0


def test_matched_scores_ignore_missed_and_extra_beats():
    df = table([("N", "N")] * 8 + [("V", "V")] * 2 + [("V", None)] * 5 + [(None, "N")] * 7)
    result = score(df)
    assert result["accuracy"] == 1.0  # over matched beats only
    assert result["classes"]["beats"].sum() == 10
    assert result["gross"]["VEB Se"] == pytest.approx(2 / 7)  # the missed V beats count against VEB Se


def test_a_statistic_over_one_beat_is_defined():
    one = score(table([("V", "V"), ("S", "N"), ("N", "N")]))["gross"]
    assert one["VEB Se"] == 1.0 and one["VEB +P"] == 1.0 and one["SVEB Se"] == 0.0
    assert np.isnan(one["SVEB +P"])  # nothing was called S
    assert score(table([("V", "N")]))["gross"]["VEB Se"] == 0.0


def test_labels_that_are_no_class_are_refused():
    with pytest.raises(ValueError, match=r"\['X'\]"):
        ec57_confusion(table([("N", "N"), ("X", "N")]))
    with pytest.raises(ValueError, match="'V '"):
        score(table([("N", "V ")]))
    # None on either side is "no beat there" (O); categorical labels count as their strings
    frame = table([("N", None), (None, "V"), ("V", "V")]).astype({"aami_true": "category"})
    assert ec57_confusion(frame).loc["N", "O"] == 1 and ec57_confusion(frame).loc["O", "V"] == 1


@pytest.mark.filterwarnings("error")  # no mean of an empty array
def test_when_no_beat_is_matched_the_matched_scores_are_undefined():
    result = score(table([("V", None)] * 3 + [(None, "N")] * 2, record=7))
    assert np.isnan(result["accuracy"]) and result["gross"]["QRS Se"] == 0.0 and result["gross"]["QRS +P"] == 0.0
    assert result["macro_f1"] == 0.0 and (result["classes"] == 0).all().all()
    assert list(result["classes"].columns) == ["Se", "+P", "Sp", "F1", "beats"]
    assert (result["per_record"].dtypes == np.float64).all()
    assert list(result["per_record"].index) == [7]


@pytest.mark.filterwarnings("error")  # no division warnings: an absent class scores 0 quietly
def test_macro_f1_is_the_mean_over_n_s_v_f_by_hand():
    # N: 4 of 5 found, one called S; S: 1 of 2, one called N; V: 2 of 2; F: 0 of 1 (called V); Q: 3 of 3
    y_true = [0] * 5 + [1] * 2 + [2] * 2 + [3] + [4] * 3
    y_pred = [0] * 4 + [1] + [1, 0] + [2, 2] + [2] + [4] * 3
    f1 = {"N": 2 * 4 / (5 + 5), "S": 2 * 1 / (2 + 2), "V": 2 * 2 / (2 + 3), "F": 0.0}
    assert macro_f1(y_true, y_pred) == pytest.approx(np.mean(list(f1.values())))  # Q is not in the mean
    scores = per_class_scores(y_true, y_pred)
    for c, value in f1.items():
        assert scores.loc[c, "F1"] == pytest.approx(value)
    assert scores.loc["Q", "F1"] == 1.0 and scores.loc["Q", "Sp"] == 1.0
    assert macro_f1([0, 0], [0, 0]) == pytest.approx(0.25)  # only N present: S, V, F count 0
    # specificity over one beat that is not of the class
    assert per_class_scores([0, 1], [0, 1]).loc["N", "Sp"] == 1.0


@given(st.permutations(range(6)), st.integers(0, 2**32 - 1))
def test_scores_do_not_depend_on_the_order_of_records_or_beats(order, seed):
    parts = [from_counts(np.roll(COUNTS, k, axis=1) % 40 + 1, record=100 + k) for k in range(6)]
    base = score(pd.concat(parts, ignore_index=True))
    shuffled = pd.concat([parts[k] for k in order], ignore_index=True)
    shuffled = shuffled.iloc[np.random.default_rng(seed).permutation(len(shuffled))]
    again = score(shuffled)
    pd.testing.assert_series_equal(again["gross"], base["gross"])
    pd.testing.assert_frame_equal(again["per_record"].sort_index(), base["per_record"].sort_index())
    pd.testing.assert_frame_equal(again["classes"], base["classes"])
    assert again["macro_f1"] == pytest.approx(base["macro_f1"], abs=1e-15)


# -- bootstrap by patient -------------------------------------------------------------------

def test_bootstrap_resamples_records_not_beats():
    good = table([("V", "V")] * 50 + [("N", "N")] * 50, record=1)
    bad = table([("V", "N")] * 50 + [("N", "N")] * 50, record=2)
    ci = bootstrap_by_record(pd.concat([good, bad]), n_boot=400)
    # with two patients a resample is all-good, all-bad or mixed: the interval spans nearly 0..1
    assert ci.loc["VEB Se", "low"] == pytest.approx(0.0) and ci.loc["VEB Se", "high"] == pytest.approx(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "All-NaN slice" warning for the statistics it cannot have
        one = bootstrap_by_record(good, n_boot=50)
    assert one.loc["VEB Se", "low"] == one.loc["VEB Se", "high"] == 1.0
    # no S beat and no S call in any resample: SVEB Se and +P are undefined, and so is their interval
    assert one.loc[["SVEB Se", "SVEB +P"]].isna().all().all()
    # one patient: every resample is that patient, so the interval is the point estimate itself,
    # with F1 0 for the classes it neither has nor was called (S, F), as score() counts them
    assert one.loc["macro-F1", "low"] == one.loc["macro-F1", "high"] == pytest.approx(score(good)["macro_f1"])
    assert score(good)["macro_f1"] == pytest.approx(0.5)


def many_patients(n=20):
    """n patients whose VEB Se runs from 0.05 to 1 (patient k finds k+1 of 20 V beats), with some
    of every kind of error, so that every statistic varies between resamples."""
    return pd.concat([table([("V", "V")] * (k + 1) + [("V", "N")] * (19 - k) + [("N", "N")] * 30
                            + [("S", "S")] * (k % 4) + [("S", "N")] * 2 + [("N", "V")] * (k % 3)
                            + [("N", "S")] * (k % 5) + [("F", "F")] * (k % 2) + [("F", "V")] * (k % 3)
                            + [("N", None)] * (k % 4) + [(None, "N")] * (k % 6) + [(None, "V")] * (k % 2)
                            + [("Q", "S")] * (k % 2), record=k) for k in range(n)],
                     ignore_index=True)


def hand_statistics(m):
    """bxb's statistics and the per-class F1 of one pooled 6x6 count table, written out by hand."""
    c = {(a, b): m[i, j] for i, a in enumerate(EC57_LABELS) for j, b in enumerate(EC57_LABELS)}
    beats = "NSVFQ"
    qtp = sum(c[a, b] for a in beats for b in beats)
    vfp = c["N", "V"] + c["S", "V"] + c["O", "V"]
    vtn = sum(c[a, b] for a in "NSFQO" for b in "NSFQ")
    sfp = c["N", "S"] + c["V", "S"] + c["F", "S"] + c["O", "S"]

    def ratio(a, b):
        return a / b if b else np.nan

    out = {"QRS Se": ratio(qtp, qtp + sum(c[a, "O"] for a in beats)),
           "QRS +P": ratio(qtp, qtp + sum(c["O", b] for b in beats)),
           "VEB Se": ratio(c["V", "V"], sum(c["V", b] for b in "NSVFQO")), "VEB +P": ratio(c["V", "V"], c["V", "V"] + vfp),
           "VEB FPR": ratio(vfp, vtn + vfp), "SVEB Se": ratio(c["S", "S"], sum(c["S", b] for b in "NSVFQO")),
           "SVEB +P": ratio(c["S", "S"], c["S", "S"] + sfp)}
    for k in "NSVF":
        calls, actual = sum(c[a, k] for a in beats), sum(c[k, b] for b in beats)
        out[f"F1 {k}"] = 2 * c[k, k] / (calls + actual) if calls + actual else 0.0
    out["macro-F1"] = np.mean([out[f"F1 {k}"] for k in "NSVF"])
    return out


@pytest.mark.parametrize("kwargs, seed, n_boot, level", [({}, 0, 1000, 0.95),
                                                         (dict(n_boot=300, seed=3, level=0.9), 3, 300, 0.9)])
def test_bootstrap_interval_is_the_percentile_interval_of_pooled_patient_resamples(kwargs, seed, n_boot, level):
    df = many_patients()
    ci = bootstrap_by_record(df, **kwargs)
    assert list(ci.columns) == ["low", "high"]
    assert list(ci.index) == ["QRS Se", "QRS +P", "VEB Se", "VEB +P", "VEB FPR", "SVEB Se", "SVEB +P",
                              "F1 N", "F1 S", "F1 V", "F1 F", "macro-F1"]
    # the same resamples drawn by hand: whole patients with replacement, their counts pooled
    records = sorted(df["record"].unique())
    counts = [ec57_confusion(df[df["record"] == r]).to_numpy() for r in records]
    draws = np.random.default_rng(seed).integers(0, len(records), (n_boot, len(records)))
    per_draw = [hand_statistics(sum(counts[k] for k in d)) for d in draws]
    for name in ci.index:
        values = np.array([d[name] for d in per_draw], dtype=float)
        low, high = np.nanquantile(values, (1 - level) / 2), np.nanquantile(values, (1 + level) / 2)
        assert ci.loc[name, "low"] == pytest.approx(low, abs=1e-12), name
        assert ci.loc[name, "high"] == pytest.approx(high, abs=1e-12), name
    point = score(df)["gross"]["VEB Se"]
    assert ci.loc["VEB Se", "low"] < point < ci.loc["VEB Se", "high"]


def test_a_higher_level_gives_a_wider_interval():
    df = many_patients()
    widths = {}
    for level in (0.5, 0.8, 0.95):
        ci = bootstrap_by_record(df, n_boot=400, level=level)
        widths[level] = ci["high"] - ci["low"]
    for name in ("VEB Se", "macro-F1", "F1 V"):
        assert 0 < widths[0.5][name] < widths[0.8][name] < widths[0.95][name], name
