"""Gradient-boosted tree ensembles stored as plain numbers and evaluated with NumPy.

scikit-learn's HistGradientBoostingClassifier is fitted offline (the VF detector's monitor.vf_fit,
the feature baseline's GBM in ekg.baseline); the live path must not unpickle a scikit-learn object
(a pickle runs code on load, and ties the file to one scikit-learn version), so export_trees turns a
fitted model into lists of numbers (JSON, optionally gzipped) and TreeModel evaluates them: all trees
step down one level at a time for all rows at once. scikit-learn offers no public export of its
fitted trees, hence this module.
Imports: NumPy only.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np


def export_trees(clf, features, **info) -> dict:
    """Return a fitted HistGradientBoostingClassifier as plain numbers for TreeModel: the feature
    names, the classes, the baseline raw score per output (1 for two classes, one per class
    otherwise), and the trees in fitting order (iteration by iteration, one tree per output),
    each as node tables (feature, threshold, left, right, leaf, value, missing_left). Reads the
    fitted predictors' node tables (a private attribute). info: more fields for the file."""
    if getattr(clf, "is_categorical_", None) is not None and np.any(clf.is_categorical_):
        raise ValueError("categorical features are not supported by TreeModel")
    if clf.n_features_in_ != len(features):
        raise ValueError(f"the model was fitted on {clf.n_features_in_} features, {len(features)} names given")
    trees = []
    for iteration in clf._predictors:
        for predictor in iteration:
            nodes = predictor.nodes
            trees.append({"feature": nodes["feature_idx"].tolist(), "threshold": nodes["num_threshold"].tolist(),
                          "left": nodes["left"].tolist(), "right": nodes["right"].tolist(),
                          "leaf": nodes["is_leaf"].astype(int).tolist(), "value": nodes["value"].tolist(),
                          "missing_left": nodes["missing_go_to_left"].astype(int).tolist()})
    baseline = np.ravel(clf._baseline_prediction).astype(float).tolist()
    return {"features": list(features), "classes": [str(c) for c in clf.classes_],
            "baseline": baseline[0] if len(baseline) == 1 else baseline, "trees": trees, **info}


def write_spec(spec, path) -> Path:
    """Write a TreeModel spec as JSON (gzipped when the name ends in .gz); return the path."""
    path = Path(path)
    text = json.dumps(spec, separators=(",", ":")).encode()
    path.write_bytes(gzip.compress(text, mtime=0) if path.suffix == ".gz" else text)
    return path


def read_spec(path) -> dict:
    """Return the spec in a JSON file written by write_spec (gzipped when the name ends in .gz)."""
    path = Path(path)
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)


def _compiled_predictors(trees):
    """Return scikit-learn's compiled tree evaluators (its TreePredictor, built from the node
    tables: nothing unpickled), or None where this scikit-learn lacks them. A private API, hence
    the fallback; the NumPy path (TreeModel.raw with compiled=False) gives the same numbers."""
    try:
        from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
        from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    except ImportError:
        return None
    out = []
    for t in trees:
        nodes = np.zeros(len(t["feature"]), dtype=PREDICTOR_RECORD_DTYPE)
        for field, key in [("feature_idx", "feature"), ("num_threshold", "threshold"), ("left", "left"),
                           ("right", "right"), ("is_leaf", "leaf"), ("value", "value"),
                           ("missing_go_to_left", "missing_left")]:
            nodes[field] = t.get(key, 0)
        empty = np.zeros((0, 8), dtype=np.uint32)
        out.append(TreePredictor(nodes, empty, empty))
    try:  # the call's signature is part of the private API too: try it once
        out[0].predict(np.zeros((1, 1 + int(max(max(t["feature"]) for t in trees)))), empty, None, 1)
    except TypeError:
        return None
    return out


