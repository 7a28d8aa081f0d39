"""The noise stress test records as WFDB's nst builds them: the protocol, the gain, the continuity."""
import numpy as np
import pytest
import wfdb

from ekg.data import find_data_dir
from ekg.monitor import nst
from ekg.signals import read_signal


def test_the_protocol_is_clean_5_minutes_then_alternating_2_minute_segments():
    spans = nst.noisy_spans(650_000, 360)  # a whole MIT-BIH record: 30:05.6
    starts = [a / 360 for a, _ in spans]
    assert starts == [300, 540, 780, 1020, 1260, 1500, 1740]
    assert all(b - a == 120 * 360 for a, b in spans[:-1]) and spans[-1][1] == 650_000
    assert nst.noisy_spans(360 * 200, 360) == []  # shorter than the clean start: no noise at all


def test_the_qrs_amplitude_and_noise_rms_follow_sigamp():
    fs = 360
    x = np.zeros(fs * 60)
    beats = np.arange(fs, len(x) - fs, fs)
    x[beats] = 2.0  # 2 mV spikes
    x[beats[:2]] = 50.0  # two huge ones (of 58): the trimmed mean leaves out the largest 5%
    assert nst.qrs_amplitude(x, beats, fs) == pytest.approx(2.0)
    noise = np.sin(2 * np.pi * 3 * np.arange(fs * 60) / fs) + 7.0  # offset removed per window
    assert nst.noise_rms(noise, fs) == pytest.approx(1 / np.sqrt(2), rel=1e-3)
    assert nst.normal_beats(list("NLRVAej"), range(7)).tolist() == [0, 1, 2, 5, 6]


@pytest.mark.parametrize("snr_db", [24, 12, 0, -6])
def test_the_added_noise_has_the_asked_signal_to_noise_ratio(snr_db):
    fs = 360
    rng = np.random.default_rng(0)
    n = fs * 60 * 12
    x = np.zeros(n)
    beats = np.arange(fs // 2, n - fs, int(0.8 * fs))
    x[beats] = 1.5
    noise = rng.standard_normal(n) * 0.3 + 0.1
    noisy, spans = nst.nst_record(x, beats, fs, snr_db, noise)
    added = noisy - x
    a, b = spans[0]
    seg = added[a:b]
    rms = np.sqrt(((seg - seg.mean()) ** 2).mean())
    # nst's definition: the QRS as a sine of peak-to-peak S (RMS S*sqrt(2)/4) over the noise RMS
    assert 20 * np.log10(1.5 * np.sqrt(2) / 4 / rms) == pytest.approx(snr_db, abs=0.1)
    assert np.all(noisy[:a] == x[:a])  # the first 5 minutes are clean
    c, d = spans[1]
    assert np.ptp(added[b:c]) < 1e-9  # clean between noisy segments (an offset at most)


def test_noise_goes_only_into_the_spans_asked_for():
    fs = 360
    n = fs * 60 * 12
    beats = np.arange(fs // 2, n - fs, int(0.8 * fs))
    x = np.zeros(n)
    x[beats] = 1.5
    noise = np.random.default_rng(1).standard_normal(n)
    own, own_spans = nst.nst_record(x, beats, fs, 12, noise)
    asked = [(0, 100 * fs), (310 * fs, 350 * fs)]
    noisy, spans = nst.nst_record(x, beats, fs, 12, noise, spans=asked)
    assert spans == asked
    added = noisy - x
    assert np.ptp(added[100 * fs:310 * fs]) < 1e-9 and np.ptp(added[350 * fs:]) < 1e-9  # clean outside them
    # inside a span, the same noise samples at the same gain as in nst's own record (up to an offset)
    assert own_spans[0] == (300 * fs, 420 * fs)
    inside = slice(310 * fs, 350 * fs)
    assert np.allclose(np.diff(added[inside]), np.diff((own - x)[inside]))
    assert np.abs(np.diff(added[inside])).max() > 0.01


def test_switching_the_noise_on_and_off_makes_no_jump():
    fs = 360
    n = fs * 60 * 10
    noise = np.full(n, 5.0)  # a constant: any jump at a switch would be its gain times 5
    noisy = nst.add_noise(np.zeros(n), noise, 2.0, nst.noisy_spans(n, fs))
    assert np.abs(np.diff(noisy)).max() < 1e-9


def test_noise_records_are_read_from_beside_the_mitbih_records_by_default():
    noise, fs = nst.read_noise("em", 1)
    expected, _ = nst.read_noise("em", 1, find_data_dir().parent / "nstdb-noise")
    assert fs == 360 and len(noise) > 360 * 60 * 20
    np.testing.assert_array_equal(noise, expected)


def test_bad_noise_input_is_named():
    with pytest.raises(ValueError, match="bw, 'em' or 'ma'|'bw', 'em' or 'ma'"):
        nst.read_noise("xx")
    with pytest.raises(ValueError, match="resample the noise"):
        nst.nst_record(np.zeros(1000), [10], 360, 12, np.zeros(1000), noise_fs=250)
    with pytest.raises(ValueError, match="shorter"):
        nst.add_noise(np.zeros(1000), np.zeros(10), 1.0, [(0, 10)])


def test_stress_records_are_nst_records_of_each_record_at_each_level():
    noise, noise_fs = nst.read_noise("em", 0)
    signals, spans = nst.stress_records([100], (12, 0), noise, noise_fs, minutes=7, with_clean=True)
    assert set(signals) == {(100, None), (100, 12), (100, 0)}
    clean, fs = signals[(100, None)]
    assert fs == 360 and len(clean) == 7 * 60 * 360
    np.testing.assert_array_equal(clean, read_signal(find_data_dir() / "100")[0][: 7 * 60 * 360])
    assert spans[100] == nst.noisy_spans(len(clean), fs) == [(300 * 360, 7 * 60 * 360)]
    ann = wfdb.rdann(str(find_data_dir() / "100"), "atr")
    normal = nst.normal_beats(ann.symbol, ann.sample)
    for snr in (12, 0):
        noisy, got_fs = signals[(100, snr)]
        expected, _ = nst.nst_record(clean, normal[normal < len(clean)], fs, snr, noise, noise_fs)
        assert noisy.dtype == np.float32 and got_fs == fs
        np.testing.assert_array_equal(noisy, expected.astype(np.float32))
    assert not nst.stress_records([100], (12,), noise, noise_fs, minutes=7)[0].keys() & {(100, None)}
