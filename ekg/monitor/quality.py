"""Signal quality of one block of samples: ok, missing, flat (lead off), saturated or noisy.

Imports: data (the MIT-BIH rate), monitor.alarms (the thresholds), NumPy.
"""
from __future__ import annotations

import numpy as np

from ..data import FS
from .alarms import ALARM_THRESHOLDS


def block_quality(x, thresholds=ALARM_THRESHOLDS, fs=FS, adc_limits=None) -> str:
    """Return the quality of one block of samples: "ok", "missing", "flat", "saturated" or "noisy"."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) == 0:
        return "ok"
    if np.isnan(x).mean() > 0.1:
        return "missing"
    x = x[~np.isnan(x)]
    if np.ptp(x) < thresholds["flat_mv"]:
        return "flat"
    run = max(int(thresholds["saturation_s"] * fs), 2)
    if adc_limits is not None:
        at_limit = (x <= adc_limits[0]) | (x >= adc_limits[1])
    else:  # unknown ADC range: a flat run at the block's own extreme is a clipped signal
        at_limit = (x >= x.max()) | (x <= x.min())
    same = np.r_[False, np.diff(x) == 0] & at_limit
    if len(x) >= run and same.sum() >= run - 1 \
            and np.lib.stride_tricks.sliding_window_view(same, run - 1).all(axis=1).any():
        return "saturated"
    if len(x) > 3 and np.median(np.abs(np.diff(x, 2))) > thresholds["noise_mv"]:
        return "noisy"
    return "ok"
