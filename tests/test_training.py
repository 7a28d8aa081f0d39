"""Batches for training, class weights, and the training loop's checkpoints."""
import numpy as np
import pytest
import torch

import ekg.training
from ekg.batches import BeatSet
from ekg.config import seed_everything
from ekg.data import CLASSES, load_beats
from ekg.features import RHYTHM_FEATURES
from ekg.images import RENDER_YLIM
from ekg.models import SignalCNN, load_checkpoint
from ekg.training import class_weights, consistency_loss, fit

IMAGE_SPEC = dict(kind="image", window=[96, 96], ylim=list(RENDER_YLIM), normalise=[0.5, 0.5], size=[48, 72])
SIGNAL_SPEC = dict(kind="signal")
CFG = dict(epochs=2, batch_size=64, optimizer="adamw", lr=3e-3, weight_decay=1e-2, weighted=True,
           augment=True, epoch_size=256, seed=0)


@pytest.fixture(scope="module")
def sets():
    beats = load_beats([208, 201])
    frame = beats.assign(split=np.where(beats["record"] == 208, "train", "val"))
    frame = frame.groupby("record").head(600)  # a few hundred beats each keeps this quick
    return {part: BeatSet(frame[frame["split"] == part], [201, 208]) for part in ["train", "val"]}


def test_batches_have_the_shapes_the_models_take(sets):
    idx = np.arange(5)
    rng = np.random.default_rng(0)
    beat, context, rhythm = sets["train"].batch(SIGNAL_SPEC, idx, augment=True, rng=rng)
    assert beat.shape == (5, 2, 256) and context.shape == (5, 1, 180) and rhythm.shape == (5, len(RHYTHM_FEATURES))
    (image,) = sets["train"].batch(IMAGE_SPEC, idx)
    assert image.shape == (5, 1, 48, 72) and -1.0 <= image.min() and image.max() <= 1.0
    (augmented,) = sets["train"].batch(IMAGE_SPEC, idx, augment=True, rng=rng)
    assert augmented.shape == image.shape and not torch.equal(augmented, image)


def test_class_weights_are_capped_square_roots():
    w = class_weights([10000, 100, 1000, 400, 1])
    assert w[0] == 1 and w[1] == pytest.approx(10) and w[4] == 20  # capped


