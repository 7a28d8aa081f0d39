"""The networks, saving and loading them, and the committed models."""
import numpy as np
import pytest
import torch

from ekg.batches import BeatSet, predict
from ekg.config import ROOT
from ekg.data import CLASSES, DS2, load_beats
from ekg.features import RHYTHM_FEATURES
from ekg.models import ARCHITECTURES, SeedCNN, SignalCNN, load_model, save_model
from ekg.cv import apply_thresholds
from ekg.models import decide

SIGNAL_SPEC = dict(kind="signal")


@pytest.mark.parametrize("arch, inputs", [
    ("SeedCNN", [torch.zeros(3, 1, 120, 120)]),
    ("ImageCNN", [torch.zeros(3, 1, 48, 72)]),
    ("ImageCNN", [torch.zeros(3, 1, 128, 192)]),
    ("SignalCNN", [torch.zeros(3, 2, 256), torch.zeros(3, 1, 180), torch.zeros(3, len(RHYTHM_FEATURES))]),
])
def test_model_output_shapes(arch, inputs):
    assert ARCHITECTURES[arch]()(*inputs).shape == (3, 5)


def test_seed_cnn_matches_the_seed():
    model = SeedCNN()
    assert model.fc.in_features == 3600
    assert [m.out_channels for m in (model.conv1, model.conv2)] == [4, 4]
    assert model.dropout.p == 0.5


@pytest.fixture(scope="module")
def val_set():
    beats = load_beats([201])
    return BeatSet(beats.head(600), [201])


def test_saved_model_round_trip(val_set, tmp_path):
    model = SignalCNN(width=8).eval()
    meta = {"arch": "SignalCNN", "arch_kwargs": {"width": 8}, "classes": CLASSES, "fs": 360,
            "input": SIGNAL_SPEC}
    save_model(tmp_path / "m.pt", model, meta)
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.meta == meta and not loaded.training
    np.testing.assert_array_equal(predict(loaded, val_set, SIGNAL_SPEC), predict(model, val_set, SIGNAL_SPEC))


def test_a_saved_model_is_reused_only_with_every_setting_the_same(tmp_path, monkeypatch):
    from ekg import config
    from ekg.models import saved_model

    model = SignalCNN(width=8).eval()
    meta = {"arch": "SignalCNN", "arch_kwargs": {"width": 8}, "classes": CLASSES, "fs": 360, "input": SIGNAL_SPEC,
            "cfg": {"epochs": 6, "seed": 0}, "train_records": [101, 106], "thresholds": {"S": 0.76, "V": 0.66}}
    save_model(tmp_path / "m.pt", model, meta)
    same = {k: meta[k] for k in ("arch", "cfg", "train_records", "thresholds")}
    reused = saved_model(tmp_path / "m.pt", **same)
    assert reused is not None and reused.meta == meta
    for key, other in [("cfg", {"epochs": 6, "seed": 1}), ("train_records", [101]), ("thresholds", {"S": 0.8, "V": 0.66}),
                       ("fast_mode", False)]:  # another value, or a key the saved model lacks
        assert saved_model(tmp_path / "m.pt", **{**same, key: other}) is None, key
    assert saved_model(tmp_path / "missing.pt", **same) is None
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    assert saved_model(tmp_path / "broken.pt", **same) is None  # not a model: trained again, as notebook 03 did before
    monkeypatch.setattr(config, "RETRAIN", True)  # EKG_RETRAIN=1
    assert saved_model(tmp_path / "m.pt", **same) is None


class Payload:
    """Any Python object: torch.save pickles it, which weights_only loading must refuse."""


def test_checkpoint_with_a_pickled_object_is_refused(tmp_path):
    torch.save({"state_dict": SeedCNN().state_dict(), "meta": {"arch": "SeedCNN"}, "x": Payload()},
               tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="pickled"):
        load_model(tmp_path / "evil.pt")


def test_committed_models_load_with_their_metadata():
    for path in sorted((ROOT / "models").glob("*.pt")):
        model = load_model(path)
        assert model.meta["classes"] == CLASSES and model.meta["fs"] == 360
        if model.meta["split"].startswith("inter-patient"):
            assert set(model.meta["val_records"] + model.meta["train_records"]).isdisjoint(DS2)
        assert not model.meta.get("fast_mode")


