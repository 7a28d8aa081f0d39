"""The two-lead noise gate (monitor.gate) and the two-lead Monitor: features, history, safety valves."""
import numpy as np
import pytest
import wfdb

from ekg import features
from ekg.classify import match_beats
from ekg.data import find_data_dir, load_beats
from ekg.monitor import Monitor, Ward, gate_fit, nst, replay
from ekg.monitor.gate import (GATE_FEATURES, GATE_MAX_GAP_S, GateHistory, NoiseGate, _with_past_many, context_windows,
                              default_gate, gate_features, record_features)
from ekg.monitor.qrs import detect_beats


@pytest.fixture(scope="module")
def noisy119():
    """Record 119's first 6 minutes, both leads, with em noise at 6 dB from minute 5 (nst's pairing
    swapped, as the gate was fitted: lead 0 gets channel 1)."""
    path = find_data_dir() / "119"
    x = wfdb.rdrecord(str(path)).p_signal[:360 * 360]
    ann = wfdb.rdann(str(path), "atr")
    normal = nst.normal_beats(ann.symbol, ann.sample)
    normal = normal[normal < len(x)]
    leads = [nst.nst_record(x[:, k], normal, 360, 6, nst.read_noise("em", channel)[0])[0]
             for k, channel in ((0, 1), (1, 0))]
    return np.column_stack(leads).astype(np.float32)


def reference_119(n):
    beats = load_beats([119])["sample"].to_numpy()
    return beats[beats < n]


def beat_samples(events):
    return np.array([int(round(e["time"] * 360)) for e in events if e["type"] == "beat"], dtype=int)


def test_the_history_gives_each_detection_its_predecessor_and_the_median_of_the_32_before():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(50, 5)).astype(np.float32)
    previous, median, (kept,) = _with_past_many([None], rows, [len(rows)])
    assert np.array_equal(previous[0], rows[0]) and np.array_equal(previous[1:], rows[:-1])
    # the classifier's own causal template, written independently
    assert np.allclose(median, features.causal_median(rows, 32))
    # in two pieces, the second carried on from the first's kept rows: the same numbers
    p1, m1, (k1,) = _with_past_many([None], rows[:20], [20])
    p2, m2, _ = _with_past_many([k1], rows[20:], [30])
    assert np.allclose(np.r_[m1, m2], median) and np.array_equal(np.r_[p1, p2], previous)
    assert np.array_equal(kept, rows[-32:])


def test_features_of_a_record_in_pieces_are_those_of_the_whole(noisy119):
    x0, x1 = noisy119[:360 * 120, 0], noisy119[:360 * 120, 1]
    p0, p1 = detect_beats(x0, 360), detect_beats(x1, 360)
    whole = record_features(x0, x1, p0, p1)
    assert whole.shape == (len(p0), len(GATE_FEATURES))
    history, pieces = GateHistory(), []
    for part in np.array_split(np.arange(len(p0)), 7):
        peaks = p0[part]
        pieces.append(gate_features([history], [(peaks, context_windows(x0, peaks), context_windows(x1, peaks), p1)]))
    assert np.allclose(np.concatenate(pieces), whole, equal_nan=True)


def test_the_lead_1_distance_is_capped_and_exact_near_a_lead_1_detection():
    x = np.zeros(360 * 10, np.float32)
    p0 = np.array([1000, 2000, 3000])
    row = record_features(x, x, p0, np.array([1009, 2500]))
    assert row[:, GATE_FEATURES.index("lead 1: distance to its nearest detection (s)")].tolist() == \
        pytest.approx([9 / 360, 0.3, 0.3])


