"""The CNN + feature-baseline blend: the arithmetic, the alignment check, the choice on out-of-fold
predictions (DS1 only), and the baseline's features as another recorder gives the signal."""
import numpy as np
import pandas as pd
import pytest

from ekg import baseline, cv, ensemble
from ekg.data import CLASSES, DS1, DS2

K = {c: i for i, c in enumerate(CLASSES)}


def oof_table(probs, truth, records, folds=None):
    """A classified-beats table (argmax calls) of made-up beats."""
    n = len(truth)
    beats = pd.DataFrame({"record": records, "sample": np.arange(n) * 300, "symbol": "N", "aami": truth})
    return cv.classified_frame(beats, probs, fold=folds)


def one_hot_ish(truth, right, rng, sure=0.8):
    """Probabilities that put `sure` on the true class where right, on N (or S for true N) elsewhere."""
    probs = np.full((len(truth), len(CLASSES)), (1 - sure) / (len(CLASSES) - 1))
    for i, (t, ok) in enumerate(zip(truth, right)):
        wrong = "S" if t == "N" else "N"
        probs[i, K[t if ok else wrong]] = sure
    return probs


@pytest.fixture(scope="module")
def complementary():
    """A CNN right on every S beat but few V beats, a GBM right on V but few S beats (DS1 records)."""
    rng = np.random.default_rng(0)
    truth = np.array(["N"] * 600 + ["S"] * 100 + ["V"] * 100)
    records = np.array(DS1)[np.arange(len(truth)) % len(DS1)]
    folds = pd.Series(records).map(cv.fold_assignments(DS1)).to_numpy()
    cnn_right = np.where(truth == "V", rng.random(len(truth)) < 0.3, True)
    gbm_right = np.where(truth == "S", rng.random(len(truth)) < 0.3, True)
    cnn = oof_table(one_hot_ish(truth, cnn_right, rng), truth, records, folds)
    gbm = oof_table(one_hot_ish(truth, gbm_right, rng, sure=0.7), truth, records, folds)
    return cnn, gbm


def test_blend_probs_is_the_weighted_mean_renormalised():
    rng = np.random.default_rng(1)
    cnn, gbm = rng.dirichlet(np.ones(5), 20), rng.dirichlet(np.ones(5), 20)
    np.testing.assert_allclose(ensemble.blend_probs(cnn, gbm, 0.0), cnn)
    np.testing.assert_allclose(ensemble.blend_probs(cnn, gbm, 1.0), gbm)
    np.testing.assert_allclose(ensemble.blend_probs(cnn, gbm, 0.25), 0.75 * cnn + 0.25 * gbm)
    per_class = ensemble.blend_probs(cnn, gbm, {"V": 0.5})
    mixed = cnn.copy()
    mixed[:, K["V"]] = 0.5 * cnn[:, K["V"]] + 0.5 * gbm[:, K["V"]]
    np.testing.assert_allclose(per_class, mixed / mixed.sum(1, keepdims=True))
    np.testing.assert_allclose(per_class.sum(1), 1.0)
    # the classes left out keep the CNN's proportions
    np.testing.assert_allclose(per_class[:, K["S"]] / per_class[:, K["N"]], cnn[:, K["S"]] / cnn[:, K["N"]])


@pytest.mark.parametrize("weights, message", [(1.5, r"\[0, 1\]"), ({"V": -0.1}, r"\[0, 1\]"),
                                              ({"X": 0.5}, "unknown classes")])
def test_blend_probs_refuses_bad_weights(weights, message):
    probs = np.full((3, 5), 0.2)
    with pytest.raises(ValueError, match=message):
        ensemble.blend_probs(probs, probs, weights)


def test_blend_probs_refuses_different_shapes():
    with pytest.raises(ValueError, match="shape"):
        ensemble.blend_probs(np.full((3, 5), 0.2), np.full((4, 5), 0.2), 0.5)


def test_blend_frame_needs_the_same_beats_in_the_same_order(complementary):
    cnn, gbm = complementary
    with pytest.raises(ValueError, match="not the same beats in the same order"):
        ensemble.blend_frame(cnn, gbm.iloc[::-1].reset_index(drop=True), 0.5)
    with pytest.raises(ValueError, match="beats"):
        ensemble.blend_frame(cnn, gbm.iloc[1:], 0.5)
    out = ensemble.blend_frame(cnn, gbm, {"V": 1.0}, {"S": 0.5})
    assert list(out["fold"]) == list(cnn["fold"]) and list(out["record"]) == list(cnn["record"])
    probs = out[cv.PROB_COLUMNS].to_numpy()
    np.testing.assert_allclose(probs, ensemble.blend_probs(cnn[cv.PROB_COLUMNS], gbm[cv.PROB_COLUMNS], {"V": 1.0}))
    assert (out["aami_pred"].to_numpy() == np.asarray(CLASSES)[cv.apply_thresholds(probs, {"S": 0.5})]).all()