def test_the_cap_limits_the_next_interval_in_seconds_and_in_the_ratios():
    c = {name: i for i, name in enumerate(RHYTHM_FEATURES)}
    rhythm = torch.ones(2, len(RHYTHM_FEATURES))
    rhythm[:, c["local RR (s)"]] = 0.8
    rhythm[:, c["long RR (s)"]] = 1.0
    rhythm[:, c["rr_next (s)"]] = torch.tensor([1.2, 3.0])
    seen = SignalCNN(rr_next_cap_s=1.5).capped(rhythm)
    assert seen[:, c["rr_next (s)"]].tolist() == pytest.approx([1.2, 1.5])
    assert seen[:, c["rr_next / local RR"]].tolist() == pytest.approx([1.2 / 0.8, 1.5 / 0.8])
    assert seen[:, c["rr_next / long RR"]].tolist() == pytest.approx([1.2, 1.5])
    others = [i for i in range(len(RHYTHM_FEATURES)) if i not in (c["rr_next (s)"], c["rr_next / local RR"],
                                                                  c["rr_next / long RR"])]
    torch.testing.assert_close(seen[:, others], rhythm[:, others])
    torch.testing.assert_close(SignalCNN().capped(rhythm), rhythm)  # no cap: as computed


@pytest.mark.parametrize("thresholds", [None, {}, {"S": 0.3}, {"S": 0.2, "V": 0.6}, {"F": 0.9, "S": 0.05}])
def test_decide_is_the_thresholds_rule_of_cv(thresholds):
    probs = np.random.default_rng(1).dirichlet(np.ones(5) * 0.5, 2000)
    np.testing.assert_array_equal(decide(probs, {"thresholds": thresholds}), apply_thresholds(probs, thresholds))


def test_decide_lowers_the_bar_for_a_thresholded_class():
    probs = np.array([[0.6, 0.3, 0.1, 0, 0], [0.9, 0.05, 0.05, 0, 0]])
    assert decide(probs, {}).tolist() == [0, 0]
    assert decide(probs, {"thresholds": {"S": 0.25}}).tolist() == [1, 0]
    with pytest.raises(ValueError, match="shape"):
        decide(probs[:, :4], {})
    with pytest.raises(ValueError, match="unknown"):
        decide(probs, {"thresholds": {"X": 0.5}})
    assert decide(np.zeros((0, 5)), {"thresholds": {"S": 0.3}}).shape == (0,)


def test_a_model_trained_on_other_rhythm_inputs_is_refused(tmp_path):
    meta = {"arch": "SignalCNN", "arch_kwargs": {}, "classes": CLASSES, "fs": 360,
            "input": {"kind": "signal", "rhythm": ["rr_prev / local RR", "rr_next / local RR", "local RR (s)",
                                                   "amplitude / typical"]}}
    save_model(tmp_path / "old.pt", SignalCNN(), meta)
    with pytest.raises(ValueError, match="retrain"):
        load_model(tmp_path / "old.pt")


def test_predict_runs_image_cnns_channels_last_and_gives_the_weights_back():
    # predict switches an image CNN to channels-last on the CPU (faster there); the probabilities must be
    # a plain forward pass's and the model must come back in its own memory layout
    from ekg.images import beat_images
    from ekg.models import ImageCNN

    torch.manual_seed(0)
    spec = dict(kind="image", window=[96, 96], ylim=[-1.756, 1.079], normalise=[0.5, 0.5], size=[48, 72])
    context = np.random.default_rng(0).normal(0, 0.3, (40, 192)).astype(np.float32)
    data = BeatSet.from_arrays(context, {}, np.zeros(40, np.int64))
    model = ImageCNN().eval()
    with torch.no_grad():
        model(torch.zeros(2, 1, 48, 72))
        plain = torch.softmax(model(*data.batch(spec, np.arange(40))), 1).numpy()
    probs = predict(model, data, spec, torch.device("cpu"), batch_size=16)
    np.testing.assert_allclose(probs, plain, atol=1e-5)
    assert all(p.is_contiguous() for p in model.parameters())
    assert not model.features[1][0].weight.is_contiguous(memory_format=torch.channels_last)  # 16 in-channels: unambiguous
