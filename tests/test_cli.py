"""The command line: classify writes WFDB annotations and CSV, monitor prints JSON lines, clear errors."""
import json
import subprocess
import sys
import tomllib

import numpy as np
import pandas as pd
import pytest
import torch
import wfdb

from ekg import cli
from ekg.blend import FeatureBlend
from ekg.classify import classify_record
from ekg.config import ROOT
from ekg.data import AAMI_MAP, CLASSES, find_data_dir
from ekg.models import SeedCNN
from ekg.monitor import Monitor
from ekg.signals import read_signal

SHARED = find_data_dir()


def write_record(folder, name, signal, fs, samples=None, symbols=None):
    """Write a one-channel WFDB record (and, given beats, its .atr); return its path without extension."""
    wfdb.wrsamp(name, fs=fs, units=["mV"], sig_name=["MLII"], p_signal=np.asarray(signal, float)[:, None],
                fmt=["16"], write_dir=str(folder))
    if samples is not None:
        wfdb.wrann(name, "atr", np.asarray(samples), symbol=list(symbols), write_dir=str(folder))
    return folder / name


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Three minutes of record 119 (V beats, bigeminy), and the same with NaN and flat stretches at 250 Hz."""
    from ekg.signals import resample

    folder = tmp_path_factory.mktemp("records")
    rec = wfdb.rdrecord(str(SHARED / "119"), channels=[0], sampto=360 * 180)
    ann = wfdb.rdann(str(SHARED / "119"), "atr", sampto=360 * 180)
    x = rec.p_signal[:, 0]
    clean = write_record(folder, "r119", x, 360, ann.sample, ann.symbol)
    y = resample(x, 360, 250).astype(float)
    y[250 * 20:250 * 30] = np.nan  # a lead off
    y[250 * 60:250 * 70] = y[250 * 60]  # a flat line
    damaged = write_record(folder, "damaged", y, 250, np.round(ann.sample * 250 / 360).astype(int), ann.symbol)
    return {"clean": clean, "damaged": damaged, "folder": folder}


def run(capsys, *argv):
    """Run the command line in-process; return (exit status, stdout, stderr)."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_every_class_symbol_reads_back_as_its_class():
    # the documented mapping: S is written as A (atrial premature beat), the commonest S symbol
    assert cli.AAMI_TO_SYMBOL == {"N": "N", "S": "A", "V": "V", "F": "F", "Q": "Q"}
    for cls, symbol in cli.AAMI_TO_SYMBOL.items():
        assert AAMI_MAP[symbol] == cls


@pytest.mark.parametrize("beats, blend", [("reference", "default"), ("detect", "default"), ("reference", "none")])
def test_classify_writes_what_classify_record_finds(model, records, tmp_path, capsys, beats, blend):
    # by default the recommended model with the recommended blend; --blend none: the model alone
    status, _, err = run(capsys, "classify", records["clean"], "--beats", beats, "--out", tmp_path,
                         *(["--blend", "none"] if blend == "none" else []))
    assert status == 0, err
    assert ("blended with the feature model" in err) == (blend == "default")
    expected = classify_record(records["clean"], model, beats=beats,
                               blend=FeatureBlend.load() if blend == "default" else None)
    found = expected[expected["aami_pred"].isin(CLASSES)]
    ann = wfdb.rdann(str(tmp_path / "r119"), "ekg")
    assert ann.fs == 360
    np.testing.assert_array_equal(ann.sample, found["sample"].to_numpy())
    assert ann.symbol == [cli.AAMI_TO_SYMBOL[c] for c in found["aami_pred"]]
    assert len(found) > 150 and {"N", "V"} <= set(found["aami_pred"])  # 3 minutes of 119: N and V beats
    table = pd.read_csv(tmp_path / "r119.ekg.csv")
    np.testing.assert_array_equal(table["sample"], expected["sample"])
    assert (table["aami_pred"] == expected["aami_pred"]).all()
    np.testing.assert_allclose(table[[f"p_{c}" for c in CLASSES]], expected[[f"p_{c}" for c in CLASSES]], rtol=1e-5, atol=1e-9)


def test_classify_bad_signal_still_writes_annotations_with_a_warning(model, records, tmp_path, capsys):
    status, _, err = run(capsys, "classify", records["damaged"], "--beats", "detect", "--out", tmp_path)
    assert status == 0
    assert "warning" in err and "10 s missing" in err and "10 s flat" in err
    ann = wfdb.rdann(str(tmp_path / "damaged"), "ekg")
    assert ann.fs == 250 and len(ann.sample) > 150
    assert not ((ann.sample > 250 * 21) & (ann.sample < 250 * 29)).any()  # no beat in the missing stretch


