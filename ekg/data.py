"""MIT-BIH Arrhythmia Database: locate, download and verify it; the beat table and signal windows.

The record lists (all 48, de Chazal's DS1/DS2, paced, validation, fast-mode), the AAMI
class map, and the beat table every later step starts from, built once from the raw
files and cached on disk. Imports: config, NumPy, pandas; wfdb and tqdm inside the
functions that read or download.
"""
from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from . import config
from .config import kaggle_input


FS = 360  # MIT-BIH sampling rate, Hz


RECORDS = [100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 111, 112, 113, 114, 115, 116, 117,
           118, 119, 121, 122, 123, 124, 200, 201, 202, 203, 205, 207, 208, 209, 210, 212, 213,
           214, 215, 217, 219, 220, 221, 222, 223, 228, 230, 231, 232, 233, 234]


#: de Chazal et al. 2004: DS1 trains, DS2 tests. Paced records (102, 104, 107, 217) are in neither.
DS1 = [101, 106, 108, 109, 112, 114, 115, 116, 118, 119, 122, 124, 201, 203, 205, 207, 208, 209,
       215, 220, 223, 230]


DS2 = [100, 103, 105, 111, 113, 117, 121, 123, 200, 202, 210, 212, 213, 214, 219, 221, 222, 228,
       231, 232, 233, 234]


PACED = [102, 104, 107, 217]


#: DS1 patients held out for validation (model choice). Chosen so that S and V
#: beats come from several patients: S 364, V 468, F 12 beats in six records.
VAL_RECORDS = [114, 118, 124, 201, 215, 220]


#: Records used in fast mode: two training, one validation, two test patients.
FAST_RECORDS = [106, 208, 201, 100, 232]


CLASSES = ["N", "S", "V", "F", "Q"]


#: AAMI EC57 classes from MIT-BIH beat symbols (de Chazal et al. 2004).
AAMI_MAP = {**dict.fromkeys("NLRej", "N"), **dict.fromkeys("AaJS", "S"),
            **dict.fromkeys("VE", "V"), "F": "F", **dict.fromkeys("/fQ", "Q")}


BEAT_SYMBOLS = sorted(AAMI_MAP)


#: Samples kept around each R peak in the cache: 1 s either side.
CONTEXT = (360, 360)


#: Beats before the current one that the causal local RR average looks at.
LOCAL_RR_BEATS = 32


CHECKSUMS = config.ROOT / "data" / "mitdb.sha256"


PHYSIONET_URL = os.environ.get("EKG_PHYSIONET_URL", "https://physionet.org/files/")


MITDB_VERSION = "mitdb/1.0.0"


class DataError(RuntimeError):
    """The ECG data is missing, truncated or corrupt; the message says what to do."""


def expected_checksums() -> dict[str, str]:
    """Return {file name: sha256} for every MIT-BIH file, from the list committed in data/."""
    sums = {}
    for line in CHECKSUMS.read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name.lstrip("*")] = digest
    return sums


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: {resolved path: (size, mtime_ns, sha256)} of every file hashed in this process: a file whose
#: size and modification time are unchanged is not hashed again, so checking a record before every
#: read costs a few stat calls.
_CHECKED = {}


def file_sha256(path) -> str:
    """Return the SHA-256 of a file, hashed again only when its size or modification time changed."""
    path = Path(path)
    stat = path.stat()
    key = str(path.resolve())
    known = _CHECKED.get(key)
    if known is not None and known[:2] == (stat.st_size, stat.st_mtime_ns):
        return known[2]
    digest = _sha256(path)
    _CHECKED[key] = (stat.st_size, stat.st_mtime_ns, digest)
    return digest


def verify_files(data_dir, names) -> dict[str, str]:
    """Check files against the committed SHA-256 list; raise DataError naming the first bad one.

    Returns {name: sha256} of the files (those not in the list are hashed, not judged).
    """
    sums = expected_checksums()
    digests = {}
    for name in names:
        path = Path(data_dir) / name
        if not path.is_file():
            raise DataError(f"{path} is missing. Delete {data_dir} and run again to download "
                            f"the MIT-BIH database, or point EKG_DATA_DIR at a complete copy.")
        digests[name] = file_sha256(path)
        if name in sums and digests[name] != sums[name]:
            raise DataError(f"{path} does not match its SHA-256 sum in {CHECKSUMS.name}: the file "
                            f"is truncated or corrupt. Delete it and run again to download it afresh.")
    return digests


def record_files(records) -> list[str]:
    """Return the WFDB file names (.hea, .dat, .atr) of the given records."""
    return [f"{r}{ext}" for r in records for ext in (".hea", ".dat", ".atr")]


