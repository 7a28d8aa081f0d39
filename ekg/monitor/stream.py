"""The bedside monitor: one patient's stream (Monitor) or a ward of them (Ward), from raw samples
to beat, alarm and signal-quality events.

The top of the live path. Imports: data, features, batches (inputs and predict, not the
training loop), models, baseline and blend (the feature model's inputs and the blend, when the
monitor is given one), monitor.qrs, monitor.quality, monitor.alarms, monitor.vf, NumPy, torch.
Never torchvision, matplotlib or the notebooks' utils. Whole recordings replayed offline through a
Ward: monitor.replays.
"""
from __future__ import annotations

import copy
from collections import deque

import numpy as np
import torch

from .. import baseline
from ..batches import BeatSet, predict
from ..data import CLASSES, CONTEXT
from ..features import LOCAL_BEATS, LONG_BEATS, TEMPLATE_BEATS, _inputs_from_parts, beat_parts, median_of_rows
from ..models import decide
from .alarms import ALARM_THRESHOLDS, ARRHYTHMIA_ALARMS, NEVER_SUPPRESSED, AlarmRules, mean_of
from .gate import GateHistory, default_gate, judge_detections
from .qrs import StreamingQRS
from .quality import beat_similarity, block_qualities
from .vf import VFDetector

#: The patient's normal template for the VT rule (_normal_similarities): the median of the last beats
#: called N, few enough to follow a slowly changing QRS, enough that one beat read wrongly as N does not
#: set it.
NORMAL_TEMPLATE_BEATS = 8

V_INDEX = CLASSES.index("V")  # the column of p(V) in the model's probabilities
N_INDEX = CLASSES.index("N")  # the class whose beats make the normal template


