"""Shared code for the ECG beat-classification notebooks.

Every notebook imports this module in its first cell, so the notebooks read as
a report and this file holds the machinery. Sections:

    setup     paths, fast mode, seeds
    data      MIT-BIH records: locate, download, verify, the beat table
    images    the seed project's beat images, rendered from raw signal
    splits    the seed's leaky 80/20 split and the inter-patient split
    features  patient-relative model inputs (causal, so a monitor can compute them live)
    models    the seed's CNN, an image CNN and a signal CNN with rhythm inputs
    training  device, batches, the training loop, checkpoints, saved models
    metrics   per-class scores, EC57 statistics as bxb computes them, bootstrap by patient
    classify  any WFDB record, at reference or detected beats, at any sampling rate
    monitor   streaming QRS detection, beat events, clinical alarms, signal quality
    plots     one save_fig helper
"""
from __future__ import annotations

import hashlib
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

# ----------------------------------------------------------------------------
# setup
# ----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent

#: Fast mode (EKG_FAST=1): a few records and tiny epochs, so the test suite can
#: re-run every notebook in minutes. Outputs then go to a temporary folder.
FAST = os.environ.get("EKG_FAST", "0") not in ("", "0", "false", "False")

def kaggle_input() -> Path:
    """Return where Kaggle mounts attached data sets ($EKG_KAGGLE_INPUT lets tests fake it)."""
    return Path(os.environ.get("EKG_KAGGLE_INPUT", "/kaggle/input"))


ON_KAGGLE = Path("/kaggle/working").is_dir()


def _output_root() -> Path:
    if os.environ.get("EKG_OUTPUT_DIR"):
        return Path(os.environ["EKG_OUTPUT_DIR"])
    if ON_KAGGLE:  # the repository is read-only there
        return Path("/kaggle/working")
    if FAST:  # never overwrite the committed plots, splits or models
        return Path(tempfile.mkdtemp(prefix="ekg_fast_"))
    return ROOT


#: Everything the notebooks write (plots/, models/, data/splits/) goes under here.
OUTPUT_ROOT = _output_root()
PLOTS_DIR = OUTPUT_ROOT / "plots"
SPLITS_DIR = OUTPUT_ROOT / "data" / "splits"
#: The beat-table cache is the same in fast and full mode, so it stays in the repo.
CACHE_DIR = Path(os.environ.get("EKG_CACHE_DIR", (Path("/kaggle/working") if ON_KAGGLE else ROOT) / "data" / "cache"))


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and (if imported) PyTorch so runs repeat."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------

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

CHECKSUMS = ROOT / "data" / "mitdb.sha256"
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


def verify_files(data_dir, names) -> None:
    """Check files against the committed SHA-256 list; raise DataError naming the first bad one."""
    sums = expected_checksums()
    for name in names:
        path = Path(data_dir) / name
        if not path.is_file():
            raise DataError(f"{path} is missing. Delete {data_dir} and run again to download "
                            f"the MIT-BIH database, or point EKG_DATA_DIR at a complete copy.")
        if name in sums and _sha256(path) != sums[name]:
            raise DataError(f"{path} does not match its SHA-256 sum in {CHECKSUMS.name}: the file "
                            f"is truncated or corrupt. Delete it and run again to download it afresh.")


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
    from tqdm.auto import tqdm

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
        if _sha256(dest / name) != sums[name]:
            (dest / name).unlink()
            raise DataError(f"Downloaded file {dest / name} does not match its SHA-256 sum and was "
                            f"deleted. Run again to retry the download.")
    (dest / "RECORDS").write_text("".join(f"{r}\n" for r in records))
    return dest


def _looks_like_mitdb(path: Path) -> bool:
    return (path / "100.hea").is_file() and (path / "100.atr").is_file()


def find_data_dir(data_dir=None, download=True) -> Path:
    """Return the folder holding the MIT-BIH records.

    Looks, in order, at: the data_dir argument; $EKG_DATA_DIR; an attached Kaggle
    input; data/mitdb in the repository; ../shared/data/mitdb beside it. If none
    holds the data, downloads it from PhysioNet into data/mitdb (download=True).
    """
    if data_dir is not None:
        return Path(data_dir)
    if os.environ.get("EKG_DATA_DIR"):
        return Path(os.environ["EKG_DATA_DIR"])
    if kaggle_input().is_dir():
        for hea in sorted(kaggle_input().glob("**/100.hea")):
            if _looks_like_mitdb(hea.parent):
                return hea.parent
    local = ROOT / "data" / "mitdb"
    # download_mitdb writes RECORDS last: without it a download was interrupted and is resumed.
    if (local / "RECORDS").is_file():
        return local
    shared = ROOT.parent / "shared" / "data" / "mitdb"
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
    import wfdb

    verify_files(data_dir, record_files([record]))
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


def _cache_file(record: int) -> Path:
    return CACHE_DIR / "beats_v1" / f"{record}.npz"


@lru_cache(maxsize=None)
def _load_record(record: int, data_dir: str | None):
    path = _cache_file(record)
    if not path.is_file():
        table, windows = _build_record(find_data_dir(data_dir), record)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, windows=windows, **table)
        tmp.replace(path)  # an interrupted build never leaves half a cache file
    with np.load(path) as z:
        table = pd.DataFrame({k: z[k] for k in z.files if k != "windows"})
        windows = z["windows"]
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
    from tqdm.auto import tqdm

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


# ----------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------

#: channel0_stats() over all records (a test recomputes them): the seed fixed its
#: y-axis to mean +- 3 sd so that beat amplitude stays visible across images.
CH0_MEAN, CH0_STD = -0.33859005208333, 0.47236843197534
RENDER_YLIM = (CH0_MEAN - 3 * CH0_STD, CH0_MEAN + 3 * CH0_STD)
IMAGE_SHAPE = (128, 192)


def render_beats(windows, ylim=RENDER_YLIM, height=IMAGE_SHAPE[0], batch=2048) -> np.ndarray:
    """Render signal windows (n, width) as uint8 images (n, height, width): a dark line on white.

    Column j is one sample; the line from sample j to j+1 is drawn in column j,
    as a plotted line would be. Vectorised over the batch: no figure per image.
    """
    windows = np.atleast_2d(np.asarray(windows, dtype=np.float32))
    lo_y, hi_y = ylim
    out = np.empty((len(windows), height, windows.shape[1]), dtype=np.uint8)
    rows = np.arange(height, dtype=np.float32)[None, :, None]
    for start in range(0, len(windows), batch):
        w = windows[start:start + batch]
        r = np.clip((hi_y - w) / (hi_y - lo_y) * (height - 1), 0, height - 1)
        nxt = np.concatenate([r[:, 1:], r[:, -1:]], axis=1)
        top = np.floor(np.minimum(r, nxt))[:, None, :]
        bottom = np.ceil(np.maximum(r, nxt))[:, None, :]
        out[start:start + batch] = np.where((rows >= top) & (rows <= bottom), 0, 255)
    return out


def export_image_folder(beats, windows, dest) -> Path:
    """Write rendered beats as PNGs in the Kaggle "ECG images" layout dest/MITBIH_img/{class}/.

    File names are counters per class, as in the Kaggle set, so they carry no
    record. Returns the MITBIH_img folder.
    """
    from PIL import Image

    root = Path(dest) / "MITBIH_img"
    images = render_beats(windows)
    labels = np.asarray(beats["aami"])
    for cls in CLASSES:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, idx in enumerate(np.flatnonzero(labels == cls)):
            Image.fromarray(images[idx], mode="L").save(root / cls / f"{i}.png")
    return root


def find_kaggle_images() -> Path | None:
    """Return an attached Kaggle "ECG images" folder (MITBIH_img), or None."""
    if kaggle_input().is_dir():
        for candidate in sorted(kaggle_input().glob("**/MITBIH_img")):
            if all((candidate / c).is_dir() for c in CLASSES):
                return candidate
    return None


def kaggle_image_dataset(root, transform=None):
    """Return a torchvision ImageFolder over a MITBIH_img folder, images as grayscale.

    ImageFolder sorts class folders alphabetically (F, N, Q, S, V); the dataset
    carries that order in .classes, which the seed mixed up with N, S, V, F, Q.
    """
    from torchvision import datasets, transforms

    steps = [transforms.Grayscale()] + ([transform] if transform else [transforms.PILToTensor()])
    return datasets.ImageFolder(str(root), transform=transforms.Compose(steps))


# ----------------------------------------------------------------------------
# splits
# ----------------------------------------------------------------------------

def seed_split(beats, test_frac=0.2, seed=0) -> pd.DataFrame:
    """Return the seed's split: each class shuffled, its first test_frac to test, the rest to train.

    Only beats the seed had images of are kept. Beats of one patient land on
    both sides: that is the leak this project measures.
    """
    beats = beats[beats["seed_image"]]
    rng = np.random.default_rng(seed)
    split = pd.Series("train", index=beats.index)
    for cls in CLASSES:
        idx = rng.permutation(beats.index[beats["aami"] == cls].to_numpy())
        split[idx[:int(len(idx) * test_frac)]] = "test"
    return beats[["record", "sample", "symbol", "aami"]].assign(split=split)


def inter_patient_split(beats, val_records=VAL_RECORDS) -> pd.DataFrame:
    """Return the de Chazal split: DS1 less val_records trains, val_records validate, DS2 tests.

    Paced records belong to neither and are left out.
    """
    split = np.select([beats["record"].isin(val_records), beats["record"].isin(DS1),
                       beats["record"].isin(DS2)], ["val", "train", "test"], default="")
    out = beats[["record", "sample", "symbol", "aami"]].assign(split=split)
    return out[out["split"] != ""]