class TreeModel:
    """A tree ensemble from export_trees, evaluated by scikit-learn's compiled tree code or NumPy.

    raw(X): the summed raw scores (n, outputs); probability(X): a two-class model's probability
    of its second class; predict_proba(X): (n, classes) probabilities, as scikit-learn's
    predict_proba gives them (softmax over the outputs, or the sigmoid for two classes). A missing
    value (NaN) goes the way the fitted node sent missing values in training.
    """

    def __init__(self, spec):
        trees = spec["trees"]
        if not trees:
            raise ValueError("a tree model needs at least one tree")
        self.features = list(spec["features"])
        self.classes = list(spec.get("classes") or [0, 1])
        self.baseline = np.atleast_1d(np.asarray(spec["baseline"], dtype=np.float64))
        self.outputs = len(self.baseline)
        if len(trees) % self.outputs:
            raise ValueError(f"{len(trees)} trees do not divide among {self.outputs} outputs")
        # all trees' nodes in one table, each tree's node numbers offset by where it starts; a leaf
        # points at itself, so stepping on from a leaf stays there
        sizes = np.array([len(t["feature"]) for t in trees])
        self.root = np.r_[0, np.cumsum(sizes)[:-1]]

        def column(key, fill, dtype):
            return np.concatenate([np.asarray(t.get(key, [fill] * len(t["feature"])), dtype=dtype) for t in trees])

        leaf = column("leaf", 1, bool)
        own = np.arange(len(leaf))
        offset = np.repeat(self.root, sizes)
        self.flat_left = np.where(leaf, own, column("left", 0, np.int64) + offset)
        self.flat_right = np.where(leaf, own, column("right", 0, np.int64) + offset)
        self.flat_feature = np.where(leaf, 0, column("feature", 0, np.int64))
        self.flat_threshold = column("threshold", 0.0, np.float64)
        # files written before missing values were handled (vf_model.json): scikit-learn's default
        # for features with no missing values in training, missing to the right
        self.flat_missing_left = column("missing_left", 0, bool)
        self.flat_value = column("value", 0.0, np.float64)
        self.depth = self._depth(trees)
        self._compiled = None
        self.output = np.arange(len(trees)) % self.outputs  # trees cycle through the outputs
        self.spec = spec

    @staticmethod
    def _depth(trees) -> int:
        """The deepest leaf's depth over all trees (the levels raw() must step down)."""
        deepest = 0
        for t in trees:
            depth, stack = {0: 0}, [0]
            while stack:
                i = stack.pop()
                if not t["leaf"][i]:
                    for child in (t["left"][i], t["right"][i]):
                        depth[child] = depth[i] + 1
                        stack.append(child)
            deepest = max(deepest, max(depth.values()))
        return deepest

    @classmethod
    def load(cls, path) -> "TreeModel":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tree model {path} not found")
        return cls(read_spec(path))

    #: raw() takes NumPy up to this many node steps (rows x trees x depth) and scikit-learn's compiled
    #: code beyond, whose fixed cost per tree dominates small batches: the monitor's VF model (100
    #: trees of depth 3) scores one window per patient per second. Where the two paths cost the same,
    #: measured for both shipped models: benchmarks/logs/trees_small_batches_2026-11-29.txt.
    NUMPY_MAX_STEPS = 600_000

    def raw(self, features, compiled=None) -> np.ndarray:
        """Return the raw scores (n, outputs): the baseline plus the leaves reached in each output's
        trees, added in the trees' order. compiled: True for scikit-learn's compiled evaluator where it
        has one, False for NumPy, None to choose by size (NUMPY_MAX_STEPS); the numbers are the same."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"features must have shape (n, {len(self.features)}), not {x.shape}")
        out = np.repeat(self.baseline[None, :], len(x), axis=0)
        if len(x) == 0:
            return out
        if compiled is None:
            compiled = len(x) * len(self.root) * max(self.depth, 1) > self.NUMPY_MAX_STEPS
        if compiled and self._compiled is None:
            self._compiled = _compiled_predictors(self.spec["trees"]) or False
        if compiled and self._compiled:
            x = np.ascontiguousarray(x)
            empty = np.zeros((0, 8), dtype=np.uint32)
            for i, predictor in enumerate(self._compiled):
                out[:, self.output[i]] += predictor.predict(x, empty, None, 1)
            return out
        # every tree steps down one level at a time for all rows at once; a leaf points at itself
        n = len(x)
        flat_x = np.ascontiguousarray(x.T).ravel()  # feature-major: row r's feature f at f * n + r
        node = np.repeat(self.root[None, :], n, axis=0).ravel()
        row = np.repeat(np.arange(n), len(self.root))
        for _ in range(self.depth):
            value = flat_x[self.flat_feature[node] * n + row]
            go_left = np.where(np.isnan(value), self.flat_missing_left[node], value <= self.flat_threshold[node])
            node = np.where(go_left, self.flat_left[node], self.flat_right[node])
        reached = self.flat_value[node].reshape(n, len(self.root)).T
        for i, leaves in enumerate(reached):  # tree by tree, as the compiled path adds them: the same sums
            out[:, self.output[i]] += leaves
        return out

    @property
    def classes_(self) -> np.ndarray:
        """The classes in predict_proba's column order (scikit-learn's name)."""
        return np.asarray(self.classes)

    def probability(self, features) -> np.ndarray:
        """Return a two-class model's probability of its second class for each row."""
        if self.outputs != 1:
            raise ValueError(f"probability() is for two-class models; this one has {len(self.classes)} classes")
        return 1 / (1 + np.exp(-self.raw(features)[:, 0]))

    def predict_proba(self, features) -> np.ndarray:
        """Return (n, len(classes)) class probabilities, as scikit-learn's predict_proba."""
        raw = self.raw(features)
        if self.outputs == 1:
            p = 1 / (1 + np.exp(-raw[:, 0]))
            return np.stack([1 - p, p], axis=1)
        raw -= raw.max(axis=1, keepdims=True)
        e = np.exp(raw)
        return e / e.sum(axis=1, keepdims=True)


class FeatureTreeModel(TreeModel):
    """A TreeModel over one feature set (FEATURES, in this order): a spec fitted on other features is
    refused, since its trees would read the wrong columns; a missing file names the command that
    writes it. The VF detector's and the noise gate's models are these."""

    FEATURES: tuple = ()
    NAME = "tree model"
    WRITTEN_BY = ""

    def __init__(self, spec):
        if list(spec["features"]) != list(self.FEATURES):
            raise ValueError(f"{self.NAME} was fitted on features {spec['features']}, not the {list(self.FEATURES)} "
                             "it is given")
        super().__init__(spec)

    @classmethod
    def load(cls, path, **kwargs) -> "FeatureTreeModel":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{cls.NAME} {path} not found: write it with `{cls.WRITTEN_BY}`")
        return cls(read_spec(path), **kwargs)
