"""Benchmark the three models on this machine: training and inference throughput in beats/s, and the
share of a training step spent building the batch, before and after beat images moved to torch.

before: the NumPy renderer on the CPU, every augmented batch drawn there and copied to the device,
        the un-augmented images cached on the CPU and copied to the device each batch;
after:  ekg's torch renderer on the device the model trains on (the GPU when there is one), the
        context windows and the rendered images kept there once (BeatSet).
The image models draw the same augmentation from the same random stream on both. The signal CNN's
batches: before, NumPy on the CPU (recorder version, gain, noise, wander drawn there, then copied
to the device); after, torch on the device from inputs moved there once (BeatSet.signal_device;
the same augmentation, other random draws). The model settings are notebook 03's
(image CNN at 48x72 on a CPU, 128x192 on a GPU), on real DS1 beats. On a CPU both pipelines run
on the same cores, so the gain there is the renderer's alone; on a GPU the batches stop waiting for
the CPU.
Run: .venv/bin/python benchmarks/bench_models.py [--steps N] [--records 106 119 ...]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ekg.batches import BeatSet, predict  # noqa: E402
from ekg.data import load_beats  # noqa: E402
from ekg.features import RHYTHM_FEATURES  # noqa: E402
from ekg.images import RENDER_YLIM, render_device  # noqa: E402
from ekg.models import ImageCNN, SeedCNN, SignalCNN  # noqa: E402
from ekg.training import get_device  # noqa: E402

IMAGE = dict(kind="image", window=[96, 96], ylim=list(RENDER_YLIM), normalise=[0.5, 0.5])
# notebook 03's signal model leaves out the rhythm columns in seconds
SECONDS = [RHYTHM_FEATURES.index(n) for n in ("rr_prev (s)", "rr_next (s)", "local RR (s)", "long RR (s)")]


def models(gpu):
    """(name, model, input spec, batch size, augment) as notebook 03 trains them on this device."""
    return [
        ("seed_cnn (120x120)", SeedCNN(), {**IMAGE, "size": [120, 120]}, 32, False),
        ("image_cnn (48x72)" if not gpu else "image_cnn (128x192)", ImageCNN(width=32 if gpu else 16),
         {**IMAGE, "size": [128, 192] if gpu else [48, 72]}, 128, True),
        ("signal_cnn", SignalCNN(width=16, rr_next_cap_s=1.5, drop_rhythm=SECONDS), dict(kind="signal"), 256,
         "recorders"),
    ]


# -- before: the NumPy pipeline that the torch renderer replaced (kept here as the baseline) -----

def numpy_render(windows, ylim, height=128, batch=2048):
    windows = np.atleast_2d(np.asarray(windows, dtype=np.float32))
    lo_y, hi_y = ylim
    out = np.empty((len(windows), height, windows.shape[1]), dtype=np.uint8)
    rows = np.arange(height, dtype=np.float32)[None, :, None]
    for start in range(0, len(windows), batch):
        w = windows[start:start + batch]
        r = np.clip((hi_y - w) / (hi_y - lo_y) * (height - 1), 0, height - 1)
        nxt = np.concatenate([r[:, 1:], r[:, -1:]], axis=1)
        top = np.floor(np.minimum(r, nxt))[:, None, :]
        bottom = np.ceil(np.maximum(r, nxt))[:, None, :]
        out[start:start + batch] = np.where((rows >= top) & (rows <= bottom), 0, 255)
    return out


def numpy_beat_images(context, spec, augment=False, rng=None):
    before, after = spec["window"]
    centre = context.shape[1] // 2
    if augment:
        shift = rng.integers(-4, 5, len(context))
        cols = centre - before + shift[:, None] + np.arange(before + after)
        windows = np.take_along_axis(context, cols, axis=1)
        windows = windows * rng.uniform(0.85, 1.15, (len(context), 1)) + rng.uniform(-0.1, 0.1, (len(context), 1))
    else:
        windows = context[:, centre - before:centre + after]
    images = TF.resize(torch.from_numpy(numpy_render(windows, tuple(spec["ylim"])))[:, None], list(spec["size"]),
                       antialias=True)
    mean, std = spec["normalise"]
    return (images.float() / 255 - mean) / std


class NumpyBatches:
    """BeatSet.batch as it was for images: drawn with NumPy on the CPU, cached there."""

    def __init__(self, data):
        self.data, self.cache = data, {}

    def batch(self, spec, idx, augment=False, rng=None):
        if augment:
            return [numpy_beat_images(self.data.context[idx], spec, augment, rng)]
        key = repr(sorted(spec.items()))
        if key not in self.cache:
            plain = {**spec, "normalise": [0.0, 1 / 255]}
            self.cache[key] = torch.cat([numpy_beat_images(self.data.context[i:i + 4096], plain).round().to(torch.uint8)
                                         for i in range(0, len(self.data), 4096)])
        mean, std = spec["normalise"]
        return [(self.cache[key][idx].float() / 255 - mean) / std]


# -- the measurement ------------------------------------------------------------------------------

def sync(device):
    if device.type == "cuda":  # the GPU runs asynchronously: wait for it before reading the clock
        torch.cuda.synchronize()


def train_steps(data, model, spec, batch_size, augment, device, steps, seed=0):
    """Time `steps` training steps (after two warm-up steps), building each batch with both pipelines
    in turn, from the same random draws, and training on the one built by ekg's (after).

    Interleaving the two keeps a machine whose load changes from favouring either. Returns
    {pipeline: (build s, first batch s)} and the s the steps spent in the model (forward,
    backward, optimiser). The first batch of an un-augmented image model renders every beat once
    (the cache): it is timed on its own and left out of the per-step figures, as it is paid once
    per training run.
    """
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters())
    if spec["kind"] == "signal":  # NumPy batches on the CPU, against torch batches on the device
        before, after = (data.subset(np.ones(len(data), bool)) for _ in range(2))
        before.on_device, after.on_device = "numpy", str(device)
        sources = {"before": before, "after": after}
    else:
        sources = {"before": NumpyBatches(data), "after": data}
    rngs = {label: np.random.default_rng(seed) for label in sources}
    order = np.random.default_rng(seed + 1).integers(0, len(data), (steps + 2, batch_size))
    build, first, compute = dict.fromkeys(sources, 0.0), {}, 0.0
    for i, idx in enumerate(order):
        for label, source in sources.items():
            sync(device)
            t0 = time.perf_counter()
            inputs = [x.to(device, non_blocking=True) for x in source.batch(spec, idx, augment, rngs[label])]
            sync(device)
            elapsed = time.perf_counter() - t0
            first.setdefault(label, elapsed)
            if i >= 2:
                build[label] += elapsed
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(*inputs), torch.from_numpy(data.labels[idx]).to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sync(device)
        if i >= 2:
            compute += time.perf_counter() - t0
    return {label: (build[label], first[label]) for label in sources}, compute


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=15, help="timed training steps per model")
    parser.add_argument("--records", type=int, nargs="+", default=[106, 119, 208, 223])
    args = parser.parse_args()
    device = get_device()
    beats = load_beats(args.records)
    print(f"{len(beats):,} beats of records {args.records}; device {device}, images rendered on {render_device()}; "
          f"{torch.get_num_threads()} CPU threads; {args.steps} timed steps per model")
    print(f"{'model':22s} {'pipeline':8s} {'train beats/s':>13s} {'batch building':>15s} {'ms per batch':>13s} "
          f"{'all images once':>16s}")
    for name, model, spec, batch_size, augment in models(device.type == "cuda"):
        data = BeatSet(beats, args.records)
        timings, compute = train_steps(data, model, spec, batch_size, augment, device, args.steps)
        for label, (build, first) in timings.items():
            once = "" if augment or spec["kind"] == "signal" else f"{first:.1f} s"
            print(f"{name:22s} {label:8s} {args.steps * batch_size / (build + compute):13,.0f} "
                  f"{build / (build + compute):15.0%} {build / args.steps * 1e3:13.1f} {once:>16s}")
        data.batch(spec, np.arange(1))  # every image rendered once (the cache), as after a training epoch
        sync(device)
        t0 = time.perf_counter()
        predict(model, data, spec, device, batch_size=1024)
        sync(device)
        print(f"{name:22s} {'predict':8s} {len(data) / (time.perf_counter() - t0):13,.0f} beats/s, images cached")


if __name__ == "__main__":
    main()
