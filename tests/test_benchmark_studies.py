"""The DS1 studies in benchmarks/ (recorder_ds1.py, noise_training_ds1.py): the parts that decide what
their numbers mean. Training noise must never reuse the evaluation's noise samples, and V at detected
beats must be counted as bxb counts it."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
noise_training = pytest.importorskip("noise_training_ds1")

from ekg.data import CLASSES  # noqa: E402
from ekg.monitor import nst  # noqa: E402


@pytest.mark.parametrize("n", [650_000, 108_000, 300 * 360 + 1, 10])
def test_training_noise_stretches_and_nst_spans_tile_the_record(n):
    spans = nst.noisy_spans(n, 360)
    training = noise_training.complement(spans, n)
    covered = np.zeros(n, int)
    for a, b in spans + training:
        covered[a:b] += 1
    assert (covered == 1).all()  # every sample in exactly one: no evaluation noise sample reaches training
    assert all(b > a for a, b in training)


def test_v_at_detections_counts_as_bxb():
    k = {c: i for i, c in enumerate(CLASSES)}

    def onehot(names):
        p = np.full((len(names), len(CLASSES)), 0.01)
        p[np.arange(len(names)), [k[c] for c in names]] = 0.96
        return p

    # reference labels of the detections (Q where unmatched), and what the model calls them
    labels = np.array([k["V"], k["V"], k["V"], k["N"], k["S"], k["F"], k["Q"], k["Q"]])
    unmatched = np.array([False, False, False, False, False, False, True, True])
    called = ["V", "V", "N", "V", "N", "V", "V", "Q"]
    rows = [{"labels": labels, "unmatched": unmatched, "missed_v": 1}]
    out = noise_training.v_at_detections([onehot(called)], rows, {})
    # TP 2; FN: one V called N, one V the detector missed; FP: the N called V and the noise bump called V
    # (the F beat called V is no false positive under EC57)
    assert out["V Se"] == pytest.approx(100 * 2 / 4)
    assert out["V +P"] == pytest.approx(100 * 2 / 4)
    assert out["V calls on noise"] == 1
    assert out["noise called Q (%)"] == pytest.approx(50)
    assert out["real beats called Q"] == 0
