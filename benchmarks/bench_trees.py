"""Benchmark ekg.trees.TreeModel.raw: scikit-learn's compiled tree code against the NumPy path.

The compiled evaluator costs a Python call per tree whatever the batch; the NumPy path steps every
tree down one level at a time for all rows at once. The monitor asks the VF model (100 trees of
depth 3) for one window per patient per second, a few to a few hundred rows at a time; notebook 04
asks the feature baseline's GBM (800 trees) for tens of thousands of beats. For each model and batch
size this prints both paths' time per call (best of several repeats), their ratio, and whether the
two gave the same numbers (they add the same leaves in the same order, so they must be equal);
TreeModel.NUMPY_MAX_STEPS (rows x trees x depth) is set from where the NumPy path stops being faster.

Run: .venv/bin/python benchmarks/bench_trees.py
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ekg import baseline  # noqa: E402
from ekg.blend import FeatureBlend, blend_path  # noqa: E402
from ekg.monitor.vf import default_model  # noqa: E402
from ekg.trees import TreeModel  # noqa: E402


def per_call(f, repeats) -> float:
    """The best of `repeats` timings of f(), in seconds."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    rng = np.random.default_rng(0)
    vf = default_model()
    gbm = FeatureBlend.load(blend_path()).trees
    features = baseline.load_features([100, 119]).to_numpy(np.float64)
    models = {"VF model": (vf, None), "feature GBM": (gbm, features)}
    print(f"TreeModel.NUMPY_MAX_STEPS now {TreeModel.NUMPY_MAX_STEPS:,} (rows x trees x depth; raw() takes NumPy up to it)")
    for name, (model, pool) in models.items():
        print(f"\n{name}: {len(model.root)} trees, depth {model.depth}, {len(model.features)} features")
        print(f"{'rows':>6} {'x trees x depth':>16} {'compiled ms':>12} {'NumPy ms':>9} {'compiled/NumPy':>15}  same numbers")
        for n in (1, 11, 22, 66, 200, 1000, 5000):
            x = pool[rng.integers(0, len(pool), n)] if pool is not None else rng.normal(0, 1, (n, len(model.features)))
            model.raw(x, compiled=True)  # the compiled evaluators are built on first use
            repeats = 20 if n * len(model.root) < 1e6 else 3
            compiled = per_call(lambda: model.raw(x, compiled=True), repeats)
            numpy = per_call(lambda: model.raw(x, compiled=False), repeats)
            same = np.array_equal(model.raw(x, compiled=True), model.raw(x, compiled=False))
            print(f"{n:>6} {n * len(model.root) * model.depth:>16,} {1e3 * compiled:>12.2f} {1e3 * numpy:>9.2f} "
                  f"{compiled / numpy:>15.2f}  {same}")


if __name__ == "__main__":
    main()
