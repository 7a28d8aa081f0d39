"""Tune the ventricular tachycardia alarm on the DS1 patients only, from the live monitor out of fold.

Each DS1 patient is replayed through the live monitor (ekg.monitor.replay: QRS detection, signal
quality, the model, the rules) with the signal CNN of the cross-validation fold that never saw that
patient (models/folds/, saved by notebook 03 with the out-of-fold predictions) and the recommended
model's decision thresholds (chosen on the out-of-fold predictions). --blend replays the monitor with
the CNN + feature-model blend instead (blend.FeatureBlend, which the monitor can take and does not
ship with): each fold's CNN with its own blend, the feature baseline's GBM fitted on that fold's
training patients only (ensemble.fitted_blend: the fold fits saved in models/gbm/) with the recommended blend's weights and
thresholds (models/recommended_blend.json.gz, chosen on the DS1 folds). That is what the monitor will do
on a new patient, missed and extra beats, late beats and their probabilities included. An earlier
version replayed the reference beats' out-of-fold probabilities instead: its chosen rule (p(V) at
least 0.9 on the run's last 3 beats, RR range at most 40%) alarmed 28 of the 39 DS1 episodes there but
24 on the live beats (--quick prints it), where a missed beat or a p(V) of 0.87 holds a run back.

The beats the live replay gave (time, class, p(V)) are then replayed through the monitor's own rhythm
rules (alarms.AlarmRules: nothing re-implemented here) once per candidate setting of the VT rule,
and the VT alarms scored as notebook 05 scores the DS2 replay (alarms.vt_episodes,
alarms.score_vt_alarms): an episode runs from a "(VT" rhythm label to the next rhythm change and is
alarmed when a VT alarm comes from its start to 5 s after its end; a VT alarm outside every episode
is false, except inside reference ventricular flutter or fibrillation (record 207), where it is an
alarm on a life-threatening ventricular rhythm; the burden counts the announced false alarms (a VT
alarm back within its 10-s re-alarm hold-off is logged, not sounded). The candidate replay leaves out
the signal-quality guard, so the live monitor's own VT alarms (with ALARM_THRESHOLDS' rule) are
printed first as the check.

Candidates: the p(V) gate on the run's last vt_min_beats beats (vt_min_p_v; 0 is the class-only rule,
as is any gate up to the model's V decision threshold), the RR regularity gate on the same beats
(vt_max_rr_spread: the range of their intervals over their mean; inf is none), the rate
(vt_min_rate_bpm) and the run length (vt_min_beats; 4 waits one confirming beat). --quick replays
ALARM_THRESHOLDS' rule beside the class-only rule, each gate alone and the rule chosen before.
Choice: the most DS1 episodes alarmed; among those, the fewest announced false VT alarms per
patient-hour; then the least strict rule (lowest gate, widest spread, lowest rate, fewest beats). The
issue's aim of at most 0.2 false VT alarms per patient-hour is marked in the table. DS2 is never read.
Last, each DS1 episode the live monitor missed is listed with its beats and why (missed_episodes):
the signal-quality guard (the rules replayed alone alarm it), the normal-likeness gate, the
similarity gate, the p(V) gate, too few beats called V, or the rate.

The live replay is cached (data/cache/vt_live/, keyed by the fold models, the thresholds, the records
and the monitor's code) and runs the folds in config.WORKERS processes (EKG_WORKERS; every core by
default), with the events of one. --records limits it to some DS1 patients (notebook 05's fast mode).
Run: OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/tune_vt_ds1.py [--quick] [--blend] [--records 205 215]
"""
import argparse
import hashlib
import itertools
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import wfdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ekg import config  # noqa: E402
from ekg.config import ROOT  # noqa: E402
from ekg.data import CLASSES, DS1, DS2, find_data_dir  # noqa: E402
from ekg import ensemble  # noqa: E402
from ekg.blend import FeatureBlend, blend_path  # noqa: E402
from ekg.cv import cv_records  # noqa: E402
from ekg.models import load_model, model_path  # noqa: E402
from ekg.monitor import ALARM_THRESHOLDS, VF_RHYTHM_LABELS, Monitor, replay_jobs  # noqa: E402
from ekg.monitor.alarms import rhythm_spans, score_vt_alarms, vt_episodes  # noqa: E402
from ekg.signals import read_signal  # noqa: E402

