"""How much the signal CNN's decisions depend on the recorder's sampling rate, on the DS1 patients out
of fold, and two front ends that might make it depend less.

Issue 10's floor asks that at 128 Hz no DS2 statistic falls more than 3 points below native; notebook
04 measured S +P 3.5 points lower. This script asks DS1 the same question, never DS2. For each
variant, the signal CNN is trained as notebook 03 trains it (the recommended model's architecture,
inputs and settings, the same five folds and seeds), and each fold's model predicts its held-out
patients at 360 Hz and as a 128-Hz recorder gives them back (features.RECORDERS' "via128": through
128 Hz and back with the polyphase filter classify_record uses, R peaks on the 128-Hz grid). S and V
thresholds are chosen on each variant's own native out-of-fold predictions (cv.pick_thresholds), as
notebook 03 does. Printed: the EC57 statistics at both rates, the points lost at 128 Hz, and the
share of beats whose decided class differs between the two rates (the rate dependence itself).

Variants:
- current: the inputs as features builds them (the committed model's; reproduces notebook 03's
  out-of-fold numbers);
- lowpass40: every context window low-passed at 40 Hz (Butterworth order 2, zero phase), monitor-mode
  bandwidth, before the inputs: a 360-Hz and a 128-Hz record then carry the same band;
- refine: every beat centred on its R peak as the live detector places it (signals.refine_peaks,
  the largest deflection within 50 ms), RR intervals from those positions: the annotation's and the
  128-Hz grid's placement no longer reach the model.

Adoption rule, written before either candidate was run: a candidate replaces the current front end
if, out of fold, (a) the share of beats decided differently at 128 Hz falls to half of the current
one or less, and (b) native S F1 and V F1 each lose at most 1 point against the current model.

Run (1 to 1.5 minutes per variant alone on 2 cores; 7 minutes for all three):
.venv/bin/python benchmarks/recorder_ds1.py [--variants current refine]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ekg import cv, features  # noqa: E402
from ekg.batches import BeatSet, predict  # noqa: E402
from ekg.config import seed_everything  # noqa: E402
from ekg.data import CLASSES, CONTEXT, find_data_dir, load_beats, load_windows  # noqa: E402
from ekg.metrics import score  # noqa: E402
from ekg.models import ARCHITECTURES, load_model, model_path  # noqa: E402
from ekg.signals import read_signal, refine_peaks  # noqa: E402
from ekg.training import fit  # noqa: E402

VARIANTS = ("current", "lowpass40", "refine")
LOWPASS_HZ = 40.0
CPU = torch.device("cpu")  # the folds are small: the CPU run is the reference


def variant_inputs(variant, record) -> dict:
    """{recorder: patient_inputs} of one record's beats for a variant (rows as in load_beats([record]))."""
    if variant == "current":
        return {name: features.load_inputs([record], name) for name in features.RECORDERS}
    from scipy.signal import butter, sosfiltfilt

    beats = load_beats([record])
    signal, _, _ = read_signal(find_data_dir() / str(record))
    out = {}
    for name in features.RECORDERS:
        x, samples = features.recorder_signal(signal, beats["sample"].to_numpy(), name)
        if variant == "refine":
            samples = refine_peaks(x, samples, features.FS)
        context, rr_prev, rr_next, rr_local = features.beats_from_signal(x, samples)
        if variant == "lowpass40":
            sos = butter(2, LOWPASS_HZ, fs=features.FS, output="sos")
            context = sosfiltfilt(sos, context.astype(np.float64), axis=1).astype(np.float32)
        out[name] = features.patient_inputs(context, rr_prev, rr_next, rr_local)
    return out


def variant_set(variant, records) -> BeatSet:
    """A BeatSet of the records' beats whose recorder versions are the variant's inputs."""
    parts = [variant_inputs(variant, r) for r in records]
    versions = {name: {k: np.concatenate([p[name][k] for p in parts]) for k in parts[0][name]}
                for name in features.RECORDERS}
    beats = load_beats(records)
    labels = pd.Categorical(beats["aami"], categories=CLASSES).codes.astype(np.int64)
    return BeatSet.from_arrays(load_windows(records, *CONTEXT), versions["native"], labels, recorders=versions)


