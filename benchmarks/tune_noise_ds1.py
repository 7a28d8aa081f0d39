"""Tune the rhythm rules' noise gates on the DS1 patients only: clean, and with electrode-motion noise.

Electrode motion makes the QRS detector find bumps of noise as beats: they raise the heart rate
(tachycardia alarms) and, read as V beats, make runs (VT alarms); noise can also make the model read
the patient's normal beats as V. The rules can ask each beat to look like the beat before it
(monitor.quality.beat_similarity): a VT run's beats after its first (vt_min_similarity), and the beat
that ends an RR interval before the interval counts for the rate (rate_min_similarity); and they can ask
a VT run's last beats to look unlike the patient's normal beats (at least vt_min_unlike_normal of them
with a likeness to the median of the last beats called N at most vt_max_normal_similarity;
monitor.stream._normal_similarities). This script chooses all four on DS1:

- clean: each DS1 patient replayed through the live monitor with the model of the cross-validation
  fold that never saw them (tune_vt_ds1.live_replay, cached);
- noisy: the same patients with electrode-motion noise (nstdb em, channel 1: channel 0 is kept for
  notebook 05's noise stress test on DS2) added as WFDB's nst does (clean first 5 minutes, then
  2-minute noisy and clean segments) at 12, 6 and 0 dB, replayed the same way (cached).

The live beats (with their similarity) are replayed through the monitor's own rules once per
candidate. A VT alarm is true inside a reference VT episode (to 5 s after it; inside ventricular
flutter it is neither true nor false); a tachycardia or bradycardia alarm is true when the reference
beats' rate (the mean of the 8 reference RR intervals up to the alarm) is past the alarm's limit less
its hysteresis (above 115 or below 55 bpm). Counted: the VT episodes alarmed on clean DS1, the true
rate alarms announced on clean DS1, and the false announced VT, tachycardia and bradycardia alarms
(clean and noisy together).

Choice, stated before the grid was run: the most clean DS1 VT episodes alarmed; among those, the
candidates that keep at least 95% of the ungated rules' true rate alarms on clean DS1 (at most one in
20 lost); among those, the fewest false announced alarms, then the least strict gates. DS2 is never read.

--quick replays no gates, each gate alone and both (0.6 for VT, 0.7 for the rate) beside ALARM_THRESHOLDS';
--rules compares, with the same noise, the VT rule chosen before the live replay with today's (RULES);
--records limits it to some DS1 patients (notebook 05's fast mode). The replays and the candidates run
in config.WORKERS processes (EKG_WORKERS), with the results of one.
--blend replays the monitor with each fold's CNN + feature-model blend (tune_vt_ds1.py --blend), and
--vt-min-p-v sets the VT rule's p(V) gate (the blend's own, as tune_vt_ds1.py --blend chooses it);
--agreement reads the VT rule's p(V) gate as the smaller of the CNN's and the blend's p(V) at the
same detected beats (both replays), beside the CNN's own.
Run: OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/tune_noise_ds1.py [--quick] [--blend] [--vt-min-p-v P] [--agreement] [--records 106 201]
"""
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tune_vt_ds1 as vt  # noqa: E402
from ekg import config  # noqa: E402
from ekg.data import FS, load_beats  # noqa: E402
from ekg.monitor import ALARM_THRESHOLDS, nst, replay_jobs  # noqa: E402
from ekg.monitor.alarms import score_vt_alarms  # noqa: E402

SNRS_DB = (12, 6, 0)
NOISE = ("em", 1)
#: The grid. An earlier one (vt_min_similarity -1, 0.3, 0.5, 0.6, 0.7, 0.8 by rate_min_similarity -1, 0.5,
#: 0.6, 0.7, 0.8, without the normal-likeness gate) chose 0.6 and -1; the normal-likeness gate multiplied
#: it by 12, so the similarity gates keep the values around that choice.
GRID = {"vt_min_similarity": [-1.0, 0.5, 0.6, 0.7], "vt_max_normal_similarity": [np.inf, 0.95, 0.9, 0.85, 0.8, 0.7],
        "vt_min_unlike_normal": [2, 3], "rate_min_similarity": [-1.0, 0.5, 0.7]}
#: the gates that hold nothing back, for the table's "ungated" row
OFF = {"vt_min_similarity": -1.0, "vt_max_normal_similarity": np.inf, "rate_min_similarity": -1.0}
RATE_KEPT = 0.95
RATE_KINDS = ("tachycardia", "bradycardia")