def save_split(manifest, name) -> Path:
    """Write a split manifest to data/splits/NAME.csv under the output root; return the path."""
    SPLITS_DIR.mkdir(parents=True, exist_ok=True)
    path = SPLITS_DIR / f"{name}.csv"
    manifest.to_csv(path, index=False)
    return path


def load_split(name) -> pd.DataFrame:
    """Return a split manifest ("seed" or "inter_patient") with the beat table's columns joined.

    Reads data/splits/NAME.csv, written by the wrangling notebook.
    """
    path = SPLITS_DIR / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run notebooks/02_wrangling.ipynb first")
    manifest = pd.read_csv(path)
    beats = load_beats(sorted(manifest["record"].unique()))
    merged = manifest[["record", "sample", "split"]].merge(beats.reset_index(), on=["record", "sample"])
    return merged.set_index("index").rename_axis(None)


# ----------------------------------------------------------------------------
# features
# ----------------------------------------------------------------------------

#: Samples before/after the R peak that the signal model's beat branch sees (0.36 s each way).
BEAT_WINDOW = (128, 128)
#: The wide context (CONTEXT, 2 s) is averaged in blocks of this many samples (90 Hz).
CONTEXT_STEP = 4
#: Beats of the patient's own recent past that form the template and typical amplitude.
TEMPLATE_BEATS = 32
#: Half-width of the QRS region whose peak-to-peak gives a beat's amplitude (50 ms).
QRS_HALF = 18
RHYTHM_FEATURES = ["rr_prev / local RR", "rr_next / local RR", "local RR (s)", "amplitude / typical"]


def causal_median(x, n=TEMPLATE_BEATS) -> np.ndarray:
    """Return, for each row i of x, the median of rows i-n .. i-1 (the past only).

    Before n beats have passed, the missing history is filled with copies of the
    first beat, so row 0 gets itself; a live monitor fills its history the same way.
    """
    x = np.asarray(x, dtype=np.float32)
    padded = np.concatenate([np.repeat(x[:1], n, axis=0), x])
    windows = np.lib.stride_tricks.sliding_window_view(padded, n, axis=0)[:len(x)]
    return np.median(windows, axis=-1).astype(np.float32)


def beat_parts(context, baseline=None) -> tuple:
    """Return (ctx, beat, amplitude) for context windows (n, 720) in mV: the windows less their
    baseline (each row's median unless given), the beat window (n, 256) and the QRS peak-to-peak."""
    context = np.asarray(context, dtype=np.float32)
    centre = context.shape[1] // 2
    if baseline is None:
        baseline = np.median(context, axis=1)
    ctx = context - np.asarray(baseline, dtype=np.float32)[:, None]  # baseline wander: median of 2 s
    beat = ctx[:, centre - BEAT_WINDOW[0]:centre + BEAT_WINDOW[1]]
    qrs = ctx[:, centre - QRS_HALF:centre + QRS_HALF]
    return ctx, beat, qrs.max(axis=1) - qrs.min(axis=1)


def patient_inputs(context, rr_prev, rr_next, rr_local) -> dict:
    """Return the signal model's inputs for one record's beats, in time order.

    context: (n, 720) channel-0 windows in mV around each R peak; RR values in seconds.
    Each beat is compared with the same patient's recent beats, never with the
    future: amplitude is divided by the patient's typical QRS amplitude (median of
    the last 32 beats), a second channel holds the beat minus the median of those
    32 beats, and RR intervals are divided by the local average RR. Per-beat
    z-scoring would erase the amplitude that marks V beats.
    The first beat of the record stands in for the beats before it; a live monitor
    computes the same numbers beat by beat (_ward_inputs).
    Returns {"beat": (n, 2, 256), "context": (n, 1, 180), "rhythm": (n, 4)}, float32.
    """
    ctx, beat, amplitude = beat_parts(context)
    return _inputs_from_parts(ctx, beat, amplitude, causal_median(amplitude), causal_median(beat),
                              rr_prev, rr_next, rr_local)


def _inputs_from_parts(ctx, beat, amplitude, typical, template, rr_prev, rr_next, rr_local) -> dict:
    """The model inputs from beat_parts, the causal medians of amplitude and beat, and RR values."""
    typical = np.maximum(typical, 0.05)[:, None]  # never divide by noise
    rr_prev, rr_next = np.asarray(rr_prev, dtype=np.float64), np.asarray(rr_next, dtype=np.float64)
    reference = np.asarray(rr_local, dtype=np.float64).copy()
    for fallback in (rr_prev, rr_next):  # the first beats of a record have no local average yet
        reference = np.where(np.isnan(reference), fallback, reference)
    reference = np.clip(np.nan_to_num(reference, nan=0.8), 0.2, 3.0)

    def ratio(rr):
        return np.clip(np.nan_to_num(rr / reference, nan=1.0), 0, 4)

    rhythm = np.stack([ratio(rr_prev), ratio(rr_next), reference,
                       np.clip(amplitude / typical[:, 0], 0, 5)], axis=1)
    return {
        "beat": np.stack([beat / typical, (beat - template) / typical], axis=1).astype(np.float32),
        "context": (ctx / typical).reshape(len(ctx), -1, CONTEXT_STEP).mean(-1)[:, None].astype(np.float32),
        "rhythm": rhythm.astype(np.float32),
    }