class Monitor(AlarmRules):
    """A bedside monitor for one patient's ECG stream: finds beats, classifies them, raises alarms.

    Monitor(model, fs) takes chunks of any length (floats in mV, or integer converter counts
    with adc_gain; NaN for missing samples) through push(samples) and returns the events
    decided so far, each a
    dict with "type" ("beat", "alarm" or "signal_quality") and "time" in seconds
    from the start of the stream:
      beat: R-peak time, class, probabilities, the delay from R peak to event, the signal quality,
        and similarity: its QRS's likeness to the beat before it or to the patient's running
        template, whichever is closer (quality.beat_similarity; 1 the same shape, noise near 0), and
        normal_similarity: a V beat's likeness to the patient's last beats called N (None for
        other beats and before any beat was called N; _normal_similarities);
      alarm: kind (one of ARRHYTHMIA_ALARMS), start time, priority ("high", "medium" or
        "advisory", alarms.ALARM_PRIORITY), evidence, and announced (False for an advisory
        alarm, for one raised while a VF alarm sounds, and for the same alarm back within its
        re-alarm hold-off: logged, not sounded);
      signal_quality: kind ("missing", "flat", "saturated", "noisy" or "ok" when it recovers);
      noise (two-lead monitors only): a first-lead detection the noise gate read as noise, with its
        time, p_noise and delay_s; it is not classified and the rhythm rules never see it.
    A beat is classified once its inputs exist: 1 s of signal after its R peak and
    the next R peak, or, when that is slow to come, once the model no longer needs
    it: a model with rr_next_cap_s sees the next RR interval only up to that cap,
    so its beats wait at most the cap plus the detector's decision time (otherwise
    2 s, then classified as if the next RR were usual), and half a second more on a two-lead stream,
    whose beats wait for the noise gate (1 s after the R peak). Memory is bounded: a few seconds of
    signal, the last 32 beats and the last 256 RR intervals (with a blend, also the RR intervals of the
    last baseline.LONG_WINDOW_S seconds). With a blend (blend.FeatureBlend, chosen with this model),
    each beat's probabilities are the CNN's blended with the feature model's on the beat's
    baseline.FEATURES, computed from the same signal and the patient's own past beats as offline
    (the interval to the next beat as the CNN sees it, up to its cap), and the blend's decision
    thresholds replace the model's. The rhythm rules get each beat's class,
    RR interval and p(V): a VT alarm needs its last beats to be V beats the model is fairly sure of,
    optionally at a regular rate (alarms.ALARM_THRESHOLDS, vt_min_p_v and vt_max_rr_spread). Arrhythmia alarms are suppressed
    while the signal quality is bad, except ventricular fibrillation: a VFDetector (monitor.vf)
    judges every second the last 4 s of signal, without beats, tells VF from artifact itself,
    and its alarm is neither suppressed nor ended by the signal-quality guard.
    """

    MAX_WAIT_S = 2.0  # classify a beat without its next R peak after this long
    NEXT_BEAT_DECIDED_S = 0.5  # the detector decides a beat about 0.45 s after its R peak
    # the longest a search-back beat keeps its own signal for its class (Monitor._keep): 1.66 mean RR
    # at about 8 bpm; slower than that is asystole, alarmed long before
    MAX_LOOKBACK_S = 12.0

    def __init__(self, model, fs, thresholds=None, adc_limits=None, device="cpu", adc_gain=None, adc_baseline=0,
                 blend=None, leads=1, gate="default"):
        """adc_gain, adc_baseline: for input in converter counts, the counts per mV and the count at
        0 mV (a WFDB header's gain and baseline); every sample is then converted to mV. Without
        adc_gain the input must be floats in mV: integer samples are refused, never taken as mV.
        adc_limits: the converter's lowest and highest value, in the input's units.
        blend: a blend.FeatureBlend chosen with this model (FeatureBlend.load() for the recommended one).
        leads: 1, or 2 for a stream of two leads, pushed as (n, 2) chunks: the first is the lead that
        is classified, watched for VF and judged for quality, as a one-lead stream; the second is
        watched by a detector of its own for the noise gate (monitor.gate). gate: the two-lead
        stream's NoiseGate ("default": the shipped one; None: no gate, the second lead unused)."""
        if not fs or fs <= 0:
            raise ValueError(f"sampling rate must be positive, not {fs!r}")
        if leads not in (1, 2):
            raise ValueError(f"a monitor takes 1 or 2 leads, not {leads!r}")
        if leads == 1 and gate is not None and not (isinstance(gate, str) and gate == "default"):
            raise ValueError("the noise gate judges a detection with a second lead: give Monitor(..., leads=2)")
        self.leads = leads
        self.gate = (default_gate() if isinstance(gate, str) and gate == "default" else gate) if leads == 2 else None
        if blend is not None:
            blend.check(model)
        self.blend = blend
        # the class decision: the blend's thresholds with a blend, the model's without
        self.decision_meta = blend.meta if blend is not None else model.meta
        if adc_gain is not None and not adc_gain > 0:
            raise ValueError(f"adc_gain (counts per mV) must be positive, not {adc_gain!r}")
        self.adc_gain, self.adc_baseline = adc_gain, adc_baseline
        if adc_gain is not None and adc_limits is not None:
            adc_limits = tuple((limit - adc_baseline) / adc_gain for limit in adc_limits)
        self.model, self.fs, self.device = model, float(fs), torch.device(device)
        self.model_fs = model.meta["fs"]
        self.th = {**ALARM_THRESHOLDS, **(thresholds or {})}
        self.adc_limits = adc_limits
        self.detector = StreamingQRS(self.model_fs)
        self.vf = VFDetector(self.model_fs)  # VF from the signal: no beats needed
        # the noise gate's: the second lead's detector, its signal (kept in step with buffer), its
        # detections of the last seconds, the first lead's detections waiting for the gate (gate.judge_detections), the gate's
        # own history of both leads' detections, and the last detection it let through
        self.detector1 = StreamingQRS(self.model_fs) if self.gate is not None else None
        self.buffer1 = np.zeros(0, np.float32)
        self.last_in1 = None
        self.lead1_peaks, self.gate_pending, self.gate_history, self.last_passed = [], [], GateHistory(), None
        self.n_in = 0  # input samples seen
        self.n = 0  # samples at the model's rate produced
        self.last_in = None  # last input sample, for interpolation across chunks
        self.buffer = np.zeros(0, np.float32)  # recent signal at the model's rate, NaN kept
        self.buffer_start = 0
        self.block = np.zeros(0, np.float32)  # samples of the current 1-s quality block
        self.block_start = 0
        self.quality, self.bad_until = "ok", -1.0
        self.bad_blocks = []  # (start, end) samples of the last minute's bad quality blocks
        self.pending = []  # detected R peaks (samples at model rate) waiting to be classified
        self.history = []  # the last 32 beats' windows, each with its QRS amplitude as a last column
        self.last_r = None
        self.rr = []  # RR intervals (s) of the last LONG_BEATS beats: the local and the long mean
        self.last_rr_prev = np.nan  # the previous beat's RR interval before it
        self.recent = []  # (time, class, rr_prev, p(V), similarity, normal similarity) of the last beats
        self.normal_beats = []  # the beat windows of the last NORMAL_TEMPLATE_BEATS beats called N
        # the blend's feature model: the last beats' down-sampled waves and QRS peak-to-peaks (its
        # template and typical amplitude), and the RR intervals of the last LONG_WINDOW_S seconds
        self.waves, self.p2ps = [], []
        self.rr_window, self.rr_window_sum = deque(), 0.0
        self.active = set()  # alarms currently on
        self.announced = {}  # when each kind of alarm was last announced

    # -- input --------------------------------------------------------------------
    def _resample(self, x, last_in):
        """Linear interpolation onto the model's sampling grid, carried across chunks (last_in: the
        lead's sample before x, None at the start)."""
        if self.fs == self.model_fs:
            return x
        t_in = (self.n_in - 1 + np.arange(len(x) + 1)) / self.fs  # includes the previous sample
        prev = last_in if last_in is not None else x[0]
        xs = np.r_[prev, x]
        start = self.n
        end = int(np.floor((self.n_in + len(x) - 1) / self.fs * self.model_fs)) + 1
        if end <= start:
            return np.zeros(0, np.float32)
        t_out = np.arange(start, end) / self.model_fs
        good = ~np.isnan(xs)
        out = np.interp(t_out, t_in, np.where(good, xs, 0)).astype(np.float32)
        nan_near = np.interp(t_out, t_in, (~good).astype(float)) > 0  # keep missing samples missing
        out[nan_near] = np.nan
        return out

    def push(self, samples) -> list:
        """Feed the next chunk of samples (any length; mV, or counts with adc_gain; NaN = missing).

        Returns the events decided since the last push, in time order."""
        return _push_many([self], [samples])[0]

    def _take(self, samples):
        """Take in samples: return (the 1-s signal-quality blocks they complete, as _blocks returns them,
        the new samples at the model's rate, and the second lead's (None for one lead))."""
        x = np.asarray(samples)
        if self.leads == 2 and not (x.ndim == 2 and x.shape[1] == 2) and x.size:
            raise ValueError(f"a two-lead monitor takes chunks of shape (samples, 2), not {x.shape}")
        if self.leads == 1 and x.ndim == 2 and x.shape[1] != 1:
            raise ValueError(f"a one-lead monitor takes chunks of shape (samples,), not {x.shape}: "
                             "give Monitor(..., leads=2) for two leads")
        if x.size == 0:
            return [], np.zeros(0, np.float32), None
        if self.adc_gain is not None:
            x = (x.astype(np.float64) - self.adc_baseline) / self.adc_gain
        elif np.issubdtype(x.dtype, np.integer):
            raise ValueError("integer samples are converter counts, not mV: give Monitor(..., adc_gain=counts "
                             "per mV, adc_baseline=count at 0 mV), or push floats in mV")
        x = np.asarray(x, dtype=np.float64)
        x, x1 = (x[:, 0].astype(np.float32), x[:, 1].astype(np.float32)) if self.leads == 2 \
            else (x.ravel().astype(np.float32), None)
        y = self._resample(x, self.last_in)
        y1 = None
        if x1 is not None and self.gate is not None:
            y1 = self._resample(x1, self.last_in1)
            self.last_in1 = x1[-1]
        self.n_in += len(x)
        self.last_in = x[-1]
        if len(y) == 0:
            return [], y, y1
        self.n += len(y)
        self.buffer = np.concatenate([self.buffer, y])
        if y1 is not None:
            self.buffer1 = np.concatenate([self.buffer1, y1])
        return self._blocks(y), y, y1

    def _classes(self, probs) -> np.ndarray:
        """Return the class index of each row of probabilities: the blend's thresholds with a blend,
        the model's without (models.decide). _push_many decides once for the monitors sharing a model
        and a blend."""
        return decide(probs, self.decision_meta)

    def _finish(self, batch, probs, classes):
        """Beat events and rhythm alarms for classified beats (probs, and their classes from _classes),
        then the alarms for missing beats."""
        events = []
        if batch:
            for r, p, prev, k, similar, unlike in zip(batch["peaks"], probs.tolist(), batch["rr_prev"], classes.tolist(),
                                                      batch["similarity"].tolist(), batch["normal_similarity"].tolist()):
                t = r / self.model_fs
                cls = CLASSES[k]
                events.append({"type": "beat", "time": t, "class": cls, "probabilities": dict(zip(CLASSES, p)),
                               "delay_s": (batch["now"] - r) / self.model_fs, "quality": self.quality,
                               "similarity": similar,
                               "normal_similarity": None if unlike != unlike else unlike})  # None: NaN breaks ==
                # the rules see the beat's p(V), its likeness to the beat before or the template, and a
                # V beat's likeness to the patient's normal beats (ALARM_THRESHOLDS)
                events += self._rhythm_alarms(t, cls, prev, p[V_INDEX], similar, unlike)
        return events + self._timed_alarms()

    # -- signal quality -----------------------------------------------------------
    def _blocks(self, y) -> list:
        """Add samples at the model's rate to the current quality block; return the 1-s blocks they
        complete, [(first sample, samples)], for block_qualities (_push_many judges every monitor's
        blocks in one call) and then _quality."""
        block, out = int(self.model_fs), []
        self.block = np.concatenate([self.block, y])
        while len(self.block) >= block:
            out.append((self.block_start, self.block[:block]))
            self.block = self.block[block:]
            self.block_start += block
        return out

    def _quality_key(self) -> tuple:
        """What block_qualities needs besides the blocks: monitors with the same key are judged together (hashable)."""
        return (self.model_fs, self.th["flat_mv"], self.th["saturation_s"], self.th["noise_mv"],
                None if self.adc_limits is None else tuple(self.adc_limits))

    def _quality(self, blocks, states) -> list:
        """Take the quality states of the blocks (block_qualities of _blocks' blocks) in time order;
        return the signal-quality events."""
        events, block = [], int(self.model_fs)
        for (start, _), state in zip(blocks, states):
            t = start / self.model_fs
            if state != "ok":
                self.bad_until = t + 1 + self.th["quality_hold_s"]
                # the bad block's samples: an RR interval across them is no heart interval (_ready_beats)
                self.bad_blocks = [s for s in self.bad_blocks if s[1] > start + block - 60 * block]
                self.bad_blocks.append((start, start + block))
                self.active -= set(ARRHYTHMIA_ALARMS) - NEVER_SUPPRESSED  # a VF alarm stays on
                self.recent = []  # beats found in a bad signal must not feed rhythm alarms later
            if state != self.quality:
                events.append({"type": "signal_quality", "time": t, "kind": state})
                self.quality = state
        return events

    def _quality_ok(self, t):
        return self.quality == "ok" and t >= self.bad_until

    # -- beats --------------------------------------------------------------------
    def _ready_beats(self):
        """Model inputs for the detected beats whose next second of signal and next R peak exist."""
        now = self.n
        cap = getattr(self.model, "rr_next_cap_s", None)
        wait = (cap + self.NEXT_BEAT_DECIDED_S if cap else self.MAX_WAIT_S) * self.model_fs
        if self.gate is not None:
            # the next beat joins pending only once the gate has judged it, 1 s after its R peak rather than
            # the detector's 0.5: waited for that much longer, a beat still sees its next interval
            wait += CONTEXT[1] - self.NEXT_BEAT_DECIDED_S * self.model_fs
        ready = []
        while self.pending:
            r = self.pending[0]
            nxt = self.pending[1] if len(self.pending) > 1 else None
            if now - r < CONTEXT[1] or (nxt is None and now - r < wait):
                break
            ready.append((self.pending.pop(0), nxt))
        keep = self._keep()
        if not ready:
            self._trim(keep)
            return None
        contexts, rr_prev, rr_next, rr_local, rr_long, rr_before, rr_spread, rr_long_s = [], [], [], [], [], [], [], []
        for r, nxt in ready:
            contexts.append(self._window(self.buffer, r))
            prev = (r - self.last_r) / self.model_fs if self.last_r is not None else np.nan
            if self.last_r is not None and any(a < r and b > self.last_r for a, b in self.bad_blocks):
                # the interval spans a flat, missing, clipped or noisy stretch: beats were lost in it, so
                # it is no RR interval; it must not feed the RR means (which would make every beat after
                # a lead-off look premature), and this beat is judged as the first after a gap
                prev = np.nan
            rr_prev.append(prev)
            # features.rr_history's numbers: means of the last LOCAL_BEATS and LONG_BEATS intervals,
            # the previous beat's interval, the spread of the last LOCAL_BEATS
            if self.rr:
                recent = np.array(self.rr[-LOCAL_BEATS:])
                rr_local.append(mean_of(recent))
                rr_long.append(mean_of(np.array(self.rr)))
                # np.std's number: the root of the mean squared deviation
                rr_spread.append(np.sqrt(mean_of((recent - mean_of(recent)) ** 2)))
            else:
                rr_local.append(np.nan)
                rr_long.append(np.nan)
                rr_spread.append(np.nan)
            rr_before.append(self.last_rr_prev)
            # no next beat by now: with a capped model the RR is at least the cap, which is all it sees
            rr_next.append((nxt - r) / self.model_fs if nxt is not None else (cap or np.nan))
            if self.blend is not None:
                # baseline.rr_features' long-term rhythm: the mean of the intervals that ended in the last
                # LONG_WINDOW_S seconds before this beat (its own left out)
                t = r / self.model_fs
                while self.rr_window and self.rr_window[0][0] < t - baseline.LONG_WINDOW_S:
                    self.rr_window_sum -= self.rr_window.popleft()[1]
                rr_long_s.append(self.rr_window_sum / len(self.rr_window) if self.rr_window else np.nan)
                if not np.isnan(prev):
                    self.rr_window.append((t, prev))
                    self.rr_window_sum += prev
            if not np.isnan(prev):
                self.rr = (self.rr + [prev])[-LONG_BEATS:]
            self.last_r, self.last_rr_prev = r, prev
        # np.array, not np.stack: the same array for rows of one length, with less overhead; and
        # np.nan_to_num only when a sum says there is a NaN or an infinity (its overhead, on every beat,
        # was not small; on finite rows it changes nothing)
        contexts = np.array(contexts, dtype=np.float32)
        if not np.isfinite(contexts.sum()):
            contexts = np.nan_to_num(contexts)
        self._trim(keep)
        return {"peaks": [r for r, _ in ready], "context": contexts, "rr_prev": rr_prev, "rr_next": rr_next,
                "rr_local": rr_local, "rr_long": rr_long, "rr_before": rr_before, "rr_spread": rr_spread,
                "rr_long_s": rr_long_s, "now": now}

    def _window(self, buffer, r):
        """The context window of the R peak r (absolute sample) from buffer (buffer or buffer1)."""
        lo = r - CONTEXT[0] - self.buffer_start
        window = buffer[max(lo, 0):max(lo + CONTEXT[0] + CONTEXT[1], 0)]
        if len(window) < CONTEXT[0] + CONTEXT[1]:
            # the stream's first second: pad as the offline beat table does; or a beat the detector
            # found so late (a search-back in a pause longer than MAX_LOOKBACK_S) that its signal is
            # gone: padded the same way, so it still counts for the rhythm (pause, rate)
            edge = window[0] if len(window) else (buffer[0] if len(buffer) else 0)
            window = np.r_[np.full(CONTEXT[0] + CONTEXT[1] - len(window), edge), window]
        return window

    def _keep(self) -> int:
        """Return how many of the latest samples the buffer must hold: a beat's context and 3 s, or,
        while the detector holds sub-threshold candidates, back to the oldest one's R-peak search.

        The detector's search-back can emit a beat long after its R peak (1.66 mean RR after the
        beat before it, past 3 s below about 33 bpm: StreamingQRS._trim), and its class needs its
        own signal. Bounded by MAX_LOOKBACK_S: in asystole candidates pile up without a beat."""
        keep = int(CONTEXT[0] + CONTEXT[1] + 3 * self.model_fs)
        candidates = self.detector.candidates
        if candidates:
            oldest = candidates[0][0] - self.detector.r_reach - CONTEXT[0]
            keep = max(keep, min(self.n - oldest, int(CONTEXT[0] + CONTEXT[1] + self.MAX_LOOKBACK_S * self.model_fs)))
        return keep

    def _trim(self, keep):
        if len(self.buffer) > keep:
            self.buffer_start += len(self.buffer) - keep
            self.buffer = self.buffer[-keep:]
            if self.gate is not None:
                self.buffer1 = self.buffer1[-keep:]

    def fork(self) -> "Monitor":
        """Return a copy of this monitor in its present state that goes on on its own (its filters,
        buffers, beats and alarms copied), sharing what it only reads: the model, the blend and the
        VF detector's trees. Fed the same samples from here, both give the same events."""
        memo = {id(self.model): self.model, id(self.blend): self.blend, id(self.vf.model): self.vf.model,
                id(self.gate): self.gate}
        return copy.deepcopy(self, memo)


