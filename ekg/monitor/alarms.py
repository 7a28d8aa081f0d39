"""Clinical alarms: every threshold with its source, and the rhythm rules that turn classified
beats (and beats that did not come) into alarm events; and the scoring of VT alarms against the
reference rhythm labels (vt_episodes, score_vt_alarms), shared by notebook 05 and the VT tuning.

Imports: NumPy only; the Monitor that uses these rules lives in monitor.stream.
"""
from __future__ import annotations

import numpy as np


#: Every alarm threshold in one place, with where it comes from. Change them here.
ALARM_THRESHOLDS = {
    # Ventricular tachycardia: 3 or more consecutive ventricular beats at a rate above 100 bpm
    # (ACC/AHA/ESC 2006 ventricular arrhythmia guideline; the MIT-BIH "(VT" rhythm label).
    "vt_min_beats": 3, "vt_min_rate_bpm": 100,
    # ... and, before a VT alarm sounds, the run's last vt_min_beats beats must be V beats the model is
    # fairly sure of (each with p(V) at least vt_min_p_v), optionally at a regular rhythm (their RR
    # intervals' range at most vt_max_rr_spread of their mean; inf: no limit). A project choice, tuned
    # on the DS1 patients replayed through this monitor, each with the cross-validation fold's model
    # that never saw them (benchmarks/tune_vt_ds1.py: most DS1 VT episodes alarmed, then fewest false
    # VT alarms per patient-hour): replayed on the live beats, 28 of 39 episodes against 24 (1.99
    # false VT alarms per patient-hour) for the gate of 0.9 and 40% chosen before on the reference
    # beats, where a p(V) of 0.87 or one missed beat in a real run held the alarm back; with the
    # similarity and normal-likeness gates below, the live monitor alarms 27, with 2.5 false per
    # patient-hour (4.4 before the normal-likeness gate). The false
    # runs are mostly aberrant, irregular beats in atrial fibrillation (record 203) read as V; a
    # regularity limit removes some of them but cost VT episodes on DS1.
    "vt_min_p_v": 0.7, "vt_max_rr_spread": float("inf"),
    # Noise: electrode motion makes the QRS detector find bumps of noise as beats, which raise the
    # rate and, read as V, make runs. Each beat's QRS is compared with the beat before it and with
    # the patient's running template (quality.beat_similarity, the closer of the two: 1 is the same
    # shape; a multiform rhythm repeats its shapes, noise repeats none). A VT run's last
    # vt_min_beats - 1 beats must each reach vt_min_similarity (its first beat, unlike the normal
    # beats before it, is not asked), and an RR interval enters the rate of the tachycardia and
    # bradycardia alarms only when the beat that ends it reaches rate_min_similarity (-1, the lowest
    # similarity: off). Chosen on DS1, clean and with electrode-motion noise at 12, 6 and 0 dB
    # (benchmarks/tune_noise_ds1.py: the most clean VT episodes, then at least 95% of the true rate
    # alarms kept, then the fewest false alarms): the VT gate at 0.6 keeps all 28 clean DS1 episodes
    # and cuts false alarms, clean and noisy, from 738 to 654 (false VT 330 to 246); every rate gate
    # tried lost more than 5% of the true tachycardia and bradycardia alarms (at 0.5, 7 of 61), so none.
    "vt_min_similarity": 0.6, "rate_min_similarity": -1.0,
    # ... and at least vt_min_unlike_normal of the run's last vt_min_beats beats must look unlike the
    # patient's normal beats: a QRS's likeness to the median of the last 8 beats called N
    # (stream._normal_similarities) at most vt_max_normal_similarity (inf: no limit). Noise and
    # aberrant conduction (record 203's atrial fibrillation) can make the model read the patient's own
    # normal beats as V, after a real V beat too, and they still look like the normal beats; a VT beat
    # does not, though in 203's multiform VT some do. Chosen on DS1 with the gates above
    # (benchmarks/tune_noise_ds1.py, same rule): 2 of 3 beats at most 0.85 keeps all 28 clean DS1 episodes and cuts the false VT alarms,
    # clean and noisy, from 246 to 172 (at 12 dB 29 to 12); every 3-of-3 gate tried lost episodes.
    "vt_max_normal_similarity": 0.85, "vt_min_unlike_normal": 2,
    # Couplet: exactly 2 consecutive ventricular beats. Bigeminy / trigeminy: a ventricular beat
    # after every 1 / 2 other beats, alarmed after 3 such cycles (as bedside monitors do).
    "pattern_cycles": 3,
    # Frequent ectopy: more than this many S or V beats in the last minute (the common bedside
    # default for a "PVCs/min high" alarm is 10).
    "ectopic_per_min": 10,
    # Tachycardia and bradycardia: mean rate over the last 8 beats above / below these (adult
    # bedside defaults; AHA defines tachycardia above 100 and bradycardia below 60 bpm at rest).
    "rate_beats": 8, "tachycardia_bpm": 120, "bradycardia_bpm": 50,
    # ... and a rate alarm ends only once the rate is this far back inside the limits (hysteresis),
    # so a rate hovering at a limit is one alarm.
    "rate_hysteresis_bpm": 5,
    # Pause / asystole: no beat for this many seconds (3 s pause is the usual Holter/monitor
    # criterion; asystole alarms at about 4 s on bedside monitors).
    "pause_s": 3.0, "asystole_s": 4.0,
    # Signal quality, judged on 1-s blocks: flat (lead off) when the peak-to-peak is below
    # flat_mv; saturated when a run of identical samples at an extreme lasts saturation_s;
    # noisy when the median absolute second difference exceeds noise_mv (clean ECG at 360 Hz
    # sits near 0.005 mV). Arrhythmia alarms stay off while the signal is bad and for
    # quality_hold_s after it recovers.
    "flat_mv": 0.05, "saturation_s": 0.05, "noise_mv": 0.06, "quality_hold_s": 3.0,
    # Re-alarm hold-off: an alarm that has ended and comes back within this many seconds of its
    # last announcement is reported with announced=False (logged, no new sound), so a rhythm that
    # flips back and forth gives one alarm, not dozens (repeat alarms feed alarm fatigue: Drew et
    # al., PLoS One 2014). Life-threatening alarms (VF, ventricular tachycardia, asystole) use the
    # shorter hold-off. A project choice, not a standard: bedside monitors make it configurable.
    "realarm_s": 60.0, "realarm_critical_s": 10.0,
}


