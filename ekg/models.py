"""The three networks (the seed's CNN, an image CNN, a signal CNN with rhythm inputs) and their
files: saving, loading with weights_only=True, and where the trained ones live.

Also decide: the class each beat gets from a model's probabilities and the per-class decision
thresholds in its metadata (classify_record and the monitor both call it).

Imports: config, data, features (the rhythm inputs), NumPy, torch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import config
from .data import CLASSES
from .features import RHYTHM_FEATURES, RR_NEXT_COLUMNS


class SeedCNN(nn.Module):
    """The seed's best model, as it was: two 3x3 convolutions of 4 filters on a 120x120 image,
    each followed by ReLU and 2x2 max-pooling, dropout 0.5, one linear layer 3600 -> 5."""

    def __init__(self, n_classes=5):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 30 * 30, n_classes)

    def forward(self, image):
        x = F.max_pool2d(F.relu(self.conv1(image)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(self.dropout(x.flatten(1)))


def _conv_block(cin, cout, dims, kernel):
    conv, bn, pool = ((nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dims == 2
                      else (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d))
    return nn.Sequential(conv(cin, cout, kernel, padding=kernel // 2, bias=False), bn(cout),
                         nn.ReLU(inplace=True), pool(2))


class ImageCNN(nn.Module):
    """An image CNN built for beat pictures: four conv-BN-ReLU-pool blocks, global pooling."""

    def __init__(self, n_classes=5, width=16):
        super().__init__()
        chans = [1, width, 2 * width, 4 * width, 8 * width]
        self.features = nn.Sequential(*[_conv_block(a, b, 2, 3) for a, b in zip(chans, chans[1:])])
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(2 * chans[-1], n_classes))

    def forward(self, image):
        x = self.features(image)
        return self.head(torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1))


class SignalCNN(nn.Module):
    """A 1-D CNN on the patient-scaled beat (and beat minus the running template), a 2-s context,
    and the rhythm columns (features.RHYTHM_FEATURES: intervals in seconds and relative).

    rr_next_cap_s: if set, the model sees the RR interval to the next beat only up to this many
    seconds (longer ones as equal to it, in seconds and in the ratios), so a live monitor can
    classify a beat at most rr_next_cap_s plus the detector's decision time after it.
    drop_rhythm: rhythm columns set to 0 after the cap (the ablation study's models only).
    """

    def __init__(self, n_classes=5, width=16, n_rhythm=len(RHYTHM_FEATURES), rr_next_cap_s=None, drop_rhythm=()):
        super().__init__()
        self.rr_next_cap_s = rr_next_cap_s
        self.drop_rhythm = tuple(drop_rhythm)
        keep = torch.ones(n_rhythm)
        keep[list(self.drop_rhythm)] = 0
        self.register_buffer("rhythm_keep", keep, persistent=False)
        self.beat = nn.Sequential(_conv_block(2, width, 1, 7), _conv_block(width, width, 1, 5),
                                  _conv_block(width, 2 * width, 1, 5), _conv_block(2 * width, 2 * width, 1, 3))
        self.context = nn.Sequential(_conv_block(1, width // 2, 1, 7), _conv_block(width // 2, width, 1, 5),
                                     _conv_block(width, width, 1, 3))
        # the rhythm columns mix seconds and ratios: batch norm puts them on one scale
        self.rhythm = nn.Sequential(nn.BatchNorm1d(n_rhythm), nn.Linear(n_rhythm, 32), nn.ReLU(),
                                    nn.Linear(32, 32), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(4 * width + 2 * width + 32, 64), nn.ReLU(), nn.Dropout(0.3),
                                  nn.Linear(64, n_classes))

    def extra_repr(self):
        return f"rr_next_cap_s={self.rr_next_cap_s}, drop_rhythm={self.drop_rhythm}"

    def capped(self, rhythm):
        """The rhythm columns as the model sees them: the next interval capped at rr_next_cap_s."""
        if not self.rr_next_cap_s:
            return rhythm
        c = RR_NEXT_COLUMNS
        rhythm = rhythm.clone()
        nxt = torch.clamp(rhythm[:, c["seconds"]], max=self.rr_next_cap_s)
        rhythm[:, c["seconds"]] = nxt
        rhythm[:, c["next / local"]] = nxt / rhythm[:, c["local"]]
        rhythm[:, c["next / long"]] = nxt / rhythm[:, c["long"]]
        return rhythm

    def forward(self, beat, context, rhythm):
        rhythm = self.capped(rhythm) * self.rhythm_keep
        b, c = self.beat(beat), self.context(context)
        pooled = [b.mean(2), b.amax(2), c.mean(2), c.amax(2), self.rhythm(rhythm)]
        return self.head(torch.cat(pooled, 1))


ARCHITECTURES = {"SeedCNN": SeedCNN, "ImageCNN": ImageCNN, "SignalCNN": SignalCNN}


def load_checkpoint(path) -> dict:
    """torch.load with weights_only=True: tensors and plain containers only, never pickled code.

    Raises ValueError naming the file if it holds anything else.
    """
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} holds pickled Python objects, not only weights and plain data; "
                         f"refusing to load it (weights_only=True)") from err


def save_model(path, model, meta) -> Path:
    """Save weights and plain-data metadata (no pickled code) so load_model can rebuild the model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "meta": meta}, path)
    return path