@pytest.mark.parametrize("signal", ["flat", "nan", "short"])
def test_classify_without_beats_writes_an_empty_annotation_file(records, tmp_path, capsys, signal):
    x = {"flat": np.zeros(360 * 20), "nan": np.r_[np.full(360 * 20, np.nan), 0.0],
         "short": np.zeros(100)}[signal]
    record = write_record(tmp_path, signal, x, 360)
    status, _, err = run(capsys, "classify", record, "--beats", "detect", "--out", tmp_path)
    assert status == 0 and "no beats found" in err
    ann = wfdb.rdann(str(record), "ekg")
    assert ann.symbol == ['"'] and ann.aux_note == ["no beats found"]  # a comment: bxb counts no beat
    assert len(pd.read_csv(tmp_path / f"{signal}.ekg.csv")) == 0


def test_classify_errors_name_the_problem(records, tmp_path, capsys):
    status, _, err = run(capsys, "classify", tmp_path / "nothere")
    assert status == 1 and "nothere.hea" in err
    no_atr = write_record(tmp_path, "noatr", wfdb.rdrecord(str(records["clean"])).p_signal[:3600, 0], 360)
    status, _, err = run(capsys, "classify", no_atr)
    assert status == 1 and "noatr.atr not found" in err and "--beats detect" in err
    assert run(capsys, "classify", no_atr, "--beats", "detect", "--out", tmp_path, "-q")[0] == 0
    status, _, err = run(capsys, "classify", records["clean"], "--channel", "V9")
    assert status == 1 and "no channel 'V9'" in err
    status, _, err = run(capsys, "classify", records["clean"], "--blend", tmp_path / "none.json.gz")
    assert status == 1 and "blend file" in err and "not found" in err
    (tmp_path / "bad.json").write_text("{}")
    status, _, err = run(capsys, "classify", records["clean"], "--blend", tmp_path / "bad.json")
    assert status == 1 and "not a blend file" in err
    # the recommended blend with another model: refused, it was chosen with the recommended one
    status, _, err = run(capsys, "classify", records["clean"], "--model", ROOT / "models" / "signal_cnn_seed.pt",
                         "--blend", ROOT / "models" / "recommended_blend.json.gz")
    assert status == 1 and "chosen with the CNN" in err


def bad_model_files(folder):
    (folder / "text.pt").write_text("not a model")
    torch.save({"weights": torch.zeros(3)}, folder / "no_meta.pt")
    torch.save({"state_dict": {}, "meta": {"arch": "TransformerXL"}}, folder / "unknown_arch.pt")
    # the seed CNN's weights, labelled as the image CNN
    torch.save({"state_dict": SeedCNN().state_dict(), "meta": {"arch": "ImageCNN"}}, folder / "wrong_weights.pt")


@pytest.mark.parametrize("name, message", [("missing.pt", "not found"), ("text.pt", "not a PyTorch model file"),
                                           ("no_meta.pt", "has no 'meta'"),
                                           ("unknown_arch.pt", "unknown architecture 'TransformerXL'"),
                                           ("wrong_weights.pt", "weights do not fit an ImageCNN")])
@pytest.mark.parametrize("command", ["classify", "monitor"])
def test_a_model_file_that_is_not_a_model_is_refused(records, tmp_path, capsys, command, name, message):
    bad_model_files(tmp_path)
    status, out, err = run(capsys, command, records["clean"], "--model", tmp_path / name, "--speed", "0") \
        if command == "monitor" else run(capsys, command, records["clean"], "--model", tmp_path / name)
    assert status == 1 and message in err and out == ""


def test_monitor_prints_the_monitors_events_as_json_lines(model, records, capsys):
    status, out, _ = run(capsys, "monitor", records["clean"], "--speed", "0", "--chunk", "1", "--seconds", "120")
    assert status == 0
    lines = [json.loads(line) for line in out.splitlines()]  # every line is one JSON object
    *events, summary = lines
    signal, fs, _ = read_signal(records["clean"])
    signal = signal[:int(120 * fs)]
    monitor, expected = Monitor(model, fs), []  # the model alone, as the bedside monitor ships
    for i in range(0, len(signal), int(fs)):
        expected += monitor.push(signal[i:i + int(fs)])
    assert [(e["type"], e["time"], e.get("class"), e.get("kind")) for e in events] == \
        [(e["type"], e["time"], e.get("class"), e.get("kind")) for e in expected]
    beats = [e for e in events if e["type"] == "beat"]
    assert summary["type"] == "summary" and summary["seconds"] == 120
    assert summary["beats"] == len(beats) > 120
    assert summary["classes"] == {c: sum(e["class"] == c for e in beats) for c in CLASSES}
    assert summary["alarms"] == pd.Series([e["kind"] for e in events if e["type"] == "alarm"]).value_counts().to_dict()
    assert summary["alarms"].get("bigeminy", 0) >= 1  # record 119 opens in ventricular bigeminy


