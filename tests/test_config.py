"""Run settings: fast mode, where outputs go, the Kaggle input, seeds."""
import numpy as np
import pytest
import torch

from ekg import config


def test_tests_run_in_fast_mode_and_write_outside_the_repository():
    assert config.FAST
    assert config.OUTPUT_ROOT != config.ROOT  # the committed plots, splits and models stay as they are
    assert config.PLOTS_DIR == config.OUTPUT_ROOT / "plots"
    assert config.SPLITS_DIR == config.OUTPUT_ROOT / "data" / "splits"


def test_kaggle_input_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EKG_KAGGLE_INPUT", str(tmp_path))
    assert config.kaggle_input() == tmp_path
    monkeypatch.delenv("EKG_KAGGLE_INPUT")
    assert str(config.kaggle_input()) == "/kaggle/input"


def test_seed_everything_repeats_numpy_and_torch():
    config.seed_everything(7)
    a = np.random.rand(3), torch.rand(3)
    config.seed_everything(7)
    b = np.random.rand(3), torch.rand(3)
    np.testing.assert_array_equal(a[0], b[0])
    assert torch.equal(a[1], b[1])


@pytest.mark.parametrize("value, off", [("1", True), ("true", True), ("", False), ("0", False)])
def test_progress_bars_go_off_when_tqdm_disable_is_set(monkeypatch, value, off):
    # make report sets TQDM_DISABLE; tqdm's notebook bar, which tqdm.auto picks in Jupyter, ignores it
    class Bar:  # stands in for the bar tqdm.auto would pick, keeping what it was asked for
        def __init__(self, iterable=None, **kwargs):
            self.kw = kwargs

    monkeypatch.setenv("TQDM_DISABLE", value)
    monkeypatch.setattr("tqdm.auto.tqdm", Bar)
    bar = config.progress_bar(range(3), desc="folds", disable=False)
    assert bar.kw["disable"] is off and bar.kw["desc"] == "folds"


@pytest.mark.parametrize("value, workers", [("", 1), ("3", 3), ("1", 1)])
def test_workers_follow_the_environment_and_default_to_one_in_fast_mode(monkeypatch, value, workers):
    monkeypatch.setenv("EKG_WORKERS", value)
    assert config._workers() == workers  # the tests run in fast mode: one process unless told


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_a_bad_worker_count_is_refused_with_its_name(monkeypatch, value):
    monkeypatch.setenv("EKG_WORKERS", value)
    with pytest.raises(ValueError, match="EKG_WORKERS"):
        config._workers()
