"""The signal model's inputs: each beat compared with the same patient's recent beats, with its
timing kept both in seconds and relative to the patient's rhythm.

Causal (only past beats enter, and the next R peak), so the live monitor computes the same
numbers beat by beat as training did. Also the recorder versions used to augment training: the
same record passed through another sampling rate and filter. Imports: config, data, NumPy,
pandas; scipy.signal and wfdb inside the function that builds recorder versions.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from . import config
from .data import CONTEXT, FS, _records_arg, causal_local_rr, find_data_dir, load_beats, load_windows, \
    record_files, record_key, verify_files


#: Samples before/after the R peak that the signal model's beat branch sees (0.36 s each way).
BEAT_WINDOW = (128, 128)


#: The wide context (CONTEXT, 2 s) is averaged in blocks of this many samples (90 Hz).
CONTEXT_STEP = 4


#: Beats of the patient's own recent past that form the template and typical amplitude.
TEMPLATE_BEATS = 32


#: Half-width of the QRS region whose peak-to-peak gives a beat's amplitude (50 ms).
QRS_HALF = 18


#: RR intervals in the local mean (the rhythm just before the beat) and in the long mean (a few
#: minutes at usual rates): prematurity against both, because the local mean follows a run of
#: ectopic beats and the long one does not.
LOCAL_BEATS = 10
LONG_BEATS = 256


#: The rhythm inputs, in column order. Seconds as well as ratios: where S beats are a patient's
#: usual rhythm (MIT-BIH 232) a ratio to the recent beats is near 1 and only absolute values
#: and the interval after the beat tell them apart. The next interval is the one look-ahead. The
#: spread of the local intervals tells an irregular rhythm (atrial fibrillation), where an early
#: beat is no ectopic beat, from a regular one.
RHYTHM_FEATURES = ["rr_prev (s)", "rr_next (s)", "local RR (s)", "long RR (s)",
                   "rr_prev / local RR", "rr_next / local RR", "rr_prev / long RR", "rr_next / long RR",
                   "previous beat's rr_prev / local RR", "amplitude / typical", "local RR sd / local RR"]
#: Columns that hold the interval to the next beat (the model caps it, models.SignalCNN) and the
#: references it is divided by.
RR_NEXT_COLUMNS = {"seconds": 1, "local": 2, "long": 3, "next / local": 5, "next / long": 7}


#: Recorder versions of each record for augmentation: (sampling rate it passes through, low-pass
#: corner in Hz or None). Monitors record at 125-500 Hz behind their own filters; classify_record
#: brings such a record back to 360 Hz, and training sees the result.
RECORDERS = {"native": (None, None), "via128": (128, None), "via250": (250, 40.0)}


def causal_median(x, n=TEMPLATE_BEATS) -> np.ndarray:
    """Return, for each row i of x, the median of rows i-n .. i-1 (the past only).

    Before n beats have passed, the missing history is filled with copies of the
    first beat, so row 0 gets itself; a live monitor fills its history the same way.
    """
    x = np.asarray(x, dtype=np.float32)
    padded = np.concatenate([np.repeat(x[:1], n, axis=0), x])
    windows = np.lib.stride_tricks.sliding_window_view(padded, n, axis=0)[:len(x)]
    return np.median(windows, axis=-1).astype(np.float32)


def median_of_rows(rows):
    """Return np.median(rows, axis=1) for rows (n, k, m) without NaN, the same numbers: numpy's median
    partitions along the strided middle axis, which at a ward's sizes took three times as long as
    sorting it (half of _ward_inputs' time)."""
    ordered = np.sort(rows, axis=1)
    k = rows.shape[1]
    if k % 2:
        return ordered[:, k // 2]
    return (ordered[:, k // 2 - 1] + ordered[:, k // 2]) / rows.dtype.type(2)


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


def align_template(beat, template, max_shift, half=QRS_HALF) -> np.ndarray:
    """Return each row of template (n, m) shifted by the whole number of samples, at most max_shift
    either way, that best matches the same row of beat (n, m) over its QRS region (half samples either
    side of the centre; least squared difference), the shifted-out end filled with the edge value.

    A beat whose R peak is placed a sample or two off the patient's usual point (a 128-Hz grid, another
    detector) otherwise leaves the slope of its QRS in beat - template. max_shift 0: template as given.
    Tried on DS1 (benchmarks/recorder_ds1.py's "aligned", aligned_template_ds1.py) and not adopted: no
    shipped model is trained with it, and the live monitor's inputs (monitor.stream) do not align."""
    beat, template = np.asarray(beat, dtype=np.float32), np.asarray(template, dtype=np.float32)
    if max_shift == 0 or len(beat) == 0:
        return template
    n, m = beat.shape
    centre = m // 2
    if centre - half - max_shift < 0 or centre + half + max_shift > m:
        raise ValueError(f"a template shift of {max_shift} samples does not fit windows of {m} samples")
    qrs = beat[:, centre - half:centre + half]
    shifts = np.arange(-max_shift, max_shift + 1)
    errors = np.stack([np.sum((qrs - template[:, centre - half + d:centre + half + d]) ** 2, axis=1)
                       for d in shifts], axis=1)
    best = shifts[np.argmin(errors, axis=1)]  # a tie goes to the most negative shift (argmin: first)
    idx = np.clip(np.arange(m)[None, :] + best[:, None], 0, m - 1)
    return np.take_along_axis(template, idx, axis=1)


def rr_history(rr_prev) -> tuple:
    """Return (rr_local, rr_long, rr_before, rr_spread) for RR intervals before each beat (s), in
    time order: the mean of the LOCAL_BEATS and of the LONG_BEATS intervals that ended before the
    beat's own, the previous beat's rr_prev, and the standard deviation (ddof 0) of the
    LOCAL_BEATS intervals (NaN where there is none yet). Past beats only."""
    rr_prev = np.asarray(rr_prev, dtype=np.float64)
    past = pd.Series(rr_prev).shift(1)
    return (causal_local_rr(rr_prev, LOCAL_BEATS), causal_local_rr(rr_prev, LONG_BEATS),
            past.to_numpy(), past.rolling(LOCAL_BEATS, min_periods=1).std(ddof=0).to_numpy())


def rhythm_inputs(rr_prev, rr_next, rr_local, rr_long, rr_before, rr_spread, amplitude, typical) -> np.ndarray:
    """Return the RHYTHM_FEATURES columns (n, 11), float32, from RR values in seconds (NaN where
    unknown) and the QRS amplitude with the patient's typical one.

    A missing local mean (the record's first beats) falls back to the beat's own intervals, then to
    0.8 s; a missing long mean to the local one; a missing interval to the local mean. The
    interval to the next beat is kept up to 5 s here; the model applies its own cap.
    """
    rr_prev, rr_next = np.asarray(rr_prev, dtype=np.float64), np.asarray(rr_next, dtype=np.float64)
    local = np.asarray(rr_local, dtype=np.float64).copy()
    for fallback in (rr_prev, rr_next):
        local = np.where(np.isnan(local), fallback, local)
    local = np.clip(np.nan_to_num(local, nan=0.8), 0.2, 3.0)
    long = np.asarray(rr_long, dtype=np.float64)
    long = np.clip(np.where(np.isnan(long), local, long), 0.2, 3.0)

    def seconds(rr):
        return np.clip(np.where(np.isnan(rr), local, rr), 0.05, 5.0)

    before, prev, nxt = seconds(np.asarray(rr_before, dtype=np.float64)), seconds(rr_prev), seconds(rr_next)
    amplitude_ratio = np.clip(np.asarray(amplitude) / np.maximum(typical, 0.05), 0, 5)
    spread = np.clip(np.nan_to_num(np.asarray(rr_spread, dtype=np.float64) / local, nan=0.0), 0, 2)
    return np.stack([prev, nxt, local, long, prev / local, nxt / local, prev / long, nxt / long,
                     before / local, amplitude_ratio, spread], axis=1).astype(np.float32)


def patient_inputs(context, rr_prev, rr_next, rr_local=None, template_shift=0) -> dict:
    """Return the signal model's inputs for one record's beats, in time order.

    context: (n, 720) channel-0 windows in mV around each R peak; RR values in seconds;
    rr_local: the mean of the LOCAL_BEATS RR intervals before each beat's own (computed from
    rr_prev when not given; beats_from_signal returns it).
    Each beat is compared with the same patient's recent beats, never with the
    future: amplitude is divided by the patient's typical QRS amplitude (median of
    the last 32 beats), a second channel holds the beat minus the median of those
    32 beats (the running template), and the rhythm columns (RHYTHM_FEATURES) give the
    intervals before and after the beat in seconds and relative to the local and the long mean.
    Per-beat z-scoring would erase the amplitude that marks V beats. template_shift: the template
    is first aligned to each beat by up to this many samples (align_template); 0 as trained so far.
    The first beat of the record stands in for the beats before it; a live monitor
    computes the same numbers beat by beat (_ward_inputs).
    Returns {"beat": (n, 2, 256), "context": (n, 1, 180), "rhythm": (n, 11)}, float32.
    """
    if len(context) == 0:
        raise ValueError("no beats: patient_inputs needs at least one beat")
    ctx, beat, amplitude = beat_parts(context)
    local, long, before, spread = rr_history(rr_prev)
    template = align_template(beat, causal_median(beat), template_shift)
    return _inputs_from_parts(ctx, beat, amplitude, causal_median(amplitude), template,
                              rr_prev, rr_next, local if rr_local is None else rr_local, long, before, spread)


def _inputs_from_parts(ctx, beat, amplitude, typical, template, rr_prev, rr_next, rr_local, rr_long,
                       rr_before, rr_spread) -> dict:
    """The model inputs from beat_parts, the causal medians of amplitude and beat, and RR values."""
    typical = np.maximum(typical, 0.05)[:, None]  # never divide by noise
    return {
        "beat": np.stack([beat / typical, (beat - template) / typical], axis=1).astype(np.float32),
        "context": (ctx / typical).reshape(len(ctx), -1, CONTEXT_STEP).mean(-1)[:, None].astype(np.float32),
        "rhythm": rhythm_inputs(rr_prev, rr_next, rr_local, rr_long, rr_before, rr_spread, amplitude, typical[:, 0]),
    }


def beats_from_signal(signal, samples) -> tuple:
    """Return (context windows (n, 720), rr_prev, rr_next, rr_local) for R peaks in a 360-Hz signal;
    rr_local is the mean of the LOCAL_BEATS intervals before each beat's own."""
    samples = np.asarray(samples, dtype=int)
    rr = np.diff(samples) / FS
    rr_prev, rr_next = np.r_[np.nan, rr], np.r_[rr, np.nan]
    before, after = CONTEXT
    padded = np.pad(np.nan_to_num(signal), (before, after), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, before + after)[samples]
    return np.ascontiguousarray(windows, dtype=np.float32), rr_prev, rr_next, causal_local_rr(rr_prev, LOCAL_BEATS)


def recorder_signal(signal, samples, recorder) -> tuple:
    """Return (signal, samples) of a 360-Hz record as another recorder would give it back at 360 Hz.

    recorder: a RECORDERS name. The signal is low-passed (zero-phase Butterworth, order 2) where
    the recorder has a corner, brought to its rate and back with the polyphase filter that
    signals.resample (and so classify_record) uses, and each R peak moves to where the
    recorder's grid puts it.
    """
    from fractions import Fraction

    from scipy.signal import butter, resample_poly, sosfiltfilt

    rate, corner = RECORDERS[recorder]
    samples = np.asarray(samples, dtype=int)
    if rate is None:
        return np.asarray(signal, dtype=np.float32), samples
    x = np.nan_to_num(np.asarray(signal, dtype=np.float64))
    if corner:
        x = sosfiltfilt(butter(2, corner, fs=FS, output="sos"), x)
    # signals.resample's path (features may not import signals): polyphase, ratio as a fraction
    down = Fraction(rate / FS).limit_denominator(1000)
    low = resample_poly(x, down.numerator, down.denominator)
    back = resample_poly(low, down.denominator, down.numerator)[:len(x)].astype(np.float32)
    moved = np.round(np.round(samples * rate / FS) * FS / rate).astype(int)
    return back, np.clip(moved, 0, len(back) - 1)


def _record_inputs(record: int, recorder: str = "native") -> dict:
    """patient_inputs of one record, checked and cached like the beat table (data.record_key)."""
    return _cached_inputs(record, recorder, record_key(record))


@lru_cache(maxsize=None)
def _cached_inputs(record: int, recorder: str, files_key: str) -> dict:
    path = config.CACHE_DIR / "inputs_v3" / recorder / f"{record}-{files_key}.npz"
    if not path.is_file():
        beats = load_beats([record])
        if recorder == "native":
            inputs = patient_inputs(load_windows([record], *CONTEXT), beats["rr_prev"], beats["rr_next"])
        else:
            import wfdb

            data_dir = find_data_dir()
            verify_files(data_dir, record_files([record]))
            signal = wfdb.rdrecord(str(data_dir / str(record)), channels=[0]).p_signal[:, 0]
            x, samples = recorder_signal(signal, beats["sample"].to_numpy(), recorder)
            context, rr_prev, rr_next, rr_local = beats_from_signal(x, samples)
            inputs = patient_inputs(context, rr_prev, rr_next, rr_local)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **inputs)
        tmp.replace(path)  # an interrupted build never leaves half a cache file
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def load_inputs(records=None, recorder="native") -> dict:
    """Return patient_inputs for the given records, rows as in load_beats(records); cached on disk.

    recorder: a RECORDERS name: the inputs of the records as that recorder would give them.
    """
    if recorder not in RECORDERS:
        raise ValueError(f"recorder must be one of {list(RECORDERS)}, not {recorder!r}")
    parts = [_record_inputs(r, recorder) for r in _records_arg(records)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
