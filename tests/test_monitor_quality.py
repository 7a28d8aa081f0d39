"""Signal quality: missing, flat, clipped and noisy stretches give a quality event and no false alarm."""
import numpy as np
import pytest

from ekg.monitor import ALARM_THRESHOLDS, Monitor, block_quality
from ekg.monitor.quality import beat_similarity
from helpers import stream


def quality_run(model, signal, fs=360):
    events = stream(Monitor(model, fs), signal, 90)
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


def test_block_quality_rules(rec100):
    clean = rec100[360 * 10:360 * 11]
    assert block_quality(clean) == "ok" and block_quality([]) == "ok"
    missing = clean.copy()
    missing[:40] = np.nan  # 11% of the block
    assert block_quality(missing) == "missing"
    missing[:30] = 0.0
    assert block_quality(missing) == "ok"  # 10 samples of 360 missing: still readable
    assert block_quality(np.full(360, 0.3) + 0.01 * np.sin(np.arange(360))) == "flat"  # under 0.05 mV peak-to-peak
    clipped = clean.copy()
    clipped[100:100 + 18] = clean.max() + 0.5  # 50 ms stuck at the top
    assert block_quality(clipped) == "saturated"
    clipped[100 + 16:100 + 18] = clean.max() + 0.4  # a 44-ms run is not yet 50 ms
    assert block_quality(clipped) == "ok"
    noisy = clean + np.random.default_rng(0).normal(0, 0.1, 360).astype(np.float32)
    assert block_quality(noisy) == "noisy"
    assert block_quality(noisy, {**ALARM_THRESHOLDS, "noise_mv": 10}) == "ok"  # thresholds are honoured


def test_known_adc_limits_mark_clipping_anywhere_at_them(rec100):
    x = rec100[360 * 10:360 * 11].copy()
    x[200:230] = 1.5  # a run at the converter's limit, not at the block's own extreme
    x[50] = 2.0
    assert block_quality(x) == "ok"
    assert block_quality(x, adc_limits=(-1.5, 1.5)) == "saturated"


# -- each rule at its boundary (killing mutmut's mutants of block_quality) ----------------------------

def ecg_block(rec100):
    return rec100[360 * 10:360 * 11].copy()


def test_missing_is_more_than_a_tenth_of_the_block(rec100):
    x = ecg_block(rec100)
    x[:36] = np.nan  # exactly a tenth: still readable
    assert block_quality(x) == "ok"
    x[36] = np.nan
    assert block_quality(x) == "missing"


def test_flat_is_strictly_below_the_limit():
    x = np.zeros(360, np.float32)
    x[::2] = 0.5
    assert block_quality(x, {**ALARM_THRESHOLDS, "flat_mv": 0.5, "noise_mv": 10}) == "ok"  # exactly at it
    assert block_quality(x, {**ALARM_THRESHOLDS, "flat_mv": 0.75, "noise_mv": 10}) == "flat"


def test_saturation_needs_a_run_of_the_full_length_at_an_extreme(rec100):
    x = ecg_block(rec100)
    top, bottom = x.max() + 0.5, x.min() - 0.5
    run = int(ALARM_THRESHOLDS["saturation_s"] * 360)  # 18 samples
    stuck = x.copy()
    stuck[100:100 + run] = top
    assert block_quality(stuck) == "saturated"
    stuck[100 + run - 1] = top - 0.1  # one sample short
    assert block_quality(stuck) == "ok"
    stuck[300:302] = top  # and another, separate pair at the top: still no run of the full length
    assert block_quality(stuck) == "ok"
    low = x.copy()
    low[200:200 + run] = bottom  # stuck at the lowest value
    assert block_quality(low) == "saturated"
    first = x.copy()
    first[:run - 1] = top  # the block opens one sample short of a run...
    assert block_quality(first) == "ok"
    first[run - 1] = top  # ...or with a whole one
    assert block_quality(first) == "saturated"
    plateau = x.copy()
    plateau[300:340] = 0.1  # equal samples, but at no extreme and at no converter limit
    assert block_quality(plateau) == "ok" and block_quality(plateau, adc_limits=(-5.0, 5.0)) == "ok"


def test_a_short_saturation_setting_still_needs_two_equal_samples(rec100):
    x = ecg_block(rec100)
    x[50:52] = x.max() + 0.5  # two equal samples at the top
    assert block_quality(x, {**ALARM_THRESHOLDS, "saturation_s": 0.001}) == "saturated"
    x[51] = x[50] + 0.1
    assert block_quality(x, {**ALARM_THRESHOLDS, "saturation_s": 0.001}) == "ok"


def test_converter_limits_count_at_both_ends_inclusive(rec100):
    x = ecg_block(rec100)
    x[10] = 3.0  # the block's own extremes lie elsewhere
    x[11] = -3.0
    x[100:130] = -1.5  # stuck exactly at the lower limit
    assert block_quality(x, adc_limits=(-1.5, 1.5)) == "saturated"
    assert block_quality(x, adc_limits=(-2.0, 2.0)) == "ok"


