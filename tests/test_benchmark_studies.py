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
    rows = [{"labels": labels, "unmatched": unmatched, "missed": np.array(["V", "N"])}]
    out = noise_training.v_at_detections([onehot(called)], rows, {})
    # TP 2; FN: one V called N, one V the detector missed; FP: the N called V and the noise bump called V
    # (the F beat called V is no false positive under EC57)
    assert out["V Se"] == pytest.approx(100 * 2 / 4)
    assert out["V +P"] == pytest.approx(100 * 2 / 4)
    assert out["V calls on noise"] == 1
    assert out["noise called Q (%)"] == pytest.approx(50)
    assert out["real beats called Q"] == 0


noise_gate = pytest.importorskip("noise_gate_ds1")


def test_gate_scores_count_what_the_gate_drops():
    p = np.array([0.99, 0.2, 0.96, 0.1, 0.97, 0.3])
    is_noise = np.array([True, True, False, False, False, False])
    is_v = np.array([False, False, True, True, False, False])
    row = noise_gate.scores(p, is_noise, is_v, thresholds=(0.95,)).loc[0.95]
    assert row["noise dropped (%)"] == pytest.approx(50)
    assert row["real dropped (%)"] == pytest.approx(50)  # 2 of 4 real beats
    assert row["V beats dropped (%)"] == pytest.approx(50)
    assert row["+P before"] == pytest.approx(100 * 4 / 6)
    assert row["+P after"] == pytest.approx(100 * 2 / 3)  # 2 real and 1 noise detection kept
    assert row["Se lost (points)"] == pytest.approx(50)


def test_gate_features_of_a_repeated_beat():
    from ekg.data import CONTEXT

    t = np.arange(sum(CONTEXT)) - CONTEXT[0]
    beat = np.exp(-0.5 * (t / 8.0) ** 2).astype(np.float32)  # the same QRS every time
    context = np.tile(beat, (40, 1))
    from ekg.features import RHYTHM_FEATURES

    rhythm = np.tile(np.arange(len(RHYTHM_FEATURES), dtype=np.float32) + 10, (40, 1))  # each column its own value
    f = noise_gate.detection_features(context, rhythm)
    assert f.shape == (40, len(noise_gate.FEATURES))
    column = {name: f[:, i] for i, name in enumerate(noise_gate.FEATURES)}
    assert np.allclose(column["likeness to the beat before"], 1, atol=1e-5)
    assert np.allclose(column["likeness to the template"], 1, atol=1e-5)
    assert np.allclose(column["distance from the template"], 0, atol=1e-5)
    for name in ("rr_prev / local RR", "rr_next / local RR", "amplitude / typical", "local RR sd / local RR"):
        assert (column[name] == RHYTHM_FEATURES.index(name) + 10).all(), name  # the rhythm input's own column
    noisy = context.copy()
    noisy[-2:] = np.random.default_rng(0).normal(0, 0.5, context.shape[1])  # the last two: the same bump of noise
    g = {name: noise_gate.detection_features(noisy, rhythm)[-1, i] for i, name in enumerate(noise_gate.FEATURES)}
    assert g["likeness to the beat before"] == pytest.approx(1, abs=1e-5)
    assert g["likeness to the template"] < 0.5
    assert g["distance from the template"] > 0.5
    assert g["QRS roughness"] > 2 * column["QRS roughness"][-1]
    # the shape measures do not depend on the signal's gain (a monitor's leads and gains differ)
    shape = [noise_gate.FEATURES.index(n) for n in ("likeness to the beat before", "likeness to the template",
                                                    "QRS roughness", "distance from the template")]
    assert np.allclose(noise_gate.detection_features(10 * noisy, rhythm)[:, shape],
                       noise_gate.detection_features(noisy, rhythm)[:, shape], rtol=1e-4, atol=1e-5)


