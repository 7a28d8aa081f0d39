"""The data layer: locating, downloading and verifying MIT-BIH, and the beat table."""
import functools
import http.server
import shutil
import threading

import numpy as np
import pandas as pd
import pytest
import wfdb

import ekg.config
import ekg.data
import utils

SHARED = utils.find_data_dir()


@pytest.fixture(scope="module")
def beats():
    return utils.load_beats()


def test_beat_counts_match_the_standard_mapping(beats):
    assert len(beats) == 109_494
    assert beats["aami"].value_counts().to_dict() == {"N": 90_631, "S": 2_781, "V": 7_236, "F": 803, "Q": 8_043}


@pytest.mark.parametrize("records, expected", [
    (utils.DS1, {"N": 45_866, "S": 944, "V": 3_788, "F": 415, "Q": 8}),
    (utils.DS2, {"N": 44_259, "S": 1_837, "V": 3_221, "F": 388, "Q": 7}),
])
def test_de_chazal_sets(beats, records, expected):
    assert beats[beats["record"].isin(records)]["aami"].value_counts().to_dict() == expected


def test_paced_records_are_in_neither_set():
    assert not set(utils.PACED) & (set(utils.DS1) | set(utils.DS2))
    assert sorted(utils.DS1 + utils.DS2 + utils.PACED) == utils.RECORDS


def test_seed_image_rule_gives_the_kaggle_counts(beats):
    counts = beats[beats["seed_image"]]["aami"].value_counts().to_dict()
    assert counts == {"N": 90_589, "S": 2_779, "V": 7_236, "F": 803, "Q": 8_039}


def test_table_columns_and_rr_features(beats):
    for col in ["record", "sample", "symbol", "aami", "rr_prev", "rr_next", "rr_local", "rr_record"]:
        assert col in beats
    one = beats[beats["record"] == 100]
    assert np.isnan(one["rr_prev"].iat[0]) and np.isnan(one["rr_next"].iat[-1])
    np.testing.assert_allclose(one["rr_prev"].iloc[1:].to_numpy(), np.diff(one["sample"]) / 360)
    np.testing.assert_allclose(one["rr_next"].iloc[:-1].to_numpy(), np.diff(one["sample"]) / 360)
    assert set(beats["symbol"]) <= set(utils.AAMI_MAP)


def test_local_rr_uses_no_current_or_future_beat():
    rr = np.random.default_rng(1).uniform(0.4, 1.2, 200)
    base = utils.causal_local_rr(rr)
    for i in [5, 40, 150]:
        changed = rr.copy()
        changed[i:] *= 3  # the current beat and everything after it
        np.testing.assert_array_equal(utils.causal_local_rr(changed)[:i + 1], base[:i + 1])
    assert np.isnan(base[0])
    np.testing.assert_allclose(base[100], rr[100 - utils.LOCAL_RR_BEATS:100].mean())


def test_windows_are_centred_on_the_r_peak_in_millivolts(beats):
    rec = wfdb.rdrecord(str(SHARED / "101"), channels=[0]).p_signal[:, 0]
    rows = np.flatnonzero(beats["record"] == 101)
    windows = utils.load_windows([101], before=96, after=96)
    assert windows.shape == (len(rows), 192) and windows.dtype == np.float32
    for k in [3, 500, len(rows) - 3]:
        s = beats["sample"].iat[rows[k]]
        np.testing.assert_allclose(windows[k], rec[s - 96:s + 96], atol=1e-6)
    wide = utils.load_windows([101], before=360, after=360)
    np.testing.assert_array_equal(wide[:, 264:456], windows)


def test_window_outside_the_cached_context_is_refused():
    with pytest.raises(ValueError, match="window"):
        utils.load_windows([100], before=400)


def test_unknown_record_is_refused():
    with pytest.raises(ValueError, match="999"):
        utils.load_beats([100, 999])


def test_render_constants_are_the_channel0_statistics():
    mean, std = utils.channel0_stats()
    assert mean == pytest.approx(utils.CH0_MEAN, abs=1e-9)
    assert std == pytest.approx(utils.CH0_STD, abs=1e-9)


# -- locating, verifying and downloading ------------------------------------------------

def copy_records(dest, records):
    dest.mkdir(parents=True, exist_ok=True)
    for name in utils.record_files(records):
        shutil.copy(SHARED / name, dest / name)
    return dest


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(ekg.config, "CACHE_DIR", tmp_path / "cache")
    ekg.data._load_record.cache_clear()
    yield
    ekg.data._load_record.cache_clear()


def test_a_copy_elsewhere_builds_the_same_table(tmp_path, fresh_cache):
    copy = copy_records(tmp_path / "copy", [100])
    assert utils.load_beats([100], data_dir=copy).equals(utils.load_beats([100]))


def test_truncated_file_is_named_in_the_error(tmp_path, fresh_cache):
    copy = copy_records(tmp_path / "copy", [100])
    data = (copy / "100.dat").read_bytes()
    (copy / "100.dat").write_bytes(data[: len(data) // 2])
    with pytest.raises(utils.DataError, match=r"100\.dat.*truncated or corrupt"):
        utils.load_beats([100], data_dir=copy)


def test_missing_file_is_named_in_the_error(tmp_path, fresh_cache):
    copy = copy_records(tmp_path / "copy", [100])
    (copy / "100.atr").unlink()
    with pytest.raises(utils.DataError, match=r"100\.atr is missing"):
        utils.load_beats([100], data_dir=copy)


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    kaggle = copy_records(tmp_path / "kaggle" / "mitbih-wfdb" / "mitdb", [100])
    monkeypatch.setenv("EKG_KAGGLE_INPUT", str(tmp_path / "kaggle"))
    monkeypatch.delenv("EKG_DATA_DIR", raising=False)
    assert utils.find_data_dir() == kaggle
    monkeypatch.setenv("EKG_DATA_DIR", str(tmp_path / "env"))
    assert utils.find_data_dir() == tmp_path / "env"
    assert utils.find_data_dir(tmp_path / "arg") == tmp_path / "arg"


@pytest.fixture
def physionet_mirror(tmp_path):
    """A local HTTP server laid out like physionet.org/files/mitdb/1.0.0/ (records 100 and 101)."""
    files = copy_records(tmp_path / "www" / "mitdb" / "1.0.0", [100, 101])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", files
    server.shutdown()


def test_download_verifies_every_file(physionet_mirror, tmp_path):
    url, _ = physionet_mirror
    dest = utils.download_mitdb(tmp_path / "dl", records=[100, 101], base_url=url)
    assert sorted(p.name for p in dest.iterdir()) == sorted(utils.record_files([100, 101]) + ["RECORDS"])
    assert wfdb.rdrecord(str(dest / "101")).p_signal.shape == (650_000, 2)


def test_download_rejects_a_corrupted_file(physionet_mirror, tmp_path):
    url, files = physionet_mirror
    data = bytearray((files / "101.dat").read_bytes())
    data[1000] ^= 0xFF
    (files / "101.dat").write_bytes(bytes(data))
    with pytest.raises(utils.DataError, match=r"101\.dat does not match its SHA-256"):
        utils.download_mitdb(tmp_path / "dl", records=[100, 101], base_url=url)
    assert not (tmp_path / "dl" / "101.dat").exists()
    assert not (tmp_path / "dl" / "RECORDS").exists()


def test_unreachable_server_gives_a_clear_error(tmp_path):
    with pytest.raises(utils.DataError, match="Downloading MIT-BIH"):
        utils.download_mitdb(tmp_path / "dl", records=[100], base_url="http://127.0.0.1:9/")