def test_checkpoint_resume_repeats_an_uninterrupted_run(sets, tmp_path, monkeypatch):
    def run(ckpt_dir):
        seed_everything(0)
        model = SignalCNN(width=8)
        fit("m", model, SIGNAL_SPEC, sets["train"], sets["val"], CFG, torch.device("cpu"), ckpt_dir)
        return load_checkpoint(ckpt_dir / "m.ckpt")

    straight = run(tmp_path / "a")

    real_predict, calls = ekg.training.predict, []

    def interrupted(*args, **kwargs):  # the run dies during epoch 2, before its checkpoint
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(ekg.training, "predict", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b")
    half = load_checkpoint(tmp_path / "b" / "m.ckpt")
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


def record_draws(data, monkeypatch) -> list:
    """The beat indices of each batch fit asks data for, appended as it asks (data.batch spied on)."""
    drawn, real_batch = [], data.batch

    def spy(spec, idx, *args, **kwargs):
        drawn.append(np.asarray(idx))
        return real_batch(spec, idx, *args, **kwargs)

    monkeypatch.setattr(data, "batch", spy)
    return drawn


def test_square_root_sampling_draws_classes_by_the_root_of_their_count(sets, monkeypatch):
    data = sets["train"]
    drawn = record_draws(data, monkeypatch)
    cfg = {**CFG, "epochs": 1, "epoch_size": None, "batch_size": 1000, "sampling": "sqrt", "weighted": False,
           "augment": False}
    fit("m", SignalCNN(width=4), SIGNAL_SPEC, data, None, cfg, torch.device("cpu"))
    counts = data.class_counts()
    share = np.bincount(data.labels[drawn[0]], minlength=5) / len(drawn[0])
    expected = np.sqrt(counts) / np.sqrt(counts).sum()
    np.testing.assert_allclose(share, expected, atol=0.05)  # one epoch: every beat of the set, drawn


def test_draw_boost_multiplies_a_beats_chance_to_be_drawn(sets, monkeypatch):
    data = sets["train"]
    drawn = record_draws(data, monkeypatch)
    cfg = {**CFG, "epochs": 1, "epoch_size": 20_000, "batch_size": 20_000, "sampling": "sqrt", "weighted": False,
           "augment": False}
    # the first 50 V beats boosted 5 times: against the other V beats, each is drawn 5 times as often
    v_rows = np.flatnonzero(data.labels == CLASSES.index("V"))
    boosted = v_rows[:50]
    boost = np.ones(len(data))
    boost[boosted] = 5.0
    fit("m", SignalCNN(width=4), SIGNAL_SPEC, data, None, cfg, torch.device("cpu"), draw_boost=boost)
    per_beat = np.bincount(drawn[0], minlength=len(data))
    ratio = per_beat[boosted].mean() / per_beat[v_rows[50:]].mean()
    assert 4.0 < ratio < 6.0
    # the other classes keep their square-root shares relative to each other
    counts = data.class_counts()
    n_share = np.mean(data.labels[drawn[0]] == 0)
    expected = np.sqrt(counts[0]) / (np.sqrt(counts).sum() + 4 * 50 * counts[2] ** -0.5)
    assert n_share == pytest.approx(expected, abs=0.02)
    for bad in (np.ones(len(data) - 1), np.r_[0.0, np.ones(len(data) - 1)], np.r_[np.nan, np.ones(len(data) - 1)]):
        with pytest.raises(ValueError, match="draw_boost"):
            fit("m", SignalCNN(width=4), SIGNAL_SPEC, data, None, cfg, torch.device("cpu"), draw_boost=bad)
    with pytest.raises(ValueError, match="sampling='sqrt'"):
        fit("m", SignalCNN(width=4), SIGNAL_SPEC, data, None, {**cfg, "sampling": None}, torch.device("cpu"),
            draw_boost=boost)


def test_without_a_validation_set_the_last_epoch_is_kept(sets):
    seed_everything(0)
    model, history = fit("m", SignalCNN(width=4), SIGNAL_SPEC, sets["train"], None, {**CFG, "sampling": "sqrt"},
                         torch.device("cpu"))
    assert list(history["epoch"]) == [1, 2] and "val_macro_f1" not in history
    with pytest.raises(ValueError, match="sampling"):
        fit("m", SignalCNN(width=4), SIGNAL_SPEC, sets["train"], None, {**CFG, "sampling": "cube"},
            torch.device("cpu"))


def test_recorder_augmentation_draws_each_beat_from_a_recorder_version(sets):
    data = sets["train"]
    versions = data.recorder_inputs()
    assert set(versions) == {"native", "via128", "via250"}
    idx = np.arange(50)
    rhythm = data.batch(SIGNAL_SPEC, idx, augment="recorders", rng=np.random.default_rng(0))[2].numpy()
    # the rhythm columns are not augmented further: each row is one of the versions' rows
    matches = [np.isclose(rhythm, v["rhythm"][idx]).all(1) for v in versions.values()]
    assert np.logical_or.reduce(matches).all()
    assert all(m.any() for m in matches[1:])  # more than the native version is drawn
    part = data.subset(np.arange(len(data)) < 10)
    np.testing.assert_array_equal(part.recorder_inputs()["via128"]["beat"], versions["via128"]["beat"][:10])


def test_a_set_from_arrays_draws_from_the_recorder_versions_it_is_given(sets):
    data = sets["train"]
    versions = {name: {k: v.copy() for k, v in inputs.items()} for name, inputs in data.recorder_inputs().items()}
    versions["via128"]["rhythm"][:] = 7.0  # a version that cannot be mistaken for another
    made = BeatSet.from_arrays(data.context, versions["native"], data.labels, recorders=versions)
    rhythm = made.batch(SIGNAL_SPEC, np.arange(50), augment="recorders", rng=np.random.default_rng(0))[2].numpy()
    assert (rhythm == 7.0).all(1).any()  # the given via128 version is drawn
    assert (made.subset(np.arange(len(made)) < 10).recorder_inputs()["via128"]["rhythm"] == 7.0).all()
    assert set(BeatSet.from_arrays(data.context, data.inputs, data.labels).recorder_inputs()) == {"native"}
    with pytest.raises(ValueError, match="native"):
        BeatSet.from_arrays(data.context, data.inputs, data.labels, recorders={"via128": versions["via128"]})
    with pytest.raises(ValueError, match="one row per beat"):
        BeatSet.from_arrays(data.context, data.inputs, data.labels[:5], recorders=versions)


# -- augmented signal batches built on the training device (the GPU; the CPU stands in here) --------

def on_device(data):
    data.on_device = "cpu"  # the torch path signal_device() picks when CUDA is present
    return data


def test_batches_built_on_the_device_augment_as_the_numpy_batches_do(sets):
    native = sets["train"].inputs
    idx = np.arange(len(sets["train"]))
    numpy_beat, numpy_context, _ = sets["train"].batch(SIGNAL_SPEC, idx, augment=True, rng=np.random.default_rng(0))
    data = on_device(sets["train"].subset(np.ones(len(sets["train"]), bool)))
    beat, context, rhythm = data.batch(SIGNAL_SPEC, idx, augment=True, rng=np.random.default_rng(0))
    assert beat.dtype == context.dtype == rhythm.dtype == torch.float32
    assert beat.shape == numpy_beat.shape and context.shape == numpy_context.shape
    torch.testing.assert_close(rhythm, torch.from_numpy(native["rhythm"]))  # rhythm is never augmented
    # the template channel gets the noise and wander only, the beat channel a gain as well: the same
    # spread of changes on both paths (seeds differ, so the draws do; the strength must not)
    for path, (b, c) in {"numpy": (numpy_beat, numpy_context), "device": (beat, context)}.items():
        added = (b[:, 1] - torch.from_numpy(native["beat"][:, 1])).numpy()
        ramp = (c[:, 0] - torch.from_numpy(native["context"][:, 0])).numpy()
        gain = (b[:, 0] - added) / np.where(np.abs(native["beat"][:, 0]) > 0.2, native["beat"][:, 0], np.nan)
        r = np.linspace(-1, 1, added.shape[1])
        stats = (added.std(), np.abs(added.mean(1)).mean(), np.abs(added @ r / (r @ r)).mean(),  # noise; wander
                 np.abs(ramp[:, -1]).mean(), np.nanmedian(np.abs(np.nanmedian(gain, 1) - 1)))
        if path == "numpy":
            expected = stats
        else:
            np.testing.assert_allclose(stats, expected, rtol=0.25)
    assert 0.02 < expected[0] < 0.1 and 0.01 < expected[1] < 0.05 and 0.02 < expected[2] < 0.06 \
        and 0.04 < expected[3] < 0.12 and 0.02 < expected[4] < 0.08


def test_device_batches_repeat_with_the_seed_and_draw_recorder_versions(sets):
    data = on_device(sets["train"].subset(np.ones(len(sets["train"]), bool)))
    idx = np.arange(50)
    first = data.batch(SIGNAL_SPEC, idx, augment="recorders", rng=np.random.default_rng(3))
    again = data.batch(SIGNAL_SPEC, idx, augment="recorders", rng=np.random.default_rng(3))
    other = data.batch(SIGNAL_SPEC, idx, augment="recorders", rng=np.random.default_rng(4))
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(first[0], other[0])
    matches = [np.isclose(first[2].numpy(), v["rhythm"][idx]).all(1) for v in data.recorder_inputs().values()]
    assert np.logical_or.reduce(matches).all() and all(m.any() for m in matches)
    blanked = data.batch(SIGNAL_SPEC, idx, augment=True, rng=np.random.default_rng(0), morph_dropout=1.0)
    assert not blanked[0].any() and not blanked[1].any() and blanked[2].abs().sum() > 0


def test_the_training_loop_runs_on_device_batches(sets):
    seed_everything(0)
    data = on_device(sets["train"].subset(np.ones(len(sets["train"]), bool)))
    model, history = fit("device_batches", SignalCNN(), SIGNAL_SPEC, data, None,
                         {**CFG, "augment": "recorders", "morph_dropout": 0.1}, torch.device("cpu"))
    assert len(history) == CFG["epochs"] and np.isfinite(history["train_loss"]).all()


def test_numpy_batches_can_be_asked_for_anywhere(sets):
    data = sets["train"].subset(np.ones(len(sets["train"]), bool))
    data.on_device = "numpy"  # bench_models' "before" on a GPU machine
    assert data.signal_device() is None
    idx = np.arange(20)
    for a, b in zip(data.batch(SIGNAL_SPEC, idx, augment="recorders", rng=np.random.default_rng(1)),
                    sets["train"].batch(SIGNAL_SPEC, idx, augment="recorders", rng=np.random.default_rng(1))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_consistency_loss_is_the_jensen_shannon_divergence_of_the_two_views():
    from scipy.spatial.distance import jensenshannon

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 5, generator=gen) * 3, torch.randn(40, 5, generator=gen) * 3
    expected = np.mean(jensenshannon(torch.softmax(a, 1).numpy(), torch.softmax(b, 1).numpy(), axis=1) ** 2)
    assert float(consistency_loss(a, b)) == pytest.approx(expected, rel=1e-5)
    assert float(consistency_loss(b, a)) == pytest.approx(expected, rel=1e-5)  # neither view is the reference
    assert float(consistency_loss(a, a + 7.0)) == pytest.approx(0.0, abs=1e-6)  # the same distribution


def test_a_consistency_term_trains_on_two_views_of_each_batch(sets, monkeypatch):
    data = sets["train"]
    cfg = {**CFG, "epochs": 1, "epoch_size": 128, "sampling": "sqrt", "weighted": False}
    drawn = record_draws(data, monkeypatch)
    fit("m", SignalCNN(width=4), SIGNAL_SPEC, data, None, {**cfg, "consistency": 1.0}, torch.device("cpu"))
    assert len(drawn) == 2 * 2 and all((drawn[i] == drawn[i + 1]).all() for i in (0, 2))  # two steps, each twice
    # a weight of 0 is the training without it, draw for draw and weight for weight
    plain, off = [], []
    for out, extra in [(plain, {}), (off, {"consistency": 0.0})]:
        seed_everything(0)
        model, _ = fit("m", SignalCNN(width=4), SIGNAL_SPEC, data, None, {**cfg, **extra}, torch.device("cpu"))
        out.append(model.state_dict())
    assert all(torch.equal(plain[0][k], off[0][k]) for k in plain[0])
    with pytest.raises(ValueError, match="consistency needs augment"):
        fit("m", SignalCNN(width=4), SIGNAL_SPEC, data, None, {**cfg, "augment": False, "consistency": 1.0},
            torch.device("cpu"))


def test_the_consistency_term_enters_the_loss_with_its_weight(sets, monkeypatch):
    # a stand-in divergence of 10 for every step: the epoch's loss is the cross-entropy plus 10 x weight
    calls = []

    def stand_in(a, b):
        calls.append((a.shape, b.shape))
        return torch.tensor(10.0)

    monkeypatch.setattr(ekg.training, "consistency_loss", stand_in)
    cfg = {**CFG, "epochs": 1, "epoch_size": 128, "sampling": "sqrt", "weighted": False}
    losses = {}
    for weight in (0.5, 2.0):
        seed_everything(0)
        _, history = fit("m", SignalCNN(width=4), SIGNAL_SPEC, sets["train"], None, {**cfg, "consistency": weight},
                         torch.device("cpu"))
        losses[weight] = float(history["train_loss"].iat[0])
    assert len(calls) == 4 and all(a == b for a, b in calls)
    assert 5.0 < losses[0.5] < 5.0 + 3 and 20.0 < losses[2.0] < 20.0 + 3  # cross-entropy of a few nats at most