def test_the_vt_tuning_gives_each_fold_a_blend_fitted_without_its_patients():
    tune_vt = pytest.importorskip("tune_vt_ds1")
    from ekg.blend import FeatureBlend
    from ekg.cv import cv_records
    from ekg.models import fingerprint

    assert all(f[3] is None for f in tune_vt.fold_models([106]))  # the CNN alone, as the monitor ships
    (model, held, _, blend), = tune_vt.fold_models([106], with_blend=True)
    assert held == [106]
    trained = set(blend.spec["fitted_on"])
    every = {int(r) for r in model.meta["held_out"]}
    assert 106 in every and not trained & every  # none of the fold's held-out patients in its GBM
    assert trained == set(cv_records()) - every  # the fold's training patients, all of them (fast mode: a few)
    shipped = FeatureBlend.load()
    assert blend.weights == shipped.weights and blend.meta["thresholds"] == shipped.meta["thresholds"]
    assert blend.meta["cnn"] == fingerprint(model)  # goes with the fold's CNN, not the recommended one


def test_agreement_takes_the_smaller_p_v_at_the_same_beats():
    tune_noise = pytest.importorskip("tune_noise_ds1")
    import pandas as pd

    cnn = {101: pd.DataFrame({"t": [1.0, 2.0, 3.0], "cls": ["N", "V", "V"], "rr_prev": [np.nan, 1.0, 1.0],
                              "p_V": [0.1, 0.9, 0.4], "similarity": [1.0, 0.9, 0.8],
                              "normal_similarity": [np.nan, 0.2, 0.3]})}
    blend = {101: cnn[101].assign(cls=["V", "V", "N"], p_V=[0.8, 0.6, 0.7])}
    joined = tune_noise.agreement(cnn, blend)[101]
    np.testing.assert_allclose(joined["p_V"], [0.1, 0.6, 0.4])
    assert list(joined["cls"]) == ["N", "V", "V"]  # the CNN's classes
    with pytest.raises(ValueError, match="different beats"):
        tune_noise.agreement(cnn, {101: blend[101].iloc[:2]})
    with pytest.raises(ValueError, match="different beats"):
        tune_noise.agreement(cnn, {101: blend[101].assign(t=[1.0, 2.5, 3.0])})


def test_missed_vt_episodes_get_the_reason_that_held_them_back():
    tune_vt = pytest.importorskip("tune_vt_ds1")
    import pandas as pd
    from ekg.monitor import ALARM_THRESHOLDS

    rule = {k: ALARM_THRESHOLDS[k] for k in tune_vt.VT_KEYS}

    def patient(run_cls, run_rr, p_v, similarity, normal_similarity=0.2):
        # 20 s of normal beats at 75 bpm, then a 4-beat run, then normal beats again
        cls = ["N"] * 25 + list(run_cls) + ["N"] * 10
        rr = [0.8] * 25 + [run_rr] * len(run_cls) + [0.8] * 10
        t = np.cumsum(rr)
        p = [0.01] * 25 + [p_v] * len(run_cls) + [0.01] * 10
        sim = [0.95] * 25 + [similarity] * len(run_cls) + [0.95] * 10
        normal = [np.nan] * 25 + [normal_similarity if c == "V" else np.nan for c in run_cls] + [np.nan] * 10
        beats = pd.DataFrame({"t": t, "cls": cls, "rr_prev": np.r_[np.nan, np.diff(t)], "p_V": p, "similarity": sim,
                              "normal_similarity": normal})
        return beats, [(float(t[25]) - 0.01, float(t[28]) + 0.01)]

    cases = {"signal-quality guard (the rules alone alarm it)": patient("VVVV", 0.4, 0.99, 0.9),
             "normal-likeness gate": patient("VVVV", 0.4, 0.99, 0.9, 0.97),  # normal beats read as V
             "similarity gate": patient("VVVV", 0.4, 0.99, 0.1),
             "p(V) gate": patient("VVVV", 0.4, 0.5, 0.9),
             "beats not called V": patient("VVNV", 0.4, 0.99, 0.9),
             "rate": patient("VVVN", 0.7, 0.99, 0.9)}  # 3 V beats: enough, but at 86 bpm
    for expected, (beats, episodes) in cases.items():
        (start, end, inside, reason), = tune_vt.missed_episodes(beats, [], episodes, rule)
        assert reason == expected, (expected, reason)
        assert list(inside["cls"]) == list(beats["cls"].iloc[25:29])
    beats, episodes = cases["signal-quality guard (the rules alone alarm it)"]
    assert tune_vt.missed_episodes(beats, [(episodes[0][0] + 1.0, True)], episodes, rule) == []  # alarmed: not missed


