"""ekg.blend: the recommended CNN + feature-model blend as classify_record and the monitor apply it:
the same probabilities as ekg.ensemble's offline blend, the blend's thresholds, the right CNN only."""
import copy
import warnings

import numpy as np
import pandas as pd
import pytest

from ekg import baseline, cv, ensemble
from ekg.blend import FeatureBlend, blend_path
from ekg.classify import classify_beats, classify_record
from ekg.data import CLASSES, DS2, find_data_dir, load_beats
from ekg.models import decide, fingerprint, load_model, model_path
from ekg.monitor import Monitor, Ward, replay
from ekg.signals import read_signal
from helpers import beats_of, probabilities, stream

SHARED = find_data_dir()


@pytest.fixture(scope="module")
def blend():
    return FeatureBlend.load()


def test_the_shipped_blend_goes_with_the_recommended_model(model, blend):
    assert blend_path().name == "recommended_blend.json.gz"
    assert blend.meta["cnn"] == fingerprint(model)
    blend.check(model)
    other = load_model(model_path("signal_cnn_seed"))
    with pytest.raises(ValueError, match="chosen with the CNN"):
        blend.check(other)
    with pytest.raises(ValueError, match="chosen with the CNN"):
        Monitor(other, 360, blend=blend)
    with pytest.raises(ValueError, match="chosen with the CNN"):
        classify_record(SHARED / "100", other, blend=blend)
    # V from the feature model (chosen on the DS1 folds), thresholds for S and V
    assert blend.weights == {"V": 1.0} and set(blend.meta["thresholds"]) == {"S", "V"}


def test_gbm_probabilities_are_in_class_order(blend):
    features = baseline.load_features([119])
    p = blend.gbm_probs(features)
    assert p.shape == (len(features), len(CLASSES))
    np.testing.assert_allclose(p.sum(1), 1)
    assert (p[:, CLASSES.index("Q")] == 0).all()  # never learned
    # record 119's V beats (bigeminy) are V to the feature model, its N beats N
    truth = load_beats([119])["aami"].astype(str).to_numpy()
    assert (p[truth == "V"].argmax(1) == CLASSES.index("V")).mean() > 0.95
    assert (p[truth == "N"].argmax(1) == CLASSES.index("N")).mean() > 0.95


def test_classify_record_applies_the_blend_as_the_ensemble_scores_it(model, blend):
    record = 106  # DS1: N, V and a few F
    beats = load_beats([record])
    blended = classify_record(SHARED / str(record), model, blend=blend)
    alone = classify_record(SHARED / str(record), model)
    cnn = cv.classified_frame(beats, alone[cv.PROB_COLUMNS].to_numpy())
    gbm = cv.classified_frame(beats, blend.gbm_probs(baseline.load_features([record])))
    expected = ensemble.blend_frame(cnn, gbm, blend.weights, blend.meta["thresholds"])
    np.testing.assert_allclose(blended[cv.PROB_COLUMNS].to_numpy(), expected[cv.PROB_COLUMNS].to_numpy(), atol=1e-12)
    assert (blended["aami_pred"].to_numpy() == expected["aami_pred"].to_numpy()).all()
    assert (blended["aami_pred"] != alone["aami_pred"]).sum() > 0  # the blend decides, not the CNN


def test_one_beat_falls_back_to_the_cnn_with_a_warning(model, blend):
    signal = read_signal(SHARED / "100")[0][:3600]
    with pytest.warns(UserWarning, match="CNN alone"):
        p = classify_beats(model, signal, np.array([370]), blend=blend)
    np.testing.assert_allclose(p, classify_beats(model, signal, np.array([370])))


@pytest.fixture(scope="module")
def excerpt():
    return read_signal(SHARED / "119")[0][: 360 * 120]


def test_monitor_blend_equals_offline_blend(model, blend, excerpt):
    monitor = Monitor(model, 360, blend=blend)
    beats = beats_of(stream(monitor, excerpt, 90))
    assert len(beats) > 100 and sum(b["class"] == "V" for b in beats) > 20
    peaks = np.array([round(b["time"] * 360) for b in beats] + list(monitor.pending))
    offline = classify_beats(model, excerpt, peaks, blend=blend)[:len(beats)]
    live = probabilities(beats)
    # the same features from the same signal and the patient's own past beats: float32 buffers
    # against float64 offline, so equal to rounding
    np.testing.assert_allclose(live, offline, atol=1e-4, rtol=0)
    classes = np.asarray(CLASSES)[decide(live, blend.meta)]
    assert [b["class"] for b in beats] == list(classes)
    # and not the CNN's own probabilities
    cnn = classify_beats(model, excerpt, peaks)[:len(beats)]
    assert np.abs(live[:, CLASSES.index("V")] - cnn[:, CLASSES.index("V")]).max() > 0.05


def test_a_ward_decides_its_beats_with_the_blends_thresholds(model, blend, excerpt):
    # the blend's thresholds made far from the CNN's, so the two decisions part on many beats
    eager = copy.copy(blend)
    eager.meta = {**blend.meta, "thresholds": {"S": 1e-4, "V": 0.9}}
    ward = Ward(model, blend=eager)
    ward.add("a", 360)
    beats = beats_of([e for i in range(0, 360 * 60, 90) for e in ward.push({"a": excerpt[i:i + 90]})["a"]])
    live = probabilities(beats)
    assert [b["class"] for b in beats] == list(np.asarray(CLASSES)[decide(live, eager.meta)])
    assert (decide(live, eager.meta) != decide(live, model.meta)).sum() > 10


