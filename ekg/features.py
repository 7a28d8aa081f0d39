"""The signal model's inputs: each beat compared with the same patient's recent beats.

Causal (only past beats enter, and the next R peak), so the live monitor computes the same
numbers beat by beat as training did. Imports: config, data, NumPy.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import config
from .data import CONTEXT, FS, _records_arg, causal_local_rr, load_beats, load_windows


#: Samples before/after the R peak that the signal model's beat branch sees (0.36 s each way).
BEAT_WINDOW = (128, 128)


#: The wide context (CONTEXT, 2 s) is averaged in blocks of this many samples (90 Hz).
CONTEXT_STEP = 4


#: Beats of the patient's own recent past that form the template and typical amplitude.
TEMPLATE_BEATS = 32


#: Half-width of the QRS region whose peak-to-peak gives a beat's amplitude (50 ms).
QRS_HALF = 18


RHYTHM_FEATURES = ["rr_prev / local RR", "rr_next / local RR", "local RR (s)", "amplitude / typical"]


def causal_median(x, n=TEMPLATE_BEATS) -> np.ndarray:
    """Return, for each row i of x, the median of rows i-n .. i-1 (the past only).

    Before n beats have passed, the missing history is filled with copies of the
    first beat, so row 0 gets itself; a live monitor fills its history the same way.
    """
    x = np.asarray(x, dtype=np.float32)
    padded = np.concatenate([np.repeat(x[:1], n, axis=0), x])
    windows = np.lib.stride_tricks.sliding_window_view(padded, n, axis=0)[:len(x)]
    return np.median(windows, axis=-1).astype(np.float32)


def beat_parts(context, baseline=None) -> tuple:
    """Return (ctx, beat, amplitude) for context windows (n, 720) in mV: the windows less their
    baseline (each row's median unless given), the beat window (n, 256) and the QRS peak-to-peak."""
    context = np.asarray(context, dtype=np.float32)
    centre = context.shape[1] // 2
    if baseline is None:
        baseline = np.median(context, axis=1)
    ctx = context - np.asarray(baseline, dtype=np.float32)[:, None]  # baseline wander: median of 2 s
    beat = ctx[:, centre - BEAT_WINDOW[0]:centre + BEAT_WINDOW[1]]
    qrs = ctx[:, centre - QRS_HALF:centre + QRS_HALF]
    return ctx, beat, qrs.max(axis=1) - qrs.min(axis=1)


def patient_inputs(context, rr_prev, rr_next, rr_local) -> dict:
    """Return the signal model's inputs for one record's beats, in time order.

    context: (n, 720) channel-0 windows in mV around each R peak; RR values in seconds.
    Each beat is compared with the same patient's recent beats, never with the
    future: amplitude is divided by the patient's typical QRS amplitude (median of
    the last 32 beats), a second channel holds the beat minus the median of those
    32 beats, and RR intervals are divided by the local average RR. Per-beat
    z-scoring would erase the amplitude that marks V beats.
    The first beat of the record stands in for the beats before it; a live monitor
    computes the same numbers beat by beat (_ward_inputs).
    Returns {"beat": (n, 2, 256), "context": (n, 1, 180), "rhythm": (n, 4)}, float32.
    """
    ctx, beat, amplitude = beat_parts(context)
    return _inputs_from_parts(ctx, beat, amplitude, causal_median(amplitude), causal_median(beat),
                              rr_prev, rr_next, rr_local)


def _inputs_from_parts(ctx, beat, amplitude, typical, template, rr_prev, rr_next, rr_local) -> dict:
    """The model inputs from beat_parts, the causal medians of amplitude and beat, and RR values."""
    typical = np.maximum(typical, 0.05)[:, None]  # never divide by noise
    rr_prev, rr_next = np.asarray(rr_prev, dtype=np.float64), np.asarray(rr_next, dtype=np.float64)
    reference = np.asarray(rr_local, dtype=np.float64).copy()
    for fallback in (rr_prev, rr_next):  # the first beats of a record have no local average yet
        reference = np.where(np.isnan(reference), fallback, reference)
    reference = np.clip(np.nan_to_num(reference, nan=0.8), 0.2, 3.0)

    def ratio(rr):
        return np.clip(np.nan_to_num(rr / reference, nan=1.0), 0, 4)

    rhythm = np.stack([ratio(rr_prev), ratio(rr_next), reference,
                       np.clip(amplitude / typical[:, 0], 0, 5)], axis=1)
    return {
        "beat": np.stack([beat / typical, (beat - template) / typical], axis=1).astype(np.float32),
        "context": (ctx / typical).reshape(len(ctx), -1, CONTEXT_STEP).mean(-1)[:, None].astype(np.float32),
        "rhythm": rhythm.astype(np.float32),
    }


def beats_from_signal(signal, samples) -> tuple:
    """Return (context windows (n, 720), rr_prev, rr_next, rr_local) for R peaks in a 360-Hz signal."""
    samples = np.asarray(samples, dtype=int)
    rr = np.diff(samples) / FS
    rr_prev, rr_next = np.r_[np.nan, rr], np.r_[rr, np.nan]
    before, after = CONTEXT
    padded = np.pad(np.nan_to_num(signal), (before, after), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, before + after)[samples]
    return np.ascontiguousarray(windows, dtype=np.float32), rr_prev, rr_next, causal_local_rr(rr_prev)


@lru_cache(maxsize=None)
def _record_inputs(record: int) -> dict:
    path = config.CACHE_DIR / "inputs_v1" / f"{record}.npz"
    if not path.is_file():
        beats = load_beats([record])
        inputs = patient_inputs(load_windows([record], *CONTEXT), beats["rr_prev"], beats["rr_next"],
                                beats["rr_local"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **inputs)
        tmp.replace(path)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def load_inputs(records=None) -> dict:
    """Return patient_inputs for the given records, rows as in load_beats(records); cached on disk."""
    parts = [_record_inputs(r) for r in _records_arg(records)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
