"""Ventricular fibrillation and flutter (VF/VFL) found in the ECG signal itself, not from beats.

VF has no beats to classify, so the beat pipeline cannot see it. VFDetector judges a window of
signal (4 s, one every second; band-passed to 1-30 Hz and kept at 120 Hz) from classic VF features surveyed by Amann, Tratnig and Unterkofler
(Biomed Eng Online 2005): threshold crossing sample count (TCSC, Arafat et al. 2009), VF filter
leakage (Kuo and Dillman 1978), the spectral algorithm's first moment and peak concentration (Barro
et al. 1989); and a few that tell VF from the wide-complex rhythms and the artifact it is confused
with: spikiness (kurtosis, steepest over mean slope: QRS complexes are steep, VF is a smooth
near-sinusoid), time spent at the baseline (an organised rhythm rests between complexes, VF never
does), the autocorrelation's cycle length and regularity, the high-frequency share (muscle noise)
and the size. Lempel-Ziv complexity (Zhang et al. 1999) is left out: it is a sequential loop per
window, too slow for a thousand streams per core, and the autocorrelation carries the regularity.
Electrode-motion noise as large as the QRS complexes (the noise stress test's 0 dB and below) read as
VF with those alone, so five more tell the two apart (see vf_features): the share of power at VF's
2.5-7.5 Hz and below 2.5 Hz (electrode motion's), the steadiness of the amplitude over 0.5-s blocks
(electrode motion comes in bursts) and how often the signal crosses zero for its spectral peak (a
near-sinusoid twice per cycle). They help less than the noise itself in the training data: refitted
without them, the detector alarmed one episode fewer at the same noise safety (vf_fit's tables).

A small gradient-boosted tree ensemble (scikit-learn's HistGradientBoostingClassifier, 100 trees of
depth 3) turns the features into a VF probability; a linear model over the same features could not
separate Creighton's slow wide-complex rhythms from VF. The trees are stored as plain numbers in
vf_model.json and evaluated here with NumPy; monitor.vf_fit fits them (leave-records-out
cross-validation over the Creighton records cu01-cu17 and the MIT-BIH DS1 records, 207's flutter
included; electrode-motion and muscle noise added to DS1 at 12 to -6 dB as artifact examples, and to
the Creighton records, whose VF stays VF: noise must never silence VF) and writes the file. An alarm
starts after VF_SETTINGS["on_windows"] VF windows in a row (2) and ends after "off_windows" analysable
non-VF windows in a row (3).

Defined outcomes for bad input (each tested in tests/test_monitor_vf.py):
- missing samples (NaN): a window with more than max_missing_s of them gets no verdict ("missing");
  a VF alarm already on stays on (no evidence that VF ended), and none starts.
- flat signal or a lead off: a window whose band-passed peak-to-peak is below min_ptp_mv, or that
  holds a flat stretch of flat_stretch_s, is "flat", never VF; a VF alarm already on stays on (a lead
  falling off during VF is not the end of VF, and a flat line after VF, lead off or asystole, is
  no reason to stop the arrest alarm).
- clipping: analysed as any signal; clipped VF keeps its rate and regularity and still reads as VF.
- sampling rate: every setting is in seconds or Hz; the monitor feeds the detector its signal
  already resampled to one fixed rate (the model's, 360 Hz; the detector keeps every third sample),
  whatever the stream's rate (125-500 Hz tested); detect_vf resamples a recording with scipy.

Imports: NumPy and SciPy (the live path), trees (the tree ensemble's evaluation); signals (detect_vf's resampling, offline).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .. import trees

#: The detector's settings: window and step in seconds, band in Hz, threshold on the VF probability.
VF_SETTINGS = {
    "window_s": 4.0,  # the analysis window (AED algorithms use 2-8 s; shorter answers sooner)
    "step_s": 1.0,  # a verdict every second
    "band_hz": (1.0, 30.0),  # drift and high-frequency noise removed, as Amann et al. preprocess
    # the features are computed on the band-passed signal kept at about this rate (every 3rd sample at
    # 360 Hz): the band ends at 30 Hz, and a third of the samples is a third of the work per patient
    "analysis_hz": 120.0,
    "max_missing_s": 0.5,  # more missing samples than this in a window: no verdict
    "min_ptp_mv": 0.15,  # band-passed peak-to-peak below this is flat (asystole, lead off), never VF
    # a window holding a flat stretch this long (raw peak-to-peak under flat_mv in every 0.25 s of it)
    # is flat too: a lead that fell off (or came back) within it, whose step no filter hides
    "flat_stretch_s": 1.0, "flat_mv": 0.05,
    # threshold and run length chosen on out-of-fold predictions over cudb + DS1 (monitor.vf_fit.choose,
    # thresholds 0.5-0.95 by 2-4 windows): among the settings with no false alarm on clean DS1 and none
    # on DS1 with held-out electrode-motion noise (nstdb channel 0, never fitted on) at 12, 6 and 0 dB,
    # the most VF episodes alarmed within 10 s (22 of 26), then the fewest false alarms with that noise
    # at -6 dB (1 in 11 h). The price is sensitivity per window: 64% of VF windows are over 0.95 (88%
    # over 0.5; vf_fit prints both); two windows in a row, 1 s apart, keep the alarm prompt
    "threshold": 0.95,
    "on_windows": 2,  # consecutive VF windows that start the alarm
    "off_windows": 3,  # consecutive analysable non-VF windows that end it
}

FEATURES = ["tcsc", "leakage", "moment", "a2", "peak_hz", "hf_fraction", "kurtosis", "slope_ratio", "baseline",
            "period_s", "periodicity", "log_ptp", "vf_band", "low_band", "amp_cv", "amp_range", "zc_ratio"]

MODEL_PATH = Path(__file__).with_name("vf_model.json")
ANALYSIS_FS = 360  # the rate the shipped model was fitted at: the monitor's (the model's) rate


def vf_features(band, fs) -> np.ndarray:
    """Return the VF features (rows: windows, columns: FEATURES) of band-passed windows (n, L) at fs."""
    x = np.asarray(band, dtype=np.float64)
    n, length = x.shape
    x = x - x.mean(axis=1, keepdims=True)
    ax = np.abs(x)
    # TCSC: taper 0.25 s at each end, scale by the largest excursion, share of samples above 0.2
    taper = np.ones(length)
    edge = int(0.25 * fs)
    if edge:
        ramp = 0.5 * (1 - np.cos(np.pi * np.arange(edge) / edge))
        taper[:edge], taper[-edge:] = ramp, ramp[::-1]
    tapered = ax * taper
    tcsc = (tapered > 0.2 * tapered.max(axis=1, keepdims=True).clip(1e-9)).mean(axis=1)
    # VF filter leakage: a half period N from the mean absolute slope; VF cancels against itself
    dx = np.abs(np.diff(x, axis=1))
    half = np.floor(np.pi * ax.sum(axis=1) / dx.sum(axis=1).clip(1e-9) + 0.5).astype(int).clip(1, length - 1)
    idx = np.arange(length)[None, :] - half[:, None]
    valid = idx >= 0
    shifted = np.take_along_axis(x, idx.clip(0), axis=1)
    leakage = (np.abs(x + shifted) * valid).sum(axis=1) / ((ax + np.abs(shifted)) * valid).sum(axis=1).clip(1e-9)
    # spectral algorithm (Barro): peak F in 0.5-9 Hz, first moment over F, share of amplitude near F
    spectrum = np.abs(np.fft.rfft(x * np.hamming(length), axis=1))
    freqs = np.fft.rfftfreq(length, 1 / fs)
    spectrum[:, freqs < 0.5] = 0
    low = (freqs >= 0.5) & (freqs <= 9)
    peak = freqs[low][spectrum[:, low].argmax(axis=1)]
    amp = np.where(spectrum >= 0.05 * spectrum.max(axis=1, keepdims=True), spectrum, 0)
    total = amp.sum(axis=1).clip(1e-12)
    moment = (amp * freqs).sum(axis=1) / total / peak
    near = (freqs[None, :] >= 0.7 * peak[:, None]) & (freqs[None, :] <= 1.4 * peak[:, None])
    a2 = (amp * near).sum(axis=1) / total
    power = spectrum ** 2
    # a mask product, not power[:, freqs > 12]: that copy's layout depends on the number of rows, and
    # with it the order of the sum, which would make a window's result depend on its batch
    hf_fraction = (power * (freqs > 12)).sum(axis=1) / power.sum(axis=1).clip(1e-12)
    var = (x * x).mean(axis=1).clip(1e-12)
    x2 = x * x  # (x * x) ** 2, not x ** 4: the float power is many times slower
    kurtosis = (x2 * x2).mean(axis=1) / var ** 2
    slope_ratio = dx.max(axis=1) / dx.mean(axis=1).clip(1e-12)
    ptp = np.ptp(x, axis=1)
    # time spent near the baseline: an organised rhythm rests between complexes, VF never does
    baseline = (np.abs(x - np.median(x, axis=1, keepdims=True)) < 0.05 * ptp[:, None]).mean(axis=1)
    # the autocorrelation's highest peak between 0.15 and 2 s: the cycle length (VF and flutter run at
    # 150-500 per minute, an organised wide-complex rhythm slower) and how regular the cycles are
    acf = np.fft.irfft(np.abs(np.fft.rfft(x, n=2 * length, axis=1)) ** 2, axis=1)[:, :length]
    acf = acf / acf[:, :1].clip(1e-12)
    lags = np.arange(int(0.15 * fs), min(int(2.0 * fs), length - 1))
    best = acf[:, lags].argmax(axis=1)
    period_s = lags[best] / fs
    periodicity = acf[np.arange(n), lags[best]]
    log_ptp = np.log10(ptp.clip(1e-3))
    # Features that tell electrode-motion (and muscle) noise from VF, which the ones above confuse when
    # the noise is as large as the QRS complexes (nst's 0 dB and below):
    # - spectral concentration: VF and flutter put their power at 2.5-7.5 Hz (150-450 per minute);
    #   electrode motion puts most of its power below 2.5 Hz, muscle noise above 12 Hz (hf_fraction)
    total_power = power.sum(axis=1).clip(1e-12)
    vf_band = (power * ((freqs >= 2.5) & (freqs <= 7.5))).sum(axis=1) / total_power
    low_band = (power * (freqs < 2.5)).sum(axis=1) / total_power
    # - amplitude stationarity: VF keeps its size from one half-second to the next; electrode motion
    #   comes in bursts (one large swing, then little). The peak-to-peak of eight 0.5-s blocks: their
    #   coefficient of variation and smallest over largest
    block = max(int(0.5 * fs), 1)
    k = length // block
    sub_ptp = np.ptp(x[:, :k * block].reshape(n, k, block), axis=2)
    amp_cv = sub_ptp.std(axis=1) / sub_ptp.mean(axis=1).clip(1e-12)
    amp_range = sub_ptp.min(axis=1) / sub_ptp.max(axis=1).clip(1e-12)
    # - regularity of the cycles: a near-sinusoid crosses zero twice per cycle of its spectral peak
    #   (ratio ~1); noise riding on a rhythm, or several rhythms mixed, crosses far more or less often
    crossings = (np.signbit(x[:, 1:]) != np.signbit(x[:, :-1])).sum(axis=1)
    zc_ratio = crossings / 2 / (length / fs) / peak
    return np.stack([tcsc, leakage, moment, a2, peak, hf_fraction, kurtosis, slope_ratio, baseline, period_s,
                     periodicity, log_ptp, vf_band, low_band, amp_cv, amp_range, zc_ratio], axis=1)


class TreeModel(trees.FeatureTreeModel):
    """The VF detector's gradient-boosted trees (trees.TreeModel, written by vf_fit.export_trees),
    refused when they were fitted on other features than the detector computes."""

    FEATURES, NAME, WRITTEN_BY = tuple(FEATURES), "VF model", "python -m ekg.monitor.vf_fit"

    @classmethod
    def load(cls, path=MODEL_PATH) -> "TreeModel":
        return super().load(path)


@functools.cache
def default_model() -> TreeModel:
    """The shipped VF model (vf_model.json), loaded once."""
    return TreeModel.load()


class VFDetector:
    """VF/VFL verdicts on a stream of samples (mV, NaN for missing), one per step over the last window.

    feed(x) returns the windows completed by these samples, each a dict: time (s, the window's end),
    p_vf (nan when there is no verdict), verdict ("vf", "not vf", "flat" or "missing"), alarm ("on" when
    the VF alarm starts, "off" when it ends, else None) and the window's features. The band-pass
    filter carries its state across chunks and windows end at fixed sample positions, so the results
    do not depend on how the stream is cut; memory is one window and one step of signal.
    VFDetector(fs, settings, model): fs is the rate of the samples fed, which should be ANALYSIS_FS
    (360 Hz): the Monitor feeds it its resampled stream, detect_vf resamples a recording with scipy;
    features are in seconds and Hz, so other rates run, but the shipped model was fitted at 360 Hz.
    settings override VF_SETTINGS; model is a TreeModel (default the shipped one) or None for features
    only (verdict "unscored").
    """

    def __init__(self, fs, settings=None, model="default"):
        from scipy.signal import butter

        if not fs or fs <= 0:
            raise ValueError(f"sampling rate must be positive, not {fs!r}")
        unknown = set(settings or {}) - set(VF_SETTINGS)
        if unknown:
            raise ValueError(f"VFDetector has no setting(s) {sorted(unknown)}; it has {sorted(VF_SETTINGS)}")
        self.fs = float(fs)
        self.settings = {**VF_SETTINGS, **(settings or {})}
        self.model = default_model() if isinstance(model, str) and model == "default" else model
        lo, hi = self.settings["band_hz"]
        self.decimate = max(int(self.fs // self.settings["analysis_hz"]), 1)
        self.fs_a = self.fs / self.decimate  # the analysis rate
        # 4th-order sides: 24 dB down at twice the upper edge, so keeping every decimate-th sample
        # folds little back into the band
        self.sos = butter(4, [lo, min(hi, 0.4 * self.fs_a)], btype="bandpass", fs=self.fs, output="sos")
        self.zi = np.zeros((self.sos.shape[0], 2))
        self.window = int(round(self.settings["window_s"] * self.fs_a))  # in analysis samples
        self.step = int(round(self.settings["step_s"] * self.fs_a))
        self.band = np.zeros(0)  # the latest band-passed samples (at most a window and a step)
        self.raw = np.zeros(0)  # ... and the same samples as they came (NaN kept: the missing ones)
        self.block = max(int(round(0.25 * self.fs_a)), 1)  # the flat-stretch test's sub-blocks
        self.n_in = 0  # input samples seen
        self.n = 0  # analysis samples kept
        self.next_end = self.window  # where the next window ends (absolute sample index)
        self.run_vf = self.run_other = 0
        self.alarm = False

    def feed(self, x) -> list:
        return VFDetector.feed_many([self], np.asarray(x, dtype=np.float64).ravel()[None])[0]

    @staticmethod
    def feed_many(detectors, chunks) -> list:
        """Feed equal-length chunks (p, n) to p detectors of one rate and settings; return each one's
        new windows. The filter and the features run once for all rows, as a ward needs; the results
        are the same as feeding each detector alone."""
        from scipy.signal import sosfilt

        chunks = np.asarray(chunks, dtype=np.float64)
        if chunks.shape[1] == 0:
            return [[] for _ in detectors]
        missing = np.isnan(chunks)
        # a missing sample enters the filter as 0; windows with too many are not judged
        band, zi = sosfilt(detectors[0].sos, np.where(missing, 0.0, chunks), axis=1,
                           zi=np.stack([d.zi for d in detectors], axis=1))
        due = []  # (detector, band-passed window, end index, raw window) of every window completed now
        for k, d in enumerate(detectors):
            d.zi = zi[:, k].copy()
            kept = slice((-d.n_in) % d.decimate, None, d.decimate)  # input samples 0, dec, 2 dec, ...
            d.n_in += chunks.shape[1]
            new = band[k, kept]
            d.band = np.concatenate([d.band, new])
            d.raw = np.concatenate([d.raw, chunks[k, kept]])
            d.n += len(new)
            first = d.n - len(d.band)  # absolute index of d.band[0]
            while d.next_end <= d.n:
                lo = d.next_end - d.window - first
                due.append((k, d.band[lo:lo + d.window], d.next_end, d.raw[lo:lo + d.window]))
                d.next_end += d.step
            keep = d.window + d.step
            if len(d.band) > keep:
                d.band, d.raw = d.band[-keep:], d.raw[-keep:]
        out = [[] for _ in detectors]
        if not due:
            return out
        # np.array, not np.stack: the same array for rows of one length, with less overhead
        features = vf_features(np.array([w[1] for w in due]), detectors[0].fs_a)
        raw = np.array([w[3] for w in due])
        flat = detectors[0]._flat_stretch(raw)
        n_missing = np.isnan(raw).sum(axis=1).tolist()  # the raw samples keep the missing ones as NaN
        scored = detectors[0].model
        p = scored.probability(features) if scored is not None else np.full(len(due), np.nan)
        for (k, _, end, _), m, f, fl, pk in zip(due, n_missing, features, flat, p):
            out[k].append(detectors[k]._verdict(end, m, fl, f, pk))
        return out

    def _flat_stretch(self, raw) -> np.ndarray:
        """Whether each window's raw signal (rows) holds a flat stretch of flat_stretch_s (NaN ignored)."""
        n = raw.shape[1] // self.block
        blocks = raw[:, :n * self.block].reshape(len(raw), n, self.block)
        # fmax/fmin skip NaN; a block of NaN only stays NaN and is not flat (it is missing)
        ptp = np.fmax.reduce(blocks, axis=2) - np.fmin.reduce(blocks, axis=2)
        flat = (ptp < self.settings["flat_mv"]).astype(int)
        need = max(int(round(self.settings["flat_stretch_s"] * self.fs_a / self.block)), 1)
        if n < need:
            return np.zeros(len(raw), bool)
        runs = np.cumsum(np.pad(flat, ((0, 0), (1, 0))), axis=1)
        return (runs[:, need:] - runs[:, :-need]).max(axis=1) >= need

    def _verdict(self, end, n_missing, flat, features, p):
        s = self.settings
        if n_missing > s["max_missing_s"] * self.fs_a:
            verdict, p = "missing", np.nan
        elif flat or 10 ** features[FEATURES.index("log_ptp")] < s["min_ptp_mv"]:
            verdict, p = "flat", np.nan
        elif self.model is None:
            verdict = "unscored"
        else:
            verdict = "vf" if p > s["threshold"] else "not vf"
        return {"time": end / self.fs_a, "p_vf": float(p), "verdict": verdict, "alarm": self.alarm_step(verdict),
                "features": features}

    def alarm_step(self, verdict):
        """Advance the alarm rule by one window's verdict; return "on", "off" or None."""
        s = self.settings
        if verdict == "vf":
            self.run_vf, self.run_other = self.run_vf + 1, 0
            if not self.alarm and self.run_vf >= s["on_windows"]:
                self.alarm = True
                return "on"
        elif verdict == "not vf":
            self.run_vf, self.run_other = 0, self.run_other + 1
            if self.alarm and self.run_other >= s["off_windows"]:
                self.alarm = False
                return "off"
        else:  # no verdict: neither starts nor ends an alarm, and breaks a run of VF windows
            self.run_vf = 0
        return None


def detect_vf(signal, fs, **settings) -> list:
    """Run a VFDetector over a whole recording, resampled first to the analysis rate (ANALYSIS_FS, with
    scipy's polyphase filter); return its windows (see VFDetector.feed; times in seconds)."""
    from ..signals import resample

    x = np.asarray(signal, dtype=np.float64)
    if fs != ANALYSIS_FS:
        missing = np.isnan(x)
        x = resample(x, fs, ANALYSIS_FS)
        if missing.any():  # keep missing samples missing (resample fills them)
            idx = np.clip(np.round(np.arange(len(x)) * fs / ANALYSIS_FS).astype(int), 0, len(missing) - 1)
            x[missing[idx]] = np.nan
    return VFDetector(ANALYSIS_FS, settings or None).feed(x)
