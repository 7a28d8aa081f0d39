"""Benchmark the streaming monitor on one CPU core.

Streams stretches of the DS2 records as live feeds arrive (fixed-size chunks, every
patient in turn; by default 1,000 streams, each a different stretch) and prints, for
one thread:
  - throughput: seconds of ECG processed per CPU-second (the process's CPU time), i.e. how
    many patients one core keeps up with in real time (the aim is at least 1,000), for a Ward
    that runs the QRS filters, the VF detector, the beats' inputs and the model (with --blend, also
    the recommended blend's feature model, which the monitor can take and does not ship with) once
    for all patients, and
    for the reference run in the same process: one Monitor.push per patient, on the
    first --reference streams (none with --reference 0);
  - the delay from an R peak to its beat event in stream time, median and 99th
    percentile (the aim is under 1.5 s): the inputs a beat needs (1 s of signal
    after it, and the next R peak or, for a model with rr_next_cap_s, the certainty
    that it is later than the cap) plus the wait for the chunk that completes them.
--leads 2 streams both leads of each stretch through two-lead monitors (Monitor's leads=2: a second QRS
detector and the noise gate), to show what the gate costs.
Run: .venv/bin/python benchmarks/bench_monitor.py [--minutes M] [--chunk S] [--patients N] [--reference N]
     [--rr-next-cap S] [--without-vf] [--blend] [--leads 2] [--ward-only] [--profile]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import utils  # noqa: E402
from ekg.monitor import VFDetector  # noqa: E402


def run(model, signals, chunk_s, batched, blend=None):
    """Stream every signal in chunk_s pieces (a signal of shape (n, 2): a two-lead stream); return (CPU
    seconds, beat delays)."""
    if batched:
        ward = utils.Ward(model, blend=blend)
        for k, (x, fs) in enumerate(signals):
            ward.add(k, fs, leads=np.ndim(x))
    else:
        monitors = [utils.Monitor(model, fs, blend=blend, leads=np.ndim(x)) for x, fs in signals]
    longest = max(len(x) / fs for x, fs in signals)
    delays, busy = [], 0.0
    for step in range(int(np.ceil(longest / chunk_s))):
        chunks = {k: x[int(step * chunk_s * fs):int((step + 1) * chunk_s * fs)] for k, (x, fs) in enumerate(signals)}
        # CPU time of this process (one thread), not wall time: the figure is per CPU-second and stays
        # right on a machine shared with other jobs
        t0 = time.process_time()
        if batched:
            out = ward.push(chunks)
        else:
            out = {k: monitors[k].push(c) for k, c in chunks.items()}
        busy += time.process_time() - t0
        # the detector learns its thresholds on a stream's first 2 s, once per admission: the beats
        # of each stream's first 3 s are left out of the delay figures
        delays += [e["delay_s"] for events in out.values() for e in events if e["type"] == "beat" and e["time"] >= 3]
    return busy, np.asarray(delays)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=0.5, help="minutes of ECG per stream")
    parser.add_argument("--chunk", type=float, default=0.25, help="seconds of signal per push")
    parser.add_argument("--patients", type=int, default=1000, help="streams (stretches of the 22 DS2 records)")
    parser.add_argument("--reference", type=int, default=100,
                        help="streams for the one-Monitor-per-push run (0: no such run, as for a second chunk size)")
    parser.add_argument("--rr-next-cap", type=float, default=None,
                        help="override the model's cap on the next RR interval (seconds; 0 = no cap): the "
                             "delay and speed of such a model, with the recommended weights (not its accuracy)")
    parser.add_argument("--without-vf", action="store_true",
                        help="switch the VF detector off, to measure what it costs (the monitor always runs it)")
    parser.add_argument("--blend", action="store_true",
                        help="the monitor with the recommended CNN + feature-model blend (what the blend costs)")
    parser.add_argument("--leads", type=int, choices=[1, 2], default=1,
                        help="2: both leads of each stretch, through two-lead monitors with the noise gate")
    parser.add_argument("--profile", action="store_true",
                        help="also the share of the Ward's push time in each of its steps (cProfile, same streams)")
    parser.add_argument("--ward-only", action="store_true",
                        help="the Ward's throughput and the delay only, without timing QRS and VF detection alone "
                             "(for a second run whose point is the delay)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core
    if args.without_vf:
        VFDetector.feed_many = staticmethod(lambda detectors, chunks: [[] for _ in detectors])
    model = utils.load_model(utils.model_path("recommended"))
    blend = utils.FeatureBlend.load(utils.blend_path()) if args.blend else None
    if args.rr_next_cap is not None:
        model.rr_next_cap_s = args.rr_next_cap or None
    data_dir = utils.find_data_dir()
    signals, records = [], {}
    for k in range(args.patients):
        record = utils.DS2[k % len(utils.DS2)]
        if record not in records:  # each record read once (not timed: the figures are the streaming's)
            leads = [utils.read_signal(data_dir / str(record), channel)[:2] for channel in range(args.leads)]
            records[record] = (leads[0][0] if args.leads == 1 else np.column_stack([x for x, _ in leads]), leads[0][1])
        x, fs = records[record]
        # the k-th use of a record streams a later stretch of it, wrapping round at its end
        length = int(args.minutes * 60 * fs)
        offset = int((k // len(utils.DS2)) * length) % max(len(x) - length, 1)
        signals.append((x[offset:offset + length], fs))
    ecg_s = sum(len(x) / fs for x, fs in signals)
    reference = signals[:args.reference]
    sample = signals[:100]  # the streams QRS detection alone is timed on
    cap = getattr(model, "rr_next_cap_s", None)
    cap = (f", next RR seen up to {cap:g} s" if cap else
           f", next RR not capped (a beat waits for the next one, at most {utils.Monitor.MAX_WAIT_S:g} s)")
    print(f"model {model.meta['name']}{cap}{', with the recommended blend' if blend else ''}: "
          f"{len(signals)} streams x {args.minutes:g} min, {args.chunk:g}-s chunks, 1 thread"
          + (", two leads (noise gate on)" if args.leads == 2 else ""))
    if reference:
        single_s, _ = run(model, reference, args.chunk, batched=False, blend=blend)
        single = sum(len(x) / fs for x, fs in reference) / single_s
    ward_s, delays = run(model, signals, args.chunk, batched=True, blend=blend)
    print(f"throughput, Ward of {len(signals)} streams: {ecg_s / ward_s:,.0f} s of ECG per CPU-second -> one core "
          f"keeps up with about {ecg_s / ward_s:,.0f} patients in real time (aim 1,000)")
    if reference:
        print(f"throughput, one Monitor.push per patient ({len(reference)} streams, same run): {single:,.0f} patients "
              f"-> the Ward is {ecg_s / ward_s / single:.1f}x faster")
    if args.profile:
        profile_steps(model, signals, args.chunk, blend)
    if not args.ward_only:  # detection alone on the first lead
        first = [(x if x.ndim == 1 else x[:, 0], fs) for x, fs in signals]
        detection_alone(model, first, first[:100], args)
    print(f"delay from R peak to beat event ({len(delays):,} beats): median {np.median(delays):.2f} s, "
          f"99th percentile {np.percentile(delays, 99):.2f} s, max {delays.max():.2f} s (aim under 1.5 s); "
          f"{100 * np.mean(delays < 1.5):.0f}% of beats under 1.5 s; each stream's first 3 s left out")


#: The steps of a Ward's push (stream._push_many), as cProfile names them: (file, function) -> label.
WARD_STEPS = {("qrs.py", "feed_many"): "QRS detection (filters, peak search, per-patient decisions)",
              ("vf.py", "feed_many"): "VF detection",
              ("gate.py", "judge_detections"): "the noise gate (two leads)",
              ("stream.py", "_ready_beats"): "ready beats (windows, RR statistics)",
              ("stream.py", "_ward_inputs"): "the beats' patient-relative inputs",
              ("batches.py", "predict"): "the model",
              ("stream.py", "_finish"): "beat events and rhythm alarms",
              ("stream.py", "_take"): "taking in the samples",
              ("stream.py", "_judge_blocks"): "signal quality"}


def profile_steps(model, signals, chunk_s, blend):
    """Print each WARD_STEPS step's share of the Ward's push time, from a cProfile run of the same
    streams (cProfile's overhead weighs most on the Python-heavy steps, so the shares are approximate)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    run(model, signals, chunk_s, batched=True, blend=blend)
    profiler.disable()
    cumulative = {}
    for (file, _, name), (_, _, _, total, _) in pstats.Stats(profiler).stats.items():
        cumulative[(Path(file).name, name)] = cumulative.get((Path(file).name, name), 0.0) + total
    push = cumulative[("stream.py", "_push_many")]
    shares = ", ".join(f"{label} {100 * cumulative.get(key, 0.0) / push:.0f}%" for key, label in WARD_STEPS.items())
    print(f"the Ward's push time by step (cProfile): {shares}")


def detection_alone(model, signals, sample, args):
    """Print the QRS detector's throughput alone (on sample) and the VF detector's as the Ward runs it."""
    t0 = time.process_time()
    for x, fs in sample:
        utils.detect_beats(x, fs)
    print(f"QRS detection alone: {sum(len(x) / fs for x, fs in sample) / (time.process_time() - t0):,.0f} s "
          f"of ECG per CPU-second")
    if args.without_vf:
        print("VF detector switched off (--without-vf)")
    # the VF detector as the Ward runs it: every stream's window features and trees in one batch per push
    at_model_rate = [utils.resample(x, fs, model.meta["fs"]) if fs != model.meta["fs"] else x for x, fs in signals]
    length = min(len(x) for x in at_model_rate)
    detectors = [VFDetector(model.meta["fs"]) for _ in at_model_rate]
    step = int(args.chunk * model.meta["fs"])
    t0 = time.process_time()
    for i in range(0, length, step):
        VFDetector.feed_many(detectors, np.stack([x[i:i + step] for x in at_model_rate]))
    vf_s = time.process_time() - t0
    if not args.without_vf:
        print(f"VF detection alone (its share of the Ward's work): {len(at_model_rate) * length / model.meta['fs'] / vf_s:,.0f} "
          f"s of ECG per CPU-second")


if __name__ == "__main__":
    main()
