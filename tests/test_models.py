"""Model inputs, architectures, the training loop's checkpoints and saved models."""
import numpy as np
import pandas as pd
import pytest
import torch

import ekg.training
import utils

IMAGE_SPEC = dict(kind="image", window=[96, 96], ylim=list(utils.RENDER_YLIM), normalise=[0.5, 0.5], size=[48, 72])
SIGNAL_SPEC = dict(kind="signal")
CFG = dict(epochs=2, batch_size=64, optimizer="adamw", lr=3e-3, weight_decay=1e-2, weighted=True,
           augment=True, epoch_size=256, seed=0)


@pytest.fixture(scope="module")
def sets():
    beats = utils.load_beats([208, 201])
    frame = beats.assign(split=np.where(beats["record"] == 208, "train", "val"))
    frame = frame.groupby("record").head(600)  # a few hundred beats each keeps this quick
    return {part: utils.BeatSet(frame[frame["split"] == part], [201, 208]) for part in ["train", "val"]}


@pytest.mark.parametrize("arch, inputs", [
    ("SeedCNN", [torch.zeros(3, 1, 120, 120)]),
    ("ImageCNN", [torch.zeros(3, 1, 48, 72)]),
    ("ImageCNN", [torch.zeros(3, 1, 128, 192)]),
    ("SignalCNN", [torch.zeros(3, 2, 256), torch.zeros(3, 1, 180), torch.zeros(3, 4)]),
])
def test_model_output_shapes(arch, inputs):
    assert utils.ARCHITECTURES[arch]()(*inputs).shape == (3, 5)


def test_seed_cnn_matches_the_seed():
    model = utils.SeedCNN()
    assert model.fc.in_features == 3600
    assert [m.out_channels for m in (model.conv1, model.conv2)] == [4, 4]
    assert model.dropout.p == 0.5


def test_batches_have_the_shapes_the_models_take(sets):
    idx = np.arange(5)
    rng = np.random.default_rng(0)
    beat, context, rhythm = sets["train"].batch(SIGNAL_SPEC, idx, augment=True, rng=rng)
    assert beat.shape == (5, 2, 256) and context.shape == (5, 1, 180) and rhythm.shape == (5, 4)
    (image,) = sets["train"].batch(IMAGE_SPEC, idx)
    assert image.shape == (5, 1, 48, 72) and -1.0 <= image.min() and image.max() <= 1.0
    (augmented,) = sets["train"].batch(IMAGE_SPEC, idx, augment=True, rng=rng)
    assert augmented.shape == image.shape and not torch.equal(augmented, image)


def test_causal_median_looks_only_at_earlier_rows():
    x = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    med = utils.causal_median(x, 10)
    np.testing.assert_allclose(med[50], np.median(x[40:50], axis=0), rtol=1e-6)
    np.testing.assert_allclose(med[0], x[0])
    np.testing.assert_allclose(med[3], np.median(np.concatenate([np.repeat(x[:1], 7, 0), x[:3]]), axis=0))


def test_patient_inputs_use_no_future_beat():
    beats = utils.load_beats([119])
    context = utils.load_windows([119], *utils.CONTEXT)
    args = [beats[c].to_numpy() for c in ("rr_prev", "rr_next", "rr_local")]
    base = utils.patient_inputs(context, *args)
    i = 400
    changed_context = context.copy()
    changed_context[i + 1:] *= 5  # every later beat changes
    rr_prev, rr_next, rr_local = (a.copy() for a in args)
    rr_prev[i + 1:] *= 2
    rr_local[i + 1:] *= 2
    rr_next[i + 1:] *= 2  # rr_next[i] (the next R peak) is the only look-ahead allowed
    changed = utils.patient_inputs(changed_context, rr_prev, rr_next, rr_local)
    for key in ("beat", "context", "rhythm"):
        np.testing.assert_array_equal(changed[key][:i + 1], base[key][:i + 1])
    # and the local RR in the beat table itself is causal
    assert np.allclose(beats["rr_local"].iloc[40], beats["rr_prev"].iloc[8:40].mean())