def download_mitdb(dest, records=None, base_url=None) -> Path:
    """Download MIT-BIH records from PhysioNet into dest, verify them, and return dest.

    wfdb's own dl_database first asks physionet.org/content for the latest version,
    which cannot be redirected; fetching the pinned 1.0.0 files one by one with
    wfdb's dl_pn_file keeps wfdb doing the transfer and makes the checksums apply.
    """
    import wfdb
    from .config import progress_bar as tqdm

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    records = RECORDS if records is None else [int(r) for r in records]
    names = record_files(records)
    wfdb.io.download.set_db_index_url(base_url or PHYSIONET_URL)
    jobs = [(name, "", MITDB_VERSION, str(dest), False, False) for name in names]
    try:
        with ThreadPoolExecutor(2) as pool:  # PhysioNet asks for at most 2 connections
            list(tqdm(pool.map(wfdb.io.download.dl_pn_file, jobs), total=len(jobs),
                      desc="downloading mitdb", unit="file"))
    except Exception as err:
        raise DataError(f"Downloading MIT-BIH from {base_url or PHYSIONET_URL} failed ({err}). "
                        f"Check the connection, or set EKG_DATA_DIR to a local copy.") from err
    finally:
        wfdb.io.download.set_db_index_url()
    sums = expected_checksums()
    for name in names:
        path = dest / name
        if not path.is_file() or _sha256(path) != sums[name]:
            path.unlink(missing_ok=True)
            raise DataError(f"Downloaded file {path} does not match its SHA-256 sum (or never arrived) and "
                            f"was deleted. Run again to retry the download.")
    (dest / "RECORDS").write_text("".join(f"{r}\n" for r in records))
    return dest


def _looks_like_mitdb(path: Path) -> bool:
    return (path / "100.hea").is_file() and (path / "100.atr").is_file()


def find_data_dir(data_dir=None, download=True) -> Path:
    """Return the folder holding the MIT-BIH records.

    Looks, in order, at: the data_dir argument; $EKG_DATA_DIR; an attached Kaggle
    input; data/mitdb in the repository; ../shared/data/mitdb beside it. If none
    holds the data, downloads it from PhysioNet into data/mitdb (download=True): the
    repository's, or on Kaggle, where the repository is a read-only input, the working
    folder's (/kaggle/working/data/mitdb, found there again by the next notebook).
    """
    if data_dir is not None:
        return Path(data_dir)
    if os.environ.get("EKG_DATA_DIR"):
        return Path(os.environ["EKG_DATA_DIR"])
    if kaggle_input().is_dir():
        for hea in sorted(kaggle_input().glob("**/100.hea")):
            if _looks_like_mitdb(hea.parent):
                return hea.parent
    # on Kaggle the repository is a read-only input: the working folder holds the download
    local = (config.OUTPUT_ROOT if config.ON_KAGGLE else config.ROOT) / "data" / "mitdb"
    # download_mitdb writes RECORDS last: without it a download was interrupted and is resumed.
    if (local / "RECORDS").is_file():
        return local
    shared = config.ROOT.parent / "shared" / "data" / "mitdb"
    if _looks_like_mitdb(shared) and not local.exists():
        return shared
    if not download:
        raise DataError("No MIT-BIH copy found; set EKG_DATA_DIR or allow the download.")
    return download_mitdb(local)


def causal_local_rr(rr_prev: np.ndarray, n: int = LOCAL_RR_BEATS) -> np.ndarray:
    """Mean of the n RR intervals that ended before the current beat (NaN for the first beats).

    Only past beats enter, so the same number can be computed live by a monitor.
    The current beat's own RR is left out, so a premature beat does not pull its
    own reference down.
    """
    rr = pd.Series(np.asarray(rr_prev, dtype=float))
    return rr.shift(1).rolling(n, min_periods=1).mean().to_numpy()


def _build_record(data_dir: Path, record: int):
    """The beat table columns and context windows of one record, read from its (verified) files."""
    import wfdb

    path = str(data_dir / str(record))
    try:
        sig = wfdb.rdrecord(path, channels=[0]).p_signal[:, 0].astype(np.float32)
        ann = wfdb.rdann(path, "atr")
    except Exception as err:
        raise DataError(f"wfdb could not read record {record} in {data_dir}: {err}") from err
    symbols = np.asarray(ann.symbol)
    ann_idx = np.flatnonzero(np.isin(symbols, BEAT_SYMBOLS))
    samples = ann.sample[ann_idx]
    rr = np.diff(samples) / FS
    rr_prev = np.r_[np.nan, rr]
    table = {
        "record": np.full(len(samples), record),
        "sample": samples,
        "symbol": symbols[ann_idx],
        # The seed's images skipped a beat whose annotation was the first or last of its record.
        "seed_image": (ann_idx > 0) & (ann_idx < len(symbols) - 1),
        "rr_prev": rr_prev,
        "rr_next": np.r_[rr, np.nan],
        "rr_local": causal_local_rr(rr_prev),
        "rr_record": np.full(len(samples), np.nanmean(rr)),
    }
    before, after = CONTEXT
    padded = np.pad(sig, (before, after), mode="edge")  # beats near the record's ends
    windows = np.lib.stride_tricks.sliding_window_view(padded, before + after)[samples]
    return table, np.ascontiguousarray(windows)


