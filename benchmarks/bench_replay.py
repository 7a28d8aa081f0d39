"""Benchmark ekg.replay on one process against several (replay's workers), wall time.

Notebook 05's heaviest cells replay whole records through one Ward (the DS2 replay, the noise
stress test's 132 noisy DS2 records). A Ward runs its filters, rules and VF detector
in Python and NumPy on one core, so on a 2-core machine the second core waits. This replays the
first --minutes of every DS2 record (optionally with electrode-motion noise at 12 dB, the level
issue 12's noise aims are set at, where the monitor also handles false beats) once in one
process and once split over --workers processes, and prints both wall times, their ratio, and
whether the two gave the same events: the same beats (time and class) and alarms for every
record, and the largest difference in a beat's probabilities.

--folds replays the DS1 records instead, each with the cross-validation fold model that never saw
it (models/folds/, as tune_vt_ds1.py and tune_noise_ds1.py replay them): one Ward per fold, one
after another (how the tuning scripts replayed them before replay_jobs), against replay_jobs' one
Ward for every fold (each model called for its own patients) on one process and on --workers.

--nst replays the noise stress test's records as notebook 05 does (every DS2 record at all six noise
levels, its clean first 5 minutes the same at each) on one process, once with replay_jobs' shared
beginnings (each record's clean minutes replayed once, then a fork per level) and once with every
recording replayed from its start, and prints both times and whether the events agree.

Run: .venv/bin/python benchmarks/bench_replay.py [--minutes M] [--workers N] [--noise | --folds | --nst]
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ekg.data import DS2, find_data_dir  # noqa: E402
from ekg.models import load_model, model_path  # noqa: E402
from ekg.data import DS1  # noqa: E402
from ekg.monitor import nst, replay, replay_jobs  # noqa: E402
from ekg.signals import read_signal  # noqa: E402


def event_keys(events) -> list:
    """What must not change between the two replays: each event's type, time, class or alarm kind."""
    return [(e["type"], round(float(e["time"]), 6), e.get("class"), e.get("kind")) for e in events]


def largest_probability_difference(a, b) -> float:
    """The largest absolute difference between the probabilities of matching beat events."""
    diffs = [np.max(np.abs(np.array(list(e["probabilities"].values())) - np.array(list(f["probabilities"].values()))))
             for e, f in zip(a, b) if e["type"] == "beat" and f["type"] == "beat"]
    return float(max(diffs, default=0.0))


def same_events(one, other) -> str:
    """How far two replays of the same recordings agree, as one line."""
    same = [name for name in one if event_keys(one[name]) == event_keys(other[name])]
    return (f"same beats, classes and alarms in {len(same)} of {len(one)} records; largest probability "
            f"difference {max(largest_probability_difference(one[n], other[n]) for n in one):.1e}")


def folds(minutes, workers):
    """--folds: the DS1 records with their fold models, fold by fold against replay_jobs."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tune_vt_ds1

    data_dir = find_data_dir()
    jobs = [(model, {r: (read_signal(data_dir / str(r))[0][: int(minutes * 60 * 360)], 360.0) for r in held}, None)
            for model, held, _, _ in tune_vt_ds1.fold_models(DS1)]
    hours = sum(len(x) / fs for _, signals, _ in jobs for x, fs in signals.values()) / 3600
    print(f"{sum(len(s) for _, s, _ in jobs)} DS1 records x {minutes:g} min ({hours:.1f} h of ECG), {len(jobs)} fold "
          f"models; {os.cpu_count()} cores")
    t0 = time.perf_counter()
    by_fold = {}
    for model, signals, _ in jobs:
        by_fold.update(replay(model, signals))
    t_fold = time.perf_counter() - t0
    t0 = time.perf_counter()
    together = replay_jobs(jobs)
    t_together = time.perf_counter() - t0
    t0 = time.perf_counter()
    split = replay_jobs(jobs, workers=workers)
    t_split = time.perf_counter() - t0
    print(f"a Ward per fold, one after another: {t_fold:.1f} s; replay_jobs, one Ward: {t_together:.1f} s "
          f"({t_fold / t_together:.2f}x); replay_jobs on {workers} processes: {t_split:.1f} s ({t_fold / t_split:.2f}x)")
    print(f"one Ward against a Ward per fold: {same_events(by_fold, together)}")
    print(f"{workers} processes against a Ward per fold: {same_events(by_fold, split)}")


def stress_test(minutes):
    """--nst: the noise stress records with and without shared beginnings, one process each."""
    from ekg.monitor import replays

    em, em_fs = nst.read_noise("em", 0)
    signals, _ = nst.stress_records(DS2, nst.NST_SNRS_DB, em, em_fs, find_data_dir(), minutes=minutes)
    model = load_model(model_path("recommended"))
    shared = replays.shared_prefixes(signals, 1.0)
    hours = sum(len(x) / fs for x, fs in signals.values()) / 3600
    saved = sum(steps for _, steps in shared.values()) / 3600
    print(f"{len(signals)} noise stress records ({len(DS2)} DS2 records x {len(nst.NST_SNRS_DB)} levels) x {minutes:g} min "
          f"({hours:.1f} h of ECG); {len(shared)} fork from another after its first chunks ({saved:.1f} h not replayed)")
    t0 = time.perf_counter()
    forked = replay(model, signals)
    t_forked = time.perf_counter() - t0
    real = replays.shared_prefixes
    replays.shared_prefixes = lambda signals, chunk_s: {}  # every recording from its start, as before
    try:
        t0 = time.perf_counter()
        whole = replay(model, signals)
        t_whole = time.perf_counter() - t0
    finally:
        replays.shared_prefixes = real
    print(f"every recording from its start: {t_whole:.1f} s; shared beginnings: {t_forked:.1f} s "
          f"-> {t_whole / t_forked:.2f}x faster")
    print(f"shared beginnings against every recording from its start: {same_events(whole, forked)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--noise", action="store_true", help="electrode-motion noise at 12 dB as nst adds it")
    parser.add_argument("--folds", action="store_true", help="DS1 with the fold models: replay_jobs against a Ward per fold")
    parser.add_argument("--nst", action="store_true",
                        help="the noise stress records at every level: shared beginnings against none, one process")
    args = parser.parse_args()
    if args.nst:
        return stress_test(args.minutes)
    if args.folds:
        return folds(args.minutes, args.workers)
    data_dir = find_data_dir()
    model = load_model(model_path("recommended"))
    if args.noise:  # the first minutes of each record: clean 5 minutes, then nst's noisy segments
        em, em_fs = nst.read_noise("em", 0)
        stressed, _ = nst.stress_records(DS2, [12], em, em_fs, data_dir, minutes=args.minutes)
        signals = {f"{r}@{snr}dB": signal for (r, snr), signal in stressed.items()}
    else:
        signals = {}
        for r in DS2:
            x, fs, _ = read_signal(data_dir / str(r))
            signals[str(r)] = (x[: int(args.minutes * 60 * fs)], fs)
    hours = sum(len(x) / fs for x, fs in signals.values()) / 3600
    print(f"{len(signals)} records x {args.minutes:g} min ({hours:.1f} h of ECG){', em noise 12 dB' if args.noise else ''}; "
          f"{os.cpu_count()} cores")
    t0 = time.perf_counter()
    one = replay(model, signals)
    t_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    split = replay(model, signals, workers=args.workers)
    t_split = time.perf_counter() - t0
    print(f"one process: {t_one:.1f} s; {args.workers} processes: {t_split:.1f} s -> {t_one / t_split:.2f}x faster")
    print(same_events(one, split))


if __name__ == "__main__":
    main()