class Ward:
    """Many patients' monitors served together: each push runs the QRS filters and peak search, the
    VF detector, the beats' patient-relative inputs and the model once for all patients, which is
    what lets one CPU core follow hundreds of streams (benchmarks/bench_monitor.py).

    ward = Ward(model); ward.add("bed 3", fs=250); ward.push({"bed 3": samples, ...})
    returns {patient: events}, the same events each Monitor.push would return.
    """

    def __init__(self, model, device="cpu", blend=None):
        """blend: a blend.FeatureBlend chosen with model, given to every patient's Monitor."""
        if blend is not None:
            blend.check(model)
        self.model, self.device, self.blend, self.monitors = model, device, blend, {}

    def add(self, patient, fs, model=None, blend=None, **kwargs) -> Monitor:
        """Admit a patient; return their Monitor (kwargs as Monitor takes them). model: this patient's
        own model instead of the ward's, for example a cross-validation fold's model for the patients
        it never saw, with the blend given here (none by default, never the ward's); the ward calls
        each model once per push for its own patients. A blend chosen with another model is refused."""
        if model is None:
            model = self.model
            blend = self.blend if blend is None else blend
        self.monitors[patient] = Monitor(model, fs, device=self.device, blend=blend, **kwargs)
        return self.monitors[patient]

    def push(self, chunks) -> dict:
        unknown = [p for p in chunks if p not in self.monitors]
        if unknown:
            raise KeyError(f"no monitor for patient(s) {unknown}: add them first with ward.add(patient, fs)")
        patients = list(chunks)
        return dict(zip(patients, _push_many([self.monitors[p] for p in patients], [chunks[p] for p in patients])))