def test_noise_is_the_median_second_difference_above_the_limit():
    i = np.arange(40, dtype=np.float32)
    assert block_quality(0.1 * i) == "ok"  # a steep ramp: large first, zero second differences
    assert block_quality(0.05 * i ** 2) == "noisy"  # second differences 0.1 (third ones 0)
    quadratic = (0.25 * i ** 2).astype(np.float32)  # second differences exactly 0.5
    assert block_quality(quadratic, {**ALARM_THRESHOLDS, "noise_mv": 0.5}) == "ok"
    assert block_quality(quadratic, {**ALARM_THRESHOLDS, "noise_mv": 0.49}) == "noisy"
    assert block_quality(np.array([0.0, 1.0, -1.0, 1.0])) == "noisy"  # four samples are enough
    assert block_quality(np.array([0.0, 1.0, 0.0])) == "ok"  # three are not judged


def after(windows, first=None):
    """Each window's predecessor as rows: the row above, and first (NaN when not given) for row 0."""
    first = np.full(windows.shape[1], np.nan) if first is None else first
    return np.concatenate([first[None], windows[:-1]])


def test_beat_similarity_of_real_beats_noise_and_shifted_copies(rec100):
    from ekg.data import load_beats

    beats = load_beats([100])["sample"].to_numpy()[5:25]
    windows = np.stack([rec100[b - 128:b + 128] for b in beats])
    s = beat_similarity(windows, after(windows))
    assert np.isnan(s[0]) and (s[1:] > 0.95).all()  # record 100's normal beats repeat their shape
    assert beat_similarity(windows[1:], after(windows[1:], windows[0]))[0] == pytest.approx(s[1])
    # the same beat, larger and moved by up to 40 ms (the fiducial point on another lobe): still 1
    for moved in (2 * np.roll(windows[3], 14), np.roll(windows[3], -14)):
        assert beat_similarity(moved[None], windows[3][None])[0] == pytest.approx(1.0, abs=1e-9)
    # ...moved further, it is not: the shift searched is bounded
    assert beat_similarity(np.roll(windows[3], 40)[None], windows[3][None])[0] < 0.9
    # noise after a beat, and a beat after noise, look like neither
    noise = np.random.default_rng(0).normal(0, 0.2, (2, 256))
    seq = np.stack([windows[3], noise[0], noise[1]])
    assert (beat_similarity(seq, after(seq))[1:] < 0.6).all()
    # a flat window has no shape: correlation 0, not NaN or an error
    assert beat_similarity(np.zeros((1, 256)), windows[3][None])[0] == 0
    with pytest.raises(ValueError, match="too short"):
        beat_similarity(np.zeros((3, 40)), np.zeros((3, 40)))
    with pytest.raises(ValueError, match="same shape"):
        beat_similarity(np.zeros((2, 256)), np.zeros(256))


def test_block_qualities_judges_each_row_as_block_quality_does(rec100):
    # the Ward judges every patient's block in one call: each row must get the verdict it gets alone
    # (block_quality), whatever its damage, and rows must not leak into each other (a shared extreme, a
    # shared median); the rules themselves are pinned by the boundary tests above
    from ekg.monitor.quality import block_qualities

    rng = np.random.default_rng(1)
    clean = rec100[:360 * 40].reshape(40, 360).astype(np.float32)
    rows = [clean[0], clean[1] * 0.01, np.full(360, 0.3, np.float32), np.clip(clean[2] * 8, -1.0, 1.0),
            clean[3] + rng.normal(0, 0.5, 360).astype(np.float32), np.where(np.arange(360) < 20, np.nan, clean[4]),
            np.where(np.arange(360) < 60, np.nan, clean[5]), np.full(360, np.nan, np.float32),
            np.r_[np.full(40, clean[6].max()), clean[6][40:]].astype(np.float32)]
    rows += list(clean[7:]) + [clean[k] + rng.normal(0, s, 360).astype(np.float32)
                               for k, s in zip(range(10, 40), np.linspace(0, 0.3, 30))]
    blocks = np.stack(rows)
    for limits in (None, (-1.0, 1.0)):
        for thresholds in (ALARM_THRESHOLDS, {**ALARM_THRESHOLDS, "noise_mv": 0.05, "saturation_s": 0.02}):
            expected = [block_quality(x, thresholds, 360, limits) for x in blocks]
            assert len(set(expected)) >= 4  # the rows are judged differently: the comparison has teeth
            assert block_qualities(blocks, thresholds, 360, limits) == expected
    assert block_qualities(np.zeros((3, 0))) == ["ok"] * 3
    with pytest.raises(ValueError, match="2-D"):
        block_qualities(np.zeros(360))