def test_a_ward_with_a_blend_gives_each_monitor_its_own_events(model, blend, excerpt):
    other = read_signal(SHARED / "208")[0][: 360 * 60]
    together = replay(model, {"a": (excerpt[: 360 * 60], 360), "b": (other, 360)}, chunk_s=0.5, blend=blend)
    for name, x in (("a", excerpt[: 360 * 60]), ("b", other)):
        alone = Monitor(model, 360, blend=blend)
        events = [e for i in range(0, len(x), 180) for e in alone.push(x[i:i + 180])]
        assert [e["type"] for e in events] == [e["type"] for e in together[name]]
        # the network's float32 sums differ by batch composition in the last bits
        np.testing.assert_allclose(probabilities(beats_of(events)), probabilities(beats_of(together[name])), atol=1e-6)
        assert [b["class"] for b in beats_of(events)] == [b["class"] for b in beats_of(together[name])]
    ward = Ward(model, blend=blend)
    assert ward.add("bed", 250).blend is blend


def test_fitted_blend_refuses_ds2(model):
    with pytest.raises(ValueError, match="DS1 patients only"):
        ensemble.fitted_blend([101, DS2[0]], {"V": 1.0}, {}, model)


def test_a_blend_on_other_features_is_refused(blend):
    spec = dict(blend.spec, features=baseline.FEATURES[:-1] + ["other"])
    with pytest.raises(ValueError, match="other features"):
        FeatureBlend(spec)
    with pytest.raises(ValueError, match="weights must lie"):
        FeatureBlend(dict(blend.spec, blend={**blend.spec["blend"], "weights": {"V": 2.0}}))


def test_gbm_probs_take_a_table_or_an_array(blend):
    features = baseline.load_features([100]).iloc[:50]
    a = blend.gbm_probs(features)
    b = blend.gbm_probs(features[baseline.FEATURES].to_numpy())
    np.testing.assert_allclose(a, b)
    shuffled = features[list(reversed(baseline.FEATURES))]  # columns found by name in a table
    np.testing.assert_allclose(blend.gbm_probs(shuffled), a)
    assert isinstance(shuffled, pd.DataFrame)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert blend.gbm_probs(np.zeros((0, len(baseline.FEATURES)))).shape == (0, len(CLASSES))


def test_the_monitor_decides_with_the_blends_thresholds(model, blend):
    # p(V) 0.5: past the blend's V threshold (0.43, chosen on the DS1 folds), short of the CNN's own (0.66)
    assert blend.meta["thresholds"]["V"] < 0.5 < model.meta["thresholds"]["V"]
    batch = {"peaks": [3600], "rr_prev": [0.8], "similarity": np.array([1.0]), "normal_similarity": np.array([np.nan]),
             "now": 3700}
    probs = np.array([[0.5, 0.0, 0.5, 0.0, 0.0]])
    blended, own = Monitor(model, 360, blend=blend), Monitor(model, 360)
    with_blend = beats_of(blended._finish(batch, probs, blended._classes(probs)))
    alone = beats_of(own._finish(batch, probs, own._classes(probs)))
    assert with_blend[0]["class"] == "V" and alone[0]["class"] == "N"


def test_fitted_blend_takes_the_gbm_already_fitted_as_its_own_fit(model, monkeypatch, tmp_path):
    # notebook 04 hands over the GBM it fitted for its DS2 table instead of asking for the same one again
    from sklearn.ensemble import HistGradientBoostingClassifier

    from ekg import config

    monkeypatch.setattr(config, "OUTPUT_ROOT", tmp_path)
    monkeypatch.setitem(baseline.GBM_PARAMS, "max_iter", 5)  # a quick fit
    records = [101, 106]
    fitted = baseline.fit_model("gbm", records)
    handed = ensemble.fitted_blend(records, {"V": 1.0}, {}, model, gbm=fitted)
    assert handed.spec["trees"] == fitted.spec["trees"]
    features = baseline.load_features([100]).iloc[:200]
    np.testing.assert_allclose(handed.gbm_probs(features), baseline.predict_proba(fitted, features), atol=1e-12)
    # asked again without it, the saved fit is read: nothing is fitted
    monkeypatch.setattr(HistGradientBoostingClassifier, "fit", lambda *args, **kwargs: pytest.fail("fitted again"))
    assert ensemble.fitted_blend(records, {"V": 1.0}, {}, model).spec["trees"] == handed.spec["trees"]
    with pytest.raises(ValueError, match="settings"):  # the fit of other patients
        ensemble.fitted_blend([101, 108], {"V": 1.0}, {}, model, gbm=fitted)
    with pytest.raises(ValueError, match="settings"):  # not fit_model's (never fitted)
        ensemble.fitted_blend(records, {"V": 1.0}, {}, model, gbm=baseline.make_model("gbm"))
