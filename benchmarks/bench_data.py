"""Benchmark the data layer: build the beat table from raw files, and render the seed's images.

Prints seconds per build, images per second, and the speed-up of the vectorised
renderer over plotting one matplotlib figure per beat (the seed's way), both
timed in this process. Run: .venv/bin/python benchmarks/bench_data.py
"""
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import utils  # noqa: E402


def plot_one_figure_each(windows):
    """The reference: one matplotlib figure per beat, as the seed's images were made."""
    images = []
    for w in windows:
        fig = plt.figure(figsize=(1.92, 1.28), dpi=100)
        ax = fig.add_axes([0, 0, 1, 1])
        ax.plot(w, color="k", lw=0.8)
        ax.set_ylim(*utils.RENDER_YLIM)
        ax.axis("off")
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[..., 0].copy())
        plt.close(fig)
    return np.stack(images)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        utils.CACHE_DIR = Path(tmp)
        t0 = time.perf_counter()
        beats = utils.load_beats(progress=True)
        build = time.perf_counter() - t0
    print(f"beat table from raw files: {len(beats):,} beats, 48 records in {build:.1f} s "
          f"({len(beats) / build:,.0f} beats/s; budget 60 s)")

    t0 = time.perf_counter()
    utils.load_beats()
    windows = utils.load_windows()[np.asarray(beats["seed_image"])]
    print(f"beat table and windows from the in-process cache: {time.perf_counter() - t0:.2f} s")

    t0 = time.perf_counter()
    utils.render_beats(windows)
    render = time.perf_counter() - t0
    print(f"render_beats: {len(windows):,} images in {render:.1f} s ({len(windows) / render:,.0f} images/s; budget 60 s)")

    n = 300
    t0 = time.perf_counter()
    plot_one_figure_each(windows[:n])
    reference = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    utils.render_beats(windows[:n])
    vectorised = (time.perf_counter() - t0) / n
    print(f"per image on {n} beats: matplotlib figure {reference * 1e3:.2f} ms, render_beats "
          f"{vectorised * 1e3:.3f} ms -> {reference / vectorised:,.0f}x faster; "
          f"all {len(windows):,} with matplotlib would take about {reference * len(windows) / 60:.0f} min")


if __name__ == "__main__":
    main()