CRITICAL_ALARMS = {"ventricular fibrillation", "ventricular tachycardia", "asystole"}


ARRHYTHMIA_ALARMS = ["ventricular fibrillation", "ventricular tachycardia", "couplet", "bigeminy", "trigeminy",
                     "frequent ectopy", "tachycardia", "bradycardia", "pause", "asystole"]

#: Alarm priority as IEC 60601-1-8 grades alarm conditions and bedside monitors assign them (the
#: AAMI/ANSI EC13 life-threatening arrhythmias high; rate limits and pauses medium; ectopy advisory).
#: High and medium alarms sound; advisory ones are logged with their evidence and never sounded
#: (announced=False), which is how monitors keep ectopy counts from becoming alarm fatigue.
ALARM_PRIORITY = {
    "ventricular fibrillation": "high", "ventricular tachycardia": "high", "asystole": "high",
    "pause": "medium", "tachycardia": "medium", "bradycardia": "medium",
    "couplet": "advisory", "bigeminy": "advisory", "trigeminy": "advisory", "frequent ectopy": "advisory",
}
PRIORITY_ORDER = ["high", "medium", "advisory"]

#: Alarms the signal-quality guard never suppresses or ends. VF looks like noise to the guard, and a
#: VF alarm silenced as "noisy" is the worst failure a monitor can have: the VF detector tells VF from
#: artifact itself (monitor.vf), so its verdict stands whatever the guard says.
NEVER_SUPPRESSED = {"ventricular fibrillation"}