GRID = {"vt_min_p_v": [0.0, 0.5, 0.7, 0.8, 0.85, 0.9, 0.95], "vt_max_rr_spread": [np.inf, 0.5, 0.4, 0.3, 0.2],
        "vt_min_rate_bpm": [100, 120], "vt_min_beats": [3, 4]}
AIM_FALSE_PER_HOUR = 0.2
#: A stand-in model: the rules need only the monitor's clock, no network.
RULES_ONLY = SimpleNamespace(meta={"fs": 360, "classes": CLASSES, "input": {"kind": "signal"}})
VT_KEYS = list(GRID)


def quick_grid() -> dict:
    """ALARM_THRESHOLDS' rule beside the class-only rule, each gate alone and the rule chosen before on
    the reference beats (p(V) at least 0.9, RR range at most 40%)."""
    return {"vt_min_p_v": sorted({0.0, ALARM_THRESHOLDS["vt_min_p_v"], 0.9}),
            "vt_max_rr_spread": sorted({np.inf, ALARM_THRESHOLDS["vt_max_rr_spread"], 0.4}, reverse=True),
            "vt_min_rate_bpm": [ALARM_THRESHOLDS["vt_min_rate_bpm"]], "vt_min_beats": [ALARM_THRESHOLDS["vt_min_beats"]]}


def fold_models(records=None, with_blend=False) -> list:
    """Return [(model, held-out records, path, blend)] of the cross-validation folds (models/folds/*.pt),
    each with the recommended model's decision thresholds, keeping the folds that hold some of records.
    blend: None, or with_blend the fold's own blend: the feature baseline's GBM fitted on the fold's
    training patients (ensemble.fitted_blend: the fold fits saved in models/gbm/) with the recommended blend's weights and
    thresholds (models/recommended_blend.json.gz)."""
    # where notebook 03 wrote them (the output root, as models.model_path looks), else the committed ones
    folder = next((base / "models" / "folds" for base in (config.OUTPUT_ROOT, ROOT)
                   if any((base / "models" / "folds").glob("signal_cnn_fold*.pt"))), ROOT / "models" / "folds")
    paths = sorted(folder.glob("signal_cnn_fold*.pt"))
    if not paths:
        raise FileNotFoundError(f"no fold models in {folder}: notebook 03 saves them with its cross-validation")
    thresholds = load_model(model_path("recommended")).meta.get("thresholds")
    shipped = FeatureBlend.load(blend_path()) if with_blend else None
    out = []
    for path in paths:
        model = load_model(path)
        held = [int(r) for r in model.meta["held_out"]]
        if set(held) & set(DS2):
            raise ValueError(f"{path} holds DS2 records {sorted(set(held) & set(DS2))}: the VT rule is tuned on DS1 only")
        held = [r for r in held if records is None or r in records]
        if held:
            model.meta["thresholds"] = thresholds
            fold_blend = None if shipped is None else ensemble.fitted_blend(
                [r for r in cv_records() if r not in {int(h) for h in model.meta["held_out"]}], shipped.weights,
                shipped.meta["thresholds"], model)
            out.append((model, held, path, fold_blend))
    return out


def cache_key(folds, records) -> str:
    h = hashlib.sha256()
    for _, held, path, fold_blend in folds:
        h.update(path.read_bytes())
        h.update(json.dumps(held).encode())
        if fold_blend is not None:
            h.update(json.dumps(fold_blend.spec, sort_keys=True).encode())
    h.update(json.dumps(folds[0][0].meta["thresholds"], sort_keys=True).encode())
    h.update(json.dumps(sorted(records)).encode())
    for code in sorted((ROOT / "ekg" / "monitor").glob("*.py")):
        h.update(code.read_bytes())
    return h.hexdigest()[:16]


