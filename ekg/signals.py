"""Signal helpers shared by offline classification and the live monitor: read one channel of any
WFDB record, resample it, and place each detected QRS on its R peak.

Imports: data (the MIT-BIH rate), NumPy, scipy.signal and wfdb.
"""
from __future__ import annotations

import numpy as np

from .data import FS


def read_signal(record_path, channel=None):
    """Read one channel of a WFDB record in mV; return (signal, fs, channel name).

    channel: an index or a signal name (default: the first channel). Samples the
    record marks invalid come back as NaN.
    """
    import wfdb

    header = wfdb.rdheader(str(record_path))
    if channel is None:
        index = 0
    elif isinstance(channel, str):
        if channel not in header.sig_name:
            raise ValueError(f"{record_path} has no channel {channel!r}; it has {header.sig_name}")
        index = header.sig_name.index(channel)
    else:
        index = int(channel)
    record = wfdb.rdrecord(str(record_path), channels=[index])
    return record.p_signal[:, 0].astype(np.float32), float(record.fs), record.sig_name[0]


def resample(signal, fs_from, fs_to=FS) -> np.ndarray:
    """Resample a signal between sampling rates with scipy's polyphase filter (NaNs filled first)."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    signal = np.asarray(signal, dtype=np.float64)
    bad = np.isnan(signal)
    if bad.all():
        return np.full(int(round(len(signal) * fs_to / fs_from)), np.nan, np.float32)
    if bad.any():  # the filter would spread a NaN over its whole length
        signal = signal.copy()
        signal[bad] = np.interp(np.flatnonzero(bad), np.flatnonzero(~bad), signal[~bad])
    if fs_from == fs_to:
        return signal.astype(np.float32)
    ratio = Fraction(fs_to / fs_from).limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator).astype(np.float32)


def refine_peaks(signal, samples, fs, half_width_s=0.05) -> np.ndarray:
    """Move each detected QRS to its largest deflection from the local baseline within +-50 ms,
    where the MIT-BIH annotations put the beat, so windows line up as in training."""
    signal = np.asarray(signal, dtype=np.float32)
    if np.isnan(signal).any():
        signal = np.nan_to_num(signal)
    half = int(round(half_width_s * fs))
    last = len(signal) - 1
    # np.minimum/np.maximum rather than np.clip: the same indices without np.clip's checks, which
    # were most of the cost for the live detector's one peak at a time in a 3-s buffer
    samples = np.minimum(np.maximum(np.asarray(samples, dtype=int), 0), last)
    # the +-half windows, repeating the edge samples at the ends (cost per peak, not per sample)
    windows = signal[np.minimum(np.maximum(samples[:, None] + np.arange(-half, half + 1), 0), last)]
    # the window's median: its middle value (the length is odd), which np.partition finds without
    # np.median's overhead, paid once per beat by the live detector
    deviation = np.abs(windows - np.partition(windows, half, axis=1)[:, half:half + 1])
    return np.minimum(np.maximum(samples + deviation.argmax(1) - half, 0), last)