def out_of_fold(variant, meta, draw_boost=None) -> tuple:
    """Pooled out-of-fold classified-beats tables (native, via128) of one variant, trained with
    meta's architecture and cfg; draw_boost: None, or one multiplier per DS1 beat (load_beats order)
    of its chance to be drawn in training (training.fit's draw_boost)."""
    records = cv.cv_records()
    data = variant_set(variant, records)
    record_of = load_beats(records)["record"].to_numpy()
    at_128 = []

    def fit_predict(train, held):
        seed_everything(meta["cfg"]["seed"])
        model = ARCHITECTURES[meta["arch"]](**meta["arch_kwargs"])
        rows = np.isin(record_of, train)
        model, _ = fit(f"{variant}_{held[0]}", model, meta["input"], data.subset(rows), None, meta["cfg"], CPU, None,
                       draw_boost=None if draw_boost is None else np.asarray(draw_boost)[rows])
        held_out = data.subset(np.isin(record_of, held))
        at_128.append(predict(model, BeatSet.from_arrays(held_out.context, held_out.recorder_inputs()["via128"],
                                                         held_out.labels), meta["input"], CPU))
        return predict(model, held_out, meta["input"], CPU)

    native = cv.out_of_fold(fit_predict, records)
    via128 = cv.classified_frame(native.rename(columns={"aami_true": "aami"}), np.concatenate(at_128),
                                 fold=native["fold"].to_numpy())
    return native, via128


def summary(native, via128) -> tuple:
    """Return (EC57 statistics at 360 and 128 Hz in percent under thresholds chosen on the native
    predictions, the points lost at 128 Hz, the share of beats decided differently, the thresholds)."""
    thresholds = cv.pick_thresholds(native, ("S", "V"))
    decided, rows = {}, {}
    for rate, frame in [("360 Hz", native), ("128 Hz", via128)]:
        decided[rate] = cv.apply_thresholds(frame[cv.PROB_COLUMNS].to_numpy(), thresholds)
        rows[rate] = cv.summary_row(score(frame.assign(aami_pred=np.asarray(CLASSES)[decided[rate]])))
    table = 100 * pd.DataFrame(rows).T.astype(float)
    changed = float(np.mean(decided["360 Hz"] != decided["128 Hz"]))
    return table, table.loc["360 Hz"] - table.loc["128 Hz"], changed, thresholds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = parser.parse_args()
    variants = ["current"] + [v for v in args.variants if v != "current"]  # the rule compares with it
    meta = load_model(model_path("recommended")).meta
    print(f"signal CNN as notebook 03 trains it ({meta['arch']} {meta['arch_kwargs']}, cfg {meta['cfg']}); "
          f"{len(cv.cv_records())} DS1 patients in {len(cv.folds())} folds")
    pd.set_option("display.width", 200)
    rows = {}
    for variant in variants:
        t0 = time.perf_counter()
        table, drop, flips, thresholds = summary(*out_of_fold(variant, meta))
        print(f"\n== {variant} ({time.perf_counter() - t0:.0f} s); thresholds {thresholds}; "
              f"beats decided differently at 128 Hz: {100 * flips:.2f}%")
        print(table.round(1).to_string())
        print("points lost at 128 Hz:", drop.round(1).to_dict())
        rows[variant] = {"beats decided differently (%)": 100 * flips, "native S F1": table.loc["360 Hz", "F1 S"],
                         "native V F1": table.loc["360 Hz", "F1 V"],
                         "largest loss at 128 Hz (S, V Se/+P)": drop[["SVEB Se", "SVEB +P", "VEB Se", "VEB +P"]].max()}
    verdicts = pd.DataFrame(rows).T
    base = verdicts.loc["current"]
    verdicts["adopt"] = [v != "current"
                         and r["beats decided differently (%)"] <= base["beats decided differently (%)"] / 2
                         and r["native S F1"] >= base["native S F1"] - 1 and r["native V F1"] >= base["native V F1"] - 1
                         for v, r in verdicts.iterrows()]
    print("\nThe adoption rule ((a) half the rate dependence or less, (b) native S and V F1 within 1 point):")
    print(verdicts.round(2).to_string())


if __name__ == "__main__":
    main()
