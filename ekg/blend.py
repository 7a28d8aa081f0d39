"""The signal CNN and the feature baseline's gradient-boosted model combined, for live use.

ekg.ensemble chooses the blend on the DS1 folds (the GBM's share of each class's probability and
the per-class decision thresholds); this module holds what classify_record and the monitor need to
apply it: blend_probs (p_c = (1 - w_c) * cnn_c + w_c * gbm_c, rows renormalised) and FeatureBlend,
the GBM's trees (ekg.trees: plain numbers, no pickle) with the weights, the thresholds and the
fingerprint of the CNN they were chosen with, in one file (models/recommended_blend.json.gz,
written by notebook 04).
Imports: baseline (the features), config (where models live), data, models (decide's thresholds, the CNN's fingerprint), trees;
NumPy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import baseline, config
from .data import CLASSES
from .models import fingerprint
from .trees import TreeModel, read_spec, write_spec

#: The recommended blend's file name under models/ (notebook 04 writes it beside recommended.pt).
BLEND_FILE = "recommended_blend.json.gz"


def weight_vector(weights) -> np.ndarray:
    """The GBM's share per class in CLASSES order from a float (every class) or {class: share}."""
    if isinstance(weights, dict):
        unknown = set(weights) - set(CLASSES)
        if unknown:
            raise ValueError(f"weights for unknown classes {sorted(unknown)}; classes are {CLASSES}")
        w = np.array([float(weights.get(c, 0.0)) for c in CLASSES])
    else:
        w = np.full(len(CLASSES), float(weights))
    if not np.all((w >= 0) & (w <= 1)):
        raise ValueError(f"blend weights must lie in [0, 1], got {weights}")
    return w


def blend_probs(cnn_probs, gbm_probs, weights) -> np.ndarray:
    """Return blended class probabilities (n, 5), CLASSES order, each row summing to 1.

    weights: the GBM's share, a float for every class or {class: share} (classes left out get 0,
    the CNN's probability). p_c = (1 - w_c) * cnn_c + w_c * gbm_c, then each row is divided by
    its sum (with per-class weights the rows no longer sum to 1 on their own).
    """
    cnn_probs = np.asarray(cnn_probs, dtype=np.float64)
    gbm_probs = np.asarray(gbm_probs, dtype=np.float64)
    if cnn_probs.shape != gbm_probs.shape or cnn_probs.ndim != 2 or cnn_probs.shape[1] != len(CLASSES):
        raise ValueError(f"probabilities must both have shape (n, {len(CLASSES)}); got {cnn_probs.shape} "
                         f"and {gbm_probs.shape}")
    w = weight_vector(weights)
    mixed = (1 - w) * cnn_probs + w * gbm_probs
    total = mixed.sum(1, keepdims=True)
    return mixed / np.where(total > 0, total, 1.0)


def blend_path() -> Path:
    """Return models/recommended_blend.json.gz under the output root, or the committed one."""
    for base in (config.OUTPUT_ROOT, config.ROOT):
        if (base / "models" / BLEND_FILE).is_file():
            return base / "models" / BLEND_FILE
    return config.OUTPUT_ROOT / "models" / BLEND_FILE


class FeatureBlend:
    """The feature baseline's GBM as plain trees, with the blend's weights and decision thresholds.

    probs(cnn_probs, features) returns the blended probabilities; decide(probs, blend.meta) the
    classes (meta["thresholds"], chosen on DS1 out of fold). check(model) refuses a CNN other than
    the one the blend was chosen with (its weights' fingerprint).
    """

    def __init__(self, spec):
        if list(spec["features"]) != baseline.FEATURES:
            raise ValueError("the blend's GBM was fitted on other features than ekg.baseline computes now: "
                             "refit it (notebook 04)")
        unknown = set(spec["classes"]) - set(CLASSES)
        if unknown:
            raise ValueError(f"the blend's GBM has unknown classes {sorted(unknown)}")
        self.trees = TreeModel(spec)
        blend = spec["blend"]
        self.weights = blend["weights"]
        weight_vector(self.weights)  # checked now, not at the first beat
        self.meta = {"thresholds": dict(blend.get("thresholds") or {}), "weights": self.weights,
                     "cnn": blend.get("cnn"), **{k: v for k, v in blend.items() if k not in ("weights", "thresholds")}}
        self.spec = spec
        self._columns = [CLASSES.index(c) for c in self.trees.classes]

    @classmethod
    def from_spec(cls, spec, weights, thresholds, model=None, **info) -> "FeatureBlend":
        """Build a blend from a GBM's trees (trees.export_trees of a HistGradientBoostingClassifier
        fitted on baseline.FEATURES), the weights and thresholds (ensemble.choose_blend's), and the
        CNN they were chosen with (None: any). info: more fields for the blend's metadata."""
        blend = {"weights": weights, "thresholds": dict(thresholds or {}),
                 "cnn": fingerprint(model) if model is not None else None, **info}
        return cls({**spec, "blend": blend})

    @classmethod
    def load(cls, path=None) -> "FeatureBlend":
        """Return the blend saved at path (default: the recommended one, blend_path())."""
        path = Path(path) if path is not None else blend_path()
        if not path.is_file():
            raise FileNotFoundError(f"blend file {path} not found (notebook 04 writes {BLEND_FILE})")
        return cls(read_spec(path))

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_spec(self.spec, path)

    def check(self, model) -> None:
        """Raise ValueError unless model is the CNN this blend was chosen with."""
        if self.meta["cnn"] is not None and fingerprint(model) != self.meta["cnn"]:
            raise ValueError(f"this blend was chosen with the CNN {self.meta['cnn']}, not with this model "
                             f"({fingerprint(model)}): its weights and thresholds do not fit it")

    def gbm_probs(self, features) -> np.ndarray:
        """Return the GBM's class probabilities (n, 5) in CLASSES order (classes it never learned: 0)."""
        x = features[baseline.FEATURES].to_numpy(np.float64) if hasattr(features, "columns") else features
        out = np.zeros((len(x), len(CLASSES)))
        if len(x):
            out[:, self._columns] = self.trees.predict_proba(x)
        return out

    def probs(self, cnn_probs, features) -> np.ndarray:
        """Return the blended probabilities (n, 5) of beats with the CNN's probabilities and baseline.FEATURES."""
        return blend_probs(cnn_probs, self.gbm_probs(features), self.weights)