def _push_many(monitors, chunks) -> list:
    """Push one chunk into each monitor (all sharing one model); return each monitor's events.

    Monitor.push and Ward.push both come here, so a monitor gives the same events alone or on a
    ward. The work that numpy and the model do faster in bulk is done once for all monitors: the
    QRS filters, the beats' patient-relative inputs and the model call; the per-patient decisions
    (peaks, rhythm, alarms) stay per monitor.
    """
    staged = [m._take(x) for m, x in zip(monitors, chunks)]
    quality_events = _judge_blocks(monitors, [blocks for blocks, _, _ in staged])
    groups = {}
    for i, (_, y, _) in enumerate(staged):
        if len(y):
            groups.setdefault((monitors[i].model_fs, len(y)), []).append(i)
    for idx in groups.values():
        found = StreamingQRS.feed_many([monitors[i].detector for i in idx], np.stack([staged[i][1] for i in idx]))
        for i, peaks in zip(idx, found):
            if monitors[i].gate is not None:
                monitors[i].gate_pending += peaks  # the gate judges them first (gate.judge_detections)
            else:
                monitors[i].pending += peaks
        gated = [i for i in idx if monitors[i].gate is not None]
        if gated:
            found = StreamingQRS.feed_many([monitors[i].detector1 for i in gated], np.stack([staged[i][2] for i in gated]))
            for i, peaks in zip(gated, found):
                m = monitors[i]
                m.lead1_peaks = [p for p in m.lead1_peaks if p > m.n - 10 * m.model_fs] + peaks
    gate_events = judge_detections(monitors)
    vf_windows = [[] for _ in monitors]
    for idx in groups.values():
        found = VFDetector.feed_many([monitors[i].vf for i in idx], np.stack([staged[i][1] for i in idx]))
        for i, windows in zip(idx, found):
            vf_windows[i] = windows
    batches = [m._ready_beats() if len(y) else None for m, (_, y, _) in zip(monitors, staged)]
    by_rate = {}
    for i, b in enumerate(batches):
        if b:
            by_rate.setdefault(monitors[i].model_fs, []).append(i)
    probs, classes = [None] * len(monitors), [None] * len(monitors)
    for ready in by_rate.values():
        # the beats' inputs once for every patient; then one model call per model (a ward may serve
        # patients with different models: replay_jobs' cross-validation folds) and per blend
        inputs = _ward_inputs([monitors[i] for i in ready], [batches[i] for i in ready])
        contexts = np.concatenate([batches[i]["context"] for i in ready])
        data = BeatSet.from_arrays(contexts, inputs, np.zeros(len(contexts), np.int64))
        beat_of = np.repeat(np.arange(len(ready)), [len(batches[i]["context"]) for i in ready])
        by_model = {}
        for k, i in enumerate(ready):
            m = monitors[i]
            by_model.setdefault((id(m.model), id(m.blend), str(m.device)), []).append(k)
        for ks in by_model.values():
            first = monitors[ready[ks[0]]]
            part = data if len(by_model) == 1 else data.subset(np.isin(beat_of, ks))
            out = predict(first.model, part, first.model.meta["input"], first.device)
            if first.blend is not None:  # one feature model call for the monitors sharing this blend
                out = first.blend.probs(out, _blend_features([monitors[ready[k]] for k in ks],
                                                             [batches[ready[k]] for k in ks]))
            sizes = np.cumsum([len(batches[ready[k]]["context"]) for k in ks])[:-1]
            for k, p, c in zip(ks, np.split(out, sizes), np.split(first._classes(out), sizes)):
                probs[ready[k]], classes[ready[k]] = p, c
    _normal_similarities(monitors, batches, classes)
    return [events + noise + m._vf_alarms(w) + m._finish(b, p, c)
            for m, events, noise, w, b, p, c in zip(monitors, quality_events, gate_events, vf_windows, batches, probs,
                                                     classes)]