def test_monitor_replays_at_the_requested_speed(records, capsys, monkeypatch):
    clock, slept = [0.0], []

    def sleep(seconds):  # a clock that moves only when the replay waits: the test takes no time
        slept.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(cli.time, "sleep", sleep)
    monkeypatch.setattr(cli.time, "monotonic", lambda: clock[0])
    status, out, _ = run(capsys, "monitor", records["clean"], "--seconds", "3", "--speed", "4", "-q")
    assert status == 0 and json.loads(out.splitlines()[-1])["seconds"] == 3
    # 12 chunks of 0.25 s, each pushed when its last sample is due at 4x: every 1/16 s, 3/4 s in all
    assert slept == pytest.approx([1 / 16] * 12)
    slept.clear()
    assert run(capsys, "monitor", records["clean"], "--seconds", "3", "--speed", "inf", "-q")[0] == 0
    assert slept == []


def test_monitor_on_less_than_a_second_gives_an_empty_summary(tmp_path, capsys):
    record = write_record(tmp_path, "blip", np.zeros(200), 360)
    status, out, _ = run(capsys, "monitor", record, "--speed", "0")
    assert status == 0
    summary = json.loads(out)
    assert summary["beats"] == 0 and summary["seconds"] == pytest.approx(200 / 360)


def test_monitor_missing_record(tmp_path, capsys):
    status, out, err = run(capsys, "monitor", tmp_path / "gone", "--speed", "0")
    assert status == 1 and "gone.hea" in err and out == ""


def test_console_script_and_module_entry_points():
    with open(ROOT / "pyproject.toml", "rb") as f:
        assert tomllib.load(f)["project"]["scripts"]["ekg"] == "ekg.cli:main"
    done = subprocess.run([sys.executable, "-m", "ekg", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and all(c in done.stdout for c in ("classify", "monitor", "export"))
    assert subprocess.run([sys.executable, "-m", "ekg"], capture_output=True, cwd=ROOT).returncode == 2


def test_monitor_takes_the_recommended_blend_when_asked(model, records, capsys):
    status, out, _ = run(capsys, "monitor", records["clean"], "--speed", "0", "--chunk", "1", "--seconds", "40",
                         "--blend", "recommended")
    assert status == 0
    events = [json.loads(line) for line in out.splitlines()][:-1]
    signal, fs, _ = read_signal(records["clean"])
    signal = signal[:int(40 * fs)]
    with_blend, alone = Monitor(model, fs, blend=FeatureBlend.load()), Monitor(model, fs)
    expected = [e for i in range(0, len(signal), int(fs)) for e in with_blend.push(signal[i:i + int(fs)])]
    plain = [e for i in range(0, len(signal), int(fs)) for e in alone.push(signal[i:i + int(fs)])]
    beats = [e for e in events if e["type"] == "beat"]
    np.testing.assert_allclose([list(e["probabilities"].values()) for e in beats],
                               [list(e["probabilities"].values()) for e in expected if e["type"] == "beat"], atol=1e-6)
    assert [e["probabilities"]["V"] for e in beats] != [e["probabilities"]["V"] for e in plain if e["type"] == "beat"]


def test_monitor_with_a_second_channel_runs_the_noise_gate(model, capsys):
    status, out, _ = run(capsys, "monitor", SHARED / "119", "--speed", "0", "--chunk", "1", "--seconds", "60",
                         "--second-channel", "1")
    assert status == 0
    *events, summary = [json.loads(line) for line in out.splitlines()]
    two = np.column_stack([read_signal(SHARED / "119", k)[0][:360 * 60] for k in (0, 1)])
    monitor, expected = Monitor(model, 360, leads=2), []
    for i in range(0, len(two), 360):
        expected += monitor.push(two[i:i + 360])
    assert [(e["type"], e["time"]) for e in events] == [(e["type"], e["time"]) for e in expected]
    assert summary["second_channel"] == read_signal(SHARED / "119", 1)[2]
    assert summary["noise_detections"] == sum(e["type"] == "noise" for e in events)
    assert summary["beats"] > 50
    status, _, err = run(capsys, "monitor", SHARED / "119", "--speed", "0", "--second-channel", "0")
    assert status == 1 and "other lead" in err