def test_seed_spread_averages_the_same_beats_and_finds_the_vt_runs():
    seed_spread = pytest.importorskip("seed_spread_ds1")
    import pandas as pd
    import wfdb
    from ekg.cv import PROB_COLUMNS
    from ekg.data import FS, find_data_dir
    from ekg.monitor.alarms import vt_episodes

    def frame(probs, samples=(10, 20, 30)):
        out = pd.DataFrame({"record": 205, "sample": list(samples), "aami_true": ["N", "V", "V"]})
        out[PROB_COLUMNS] = np.asarray(probs, float)
        out["aami_pred"] = "N"
        return out

    one = frame([[0.6, 0.0, 0.4, 0, 0], [0.5, 0.1, 0.4, 0, 0], [0.9, 0, 0.1, 0, 0]])
    two = frame([[0.6, 0.0, 0.4, 0, 0], [0.1, 0.1, 0.8, 0, 0], [0.5, 0, 0.5, 0, 0]])
    mean = seed_spread.averaged([one, two])
    np.testing.assert_allclose(mean[PROB_COLUMNS].to_numpy(), (one[PROB_COLUMNS].to_numpy() + two[PROB_COLUMNS].to_numpy()) / 2)
    assert list(mean["aami_pred"]) == ["N", "V", "N"]  # argmax of the mean (row 2: seed one says N)
    with pytest.raises(ValueError, match="different beats"):
        seed_spread.averaged([one, frame(two[PROB_COLUMNS].to_numpy(), samples=(10, 21, 30))])
    # V Se inside runs counts only the V beats inside them (row 3, called N, is outside), under the thresholds
    runs = np.array([True, True, False])
    assert seed_spread.v_se_in_runs(mean, {"S": 0.5, "V": 0.5}, runs) == 100.0
    assert seed_spread.v_se_in_runs(mean, {"S": 0.5, "V": 0.7}, runs) == 0.0  # p(V) 0.6 < 0.7

    # record 205 holds DS1 VT runs: each beat inside one of its "(VT" episodes, and only those
    ann = wfdb.rdann(str(find_data_dir() / "205"), "atr")
    beats = pd.DataFrame({"record": 205, "sample": ann.sample})
    inside = seed_spread.in_vt_runs(beats)
    episodes = vt_episodes(ann.symbol, ann.sample, ann.aux_note, FS, np.inf)
    assert episodes and inside.any() and not inside.all()
    t = ann.sample / FS
    expected = np.zeros(len(t), bool)
    for start, end in episodes:
        expected |= (t >= start) & (t < end)
    assert (inside == expected).all()


vt_runs = pytest.importorskip("vt_runs_ds1")


def test_v_runs_are_counted_within_a_record():
    import pandas as pd

    # record 1: a run of three, then a lone V that record 2's first two Vs must not join
    beats = pd.DataFrame({"record": [1] * 6 + [2] * 5, "aami": list("NVVVNV") + list("VVNVV")})
    assert vt_runs.in_v_runs(beats).astype(int).tolist() == [0, 1, 1, 1, 0, 0] + [0, 0, 0, 0, 0]
    long_run = pd.DataFrame({"record": [3] * 5, "aami": list("VVVVV")})
    assert vt_runs.in_v_runs(long_run).all() and not vt_runs.in_v_runs(long_run, min_beats=6).any()
    across = pd.DataFrame({"record": [1, 1, 2], "aami": list("VVV")})
    assert not vt_runs.in_v_runs(across).any()  # two records' Vs are no run


def test_normal_likeness_compares_with_the_beats_called_n_before():
    t = np.linspace(-1, 1, 256)
    normal, wide = np.exp(-(t / 0.02) ** 2), -np.exp(-(t / 0.08) ** 2) + 0.5 * np.exp(-((t - 0.1) / 0.03) ** 2)
    windows = np.array([wide, normal, normal, wide, normal, wide])
    called_n = np.array([False, True, True, False, True, False])
    like = vt_runs.normal_likeness(windows, called_n)
    assert np.isnan(like[:2]).all()  # no beat called N before them
    assert like[2] == pytest.approx(1.0) and like[4] == pytest.approx(1.0)
    assert like[3] < 0.85 and like[5] < 0.85  # the wide beats, against the normal ones only


consistency = pytest.importorskip("consistency_ds1")


