"""Benchmark the streaming monitor on one CPU core.

Streams DS2 records as live feeds arrive (fixed-size chunks, every patient in
turn) and prints, for one thread:
  - throughput: seconds of ECG processed per CPU-second, i.e. how many patients one
    core keeps up with in real time (the aim is at least 1,000), for a Ward that
    classifies all patients' ready beats in one model call, and for the reference
    run in the same process: one Monitor.push per patient;
  - the delay from an R peak to its beat event in stream time, median and 99th
    percentile (the aim is under 1.5 s): the inputs a beat needs (1 s of signal
    after it and the next R peak) plus the wait for the chunk that completes them.
Run: .venv/bin/python benchmarks/bench_monitor.py [--minutes M] [--chunk S] [--patients N]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import utils  # noqa: E402


def run(model, signals, chunk_s, batched):
    """Stream every signal in chunk_s pieces; return (CPU seconds, beat delays)."""
    if batched:
        ward = utils.Ward(model)
        for k, (_, fs) in enumerate(signals):
            ward.add(k, fs)
    else:
        monitors = [utils.Monitor(model, fs) for _, fs in signals]
    longest = max(len(x) / fs for x, fs in signals)
    delays, busy = [], 0.0
    for step in range(int(np.ceil(longest / chunk_s))):
        chunks = {k: x[int(step * chunk_s * fs):int((step + 1) * chunk_s * fs)] for k, (x, fs) in enumerate(signals)}
        t0 = time.perf_counter()
        if batched:
            out = ward.push(chunks)
        else:
            out = {k: monitors[k].push(c) for k, c in chunks.items()}
        busy += time.perf_counter() - t0
        delays += [e["delay_s"] for events in out.values() for e in events if e["type"] == "beat"]
    return busy, np.asarray(delays)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=3, help="minutes of each record to stream")
    parser.add_argument("--chunk", type=float, default=0.25, help="seconds of signal per push")
    parser.add_argument("--patients", type=int, default=44, help="streams (DS2 records, each used twice)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core
    model = utils.load_model(utils.model_path("recommended"))
    data_dir = utils.find_data_dir()
    signals = []
    for k in range(args.patients):
        x, fs, _ = utils.read_signal(data_dir / str(utils.DS2[k % len(utils.DS2)]))
        offset = int((k // len(utils.DS2)) * args.minutes * 60 * fs)  # the second copy streams later minutes
        signals.append((x[offset:offset + int(args.minutes * 60 * fs)], fs))
    ecg_s = sum(len(x) / fs for x, fs in signals)
    print(f"model {model.meta['name']}: {len(signals)} streams x {args.minutes:g} min, "
          f"{args.chunk:g}-s chunks, 1 thread")
    single_s, _ = run(model, signals, args.chunk, batched=False)
    ward_s, delays = run(model, signals, args.chunk, batched=True)
    print(f"throughput, Ward (one model call per push for all patients): {ecg_s / ward_s:,.0f} s of ECG per "
          f"CPU-second -> one core keeps up with about {ecg_s / ward_s:,.0f} patients in real time (aim 1,000)")
    print(f"throughput, one Monitor.push per patient (reference, same run): {ecg_s / single_s:,.0f} patients "
          f"-> the Ward is {single_s / ward_s:.1f}x faster")
    t0 = time.perf_counter()
    for x, fs in signals:
        utils.detect_beats(x, fs)
    print(f"QRS detection alone: {ecg_s / (time.perf_counter() - t0):,.0f} s of ECG per CPU-second")
    print(f"delay from R peak to beat event ({len(delays):,} beats): median {np.median(delays):.2f} s, "
          f"99th percentile {np.percentile(delays, 99):.2f} s, max {delays.max():.2f} s (aim under 1.5 s)")


if __name__ == "__main__":
    main()