def test_a_gate_reads_its_features_by_name_and_refuses_ones_it_does_not_compute(noisy119):
    spec = gate_fit.trees.read_spec(gate_fit.MODEL_PATH)
    with pytest.raises(ValueError, match="fitted on features"):
        NoiseGate({**spec, "features": GATE_FEATURES[:-1] + ["heart rate"]})
    x0, x1 = noisy119[:360 * 60, 0], noisy119[:360 * 60, 1]
    rows = record_features(x0, x1, detect_beats(x0, 360), detect_beats(x1, 360))
    # a gate fitted on some of the features, in another order: it reads its own columns from a full row
    fitted = [GATE_FEATURES[k] for k in (12, 0, 9, 4)]
    clf = gate_fit._classifier().set_params(max_iter=5).fit(rows[:, [12, 0, 9, 4]], np.arange(len(rows)) % 2)
    gate = NoiseGate(gate_fit.export(clf, 0.5, fitted))
    assert gate.threshold == 0.5
    np.testing.assert_allclose(gate.probability(rows), clf.predict_proba(rows[:, [12, 0, 9, 4]])[:, 1], atol=1e-9)


def test_a_monitor_is_given_one_or_two_leads_and_chunks_of_that_shape(model):
    with pytest.raises(ValueError, match="1 or 2 leads"):
        Monitor(model, 360, leads=3)
    with pytest.raises(ValueError, match="leads=2"):
        Monitor(model, 360, gate=default_gate())
    with pytest.raises(ValueError, match=r"shape \(samples, 2\)"):
        Monitor(model, 360, leads=2).push(np.zeros(360, np.float32))
    with pytest.raises(ValueError, match="leads=2"):
        Monitor(model, 360).push(np.zeros((360, 2), np.float32))


def test_the_gate_drops_noise_detections_and_keeps_the_beats(model, noisy119):
    events = replay(model, {"one": (noisy119[:, 0], 360.0), "two": (noisy119, 360.0)})
    ref = reference_119(len(noisy119))
    found = {}
    for name, ev in events.items():
        beats = beat_samples(ev)
        ri, di = match_beats(ref, beats, 360)
        found[name] = (len(ri), len(beats) - len(di), sum(e["type"] == "noise" for e in ev))
    (hit1, false1, noise1), (hit2, false2, noise2) = found["one"], found["two"]
    assert noise1 == 0 and noise2 > 0
    assert false2 < false1 / 2 and hit2 >= hit1 - 2
    noise = [e for e in events["two"] if e["type"] == "noise"]
    assert all(e["p_noise"] > default_gate().threshold and e["delay_s"] >= 1.0 for e in noise)


def test_a_flat_second_lead_switches_the_gate_off(model, noisy119):
    off = noisy119.copy()
    off[:, 1] = 0.0  # the second lead fell off
    events = replay(model, {"one": (noisy119[:, 0], 360.0), "lead 1 off": (off, 360.0)})
    assert not [e for e in events["lead 1 off"] if e["type"] == "noise"]
    # the same beats, but for the stream's last: the gate holds each detection 1 s before it is classified
    end = len(off) - 2 * 360
    same = [beat_samples(events[name]) for name in ("lead 1 off", "one")]
    assert np.array_equal(*[b[b < end] for b in same]) and len(same[0]) > 400


def test_the_gate_never_leaves_a_gap_it_could_fill(model, noisy119):
    """A gate that would drop every detection still lets through the first one after GATE_MAX_GAP_S,
    so it cannot make a pause or an asystole alarm."""
    spec = gate_fit.trees.read_spec(gate_fit.MODEL_PATH)
    monitor = Monitor(model, 360, leads=2, gate=NoiseGate(spec, threshold=-1.0))
    events = []
    for i in range(0, 360 * 120, 360):
        events += monitor.push(noisy119[i:i + 360])
    beats = beat_samples(events) / 360
    detections = detect_beats(noisy119[:360 * 120, 0], 360) / 360
    assert len(beats) > 10 and sum(e["type"] == "noise" for e in events) > len(detections) / 3
    assert np.diff(beats).max() <= GATE_MAX_GAP_S + np.diff(detections).max()
    assert not [e for e in events if e["type"] == "alarm" and e["kind"] in ("pause", "asystole")]