def test_the_consistency_rule_asks_for_half_the_changes_and_no_f1_lost():
    import pandas as pd

    means = pd.DataFrame({"S F1": [60.0, 59.1, 61.0, 58.9, 62.0], "V F1": [80.0, 80.0, 79.5, 81.0, 80.0],
                          consistency.CHANGES: [1.2, 0.6, 0.5, 0.4, 0.61]},
                         index=["current", "half", "fewer", "loses S", "not half"])
    checks, chosen = consistency.verdicts(means)
    assert checks["half"] == {"a": True, "b": True} and checks["fewer"] == {"a": True, "b": True}
    assert checks["loses S"] == {"a": True, "b": False} and checks["not half"] == {"a": False, "b": True}
    assert chosen == "fewer"  # of those that pass, the fewer changes
    assert consistency.verdicts(means.loc[["current", "not half"]])[1] is None


recorder = pytest.importorskip("recorder_ds1")


def test_the_recorder_rule_asks_for_half_the_changes_and_no_f1_lost():
    import pandas as pd

    verdicts = pd.DataFrame({"beats decided differently (%)": [1.2, 0.6, 0.61, 0.3],
                             "native S F1": [60.0, 59.0, 65.0, 58.9], "native V F1": [80.0, 79.0, 80.0, 80.0]},
                            index=["current", "half", "not half", "loses S"])
    assert recorder.adopted(verdicts) == [False, True, False, False]


jitter_average = pytest.importorskip("jitter_average_ds1")


def test_jittered_r_peaks_stay_in_their_rows_within_the_shift_and_the_record():
    samples = np.array([0, 1, 300, 650, 998, 999])
    draws = jitter_average.jittered(samples, 50, seed=7, n_samples=1000)
    assert len(draws) == 50
    moved = np.stack(draws) - samples
    assert np.abs(moved).max() <= jitter_average.MAX_JITTER and (np.stack(draws) >= 0).all() and (np.stack(draws) <= 999).all()
    assert set(np.unique(moved[:, 2])) == set(range(-2, 3))  # every shift drawn for a beat inside the record
    assert (np.stack(draws)[:, 2:4] == np.stack(jitter_average.jittered(samples, 50, 7, 1000))[:, 2:4]).all()  # seeded


detected_beats = pytest.importorskip("detected_beats_ds1")


def test_matched_detections_move_back_to_their_reference_positions_and_keep_their_rows():
    reference = np.array([100, 400, 700, 1000])
    detected = np.array([103, 250, 398, 1002])  # 250 is an extra detection; 700 was missed
    ref_i, det_i = np.array([0, 1, 3]), np.array([0, 2, 3])
    mixed, rows = detected_beats.with_reference_positions(detected, reference, ref_i, det_i)
    assert mixed.tolist() == [100, 250, 400, 1000]  # the extra detection stays, the missed beat stays missing
    assert mixed[rows].tolist() == reference[ref_i].tolist()
    # a detection moved back past a neighbour is put in time order, and its row follows it
    mixed, rows = detected_beats.with_reference_positions(np.array([10, 12]), np.array([14, 12]),
                                                          np.array([0]), np.array([0]))
    assert mixed.tolist() == [12, 14] and mixed[rows].tolist() == [14]
    mixed, rows = detected_beats.with_reference_positions(np.array([10, 20, 30]), np.array([35]), np.array([0]),
                                                          np.array([0]))
    assert mixed.tolist() == [20, 30, 35] and mixed[rows].tolist() == [35]  # past two neighbours


def test_two_lead_study_scores_only_the_beats_inside_its_spans():
    import two_leads_ds1 as two

    beat = lambda t, cls: {"type": "beat", "time": t, "class": cls}
    events = [beat(1.0, "N"), beat(2.0, "V"), beat(2.5, "V"), {"type": "noise", "time": 3.0}, beat(9.0, "N")]
    ref = (np.array([360, 720, 1440, 3240]), np.array([False, True, False, False]))
    whole = two.detection_scores(events, ref)
    assert whole == {"ref": 4, "det": 4, "matched": 3, "ref V": 1, "called V": 2, "V both": 1}
    part = two.detection_scores(events, ref, [(0, 1000)])  # the beats at 4 s and 9 s left out, as a record's end is
    assert part == {"ref": 2, "det": 3, "matched": 2, "ref V": 1, "called V": 2, "V both": 1}
    s = two.summary([whole, part])
    assert s["QRS Se"] == 100 * 5 / 6 and s["V +P"] == 50
