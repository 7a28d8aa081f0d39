"""EC57 scoring, bootstrap by patient, and classifying any WFDB record at any sampling rate."""
import numpy as np
import pandas as pd
import pytest
import wfdb

import utils

SHARED = utils.find_data_dir()


def table(pairs, record=1):
    true, pred = zip(*pairs)
    return pd.DataFrame({"record": record, "aami_true": list(true), "aami_pred": list(pred)})


def test_ec57_counts_like_bxb():
    df = table([("V", "V")] * 8 + [("V", "N")] * 2 + [("N", "V")] * 1 + [("F", "V")] * 5 + [("Q", "V")] * 3
               + [("S", "S")] * 3 + [("S", "N")] * 1 + [("Q", "S")] * 4 + [("N", "S")] * 1
               + [("N", "N")] * 100 + [("N", "O")] * 2 + [("O", "N")] * 3)
    gross = utils.score(df)["gross"]
    assert gross["VEB Se"] == pytest.approx(8 / 10)
    assert gross["VEB +P"] == pytest.approx(8 / 9)  # fusion and unknown beats called V are not false positives
    assert gross["SVEB Se"] == pytest.approx(3 / 4)
    assert gross["SVEB +P"] == pytest.approx(3 / 4)  # unknown beats called S are not false positives
    beats = len(df) - 5
    assert gross["QRS Se"] == pytest.approx((beats) / (beats + 2))
    assert gross["QRS +P"] == pytest.approx((beats) / (beats + 3))


def test_per_class_scores_and_record_average():
    df = pd.concat([table([("V", "V")] * 9 + [("V", "N")] + [("N", "N")] * 90, record=1),
                    table([("V", "V")] * 1 + [("V", "N")] * 9 + [("N", "N")] * 90, record=2)])
    result = utils.score(df)
    assert result["classes"].loc["V", "Se"] == pytest.approx(10 / 20)
    assert result["classes"].loc["V", "+P"] == pytest.approx(1.0)
    assert result["classes"].loc["N", "Sp"] == pytest.approx(10 / 20)
    assert result["per_record"].loc[1, "VEB Se"] == pytest.approx(0.9)
    assert result["record_average"]["VEB Se"] == pytest.approx(0.5)
    assert result["accuracy"] == pytest.approx(190 / 200)


def test_bootstrap_resamples_records_not_beats():
    good = table([("V", "V")] * 50 + [("N", "N")] * 50, record=1)
    bad = table([("V", "N")] * 50 + [("N", "N")] * 50, record=2)
    ci = utils.bootstrap_by_record(pd.concat([good, bad]), n_boot=400)
    # with two patients a resample is all-good, all-bad or mixed: the interval spans nearly 0..1
    assert ci.loc["VEB Se", "low"] == pytest.approx(0.0) and ci.loc["VEB Se", "high"] == pytest.approx(1.0)
    one = utils.bootstrap_by_record(good, n_boot=50)
    assert one.loc["VEB Se", "low"] == one.loc["VEB Se", "high"] == 1.0
    # one patient: every resample is that patient, so the interval is the point estimate itself,
    # with F1 0 for the classes it neither has nor was called (S, F), as score() counts them
    assert one.loc["macro-F1", "low"] == one.loc["macro-F1", "high"] == pytest.approx(utils.score(good)["macro_f1"])
    assert utils.score(good)["macro_f1"] == pytest.approx(0.5)


def test_match_beats_pairs_each_beat_once_within_150_ms():
    ref = np.array([100, 400, 700, 1000])
    det = np.array([105, 110, 440, 1500])
    r, d = utils.match_beats(ref, det, fs=360)
    assert list(zip(r, d)) == [(0, 0), (1, 2)]  # 110 is a second detection of beat 0; 1500 matches nothing


@pytest.fixture(scope="module")
def model():
    return utils.load_model(utils.model_path("recommended"))


@pytest.fixture(scope="module")
def short_record(tmp_path_factory):
    """The first 10 minutes of record 119 (many V beats), written as a new WFDB record."""
    folder = tmp_path_factory.mktemp("rec")
    rec = wfdb.rdrecord(str(SHARED / "119"), sampto=360 * 600)
    ann = wfdb.rdann(str(SHARED / "119"), "atr", sampto=360 * 600)
    wfdb.wrsamp("r360", fs=360, units=rec.units, sig_name=rec.sig_name, p_signal=rec.p_signal,
                fmt=["16", "16"], write_dir=str(folder))
    wfdb.wrann("r360", "atr", ann.sample, np.array(ann.symbol), write_dir=str(folder))
    for fs in (128, 250):
        x = np.stack([utils.resample(rec.p_signal[:, c], 360, fs) for c in range(2)], axis=1)
        wfdb.wrsamp(f"r{fs}", fs=fs, units=rec.units, sig_name=rec.sig_name, p_signal=x.astype(np.float64),
                    fmt=["16", "16"], write_dir=str(folder))
        samples = np.round(ann.sample * fs / 360).astype(int)
        wfdb.wrann(f"r{fs}", "atr", samples, np.array(ann.symbol), write_dir=str(folder))
    return folder


def test_classify_record_at_reference_beats(model, short_record):
    out = utils.classify_record(short_record / "r360", model)
    n_beats = int(np.isin(wfdb.rdann(str(short_record / "r360"), "atr").symbol, utils.BEAT_SYMBOLS).sum())
    assert len(out) == n_beats
    for col in ["sample", "time", "aami_pred", "aami_true", "symbol"] + [f"p_{c}" for c in utils.CLASSES]:
        assert col in out
    np.testing.assert_allclose(out[[f"p_{c}" for c in utils.CLASSES]].sum(1), 1, atol=1e-4)
    assert utils.score(out)["classes"].loc["V", "Se"] > 0.8  # record 119's V beats are large and clear


@pytest.mark.parametrize("fs", [128, 250])
def test_classification_survives_resampling(model, short_record, fs):
    base = utils.classify_record(short_record / "r360", model)
    other = utils.classify_record(short_record / f"r{fs}", model)
    assert len(other) == len(base)
    agreement = (other["aami_pred"].to_numpy() == base["aami_pred"].to_numpy()).mean()
    assert agreement > 0.97, f"{fs} Hz agrees with 360 Hz on only {agreement:.1%} of beats"
    assert np.abs(other["time"].to_numpy() - base["time"].to_numpy()).max() < 1.5 / fs + 1e-9


def test_classify_record_with_detected_beats(model, short_record):
    out = utils.classify_record(short_record / "r360", model, beats="detect")
    gross = utils.score(out)["gross"]
    assert gross["QRS Se"] > 0.99 and gross["QRS +P"] > 0.99
    # every reference beat appears once: matched to a detection, or as a miss marked "O"
    n_ref = int(np.isin(wfdb.rdann(str(short_record / "r360"), "atr").symbol, utils.BEAT_SYMBOLS).sum())
    assert (out["aami_true"] != "O").sum() == n_ref
    missed = out[out["aami_pred"] == "O"]
    assert missed["aami_true"].isin(utils.CLASSES).all()


def test_classify_record_named_channel_and_errors(model, short_record):
    named = utils.classify_record(short_record / "r360", model, channel="MLII")
    assert (named["aami_pred"] == utils.classify_record(short_record / "r360", model)["aami_pred"]).all()
    with pytest.raises(ValueError, match="no channel 'V9'"):
        utils.classify_record(short_record / "r360", model, channel="V9")
    with pytest.raises(ValueError, match="beats must be"):
        utils.classify_record(short_record / "r360", model, beats="guess")