def test_a_ward_gives_two_lead_streams_the_events_of_lone_monitors(model, noisy119):
    parts = {"a": noisy119[360 * 280:360 * 340], "b": noisy119[360 * 300:360 * 360][::-1].copy()}
    alone = {}
    for name, part in parts.items():
        lone = Monitor(model, 360, leads=2)
        alone[name] = [e for i in range(0, len(part), 90) for e in lone.push(part[i:i + 90])]
    ward = Ward(model)
    for name in ("a", "b"):
        ward.add(name, 360, leads=2)
    ward.add("one lead", 360)
    together = {"a": [], "b": []}
    for i in range(0, len(parts["a"]), 90):
        out = ward.push({"a": parts["a"][i:i + 90], "b": parts["b"][i:i + 90], "one lead": parts["a"][i:i + 90, 0]})
        for name in together:
            together[name] += out[name]

    def strip(events):
        return [(e["type"], round(e["time"], 6), e.get("class"), e.get("kind")) for e in events]

    for name in parts:
        assert strip(alone[name]) == strip(together[name])
        assert any(e["type"] == "noise" for e in alone[name])


def test_a_forked_two_lead_monitor_goes_on_alike(model, noisy119):
    monitor = Monitor(model, 360, leads=2)
    for i in range(0, 360 * 290, 3600):
        monitor.push(noisy119[i:i + 3600])
    fork = monitor.fork()
    assert fork.gate is monitor.gate
    rest = noisy119[360 * 290:360 * 320]
    a = [e for i in range(0, len(rest), 360) for e in monitor.push(rest[i:i + 360])]
    b = [e for i in range(0, len(rest), 360) for e in fork.push(rest[i:i + 360])]
    assert [(e["type"], e["time"]) for e in a] == [(e["type"], e["time"]) for e in b]


def test_two_lead_stress_records_scale_each_leads_noise_to_its_own_qrs(tmp_path):
    noise0, fs = nst.read_noise("em", 0)
    noise1, _ = nst.read_noise("em", 1)
    signals, spans = nst.stress_records([100], [6], noise0, fs, minutes=8, with_clean=True, noise1=noise1)
    clean, noisy = signals[(100, None)][0], signals[(100, 6)][0]
    assert clean.shape == noisy.shape == (360 * 480, 2)
    ann = wfdb.rdann(str(find_data_dir() / "100"), "atr")
    normal = nst.normal_beats(ann.symbol, ann.sample)
    for lead, noise in ((0, noise0), (1, noise1)):
        added = noisy[:, lead].astype(np.float64) - clean[:, lead]
        a, b = spans[100][0]
        gain = nst.noise_gain(6, nst.qrs_amplitude(clean[:, lead], normal[normal < len(clean)], 360), nst.noise_rms(noise, 360))
        assert np.allclose(added[a + 1:b] - added[a + 1], gain * (noise[a + 1:b] - noise[a + 1]), atol=1e-4)


def test_the_threshold_rule_takes_the_lowest_within_both_clean_limits():
    table = gate_fit.scores(np.array([0.1, 0.6, 0.85, 0.92, 0.99]), np.array([False, False, True, False, True]),
                            np.array([False, True, False, False, False]), thresholds=(0.5, 0.8, 0.9, 0.95))
    assert table.loc[0.5, "real dropped (%)"] == pytest.approx(200 / 3)
    assert table.loc[0.95, "noise dropped (%)"] == 50
    assert gate_fit.choose(table.assign(**{"V beats dropped (%)": [1.0, 0.05, 0.0, 0.0],
                                           "real dropped (%)": [0.01, 0.01, 0.0, 0.0]})) == 0.8
    with pytest.raises(ValueError, match="no threshold"):
        gate_fit.choose(table.assign(**{"real dropped (%)": 1.0}))


def test_two_lead_recordings_share_a_beginning_until_either_lead_parts():
    from ekg.monitor.replays import shared_prefixes

    rng = np.random.default_rng(1)
    a = rng.normal(size=(360 * 10, 2)).astype(np.float32)
    b = a.copy()
    b[int(360 * 4.5):, 1] += 1.0  # the second lead parts halfway through the fifth second
    one_lead = a[:, 0].copy()
    shared = shared_prefixes({"a": (a, 360.0), "b": (b, 360.0), "lead 0 alone": (one_lead, 360.0)}, 1.0)
    assert shared == {"b": ("a", 4)}  # a one-lead stream never forks from a two-lead one