@lru_cache(maxsize=None)
def _record_inputs(record: int) -> dict:
    path = CACHE_DIR / "inputs_v1" / f"{record}.npz"
    if not path.is_file():
        beats = load_beats([record])
        inputs = patient_inputs(load_windows([record], *CONTEXT), beats["rr_prev"], beats["rr_next"],
                                beats["rr_local"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **inputs)
        tmp.replace(path)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def load_inputs(records=None) -> dict:
    """Return patient_inputs for the given records, rows as in load_beats(records); cached on disk."""
    parts = [_record_inputs(r) for r in _records_arg(records)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ----------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------

import torch  # noqa: E402  (the data layer above works without torch)
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class SeedCNN(nn.Module):
    """The seed's best model, as it was: two 3x3 convolutions of 4 filters on a 120x120 image,
    each followed by ReLU and 2x2 max-pooling, dropout 0.5, one linear layer 3600 -> 5."""

    def __init__(self, n_classes=5):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 30 * 30, n_classes)

    def forward(self, image):
        x = F.max_pool2d(F.relu(self.conv1(image)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(self.dropout(x.flatten(1)))


def _conv_block(cin, cout, dims, kernel):
    conv, bn, pool = ((nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dims == 2
                      else (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d))
    return nn.Sequential(conv(cin, cout, kernel, padding=kernel // 2, bias=False), bn(cout),
                         nn.ReLU(inplace=True), pool(2))


class ImageCNN(nn.Module):
    """An image CNN built for beat pictures: four conv-BN-ReLU-pool blocks, global pooling."""

    def __init__(self, n_classes=5, width=16):
        super().__init__()
        chans = [1, width, 2 * width, 4 * width, 8 * width]
        self.features = nn.Sequential(*[_conv_block(a, b, 2, 3) for a, b in zip(chans, chans[1:])])
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(2 * chans[-1], n_classes))

    def forward(self, image):
        x = self.features(image)
        return self.head(torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1))


class SignalCNN(nn.Module):
    """A 1-D CNN on the patient-scaled beat (and beat minus template), a 2-s context, and rhythm.

    rr_next_cap_s: if set, the model sees the RR interval to the next beat only up to this many
    seconds (longer ones as equal to it), so a live monitor can classify a beat at most
    rr_next_cap_s plus the detector's decision time after it, without waiting for a slow next beat.
    """

    def __init__(self, n_classes=5, width=32, n_rhythm=len(RHYTHM_FEATURES), rr_next_cap_s=None):
        super().__init__()
        self.rr_next_cap_s = rr_next_cap_s
        self.beat = nn.Sequential(_conv_block(2, width // 2, 1, 7), _conv_block(width // 2, width, 1, 5),
                                  _conv_block(width, 2 * width, 1, 5), _conv_block(2 * width, 2 * width, 1, 3))
        self.context = nn.Sequential(_conv_block(1, width // 2, 1, 7), _conv_block(width // 2, width, 1, 5),
                                     _conv_block(width, width, 1, 3))
        self.rhythm = nn.Sequential(nn.Linear(n_rhythm, 16), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(4 * width + 2 * width + 16, 64), nn.ReLU(), nn.Dropout(0.3),
                                  nn.Linear(64, n_classes))

    def extra_repr(self):
        return f"rr_next_cap_s={self.rr_next_cap_s}"

    def forward(self, beat, context, rhythm):
        if self.rr_next_cap_s:  # rhythm[:, 1] is rr_next / local RR, rhythm[:, 2] the local RR in s
            rhythm = torch.cat([rhythm[:, :1], torch.minimum(rhythm[:, 1:2], self.rr_next_cap_s / rhythm[:, 2:3]),
                                rhythm[:, 2:]], 1)
        b, c = self.beat(beat), self.context(context)
        pooled = [b.mean(2), b.amax(2), c.mean(2), c.amax(2), self.rhythm(rhythm)]
        return self.head(torch.cat(pooled, 1))


ARCHITECTURES = {"SeedCNN": SeedCNN, "ImageCNN": ImageCNN, "SignalCNN": SignalCNN}


# ----------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------

def get_device(verbose=True) -> torch.device:
    """Return CUDA when a usable GPU is present (printing its name), else the CPU."""
    if torch.cuda.is_available():
        device = torch.device("cuda")
        if verbose:
            print("GPU:", torch.cuda.get_device_name(device))
    else:
        device = torch.device("cpu")
        if verbose:
            print(f"no GPU: training on the CPU with {torch.get_num_threads()} threads")
    return device


class BeatSet:
    """Beats of a split with their labels and model inputs, built on demand.

    frame: rows of load_split(...) (index = row of load_beats over the split's
    records). Holds channel-0 context windows, patient-relative signal inputs and
    integer labels in CLASSES order.
    """

    def __init__(self, frame, records):
        rows = np.asarray(frame.index)
        self.frame = frame
        self.context = load_windows(records, *CONTEXT)[rows]
        self.inputs = {k: v[rows] for k, v in load_inputs(records).items()}
        self._image_cache = {}
        self.labels = pd.Categorical(frame["aami"], categories=CLASSES).codes.astype(np.int64)

    @classmethod
    def from_arrays(cls, context, inputs, labels):
        """A BeatSet from context windows, patient_inputs(...) and integer labels (no split frame)."""
        data = cls.__new__(cls)
        data.frame, data.context, data.inputs, data.labels, data._image_cache = None, context, inputs, labels, {}
        return data

    def __len__(self):
        return len(self.labels)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(CLASSES))

    def batch(self, spec, idx, augment=False, rng=None) -> list:
        """Return the model's input tensors for beats idx, as spec (a model's "input" meta) says."""
        if spec["kind"] == "signal":
            out = [self.inputs[k][idx] for k in ("beat", "context", "rhythm")]
            if augment:  # small gain changes and noise: robustness, not new patients
                gain = rng.uniform(0.9, 1.1, (len(idx), 1, 1)).astype(np.float32)
                out[0] = out[0] * gain + rng.normal(0, 0.02, out[0].shape).astype(np.float32)
                out[1] = out[1] * gain
            return [torch.from_numpy(np.ascontiguousarray(x)) for x in out]
        if augment:
            return [beat_images(self.context[idx], spec, augment, rng)]
        mean, std = spec["normalise"]
        return [(self._images(spec)[idx].float() / 255 - mean) / std]

    def _images(self, spec) -> torch.Tensor:
        """All beats rendered once at the spec's size, as uint8: un-augmented epochs re-use them."""
        key = repr(sorted(spec.items()))
        if key not in self._image_cache:
            plain = {**spec, "normalise": [0.0, 1 / 255]}  # keeps beat_images' output in 0..255
            self._image_cache[key] = torch.cat([beat_images(self.context[i:i + 4096], plain).round().to(torch.uint8)
                                                for i in range(0, len(self), 4096)])
        return self._image_cache[key]


def beat_images(context, spec, augment=False, rng=None) -> torch.Tensor:
    """Render context windows (n, 720) as normalised image tensors (n, 1, H, W) for an image model.

    With augment, each beat is shifted by up to 4 samples and its amplitude scaled
    and offset slightly before rendering, as a different electrode placement would.
    """
    from torchvision.transforms.v2 import functional as TF

    before, after = spec["window"]
    centre = context.shape[1] // 2
    if augment:
        shift = rng.integers(-4, 5, len(context))
        cols = centre - before + shift[:, None] + np.arange(before + after)
        windows = np.take_along_axis(context, cols, axis=1)
        windows = windows * rng.uniform(0.85, 1.15, (len(context), 1)) + rng.uniform(-0.1, 0.1, (len(context), 1))
    else:
        windows = context[:, centre - before:centre + after]
    images = torch.from_numpy(render_beats(windows, ylim=tuple(spec["ylim"])))[:, None]
    images = TF.resize(images, list(spec["size"]), antialias=True)
    mean, std = spec["normalise"]
    return (images.float() / 255 - mean) / std


def class_weights(counts, power=0.5, cap=20.0) -> np.ndarray:
    """Return loss weights (max count / count) ** power, capped; 1 for the largest class.

    The square root and the cap keep rare classes (F: about 400 training beats, Q: 8
    in DS1) from soaking up false positives, as full inverse-frequency weights do.
    """
    counts = np.maximum(np.asarray(counts, dtype=float), 1)
    return np.minimum((counts.max() / counts) ** power, cap).astype(np.float32)


def predict(model, data, spec, device=None, batch_size=1024) -> np.ndarray:
    """Return class probabilities (n, 5) for every beat of a BeatSet."""
    device = device or next(model.parameters()).device
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            idx = np.arange(start, min(start + batch_size, len(data)))
            inputs = [x.to(device) for x in data.batch(spec, idx)]
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                out.append(torch.softmax(model(*inputs).float(), 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def load_checkpoint(path) -> dict:
    """torch.load with weights_only=True: tensors and plain containers only, never pickled code.

    Raises ValueError naming the file if it holds anything else.
    """
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} holds pickled Python objects, not only weights and plain data; "
                         f"refusing to load it (weights_only=True)") from err


def fit(name, model, spec, train, val, cfg, device, checkpoint_dir=None):
    """Train model on BeatSet train, choosing the epoch by validation macro-F1 over N, S, V, F.

    cfg: epochs, batch_size, lr, optimizer ("sgd" with momentum, or "adamw" with a
    one-cycle schedule), weight_decay, weighted (square-root class weights in the loss)
    or class_weights (explicit, in CLASSES order),
    epoch_size (beats drawn per epoch, None for all), augment, seed.
    Saves a checkpoint each epoch to checkpoint_dir/NAME.ckpt and resumes from it
    when it exists for the same settings. Returns (model with the best weights, history).
    """
    from tqdm.auto import tqdm

    model.to(device)
    params = model.parameters()
    if cfg["optimizer"] == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg.get("momentum", 0.9))
    else:
        optimizer = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 1e-2))
    epoch_size = min(cfg.get("epoch_size") or len(train), len(train))
    steps = -(-epoch_size // cfg["batch_size"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg["lr"], total_steps=cfg["epochs"] * steps) \
        if cfg["optimizer"] == "adamw" else None
    if cfg.get("class_weights") is not None:  # explicit weights, in CLASSES order
        weights = np.asarray(cfg["class_weights"], np.float32)
    elif cfg.get("weighted"):
        weights = class_weights(train.class_counts())
    else:
        weights = np.ones(len(CLASSES), np.float32)
    weights = torch.tensor(weights, device=device)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    history, best_score, best_state, start_epoch = [], -1.0, None, 0
    ckpt = Path(checkpoint_dir) / f"{name}.ckpt" if checkpoint_dir else None
    if ckpt is not None and ckpt.is_file():
        state = load_checkpoint(ckpt)
        # resume only the same run: same settings and the same architecture (repr includes its options)
        if state["cfg"] == {k: cfg[k] for k in sorted(cfg)} and state.get("model_repr") == repr(model):
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
            history, best_score, best_state = state["history"], state["best_score"], state["best_state"]
            start_epoch = state["epoch"] + 1
            print(f"{name}: resuming after epoch {start_epoch} from {ckpt}")
    for epoch in range(start_epoch, cfg["epochs"]):
        t0 = time.perf_counter()
        rng = np.random.default_rng([cfg["seed"], epoch])  # per-epoch stream: a resumed run repeats it
        torch.manual_seed(cfg["seed"] * 1000 + epoch)
        order = rng.permutation(len(train))[:epoch_size]
        model.train()
        total = 0.0
        for step in tqdm(range(steps), desc=f"{name} epoch {epoch + 1}/{cfg['epochs']}", leave=False):
            idx = order[step * cfg["batch_size"]:(step + 1) * cfg["batch_size"]]
            inputs = [x.to(device, non_blocking=True) for x in train.batch(spec, idx, cfg.get("augment"), rng)]
            target = torch.from_numpy(train.labels[idx]).to(device)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                loss = F.cross_entropy(model(*inputs).float(), target, weight=weights)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            total += loss.item() * len(idx)
        probs = predict(model, val, spec, device)
        val_loss = float(F.nll_loss(torch.log(torch.from_numpy(probs) + 1e-9), torch.from_numpy(val.labels)))
        scores = per_class_scores(val.labels, probs.argmax(1))
        row = {"epoch": epoch + 1, "train_loss": total / epoch_size, "val_loss": val_loss,
               "val_macro_f1": macro_f1(val.labels, probs.argmax(1)),
               **{f"val_f1_{c}": float(scores.loc[c, "F1"]) for c in CLASSES[:4]},
               "seconds": time.perf_counter() - t0}
        history.append(row)
        if row["val_macro_f1"] > best_score:
            best_score = row["val_macro_f1"]
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        print(f"{name} epoch {epoch + 1}: train loss {row['train_loss']:.3f}, val loss {val_loss:.3f}, "
              f"val macro-F1 {row['val_macro_f1']:.3f}, {row['seconds']:.0f} s")
        if ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"cfg": {k: cfg[k] for k in sorted(cfg)}, "model_repr": repr(model), "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler else None,
                        "history": history, "best_score": best_score, "best_state": best_state},
                       ckpt.with_suffix(".tmp"))
            ckpt.with_suffix(".tmp").replace(ckpt)
    if best_state is not None:
        model.load_state_dict(best_state)
    return model, pd.DataFrame(history)


