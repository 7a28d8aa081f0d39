"""The signal model's inputs: each beat compared with the same patient's recent past, never the future."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from ekg.data import CONTEXT, LOCAL_RR_BEATS, find_data_dir, load_beats, load_windows
from ekg.features import (BEAT_WINDOW, CONTEXT_STEP, QRS_HALF, RHYTHM_FEATURES, TEMPLATE_BEATS, beat_parts,
                          beats_from_signal, causal_median, load_inputs, patient_inputs)
from ekg.signals import read_signal
from ekg.features import LOCAL_BEATS, LONG_BEATS, RECORDERS, recorder_signal, rr_history

SHARED = find_data_dir()


def col(name):
    """The rhythm column of a named input (features.RHYTHM_FEATURES)."""
    return RHYTHM_FEATURES.index(name)


def test_causal_median_looks_only_at_earlier_rows():
    x = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    med = causal_median(x, 10)
    np.testing.assert_allclose(med[50], np.median(x[40:50], axis=0), rtol=1e-6)
    np.testing.assert_allclose(med[0], x[0])
    np.testing.assert_allclose(med[3], np.median(np.concatenate([np.repeat(x[:1], 7, 0), x[:3]]), axis=0))


def test_patient_inputs_use_no_future_beat():
    beats = load_beats([119])
    context = load_windows([119], *CONTEXT)
    args = [beats[c].to_numpy() for c in ("rr_prev", "rr_next", "rr_local")]
    base = patient_inputs(context, *args)
    i = 400
    changed_context = context.copy()
    changed_context[i + 1:] *= 5  # every later beat changes
    rr_prev, rr_next, rr_local = (a.copy() for a in args)
    rr_prev[i + 1:] *= 2
    rr_local[i + 1:] *= 2
    rr_next[i + 1:] *= 2  # rr_next[i] (the next R peak) is the only look-ahead allowed
    changed = patient_inputs(changed_context, rr_prev, rr_next, rr_local)
    for key in ("beat", "context", "rhythm"):
        np.testing.assert_array_equal(changed[key][:i + 1], base[key][:i + 1])
    # and the local RR in the beat table itself is causal
    assert np.allclose(beats["rr_local"].iloc[40], beats["rr_prev"].iloc[8:40].mean())


def test_patient_scaling_keeps_a_beats_own_amplitude():
    beats = load_beats([100])
    context = load_windows([100], *CONTEXT)
    args = [beats[c].to_numpy() for c in ("rr_prev", "rr_next", "rr_local")]
    base = patient_inputs(context, *args)
    louder = context.copy()
    louder[500] *= 2  # one beat twice as large as the patient's others
    changed = patient_inputs(louder, *args)
    # per-beat z-scoring would erase this; scaling by the patient's typical beat keeps it
    amp = col("amplitude / typical")
    assert changed["rhythm"][500, amp] == pytest.approx(2 * base["rhythm"][500, amp], rel=1e-4)
    np.testing.assert_allclose(changed["beat"][500, 0], 2 * base["beat"][500, 0], rtol=1e-4, atol=1e-5)


def test_rhythm_columns_hold_the_rr_before_and_after_over_the_local_rr():
    n = 6
    context = np.zeros((n, sum(CONTEXT)), np.float32)
    context[:, CONTEXT[0]] = 1.0  # a 1-mV spike at each R peak
    rr_prev = np.array([0.9, 0.8, 0.5, 1.2, 0.9, 0.7])
    rr_next = np.array([0.8, 0.5, 1.2, 0.9, 0.7, 1.1])  # each beat's next interval: never its previous one
    rr_local = np.array([0.85, 0.9, 0.8, 0.65, 0.9, 1.0])
    rhythm = patient_inputs(context, rr_prev, rr_next, rr_local)["rhythm"]
    assert rhythm.shape == (n, len(RHYTHM_FEATURES))
    np.testing.assert_allclose(rhythm[:, col("local RR (s)")], rr_local, rtol=1e-6)
    np.testing.assert_allclose(rhythm[:, col("rr_prev / local RR")], rr_prev / rr_local, rtol=1e-6)
    np.testing.assert_allclose(rhythm[:, col("rr_next / local RR")], rr_next / rr_local, rtol=1e-6)
    np.testing.assert_allclose(rhythm[:, col("amplitude / typical")], 1.0, rtol=1e-6)  # all beats alike
    for name, rr in [("rr_prev (s)", rr_prev), ("rr_next (s)", rr_next)]:
        if name in RHYTHM_FEATURES:
            np.testing.assert_allclose(rhythm[:, col(name)], rr, rtol=1e-6)


def test_template_is_the_median_of_the_last_beats_not_their_mean():
    rng = np.random.default_rng(2)
    n = TEMPLATE_BEATS + 8
    context = rng.normal(0, 0.02, (n, sum(CONTEXT))).astype(np.float32)
    context[:, CONTEXT[0] - 5:CONTEXT[0] + 5] += 1.0  # a QRS at every R peak
    context[[3, 9, 20], CONTEXT[0] - 40:CONTEXT[0] + 40] += 6.0  # three huge ectopic beats
    inputs = patient_inputs(context, np.full(n, 0.8), np.full(n, 0.8), np.full(n, 0.8))
    ctx, beat, amplitude = beat_parts(context)
    i = n - 1
    typical = np.median(amplitude[i - TEMPLATE_BEATS:i])
    template = np.median(beat[i - TEMPLATE_BEATS:i], axis=0)
    np.testing.assert_allclose(inputs["beat"][i, 0], beat[i] / typical, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(inputs["beat"][i, 1], (beat[i] - template) / typical, rtol=1e-5, atol=1e-5)
    mean_template = beat[i - TEMPLATE_BEATS:i].mean(0)
    assert np.abs((beat[i] - mean_template) / typical - inputs["beat"][i, 1]).max() > 0.3  # the mean would differ
    assert inputs["rhythm"][i, col("amplitude / typical")] == pytest.approx(amplitude[i] / typical, rel=1e-5)


def test_beat_parts_and_context_shapes():
    context = np.random.default_rng(0).normal(size=(4, sum(CONTEXT))).astype(np.float32) + 3.0
    ctx, beat, amplitude = beat_parts(context)
    np.testing.assert_allclose(np.median(ctx, axis=1), 0, atol=1e-6)  # baseline (the 2-s median) removed
    assert beat.shape == (4, sum(BEAT_WINDOW))
    np.testing.assert_array_equal(beat, ctx[:, CONTEXT[0] - BEAT_WINDOW[0]:CONTEXT[0] + BEAT_WINDOW[1]])
    qrs = ctx[:, CONTEXT[0] - QRS_HALF:CONTEXT[0] + QRS_HALF]
    np.testing.assert_allclose(amplitude, qrs.max(1) - qrs.min(1))
    out = patient_inputs(context, [np.nan] * 4, [0.8] * 4, [np.nan] * 4)
    assert out["context"].shape == (4, 1, sum(CONTEXT) // CONTEXT_STEP)
    assert out["beat"].dtype == out["context"].dtype == out["rhythm"].dtype == np.float32


def test_beats_from_signal_gives_the_beat_table_for_the_annotated_beats():
    signal = read_signal(SHARED / "119")[0]
    beats = load_beats([119])
    context, rr_prev, rr_next, rr_local = beats_from_signal(signal, beats["sample"].to_numpy())
    np.testing.assert_array_equal(context, load_windows([119], *CONTEXT))
    for name, values in [("rr_prev", rr_prev), ("rr_next", rr_next)]:
        np.testing.assert_allclose(values, beats[name].to_numpy(), rtol=1e-12, equal_nan=True)
    # the cached inputs of the training set are those of the same beats found in the signal
    cached = load_inputs([119])
    fresh = patient_inputs(context, rr_prev, rr_next, rr_local)
    for key in fresh:
        np.testing.assert_array_equal(cached[key], fresh[key])


@pytest.fixture(scope="module")
def rec208():
    signal = read_signal(SHARED / "208")[0][: 360 * 120]
    beats = load_beats([208])
    return signal, beats["sample"].to_numpy()[beats["sample"].to_numpy() < len(signal) - 10]


@given(st.integers(LOCAL_RR_BEATS, 120), st.floats(0.1, 5.0), st.integers(0, 2**16))
def test_inputs_for_a_beat_never_change_when_later_samples_change(rec208, i, scale, seed):
    signal, peaks = rec208
    base = patient_inputs(*beats_from_signal(signal, peaks))
    later = signal.copy()
    start = peaks[i] + CONTEXT[1]  # beat i's window ends here; only its next R peak is looked at beyond it
    later[start:] = later[start:] * scale + np.random.default_rng(seed).normal(0, 0.3, len(later) - start)
    moved = peaks.copy()
    moved[i + 2:] += np.random.default_rng(seed).integers(-20, 20, len(peaks) - i - 2)  # later beats move
    moved[i + 2:] = np.maximum(moved[i + 2:], moved[i + 1] + 1)
    changed = patient_inputs(*beats_from_signal(later, np.sort(moved)))
    for key in ("beat", "context", "rhythm"):
        np.testing.assert_array_equal(changed[key][:i + 1], base[key][:i + 1])


def test_rhythm_keeps_seconds_and_ratios_to_the_local_and_long_mean():
    c = {name: i for i, name in enumerate(RHYTHM_FEATURES)}
    rng = np.random.default_rng(3)
    n = 400
    rr_prev = np.r_[np.nan, rng.uniform(0.5, 1.2, n - 1)]
    rr_next = np.r_[rr_prev[1:], np.nan]
    context = np.zeros((n, sum(CONTEXT)), np.float32)
    context[:, CONTEXT[0]] = 1.0
    rhythm = patient_inputs(context, rr_prev, rr_next)["rhythm"]
    i = 300
    local = rr_prev[i - LOCAL_BEATS:i].mean()
    long = rr_prev[max(i - LONG_BEATS, 1):i].mean()
    assert rhythm[i, c["rr_prev (s)"]] == pytest.approx(rr_prev[i], rel=1e-6)
    assert rhythm[i, c["rr_next (s)"]] == pytest.approx(rr_next[i], rel=1e-6)
    assert rhythm[i, c["local RR (s)"]] == pytest.approx(local, rel=1e-6)
    assert rhythm[i, c["long RR (s)"]] == pytest.approx(long, rel=1e-6)
    assert rhythm[i, c["rr_prev / local RR"]] == pytest.approx(rr_prev[i] / local, rel=1e-5)
    assert rhythm[i, c["rr_next / long RR"]] == pytest.approx(rr_next[i] / long, rel=1e-5)
    assert rhythm[i, c["previous beat's rr_prev / local RR"]] == pytest.approx(rr_prev[i - 1] / local, rel=1e-5)
    assert rhythm[i, c["local RR sd / local RR"]] == pytest.approx(rr_prev[i - LOCAL_BEATS:i].std() / local, rel=1e-4)
    # the next interval is kept up to 5 s (the model applies its own cap), not at the old 0.7 s
    slow = rr_next.copy()
    slow[i] = 3.0
    assert patient_inputs(context, rr_prev, slow)["rhythm"][i, c["rr_next (s)"]] == pytest.approx(3.0)


def test_an_s_beat_that_is_the_usual_rhythm_still_shows_in_seconds():
    # two patients, one at 0.5 s and one at 1.0 s: the same relative timing, different seconds
    c = {name: i for i, name in enumerate(RHYTHM_FEATURES)}
    context = np.zeros((50, sum(CONTEXT)), np.float32)
    fast = patient_inputs(context, np.full(50, 0.5), np.full(50, 0.5))["rhythm"]
    slow = patient_inputs(context, np.full(50, 1.0), np.full(50, 1.0))["rhythm"]
    np.testing.assert_allclose(fast[:, c["rr_prev / local RR"]], slow[:, c["rr_prev / local RR"]])
    assert (fast[:, c["rr_prev (s)"]] < slow[:, c["rr_prev (s)"]]).all()


def test_rr_history_uses_only_earlier_intervals():
    rr = np.r_[np.nan, np.arange(1, 40) / 10.0]
    local, long, before, spread = rr_history(rr)
    changed = rr.copy()
    changed[21:] *= 3
    for a, b in zip((local, long, before, spread), rr_history(changed)):
        np.testing.assert_array_equal(a[:22], b[:22])
    assert np.isnan(local[:2]).all() and local[2] == pytest.approx(0.1)


def test_no_beats_is_a_clear_error():
    with pytest.raises(ValueError, match="no beats"):
        patient_inputs(np.zeros((0, sum(CONTEXT)), np.float32), [], [])


def test_recorder_versions_keep_the_beats_and_lose_the_high_frequencies():
    signal = read_signal(SHARED / "119")[0][: 360 * 60]
    beats = load_beats([119])
    samples = beats["sample"].to_numpy()[beats["sample"].to_numpy() < len(signal)]
    same, same_samples = recorder_signal(signal, samples, "native")
    np.testing.assert_array_equal(same, signal)
    np.testing.assert_array_equal(same_samples, samples)
    hum = 0.5 * np.sin(2 * np.pi * 100 * np.arange(len(signal)) / 360)  # 100 Hz: above both recorders' band
    freqs = np.fft.rfftfreq(len(signal), 1 / 360)
    at_100 = np.abs(freqs - 100) < 0.5

    def power_at_100(x):
        return (np.abs(np.fft.rfft(x - signal)) ** 2)[at_100].sum()

    for name, (rate, _) in RECORDERS.items():
        if rate is None:
            continue
        x, moved = recorder_signal(signal + hum, samples, name)
        assert x.shape == signal.shape and np.abs(moved - samples).max() <= 360 / rate / 2 + 1
        # the recorder's band ends below 100 Hz (64 Hz at 128 Hz, a 40-Hz low-pass at 250 Hz)
        assert power_at_100(x) < 0.01 * power_at_100(signal + hum)
        # and the ECG itself comes back: the beats' R peaks keep most of their height
        assert np.median(x[moved] / np.maximum(signal[samples], 1e-3)) > 0.7
    with pytest.raises(ValueError, match="recorder"):
        load_inputs([119], recorder="via300")


def test_input_cache_is_checked_and_keyed_to_the_files_it_was_built_from(tmp_path, monkeypatch):
    """load_inputs checks the record's files on every call, warm cache or not, and a changed file
    is never served the cached inputs of the old one."""
    import ekg.config
    import ekg.data
    import ekg.features
    from ekg.data import DataError

    monkeypatch.setattr(ekg.config, "CACHE_DIR", tmp_path / "cache")
    ekg.features._cached_inputs.cache_clear()
    first = ekg.features.load_inputs([100])
    assert len(list((tmp_path / "cache").glob("inputs_v3/native/100-*.npz"))) == 1
    calls = []
    real = ekg.data.verify_files
    monkeypatch.setattr(ekg.data, "verify_files", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = ekg.features.load_inputs([100])  # warm: still checked
    assert calls and all(np.array_equal(first[k], again[k]) for k in first)

    def corrupt(*args, **kwargs):
        raise DataError("100.dat does not match its SHA-256 sum")

    monkeypatch.setattr(ekg.data, "verify_files", corrupt)
    with pytest.raises(DataError, match="100.dat"):
        ekg.features.load_inputs([100])
    ekg.features._cached_inputs.cache_clear()


# -- the rhythm columns' bounds and fallbacks, the recorder versions' edges ------------------------------

def test_rhythm_inputs_are_bounded_so_a_pause_or_an_artefact_cannot_swamp_the_model():
    from ekg.features import rhythm_inputs

    c = {name: i for i, name in enumerate(RHYTHM_FEATURES)}
    #                         beat 0   beat 1   beat 2
    rr_prev = np.array([0.01, 5.5, 6.0])
    rr_next = np.array([6.0, 0.01, 5.5])
    rr_local = np.array([0.1, 4.0, 3.5])  # RR references are kept within 0.2 .. 3 s
    rr_long = np.array([0.1, 4.0, 3.5])
    rr_before = np.array([5.5, 0.01, 1.0])
    rr_spread = np.array([0.5, 1.0, 7.5])  # spread / local is kept within 0 .. 2
    amplitude = np.array([10.0, 5.5, 0.5])  # amplitude / typical is kept within 0 .. 5
    typical = np.array([1.0, 1.0, 0.01])  # a typical amplitude under 0.05 mV counts as 0.05 (noise)
    rhythm = rhythm_inputs(rr_prev, rr_next, rr_local, rr_long, rr_before, rr_spread, amplitude, typical)
    np.testing.assert_allclose(rhythm[:, c["local RR (s)"]], [0.2, 3.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(rhythm[:, c["long RR (s)"]], [0.2, 3.0, 3.0], rtol=1e-6)
    # intervals in seconds within 0.05 .. 5 s (a pause longer than 5 s is 5 s to the model)
    np.testing.assert_allclose(rhythm[:, c["rr_prev (s)"]], [0.05, 5.0, 5.0], rtol=1e-6)
    np.testing.assert_allclose(rhythm[:, c["rr_next (s)"]], [5.0, 0.05, 5.0], rtol=1e-6)
    np.testing.assert_allclose(rhythm[:, c["previous beat's rr_prev / local RR"]], [5.0 / 0.2, 0.05 / 3.0, 1.0 / 3.0],
                               rtol=1e-6)
    np.testing.assert_allclose(rhythm[:, c["rr_prev / local RR"]], [0.05 / 0.2, 5.0 / 3.0, 5.0 / 3.0], rtol=1e-6)
    np.testing.assert_allclose(rhythm[:, c["rr_next / long RR"]], [5.0 / 0.2, 0.05 / 3.0, 5.0 / 3.0], rtol=1e-6)
    np.testing.assert_allclose(rhythm[:, c["amplitude / typical"]], [5.0, 5.0, 5.0], rtol=1e-6)
    np.testing.assert_allclose(rhythm[:, c["local RR sd / local RR"]], [2.0, 1.0 / 3.0, 2.0], rtol=1e-6)


def test_a_beat_with_no_interval_known_is_taken_at_0_8_s():
    # a record's only beat: no interval before or after it, no local or long mean
    context = np.zeros((1, sum(CONTEXT)), np.float32)
    context[0, CONTEXT[0]] = 1.0
    rhythm = patient_inputs(context, [np.nan], [np.nan])["rhythm"][0]
    expected = {"rr_prev (s)": 0.8, "rr_next (s)": 0.8, "local RR (s)": 0.8, "long RR (s)": 0.8,
                "rr_prev / local RR": 1.0, "rr_next / long RR": 1.0, "previous beat's rr_prev / local RR": 1.0,
                "amplitude / typical": 1.0, "local RR sd / local RR": 0.0}
    for name, value in expected.items():
        assert rhythm[col(name)] == pytest.approx(value, rel=1e-6), name


def test_the_spread_of_a_single_past_interval_is_zero_as_the_monitor_computes_it():
    # the monitor (stream.py) takes np.std of the intervals it has; one interval has no spread, not an unknown one
    rr = np.array([np.nan, 0.8, 0.9, 0.7])
    spread = rr_history(rr)[3]
    assert np.isnan(spread[:2]).all()  # no interval before the first two beats (the first has no rr_prev)
    assert spread[2] == 0.0 and spread[3] == pytest.approx(np.std([0.8, 0.9]))


def test_no_beats_error_names_the_problem_first():
    with pytest.raises(ValueError, match=r"^no beats: patient_inputs needs at least one beat$"):
        patient_inputs(np.zeros((0, sum(CONTEXT)), np.float32), [], [])


def test_windows_and_recorder_versions_are_float32_whatever_the_input():
    # float32 halves the memory of the training set; wfdb gives float64
    signal = read_signal(SHARED / "100")[0][: 360 * 20].astype(np.float64)
    samples = np.array([400, 1000, 3000])
    assert beats_from_signal(signal, samples)[0].dtype == np.float32
    for name in RECORDERS:
        assert recorder_signal(signal, samples, name)[0].dtype == np.float32, name


def test_recorder_versions_keep_beats_at_the_first_and_last_sample_inside_the_record():
    signal = read_signal(SHARED / "100")[0][: 360 * 60]
    n = len(signal)
    samples = np.array([0, 1, 1000, n - 2, n - 1])
    for name in ("via128", "via250"):
        _, moved = recorder_signal(signal, samples, name)
        # the last sample rounds onto the recorder's grid point just past the end: it stays the last
        assert moved[0] == 0 and moved[-1] == n - 1 and (moved >= 0).all() and (moved < n).all(), name
    # (at 128 Hz the last sample, 21599, lies nearer the grid point at 21600: the clip matters)
    assert round(round((n - 1) * 128 / 360) * 360 / 128) == n


def test_the_250_hz_recorder_low_pass_is_a_second_order_butterworth_at_40_hz():
    from scipy.signal import butter, sosfreqz

    # zero-phase (forward and back): the gain is the filter's magnitude squared
    t = np.arange(360 * 20) / 360
    for f in (20.0, 60.0):
        tone = np.sin(2 * np.pi * f * t)
        out, _ = recorder_signal(tone, [], "via250")
        middle = slice(360 * 5, 360 * 15)  # away from the ends
        gain = np.std(out[middle]) / np.std(tone[middle])
        expected = np.abs(sosfreqz(butter(2, 40.0, fs=360, output="sos"), [f], fs=360)[1][0]) ** 2
        assert gain == pytest.approx(expected, rel=0.05), f


def test_load_inputs_gives_the_named_recorders_version(tmp_path, monkeypatch):
    import ekg.config
    import ekg.features

    monkeypatch.setattr(ekg.config, "CACHE_DIR", tmp_path / "cache")
    ekg.features._cached_inputs.cache_clear()
    try:
        native = load_inputs([100])
        via = load_inputs([100], recorder="via250")
        signal = read_signal(SHARED / "100")[0]
        x, samples = recorder_signal(signal, load_beats([100])["sample"].to_numpy(), "via250")
        expected = patient_inputs(*beats_from_signal(x, samples))
        for key in expected:
            np.testing.assert_allclose(via[key], expected[key], rtol=1e-5, atol=1e-5)
        assert np.abs(via["beat"] - native["beat"]).max() > 0.01  # the recorder version is not the native one
    finally:
        ekg.features._cached_inputs.cache_clear()


def test_the_template_is_aligned_to_each_beat_by_at_most_the_shift_asked():
    from ekg.features import align_template

    t = np.arange(256) - 128
    qrs = np.exp(-(t / 6.0) ** 2) - 0.3 * np.exp(-((t - 10) / 5.0) ** 2)
    template = np.tile(qrs, (4, 1)).astype(np.float32)
    beats = np.stack([np.roll(qrs, d) for d in (2, -3, 0, 5)]).astype(np.float32)
    aligned = align_template(beats, template, 3)
    for row in range(3):  # shifts of 2, -3 and 0, within reach: the template lands on the beat
        np.testing.assert_allclose(aligned[row], beats[row], atol=1e-6)
    np.testing.assert_allclose(aligned[3], np.roll(qrs, 3), atol=1e-6)  # out of reach: the furthest shift
    np.testing.assert_array_equal(align_template(beats, template, 0), template)
    # through patient_inputs: the second beat placed 2 samples off the first, whose shape is its template
    context = np.stack([np.pad(qrs, 232), np.roll(np.pad(qrs, 232), 2)]).astype(np.float32)
    plain, shifted = (patient_inputs(context, [np.nan, 0.8], [0.8, np.nan], template_shift=k) for k in (0, 3))
    assert np.abs(plain["beat"][1, 1]).max() > 0.2  # the QRS slope left in beat - template
    np.testing.assert_allclose(shifted["beat"][1, 1, 20:-20], 0, atol=1e-5)
    np.testing.assert_array_equal(shifted["beat"][:, 0], plain["beat"][:, 0])  # the beat itself never moves
    with pytest.raises(ValueError, match="does not fit"):
        align_template(beats, template, 120)
