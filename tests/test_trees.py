"""ekg.trees: a fitted HistGradientBoostingClassifier exported as plain numbers gives scikit-learn's
own probabilities, by its compiled evaluator and by the NumPy fallback, missing values included."""
import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from ekg.trees import TreeModel, export_trees, read_spec, write_spec


def data(classes, seed=0, n=600):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    y = np.digitize(x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + 0.3 * rng.normal(size=n), np.linspace(-1, 1, classes - 1))
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values in training: some nodes send them left
    return x, np.asarray(list("NSVF"))[y]


@pytest.mark.parametrize("classes", [2, 4])
def test_exported_trees_give_scikit_learns_probabilities(classes):
    x, y = data(classes)
    clf = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=15, random_state=0).fit(x, y)
    spec = export_trees(clf, [f"f{i}" for i in range(5)])
    model = TreeModel(spec)
    test, _ = data(classes, seed=1)
    assert np.isnan(test).any()
    assert any(any(t["missing_left"]) for t in spec["trees"])
    for compiled in (True, False, None):
        raw = model.raw(test, compiled=compiled)
        np.testing.assert_allclose(raw, np.reshape(clf.decision_function(test), (len(test), -1)), rtol=0, atol=1e-12)
    # the two paths add the same leaves in the same order: not close, equal (raw() picks either by size)
    np.testing.assert_array_equal(model.raw(test, compiled=True), model.raw(test, compiled=False))
    np.testing.assert_allclose(model.predict_proba(test), clf.predict_proba(test), rtol=0, atol=1e-12)
    assert model.classes == list(clf.classes_)
    if classes == 2:
        np.testing.assert_allclose(model.probability(test), clf.predict_proba(test)[:, 1], rtol=0, atol=1e-12)
    else:
        with pytest.raises(ValueError, match="two-class"):
            model.probability(test)


def test_spec_round_trip_plain_and_gzipped(tmp_path):
    x, y = data(4)
    clf = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(x, y)
    spec = export_trees(clf, list("abcde"), fitted_on="test")
    for name in ("m.json", "m.json.gz"):
        path = write_spec(spec, tmp_path / name)
        assert read_spec(path) == spec
        np.testing.assert_allclose(TreeModel.load(path).predict_proba(x), clf.predict_proba(x), rtol=0, atol=1e-12)
    assert (tmp_path / "m.json.gz").read_bytes()[:2] == b"\x1f\x8b"


def test_bad_input_is_refused(tmp_path):
    x, y = data(2)
    clf = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(x, y)
    with pytest.raises(ValueError, match="5 features, 3 names"):
        export_trees(clf, list("abc"))
    model = TreeModel(export_trees(clf, list("abcde")))
    with pytest.raises(ValueError, match=r"shape \(n, 5\)"):
        model.raw(np.zeros((3, 4)))
    assert model.raw(np.zeros((0, 5))).shape == (0, 1)
    with pytest.raises(FileNotFoundError, match="not found"):
        TreeModel.load(tmp_path / "none.json")
