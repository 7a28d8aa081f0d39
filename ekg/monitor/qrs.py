"""Streaming QRS detection (Pan-Tompkins with carried state), and the same detector run offline.

Imports: data (the MIT-BIH rate), signals (R-peak refinement), NumPy, scipy.signal, scipy.ndimage.
"""
from __future__ import annotations

import numpy as np

from ..data import FS
from ..signals import refine_peaks


class StreamingQRS:
    """Pan-Tompkins QRS detection (Pan & Tompkins 1985) on a stream of samples.

    Written here because the well-kept detectors (wfdb's XQRS and gqrs, neurokit2,
    biosppy) all take a whole recording at once. Causal filters carry their state
    across chunks; a peak of the integrated signal is examined 0.1 s after it (once
    its neighbours are in) and held 0.25 s in case a larger peak (the QRS after a
    large P wave) replaces it, so a beat is decided about 0.45 s after its R peak;
    a missed beat is searched back for when the gap grows too long. Decisions
    are taken in time order, so the result does not depend on the chunk sizes.
    feed(x) takes the next samples and returns the R-peak positions decided now,
    as absolute sample indices of the stream.
    """

    # The settings, developed on the 48 MIT-BIH records (as Pan and Tompkins' were); change them
    # per detector with StreamingQRS(fs, NAME=value).
    REFRACTORY_S = 0.2  # no second beat within this of a beat
    HOLD_S = 0.25  # a tentative beat waits this long for a larger neighbour
    T_WAVE_S = 0.36  # a peak this soon after a beat, with less than T_SLOPE of its slope, is its T wave
    T_SLOPE = 0.5
    SEARCH_BACK = 0.7  # search back for a missed beat at this fraction of the threshold ...
    RR_MISSED = 1.66  # ... once this many mean RR intervals have passed without a beat
    R_SEARCH_END_S = 0.03  # the R peak is not looked for in the integrator peak's last 30 ms

    def __init__(self, fs=FS, **settings):
        from scipy.signal import butter, sosfilt_zi

        for name, value in settings.items():
            if not name.isupper() or not hasattr(StreamingQRS, name):
                raise ValueError(f"StreamingQRS has no setting {name!r}")
            setattr(self, name, value)
        self.fs = fs
        self.sos = butter(2, [5, 15], btype="bandpass", fs=fs, output="sos")
        self.zi = sosfilt_zi(self.sos) * 0
        self.window = int(round(0.15 * fs))  # moving-window integration, 150 ms
        self.refractory = int(round(self.REFRACTORY_S * fs))
        self.hold = int(round(self.HOLD_S * fs))
        self.keep = int(round(3.0 * fs))  # samples of history held: bounded memory
        # how far back of an integrator peak its R peak is looked for: the 250 ms search, then
        # refine_peaks' +-50 ms on the raw signal
        self.r_reach = int(0.25 * fs) + int(round(0.05 * fs))
        self.raw = np.zeros(0, np.float32)
        self.band = np.zeros(0, np.float32)
        self.mwi = np.zeros(0, np.float32)
        self.tail = np.zeros(4 + self.window - 1, np.float32)  # derivative and integration history
        self.offset = 0  # absolute index of raw[0]
        self.n = 0  # samples seen
        self.checked = 0  # absolute index up to which MWI peaks were examined
        self.spki = self.npki = None
        self.last_peak = None
        self.last_mwi_peak = None  # the latest accepted integrator peak, tentative or emitted
        self.last_emitted = None
        self.tentative = None  # (index, value) of a beat that a bigger peak may still replace
        self.rr = []  # recent RR intervals (samples) for the search-back
        self.candidates = []  # (index, value) of sub-threshold MWI peaks since the last beat
        self.r_of = {}  # R peak of a candidate, found before its signal left the buffer (see _trim)

    def feed(self, x) -> list:
        return StreamingQRS.feed_many([self], np.asarray(x, dtype=np.float32)[None])[0]

    @staticmethod
    def feed_many(detectors, chunks) -> list:
        """Feed equal-length chunks (p, n) to p detectors of one sampling rate; return each one's new
        R peaks. The band-pass filter runs on all rows in one call, which is what lets one core follow
        a ward of streams; the results are the same as feeding each detector alone."""
        from scipy.signal import sosfilt

        chunks = np.asarray(chunks, dtype=np.float32)
        if chunks.shape[1] == 0:
            return [[] for _ in detectors]
        if np.isnan(chunks).any():
            chunks = np.nan_to_num(chunks)
        band, zi = sosfilt(detectors[0].sos, chunks, axis=1, zi=np.stack([d.zi for d in detectors], axis=1))
        band = band.astype(np.float32)
        tails = np.stack([d.tail for d in detectors])
        ext = np.concatenate([tails[:, :4], band], axis=1)  # the last 4 band-passed samples
        sq = np.concatenate([tails[:, 4:], ((2 * ext[:, 4:] + ext[:, 3:-1] - ext[:, 1:-3] - 2 * ext[:, :-4]) / 8) ** 2],
                            axis=1)
        width = detectors[0].window
        kernel = np.full(width, 1 / width, np.float32)
        # the detectors past their learning find their new integrator peaks in one vectorised pass
        # (_new_peaks); the rest (learning, or a refractory period of their own) one by one. The
        # _decide that ends a detector's learning examines its peaks from the stream's start, so from
        # its next chunk on, peaks are examined from margin before that chunk and its buffer holds
        # far more than the 2 margin + 1 samples that _new_peaks takes from before the chunk.
        margin = detectors[0].refractory // 2
        together = [k for k, d in enumerate(detectors) if d.spki is not None and d.refractory // 2 == margin]
        tails = [detectors[k].mwi[len(detectors[k].mwi) - 2 * margin - 1:] for k in together]
        mwis = []
        for k, d in enumerate(detectors):
            d.zi, d.tail = zi[:, k].copy(), np.concatenate([ext[k, -4:], sq[k, sq.shape[1] - width + 1:]])
            # a running sum would round differently for different chunkings; a convolution sums
            # each window afresh, so the integrator is bit-for-bit the same whatever the chunks
            mwis.append(np.convolve(sq[k], kernel, "valid").astype(np.float32))
        peaks = [None] * len(detectors)
        if together:
            found = _new_peaks(np.concatenate([np.array(tails), np.array([mwis[k] for k in together])], axis=1),
                               margin)
            for k, row in zip(together, found):
                d = detectors[k]
                # seg[0] of _decide is the sample 2 * margin + 1 before the new chunk
                peaks[k] = row + d.n - 2 * margin - 1
        return [d._decide(chunks[k], band[k], mwis[k], peaks[k]) for k, d in enumerate(detectors)]

    def _decide(self, x, band, mwi, peaks=None) -> list:
        """Take the new samples (raw, band-passed, integrated); return the R peaks decided now.
        peaks: the absolute indices of the new integrator peaks, as _new_peaks finds them for many
        detectors at once (feed_many); None to find them here."""
        self.raw, self.band, self.mwi = (np.concatenate([self.raw, x]), np.concatenate([self.band, band]),
                                         np.concatenate([self.mwi, mwi]))
        self.n += len(x)
        if self.spki is None:
            if self.n < 2 * self.fs:  # learning phase: 2 s to set the first thresholds
                return []
            level = np.sqrt(self.mwi[:2 * int(self.fs)])  # the first 2 s, whatever the chunk size
            self.spki, self.npki = 0.25 * float(level.max()), 0.5 * float(level.mean())
        beats = []
        # A peak counts once the integrator is known a margin past it; find_peaks sees the
        # margin on both sides, so a peak's neighbours are always in view.
        margin = self.refractory // 2
        settled = self.n - margin
        if peaks is None:
            from scipy.signal import find_peaks

            lo = max(self.checked - self.offset - 1 - margin, 0)
            seg = self.mwi[lo:settled + margin - self.offset + 1]
            # keep a peak only if it is the first maximum within +-margin: a local rule, so the same
            # peaks survive however the stream was cut (find_peaks' distance= depends on the segment)
            peaks = [k + lo + self.offset for k in find_peaks(seg)[0]
                     if margin <= k < len(seg) - margin and seg[k - margin:k + margin + 1].argmax() == margin]
        for p in peaks:
            if p < self.checked or p >= settled:
                continue
            beats += self._advance(p)
            beats += self._consider(p, float(np.sqrt(self.mwi[p - self.offset])))
        self.checked = max(self.checked, settled)
        beats += self._advance(settled)
        if len(self.raw) > self.keep:
            self._trim(len(self.raw) - self.keep)
        return beats

    def _trim(self, cut):
        """Drop the oldest `cut` samples of the buffer, first finding the R peak of every candidate
        whose search window they hold.

        The search-back may reach further back than the buffer: it runs RR_MISSED mean RR after the
        last beat and takes a candidate from as early as T_WAVE_S after it, so with the r_reach
        (0.3 s) of signal an R peak needs it can look 1.66 RR - 0.06 s back: past the 3 s held once
        the RR is over 1.84 s (below ~33 bpm), and a long pause raises the mean RR. A bedside detector
        must find that beat, and in its place, in exactly the bradycardia and pauses where a
        missed beat matters most, so the search-back is not bounded by the buffer. Nor is the
        buffer made as long as the reach, which has no bound (the mean RR grows with the pauses).
        Instead each candidate's R peak is found as its search window is about to leave the buffer:
        the same samples give the same R peak whenever it is found, so the result is the one an
        unbounded buffer would give, whatever the chunks, with memory still bounded (one number
        per candidate) and nothing computed unless a candidate outlives the buffer."""
        start = self.offset + cut  # the first sample kept
        for p, _ in self.candidates:  # in time order
            if p - self.r_reach >= start:
                break
            if p not in self.r_of:
                self.r_of[p] = self._r_peak(p)
        self.raw, self.band, self.mwi = self.raw[cut:], self.band[cut:], self.mwi[cut:]
        self.offset = start

    def _threshold(self):
        return self.npki + 0.25 * (self.spki - self.npki)

    def _consider(self, p, value):
        if self.tentative is not None and p - self.tentative[0] < self.hold:
            # A larger peak within the hold wins: a large P wave was taken first and the QRS
            # follows it (record 108), or the first peak was the start of a wide complex.
            if value > self.tentative[1]:
                self.tentative = (p, value)
                self.last_mwi_peak = p
                return []
            if p - self.tentative[0] < self.refractory:
                return []
        if self.last_mwi_peak is not None and p - self.last_mwi_peak < self.refractory:
            return []
        if value > self._threshold():
            if self.last_mwi_peak is not None and p - self.last_mwi_peak < self.T_WAVE_S * self.fs \
                    and self._is_t_wave(p):
                self.npki = 0.125 * value + 0.875 * self.npki
                return []
            self.spki = 0.125 * value + 0.875 * self.spki
            return self._hold(p, value)
        self.npki = 0.125 * value + 0.875 * self.npki
        self.candidates.append((p, value))
        return []

    def _hold(self, p, value):
        """Keep a new beat tentative for one refractory period, emitting the previous one."""
        out = self._accept(self.tentative[0]) if self.tentative is not None else []
        self.tentative = (p, value)
        self.last_mwi_peak = p
        self.candidates = [c for c in self.candidates if c[0] > p]
        if self.r_of:
            self.r_of = {c: r for c, r in self.r_of.items() if c >= p}  # p's own is still to be used
        return out

    def _slope(self, i):
        a = max(i - self.offset - self.window, 0)
        return float(np.abs(np.diff(self.band[a:i - self.offset + 1])).max(initial=0))

    def _is_t_wave(self, p):
        return self._slope(p) < self.T_SLOPE * self._slope(self.last_mwi_peak)

    def _advance(self, until):
        """Take the decisions due by sample `until` in time order, so chunk size never matters:
        emit a held beat whose hold is over, or search back through a gap grown too long."""
        out = []
        while True:
            if self.tentative is not None and self.tentative[0] + self.hold <= until:
                out += self._accept(self.tentative[0])
                continue
            if self.last_mwi_peak is None or len(self.rr) < 2:
                break
            due = self.last_mwi_peak + self.RR_MISSED * sum(self.rr) / len(self.rr)  # the last 8
            if due > until:
                break
            found = self._search_back()
            if found is None:
                break
            out += found
        return out

    def _search_back(self):
        """The largest sub-threshold peak since the last beat, if above half the threshold (or None)."""
        # Pan and Tompkins search back at half the threshold; searching at the very moment the gap
        # grows too long, that picked up P waves in long pauses, so 0.7 here, and never within
        # 360 ms of the last beat (its T wave).
        best = [c for c in self.candidates if c[1] > self.SEARCH_BACK * self._threshold()
                and c[0] - self.last_mwi_peak >= self.T_WAVE_S * self.fs]
        if not best:
            return None
        p, value = max(best, key=lambda c: c[1])
        self.spki = 0.25 * value + 0.75 * self.spki
        return self._hold(p, value)

    def _accept(self, p):
        self.tentative = None
        if self.last_emitted is not None:
            self.rr = (self.rr + [p - self.last_emitted])[-8:]
        self.last_emitted = p
        r = self.r_of.pop(p) if p in self.r_of else self._r_peak(p)
        if self.last_peak is not None and r - self.last_peak < self.refractory:
            return []
        self.last_peak = r
        return [r]

    def _r_peak(self, p):
        """Return the R peak (absolute sample index) of the beat whose integrator peaks at p.

        The largest band-passed deflection in the 250 ms before the integrator's peak (less its
        last R_SEARCH_END_S: the causal integrator peaks as the complex ends, and its tail is not
        the R wave), then the largest deflection of the raw signal within 50 ms of it, as the
        annotators mark it. The buffer holds all of that (r_reach samples back of p) for p's
        first 3 s; _trim sees to the candidates that outlive them."""
        a = max(p - int(0.25 * self.fs) - self.offset, 0)
        b = max(p - int(self.R_SEARCH_END_S * self.fs) - self.offset + 1, a + 1)
        r = a + int(np.abs(self.band[a:b]).argmax())
        return int(refine_peaks(self.raw, [r], self.fs)[0]) + self.offset


def _new_peaks(seg, margin) -> list:
    """Return, for each row of seg (integrator samples, each row from 2 * margin + 1 samples before a
    detector's new chunk to its end), the positions k in the row that _decide keeps as peaks: scipy's
    find_peaks peaks that are the first maximum within +-margin, and that were not examined before
    (k > margin) and have margin samples after them (k < len - margin).

    The same positions _decide's find_peaks loop gives, found for every row in one vectorised pass, so
    that a ward searches once per push rather than once per patient: a first maximum within +-margin
    is above every sample of the margin before it and not below any of the margin after it, and
    find_peaks (a rise, then a plateau of one or more samples, then a fall; the peak in the plateau's
    middle) keeps such a sample exactly when its plateau is one or two samples long."""
    from scipy.ndimage import maximum_filter1d

    length = seg.shape[1]
    k = np.arange(margin + 1, length - margin)
    # window_max[:, i] is the maximum of seg[:, i - margin // 2:i - margin // 2 + margin]
    window_max = maximum_filter1d(seg, margin, axis=1, mode="nearest")
    centre, after, after2 = seg[:, k], seg[:, k + 1], seg[:, k + 2]
    first_max = (centre > window_max[:, k - margin + margin // 2]) & (centre >= window_max[:, k + 1 + margin // 2])
    is_peak = (after < centre) | ((after == centre) & (after2 < centre))
    rows, cols = np.nonzero(first_max & is_peak)
    return np.split(k[cols], np.searchsorted(rows, np.arange(1, len(seg))))


def detect_beats(signal, fs, **settings) -> np.ndarray:
    """Return the R-peak sample positions that the monitor's StreamingQRS finds in a whole signal.

    The same detector as the live monitor, fed 10-s chunks, so offline scores are
    the monitor's. NaN samples count as 0 (no beat is found in them). settings:
    StreamingQRS constants to change for this call (for sensitivity checks).
    """
    detector = StreamingQRS(fs, **settings)
    step = int(10 * fs)
    signal = np.asarray(signal, dtype=np.float32)
    peaks = [p for i in range(0, len(signal), step) for p in detector.feed(signal[i:i + step])]
    return np.asarray(peaks, dtype=int)


def detect_beats_variants(signals, variants=({},), workers=1) -> list:
    """Return [{name: R peaks}], one dict per settings dict of variants (StreamingQRS constants, {} as
    used), from detect_beats on each signal of {name: (signal, fs)}.

    workers > 1 runs the recordings, every variant of one together, in that many processes (joblib):
    the detector is pure Python and NumPy, one core per recording, and the peaks are the same however
    the work is split."""
    from joblib import Parallel, delayed

    names = list(signals)
    per_record = Parallel(n_jobs=max(min(workers, len(names)), 1), max_nbytes=None)(
        delayed(_detect_each_variant)(*signals[n], variants) for n in names)
    return [{n: peaks[k] for n, peaks in zip(names, per_record)} for k in range(len(variants))]


def _detect_each_variant(signal, fs, variants) -> list:
    return [detect_beats(signal, fs, **settings) for settings in variants]