def quick_grid() -> dict:
    """No gates, each gate alone and together, at 0.6 (VT similarity) and 0.7 (rate), beside
    ALARM_THRESHOLDS' gates (the normal-likeness gate off or at ALARM_THRESHOLDS')."""
    return {"vt_min_similarity": sorted({-1.0, 0.6, ALARM_THRESHOLDS["vt_min_similarity"]}),
            "vt_max_normal_similarity": sorted({np.inf, ALARM_THRESHOLDS["vt_max_normal_similarity"]}),
            "vt_min_unlike_normal": [ALARM_THRESHOLDS["vt_min_unlike_normal"]],
            "rate_min_similarity": sorted({-1.0, 0.7, ALARM_THRESHOLDS["rate_min_similarity"]})}


def noisy_replay(records, with_blend=False) -> tuple:
    """Return ({(record, snr): live events}, {record: noisy spans (samples)}) of the DS1 records with
    NOISE added at SNRS_DB, each replayed with its fold's model; cached like tune_vt_ds1.live_replay."""
    folds = vt.fold_models(records, with_blend)
    key = hashlib.sha256((vt.cache_key(folds, records) + repr((NOISE, SNRS_DB))).encode()).hexdigest()[:16]
    path = config.CACHE_DIR / "vt_live" / f"noise-{key}.pkl"
    if path.is_file():
        return pd.read_pickle(path)
    noise, noise_fs = nst.read_noise(*NOISE)
    jobs, spans = [], {}
    for model, held, _, fold_blend in folds:
        signals, fold_spans = nst.stress_records(held, SNRS_DB, noise, noise_fs)
        spans.update(fold_spans)
        jobs.append((model, signals, fold_blend))
    events = replay_jobs(jobs, chunk_s=1.0, workers=config.WORKERS)  # as tune_vt_ds1.live_replay
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.to_pickle((events, spans), path)
    return events, spans


def reference_rate(records) -> dict:
    """{record: (times s, rate bpm)}: at each reference beat, 60 over the mean of the 8 RR intervals up to it."""
    out = {}
    for r in records:
        t = load_beats([r])["sample"].to_numpy() / FS
        rr = pd.Series(np.diff(t)).rolling(ALARM_THRESHOLDS["rate_beats"]).mean().to_numpy()
        out[r] = (t[1:], 60 / rr)
    return out


def rate_alarm_true(kind, t, rate) -> bool:
    """A tachycardia or bradycardia alarm at t (s) is true when the reference rate then is past its limit
    less the hysteresis."""
    times, bpm = rate
    i = np.searchsorted(times, t, side="right") - 1
    if i < 0 or np.isnan(bpm[i]):
        return False
    margin = ALARM_THRESHOLDS["rate_hysteresis_bpm"]
    if kind == "tachycardia":
        return bpm[i] > ALARM_THRESHOLDS["tachycardia_bpm"] - margin
    return bpm[i] < ALARM_THRESHOLDS["bradycardia_bpm"] + margin


def score(streams, episodes, flutter, rates, setting, spans=None) -> dict:
    """Replay every stream with one setting of the gates; count what the choice reads. streams:
    {record or (record, snr): beat_frame}; spans: {record: noisy spans} to count only alarms inside them."""
    out = {"VT episodes": 0, "true rate alarms": 0, "false VT": 0, "false tachycardia": 0, "false bradycardia": 0}
    for key, beats in streams.items():
        r = key[0] if isinstance(key, tuple) else key
        alarms = vt.rules_alarms(beats, setting)
        if spans is not None:
            alarms = [a for a in alarms if any(s / FS <= a[0] <= e / FS for s, e in spans[r])]
        vt_alarms = [(t, announced) for t, kind, announced in alarms if kind == "ventricular tachycardia"]
        # an episode counts as alarmed by any VT alarm in it (as notebook 05 and tune_vt_ds1 count); the
        # false alarms are the announced ones (a repeat within the re-alarm hold-off is not sounded)
        first, false = score_vt_alarms(episodes[r], [t for t, _ in vt_alarms], excused=flutter[r])
        out["false VT"] += int(sum(f and a for f, (_, a) in zip(false, vt_alarms)))
        if spans is None:
            out["VT episodes"] += int(np.sum(~np.isnan(first)))
        for t, kind, announced in alarms:
            if kind in RATE_KINDS and announced:
                if rate_alarm_true(kind, t, rates[r]):
                    out["true rate alarms"] += 1
                else:
                    out[f"false {kind}"] += 1
    return out


