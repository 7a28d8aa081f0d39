"""The two-lead noise gate: every detection the QRS detector makes on the first lead is judged with
the second lead before it is classified, and a detection the gate reads as noise leaves the beat
stream (a "noise" event reports it).

Electrode motion makes the detector find bumps of noise as beats; they raise the rate and, read as V,
make runs. One lead cannot tell many of them from beats: its bumps often look like a QRS (quality.
beat_similarity). A second lead sees the same heart beat at the same moment, with its own shape, while
the motion it picks up, though the same motion (nstdb's two channels are one movement seen by two
electrode pairs), rarely makes a bump of lead 1's own QRS shape in the same place. The gate asks, for
each lead-0 detection: how far is the nearest lead-1 detection, how much does the lead-1 signal there
look like the lead-1 signal at the patient's recent detections and like the one before, how large is
it; and of lead 0 the measures benchmarks/noise_gate_ds1.py found tell noise from beats (likeness to
the beat before and to the template, the intervals before, the size against the typical beat, the
roughness and steepness of the QRS). A small gradient-boosted tree ensemble (as the VF detector's,
evaluated from plain numbers in noise_gate.json.gz) turns them into p(noise); gate_fit fits it on the DS1
patients and writes the file (DS2 never read).

Status: offered, not yet in the report. Through the live monitor on DS1 out of fold
(benchmarks/two_leads_ds1.py, its rule written before it ran) it cut the false alarms in
electrode-motion noise by 42% and lifted QRS +P at 6 dB from 86% to 96%, for 0.04 points of QRS Se on
the clean records (0.05 allowed) once each replay's last 3 s were left unscored (scored to the ends,
where its longer wait leaves more of the last beats unemitted: 0.07). The monitor runs one lead unless
given two (Monitor's leads=2); notebook 05 does not run two yet.

The features use only what a live monitor has when it judges a detection: the signal up to 1 s after
the R peak (its context window), the detections before it on both leads (its own history, which keeps
every detection, dropped or not, so the live gate sees what the offline fit saw), and the lead-1
detections within LEAD1_REACH_S of it, which the detector has decided by then. The gate does not read
the interval to the next beat: it would hold every beat back one more beat.

judge_detections is the live step (a Ward's push calls it once for all its two-lead monitors);
gate_features and record_features compute the features live and offline alike.
Imports: data (the context window), features (beat_parts, median_of_rows), trees, monitor.quality
(beat_similarity), NumPy.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .. import trees
from ..data import CONTEXT, FS
from ..features import beat_parts, median_of_rows
from .quality import beat_similarity

#: One column each, in this order (gate_features).
GATE_FEATURES = ["likeness to the beat before", "likeness to the template", "rr_prev / local RR",
                 "amplitude / typical", "local RR sd / local RR", "QRS roughness", "distance from the template",
                 "2-s peak-to-peak / typical", "steepest slope / typical",
                 "lead 1: distance to its nearest detection (s)", "lead 1: likeness to the beat before",
                 "lead 1: likeness to the template", "lead 1: amplitude / typical"]
#: The gate's settings. threshold: p(noise) above it drops the detection; gate_fit chooses it on DS1 out
#: of fold (the lowest that drops at most 0.05% of the clean records' real beats and 0.1% of their V
#: beats) and writes it into the gate's file, whose value a NoiseGate takes; this one is for a file without.
GATE_SETTINGS = {"threshold": 0.9}
#: The gate never drops a detection that comes more than this long after the last detection it let
#: through, so it cannot make a pause: at rates under 80 per minute at most one beat in a row is lost,
#: and a pause alarm (3 s) needs a gap of the detector's own (judge_detections).
GATE_MAX_GAP_S = 1.5
#: The lead-1 detections the gate reads: within this of the lead-0 R peak (farther counts as this far).
#: The detector decides a beat about 0.45 s after its R peak, so those are known when the gate judges,
#: 1 s after the R peak.
LEAD1_REACH_S = 0.3
#: The patient's template and typical amplitude: the median of this many previous detections (each
#: lead), as the classifier's template (features.TEMPLATE_BEATS).
HISTORY_BEATS = 32
LOCAL_RR_BEATS = 8  # the local RR: the mean of this many intervals before the detection's own
QRS_HALF = int(0.1 * FS)  # the QRS region of the shape measures: 100 ms either side of the R peak

MODEL_PATH = Path(__file__).with_name("noise_gate.json.gz")


class NoiseGate(trees.FeatureTreeModel):
    """The gate's trees (trees.TreeModel, written by gate_fit), fitted on GATE_FEATURES or some of them
    (read by name from a row of all of them), refused when fitted on a feature the gate does not
    compute; threshold: p(noise) above it drops a detection (default: the file's, else GATE_SETTINGS')."""

    FEATURES, NAME, WRITTEN_BY = tuple(GATE_FEATURES), "noise gate", "python -m ekg.monitor.gate_fit"

    def __init__(self, spec, threshold=None):
        fitted = list(spec["features"])
        if not fitted or not set(fitted) <= set(GATE_FEATURES):
            raise ValueError(f"noise gate was fitted on features {fitted}, not on the gate's {GATE_FEATURES} "
                             "or some of them")
        trees.TreeModel.__init__(self, spec)
        self.columns = [GATE_FEATURES.index(name) for name in fitted]
        self.threshold = float(spec.get("threshold", GATE_SETTINGS["threshold"]) if threshold is None else threshold)

    def raw(self, features, compiled=None) -> np.ndarray:
        """trees.TreeModel.raw of rows of every GATE_FEATURES column (gate_features' rows), or of the
        fitted columns alone."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim == 2 and x.shape[1] == len(GATE_FEATURES):
            x = x[:, self.columns]
        return super().raw(x, compiled)

    @classmethod
    def load(cls, path=MODEL_PATH, threshold=None) -> "NoiseGate":
        return super().load(path, threshold=threshold)


@functools.cache
def default_gate() -> NoiseGate:
    """The shipped gate (noise_gate.json.gz), loaded once."""
    return NoiseGate.load()


class GateHistory:
    """What the gate keeps of one patient's stream: the last HISTORY_BEATS detections' beat windows
    and QRS amplitudes on both leads, the last LOCAL_RR_BEATS intervals, the last detection."""

    def __init__(self):
        self.rows0 = self.rows1 = None  # (k, beat window + amplitude) per lead
        self.rr = []
        self.last_peak = None


def _with_past_many(kept, new, sizes):
    """For several patients at once: (previous rows, template rows) of each new row (beat window +
    amplitude as the last column; new holds every patient's new rows, sizes how many each) from the
    rows kept before it, and each patient's rows to keep. The stream's first detection is its own
    predecessor and stands in for the history before it (features.causal_median's rule). One gather
    and one median (features.median_of_rows) for every patient: per patient they were most of a
    two-lead ward's gate time."""
    blocks, past, previous, at = [], [], [], 0
    split = np.split(new, np.cumsum(sizes)[:-1])
    for k, rows_new in zip(kept, split):
        rows = rows_new if k is None else np.concatenate([k, rows_new])
        j = np.arange(len(rows) - len(rows_new), len(rows))
        past.append(at + np.maximum(j[:, None] - HISTORY_BEATS + np.arange(HISTORY_BEATS), 0))
        previous.append(at + np.maximum(j - 1, 0))
        blocks.append(rows)
        at += len(rows)
    rows = np.concatenate(blocks)
    template = median_of_rows(rows[np.concatenate(past)])
    return rows[np.concatenate(previous)], template, [b[-HISTORY_BEATS:].copy() for b in blocks]


def gate_features(histories, parts, fs=FS) -> np.ndarray:
    """Return GATE_FEATURES (rows in the order of parts, each part's in time order) of the detections of
    several patients, updating each one's GateHistory.

    parts: per patient, (peaks (samples), lead-0 context windows (n, CONTEXT), lead-1 context windows at
    the same R peaks, the lead-1 detections known (samples, sorted)). The windows' parts, the templates
    and the beat similarities of every patient are computed in one call each, as a ward needs."""
    active = [(h, p) for h, p in zip(histories, parts) if len(p[0])]
    if not active:
        return np.zeros((0, len(GATE_FEATURES)), np.float32)
    sizes = [len(p[0]) for _, p in active]
    ctx, beat, amplitude_0 = beat_parts(np.concatenate([p[1] for _, p in active]))
    _, beat_1, amplitude_1 = beat_parts(np.concatenate([p[2] for _, p in active]))
    prev0, templ0, kept0 = _with_past_many([h.rows0 for h, _ in active],
                                           np.concatenate([beat, amplitude_0[:, None]], axis=1), sizes)
    prev1, templ1, kept1 = _with_past_many([h.rows1 for h, _ in active],
                                           np.concatenate([beat_1, amplitude_1[:, None]], axis=1), sizes)
    rhythm, dist = [], []
    for (history, (peaks, _, _, lead1)), k0, k1 in zip(active, kept0, kept1):
        history.rows0, history.rows1 = k0, k1
        peaks = np.asarray(peaks, dtype=np.int64)
        for r in peaks.tolist():
            rr_prev = (r - history.last_peak) / fs if history.last_peak is not None else np.nan
            local = np.array(history.rr[-LOCAL_RR_BEATS:])
            mean = local.mean() if len(local) else np.nan
            rhythm.append((rr_prev / mean, local.std() / mean if len(local) else np.nan))
            if not np.isnan(rr_prev):
                history.rr = (history.rr + [rr_prev])[-LOCAL_RR_BEATS:]
            history.last_peak = r
        lead1 = np.asarray(lead1, dtype=np.int64)
        if len(lead1):
            i = np.searchsorted(lead1, peaks)
            before = np.abs(peaks - lead1[np.clip(i - 1, 0, len(lead1) - 1)])
            after = np.abs(lead1[np.clip(i, 0, len(lead1) - 1)] - peaks)
            dist.append(np.minimum(np.minimum(before, after) / fs, LEAD1_REACH_S))
        else:
            dist.append(np.full(len(peaks), LEAD1_REACH_S))
    typical = np.maximum(templ0[:, -1], 0.05)
    typical_1 = np.maximum(templ1[:, -1], 0.02)
    qrs_template = templ0[:, :-1]
    centre = beat.shape[1] // 2
    qrs, qrs_t = beat[:, centre - QRS_HALF:centre + QRS_HALF], qrs_template[:, centre - QRS_HALF:centre + QRS_HALF]
    amplitude = np.ptp(qrs, axis=1)
    amplitude_qrs_1 = np.ptp(beat_1[:, centre - QRS_HALF:centre + QRS_HALF], axis=1)
    rhythm = np.array(rhythm, dtype=np.float64)
    return np.column_stack([
        beat_similarity(beat, prev0[:, :-1], fs), beat_similarity(beat, qrs_template, fs),
        rhythm[:, 0], amplitude / typical, rhythm[:, 1],
        np.abs(np.diff(qrs, 2, axis=1)).sum(1) / np.maximum(amplitude, 1e-3),
        np.linalg.norm(qrs - qrs_t, axis=1) / np.maximum(np.linalg.norm(qrs_t, axis=1), 1e-3),
        np.ptp(ctx, axis=1) / typical, np.abs(np.diff(qrs, axis=1)).max(1) / typical,
        np.concatenate(dist), beat_similarity(beat_1, prev1[:, :-1], fs),
        beat_similarity(beat_1, templ1[:, :-1], fs), amplitude_qrs_1 / typical_1,
    ]).astype(np.float32)


def judge_detections(monitors) -> list:
    """Judge the first-lead detections of two-lead monitors (monitor.stream.Monitor with leads=2) once their window of
    signal after the R peak is in: the detections the gate reads as noise leave the beat stream and are
    reported as "noise" events, the others join the monitor's pending beats in time order. One feature
    pass and one tree call per gate for every monitor. Returns each monitor's noise events.

    Two safety valves: the gate never drops a detection that comes more than GATE_MAX_GAP_S after the
    last one it let through (nor the stream's first), and it does not judge a detection whose second
    lead is flat (peak-to-peak under flat_mv over its 2-s window) or missing (more than a tenth of it
    NaN): a lead that fell off says nothing about the first lead's beats."""
    events = [[] for _ in monitors]
    judged = []  # (monitor index, ready detections, features)
    for i, m in enumerate(monitors):
        if m.gate is None or not m.gate_pending:
            continue
        ready = [r for r in m.gate_pending if m.n - r >= CONTEXT[1]]
        if not ready:
            continue
        m.gate_pending = m.gate_pending[len(ready):]
        judged.append((i, ready, (ready, np.array([m._window(m.buffer, r) for r in ready]),
                                  np.array([m._window(m.buffer1, r) for r in ready]), np.sort(m.lead1_peaks))))
    if not judged:
        return events
    features = gate_features([monitors[i].gate_history for i, _, _ in judged], [part for _, _, part in judged],
                             monitors[judged[0][0]].model_fs)
    by_gate, row = {}, 0
    for i, ready, _ in judged:
        by_gate.setdefault(id(monitors[i].gate), []).append((i, ready, row))
        row += len(ready)
    for members in by_gate.values():
        gate = monitors[members[0][0]].gate
        rows = np.concatenate([np.arange(start, start + len(ready)) for _, ready, start in members])
        p_noise = dict(zip(rows.tolist(), gate.probability(features[rows]).tolist()))
        for i, ready, start in members:
            m = monitors[i]
            for k, r in enumerate(ready):
                p = p_noise[start + k]
                lead1 = m._window(m.buffer1, r)
                lead1_off = np.isnan(lead1).mean() > 0.1 or np.nanmax(lead1) - np.nanmin(lead1) < m.th["flat_mv"] \
                    if not np.isnan(lead1).all() else True
                too_long = m.last_passed is not None and r - m.last_passed > GATE_MAX_GAP_S * m.model_fs
                if p > gate.threshold and not lead1_off and not too_long and m.last_passed is not None:
                    events[i].append({"type": "noise", "time": r / m.model_fs, "p_noise": p,
                                      "delay_s": (m.n - r) / m.model_fs})
                else:
                    m.pending.append(r)
                    m.last_passed = r
    return events


def context_windows(signal, peaks) -> np.ndarray:
    """The context windows (n, CONTEXT) of a whole 360-Hz signal at the peaks, edge-padded at the ends
    (as the monitor pads its first second); NaN counts as 0, as in the monitor's windows."""
    before, after = CONTEXT
    padded = np.pad(np.nan_to_num(np.asarray(signal, dtype=np.float32)), (before, after), mode="edge")
    return np.lib.stride_tricks.sliding_window_view(padded, before + after)[np.asarray(peaks, dtype=int)].copy()


def record_features(signal0, signal1, peaks0, peaks1, fs=FS) -> np.ndarray:
    """GATE_FEATURES of every lead-0 detection of a whole two-lead recording at 360 Hz (peaks0, peaks1:
    each lead's detections), as the live gate computes them (every lead-1 detection counts as known)."""
    history = GateHistory()
    return gate_features([history], [(peaks0, context_windows(signal0, peaks0), context_windows(signal1, peaks0),
                                      np.sort(np.asarray(peaks1, dtype=np.int64)))], fs)