class AlarmRules:
    """The rhythm rules of a Monitor: when to raise, hold off and end each clinical alarm.

    A mixin: Monitor inherits it and supplies the state it reads and writes: vf (its VFDetector), th (the
    thresholds), active (alarms now on), announced (when each kind last sounded), recent
    ((time, class, rr_prev, p(V), similarity) of the last minute's beats), quality and bad_until (the signal
    quality guard), n and model_fs (the stream clock) and detector (its last R peak).
    """

    # -- alarms -------------------------------------------------------------------
    def _raise(self, kind, t, evidence):
        """Raise an alarm unless it is on; an advisory alarm, or any other alarm while VF is sounding
        (it adds nothing to the VF alarm), is logged and not announced."""
        if kind in self.active:
            return []
        self.active.add(kind)
        priority = ALARM_PRIORITY[kind]
        if priority == "advisory":
            announced = False
        elif kind != "ventricular fibrillation" and "ventricular fibrillation" in self.active:
            announced, evidence = False, evidence + " (during a ventricular fibrillation alarm)"
        else:
            hold = self.th["realarm_critical_s" if kind in CRITICAL_ALARMS else "realarm_s"]
            announced = t - self.announced.get(kind, -np.inf) >= hold
        if announced:
            self.announced[kind] = t
        return [{"type": "alarm", "time": t, "kind": kind, "priority": priority, "evidence": evidence,
                 "announced": announced}]

    def _vf_alarms(self, windows):
        """The VF alarm from the VF detector's windows: raised when its rule turns on, ended when it
        turns off; the signal-quality guard has no say (NEVER_SUPPRESSED)."""
        events = []
        for w in windows:
            if w["alarm"] == "on":
                events += self._raise("ventricular fibrillation", w["time"],
                                      f"{self.vf.settings['on_windows']} windows of "
                                      f"{self.vf.settings['window_s']:g} s read as VF (p={w['p_vf']:.2f})")
            elif w["alarm"] == "off":
                self.active.discard("ventricular fibrillation")
        return events

    def _rhythm_alarms(self, t, cls, rr_prev, p_v, similarity=np.nan, normal_similarity=np.nan):
        """The alarm events one classified beat raises: t its time (s), cls its class, rr_prev the
        interval before it (s; NaN unknown), p_v the model's probability that it is a V beat,
        similarity its QRS's likeness to the beat before it (quality.beat_similarity; NaN unknown,
        which no similarity gate holds back), normal_similarity a V beat's likeness to the patient's
        normal beats (monitor.stream._normal_similarities; NaN unknown, not held back)."""
        th = self.th
        if self.bad_until > t - (rr_prev if rr_prev == rr_prev else 0):
            rr_prev = np.nan  # an interval that spans bad signal is no heart rate
        self.recent = [b for b in self.recent if b[0] > t - 60] + [(t, cls, rr_prev, float(p_v), float(similarity),
                                                                      float(normal_similarity))]
        self.active -= {"pause", "asystole"}
        if not self._quality_ok(t):
            return []
        events = []
        classes = [b[1] for b in self.recent]
        run = 0
        for c in reversed(classes):
            if c != "V":
                break
            run += 1
        if run >= th["vt_min_beats"]:
            rrs = [b[2] for b in self.recent[-run + 1:]]
            rate = 60 / np.nanmean(rrs) if rrs and not np.all(np.isnan(rrs)) else 0
            last = self.recent[-th["vt_min_beats"]:]
            p_min = min(b[3] for b in last)
            spread = _rr_spread([b[2] for b in last[1:]])
            alike = not any(b[4] < th["vt_min_similarity"] for b in last[1:])  # NaN: not held back
            unlike_normal = sum(not b[5] > th["vt_max_normal_similarity"] for b in last)  # NaN: unlike
            if rate > th["vt_min_rate_bpm"] and p_min >= th["vt_min_p_v"] and spread <= th["vt_max_rr_spread"] \
                    and alike and unlike_normal >= th["vt_min_unlike_normal"]:
                events += self._raise("ventricular tachycardia", t,
                                      f"{run} V beats in a row at {rate:.0f} bpm; the last {len(last)} with "
                                      f"p(V) at least {p_min:.2f}, RR range {spread:.0%} of their mean")
        else:
            self.active.discard("ventricular tachycardia")
            if classes[-3:-2] != ["V"] and classes[-2:] == ["V", "V"]:
                self.active.discard("couplet")
                events += self._raise("couplet", t, "2 consecutive V beats")
        for kind, period in [("bigeminy", 2), ("trigeminy", 3)]:
            n = th["pattern_cycles"] * period + 1
            tail = classes[-n:]
            pattern = len(tail) == n and all((c == "V") == ((n - 1 - i) % period == 0) for i, c in enumerate(tail))
            if pattern:
                events += self._raise(kind, t, f"a V beat after every {period - 1} other beat(s), "
                                               f"{th['pattern_cycles']} cycles")
            elif classes[-1] == "V" and kind in self.active and not pattern:
                self.active.discard(kind)
        ectopic = sum(c in ("S", "V") for c in classes)
        if ectopic > th["ectopic_per_min"]:
            events += self._raise("frequent ectopy", t, f"{ectopic} S/V beats in the last minute")
        elif ectopic < th["ectopic_per_min"] // 2:
            self.active.discard("frequent ectopy")
        # an interval ended by a beat unlike the one before it (a bump of noise, or the beat after
        # one) is left out of the rate; with fewer than rate_beats known intervals there is no rate
        rrs = [b[2] for b in self.recent[-th["rate_beats"]:] if b[2] == b[2]  # not NaN
               and not b[4] < th["rate_min_similarity"]]
        if len(rrs) == th["rate_beats"]:
            rate = 60 / mean_of(np.array(rrs))
            margin = th["rate_hysteresis_bpm"]
            for kind, on, off in [("tachycardia", rate > th["tachycardia_bpm"], rate < th["tachycardia_bpm"] - margin),
                                  ("bradycardia", rate < th["bradycardia_bpm"], rate > th["bradycardia_bpm"] + margin)]:
                if on:
                    events += self._raise(kind, t, f"mean rate {rate:.0f} bpm over {len(rrs)} beats")
                elif off:
                    self.active.discard(kind)
        return events

    def _timed_alarms(self):
        """Pause and asystole depend on beats that did not come, so they are checked on every push."""
        now = self.n / self.model_fs
        if self.detector.last_peak is None:
            return []
        last = self.detector.last_peak / self.model_fs
        gap = now - last
        if self.quality != "ok" or self.bad_until > last:  # a flat or missing signal is no asystole
            return []
        events = []
        for kind in ("asystole", "pause"):
            if gap > self.th[f"{kind}_s"]:
                events += self._raise(kind, now, f"no beat for {gap:.1f} s")
                break
        return events