def live_replay(records, with_blend=False) -> dict:
    """Return {record: live events} of the DS1 records, each replayed by the monitor with its fold's model
    (and, with_blend, the fold's blend)."""
    folds = fold_models(records, with_blend)
    path = config.CACHE_DIR / "vt_live" / f"{cache_key(folds, records)}.pkl"
    if path.is_file():
        return pd.read_pickle(path)
    data_dir = find_data_dir()
    # one job per fold, split over config.WORKERS processes: the same events as one process
    events = replay_jobs([(model, {r: read_signal(data_dir / str(r))[:2] for r in held}, fold_blend)
                          for model, held, _, fold_blend in folds], chunk_s=1.0, workers=config.WORKERS)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.to_pickle(events, path)
    return events


def beat_frame(beat_events) -> pd.DataFrame:
    """The live beats as the rules see them: t, cls, rr_prev (s), p_V, similarity, normal_similarity."""
    t = np.array([e["time"] for e in beat_events], dtype=float)
    return pd.DataFrame({"t": t, "cls": [e["class"] for e in beat_events], "rr_prev": np.r_[np.nan, np.diff(t)][:len(t)],
                         "p_V": [e["probabilities"]["V"] for e in beat_events],
                         "similarity": [e["similarity"] for e in beat_events],
                         # None (no V beat, or no beat called N yet) is NaN to the rules, as in the monitor
                         "normal_similarity": np.array([np.nan if e["normal_similarity"] is None else e["normal_similarity"]
                                                        for e in beat_events], dtype=float)})


def ds1_streams(records, with_blend=False) -> tuple:
    """Return ({record: live beats in time order: t, cls, rr_prev, p_V}, {record: live VT alarms (time,
    announced)}, {record: VT episodes}, {record: VF/VFL spans}, patient-hours), from live_replay."""
    events = live_replay(records, with_blend)
    data_dir = find_data_dir()
    beats, alarms, episodes, flutter, hours = {}, {}, {}, {}, 0.0
    for r in records:
        ev = events[r]
        beats[r] = beat_frame([e for e in ev if e["type"] == "beat"])
        alarms[r] = [(e["time"], e["announced"]) for e in ev
                     if e["type"] == "alarm" and e["kind"] == "ventricular tachycardia"]
        ann = wfdb.rdann(str(data_dir / str(r)), "atr")
        end_s = wfdb.rdheader(str(data_dir / str(r))).sig_len / ann.fs
        episodes[r] = vt_episodes(ann.symbol, ann.sample, ann.aux_note, ann.fs, end_s)
        flutter[r] = rhythm_spans(ann.symbol, ann.sample, ann.aux_note, ann.fs, end_s, VF_RHYTHM_LABELS)
        hours += end_s / 3600
    return beats, alarms, episodes, flutter, hours


def rules_replay(beats, thresholds) -> list:
    """Feed one patient's live beats through a fresh monitor's rhythm rules; return its VT alarms (time, announced)."""
    return [(t, announced) for t, kind, announced in rules_alarms(beats, thresholds) if kind == "ventricular tachycardia"]


def rules_alarms(beats, thresholds) -> list:
    """Feed one patient's live beats (beat_frame) through a fresh monitor's rhythm rules; return every
    alarm it raises as (time, kind, announced)."""
    monitor = Monitor(RULES_ONLY, 360, thresholds=thresholds)
    out = []
    for beat in beats[["t", "cls", "rr_prev", "p_V", "similarity", "normal_similarity"]].itertuples(index=False):
        out += [(e["time"], e["kind"], e["announced"]) for e in monitor._rhythm_alarms(*beat)]
    return out


def score(alarms, episodes, flutter, hours) -> dict:
    """Return one table row from {record: VT alarms (time, announced)}: episodes alarmed, false VT
    alarms (raised, announced, per patient-hour), their records."""
    alarmed, false, announced_false, records = 0, 0, 0, set()
    for r, mine in alarms.items():
        first, is_false = score_vt_alarms(episodes[r], [a[0] for a in mine], excused=flutter[r])
        alarmed += int(np.sum(~np.isnan(first)))
        false += int(is_false.sum())
        n = int(sum(f and a[1] for f, a in zip(is_false, mine)))
        announced_false += n
        if n:
            records.add(r)
    return {"episodes alarmed": alarmed, "false VT raised": false, "false VT announced": announced_false,
            "false VT / patient-hour": announced_false / hours,
            "records with false VT": ", ".join(map(str, sorted(records)))}