def test_patient_scaling_keeps_a_beats_own_amplitude():
    beats = utils.load_beats([100])
    context = utils.load_windows([100], *utils.CONTEXT)
    args = [beats[c].to_numpy() for c in ("rr_prev", "rr_next", "rr_local")]
    base = utils.patient_inputs(context, *args)
    louder = context.copy()
    louder[500] *= 2  # one beat twice as large as the patient's others
    changed = utils.patient_inputs(louder, *args)
    # per-beat z-scoring would erase this; scaling by the patient's typical beat keeps it
    assert changed["rhythm"][500, 3] == pytest.approx(2 * base["rhythm"][500, 3], rel=1e-4)
    np.testing.assert_allclose(changed["beat"][500, 0], 2 * base["beat"][500, 0], rtol=1e-4, atol=1e-5)


def test_class_weights_are_capped_square_roots():
    w = utils.class_weights([10000, 100, 1000, 400, 1])
    assert w[0] == 1 and w[1] == pytest.approx(10) and w[4] == 20  # capped


def test_checkpoint_resume_repeats_an_uninterrupted_run(sets, tmp_path, monkeypatch):
    def run(ckpt_dir):
        utils.seed_everything(0)
        model = utils.SignalCNN(width=8)
        utils.fit("m", model, SIGNAL_SPEC, sets["train"], sets["val"], CFG, torch.device("cpu"), ckpt_dir)
        return utils.load_checkpoint(ckpt_dir / "m.ckpt")

    straight = run(tmp_path / "a")

    real_predict, calls = utils.predict, []

    def interrupted(*args, **kwargs):  # the run dies during epoch 2, before its checkpoint
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(ekg.training, "predict", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b")
    half = utils.load_checkpoint(tmp_path / "b" / "m.ckpt")
    assert half["epoch"] == 0 and len(half["history"]) == 1
    monkeypatch.setattr(ekg.training, "predict", real_predict)
    resumed = run(tmp_path / "b")

    assert resumed["epoch"] == straight["epoch"] == 1
    for key, value in straight["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=0, atol=0)
    for key, value in straight["optimizer"]["state"].items():
        for name, tensor in value.items():
            torch.testing.assert_close(resumed["optimizer"]["state"][key][name], tensor, rtol=0, atol=0)
    assert resumed["scheduler"] == straight["scheduler"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]


def test_saved_model_round_trip(sets, tmp_path):
    model = utils.SignalCNN(width=8).eval()
    meta = {"arch": "SignalCNN", "arch_kwargs": {"width": 8}, "classes": utils.CLASSES, "fs": 360,
            "input": SIGNAL_SPEC}
    utils.save_model(tmp_path / "m.pt", model, meta)
    loaded = utils.load_model(tmp_path / "m.pt")
    assert loaded.meta == meta and not loaded.training
    np.testing.assert_array_equal(utils.predict(loaded, sets["val"], SIGNAL_SPEC),
                                  utils.predict(model, sets["val"], SIGNAL_SPEC))


class Payload:
    """Any Python object: torch.save pickles it, which weights_only loading must refuse."""


def test_checkpoint_with_a_pickled_object_is_refused(tmp_path):
    torch.save({"state_dict": utils.SeedCNN().state_dict(), "meta": {"arch": "SeedCNN"}, "x": Payload()},
               tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="pickled"):
        utils.load_model(tmp_path / "evil.pt")


def test_committed_models_load_with_their_metadata():
    for path in sorted((utils.ROOT / "models").glob("*.pt")):
        model = utils.load_model(path)
        assert model.meta["classes"] == utils.CLASSES and model.meta["fs"] == 360
        if model.meta["split"].startswith("inter-patient"):
            assert set(model.meta["val_records"] + model.meta["train_records"]).isdisjoint(utils.DS2)
        assert not model.meta.get("fast_mode")