def load_model(path, device="cpu"):
    """Return the model saved at path, in eval mode, with its metadata dict as model.meta.

    meta holds the class order, sampling rate, input kind, window, normalisation,
    training split and validation metrics.
    """
    saved = load_checkpoint(path)
    meta = saved["meta"]
    rhythm = meta.get("input", {}).get("rhythm")
    if rhythm is not None and list(rhythm) != RHYTHM_FEATURES:
        raise ValueError(f"{path} was trained on the rhythm inputs {list(rhythm)}, but features.py now computes "
                         f"{RHYTHM_FEATURES}: retrain it (notebook 03) before using it")
    model = ARCHITECTURES[meta["arch"]](**meta.get("arch_kwargs", {}))
    model.load_state_dict(saved["state_dict"])
    model.meta = meta
    return model.to(device).eval()


def saved_model(path, **expected):
    """Return the model saved at path (load_model, with model.meta) if its metadata holds every
    expected key with the expected value, else None: a missing file, another architecture or inputs,
    any other setting, or EKG_RETRAIN=1 (config.RETRAIN) mean the model is to be trained again.

    Notebook 03 reuses a model this way instead of retraining it: the same settings and seed on
    another CPU give other weights (the order of floating-point sums differs), so retraining would
    silently replace the committed model and every number scored with it.
    """
    path = Path(path)
    if config.RETRAIN or not path.is_file():
        return None
    try:
        model = load_model(path)
    except (ValueError, RuntimeError, KeyError):  # not a checkpoint, another architecture or other inputs
        return None
    return model if all(model.meta.get(key) == value for key, value in expected.items()) else None


def fingerprint(model) -> str:
    """Return a short SHA-256 of a model's weights (names, shapes and values): what a blend file
    (ekg.blend) records of the CNN it was chosen with, so it is never paired with another."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def model_path(name) -> Path:
    """Return models/NAME.pt under the output root, or the committed one in the repository."""
    for base in (config.OUTPUT_ROOT, config.ROOT):
        if (base / "models" / f"{name}.pt").is_file():
            return base / "models" / f"{name}.pt"
    return config.OUTPUT_ROOT / "models" / f"{name}.pt"


def decide(probs, meta=None) -> np.ndarray:
    """Return the class index (CLASSES order) of each row of probabilities (n, 5) under the model's
    per-class decision thresholds, meta["thresholds"] ({class: t}, chosen on out-of-fold
    predictions by cv.pick_thresholds); the plain argmax when there are none.

    The one decision rule (cv.apply_thresholds applies it to out-of-fold probabilities):
    a beat gets the thresholded class c with the largest p_c / t_c among those with p_c >= t_c;
    a beat with none gets the most probable of the other classes.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(CLASSES):
        raise ValueError(f"probabilities must have shape (n, {len(CLASSES)}), not {probs.shape}")
    thresholds = dict((meta or {}).get("thresholds") or {})
    unknown = set(thresholds) - set(CLASSES)
    if unknown:
        raise ValueError(f"thresholds for unknown classes {sorted(unknown)}; classes are {CLASSES}")
    if not thresholds or len(probs) == 0:
        return probs.argmax(1) if len(probs) else np.zeros(0, dtype=np.int64)
    idx = [CLASSES.index(c) for c in thresholds]
    t = np.array([float(thresholds[c]) for c in thresholds])
    if not ((t > 0) & (t <= 1)).all():
        raise ValueError(f"thresholds must lie in (0, 1], got {thresholds}")
    ratio = probs[:, idx] / t
    passing = ratio >= 1
    rest = [i for i in range(len(CLASSES)) if i not in idx] or list(range(len(CLASSES)))
    otherwise = np.asarray(rest)[probs[:, rest].argmax(1)]
    chosen = np.asarray(idx)[np.where(passing, ratio, -np.inf).argmax(1)]
    return np.where(passing.any(1), chosen, otherwise)
