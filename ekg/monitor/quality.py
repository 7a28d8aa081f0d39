"""Signal quality of one block of samples (ok, missing, flat (lead off), saturated or noisy), and of
one beat: how much it looks like the beat before it.

Imports: data (the MIT-BIH rate), monitor.alarms (the thresholds), NumPy.
"""
from __future__ import annotations

import numpy as np

from ..data import FS
from .alarms import ALARM_THRESHOLDS


def block_quality(x, thresholds=ALARM_THRESHOLDS, fs=FS, adc_limits=None) -> str:
    """Return the quality of one block of samples: "ok", "missing", "flat", "saturated" or "noisy".
    A block with more than a tenth of its samples missing (NaN) is "missing"; otherwise its present
    samples are judged by block_qualities' rules (written once, there)."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) == 0:
        return "ok"
    if np.isnan(x).mean() > 0.1:
        return "missing"
    return block_qualities(x[~np.isnan(x)][None], thresholds, fs, adc_limits)[0]


def block_qualities(blocks, thresholds=ALARM_THRESHOLDS, fs=FS, adc_limits=None) -> list:
    """Return block_quality of each row of blocks (n, m), in one pass over the rows without a missing
    sample: flat (peak-to-peak under flat_mv), saturated (a run of saturation_s at the converter's
    limits, or at the block's own extremes when they are unknown), noisy (the median absolute second
    difference over noise_mv), else ok; rows with a missing sample go through block_quality. A Ward
    judges one block per patient per second: one call for all of them (one median over the rows
    instead of one per block) gave a ward of 1,000 patients 3-8% more ECG per CPU-second, back to back
    on a 2-core AMD EPYC (a profile had promised about a tenth: its own overhead inflates the many
    small calls)."""
    x = np.asarray(blocks, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"blocks must be a 2-D array (blocks, samples), not of shape {x.shape}")
    states = np.full(len(x), "ok", dtype=object)
    if x.shape[1] == 0:
        return [str(state) for state in states]
    gaps = np.isnan(x).any(axis=1)
    for i in np.flatnonzero(gaps):
        states[i] = block_quality(x[i], thresholds, fs, adc_limits)
    rows = np.flatnonzero(~gaps)
    x = x[rows]
    low, high = x.min(axis=1), x.max(axis=1)
    flat = (high - low) < thresholds["flat_mv"]
    run = max(int(thresholds["saturation_s"] * fs), 2)
    if adc_limits is not None:
        at_limit = (x <= adc_limits[0]) | (x >= adc_limits[1])
    else:  # unknown ADC range: a flat run at the block's own extreme is a clipped signal
        at_limit = (x >= high[:, None]) | (x <= low[:, None])
    same = np.concatenate([np.zeros((len(x), 1), bool), np.diff(x, axis=1) == 0], axis=1) & at_limit
    saturated = np.zeros(len(x), bool)
    if x.shape[1] >= run:
        for k in np.flatnonzero(same.sum(axis=1) >= run - 1):  # few rows: the run itself is checked per row
            saturated[k] = np.lib.stride_tricks.sliding_window_view(same[k], run - 1).all(axis=1).any()
    noisy = np.zeros(len(x), bool)
    if x.shape[1] > 3:
        noisy = np.median(np.abs(np.diff(x, 2, axis=1)), axis=1) > thresholds["noise_mv"]
    states[rows] = np.where(flat, "flat", np.where(saturated, "saturated", np.where(noisy, "noisy", "ok")))
    return [str(state) for state in states]


#: beat_similarity's QRS region (100 ms each side of the R peak) and the furthest it shifts the
#: previous beat (40 ms): a detector's fiducial point can sit on either lobe of a wide complex.
SIMILARITY_HALF_S, SIMILARITY_LAG_S = 0.1, 0.04


def beat_similarity(windows, previous, fs=FS) -> np.ndarray:
    """Return, for each beat window (n, m; the R peak at the centre), the correlation of its QRS region
    with the same row of previous (n, m: the beat before it, or the patient's running template), the
    best over shifts of up to SIMILARITY_LAG_S: 1 for the same shape at any size; NaN where previous
    is NaN (no beat before).

    Electrode-motion noise makes the QRS detector find "beats" that are bumps of noise; they tend to
    look less like their neighbours than the beats of a real rhythm, ventricular tachycardia included,
    which repeat their shape. The Monitor takes the closer of a beat's likeness to the beat before it
    and to the patient's running template for its rhythm rules (ALARM_THRESHOLDS' rate_min_similarity,
    vt_min_similarity). Only in part: smooth bumps of noise often correlate well with a QRS, and on
    DS1 the VT gate removed about a quarter of the false VT alarms (benchmarks/tune_noise_ds1.py)."""
    windows, previous = np.asarray(windows, dtype=np.float64), np.asarray(previous, dtype=np.float64)
    if windows.ndim != 2 or previous.shape != windows.shape:
        raise ValueError(f"beat windows (n, samples) and their previous beats of the same shape are needed, "
                         f"not {windows.shape} and {previous.shape}")
    half, lag = int(round(SIMILARITY_HALF_S * fs)), int(round(SIMILARITY_LAG_S * fs))
    centre = windows.shape[1] // 2
    if centre - half - lag < 0 or centre + half + lag > windows.shape[1]:
        raise ValueError(f"beat windows of {windows.shape[1]} samples are too short for beat_similarity at {fs} Hz")

    def unit(x):
        x = x - x.mean(axis=-1, keepdims=True)
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)

    own = unit(windows[:, centre - half:centre + half])
    best = np.full(len(windows), -1.0)
    for shift in range(-lag, lag + 1):  # NaN (no previous beat) stays NaN through np.maximum
        best = np.maximum(best, np.sum(own * unit(previous[:, centre - half + shift:centre + half + shift]), axis=1))
    return best