#: Why a VT episode was missed: the first of these relaxations of the shipped rule whose rules replay
#: alarms it (each also keeps the ones before it).
MISS_REASONS = [
    ("signal-quality guard (the rules alone alarm it)", {}),
    ("normal-likeness gate", {"vt_min_unlike_normal": 0}),
    ("similarity gate", {"vt_min_unlike_normal": 0, "vt_min_similarity": -1.0}),
    ("p(V) gate", {"vt_min_unlike_normal": 0, "vt_min_similarity": -1.0, "vt_min_p_v": 0.0}),
]


def missed_episodes(beats, live_alarms, episodes, rule) -> list:
    """Return (start, end, live beats inside, reason) for each VT episode of one patient that the live
    monitor's alarms (time, announced) missed. reason: the first MISS_REASONS relaxation of rule under
    which the rules replay of the same beats alarms it; otherwise "beats not called V" when the
    longest run of live V beats inside it is shorter than the rule's vt_min_beats, else "rate"."""
    first, _ = score_vt_alarms(episodes, [a[0] for a in live_alarms])
    missed = [(start, end) for (start, end), f in zip(episodes, first) if np.isnan(f)]
    if not missed:
        return []
    replays = [(why, score_vt_alarms(missed, [a[0] for a in rules_replay(beats, {**rule, **relaxed})])[0])
               for why, relaxed in MISS_REASONS]
    min_beats = {**ALARM_THRESHOLDS, **rule}["vt_min_beats"]
    out = []
    for i, (start, end) in enumerate(missed):
        inside = beats[(beats["t"] >= start - 0.05) & (beats["t"] < end)]
        reason = next((why for why, alarmed in replays if not np.isnan(alarmed[i])), None)
        if reason is None:
            is_v = (inside["cls"] == "V").to_numpy()
            longest = max((len(run) for run in "".join("1" if v else "0" for v in is_v).split("0")), default=0)
            reason = "beats not called V" if longest < min_beats else "rate"
        out.append((start, end, inside, reason))
    return out


def candidates(grid) -> list:
    """Every setting of a grid ({threshold: values}) as a dict."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def candidate_rows(row, settings, *data) -> list:
    """Return [row(setting, *data) for setting in settings], the settings split over config.WORKERS
    processes (joblib), each given data once: the rules replay is pure Python, one core per process,
    and each row depends on its setting alone."""
    from joblib import Parallel, delayed

    parts = np.array_split(np.arange(len(settings)), max(min(config.WORKERS, len(settings)), 1))
    done = Parallel(n_jobs=len(parts), max_nbytes=None)(
        delayed(_rows)(row, [settings[i] for i in part], data) for part in parts)
    return [r for chunk in done for r in chunk]


def _rows(row, settings, data) -> list:
    return [row(setting, *data) for setting in settings]


def candidate_row(setting, streams, episodes, flutter, hours) -> dict:
    """One table row: a setting of the VT rule replayed on every patient's live beats, scored."""
    return {**setting, **score({r: rules_replay(b, setting) for r, b in streams.items()}, episodes, flutter, hours)}


