"""The streaming monitor: QRS detection on a stream, beat events, alarms, and bad input."""
import numpy as np
import pytest

import utils

SHARED = utils.find_data_dir()


@pytest.fixture(scope="module")
def model():
    return utils.load_model(utils.model_path("recommended"))


@pytest.fixture(scope="module")
def rec100():
    signal, fs, _ = utils.read_signal(SHARED / "100")
    return signal[: 360 * 180]


def stream(detector_or_monitor, signal, chunk):
    feed = getattr(detector_or_monitor, "feed", None) or detector_or_monitor.push
    out = []
    for i in range(0, len(signal), chunk):
        out += feed(signal[i:i + chunk])
    return out


@pytest.mark.parametrize("record", [100, 119, 203])
def test_detection_does_not_depend_on_chunk_size(record):
    signal = utils.read_signal(SHARED / str(record))[0][: 360 * 120]
    results = [stream(utils.StreamingQRS(), signal, chunk) for chunk in (1, 37, 360, 100_000)]
    for other in results[1:]:
        assert other == results[0]


def test_detecting_many_streams_at_once_equals_one_at_a_time():
    signals = [utils.read_signal(SHARED / str(r))[0][: 360 * 60] for r in (100, 203, 208)]
    alone = [stream(utils.StreamingQRS(), x, 90) for x in signals]
    together, detectors = [[] for _ in signals], [utils.StreamingQRS() for _ in signals]
    for i in range(0, 360 * 60, 90):
        for k, peaks in enumerate(utils.StreamingQRS.feed_many(detectors, np.stack([x[i:i + 90] for x in signals]))):
            together[k] += peaks
    assert together == alone


def test_detector_settings_are_checked_by_name(rec100):
    with pytest.raises(ValueError, match="HOLD"):
        utils.StreamingQRS(360, HOLD=0.3)
    # a setting changes this detector only
    assert utils.StreamingQRS(360, HOLD_S=0.3).hold == 108 and utils.StreamingQRS(360).hold == 90


def test_detection_finds_the_reference_beats(rec100):
    peaks = np.array(stream(utils.StreamingQRS(), rec100, 360))
    ref = utils.load_beats([100])["sample"].to_numpy()
    ref = ref[ref < len(rec100) - 360]  # the excerpt's last second is not decided yet
    peaks = peaks[peaks < len(rec100) - 360]
    r, d = utils.match_beats(ref, peaks, 360)
    assert len(r) / len(ref) > 0.995 and len(d) / len(peaks) > 0.99
    assert np.abs(ref[r] - peaks[d]).max() <= 5  # R peaks land where the annotators put them


def test_detect_beats_offline_equals_the_stream(rec100):
    # detect_beats feeds 10-s chunks; the stream result does not depend on chunk size
    assert list(utils.detect_beats(rec100, 360)) == stream(utils.StreamingQRS(), rec100, 360)


def test_monitor_beats_match_offline_classification(model, rec100):
    events = stream(utils.Monitor(model, 360), rec100, 360)
    beats = [e for e in events if e["type"] == "beat"]
    peaks = np.array([round(e["time"] * 360) for e in beats])
    offline = utils.classify_beats(model, rec100, peaks)
    same = np.mean([b["class"] == utils.CLASSES[i] for b, i in zip(beats, offline.argmax(1))])
    assert same > 0.99
    delays = np.array([b["delay_s"] for b in beats])
    assert delays.max() <= utils.Monitor.MAX_WAIT_S + 1.0 + 1e-9
    assert not [e for e in events if e["type"] == "alarm" and e["kind"] in ("pause", "asystole")]


@pytest.mark.parametrize("fs", [128, 250, 500])
def test_monitor_at_other_sampling_rates_and_integer_input(model, rec100, fs):
    x = utils.resample(rec100, 360, fs)
    adc = np.round(x * 200).astype(np.int16)  # integer ADC units, 200 per mV
    events = stream(utils.Monitor(model, fs), adc / 200.0, int(fs))
    events_int = stream(utils.Monitor(model, fs), adc, int(fs))
    n_ref = int((utils.load_beats([100])["sample"] < len(rec100) - 2 * 360).sum())
    beats = [e for e in events if e["type"] == "beat"]
    assert abs(len(beats) - n_ref) <= 3  # the last 2 s wait for their next beat
    assert len([e for e in events_int if e["type"] == "beat"]) > 0


def test_zero_length_chunks_and_bad_rate(model, rec100):
    monitor = utils.Monitor(model, 360)
    assert monitor.push([]) == [] and monitor.push(np.zeros(0)) == []
    with pytest.raises(ValueError, match="sampling rate"):
        utils.Monitor(model, 0)


def quality_run(model, signal, fs=360):
    events = stream(utils.Monitor(model, fs), signal, 90)
    kinds = [e["kind"] for e in events if e["type"] == "signal_quality"]
    alarms = [e for e in events if e["type"] == "alarm"]
    return kinds, alarms


@pytest.mark.parametrize("damage, expected", [
    ("flat", "flat"), ("nan", "missing"), ("clip", "saturated"), ("noise", "noisy")])
def test_bad_signal_gives_a_quality_event_and_no_false_alarm(model, rec100, damage, expected):
    x = rec100[: 360 * 90].copy()
    a, b = 360 * 30, 360 * 60
    if damage == "flat":
        x[a:b] = 0.0
    elif damage == "nan":
        x[a:b] = np.nan
    elif damage == "clip":
        x[a:b] = np.clip(x[a:b] * 8, -1.0, 1.0)
    else:
        x[a:b] += np.random.default_rng(0).normal(0, 0.5, b - a).astype(np.float32)
    kinds, alarms = quality_run(model, x)
    assert expected in kinds and kinds[-1] == "ok"
    assert not alarms, f"false alarms on a {damage} stretch: {alarms}"


