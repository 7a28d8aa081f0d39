"""The data layer: locating, downloading and verifying MIT-BIH, and the beat table."""
import functools
import hashlib
import http.server
import io
import os
import re
import shutil
import threading
import time

import numpy as np
import pytest
import wfdb

import ekg.config
import ekg.data
from ekg.data import (AAMI_MAP, DS1, DS2, LOCAL_RR_BEATS, PACED, RECORDS, DataError, causal_local_rr,
                      download_mitdb, find_data_dir, load_beats, load_windows, record_files)

SHARED = find_data_dir()


@pytest.fixture(scope="module")
def beats():
    return load_beats()


def test_beat_counts_match_the_standard_mapping(beats):
    assert len(beats) == 109_494
    assert beats["aami"].value_counts().to_dict() == {"N": 90_631, "S": 2_781, "V": 7_236, "F": 803, "Q": 8_043}


@pytest.mark.parametrize("records, expected", [
    (DS1, {"N": 45_866, "S": 944, "V": 3_788, "F": 415, "Q": 8}),
    (DS2, {"N": 44_259, "S": 1_837, "V": 3_221, "F": 388, "Q": 7}),
])
def test_de_chazal_sets(beats, records, expected):
    assert beats[beats["record"].isin(records)]["aami"].value_counts().to_dict() == expected


def test_paced_records_are_in_neither_set():
    assert not set(PACED) & (set(DS1) | set(DS2))
    assert sorted(DS1 + DS2 + PACED) == RECORDS


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
    assert set(beats["symbol"]) <= set(AAMI_MAP)


def test_local_rr_uses_no_current_or_future_beat():
    rr = np.random.default_rng(1).uniform(0.4, 1.2, 200)
    base = causal_local_rr(rr)
    for i in [5, 40, 150]:
        changed = rr.copy()
        changed[i:] *= 3  # the current beat and everything after it
        np.testing.assert_array_equal(causal_local_rr(changed)[:i + 1], base[:i + 1])
    assert np.isnan(base[0])
    np.testing.assert_allclose(base[100], rr[100 - LOCAL_RR_BEATS:100].mean())


def test_windows_are_centred_on_the_r_peak_in_millivolts(beats):
    rec = wfdb.rdrecord(str(SHARED / "101"), channels=[0]).p_signal[:, 0]
    rows = np.flatnonzero(beats["record"] == 101)
    windows = load_windows([101], before=96, after=96)
    assert windows.shape == (len(rows), 192) and windows.dtype == np.float32
    for k in [3, 500, len(rows) - 3]:
        s = beats["sample"].iat[rows[k]]
        np.testing.assert_allclose(windows[k], rec[s - 96:s + 96], atol=1e-6)
    wide = load_windows([101], before=360, after=360)
    np.testing.assert_array_equal(wide[:, 264:456], windows)


def test_window_outside_the_cached_context_is_refused():
    with pytest.raises(ValueError, match="window"):
        load_windows([100], before=400)


def test_unknown_record_is_refused():
    with pytest.raises(ValueError, match="999"):
        load_beats([100, 999])


# -- locating, verifying and downloading ------------------------------------------------

def copy_records(dest, records):
    dest.mkdir(parents=True, exist_ok=True)
    for name in record_files(records):
        shutil.copy(SHARED / name, dest / name)
    return dest


def forget_tables():
    """Forget every table and checksum this process has read, as a new process would."""
    for name in ("_load_record", "_cached_table"):
        if hasattr(getattr(ekg.data, name, None), "cache_clear"):
            getattr(ekg.data, name).cache_clear()
    for name in ("_TABLES", "_CHECKED"):
        if isinstance(getattr(ekg.data, name, None), dict):
            getattr(ekg.data, name).clear()


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(ekg.config, "CACHE_DIR", tmp_path / "cache")
    forget_tables()
    yield tmp_path / "cache"
    forget_tables()


def test_a_copy_elsewhere_builds_the_same_table(tmp_path, fresh_cache, monkeypatch):
    copy = copy_records(tmp_path / "copy", [100])
    from_copy = load_beats([100], data_dir=copy)
    windows = load_windows([100], data_dir=copy)
    # built again, from the shared copy, in another empty cache: the same table and windows
    monkeypatch.setattr(ekg.config, "CACHE_DIR", tmp_path / "other-cache")
    forget_tables()
    assert not (tmp_path / "other-cache").exists()
    assert load_beats([100]).equals(from_copy)
    np.testing.assert_array_equal(load_windows([100]), windows)
    assert (tmp_path / "other-cache").is_dir()