def test_choose_blend_takes_s_from_the_cnn_and_v_from_the_gbm(complementary):
    cnn, gbm = complementary
    chosen = ensemble.choose_blend(cnn, gbm, "S and V")
    assert chosen["weights"]["S"] < chosen["weights"]["V"] and chosen["weights"]["V"] > 0
    assert set(chosen["thresholds"]) == {"S", "V"}
    alone = {name: ensemble.class_f1(t) for name, t in [("cnn", cnn), ("gbm", gbm)]}
    assert chosen["f1"]["S"] >= alone["cnn"]["S"] > alone["gbm"]["S"]
    assert chosen["f1"]["V"] >= alone["gbm"]["V"] > alone["cnn"]["V"]
    # the reported F1 is what the chosen weights and thresholds give
    again = ensemble.blend_frame(cnn, gbm, chosen["weights"], chosen["thresholds"])
    assert ensemble.class_f1(again) == pytest.approx(chosen["f1"])
    assert len(chosen["table"]) == len(ensemble.WEIGHT_GRID) ** 2
    one = ensemble.choose_blend(cnn, gbm, "one weight")
    assert isinstance(one["weights"], float) and len(one["table"]) == len(ensemble.WEIGHT_GRID)
    assert ensemble.class_f1(ensemble.blend_frame(cnn, gbm, one["weights"], one["thresholds"])) \
        == pytest.approx(one["f1"])


def test_the_v_family_takes_v_from_the_gbm_and_keeps_the_cnns_s(complementary):
    cnn, gbm = complementary
    chosen = ensemble.choose_blend(cnn, gbm, "V")
    assert chosen["family"] == "V" and set(chosen["weights"]) == {"V"} and chosen["weights"]["V"] > 0
    assert len(chosen["table"]) == len(ensemble.WEIGHT_GRID)
    assert chosen["f1"]["V"] > ensemble.class_f1(cnn)["V"]
    assert chosen["f1"]["S"] >= ensemble.class_f1(cnn)["S"]


def test_choose_blend_keeps_the_cnn_when_the_gbm_adds_nothing(complementary):
    cnn, _ = complementary
    grid = np.array([0.0, 0.5, 1.0])
    chosen = ensemble.choose_blend(cnn, cnn.copy(), "S and V", grid=grid)
    assert chosen["weights"] == {"S": 0.0, "V": 0.0}
    chosen = ensemble.choose_blend(cnn, cnn.copy(), "all", grid=grid)
    assert (chosen["family"], chosen["weights"]) == ("one weight", 0.0)
    assert len(chosen["table"]) == 2 * len(grid) + 2 * len(grid) ** 2


def test_candidate_weights_of_each_family():
    grid = np.array([0.0, 1.0])
    assert ensemble.candidate_weights("one weight", grid) == [("one weight", 0.0), ("one weight", 1.0)]
    assert ensemble.candidate_weights("S and V", grid)[1] == ("S and V", {"S": 0.0, "V": 1.0})
    s_and_rest = dict(ensemble.candidate_weights("S and rest", grid))["S and rest"]  # the last one
    assert s_and_rest == {"S": 1.0, "N": 1.0, "V": 1.0, "F": 1.0, "Q": 1.0}
    family, weights = ensemble.candidate_weights("S and rest", grid)[1]
    assert weights == {"S": 0.0, "N": 1.0, "V": 1.0, "F": 1.0, "Q": 1.0}
    assert ensemble.candidate_weights("V", grid) == [("V", {"V": 0.0}), ("V", {"V": 1.0})]
    assert [f for f, _ in ensemble.candidate_weights("all", grid)] == ["one weight"] * 2 + ["V"] * 2 \
        + ["S and V"] * 4 + ["S and rest"] * 4


def test_s_from_the_cnn_and_the_rest_from_the_gbm(complementary):
    cnn, gbm = complementary
    probs = ensemble.blend_probs(cnn[cv.PROB_COLUMNS], gbm[cv.PROB_COLUMNS], {c: 1.0 for c in CLASSES if c != "S"})
    mixed = gbm[cv.PROB_COLUMNS].to_numpy().copy()
    mixed[:, K["S"]] = cnn["p_S"]
    np.testing.assert_allclose(probs, mixed / mixed.sum(1, keepdims=True))


def test_choose_blend_refuses_ds2(complementary):
    cnn, gbm = complementary
    cnn, gbm = cnn.copy(), gbm.copy()
    cnn["record"] = gbm["record"] = DS2[0]
    with pytest.raises(ValueError, match="DS2"):
        ensemble.choose_blend(cnn, gbm, "one weight")
    with pytest.raises(ValueError, match="family"):
        ensemble.candidate_weights("per beat")


