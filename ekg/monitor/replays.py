"""Whole recordings replayed through the monitor as live feeds: one Ward for many recordings
(replay), several sets each with its own model (replay_jobs, the cross-validation folds' patients),
recordings that begin alike replayed once up to where they part (shared_prefixes, Monitor.fork), and
the recordings split over processes.

What notebook 05 and the DS1 tuning scripts run offline; the live path is monitor.stream.
Imports: monitor.stream, NumPy, torch (joblib inside the function that needs it).
"""
from __future__ import annotations

import numpy as np
import torch

from .stream import Ward


def replay(model, signals, chunk_s=1.0, progress=None, blend=None, workers=1) -> dict:
    """Stream recordings through one Ward (each its own Monitor) in chunk_s pieces, as live feeds
    arrive; return {name: events}, each event as Monitor.push returns it. signals: {name: (signal, fs)}.

    Every monitor gives the events it would give alone (Monitor.push and Ward.push share
    _push_many); what the ward adds is speed: streams go through its batched filters and model
    together, so 22 half-hour records replay in about a minute instead of half an hour one by one.
    progress: an optional wrapper for the steps (for example tqdm). blend: a blend.FeatureBlend for
    every monitor (Monitor's blend).

    workers > 1 splits the recordings, longest first, into that many Wards, each in its own process
    with one torch thread: the monitor's filters, rules and VF detector run in Python and NumPy on one
    core, so a ward uses one core whatever torch's thread count. The events are the same beats, classes
    and alarms; a beat's probabilities may differ in the last float bits, as they do between a Ward and
    a lone Monitor (the model's batch holds other beats). progress is ignored there.
    """
    return replay_jobs([(model, signals, blend)], chunk_s, workers, progress)


def replay_jobs(jobs, chunk_s=1.0, workers=1, progress=None) -> dict:
    """Replay several sets of recordings, each with its own model, on one Ward: jobs is [(model,
    signals, blend)] or [(model, signals, blend, monitor options)] (signals and blend as replay takes
    them, the names unique across jobs; the options a dict of Monitor's keywords, for example a fold's
    own noise gate), for example one job per cross-validation fold, each fold's patients with the model
    that never saw them. A signal of shape (n, 2) is replayed as a two-lead stream (Monitor's leads=2).
    Returns {name: events} in the jobs' order: the events replay gives each job alone.

    The ward runs the filters, the VF detector and the beats' inputs once for every patient and each
    model once per push for its own patients, so a fold of four patients costs far less than on a
    ward of its own. Recordings of one job that begin with the same chunks (the noise stress test's
    records of one patient: its clean first minutes at every noise level, nst.stress_records) are
    replayed once up to where they part, then each goes on from a fork of that monitor
    (Monitor.fork, shared_prefixes). workers > 1 deals the recordings of every job, longest first,
    to that many Wards in spawned processes, as replay does, a recording and those sharing its
    beginning in the same one."""
    jobs = [tuple(job) + ({},) * (4 - len(job)) for job in jobs]  # the options default to none
    names = [name for _, signals, _, _ in jobs for name in signals]
    if len(set(names)) < len(names):
        repeated = sorted({str(n) for n in names if names.count(n) > 1})
        raise ValueError(f"recordings named in more than one job: {repeated}; their events would overwrite each other")
    if not names:
        return {}
    if workers > 1 and len(names) > 1:
        return _replay_in_processes(jobs, chunk_s, workers)
    ward = Ward(jobs[0][0])
    everything, forks = {}, {}  # forks: {step: [(name, the recording it forks from)]}
    for model, signals, blend, options in jobs:
        shared = shared_prefixes(signals, chunk_s)
        for name, (x, fs) in signals.items():
            if name in shared:
                leader, steps = shared[name]
                forks.setdefault(steps, []).append((name, leader))
            else:
                ward.add(name, fs, model=model, blend=blend, **{"leads": 2 if np.ndim(x) == 2 else 1, **options})
            everything[name] = (x, fs)
    events = {name: [] for name in everything}
    longest = max(len(x) / fs for x, fs in everything.values())
    steps = range(int(np.ceil(longest / chunk_s)))
    for step in (progress(steps) if progress else steps):
        for name, leader in forks.get(step, []):
            ward.monitors[name] = ward.monitors[leader].fork()
            events[name] = [dict(e) for e in events[leader]]
        chunks = {name: x[int(step * chunk_s * fs):int((step + 1) * chunk_s * fs)]
                  for name, (x, fs) in everything.items() if name in ward.monitors}
        for name, out in ward.push(chunks).items():
            events[name] += out
    return events