def rewrite_annotations(folder, record, keep_every=2):
    """Rewrite a record's .atr with every other beat annotation only; return the new file's SHA-256."""
    ann = wfdb.rdann(str(folder / str(record)), "atr")
    keep = np.arange(len(ann.sample)) % keep_every == 0
    wfdb.wrann(str(record), "atr", ann.sample[keep], np.asarray(ann.symbol)[keep],
               aux_note=list(np.asarray(ann.aux_note, dtype=object)[keep]), write_dir=str(folder))
    return hashlib.sha256((folder / f"{record}.atr").read_bytes()).hexdigest()


def test_the_cache_is_keyed_to_the_files_it_was_built_from(tmp_path, fresh_cache, monkeypatch):
    full = load_beats([100])  # warm cache, from the shared copy
    # another copy whose annotations differ (and a checksum list that accepts them, as a corrected
    # release of the database would come with): its table, not the cached one, must come back
    copy = copy_records(tmp_path / "copy", [100])
    digest = rewrite_annotations(copy, 100)
    checksums = tmp_path / "mitdb.sha256"
    checksums.write_text(ekg.data.CHECKSUMS.read_text().replace(ekg.data.expected_checksums()["100.atr"], digest))
    committed = ekg.data.CHECKSUMS
    monkeypatch.setattr(ekg.data, "CHECKSUMS", checksums)
    other = load_beats([100], data_dir=copy)
    assert len(other) < 0.6 * len(full)
    assert len(load_windows([100], data_dir=copy)) == len(other)
    monkeypatch.setattr(ekg.data, "CHECKSUMS", committed)
    assert load_beats([100]).equals(full)  # and the shared copy still gets its own table


@pytest.mark.parametrize("new_process", [False, True])
def test_a_warm_cache_still_checks_every_record_before_it_is_read(tmp_path, fresh_cache, new_process):
    copy = copy_records(tmp_path / "copy", [100, 101])
    load_beats([100, 101], data_dir=copy)  # the cache is warm
    if new_process:
        forget_tables()
    data = bytearray((copy / "101.atr").read_bytes())
    data[200] ^= 0x01  # one bit flipped, same size
    (copy / "101.atr").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"101\.atr does not match its SHA-256"):
        load_beats([100, 101], data_dir=copy)
    with pytest.raises(DataError, match=r"101\.atr does not match its SHA-256"):
        load_windows([101], data_dir=copy)
    assert len(load_beats([100], data_dir=copy)) > 2000  # the intact record still loads


def test_checking_an_unchanged_file_again_costs_no_hashing(tmp_path, fresh_cache, monkeypatch):
    copy = copy_records(tmp_path / "copy", [100])
    hashed = []
    real = ekg.data._sha256
    monkeypatch.setattr(ekg.data, "_sha256", lambda path: hashed.append(path.name) or real(path))
    first = ekg.data.verify_files(copy, record_files([100]))
    assert sorted(hashed) == sorted(record_files([100]))
    assert ekg.data.verify_files(copy, record_files([100])) == first and len(hashed) == 3  # size and time alike
    os.utime(copy / "100.atr", ns=(1, 1))  # touched: hashed again
    ekg.data.verify_files(copy, record_files([100]))
    assert hashed[3:] == ["100.atr"]
    assert first == {n: ekg.data.expected_checksums()[n] for n in record_files([100])}


def test_the_checksum_list_may_mark_binary_mode(tmp_path, monkeypatch):
    # sha256sum writes "digest *name" in binary mode and "digest  name" in text mode: both are read
    listing = tmp_path / "sums.sha256"
    listing.write_text("ab" * 32 + " *100.hea\n\n" + "cd" * 32 + "  100.atr\n")
    monkeypatch.setattr(ekg.data, "CHECKSUMS", listing)
    assert ekg.data.expected_checksums() == {"100.hea": "ab" * 32, "100.atr": "cd" * 32}


@pytest.mark.parametrize("ext", [".hea", ".dat", ".atr"])
def test_every_file_of_a_record_is_checked(tmp_path, fresh_cache, ext):
    copy = copy_records(tmp_path / "copy", [100])
    data = bytearray((copy / f"100{ext}").read_bytes())
    data[len(data) // 3] ^= 0x01  # same size, one bit flipped
    (copy / f"100{ext}").write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"100\{ext} does not match its SHA-256"):
        load_beats([100], data_dir=copy)
    with pytest.raises(DataError, match=rf"100\{ext}"):
        ekg.data.verify_files(copy, record_files([100]))


def test_truncated_file_is_named_in_the_error(tmp_path, fresh_cache):
    copy = copy_records(tmp_path / "copy", [100])
    data = (copy / "100.dat").read_bytes()
    (copy / "100.dat").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"100\.dat.*truncated or corrupt"):
        load_beats([100], data_dir=copy)