def save_model(path, model, meta) -> Path:
    """Save weights and plain-data metadata (no pickled code) so load_model can rebuild the model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "meta": meta}, path)
    return path


def load_model(path, device="cpu"):
    """Return the model saved at path, in eval mode, with its metadata dict as model.meta.

    meta holds the class order, sampling rate, input kind, window, normalisation,
    training split and validation metrics.
    """
    saved = load_checkpoint(path)
    meta = saved["meta"]
    model = ARCHITECTURES[meta["arch"]](**meta.get("arch_kwargs", {}))
    model.load_state_dict(saved["state_dict"])
    model.meta = meta
    return model.to(device).eval()


def model_path(name) -> Path:
    """Return models/NAME.pt under the output root, or the committed one in the repository."""
    for base in (OUTPUT_ROOT, ROOT):
        if (base / "models" / f"{name}.pt").is_file():
            return base / "models" / f"{name}.pt"
    return OUTPUT_ROOT / "models" / f"{name}.pt"


# ----------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------

def macro_f1(y_true, y_pred) -> float:
    """Return the mean F1 over N, S, V, F (Q is too rare in DS1 to score), classes as integers."""
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, labels=[0, 1, 2, 3], average="macro", zero_division=0))


def per_class_scores(y_true, y_pred) -> pd.DataFrame:
    """Return per-class Se (recall), +P (precision), specificity, F1 and support, rows in CLASSES order."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(CLASSES)))
    p, r, f, n = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    tn = cm.sum() - cm.sum(0) - cm.sum(1) + np.diag(cm)
    spec = tn / np.maximum(tn + cm.sum(0) - np.diag(cm), 1)
    return pd.DataFrame({"Se": r, "+P": p, "Sp": spec, "F1": f, "beats": n}, index=CLASSES)

#: Row/column labels of an EC57 comparison: the five classes, and O for "no beat on this side"
#: (a reference beat the detector missed, or a detection with no reference beat).
EC57_LABELS = CLASSES + ["O"]


def ec57_confusion(beats_df) -> pd.DataFrame:
    """Return the 6x6 reference-by-prediction count table (N, S, V, F, Q, O) of a classified-beats table.

    Rows whose aami_true is "*" (detections inside reference-marked ventricular
    flutter or fibrillation) are not counted, as bxb does not count them.
    """
    beats_df = beats_df[beats_df["aami_true"] != "*"]
    true = pd.Categorical(beats_df["aami_true"].fillna("O"), categories=EC57_LABELS)
    pred = pd.Categorical(beats_df["aami_pred"].fillna("O"), categories=EC57_LABELS)
    return pd.crosstab(true, pred, dropna=False).reindex(index=EC57_LABELS, columns=EC57_LABELS, fill_value=0)


def _ec57_from_counts(m) -> dict:
    """EC57 statistics from count tables m[..., 6, 6] (rows reference, columns prediction), as bxb does.

    VEB: a fusion or unknown beat called V is not a false positive. SVEB: an unknown
    beat called S is not a false positive. QRS: O counts missed and extra beats.
    """
    N, S, V, Fu, Q, O = range(6)
    beats = [N, S, V, Fu, Q]
    m = np.asarray(m, dtype=float)

    def ratio(a, b):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)

    vtp, stp = m[..., V, V], m[..., S, S]
    vfn = m[..., V, :].sum(-1) - vtp
    vfp = m[..., N, V] + m[..., S, V] + m[..., O, V]
    vtn = m[..., [N, S, Fu, Q, O], :][..., [N, S, Fu, Q]].sum((-1, -2))
    sfn = m[..., S, :].sum(-1) - stp
    sfp = m[..., N, S] + m[..., V, S] + m[..., Fu, S] + m[..., O, S]
    qtp = m[..., beats, :][..., beats].sum((-1, -2))
    return {"QRS Se": ratio(qtp, qtp + m[..., beats, O].sum(-1)),
            "QRS +P": ratio(qtp, qtp + m[..., O, beats].sum(-1)),
            "VEB Se": ratio(vtp, vtp + vfn), "VEB +P": ratio(vtp, vtp + vfp), "VEB FPR": ratio(vfp, vtn + vfp),
            "SVEB Se": ratio(stp, stp + sfn), "SVEB +P": ratio(stp, stp + sfp)}


def score(beats_df) -> dict:
    """Return the EC57 statistics of a classified-beats table (from classify_record or a test split).

    beats_df needs aami_true and aami_pred (None or "O" where a side has no beat) and,
    for per-record results, a record column. Returns a dict:
      confusion      6x6 counts, reference rows by predicted columns (N, S, V, F, Q, O)
      classes        per-class Se, +P, specificity, F1 and support over matched beats
      accuracy, macro_f1 (N, S, V, F) over matched beats
      gross          EC57 Series (QRS, VEB and SVEB Se/+P, VEB FPR) from the summed counts
      per_record     the same statistics per record (when there is a record column)
      record_average the mean over records of each per-record statistic (undefined ones skipped)
    e and j count as N (the AAMI class table, de Chazal 2004); bxb's SVEB option counts them as S.
    """
    confusion = ec57_confusion(beats_df)
    matched = beats_df[beats_df["aami_true"].isin(CLASSES) & beats_df["aami_pred"].isin(CLASSES)]
    codes = {c: i for i, c in enumerate(CLASSES)}
    y_true, y_pred = matched["aami_true"].map(codes).to_numpy(), matched["aami_pred"].map(codes).to_numpy()
    out = {"confusion": confusion, "classes": per_class_scores(y_true, y_pred),
           "accuracy": float((y_true == y_pred).mean()) if len(matched) else float("nan"),
           "macro_f1": macro_f1(y_true, y_pred),
           "gross": pd.Series(_ec57_from_counts(confusion.to_numpy()))}
    if "record" in beats_df:
        per_record = {r: _ec57_from_counts(ec57_confusion(g).to_numpy()) for r, g in beats_df.groupby("record")}
        out["per_record"] = pd.DataFrame(per_record).T.astype(float)
        out["record_average"] = out["per_record"].mean()
    return out


def bootstrap_by_record(beats_df, n_boot=1000, seed=0, level=0.95) -> pd.DataFrame:
    """Return percentile confidence intervals of the gross EC57 statistics and per-class F1,
    resampling whole records (patients) with replacement, never single beats."""
    records = sorted(beats_df["record"].unique())
    counts = np.stack([ec57_confusion(beats_df[beats_df["record"] == r]).to_numpy() for r in records])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(records), (n_boot, len(records)))
    totals = counts[draws].sum(1)  # (n_boot, 6, 6)
    stats = _ec57_from_counts(totals)
    block = totals[:, :5, :5]
    tp = np.diagonal(block, axis1=1, axis2=2)
    # F1 = 2 TP / (beats of the class + calls of it); 0 when both are 0, as scikit-learn's
    # zero_division=0 gives the point estimate (macro_f1), so interval and estimate agree
    denominator = block.sum(1) + block.sum(2)
    f1 = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
    for i, c in enumerate(CLASSES[:4]):
        stats[f"F1 {c}"] = f1[:, i]
    stats["macro-F1"] = f1[:, :4].mean(axis=1)
    alpha = (1 - level) / 2
    return pd.DataFrame({name: {"low": np.nanquantile(v, alpha), "high": np.nanquantile(v, 1 - alpha)}
                         for name, v in stats.items()}).T


# ----------------------------------------------------------------------------
# classify
# ----------------------------------------------------------------------------

#: bxb's match window: a detected beat within 150 ms of a reference beat is the same beat.
MATCH_WINDOW_S = 0.15


def match_beats(reference, detected, fs, window_s=MATCH_WINDOW_S):
    """Pair detected with reference beat positions (samples), each at most once, within window_s,
    with wfdb's Comparitor (the bxb-style matcher). Returns (ref_index, det_index) of the pairs."""
    from wfdb.processing import Comparitor

    reference, detected = np.asarray(reference, dtype=int), np.asarray(detected, dtype=int)
    if len(reference) == 0 or len(detected) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    comparison = Comparitor(reference, detected, int(round(window_s * fs)))
    comparison.compare()
    ref_idx = np.flatnonzero(comparison.matching_sample_nums >= 0)
    return ref_idx, comparison.matching_sample_nums[ref_idx].astype(int)


def vf_spans(symbols, samples) -> list:
    """Return the (start, end) samples of reference-marked ventricular flutter/fibrillation ("[" to "]")."""
    spans, start = [], None
    for sym, s in zip(symbols, samples):
        if sym == "[":
            start = s
        elif sym == "]" and start is not None:
            spans.append((start, s))
            start = None
    if start is not None:
        spans.append((start, np.inf))
    return spans


def in_spans(samples, spans) -> np.ndarray:
    """Return a mask of the samples that fall inside any (start, end) span."""
    samples = np.asarray(samples)
    mask = np.zeros(len(samples), bool)
    for a, b in spans:
        mask |= (samples >= a) & (samples <= b)
    return mask


def read_signal(record_path, channel=None):
    """Read one channel of a WFDB record in mV; return (signal, fs, channel name).

    channel: an index or a signal name (default: the first channel). Samples the
    record marks invalid come back as NaN.
    """
    import wfdb

    header = wfdb.rdheader(str(record_path))
    if channel is None:
        index = 0
    elif isinstance(channel, str):
        if channel not in header.sig_name:
            raise ValueError(f"{record_path} has no channel {channel!r}; it has {header.sig_name}")
        index = header.sig_name.index(channel)
    else:
        index = int(channel)
    record = wfdb.rdrecord(str(record_path), channels=[index])
    return record.p_signal[:, 0].astype(np.float32), float(record.fs), record.sig_name[0]