def test_a_whole_stream_of_nothing_never_alarms(model):
    for x in (np.zeros(360 * 60), np.full(360 * 60, np.nan)):
        kinds, alarms = quality_run(model, x)
        assert kinds and not alarms


def test_memory_stays_bounded(model, rec100):
    monitor = utils.Monitor(model, 360)
    for _ in range(4):  # 12 minutes of signal
        stream(monitor, rec100, 720)
    assert len(monitor.buffer) <= sum(utils.CONTEXT) + 3 * 360
    assert len(monitor.detector.raw) <= 3 * 360 + 720
    assert len(monitor.history) <= utils.TEMPLATE_BEATS
    assert len(monitor.recent) < 400 and len(monitor.pending) < 5


def beats_to_alarms(classes, rr):
    monitor = utils.Monitor.__new__(utils.Monitor)
    monitor.th, monitor.recent, monitor.active, monitor.announced = dict(utils.ALARM_THRESHOLDS), [], set(), {}
    monitor.quality, monitor.bad_until = "ok", -1
    events, t = [], 0.0
    for c in classes:
        t += rr
        events += monitor._rhythm_alarms(t, c, rr)
    return [e["kind"] for e in events if e["announced"]]


def test_rhythm_alarms():
    assert "ventricular tachycardia" in beats_to_alarms("NNNNVVVV", 0.4)  # 150 bpm
    assert "ventricular tachycardia" not in beats_to_alarms("NNNNVVVV", 0.8)  # 75 bpm: slow run
    assert beats_to_alarms("NNNNVVNNNN", 0.8) == ["couplet"]
    assert "bigeminy" in beats_to_alarms("NNVNVNVNV", 0.8)
    assert "trigeminy" in beats_to_alarms("NNVNNVNNVNNV", 0.8)
    assert "tachycardia" in beats_to_alarms("N" * 10, 0.4)
    assert "bradycardia" in beats_to_alarms("N" * 10, 1.5)
    assert beats_to_alarms("N" * 30, 0.8) == []
    assert "frequent ectopy" in beats_to_alarms("NS" * 12, 0.8)


def test_a_flapping_rhythm_alarms_once_per_hold_off():
    # a couplet every 10 beats at 75 bpm: one couplet every 8 s
    flapping = "NNNNNNNNVV" * 30  # 4 minutes
    assert beats_to_alarms(flapping, 0.8).count("couplet") == 4  # at 0, 64, 128, 192 s (60-s hold-off)
    # VT is critical: its hold-off is 10 s, so runs 16 s apart each alarm
    runs = ("N" * 16 + "VVVV") * 6  # at 0.4 s per beat, a run every 8 s
    assert beats_to_alarms(runs, 0.4).count("ventricular tachycardia") == 6 // 2


def test_pause_alarm_fires_on_a_real_gap(model, rec100):
    x = rec100[: 360 * 60].copy()
    # remove five seconds of beats but keep a live, low-amplitude signal (not a flat line)
    x[360 * 30:360 * 35] = 0.08 * np.sin(np.arange(360 * 5) / 360 * 2 * np.pi * 0.5) + x[360 * 30]
    events = stream(utils.Monitor(model, 360), x, 90)
    kinds = [e["kind"] for e in events if e["type"] == "alarm"]
    assert "pause" in kinds or "asystole" in kinds


def test_a_capped_model_bounds_the_delay(rec100):
    capped = utils.load_model(utils.model_path("recommended"))
    capped.rr_next_cap_s = 0.7  # the model sees the next RR only up to 0.7 s
    beats = [e for e in stream(utils.Monitor(capped, 360), rec100, 90) if e["type"] == "beat"]
    delays = np.array([b["delay_s"] for b in beats if b["time"] > 3])  # after the detector's 2-s start-up
    assert delays.max() <= max(1.0, 0.7 + utils.Monitor.NEXT_BEAT_DECIDED_S) + 0.25 + 1e-9
    # the same labels as classifying the detected beats offline, where every next beat is known
    peaks = np.array([round(b["time"] * 360) for b in beats])
    offline = utils.classify_beats(capped, rec100, peaks).argmax(1)
    assert np.mean([b["class"] == utils.CLASSES[i] for b, i in zip(beats, offline)]) > 0.99


def test_a_ward_gives_each_patient_the_events_of_its_own_monitor(model, rec100):
    x = rec100[: 360 * 60]
    y = utils.resample(x, 360, 250)
    alone = [stream(utils.Monitor(model, 360), x, 360), stream(utils.Monitor(model, 250), y, 250)]
    ward = utils.Ward(model)
    ward.add("a", 360)
    ward.add("b", 250)
    together = {"a": [], "b": []}
    for second in range(60):
        out = ward.push({"a": x[second * 360:(second + 1) * 360], "b": y[second * 250:(second + 1) * 250]})
        for patient, events in out.items():
            together[patient] += events
    with pytest.raises(KeyError, match="ward.add"):
        ward.push({"c": x[:360]})
    for mine, theirs in zip(alone, [together["a"], together["b"]]):
        assert [e["type"] for e in mine] == [e["type"] for e in theirs]
        for e, f in zip(mine, theirs):
            if e["type"] == "beat":
                assert e["class"] == f["class"] and e["time"] == f["time"]
                np.testing.assert_allclose(list(e["probabilities"].values()), list(f["probabilities"].values()),
                                           atol=1e-5)
