"""Classify any WFDB record with a trained model, at its reference beats or at the beats the
project's QRS detector finds, and match detections to reference beats as bxb does.

The top of the offline path. Imports: data, signals, features, batches, models, baseline and blend
(the CNN + feature-model blend, when one is given), monitor.qrs (the detector), NumPy, pandas,
torch, wfdb.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .baseline import beat_features
from .batches import BeatSet, predict
from .data import AAMI_MAP, BEAT_SYMBOLS, CLASSES, DataError
from .features import beats_from_signal, patient_inputs
from .models import decide
from .monitor.qrs import detect_beats
from .signals import read_signal, resample


#: bxb's match window: a detected beat within 150 ms of a reference beat is the same beat.
MATCH_WINDOW_S = 0.15


def match_beats(reference, detected, fs, window_s=MATCH_WINDOW_S):
    """Pair detected with reference beat positions (samples), each at most once, within window_s,
    with wfdb's Comparitor (the bxb-style matcher). Returns (ref_index, det_index) of the pairs."""
    from wfdb.processing import Comparitor

    reference, detected = np.asarray(reference, dtype=int), np.asarray(detected, dtype=int)
    if len(reference) == 0 or len(detected) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    comparison = Comparitor(reference, detected, int(round(window_s * fs)))
    comparison.compare()
    ref_idx = np.flatnonzero(comparison.matching_sample_nums >= 0)
    return ref_idx, comparison.matching_sample_nums[ref_idx].astype(int)


def vf_spans(symbols, samples) -> list:
    """Return the (start, end) samples of reference-marked ventricular flutter/fibrillation ("[" to "]")."""
    spans, start = [], None
    for sym, s in zip(symbols, samples):
        if sym == "[":
            start = s
        elif sym == "]" and start is not None:
            spans.append((start, s))
            start = None
    if start is not None:
        spans.append((start, np.inf))
    return spans


def in_spans(samples, spans) -> np.ndarray:
    """Return a mask of the samples that fall inside any (start, end) span."""
    samples = np.asarray(samples)
    mask = np.zeros(len(samples), bool)
    for a, b in spans:
        mask |= (samples >= a) & (samples <= b)
    return mask


def _blendable(samples) -> bool:
    """Whether the feature model can describe these beats: baseline.beat_features needs RR intervals,
    so at least two beats in increasing order."""
    return len(samples) >= 2 and bool(np.all(np.diff(samples) > 0))


def classify_beats(model, signal, samples, device="cpu", blend=None) -> np.ndarray:
    """Return class probabilities (n, 5) for beats at samples of a 360-Hz channel-0-like signal:
    the CNN's, or with a blend (blend.FeatureBlend) the CNN's blended with the feature model's on
    baseline.beat_features of the same beats (which need at least two beats in increasing order;
    otherwise the CNN's alone, with a warning)."""
    context, rr_prev, rr_next, rr_local = beats_from_signal(signal, samples)
    data = BeatSet.from_arrays(context, patient_inputs(context, rr_prev, rr_next, rr_local),
                               np.zeros(len(samples), np.int64))
    probs = predict(model, data, model.meta["input"], torch.device(device))
    if blend is None:
        return probs
    if not _blendable(samples):
        warnings.warn(f"{len(samples)} beat(s){' not in increasing order' if len(samples) >= 2 else ''}: "
                      "no RR intervals for the feature model, so the CNN alone classifies them", stacklevel=2)
        return probs
    return blend.probs(probs, beat_features(signal, samples, model.meta["fs"]))


def classify_record(record_path, model, beats="reference", channel=None, annotator="atr", blend=None) -> pd.DataFrame:
    """Classify every beat of a WFDB record with a loaded model; return one row per beat.

    beats="reference": at the annotated beat positions; beats="detect": at the beats
    found by the project's QRS detector (detect_beats). Any sampling rate: the
    signal is resampled to the model's. Columns: sample (in the record's own rate),
    time (s), aami_pred, p_N .. p_Q, and, where reference annotations exist,
    symbol and aami_true. With detected beats, detections are matched to reference
    beats within 150 ms as bxb does; a detection with no reference beat has
    aami_true "O", a reference beat with no detection has aami_pred "O", and a
    detection inside reference-marked ventricular flutter has aami_true "*" (bxb
    does not count those). blend: a blend.FeatureBlend chosen with this model (the
    recommended one: blend.FeatureBlend.load()); its probabilities and decision
    thresholds replace the CNN's.
    """
    import wfdb

    if beats not in ("reference", "detect"):
        raise ValueError(f"beats must be 'reference' or 'detect', not {beats!r}")
    if blend is not None:
        blend.check(model)
    signal, fs, _ = read_signal(record_path, channel)
    model_fs = model.meta["fs"]
    x = resample(signal, fs, model_fs)
    ref = None
    if Path(f"{record_path}.{annotator}").is_file():
        ann = wfdb.rdann(str(record_path), annotator)
        keep = np.isin(ann.symbol, BEAT_SYMBOLS)
        ref = pd.DataFrame({"sample": ann.sample[keep], "symbol": np.asarray(ann.symbol)[keep]})
        flutter = vf_spans(ann.symbol, ann.sample)
    elif beats == "reference":
        raise DataError(f"{record_path}.{annotator} not found: no reference beats to classify; use beats='detect'")
    if beats == "reference":
        positions = ref["sample"].to_numpy()
    else:
        positions = np.round(detect_beats(x, model_fs) * fs / model_fs).astype(int)
    at_model_rate = np.clip(np.round(positions * model_fs / fs).astype(int), 0, len(x) - 1)
    probs = classify_beats(model, x, at_model_rate, blend=blend) if len(positions) else np.zeros((0, len(CLASSES)))
    blended = blend is not None and _blendable(at_model_rate)
    out = pd.DataFrame({"sample": positions, "time": positions / fs,
                        "aami_pred": np.asarray(CLASSES)[decide(probs, blend.meta if blended else model.meta)]
                        if len(probs) else []})
    for i, c in enumerate(CLASSES):
        out[f"p_{c}"] = probs[:, i]
    if ref is None:
        return out
    if beats == "reference":
        return out.assign(symbol=ref["symbol"].to_numpy(), aami_true=ref["symbol"].map(AAMI_MAP).to_numpy())
    ref_i, det_i = match_beats(ref["sample"].to_numpy(), positions, fs)
    out["symbol"], out["aami_true"] = None, "O"
    out.loc[in_spans(positions, flutter), "aami_true"] = "*"  # inside reference VF: not counted (bxb)
    out.loc[det_i, "symbol"] = ref["symbol"].to_numpy()[ref_i]
    out.loc[det_i, "aami_true"] = ref["symbol"].map(AAMI_MAP).to_numpy()[ref_i]
    missed = ref.drop(index=ref_i).assign(time=lambda d: d["sample"] / fs, aami_pred="O",
                                          aami_true=lambda d: d["symbol"].map(AAMI_MAP))
    return pd.concat([out, missed], ignore_index=True).sort_values("sample", kind="stable").reset_index(drop=True)
