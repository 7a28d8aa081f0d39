"""The classical feature baseline: causal features, RR arithmetic, and the classifiers' outputs."""
import numpy as np
import pandas as pd
import pytest
import wfdb

from ekg import baseline
from ekg.data import AAMI_MAP, BEAT_SYMBOLS, CLASSES, find_data_dir

FS = 360


@pytest.fixture(scope="module")
def record():
    """Three minutes of record 119 (channel 0, mV) and its reference beats (many V beats)."""
    path = str(find_data_dir() / "119")
    signal = wfdb.rdrecord(path, channels=[0], sampto=180 * FS).p_signal[:, 0]
    ann = wfdb.rdann(path, "atr", sampto=180 * FS)
    keep = np.isin(ann.symbol, BEAT_SYMBOLS)
    return signal, ann.sample[keep], np.asarray(ann.symbol)[keep]


def test_features_are_causal_except_the_next_rr(record):
    signal, samples, _ = record
    before = baseline.beat_features(signal, samples)
    cut = int(120 * FS)  # from here on the signal and the beats change
    changed = signal.copy()
    changed[cut:] = np.random.default_rng(0).normal(0, 2, len(signal) - cut) + 3 * np.sin(np.arange(len(signal) - cut) / 50)
    later = samples[samples >= cut]
    moved = np.r_[samples[samples < cut], np.unique(later[::2] + 17)]  # half the later beats gone, the rest moved
    common = int((samples < cut).sum())  # the beats both versions share, first in both tables
    before, after = before.iloc[:common], baseline.beat_features(changed, moved).iloc[:common]
    samples = samples[:common + 1]
    horizon = int(np.ceil(baseline.FEATURE_WINDOW_S[1] * FS))
    done = samples[:common] + horizon < cut  # the beat's window ends before the change
    causal = [c for c in baseline.FEATURES if c not in baseline.NEXT_RR_FEATURES]
    assert done.sum() > 100
    pd.testing.assert_frame_equal(before.loc[done, causal], after.loc[done, causal])
    # beats whose next beat also comes before the change keep every feature
    settled = (samples[1:] < cut) & done  # samples[common] is the first beat after the cut
    pd.testing.assert_frame_equal(before.loc[settled], after.loc[settled])
    # and the next-RR features do see the next beat
    last = np.flatnonzero(done & ~settled)
    assert len(last) and not np.allclose(before.loc[last, "rr_next"], after.loc[last, "rr_next"])


def test_rr_features_in_seconds_and_ratios():
    samples = np.array([0, 360, 720, 1080, 1260, 1800])  # 1 s, 1 s, 1 s, 0.5 s (premature), 1.5 s
    rr = baseline.rr_features(samples, fs=360)
    assert rr["rr_prev"].tolist() == [1.0, 1.0, 1.0, 1.0, 0.5, 1.5]  # the first beat borrows its next RR
    assert rr["rr_next"].tolist()[:5] == [1.0, 1.0, 1.0, 0.5, 1.5]
    # the local mean leaves the beat's own interval out: the premature beat is measured against 1 s
    assert rr.loc[4, "rr_local"] == pytest.approx(1.0)
    assert rr.loc[4, "prev/local"] == pytest.approx(0.5)
    assert rr.loc[4, "next/prev"] == pytest.approx(3.0)
    assert rr.loc[5, "rr_local"] == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert rr.loc[5, "rr_next"] == pytest.approx(rr.loc[5, "rr_local"])  # the last beat has no next beat
    assert np.isfinite(rr.to_numpy()).all()


def test_long_term_rr_forgets_beats_older_than_its_window():
    rr_s = np.r_[np.full(200, 0.5), np.full(400, 1.5)]  # 100 s of fast rhythm, then 600 s slow
    samples = np.r_[0, np.cumsum(rr_s)] * 360
    rr = baseline.rr_features(samples.astype(int), fs=360)
    assert rr["rr_long"].iloc[150] == pytest.approx(0.5)
    assert rr["rr_long"].iloc[-1] == pytest.approx(1.5)  # the fast beats are over 300 s in the past
    assert 0.5 < rr["rr_long"].iloc[300] < 1.5


def test_bad_beats_raise_clear_errors(record):
    signal, samples, _ = record
    with pytest.raises(ValueError, match="two R peaks"):
        baseline.beat_features(signal, samples[:1])
    with pytest.raises(ValueError, match="increasing"):
        baseline.beat_features(signal, samples[::-1])
    with pytest.raises(ValueError, match="outside"):
        baseline.beat_features(signal, np.r_[samples, len(signal) + 10])
    with pytest.raises(ValueError, match="unknown model"):
        baseline.make_model("svm")


def test_template_features_mark_the_odd_beat(record):
    signal, samples, symbols = record
    features = baseline.beat_features(signal, samples)
    aami = pd.Series(symbols).map(AAMI_MAP)
    assert features.shape == (len(samples), len(baseline.FEATURES)) and np.isfinite(features.to_numpy()).all()
    # in record 119 the V beats differ from the patient's running template far more than N beats do
    assert features.loc[aami == "V", "rms_diff"].median() > 3 * features.loc[aami == "N", "rms_diff"].median()
    assert features.loc[aami == "N", "corr_template"].median() > 0.95