def _normal_similarities(monitors, batches, classes):
    """Give each classified beat of the monitors' batches its normal_similarity (in batch["normal_similarity"]):
    for a beat called V, its QRS likeness to its patient's normal template (quality.beat_similarity
    with the median of the last NORMAL_TEMPLATE_BEATS beats its monitor called N, kept in
    monitor.normal_beats); NaN for other beats and before any beat was called N. A beat called N joins
    its patient's template, in time order, so a V beat is compared with the N beats before it.

    The model's own template (the median of the last 32 beats, whatever their class) takes on a V
    shape where V beats are frequent (record 203): the VT rule needs the patient's normal beats. A
    normal beat read as V (through noise, or aberrant conduction) looks like them; a VT beat does not.
    One beat_similarity call for every V beat of the ward: called per beat, it took 1.3 ms (its loop
    over shifts), about 7% of a ward's work."""
    found = {}  # model rate: (batch, beat index, window, template) of each V beat
    for m, b, c in zip(monitors, batches, classes):
        if not b:
            continue
        b["normal_similarity"] = np.full(len(c), np.nan)
        for j, k in enumerate(c.tolist()):
            if k == N_INDEX:
                m.normal_beats = m.normal_beats[1 - NORMAL_TEMPLATE_BEATS:] + [b["beat"][j].copy()]  # no batch held
            elif k == V_INDEX and m.normal_beats:
                found.setdefault(m.model_fs, []).append((b, j, b["beat"][j], np.median(np.array(m.normal_beats), axis=0)))
    for fs, beats in found.items():
        likeness = beat_similarity(np.array([w for _, _, w, _ in beats]), np.array([t for *_, t in beats]), fs)
        for (b, j, _, _), value in zip(beats, likeness.tolist()):
            b["normal_similarity"][j] = value