def _cache_file(record: int, files_key: str) -> Path:
    """The cache file of a record built from the files whose checksums give files_key."""
    return config.CACHE_DIR / "beats_v2" / f"{record}-{files_key}.npz"


def record_key(record: int, data_dir=None) -> str:
    """Check one record's files against the checksum list (DataError naming a bad one) and return a
    short key of their SHA-256 sums: every cache built from a record's files is filed under it, so
    another copy of the data, or a changed file, never gets this copy's cached numbers."""
    digests = verify_files(find_data_dir(data_dir), record_files([record]))
    return hashlib.sha256(" ".join(digests[n] for n in sorted(digests)).encode()).hexdigest()[:16]


#: Tables read this process, by cache file: {path: (table, windows)}.
_TABLES = {}


def _load_record(record: int, data_dir: str | None):
    """Return (table, windows) of one record. Its files are checked against the checksum list
    before every use, warm cache or not, and the cache entry is the one built from exactly these
    files (keyed by their SHA-256), so another copy of the data never gets this copy's table."""
    folder = find_data_dir(data_dir)
    path = _cache_file(record, record_key(record, folder))
    if path in _TABLES:
        return _TABLES[path]
    if not path.is_file():
        table, windows = _build_record(folder, record)
        path.parent.mkdir(parents=True, exist_ok=True)
        # a name of this process's and thread's own: two workers building the same record at once
        # (joblib on a cold cache) each write their own file, and the later replace is as good as the first
        tmp = path.with_name(f"{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp.npz")
        np.savez(tmp, windows=windows, **table)
        tmp.replace(path)  # an interrupted build never leaves half a cache file
    with np.load(path) as z:
        table = pd.DataFrame({k: z[k] for k in z.files if k != "windows"})
        windows = z["windows"]
    _TABLES[path] = (table, windows)
    return table, windows


def _records_arg(records) -> list[int]:
    if records is None:
        return list(RECORDS)
    records = [int(r) for r in records]
    unknown = sorted(set(records) - set(RECORDS))
    if unknown:
        raise ValueError(f"not MIT-BIH records: {unknown}")
    return records


def load_beats(records=None, data_dir=None, progress=False) -> pd.DataFrame:
    """Return the beat table: one row per beat annotation of the given records (all 48 by default).

    Columns: record, sample (R-peak index at 360 Hz), symbol, aami (N/S/V/F/Q),
    seed_image (kept by the seed's image rule), and RR features in seconds:
    rr_prev, rr_next, rr_local (causal mean of the previous 32 RR) and rr_record.
    Built from the raw files once, then read from the on-disk cache.
    """
    from .config import progress_bar as tqdm

    records = _records_arg(records)
    key = None if data_dir is None else str(data_dir)
    parts = [_load_record(r, key)[0] for r in tqdm(records, desc="beat table", disable=not progress)]
    beats = pd.concat(parts, ignore_index=True)
    beats["aami"] = pd.Categorical(beats["symbol"].map(AAMI_MAP), categories=CLASSES)
    return beats


def load_windows(records=None, before=96, after=96, data_dir=None) -> np.ndarray:
    """Return channel-0 signal windows in mV, shape (beats, before + after), rows as in load_beats.

    The window runs from `before` samples before the R peak to `after` samples
    after it (at most 360 each way); the default is the seed's 192-sample window.
    """
    if not (0 < before <= CONTEXT[0] and 0 < after <= CONTEXT[1]):
        raise ValueError(f"window must lie within {CONTEXT} samples of the R peak")
    key = None if data_dir is None else str(data_dir)
    start = CONTEXT[0] - before
    return np.concatenate([_load_record(r, key)[1][:, start:start + before + after]
                           for r in _records_arg(records)])


def channel0_stats(data_dir=None) -> tuple[float, float]:
    """Return the mean and standard deviation (mV) of channel 0 over all 48 records."""
    import wfdb

    data_dir = find_data_dir(data_dir)
    total = total_sq = count = 0.0
    for r in RECORDS:
        x = wfdb.rdrecord(str(data_dir / str(r)), channels=[0]).p_signal[:, 0]
        total, total_sq, count = total + x.sum(), total_sq + (x ** 2).sum(), count + len(x)
    mean = total / count
    return float(mean), float(np.sqrt(total_sq / count - mean ** 2))