def resample(signal, fs_from, fs_to=FS) -> np.ndarray:
    """Resample a signal between sampling rates with scipy's polyphase filter (NaNs filled first)."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    signal = np.asarray(signal, dtype=np.float64)
    bad = np.isnan(signal)
    if bad.all():
        return np.full(int(round(len(signal) * fs_to / fs_from)), np.nan, np.float32)
    if bad.any():  # the filter would spread a NaN over its whole length
        signal = signal.copy()
        signal[bad] = np.interp(np.flatnonzero(bad), np.flatnonzero(~bad), signal[~bad])
    if fs_from == fs_to:
        return signal.astype(np.float32)
    ratio = Fraction(fs_to / fs_from).limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator).astype(np.float32)


def refine_peaks(signal, samples, fs, half_width_s=0.05) -> np.ndarray:
    """Move each detected QRS to its largest deflection from the local baseline within +-50 ms,
    where the MIT-BIH annotations put the beat, so windows line up as in training."""
    signal = np.asarray(signal, dtype=np.float32)
    if np.isnan(signal).any():
        signal = np.nan_to_num(signal)
    half = int(round(half_width_s * fs))
    samples = np.clip(np.asarray(samples, dtype=int), 0, len(signal) - 1)
    # the +-half windows, repeating the edge samples at the ends (cost per peak, not per sample:
    # the live detector refines one peak at a time in a 3-s buffer)
    windows = signal[np.clip(samples[:, None] + np.arange(-half, half + 1), 0, len(signal) - 1)]
    # the window's median: its middle value (the length is odd), which np.partition finds without
    # np.median's overhead, paid once per beat by the live detector
    deviation = np.abs(windows - np.partition(windows, half, axis=1)[:, half:half + 1])
    return np.clip(samples + deviation.argmax(1) - half, 0, len(signal) - 1)


def detect_beats(signal, fs, **settings) -> np.ndarray:
    """Return the R-peak sample positions that the monitor's StreamingQRS finds in a whole signal.

    The same detector as the live monitor, fed 10-s chunks, so offline scores are
    the monitor's. NaN samples count as 0 (no beat is found in them). settings:
    StreamingQRS constants to change for this call (for sensitivity checks).
    """
    detector = StreamingQRS(fs, **settings)
    step = int(10 * fs)
    signal = np.asarray(signal, dtype=np.float32)
    peaks = [p for i in range(0, len(signal), step) for p in detector.feed(signal[i:i + step])]
    return np.asarray(peaks, dtype=int)


def beats_from_signal(signal, samples) -> tuple:
    """Return (context windows (n, 720), rr_prev, rr_next, rr_local) for R peaks in a 360-Hz signal."""
    samples = np.asarray(samples, dtype=int)
    rr = np.diff(samples) / FS
    rr_prev, rr_next = np.r_[np.nan, rr], np.r_[rr, np.nan]
    before, after = CONTEXT
    padded = np.pad(np.nan_to_num(signal), (before, after), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, before + after)[samples]
    return np.ascontiguousarray(windows, dtype=np.float32), rr_prev, rr_next, causal_local_rr(rr_prev)


def classify_beats(model, signal, samples, device="cpu") -> np.ndarray:
    """Return class probabilities (n, 5) for beats at samples of a 360-Hz channel-0-like signal."""
    context, rr_prev, rr_next, rr_local = beats_from_signal(signal, samples)
    data = BeatSet.from_arrays(context, patient_inputs(context, rr_prev, rr_next, rr_local),
                               np.zeros(len(samples), np.int64))
    return predict(model, data, model.meta["input"], torch.device(device))


def classify_record(record_path, model, beats="reference", channel=None, annotator="atr") -> pd.DataFrame:
    """Classify every beat of a WFDB record with a loaded model; return one row per beat.

    beats="reference": at the annotated beat positions; beats="detect": at the beats
    found by the project's QRS detector (detect_beats). Any sampling rate: the
    signal is resampled to the model's. Columns: sample (in the record's own rate),
    time (s), aami_pred, p_N .. p_Q, and, where reference annotations exist,
    symbol and aami_true. With detected beats, detections are matched to reference
    beats within 150 ms as bxb does; a detection with no reference beat has
    aami_true "O", a reference beat with no detection has aami_pred "O", and a
    detection inside reference-marked ventricular flutter has aami_true "*" (bxb
    does not count those).
    """
    import wfdb

    if beats not in ("reference", "detect"):
        raise ValueError(f"beats must be 'reference' or 'detect', not {beats!r}")
    signal, fs, _ = read_signal(record_path, channel)
    model_fs = model.meta["fs"]
    x = resample(signal, fs, model_fs)
    ref = None
    if Path(f"{record_path}.{annotator}").is_file():
        ann = wfdb.rdann(str(record_path), annotator)
        keep = np.isin(ann.symbol, BEAT_SYMBOLS)
        ref = pd.DataFrame({"sample": ann.sample[keep], "symbol": np.asarray(ann.symbol)[keep]})
        flutter = vf_spans(ann.symbol, ann.sample)
    elif beats == "reference":
        raise DataError(f"{record_path}.{annotator} not found: no reference beats to classify; use beats='detect'")
    if beats == "reference":
        positions = ref["sample"].to_numpy()
    else:
        positions = np.round(detect_beats(x, model_fs) * fs / model_fs).astype(int)
    at_model_rate = np.clip(np.round(positions * model_fs / fs).astype(int), 0, len(x) - 1)
    probs = classify_beats(model, x, at_model_rate) if len(positions) else np.zeros((0, len(CLASSES)))
    out = pd.DataFrame({"sample": positions, "time": positions / fs,
                        "aami_pred": np.asarray(CLASSES)[probs.argmax(1)] if len(probs) else []})
    for i, c in enumerate(CLASSES):
        out[f"p_{c}"] = probs[:, i]
    if ref is None:
        return out
    if beats == "reference":
        return out.assign(symbol=ref["symbol"].to_numpy(), aami_true=ref["symbol"].map(AAMI_MAP).to_numpy())
    ref_i, det_i = match_beats(ref["sample"].to_numpy(), positions, fs)
    out["symbol"], out["aami_true"] = None, "O"
    out.loc[in_spans(positions, flutter), "aami_true"] = "*"  # inside reference VF: not counted (bxb)
    out.loc[det_i, "symbol"] = ref["symbol"].to_numpy()[ref_i]
    out.loc[det_i, "aami_true"] = ref["symbol"].map(AAMI_MAP).to_numpy()[ref_i]
    missed = ref.drop(index=ref_i).assign(time=lambda d: d["sample"] / fs, aami_pred="O",
                                          aami_true=lambda d: d["symbol"].map(AAMI_MAP))
    return pd.concat([out, missed], ignore_index=True).sort_values("sample", kind="stable").reset_index(drop=True)

# ----------------------------------------------------------------------------
# monitor
# ----------------------------------------------------------------------------

class StreamingQRS:
    """Pan-Tompkins QRS detection (Pan & Tompkins 1985) on a stream of samples.

    Written here because the well-kept detectors (wfdb's XQRS and gqrs, neurokit2,
    biosppy) all take a whole recording at once. Causal filters carry their state
    across chunks; a peak of the integrated signal is examined 0.1 s after it (once
    its neighbours are in) and held 0.25 s in case a larger peak (the QRS after a
    large P wave) replaces it, so a beat is decided about 0.45 s after its R peak;
    a missed beat is searched back for when the gap grows too long. Decisions
    are taken in time order, so the result does not depend on the chunk sizes.
    feed(x) takes the next samples and returns the R-peak positions decided now,
    as absolute sample indices of the stream.
    """

    # The settings, developed on the 48 MIT-BIH records (as Pan and Tompkins' were); change them
    # per detector with StreamingQRS(fs, NAME=value).
    REFRACTORY_S = 0.2  # no second beat within this of a beat
    HOLD_S = 0.25  # a tentative beat waits this long for a larger neighbour
    T_WAVE_S = 0.36  # a peak this soon after a beat, with less than T_SLOPE of its slope, is its T wave
    T_SLOPE = 0.5
    SEARCH_BACK = 0.7  # search back for a missed beat at this fraction of the threshold ...
    RR_MISSED = 1.66  # ... once this many mean RR intervals have passed without a beat
    R_SEARCH_END_S = 0.03  # the R peak is not looked for in the integrator peak's last 30 ms

    def __init__(self, fs=FS, **settings):
        from scipy.signal import butter, sosfilt_zi

        for name, value in settings.items():
            if not name.isupper() or not hasattr(StreamingQRS, name):
                raise ValueError(f"StreamingQRS has no setting {name!r}")
            setattr(self, name, value)
        self.fs = fs
        self.sos = butter(2, [5, 15], btype="bandpass", fs=fs, output="sos")
        self.zi = sosfilt_zi(self.sos) * 0
        self.window = int(round(0.15 * fs))  # moving-window integration, 150 ms
        self.refractory = int(round(self.REFRACTORY_S * fs))
        self.hold = int(round(self.HOLD_S * fs))
        self.keep = int(round(3.0 * fs))  # samples of history held: bounded memory
        self.raw = np.zeros(0, np.float32)
        self.band = np.zeros(0, np.float32)
        self.mwi = np.zeros(0, np.float32)
        self.tail = np.zeros(4 + self.window - 1, np.float32)  # derivative and integration history
        self.offset = 0  # absolute index of raw[0]
        self.n = 0  # samples seen
        self.checked = 0  # absolute index up to which MWI peaks were examined
        self.spki = self.npki = None
        self.last_peak = None
        self.last_mwi_peak = None  # the latest accepted integrator peak, tentative or emitted
        self.last_emitted = None
        self.tentative = None  # (index, value) of a beat that a bigger peak may still replace
        self.rr = []  # recent RR intervals (samples) for the search-back
        self.candidates = []  # (index, value) of sub-threshold MWI peaks since the last beat

    def feed(self, x) -> list:
        return StreamingQRS.feed_many([self], np.asarray(x, dtype=np.float32)[None])[0]

    @staticmethod
    def feed_many(detectors, chunks) -> list:
        """Feed equal-length chunks (p, n) to p detectors of one sampling rate; return each one's new
        R peaks. The band-pass filter runs on all rows in one call, which is what lets one core follow
        a ward of streams; the results are the same as feeding each detector alone."""
        from scipy.signal import sosfilt

        chunks = np.asarray(chunks, dtype=np.float32)
        if chunks.shape[1] == 0:
            return [[] for _ in detectors]
        if np.isnan(chunks).any():
            chunks = np.nan_to_num(chunks)
        band, zi = sosfilt(detectors[0].sos, chunks, axis=1, zi=np.stack([d.zi for d in detectors], axis=1))
        band = band.astype(np.float32)
        tails = np.stack([d.tail for d in detectors])
        ext = np.concatenate([tails[:, :4], band], axis=1)  # the last 4 band-passed samples
        sq = np.concatenate([tails[:, 4:], ((2 * ext[:, 4:] + ext[:, 3:-1] - ext[:, 1:-3] - 2 * ext[:, :-4]) / 8) ** 2],
                            axis=1)
        width = detectors[0].window
        kernel = np.full(width, 1 / width, np.float32)
        out = []
        for k, d in enumerate(detectors):
            d.zi, d.tail = zi[:, k].copy(), np.concatenate([ext[k, -4:], sq[k, sq.shape[1] - width + 1:]])
            # a running sum would round differently for different chunkings; a convolution sums
            # each window afresh, so the integrator is bit-for-bit the same whatever the chunks
            mwi = np.convolve(sq[k], kernel, "valid").astype(np.float32)
            out.append(d._decide(chunks[k], band[k], mwi))
        return out

    def _decide(self, x, band, mwi) -> list:
        from scipy.signal import find_peaks

        self.raw, self.band, self.mwi = (np.concatenate([self.raw, x]), np.concatenate([self.band, band]),
                                         np.concatenate([self.mwi, mwi]))
        self.n += len(x)
        if self.spki is None:
            if self.n < 2 * self.fs:  # learning phase: 2 s to set the first thresholds
                return []
            level = np.sqrt(self.mwi[:2 * int(self.fs)])  # the first 2 s, whatever the chunk size
            self.spki, self.npki = 0.25 * float(level.max()), 0.5 * float(level.mean())
        beats = []
        # A peak counts once the integrator is known a margin past it; find_peaks sees the
        # margin on both sides, so a peak's neighbours are always in view.
        margin = self.refractory // 2
        settled = self.n - margin
        lo = max(self.checked - self.offset - 1 - margin, 0)
        seg = self.mwi[lo:settled + margin - self.offset + 1]
        peaks, _ = find_peaks(seg)
        # keep a peak only if it is the first maximum within +-margin: a local rule, so the same
        # peaks survive however the stream was cut (find_peaks' distance= depends on the segment)
        for k in peaks:
            p = k + lo + self.offset
            if p < self.checked or p >= settled or k < margin or k >= len(seg) - margin \
                    or seg[k - margin:k + margin + 1].argmax() != margin:
                continue
            beats += self._advance(p)
            beats += self._consider(p, float(np.sqrt(self.mwi[p - self.offset])))
        self.checked = max(self.checked, settled)
        beats += self._advance(settled)
        if len(self.raw) > self.keep:
            cut = len(self.raw) - self.keep
            self.raw, self.band, self.mwi = self.raw[cut:], self.band[cut:], self.mwi[cut:]
            self.offset += cut
        return beats

    def _threshold(self):
        return self.npki + 0.25 * (self.spki - self.npki)

    def _consider(self, p, value):
        if self.tentative is not None and p - self.tentative[0] < self.hold:
            # A larger peak within the hold wins: a large P wave was taken first and the QRS
            # follows it (record 108), or the first peak was the start of a wide complex.
            if value > self.tentative[1]:
                self.tentative = (p, value)
                self.last_mwi_peak = p
                return []
            if p - self.tentative[0] < self.refractory:
                return []
        if self.last_mwi_peak is not None and p - self.last_mwi_peak < self.refractory:
            return []
        if value > self._threshold():
            if self.last_mwi_peak is not None and p - self.last_mwi_peak < self.T_WAVE_S * self.fs \
                    and self._is_t_wave(p):
                self.npki = 0.125 * value + 0.875 * self.npki
                return []
            self.spki = 0.125 * value + 0.875 * self.spki
            return self._hold(p, value)
        self.npki = 0.125 * value + 0.875 * self.npki
        self.candidates.append((p, value))
        return []

    def _hold(self, p, value):
        """Keep a new beat tentative for one refractory period, emitting the previous one."""
        out = self._accept(self.tentative[0]) if self.tentative is not None else []
        self.tentative = (p, value)
        self.last_mwi_peak = p
        self.candidates = [c for c in self.candidates if c[0] > p]
        return out

    def _slope(self, i):
        a = max(i - self.offset - self.window, 0)
        return float(np.abs(np.diff(self.band[a:i - self.offset + 1])).max(initial=0))

    def _is_t_wave(self, p):
        return self._slope(p) < self.T_SLOPE * self._slope(self.last_mwi_peak)

    def _advance(self, until):
        """Take the decisions due by sample `until` in time order, so chunk size never matters:
        emit a held beat whose hold is over, or search back through a gap grown too long."""
        out = []
        while True:
            if self.tentative is not None and self.tentative[0] + self.hold <= until:
                out += self._accept(self.tentative[0])
                continue
            if self.last_mwi_peak is None or len(self.rr) < 2:
                break
            due = self.last_mwi_peak + self.RR_MISSED * sum(self.rr) / len(self.rr)  # the last 8
            if due > until:
                break
            found = self._search_back()
            if found is None:
                break
            out += found
        return out

    def _search_back(self):
        """The largest sub-threshold peak since the last beat, if above half the threshold (or None)."""
        # Pan and Tompkins search back at half the threshold; searching at the very moment the gap
        # grows too long, that picked up P waves in long pauses, so 0.7 here, and never within
        # 360 ms of the last beat (its T wave).
        best = [c for c in self.candidates if c[1] > self.SEARCH_BACK * self._threshold()
                and c[0] - self.last_mwi_peak >= self.T_WAVE_S * self.fs]
        if not best:
            return None
        p, value = max(best, key=lambda c: c[1])
        self.spki = 0.25 * value + 0.75 * self.spki
        return self._hold(p, value)

    def _accept(self, p):
        self.tentative = None
        if self.last_emitted is not None:
            self.rr = (self.rr + [p - self.last_emitted])[-8:]
        self.last_emitted = p
        # The R peak: the largest band-passed deflection in the 250 ms before the integrator's peak
        # (less its last R_SEARCH_END_S: the causal integrator peaks as the complex ends, and its
        # tail is not the R wave), then the largest deflection of the raw signal within 50 ms of it,
        # as the annotators mark it.
        a = max(p - int(0.25 * self.fs) - self.offset, 0)
        b = max(p - int(self.R_SEARCH_END_S * self.fs) - self.offset + 1, a + 1)
        r = a + int(np.abs(self.band[a:b]).argmax())
        r = int(refine_peaks(self.raw, [r], self.fs)[0]) + self.offset
        if self.last_peak is not None and r - self.last_peak < self.refractory:
            return []
        self.last_peak = r
        return [r]


#: Every alarm threshold in one place, with where it comes from. Change them here.
ALARM_THRESHOLDS = {
    # Ventricular tachycardia: 3 or more consecutive ventricular beats at a rate above 100 bpm
    # (ACC/AHA/ESC 2006 ventricular arrhythmia guideline; the MIT-BIH "(VT" rhythm label).
    "vt_min_beats": 3, "vt_min_rate_bpm": 100,
    # Couplet: exactly 2 consecutive ventricular beats. Bigeminy / trigeminy: a ventricular beat
    # after every 1 / 2 other beats, alarmed after 3 such cycles (as bedside monitors do).
    "pattern_cycles": 3,
    # Frequent ectopy: more than this many S or V beats in the last minute (the common bedside
    # default for a "PVCs/min high" alarm is 10).
    "ectopic_per_min": 10,
    # Tachycardia and bradycardia: mean rate over the last 8 beats above / below these (adult
    # bedside defaults; AHA defines tachycardia above 100 and bradycardia below 60 bpm at rest).
    "rate_beats": 8, "tachycardia_bpm": 120, "bradycardia_bpm": 50,
    # ... and a rate alarm ends only once the rate is this far back inside the limits (hysteresis),
    # so a rate hovering at a limit is one alarm.
    "rate_hysteresis_bpm": 5,
    # Pause / asystole: no beat for this many seconds (3 s pause is the usual Holter/monitor
    # criterion; asystole alarms at about 4 s on bedside monitors).
    "pause_s": 3.0, "asystole_s": 4.0,
    # Signal quality, judged on 1-s blocks: flat (lead off) when the peak-to-peak is below
    # flat_mv; saturated when a run of identical samples at an extreme lasts saturation_s;
    # noisy when the median absolute second difference exceeds noise_mv (clean ECG at 360 Hz
    # sits near 0.005 mV). Arrhythmia alarms stay off while the signal is bad and for
    # quality_hold_s after it recovers.
    "flat_mv": 0.05, "saturation_s": 0.05, "noise_mv": 0.06, "quality_hold_s": 3.0,
    # Re-alarm hold-off: an alarm that has ended and comes back within this many seconds of its
    # last announcement is reported with announced=False (logged, no new sound), so a rhythm that
    # flips back and forth gives one alarm, not dozens (repeat alarms feed alarm fatigue: Drew et
    # al., PLoS One 2014). Life-threatening alarms (ventricular tachycardia, asystole) use the
    # shorter hold-off. A project choice, not a standard: bedside monitors make it configurable.
    "realarm_s": 60.0, "realarm_critical_s": 10.0,
}

CRITICAL_ALARMS = {"ventricular tachycardia", "asystole"}

ARRHYTHMIA_ALARMS = ["ventricular tachycardia", "couplet", "bigeminy", "trigeminy", "frequent ectopy",
                     "tachycardia", "bradycardia", "pause", "asystole"]


def block_quality(x, thresholds=ALARM_THRESHOLDS, fs=FS, adc_limits=None) -> str:
    """Return the quality of one block of samples: "ok", "missing", "flat", "saturated" or "noisy"."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) == 0:
        return "ok"
    if np.isnan(x).mean() > 0.1:
        return "missing"
    x = x[~np.isnan(x)]
    if np.ptp(x) < thresholds["flat_mv"]:
        return "flat"
    run = max(int(thresholds["saturation_s"] * fs), 2)
    if adc_limits is not None:
        at_limit = (x <= adc_limits[0]) | (x >= adc_limits[1])
    else:  # unknown ADC range: a flat run at the block's own extreme is a clipped signal
        at_limit = (x >= x.max()) | (x <= x.min())
    same = np.r_[False, np.diff(x) == 0] & at_limit
    if len(x) >= run and same.sum() >= run - 1 \
            and np.lib.stride_tricks.sliding_window_view(same, run - 1).all(axis=1).any():
        return "saturated"
    if len(x) > 3 and np.median(np.abs(np.diff(x, 2))) > thresholds["noise_mv"]:
        return "noisy"
    return "ok"