def candidate_row(setting, clean, noisy, episodes, flutter, rates, spans) -> dict:
    """One table row: a setting of the gates replayed on the clean and the noisy live beats, scored."""
    row = dict(setting)
    on_clean = score(clean, episodes, flutter, rates, setting)
    row.update({"VT episodes (clean)": on_clean["VT episodes"], "true rate alarms (clean)": on_clean["true rate alarms"]})
    false = {k: on_clean[k] for k in ("false VT", "false tachycardia", "false bradycardia")}
    row["false, clean"] = sum(false.values())
    for snr in SNRS_DB:
        part = score({k: v for k, v in noisy.items() if k[1] == snr}, episodes, flutter, rates, setting, spans)
        row[f"false in noise {snr} dB"] = part["false VT"] + part["false tachycardia"] + part["false bradycardia"]
        row[f"of which VT {snr} dB"] = part["false VT"]
        for k in false:
            false[k] += part[k]
    row.update({f"{k} (all)": v for k, v in false.items()})
    row["false alarms (all)"] = sum(false.values())
    return row


#: --rules: the VT rule chosen before the live replay (on the reference beats' out-of-fold
#: probabilities), the rule now without the similarity gate, and ALARM_THRESHOLDS' rule.
RULES = {"0.9 and RR range 40%, no similarity gate": {"vt_min_p_v": 0.9, "vt_max_rr_spread": 0.4, "vt_min_similarity": -1.0},
         "0.7, no similarity gate": {"vt_min_similarity": -1.0},
         "ALARM_THRESHOLDS": {}}


#: --agreement: the VT rule with its p(V) gate read as the smaller of the CNN's and the blend's p(V)
AGREEMENT_RULES = {"p(V) at least 0.5": {"vt_min_p_v": 0.5}, "p(V) at least 0.7 (ALARM_THRESHOLDS')": {}}


def agreement(cnn_streams, blend_streams) -> dict:
    """Return {key: beat_frame}: the CNN's beats and classes with, as p_V, the smaller of the CNN's and
    the blend's p(V) at the same beat (the QRS detector does not depend on the model, so the two
    replays find the same beats; ValueError where they do not)."""
    out = {}
    for key, beats in cnn_streams.items():
        other = blend_streams[key]
        if len(other) != len(beats) or not np.allclose(other["t"].to_numpy(), beats["t"].to_numpy()):
            raise ValueError(f"{key}: the two replays found different beats")
        out[key] = beats.assign(p_V=np.minimum(beats["p_V"].to_numpy(), other["p_V"].to_numpy()))
    return out


def compare_rules(clean, noisy, episodes, flutter, rates, spans, rules=None) -> pd.DataFrame:
    """Clean DS1 VT episodes and false VT alarms, clean and in the noisy segments at each level, per
    rule of rules ({name: thresholds}; default RULES)."""
    rows = {}
    for name, setting in (RULES if rules is None else rules).items():
        on_clean = score(clean, episodes, flutter, rates, setting)
        row = {"VT episodes (clean)": on_clean["VT episodes"], "false VT, clean": on_clean["false VT"]}
        for snr in SNRS_DB:
            part = score({k: v for k, v in noisy.items() if k[1] == snr}, episodes, flutter, rates, setting, spans)
            row[f"false VT in noise {snr} dB"] = part["false VT"]
        row["false VT (all)"] = row["false VT, clean"] + sum(row[f"false VT in noise {snr} dB"] for snr in SNRS_DB)
        rows[name] = row
    return pd.DataFrame(rows).T.rename_axis("VT rule")