def test_missing_file_is_named_in_the_error(tmp_path, fresh_cache):
    copy = copy_records(tmp_path / "copy", [100])
    (copy / "100.atr").unlink()
    with pytest.raises(DataError, match=r"100\.atr is missing"):
        load_beats([100], data_dir=copy)


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    kaggle = copy_records(tmp_path / "kaggle" / "mitbih-wfdb" / "mitdb", [100])
    monkeypatch.setenv("EKG_KAGGLE_INPUT", str(tmp_path / "kaggle"))
    monkeypatch.delenv("EKG_DATA_DIR", raising=False)
    assert find_data_dir() == kaggle
    monkeypatch.setenv("EKG_DATA_DIR", str(tmp_path / "env"))
    assert find_data_dir() == tmp_path / "env"
    assert find_data_dir(tmp_path / "arg") == tmp_path / "arg"


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A repository at tmp/repo with nothing beside it, no EKG_DATA_DIR and an empty Kaggle input;
    returns the list that records each download_mitdb call."""
    monkeypatch.setattr(ekg.config, "ROOT", tmp_path / "repo")
    monkeypatch.delenv("EKG_DATA_DIR", raising=False)
    monkeypatch.setenv("EKG_KAGGLE_INPUT", str(tmp_path / "kaggle"))
    (tmp_path / "kaggle").mkdir()
    calls = []
    monkeypatch.setattr(ekg.data, "download_mitdb", lambda dest, *a, **k: calls.append(dest) or dest)
    return calls


def test_a_kaggle_folder_without_annotations_is_not_the_data(tmp_path, elsewhere):
    half = tmp_path / "kaggle" / "ecg-signals" / "mitdb"
    copy_records(half, [100])
    (half / "100.atr").unlink()  # signals only: no reference beats to train on
    whole = copy_records(tmp_path / "kaggle" / "zz-mitbih" / "data", [100])
    assert find_data_dir() == whole
    (whole / "100.atr").unlink()
    assert find_data_dir() == tmp_path / "repo" / "data" / "mitdb"  # none: download into the repository
    assert elsewhere == [tmp_path / "repo" / "data" / "mitdb"]


def test_a_half_finished_download_is_resumed_not_used(tmp_path, elsewhere):
    local = tmp_path / "repo" / "data" / "mitdb"
    shared = copy_records(tmp_path / "shared" / "data" / "mitdb", [100])  # ../shared beside the repository
    assert find_data_dir() == shared and elsewhere == []
    copy_records(local, [100])  # a download that stopped before writing RECORDS
    assert find_data_dir() == local and elsewhere == [local]  # resumed, not taken as complete
    (local / "RECORDS").write_text("100\n")
    assert find_data_dir() == local and len(elsewhere) == 1  # complete: used as it is
    with pytest.raises(DataError, match="^No MIT-BIH copy found; set EKG_DATA_DIR"):
        (local / "RECORDS").unlink()
        find_data_dir(download=False)


class RangeRequestHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server that answers byte-range requests (206), as PhysioNet's does, so that
    wfdb can resume a partial file."""

    def send_head(self):
        ranges = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        if not ranges or not os.path.isfile(path):
            return super().send_head()
        data = open(path, "rb").read()
        start = int(ranges[1])
        end = min(int(ranges[2]) if ranges[2] else len(data) - 1, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        return io.BytesIO(data[start:end + 1])


@pytest.fixture
def physionet_mirror(tmp_path):
    """A local HTTP server laid out like physionet.org/files/mitdb/1.0.0/ (records 100 and 101)."""
    files = copy_records(tmp_path / "www" / "mitdb" / "1.0.0", [100, 101])
    handler = functools.partial(RangeRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", files
    server.shutdown()


def test_download_verifies_every_file(physionet_mirror, tmp_path):
    url, _ = physionet_mirror
    dest = download_mitdb(tmp_path / "dl", records=[100, 101], base_url=url)
    assert sorted(p.name for p in dest.iterdir()) == sorted(record_files([100, 101]) + ["RECORDS"])
    assert wfdb.rdrecord(str(dest / "101")).p_signal.shape == (650_000, 2)
    # RECORDS, written last (find_data_dir takes it as the sign of a finished download), lists them one a line
    assert (dest / "RECORDS").read_text() == "100\n101\n"


def test_download_rejects_a_corrupted_file(physionet_mirror, tmp_path):
    url, files = physionet_mirror
    data = bytearray((files / "101.dat").read_bytes())
    data[1000] ^= 0xFF
    (files / "101.dat").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"101\.dat does not match its SHA-256"):
        download_mitdb(tmp_path / "dl", records=[100, 101], base_url=url)
    assert not (tmp_path / "dl" / "101.dat").exists()
    assert not (tmp_path / "dl" / "RECORDS").exists()


def test_download_resumes_and_keeps_complete_files(physionet_mirror, tmp_path):
    url, files = physionet_mirror
    dest = tmp_path / "dl"
    dest.mkdir()
    good_hea = (files / "100.hea").read_bytes()
    (dest / "100.hea").write_bytes(good_hea)  # already complete
    dat = (files / "100.dat").read_bytes()
    (dest / "100.dat").write_bytes(dat[: len(dat) // 3])  # a third of it arrived before the break
    # the server's 100.hea now differs (same size): a complete local file is kept, not fetched again
    (files / "100.hea").write_bytes(bytes(b ^ 0x01 if i == 10 else b for i, b in enumerate(good_hea)))
    download_mitdb(dest, records=[100], base_url=url)
    assert (dest / "100.hea").read_bytes() == good_hea
    assert (dest / "100.dat").read_bytes() == dat  # the rest appended
    assert (dest / "RECORDS").read_text() == "100\n"


def test_download_fetches_every_record_two_files_at_a_time(tmp_path, monkeypatch):
    jobs, active, most = [], [0], [0]
    lock = threading.Lock()

    def fake_download(job):  # stands in for wfdb's dl_pn_file: records the job, fetches nothing
        with lock:
            jobs.append(job)
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.002)
        with lock:
            active[0] -= 1

    monkeypatch.setattr(wfdb.io.download, "dl_pn_file", fake_download)
    dest = tmp_path / "new" / "nested" / "mitdb"  # folders that do not exist yet
    with pytest.raises(DataError, match=r"100\.hea does not match its SHA-256 sum \(or never arrived\)"):
        download_mitdb(dest, base_url="http://127.0.0.1:9/")
    assert dest.is_dir()
    assert sorted(j[0] for j in jobs) == sorted(record_files(RECORDS))  # all 48 records by default
    # each file from mitdb/1.0.0 straight into dest, resuming (not overwriting) what is there
    assert {j[1:] for j in jobs} == {("", "mitdb/1.0.0", str(dest), False, False)}
    assert most[0] == 2  # PhysioNet asks for at most two connections


def test_unreachable_server_gives_a_clear_error(tmp_path):
    # the error names the server it tried (the one given, not the default) and what to do
    with pytest.raises(DataError, match=r"^Downloading MIT-BIH from http://127\.0\.0\.1:9/ failed .*set EKG_DATA_DIR"):
        download_mitdb(tmp_path / "dl", records=[100], base_url="http://127.0.0.1:9/")


def test_on_kaggle_the_download_goes_to_the_working_folder(tmp_path, elsewhere, monkeypatch):
    """On Kaggle the repository is a read-only input: data/mitdb beside it cannot be written."""
    monkeypatch.setattr(ekg.config, "ON_KAGGLE", True)
    monkeypatch.setattr(ekg.config, "OUTPUT_ROOT", tmp_path / "working")
    working = tmp_path / "working" / "data" / "mitdb"
    assert find_data_dir() == working and elsewhere == [working]
    copy_records(working, [100])
    (working / "RECORDS").write_text("100\n")  # the first notebook's finished download
    assert find_data_dir() == working and len(elsewhere) == 1  # the next notebook uses it as it is
    monkeypatch.setattr(ekg.config, "ON_KAGGLE", False)
    assert find_data_dir() == tmp_path / "repo" / "data" / "mitdb"  # elsewhere: the repository's folder


def test_two_processes_building_one_record_at_once_do_not_collide(fresh_cache, monkeypatch):
    """joblib workers on a cold cache build the same record at once: the second writer's temporary file
    must not be the first's, or the first's replace finds its file moved away (FileNotFoundError)."""
    real_savez, process, nested = np.savez, {"pid": 101}, []

    def savez_then_the_other_process(path, **arrays):
        real_savez(path, **arrays)
        if not nested:  # process A has written its file; process B now builds and replaces its own
            nested.append(True)
            ekg.data._TABLES.clear()
            process["pid"] = 202
            ekg.data._load_record(100, None)
            process["pid"] = 101

    monkeypatch.setattr(ekg.data.os, "getpid", lambda: process["pid"])
    monkeypatch.setattr(ekg.data.np, "savez", savez_then_the_other_process)
    ekg.data._TABLES.clear()
    table, windows = ekg.data._load_record(100, None)
    assert nested and len(table) == len(windows) > 2000
    assert not list((ekg.config.CACHE_DIR / "beats_v2").glob("*.tmp.npz"))