@pytest.mark.parametrize("kind", baseline.MODELS)
def test_classifiers_return_probabilities_in_class_order(kind):
    rng = np.random.default_rng(0)
    labels = np.repeat(baseline.TRAIN_CLASSES, 60)
    X = rng.normal(0, 1, (len(labels), len(baseline.FEATURES)))
    X[:, baseline.FEATURES.index("rms_diff")] = np.abs(X[:, 0]) + 0.1
    for k, c in enumerate(baseline.TRAIN_CLASSES):  # each class shifted in one column the LDA sees
        X[labels == c, baseline.FEATURES.index("qrs_min")] += 4 * k
    model = baseline.make_model(kind).fit(X, labels)
    probs = baseline.predict_proba(model, X)
    assert probs.shape == (len(X), len(CLASSES))
    assert np.allclose(probs.sum(1), 1) and (probs[:, CLASSES.index("Q")] == 0).all()
    assert (np.asarray(CLASSES)[probs.argmax(1)] == model.predict(X)).all()
    assert (np.asarray(CLASSES)[probs.argmax(1)] == labels).mean() > 0.9


def test_sample_weights_favour_rare_classes():
    w = baseline.sample_weights(np.array(["N"] * 100 + ["S"] * 25 + ["V"] * 4), power=0.5)
    assert w[0] == 1 and w[100] == pytest.approx(2) and w[-1] == pytest.approx(5)


def test_feature_cache_is_rebuilt_for_other_beats(tmp_path, monkeypatch):
    monkeypatch.setattr(baseline.config, "CACHE_DIR", tmp_path)
    baseline._record_features.cache_clear()
    first = baseline.load_features([101])
    path = baseline._cache_file(101)
    assert path.is_file()
    with np.load(path) as z:  # a cache written for other beats (a changed beat table) ...
        np.savez(path, values=z["values"][:-1] + 1, columns=z["columns"], samples=z["samples"][:-1])
    baseline._record_features.cache_clear()
    again = baseline.load_features([101])  # ... is not used
    baseline._record_features.cache_clear()
    pd.testing.assert_frame_equal(first, again)


def test_a_fitted_gbm_is_saved_and_reused_only_for_the_same_fit(tmp_path, monkeypatch):
    from sklearn.ensemble import HistGradientBoostingClassifier

    monkeypatch.setattr(baseline.config, "OUTPUT_ROOT", tmp_path)
    monkeypatch.setattr(baseline.config, "RETRAIN", False)
    monkeypatch.setitem(baseline.GBM_PARAMS, "max_iter", 5)  # a quick fit
    fits, real_fit = [], HistGradientBoostingClassifier.fit
    monkeypatch.setattr(HistGradientBoostingClassifier, "fit",
                        lambda self, *args, **kwargs: fits.append(1) or real_fit(self, *args, **kwargs))
    records, features = [101, 106], baseline.load_features([100]).iloc[:300]
    first = baseline.fit_model("gbm", records)
    assert len(fits) == 1 and len(list((tmp_path / "models" / "gbm").glob("baseline_gbm_*.json.gz"))) == 1
    # the saved trees give scikit-learn's own probabilities
    beats = baseline.load_beats(records)
    keep = beats["aami"].isin(baseline.TRAIN_CLASSES).to_numpy()
    y = beats["aami"].astype(str).to_numpy()[keep]
    direct = baseline.make_model("gbm").fit(baseline.load_features(records).to_numpy()[keep], y,
                                            sample_weight=baseline.sample_weights(y, baseline.GBM_WEIGHT_POWER))
    np.testing.assert_allclose(baseline.predict_proba(first, features), baseline.predict_proba(direct, features), atol=1e-12)
    again = baseline.fit_model("gbm", records)  # the same fit: read back, not fitted
    assert len(fits) == 2
    np.testing.assert_array_equal(baseline.predict_proba(again, features), baseline.predict_proba(first, features))
    baseline.fit_model("gbm", records, weight_power=0.5)  # another setting: another fit
    assert len(fits) == 3
    real_load = baseline.load_features  # other features of the same beats (a changed computation): fitted again
    monkeypatch.setattr(baseline, "load_features", lambda recs=None: real_load(recs) * 1.01)
    baseline.fit_model("gbm", records)
    assert len(fits) == 4
    monkeypatch.setattr(baseline, "load_features", real_load)
    # a stand-in model (another test's smaller one) neither takes the saved fit nor is saved as it
    monkeypatch.setattr(baseline, "make_model", lambda kind: HistGradientBoostingClassifier(max_iter=2, random_state=0))
    stand_in = baseline.fit_model("gbm", records)
    assert len(fits) == 5 and len(stand_in.spec["trees"]) == 2 * len(stand_in.classes)
    monkeypatch.undo()  # the real model again, with its quick settings
    monkeypatch.setattr(baseline.config, "OUTPUT_ROOT", tmp_path)
    monkeypatch.setitem(baseline.GBM_PARAMS, "max_iter", 5)
    monkeypatch.setattr(HistGradientBoostingClassifier, "fit",
                        lambda self, *args, **kwargs: fits.append(1) or real_fit(self, *args, **kwargs))
    assert len(baseline.fit_model("gbm", records).spec["trees"]) == 5 * len(first.classes)  # still its own fit
    assert len(fits) == 5
    monkeypatch.setattr(baseline.config, "RETRAIN", True)  # EKG_RETRAIN=1: fitted again
    baseline.fit_model("gbm", records)
    assert len(fits) == 6


def test_a_tiny_signal_is_not_scaled_up_to_look_like_beats():
    # beats of 0.02 mV (a lead nearly off): the typical amplitude is floored at 0.05 mV, so their
    # template differences and peak-to-peak ratio stay small instead of being divided by almost nothing
    fs, samples = 360, np.arange(400, 360 * 20, 300)
    x = np.zeros(360 * 21)
    x[samples] = 0.02
    shape = baseline.shape_features(x, samples, fs)
    assert np.allclose(shape["p2p/typical"].iloc[1:], 0.02 / 0.05)
    assert (shape["rms_diff"] < 0.5).all()