def test_nested_out_of_fold_chooses_without_the_held_out_fold(complementary):
    cnn, gbm = complementary
    grid = np.array([0.0, 0.5, 1.0])
    nested = ensemble.nested_out_of_fold(cnn, gbm, "all", grid)
    assert len(nested) == len(cnn) and set(nested["fold"]) == set(cnn["fold"])
    for f in [0, 3]:
        inner = (cnn["fold"] != f).to_numpy()
        chosen = ensemble.choose_blend(cnn[inner].reset_index(drop=True), gbm[inner].reset_index(drop=True),
                                       "all", grid)
        held = nested[nested["fold"] == f]
        assert set(held["weights"]) == {str(chosen["weights"])} and set(held["family"]) == {chosen["family"]}
        expected = ensemble.blend_frame(cnn[~inner].reset_index(drop=True), gbm[~inner].reset_index(drop=True),
                                        chosen["weights"], chosen["thresholds"])
        assert (held["aami_pred"].to_numpy() == expected["aami_pred"].to_numpy()).all()


@pytest.fixture(scope="module")
def record119():
    """Three minutes of record 119 (channel 0, mV, float32 as signals.read_signal gives it) and its
    reference beats (many V beats)."""
    import wfdb

    from ekg.data import BEAT_SYMBOLS, find_data_dir

    path = str(find_data_dir() / "119")
    signal = wfdb.rdrecord(path, channels=[0], sampto=180 * 360).p_signal[:, 0].astype(np.float32)  # as read_signal
    ann = wfdb.rdann(path, "atr", sampto=180 * 360)
    return signal, ann.sample[np.isin(ann.symbol, BEAT_SYMBOLS)]


def test_recorder_beat_features_at_128_hz_stay_close_to_native(record119):
    signal, samples = record119
    native = baseline.beat_features(signal, samples)
    pd.testing.assert_frame_equal(ensemble.recorder_beat_features(signal, samples, "native"), native)
    low = ensemble.recorder_beat_features(signal, samples, "via128")
    assert list(low.columns) == baseline.FEATURES and len(low) == len(native)
    assert np.isfinite(low.to_numpy()).all()
    # R peaks move to the 128-Hz grid: intervals change by at most two of its samples
    assert 0 < np.abs(low["rr_prev"] - native["rr_prev"]).max() <= 2 / 128 + 1e-9
    # the 128-Hz signal loses what lies above 64 Hz: the same beats, not identical copies
    assert np.corrcoef(low["qrs_p2p"], native["qrs_p2p"])[0, 1] > 0.95
    assert not np.allclose(low["qrs_p2p"], native["qrs_p2p"])
    assert np.abs(low["w+0ms"] - native["w+0ms"]).median() < 0.1  # mV
    with pytest.raises(ValueError, match="recorder"):
        ensemble.recorder_beat_features(signal, samples, "via64")


def test_recorder_features_of_records_are_the_cached_recorder_features():
    native = ensemble.recorder_features([100], "native")
    pd.testing.assert_frame_equal(native, baseline.load_features([100]))
    low = ensemble.recorder_features([100], "via128")
    assert list(low.columns) == baseline.FEATURES and len(low) == len(native)
    assert np.isfinite(low.to_numpy()).all()
    # R peaks move to the 128-Hz grid: intervals change by at most two of its samples
    assert np.abs(low["rr_prev"] - native["rr_prev"]).max() <= 2 / 128 + 1e-9
    assert 0 < np.abs(low["rr_prev"] - native["rr_prev"]).max()
    # the beat's shape is the same beat, not an identical copy
    assert np.corrcoef(low["qrs_p2p"], native["qrs_p2p"])[0, 1] > 0.9
    assert not np.allclose(low["qrs_p2p"], native["qrs_p2p"])
    with pytest.raises(ValueError, match="recorder"):
        ensemble.recorder_features([100], "via64")


def test_gbm_out_of_fold_fits_once_per_fold_and_predicts_every_recorder(monkeypatch):
    from sklearn.ensemble import HistGradientBoostingClassifier

    fits = []

    def small_model(kind):
        fits.append(kind)
        return HistGradientBoostingClassifier(max_iter=3, random_state=0)

    monkeypatch.setattr(baseline, "make_model", small_model)
    records = [106, 201, 208]  # three folds, one record each
    tables = ensemble.gbm_out_of_fold(records, ("native", "via128"))
    assert fits == ["gbm"] * 3
    ensemble.check_aligned(tables["native"], tables["via128"])
    assert sorted(tables["native"]["fold"].unique()) == sorted(cv.fold_assignments(records).unique())
    native = tables["native"][cv.PROB_COLUMNS].to_numpy()
    np.testing.assert_allclose(native.sum(1), 1.0)
    assert not np.allclose(native, tables["via128"][cv.PROB_COLUMNS].to_numpy())