class Monitor:
    """A bedside monitor for one patient's ECG stream: finds beats, classifies them, raises alarms.

    Monitor(model, fs) takes chunks of any length (ints or floats, NaN for missing
    samples) through push(samples) and returns the events decided so far, each a
    dict with "type" ("beat", "alarm" or "signal_quality") and "time" in seconds
    from the start of the stream:
      beat: R-peak time, class, probabilities, and the delay from R peak to event;
      alarm: kind (one of ARRHYTHMIA_ALARMS), start time, evidence, and announced (False
        for the same alarm back within its re-alarm hold-off: logged, not sounded);
      signal_quality: kind ("missing", "flat", "saturated", "noisy" or "ok" when it recovers).
    A beat is classified once its inputs exist: 1 s of signal after its R peak and
    the next R peak, or, when that is slow to come, once the model no longer needs
    it: a model with rr_next_cap_s sees the next RR interval only up to that cap,
    so its beats wait at most the cap plus the detector's decision time (otherwise
    2 s, then classified as if the next RR were usual). Memory is bounded: a few seconds of
    signal and the last 32 beats. Arrhythmia alarms are suppressed while the signal
    quality is bad.
    """

    MAX_WAIT_S = 2.0  # classify a beat without its next R peak after this long
    NEXT_BEAT_DECIDED_S = 0.5  # the detector decides a beat about 0.45 s after its R peak

    def __init__(self, model, fs, thresholds=None, adc_limits=None, device="cpu"):
        if not fs or fs <= 0:
            raise ValueError(f"sampling rate must be positive, not {fs!r}")
        self.model, self.fs, self.device = model, float(fs), torch.device(device)
        self.model_fs = model.meta["fs"]
        self.th = {**ALARM_THRESHOLDS, **(thresholds or {})}
        self.adc_limits = adc_limits
        self.detector = StreamingQRS(self.model_fs)
        self.n_in = 0  # input samples seen
        self.n = 0  # samples at the model's rate produced
        self.last_in = None  # last input sample, for interpolation across chunks
        self.buffer = np.zeros(0, np.float32)  # recent signal at the model's rate, NaN kept
        self.buffer_start = 0
        self.block = np.zeros(0, np.float32)  # samples of the current 1-s quality block
        self.block_start = 0
        self.quality, self.bad_until = "ok", -1.0
        self.pending = []  # detected R peaks (samples at model rate) waiting to be classified
        self.history, self.amplitudes = [], []  # beat windows and QRS amplitudes of the last 32 beats
        self.last_r = None
        self.rr = []  # RR intervals (s) of the last LOCAL_RR_BEATS beats
        self.recent = []  # (time, class, rr_prev) of the last beats, for rhythm alarms
        self.active = set()  # alarms currently on
        self.announced = {}  # when each kind of alarm was last announced

    # -- input --------------------------------------------------------------------
    def _resample(self, x):
        """Linear interpolation onto the model's sampling grid, carried across chunks."""
        if self.fs == self.model_fs:
            return x
        t_in = (self.n_in - 1 + np.arange(len(x) + 1)) / self.fs  # includes the previous sample
        prev = self.last_in if self.last_in is not None else x[0]
        xs = np.r_[prev, x]
        start = self.n
        end = int(np.floor((self.n_in + len(x) - 1) / self.fs * self.model_fs)) + 1
        if end <= start:
            return np.zeros(0, np.float32)
        t_out = np.arange(start, end) / self.model_fs
        good = ~np.isnan(xs)
        out = np.interp(t_out, t_in, np.where(good, xs, 0)).astype(np.float32)
        nan_near = np.interp(t_out, t_in, (~good).astype(float)) > 0  # keep missing samples missing
        out[nan_near] = np.nan
        return out

    def push(self, samples) -> list:
        """Feed the next chunk of samples (any length, int or float, NaN = missing); return new events."""
        return _push_many([self], [samples])[0]

    def _take(self, samples):
        """Take in samples: return (signal-quality events, the new samples at the model's rate)."""
        x = np.asarray(samples, dtype=np.float64).ravel().astype(np.float32)
        if x.size == 0:
            return [], x
        y = self._resample(x)
        self.n_in += len(x)
        self.last_in = x[-1]
        if len(y) == 0:
            return [], y
        start = self.n
        self.n += len(y)
        self.buffer = np.concatenate([self.buffer, y])
        return self._quality(y, start), y

    def _finish(self, batch, probs):
        """Beat events and rhythm alarms for classified beats, then the alarms for missing beats."""
        events = []
        if batch:
            for r, p, prev in zip(batch["peaks"], probs, batch["rr_prev"]):
                t = r / self.model_fs
                cls = CLASSES[int(p.argmax())]
                events.append({"type": "beat", "time": t, "class": cls,
                               "probabilities": dict(zip(CLASSES, map(float, p))),
                               "delay_s": (batch["now"] - r) / self.model_fs, "quality": self.quality})
                events += self._rhythm_alarms(t, cls, prev)
        return events + self._timed_alarms()

    # -- signal quality -----------------------------------------------------------
    def _quality(self, y, start):
        events, block = [], int(self.model_fs)
        self.block = np.concatenate([self.block, y])
        while len(self.block) >= block:
            chunk, self.block = self.block[:block], self.block[block:]
            t = self.block_start / self.model_fs
            self.block_start += block
            state = block_quality(chunk, self.th, self.model_fs, self.adc_limits)
            if state != "ok":
                self.bad_until = t + 1 + self.th["quality_hold_s"]
                self.active -= set(ARRHYTHMIA_ALARMS)
                self.recent = []  # beats found in a bad signal must not feed rhythm alarms later
            if state != self.quality:
                events.append({"type": "signal_quality", "time": t, "kind": state})
                self.quality = state
        return events

    def _quality_ok(self, t):
        return self.quality == "ok" and t >= self.bad_until

    # -- beats --------------------------------------------------------------------
    def _ready_beats(self):
        """Model inputs for the detected beats whose next second of signal and next R peak exist."""
        now = self.n
        cap = getattr(self.model, "rr_next_cap_s", None)
        wait = (cap + self.NEXT_BEAT_DECIDED_S if cap else self.MAX_WAIT_S) * self.model_fs
        ready = []
        while self.pending:
            r = self.pending[0]
            nxt = self.pending[1] if len(self.pending) > 1 else None
            if now - r < CONTEXT[1] or (nxt is None and now - r < wait):
                break
            ready.append((self.pending.pop(0), nxt))
        keep = int((CONTEXT[0] + CONTEXT[1]) + 3 * self.model_fs)
        if not ready:
            self._trim(keep)
            return None
        contexts, rr_prev, rr_next, rr_local = [], [], [], []
        for r, nxt in ready:
            lo = r - CONTEXT[0] - self.buffer_start
            window = self.buffer[max(lo, 0):lo + CONTEXT[0] + CONTEXT[1]]
            if lo < 0:  # the stream's first second: pad as the offline beat table does
                window = np.r_[np.full(-lo, window[0] if len(window) else 0), window]
            contexts.append(np.nan_to_num(window))
            prev = (r - self.last_r) / self.model_fs if self.last_r is not None else np.nan
            rr_prev.append(prev)
            rr_local.append(np.mean(self.rr) if self.rr else np.nan)
            # no next beat by now: with a capped model the RR is at least the cap, which is all it sees
            rr_next.append((nxt - r) / self.model_fs if nxt is not None else (cap or np.nan))
            if not np.isnan(prev):
                self.rr = (self.rr + [prev])[-LOCAL_RR_BEATS:]
            self.last_r = r
        contexts = np.stack(contexts).astype(np.float32)
        self._trim(keep)
        return {"peaks": [r for r, _ in ready], "context": contexts, "rr_prev": rr_prev, "rr_next": rr_next,
                "rr_local": rr_local, "now": now}

    def _trim(self, keep):
        if len(self.buffer) > keep:
            self.buffer_start += len(self.buffer) - keep
            self.buffer = self.buffer[-keep:]

    # -- alarms -------------------------------------------------------------------
    def _raise(self, kind, t, evidence):
        if kind in self.active:
            return []
        self.active.add(kind)
        hold = self.th["realarm_critical_s" if kind in CRITICAL_ALARMS else "realarm_s"]
        announced = t - self.announced.get(kind, -np.inf) >= hold
        if announced:
            self.announced[kind] = t
        return [{"type": "alarm", "time": t, "kind": kind, "evidence": evidence, "announced": announced}]

    def _rhythm_alarms(self, t, cls, rr_prev):
        th = self.th
        if self.bad_until > t - (rr_prev if rr_prev == rr_prev else 0):
            rr_prev = np.nan  # an interval that spans bad signal is no heart rate
        self.recent = [b for b in self.recent if b[0] > t - 60] + [(t, cls, rr_prev)]
        self.active -= {"pause", "asystole"}
        if not self._quality_ok(t):
            return []
        events = []
        classes = [b[1] for b in self.recent]
        run = 0
        for c in reversed(classes):
            if c != "V":
                break
            run += 1
        if run >= th["vt_min_beats"]:
            rrs = [b[2] for b in self.recent[-run + 1:]]
            rate = 60 / np.nanmean(rrs) if rrs and not np.all(np.isnan(rrs)) else 0
            if rate > th["vt_min_rate_bpm"]:
                events += self._raise("ventricular tachycardia", t, f"{run} V beats in a row at {rate:.0f} bpm")
        else:
            self.active.discard("ventricular tachycardia")
            if classes[-3:-2] != ["V"] and classes[-2:] == ["V", "V"]:
                self.active.discard("couplet")
                events += self._raise("couplet", t, "2 consecutive V beats")
        for kind, period in [("bigeminy", 2), ("trigeminy", 3)]:
            n = th["pattern_cycles"] * period + 1
            tail = classes[-n:]
            pattern = len(tail) == n and all((c == "V") == ((n - 1 - i) % period == 0) for i, c in enumerate(tail))
            if pattern:
                events += self._raise(kind, t, f"a V beat after every {period - 1} other beat(s), "
                                               f"{th['pattern_cycles']} cycles")
            elif classes[-1] == "V" and kind in self.active and not pattern:
                self.active.discard(kind)
        ectopic = sum(c in ("S", "V") for c in classes)
        if ectopic > th["ectopic_per_min"]:
            events += self._raise("frequent ectopy", t, f"{ectopic} S/V beats in the last minute")
        elif ectopic < th["ectopic_per_min"] // 2:
            self.active.discard("frequent ectopy")
        rrs = [b[2] for b in self.recent[-th["rate_beats"]:] if not np.isnan(b[2])]
        if len(rrs) == th["rate_beats"]:
            rate = 60 / np.mean(rrs)
            margin = th["rate_hysteresis_bpm"]
            for kind, on, off in [("tachycardia", rate > th["tachycardia_bpm"], rate < th["tachycardia_bpm"] - margin),
                                  ("bradycardia", rate < th["bradycardia_bpm"], rate > th["bradycardia_bpm"] + margin)]:
                if on:
                    events += self._raise(kind, t, f"mean rate {rate:.0f} bpm over {len(rrs)} beats")
                elif off:
                    self.active.discard(kind)
        return events

    def _timed_alarms(self):
        """Pause and asystole depend on beats that did not come, so they are checked on every push."""
        now = self.n / self.model_fs
        if self.detector.last_peak is None:
            return []
        last = self.detector.last_peak / self.model_fs
        gap = now - last
        if self.quality != "ok" or self.bad_until > last:  # a flat or missing signal is no asystole
            return []
        events = []
        for kind in ("asystole", "pause"):
            if gap > self.th[f"{kind}_s"]:
                events += self._raise(kind, now, f"no beat for {gap:.1f} s")
                break
        return events