def shared_prefixes(signals, chunk_s) -> dict:
    """Return {name: (leader, steps)} for each recording of signals ({name: (signal, fs)}) whose first
    `steps` chunks of chunk_s seconds (one at least, and short of its last) are the same samples
    as those of an earlier recording at the same rate, the leader (itself sharing with none): the
    one it shares the most chunks with, the first such on a tie. NaN counts as equal to NaN."""
    leaders, shared = [], {}
    for name, (x, fs) in signals.items():
        best = (0, None)
        for other in leaders:
            y, other_fs = signals[other]
            if other_fs != fs:
                continue
            n = min(len(x), len(y))
            if not np.array_equal(x[:int(chunk_s * fs)], y[:int(chunk_s * fs)], equal_nan=True):
                continue  # not even the first chunk: the common case, settled cheaply
            if np.shape(x)[1:] != np.shape(y)[1:]:
                continue  # one lead and two never share a stream
            same_sample = (x[:n] == y[:n]) | (np.isnan(x[:n]) & np.isnan(y[:n]))
            if same_sample.ndim == 2:
                same_sample = same_sample.all(axis=1)  # a sample of two leads: both the same
            differ = np.flatnonzero(~same_sample)
            same = int(differ[0]) if len(differ) else n
            steps = 0  # whole chunks inside the common samples, as replay_jobs cuts them
            while int((steps + 1) * chunk_s * fs) <= same:
                steps += 1
            # the recording pushes at least its last chunk itself
            steps = min(steps, int(np.ceil(len(x) / (chunk_s * fs))) - 1)
            if steps > best[0]:
                best = (steps, other)
        if best[1] is None:
            leaders.append(name)
        else:
            shared[name] = (best[1], best[0])
    return shared


def _replay_one_thread(jobs, chunk_s) -> dict:
    """replay_jobs in a worker process, on one torch thread (the workers share the machine's cores)."""
    torch.set_num_threads(1)
    return replay_jobs(jobs, chunk_s)


def _replay_in_processes(jobs, chunk_s, workers) -> dict:
    """replay_jobs' (and replay's) workers > 1: every job's recordings dealt longest first to the
    least-loaded of `workers` groups, each group replayed by its own Ward (its recordings keeping
    their job's model) in a fresh process (joblib's loky workers, not forks: a fork of a process whose
    torch/OpenMP threads have run can hang); a recording and those that share its beginning
    (shared_prefixes) go together, weighing what each replays of its own. Returns {name: events} in
    the order of the jobs' signals."""
    from joblib import Parallel, delayed

    families = []  # (seconds replayed, job index, names): a leader and the recordings forking from it
    for k, (_, signals, _, _) in enumerate(jobs):
        shared = shared_prefixes(signals, chunk_s)
        members = {}
        for name in signals:
            members.setdefault(shared[name][0] if name in shared else name, []).append(name)
        for leader, names in members.items():
            seconds = sum(len(signals[n][0]) / signals[n][1] - (shared[n][1] * chunk_s if n in shared else 0)
                          for n in names)
            families.append((seconds, k, names))
    workers = min(workers, len(families))
    groups, load = [{} for _ in range(workers)], [0.0] * workers  # each group: {job index: {name: signal}}
    for seconds, k, names in sorted(families, key=lambda family: -family[0]):
        lightest = int(np.argmin(load))
        groups[lightest].setdefault(k, {}).update({name: jobs[k][1][name] for name in names})
        load[lightest] += seconds
    group_jobs = [[(jobs[k][0], signals, jobs[k][2], jobs[k][3]) for k, signals in group.items()] for group in groups]
    # max_nbytes=None: the signals travel pickled, not as read-only memory maps
    parts = Parallel(n_jobs=workers, max_nbytes=None)(delayed(_replay_one_thread)(jobs, chunk_s) for jobs in group_jobs)
    merged = {name: events for part in parts for name, events in part.items()}
    return {name: merged[name] for _, signals, _, _ in jobs for name in signals}