def _judge_blocks(monitors, blocks) -> list:
    """Judge the 1-s quality blocks of every monitor (blocks: each one's _blocks output) with one
    block_qualities call per _quality_key; return each monitor's signal-quality events (_quality)."""
    by_key = {}
    for i, (m, b) in enumerate(zip(monitors, blocks)):
        if b:
            by_key.setdefault(m._quality_key(), []).append(i)
    states = [[] for _ in monitors]
    for idx in by_key.values():
        first = monitors[idx[0]]  # the group shares what block_qualities reads of it
        judged = block_qualities(np.stack([x for i in idx for _, x in blocks[i]]), first.th, first.model_fs,
                                 first.adc_limits)
        at = 0
        for i in idx:
            states[i] = judged[at:at + len(blocks[i])]
            at += len(blocks[i])
    return [m._quality(b, s) for m, b, s in zip(monitors, blocks, states)]


def _ward_inputs(monitors, batches) -> dict:
    """patient_inputs for the ready beats of several monitors at once, each beat compared with its
    own patient's previous TEMPLATE_BEATS beats (kept by its monitor); the same numbers as offline."""
    contexts = np.concatenate([b["context"] for b in batches])
    ctx, beat, amplitude = beat_parts(contexts, np.median(contexts, axis=1))
    # each beat's window with its QRS amplitude as one more column: one array of a patient's last beats
    beat_and_amplitude = np.concatenate([beat, amplitude[:, None]], axis=1)
    past_rows, previous_rows, row = [], [], 0
    for m, b in zip(monitors, batches):
        n = len(b["context"])
        first = len(m.history) == 0
        rows, past, m.history = _running_past(m.history, beat_and_amplitude[row:row + n], TEMPLATE_BEATS)
        past_rows.append(rows[past])
        # each beat's predecessor, for how much it looks like it (quality.beat_similarity, below)
        previous = rows[past[:, -1], :-1]
        if first:
            previous[0] = np.nan  # the stream's first beat has none
        previous_rows.append(previous)
        b["beat"] = beat[row:row + n]
        row += n
    # the medians of the previous TEMPLATE_BEATS beats: the template, and the typical QRS amplitude
    medians = median_of_rows(np.concatenate(past_rows))
    template, typical = medians[:, :-1], medians[:, -1]
    # for the rhythm rules, not the model: each beat's likeness to the beat before it or to its patient's
    # running template, whichever is closer (a multiform rhythm repeats its shapes; noise repeats none);
    # never NaN: a stream's first beat has no beat before it but is its own template
    fs = monitors[0].model_fs
    similarity = np.fmax(beat_similarity(beat, np.concatenate(previous_rows), fs), beat_similarity(beat, template, fs))
    for b, part in zip(batches, np.split(similarity, np.cumsum([len(b["context"]) for b in batches])[:-1])):
        b["similarity"] = part
    rr = {k: np.concatenate([b[k] for b in batches])
          for k in ("rr_prev", "rr_next", "rr_local", "rr_long", "rr_before", "rr_spread")}
    return _inputs_from_parts(ctx, beat, amplitude, typical, template, rr["rr_prev"], rr["rr_next"], rr["rr_local"],
                              rr["rr_long"], rr["rr_before"], rr["rr_spread"])