class Ward:
    """Many patients' monitors served together: each push runs the QRS filters, the beats'
    patient-relative inputs and the model once for all patients, which is what lets one CPU core
    follow more than a thousand streams.

    ward = Ward(model); ward.add("bed 3", fs=250); ward.push({"bed 3": samples, ...})
    returns {patient: events}, the same events each Monitor.push would return.
    """

    def __init__(self, model, device="cpu"):
        self.model, self.device, self.monitors = model, device, {}

    def add(self, patient, fs, **kwargs) -> Monitor:
        self.monitors[patient] = Monitor(self.model, fs, device=self.device, **kwargs)
        return self.monitors[patient]

    def push(self, chunks) -> dict:
        unknown = [p for p in chunks if p not in self.monitors]
        if unknown:
            raise KeyError(f"no monitor for patient(s) {unknown}: add them first with ward.add(patient, fs)")
        patients = list(chunks)
        return dict(zip(patients, _push_many([self.monitors[p] for p in patients], [chunks[p] for p in patients])))


def _push_many(monitors, chunks) -> list:
    """Push one chunk into each monitor (all sharing one model); return each monitor's events.

    Monitor.push and Ward.push both come here, so a monitor gives the same events alone or on a
    ward. The work that numpy and the model do faster in bulk is done once for all monitors: the
    QRS filters, the beats' patient-relative inputs and the model call; the per-patient decisions
    (peaks, rhythm, alarms) stay per monitor.
    """
    staged = [m._take(x) for m, x in zip(monitors, chunks)]
    groups = {}
    for i, (_, y) in enumerate(staged):
        if len(y):
            groups.setdefault((monitors[i].model_fs, len(y)), []).append(i)
    for idx in groups.values():
        found = StreamingQRS.feed_many([monitors[i].detector for i in idx], np.stack([staged[i][1] for i in idx]))
        for i, peaks in zip(idx, found):
            monitors[i].pending += peaks
    batches = [m._ready_beats() if len(y) else None for m, (_, y) in zip(monitors, staged)]
    ready = [i for i, b in enumerate(batches) if b]
    probs = [None] * len(monitors)
    if ready:
        inputs = _ward_inputs([monitors[i] for i in ready], [batches[i] for i in ready])
        contexts = np.concatenate([batches[i]["context"] for i in ready])
        model = monitors[ready[0]].model
        data = BeatSet.from_arrays(contexts, inputs, np.zeros(len(contexts), np.int64))
        out = predict(model, data, model.meta["input"], monitors[ready[0]].device)
        for i, p in zip(ready, np.split(out, np.cumsum([len(batches[i]["context"]) for i in ready])[:-1])):
            probs[i] = p
    return [events + m._finish(b, p) for m, (events, _), b, p in zip(monitors, staged, batches, probs)]