def main():
    def rules_flag(parser):
        parser.add_argument("--rules", action="store_true", help="compare the VT rules (RULES) with noise, then stop")
        parser.add_argument("--agreement", action="store_true",
                            help="the VT rule with p(V) read as the smaller of the CNN's and the blend's (both "
                                 "replays), against the CNN's alone (AGREEMENT_RULES), then stop")
        parser.add_argument("--vt-min-p-v", type=float, default=None,
                            help="the VT rule's p(V) gate for every candidate (default: ALARM_THRESHOLDS'; e.g. the "
                                 "gate tune_vt_ds1.py --blend chooses for the blend)")

    args, records = vt.parse_args(__doc__.splitlines()[0], "a few gates beside ALARM_THRESHOLDS' only", "the gates are",
                                  rules_flag)
    t0 = time.perf_counter()
    clean, _, episodes, flutter, hours = vt.ds1_streams(records, args.blend)
    events, spans = noisy_replay(records, args.blend)
    noisy = {key: vt.beat_frame([e for e in ev if e["type"] == "beat"]) for key, ev in events.items()}
    rates = reference_rate(records)
    noisy_hours = sum((e - s) / FS for r in records for s, e in spans[r]) / 3600
    print(f"DS1: {len(records)} patients, {hours:.1f} patient-hours clean; with {NOISE[0]} noise (channel {NOISE[1]}) at "
          f"{', '.join(map(str, SNRS_DB))} dB, {noisy_hours:.1f} hours of noisy segments at each level; "
          f"replayed in {time.perf_counter() - t0:.0f} s (or read from the cache)")
    if args.agreement:
        pd.set_option("display.width", 200)
        blend_clean = vt.ds1_streams(records, True)[0]
        blend_events, _ = noisy_replay(records, True)
        blend_noisy = {key: vt.beat_frame([e for e in ev if e["type"] == "beat"]) for key, ev in blend_events.items()}
        for name, (c, n) in {"the CNN's p(V)": (clean, noisy),
                             "the smaller of the CNN's and the blend's p(V)": (agreement(clean, blend_clean),
                                                                                agreement(noisy, blend_noisy))}.items():
            print(f"\nThe VT rule on the CNN's beats and classes, p(V) gate on {name} (announced false VT alarms; "
                  f"episodes of {sum(map(len, episodes.values()))}):")
            print(compare_rules(c, n, episodes, flutter, rates, spans, AGREEMENT_RULES).to_string())
        return
    if args.rules:
        pd.set_option("display.width", 200)
        print("\nThe VT rules with noise (announced false VT alarms; episodes of "
              f"{sum(map(len, episodes.values()))}):")
        print(compare_rules(clean, noisy, episodes, flutter, rates, spans).to_string())
        return
    print(f"the monitor with {'each fold CNN blended with its fold GBM (--blend)' if args.blend else 'each fold CNN alone'}"
          + (f"; the VT rule's p(V) gate set to {args.vt_min_p_v:g}" if args.vt_min_p_v is not None else ""))
    settings = vt.candidates(quick_grid() if args.quick else GRID)
    if args.vt_min_p_v is not None:
        settings = [{**setting, "vt_min_p_v": args.vt_min_p_v} for setting in settings]
    table = pd.DataFrame(vt.candidate_rows(candidate_row, settings, clean, noisy, episodes, flutter, rates, spans))
    ungated = table[np.logical_and.reduce([table[k] == v for k, v in OFF.items()])].iloc[0]
    table["keeps 95% of true rate alarms"] = table["true rate alarms (clean)"] >= RATE_KEPT * ungated["true rate alarms (clean)"]
    ok = table[(table["VT episodes (clean)"] == table["VT episodes (clean)"].max()) & table["keeps 95% of true rate alarms"]]
    # the least strict: the lowest similarity gates, the highest likeness allowed, the fewest unlike beats asked
    order = ok.assign(strict=-ok["vt_max_normal_similarity"]).sort_values(
        ["false alarms (all)", "vt_min_similarity", "rate_min_similarity", "strict", "vt_min_unlike_normal"])
    chosen = order.iloc[0]
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 50)
    shown = [*GRID, "VT episodes (clean)", "true rate alarms (clean)", "false, clean",
             *[f"false in noise {snr} dB" for snr in SNRS_DB], "false VT (all)", "false tachycardia (all)",
             "false alarms (all)"]
    print(f"\nEvery candidate (VT rule as in ALARM_THRESHOLDS; episodes: of {sum(map(len, episodes.values()))}; "
          f"false alarms: announced; (all): clean and noisy together):")
    print(table.sort_values(list(GRID))[shown].to_string(index=False))
    print("\nthe choice (most clean VT episodes, at least 95% of the true rate alarms kept, then fewest false alarms):")
    print(chosen.to_frame().T[shown].to_string(index=False))
    current = {k: ALARM_THRESHOLDS[k] for k in GRID}
    same = all(float(chosen[k]) == float(current[k]) for k in GRID)
    print(f"ALARM_THRESHOLDS now: {current} -> {'the chosen gates' if same else 'DIFFERS from this choice'}")
    print(f"\n{len(table)} candidates in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