def _running_past(kept, new, count) -> tuple:
    """Return (rows, past, kept): a patient's kept rows (its last count beats' values, an array or
    [] at the start) followed by the new beats' rows; past (n new, count), the index in rows of each
    new beat's previous count beats, the stream's first beat standing in for those before it
    (features.causal_median's rule); and the last count rows to keep (a copy, holding no batch)."""
    rows = np.array(new) if len(kept) == 0 else np.concatenate([kept, new])
    j = np.arange(len(kept), len(rows))
    past = np.maximum(j[:, None] - count + np.arange(count), 0)
    return rows, past, rows[-count:].copy()


def _blend_features(monitors, batches):
    """baseline.FEATURES of the ready beats of several monitors at once, each beat's template and
    typical amplitude from its own patient's previous beats (kept by its monitor); the numbers
    baseline.beat_features gives offline for the same beats of the same signal."""
    contexts = np.concatenate([b["context"] for b in batches]).astype(np.float64)
    before, after = baseline.window_samples(monitors[0].model_fs)
    parts = baseline.window_parts(contexts[:, CONTEXT[0] - before:CONTEXT[0] + after + 1], monitors[0].model_fs)
    past_waves, past_p2ps, row = [], [], 0
    for m, b in zip(monitors, batches):
        n = len(b["context"])
        # baseline.causal_template's rule: the previous TEMPLATE_BEATS beats, the stream's first beat
        # standing in for those before it
        waves, past, m.waves = _running_past(m.waves, parts["wave"][row:row + n], baseline.TEMPLATE_BEATS)
        p2ps, _, m.p2ps = _running_past(m.p2ps, parts["qrs_p2p"][row:row + n], baseline.TEMPLATE_BEATS)
        past_waves.append(waves[past])
        past_p2ps.append(p2ps[past])
        row += n
    template = np.median(np.concatenate(past_waves), axis=1)
    typical = np.median(np.concatenate(past_p2ps), axis=1)
    shape = baseline.shape_from_parts(parts, template, typical)
    rr = {k: np.concatenate([np.asarray(b[k], dtype=np.float64) for b in batches])
          for k in ("rr_prev", "rr_next", "rr_local", "rr_long_s")}
    rhythm = baseline.rr_frame(rr["rr_prev"], rr["rr_next"], rr["rr_local"], rr["rr_long_s"])
    return np.concatenate([rhythm.to_numpy(), shape[baseline.FEATURES[len(baseline.RR_FEATURES):]].to_numpy()], axis=1)