def _ward_inputs(monitors, batches) -> dict:
    """patient_inputs for the ready beats of several monitors at once, each beat compared with its
    own patient's previous TEMPLATE_BEATS beats (kept by its monitor); the same numbers as offline."""
    contexts = np.concatenate([b["context"] for b in batches])
    ctx, beat, amplitude = beat_parts(contexts, np.median(contexts, axis=1))
    beat_rows, amplitude_rows, row = [], [], 0
    for m, b in zip(monitors, batches):
        n = len(b["context"])
        beats, amplitudes = m.history + list(np.array(beat[row:row + n])), m.amplitudes + list(amplitude[row:row + n])
        for j in range(len(m.history), len(beats)):
            # causal_median's rule: the previous TEMPLATE_BEATS beats, the stream's first beat
            # standing in for those before it
            past = [max(k, 0) for k in range(j - TEMPLATE_BEATS, j)]
            beat_rows += [beats[k] for k in past]
            amplitude_rows += [amplitudes[k] for k in past]
        m.history = beats[-TEMPLATE_BEATS:]
        m.amplitudes = amplitudes[-TEMPLATE_BEATS:]
        row += n
    template = np.median(np.stack(beat_rows).reshape(len(contexts), TEMPLATE_BEATS, -1), axis=1)
    typical = np.median(np.asarray(amplitude_rows, dtype=np.float32).reshape(len(contexts), TEMPLATE_BEATS), axis=1)
    rr = {k: np.concatenate([b[k] for b in batches]) for k in ("rr_prev", "rr_next", "rr_local")}
    return _inputs_from_parts(ctx, beat, amplitude, typical, template, rr["rr_prev"], rr["rr_next"], rr["rr_local"])


# ----------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------

DPI = 150


def save_fig(fig, name) -> Path:
    """Save a figure as plots/NAME.png at the project's fixed resolution; return the path."""
    PLOTS_DIR.mkdir(parents=True, exist_ok=True)
    path = PLOTS_DIR / f"{name}.png"
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path
