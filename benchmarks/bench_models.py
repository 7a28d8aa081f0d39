"""Benchmark the three models on this machine: training and inference throughput in beats/s.

Uses the CPU settings of notebook 03 (image CNN at 48x72) on real DS1 beats, and
reports how much of a training step goes to building the batch (rendering images
for the image models), to show rendering is not the bottleneck.
Run: .venv/bin/python benchmarks/bench_models.py
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import utils  # noqa: E402

IMAGE = dict(kind="image", window=[96, 96], ylim=list(utils.RENDER_YLIM), normalise=[0.5, 0.5])
MODELS = {
    "seed_cnn": (utils.SeedCNN(), {**IMAGE, "size": [120, 120]}, 32, False),
    "image_cnn (CPU, 48x72)": (utils.ImageCNN(width=8), {**IMAGE, "size": [48, 72]}, 128, True),
    "image_cnn (GPU, 128x192)": (utils.ImageCNN(width=16), {**IMAGE, "size": [128, 192]}, 128, True),
    "signal_cnn": (utils.SignalCNN(width=32), dict(kind="signal"), 256, True),
}


def main(steps=15):
    device = utils.get_device()
    records = [106, 119, 208, 223]
    beats = utils.load_beats(records)
    data = utils.BeatSet(beats, records)
    rng = np.random.default_rng(0)
    print(f"{len(data):,} beats of records {records}; {torch.get_num_threads()} threads")
    for name, (model, spec, batch_size, augment) in MODELS.items():
        model.to(device)
        optimizer = torch.optim.AdamW(model.parameters())
        batches = [rng.integers(0, len(data), batch_size) for _ in range(steps + 2)]
        build = total = 0.0
        for i, idx in enumerate(batches):
            t0 = time.perf_counter()
            inputs = [x.to(device) for x in data.batch(spec, idx, augment, rng)]
            t1 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(*inputs), torch.from_numpy(data.labels[idx]).to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 2:  # the first steps warm up
                build, total = build + t1 - t0, total + time.perf_counter() - t0
        n = steps * batch_size
        t0 = time.perf_counter()
        utils.predict(model, data, {**spec}, device, batch_size=1024)
        infer = len(data) / (time.perf_counter() - t0)
        print(f"{name:26s} train {n / total:8,.0f} beats/s (batch building {build / total:4.0%}) | "
              f"inference {infer:8,.0f} beats/s (rendering included)")


if __name__ == "__main__":
    main()
