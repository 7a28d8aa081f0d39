"""The noise stress test (Moody, Muldrow and Mark, Computers in Cardiology 1984) as WFDB's `nst`
program builds its records: a scaled copy of a noise record (bw, em or ma from nstdb) added to a
clean ECG, clean for the first 5 minutes and then in alternating 2-minute noisy and clean segments,
at a signal-to-noise ratio in dB relative to the QRS amplitude.

nst's arithmetic, followed here: the signal's size S is `sigamp -a atr`'s normal-QRS peak-to-peak
amplitude (the trimmed mean over the first 300 normal beats, each measured 50 ms either side of its
annotation, the largest and smallest 5% left out); the noise's size N is `sigamp -r`'s RMS amplitude
(the trimmed mean of the RMS of the first 300 one-second windows, each about its own mean); the gain
on the noise is 10^(-SNR/20) * sqrt(2)/4 * S / N (nst takes the QRS as a sine wave of peak-to-peak
S, whose RMS is S sqrt(2)/4, and the SNR as 20 log10 of that over the added noise's RMS); the noise
record is read in step with the ECG from its first sample; at every switch nst shifts the
output so it does not jump (its z offsets), which is done here too.

Written here because nst is a C program of the WFDB tools, not part of the wfdb Python package.
Imports: NumPy, wfdb (reading the noise and the records' annotations), data (where the records are),
signals (reading the records). The stress records go through the monitor like any other
(ekg.monitor.replay).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

NST_SNRS_DB = (24, 18, 12, 6, 0, -6)  # the levels of PhysioNet's nstdb records (118e24 ... 119e_6)
CLEAN_S, SEGMENT_S = 300.0, 120.0  # clean first 5 minutes, then 2-minute segments, noisy first


#: The beats sigamp counts as normal QRS complexes (WFDB's map1 NORMAL: normal and bundle branch
#: block beats, escapes), so records without a single "N" (109, 118, 124, 207, ...) have a size too.
NORMAL_SYMBOLS = ("N", "L", "R", "e", "j")


def normal_beats(symbols, samples) -> np.ndarray:
    """The samples of the annotated beats nst measures the QRS amplitude on."""
    return np.asarray(samples)[np.isin(np.asarray(symbols), NORMAL_SYMBOLS)]


def _trimmed_mean(values, n_max=300, trim=0.05) -> float:
    v = np.sort(np.asarray(values, dtype=np.float64)[:n_max])
    k = int(trim * len(v))
    return float(v[k:len(v) - k].mean()) if len(v) else float("nan")


def qrs_amplitude(signal, normal_beats, fs) -> float:
    """Return the normal-QRS peak-to-peak amplitude as sigamp -a measures it (see the module docstring)."""
    half = int(round(0.05 * fs))
    x = np.asarray(signal, dtype=np.float64)
    amps = [np.nanmax(x[max(b - half, 0):b + half + 1]) - np.nanmin(x[max(b - half, 0):b + half + 1])
            for b in np.asarray(normal_beats)[:300] if b < len(x)]
    return _trimmed_mean(amps)


def noise_rms(noise, fs) -> float:
    """Return the noise's RMS amplitude as sigamp -r measures it (see the module docstring)."""
    w = int(round(fs))
    k = min(len(noise) // w, 300)
    blocks = np.asarray(noise[:k * w], dtype=np.float64).reshape(k, w)
    return _trimmed_mean(np.sqrt(((blocks - blocks.mean(axis=1, keepdims=True)) ** 2).mean(axis=1)))


def noise_gain(snr_db, qrs_amp, rms) -> float:
    """Return nst's gain on the noise record for a signal-to-noise ratio in dB."""
    return 10 ** (-snr_db / 20) * np.sqrt(2) / 4 * qrs_amp / rms


def noisy_spans(n_samples, fs, clean_s=CLEAN_S, segment_s=SEGMENT_S) -> list:
    """Return the (start, end) samples of the noisy segments of an n-sample record."""
    spans, t = [], clean_s
    while t * fs < n_samples:
        spans.append((int(round(t * fs)), int(min(round((t + segment_s) * fs), n_samples))))
        t += 2 * segment_s
    return spans


def complement(spans, n) -> list:
    """The (start, end) stretches of 0..n that no span covers (sorted spans): where nst leaves a record clean."""
    out, t = [], 0
    for a, b in spans:
        if a > t:
            out.append((t, a))
        t = max(t, b)
    if t < n:
        out.append((t, n))
    return out


def read_noise(kind="em", channel=0, noise_dir=None) -> tuple:
    """Read one channel of an nstdb noise record (bw, em or ma) in mV; return (noise, fs).

    noise_dir: the folder of the noise records; by default nstdb-noise beside the MIT-BIH records
    (data.find_data_dir), where ../shared/data keeps it."""
    import wfdb

    if kind not in ("bw", "em", "ma"):
        raise ValueError(f"noise must be 'bw', 'em' or 'ma', not {kind!r}")
    if noise_dir is None:
        from ..data import find_data_dir

        noise_dir = Path(find_data_dir()).parent / "nstdb-noise"
    path = Path(noise_dir) / kind
    if not path.with_suffix(".hea").is_file():
        raise FileNotFoundError(f"{path}.hea not found: the nstdb noise records belong in {noise_dir}")
    record = wfdb.rdrecord(str(path), channels=[channel])
    return record.p_signal[:, 0].astype(np.float64), float(record.fs)


def add_noise(signal, noise, gain, spans) -> np.ndarray:
    """Return signal + gain * noise inside the spans, shifted at every switch so the output does not
    jump there (nst's z offsets; the shift stays until the next switch)."""
    x = np.asarray(signal, dtype=np.float64)
    if len(noise) < len(x):
        raise ValueError(f"noise record ({len(noise)} samples) shorter than the signal ({len(x)})")
    added = np.zeros(len(x))
    for a, b in spans:
        added[a:b] = gain * noise[a:b]
    switches = sorted({s for span in spans for s in span if 0 < s < len(x)})
    step = np.zeros(len(x))
    for s in switches:
        step[s] = added[s] - added[s - 1]
    return x + added - np.cumsum(step)


def nst_record(signal, normal_beats, fs, snr_db, noise, noise_fs=None, spans=None) -> tuple:
    """Build one noise stress test record; return (noisy signal, noisy spans in samples).

    signal: the clean ECG (mV) at fs; normal_beats: its normal beats' samples (the reference
    annotations nst reads); noise: the noise record's channel, at the same rate (nst requires it);
    spans: where the noise goes, (start, end) samples; nst's own (noisy_spans) by default.
    """
    if noise_fs is not None and not 0.9 * fs <= noise_fs <= 1.1 * fs:
        raise ValueError(f"noise at {noise_fs} Hz and signal at {fs} Hz: resample the noise first, as nst does")
    spans = noisy_spans(len(signal), fs) if spans is None else [(int(a), int(b)) for a, b in spans]
    gain = noise_gain(snr_db, qrs_amplitude(signal, normal_beats, fs), noise_rms(noise, fs))
    return add_noise(signal, noise, gain, spans), spans


def stress_records(records, snrs, noise, noise_fs=None, data_dir=None, minutes=None, with_clean=False,
                   noise1=None) -> tuple:
    """Return ({(record, snr): (signal, fs)}, {record: noisy spans in samples}): each MIT-BIH record
    (channel 0; its first minutes only, if given) with the noise added at each SNR by nst_record (the
    noisy signals as float32, as a monitor's feed), and with_clean the record itself as (record, None),
    replayed the same way for comparison. Normal beats from each record's reference annotations.
    noise1: a second noise channel (at noise_fs) for the record's second lead: the signals are then both
    leads, (n, 2), each with its own noise scaled to its own QRS amplitude in the same spans, as nst
    mixes a two-channel noise record into a two-lead record."""
    import wfdb

    from ..data import find_data_dir
    from ..signals import read_signal

    data_dir = Path(data_dir) if data_dir is not None else find_data_dir()
    signals, spans = {}, {}
    for r in records:
        leads = [read_signal(data_dir / str(r), channel)[:2] for channel in ((0, 1) if noise1 is not None else (0,))]
        fs = leads[0][1]
        leads = [x[: int(minutes * 60 * fs)] if minutes else x for x, _ in leads]
        ann = wfdb.rdann(str(data_dir / str(r)), "atr")
        normal = normal_beats(ann.symbol, ann.sample)
        normal = normal[normal < len(leads[0])]

        def both(parts):
            return parts[0] if len(parts) == 1 else np.column_stack(parts).astype(np.float32)

        if with_clean:
            signals[(r, None)] = (both(leads), fs)
        for snr in snrs:
            noisy = [nst_record(x, normal, fs, snr, n, noise_fs) for x, n in zip(leads, (noise, noise1))]
            spans[r] = noisy[0][1]
            signals[(r, snr)] = (both([x.astype(np.float32) for x, _ in noisy]), fs)
    return signals, spans