#: Scoring VT alarms against the cardiologists' rhythm labels (notebook 05, benchmarks/tune_vt_ds1.py): an
#: alarm counts for an episode when it comes from the episode's start to this many seconds after its end
#: (beats are labelled a second or two after their R peak); an alarm outside every such span is false.
VT_GRACE_S = 5.0


#: The MIT-BIH rhythm labels of ventricular fibrillation and flutter: a VT alarm raised inside one is an
#: alarm on a life-threatening ventricular rhythm, neither a detected VT episode nor a false alarm.
VF_RHYTHM_LABELS = ("(VF", "(VFL")


def rhythm_spans(symbols, samples, aux_notes, fs, end_s, labels=("(VT",)) -> list:
    """Return the (start, end) times in seconds of one record's reference rhythm episodes whose label
    is one of labels: from each such rhythm annotation (symbol "+") to the next rhythm change, cut at
    end_s (the end of the stretch scored); an episode starting at or after end_s is left out."""
    rhythm = [(s / fs, str(aux).strip("\x00")) for s, sym, aux in zip(samples, symbols, aux_notes) if sym == "+"]
    episodes = []
    for i, (start, label) in enumerate(rhythm):
        if label in labels and start < end_s:
            end = rhythm[i + 1][0] if i + 1 < len(rhythm) else end_s
            episodes.append((start, min(end, end_s)))
    return episodes


def vt_episodes(symbols, samples, aux_notes, fs, end_s) -> list:
    """Return the (start, end) times in seconds of one record's reference ventricular tachycardia
    episodes: rhythm_spans of the "(VT" label."""
    return rhythm_spans(symbols, samples, aux_notes, fs, end_s, ("(VT",))


def score_vt_alarms(episodes, alarm_times, grace_s=VT_GRACE_S, excused=()) -> tuple:
    """Score one record's VT alarm times (s) against its episodes (vt_episodes). Returns (first, false):
    first, per episode, the time of the first alarm from its start to grace_s after its end (NaN when
    none: the episode was missed); false, per alarm, True when it lies outside every episode so widened
    and outside every excused span (start, end) in seconds, widened the same way: the reference
    ventricular fibrillation and flutter (rhythm_spans with VF_RHYTHM_LABELS), where a VT alarm is no
    false alarm."""
    times = np.asarray(alarm_times, dtype=float).reshape(-1)
    spans = np.asarray(episodes, dtype=float).reshape(-1, 2)
    inside = (times[None, :] >= spans[:, :1]) & (times[None, :] <= spans[:, 1:] + grace_s)
    first = np.array([times[row].min() if row.any() else np.nan for row in inside])
    spared = np.asarray(excused, dtype=float).reshape(-1, 2)
    in_vf = ((times[None, :] >= spared[:, :1]) & (times[None, :] <= spared[:, 1:] + grace_s)).any(axis=0)
    return first, ~inside.any(axis=0) & ~in_vf


def mean_of(values):
    """Return np.mean of a 1-d float array, the same number without np.mean's checks (numpy's own sum,
    then the division): the monitor takes a few means for every beat, and np.mean's own overhead
    showed in a ward's profile."""
    return np.add.reduce(values) / len(values)


def _rr_spread(rrs) -> float:
    """Return the range of the known RR intervals as a share of their mean: 0 for a perfectly regular
    run, and 0 too when fewer than two are known (an unknown rhythm does not hold a VT alarm back;
    its rate decides)."""
    known = [r for r in rrs if r == r]
    if len(known) < 2:
        return 0.0
    return (max(known) - min(known)) / (sum(known) / len(known))