def parse_args(description, quick_help, tuned, extra=None) -> tuple:
    """The tuning scripts' command line (--quick, --records, and what extra(parser) adds); returns
    (args, the DS1 records to replay)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--blend", action="store_true",
                        help="the monitor with the CNN + feature-model blend (each fold's own), not the CNN alone")
    if extra:
        extra(parser)
    parser.add_argument("--records", type=int, nargs="+", help="DS1 records to replay (default: all 22)")
    args = parser.parse_args()
    records = sorted(args.records or DS1)
    if set(records) - set(DS1):
        parser.error(f"records {sorted(set(records) - set(DS1))} are not DS1 records: {tuned} tuned on DS1 only")
    return args, records


def main():
    args, records = parse_args(__doc__.splitlines()[0], "ALARM_THRESHOLDS' rule beside a few others only",
                               "the VT rule is")
    t0 = time.perf_counter()
    streams, live_alarms, episodes, flutter, hours = ds1_streams(records, args.blend)
    n_episodes = sum(map(len, episodes.values()))
    print(f"the monitor with {'each fold CNN blended with its fold GBM (--blend)' if args.blend else 'each fold CNN alone'}")
    print(f"DS1: {len(streams)} patients, {hours:.2f} patient-hours, {sum(map(len, streams.values())):,} beats "
          f"found by the live monitor, {n_episodes} VT episodes in {sum(bool(e) for e in episodes.values())} records "
          f"({', '.join(f'{r}: {len(e)}' for r, e in episodes.items() if e)}); replayed in "
          f"{time.perf_counter() - t0:.0f} s (or read from the cache)")
    current = {k: ALARM_THRESHOLDS[k] for k in VT_KEYS}
    live = score(live_alarms, episodes, flutter, hours)
    print(f"\nThe live monitor out of fold, ALARM_THRESHOLDS' rule {current}:\n"
          f"  {live['episodes alarmed']} of {n_episodes} episodes alarmed; {live['false VT announced']} false VT alarms "
          f"announced ({live['false VT / patient-hour']:.2f} per patient-hour; records {live['records with false VT'] or '-'})")
    rows = candidate_rows(candidate_row, candidates(quick_grid() if args.quick else GRID), streams, episodes, flutter,
                          hours)
    table = pd.DataFrame(rows)
    table["meets 0.2/h"] = table["false VT / patient-hour"] <= AIM_FALSE_PER_HOUR
    # the stated choice: most episodes, then fewest announced false alarms, then the least strict rule
    order = table.sort_values(["episodes alarmed", "false VT announced", "vt_min_p_v", "vt_max_rr_spread",
                               "vt_min_rate_bpm", "vt_min_beats"],
                              ascending=[False, True, True, False, True, True])
    chosen = order.iloc[0]
    pd.set_option("display.width", 200)
    pd.set_option("display.max_rows", 500)
    shown = order if args.quick else order.head(25)
    print(f"\nCandidates replayed on the live beats (rules only), best first{'' if args.quick else ', top 25'} "
          f"(of {n_episodes} episodes; false alarms over {hours:.2f} patient-hours):")
    print(shown.round(3).to_string(index=False))
    best_within_aim = order[order["meets 0.2/h"]].head(1)
    print("\nmost episodes among candidates meeting the 0.2/h aim:")
    print(best_within_aim.round(3).to_string(index=False) if len(best_within_aim) else "none")
    print("\nbest of these (most episodes, then fewest false VT alarms, then least strict)"
          + (": the full grid's choice is ALARM_THRESHOLDS' rule; --quick shows it beside a few others" if args.quick
             else "; the choice:"))
    print(chosen.to_frame().T.round(3).to_string(index=False))
    same = all(float(chosen[k]) == float(current[k]) for k in VT_KEYS)
    print(f"ALARM_THRESHOLDS now: {current} -> {'the chosen rule' if same else 'DIFFERS from this choice'}")
    print("\nDS1 VT episodes the live monitor missed with ALARM_THRESHOLDS' rule (its beats inside: class, p(V);"
          " why, from the first of these rules replays that alarms it):")
    reasons = {}
    for r, beats in streams.items():
        for start, end, inside, reason in missed_episodes(beats, live_alarms[r], episodes[r], current):
            reasons[reason] = reasons.get(reason, 0) + 1
            print(f"  {r} {start:7.1f}-{end:7.1f} s: {''.join(inside['cls'].head(8))}, "
                  f"p(V) {' '.join(f'{p:.2f}' for p in inside['p_V'].head(8))}: {reason}")
    print("  missed, by reason: " + ("; ".join(f"{n} {why}" for why, n in reasons.items()) or "none"))
    print(f"\n{len(table)} candidates in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
