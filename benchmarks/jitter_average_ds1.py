"""Does averaging the signal CNN over small shifts of each R peak make its decisions at 128 Hz those
at 360 Hz? DS1 patients only, out of fold, with the committed fold models (nothing is trained); DS2
is never read.

Why: recorder_ds1.py --placement showed that what moves the committed models' decisions at 128 Hz is
where the R peaks land (the 128-Hz grid moves each by up to about 2 samples at 360 Hz): 1.32% of DS1
beats change class with the native signal and the R peaks on that grid, 0.28% with the 128-Hz signal
and the annotated peaks. Training did not make the model indifferent to that (a consistency term,
an aligned template: consistency_ds1.py, recorder_ds1.py's "aligned"). Averaging at inference
might: each beat is classified K times with every R peak of the record moved by its own random
shift of -2..2 samples (a fixed seed per record) and the K probability vectors are averaged, so a
decision no longer hangs on one placement. It costs K model runs a beat: a candidate for the
offline path (classify_record), not the monitor.

Printed: for the plain prediction and the average over K = 8 draws, EC57 statistics at 360 Hz and
at 128 Hz (recorder_ds1.summary: S and V thresholds chosen on each one's own native out-of-fold
predictions, as notebook 03 does), the points lost at 128 Hz and the share of beats decided
differently at the two rates.

Rule, written before this ran: the average becomes the next candidate for classify_record if (a)
the share of beats decided differently at 128 Hz falls to half of the plain prediction's or less
and (b) native S F1 and V F1 each lose at most 1 point against the plain prediction. This script
chooses nothing itself; a candidate is then run through notebook 04 before DS2 is scored.

--models nocap (added after the first run, 2026-12-07): the same with notebook 05's no-cap ablation
fold models (models/folds/signal_cnn_nocap_fold*.pt: the same folds and settings, the interval to the
next beat read uncapped), models that did not suggest the question. The first run left a lead
outside its rule: on the committed models the average raised out-of-fold S F1 by 3.2 points and
lowered V F1 by 0.5. Asked of the no-cap models, written before they ran: the lead holds if the
average's native S F1 is at least 1 point above the plain prediction's and its V F1 at most 1 point
below; it would then make the average a candidate worth a rule on S for classify_record, not yet the
candidate itself.

--blend (added after --models nocap held, 2026-12-07): the offline classifier is the blend (V from the
feature baseline's GBM, S, N, F and Q from the CNN; ensemble.BLEND_FAMILY), so the question that
decides is the blend's. The committed fold models' plain and averaged out-of-fold probabilities are
each blended with the GBM's out-of-fold probabilities (ensemble.gbm_out_of_fold, its fold fits read
back from models/gbm/), weights and thresholds chosen with each fold held out of its own choice
(ensemble.nested_out_of_fold, notebook 04's honest estimate). Rule, written before it ran: the
average becomes the next candidate for the offline blend if its nested blend has (a) S F1 at least
1 point above the plain CNN's nested blend, (b) V F1 at most 1 point below and (c) F +P at most
2 points below (the issue: do not let F soak up false positives).

Run (a few minutes on 2 cores): .venv/bin/python benchmarks/jitter_average_ds1.py [--draws 8] [--models nocap] [--blend]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import recorder_ds1  # noqa: E402
from ekg import cv, features  # noqa: E402
from ekg.classify import classify_beats  # noqa: E402

MAX_JITTER = 2  # samples at 360 Hz: about the 128-Hz grid's error either way
DRAWS = 8
MODELS = {"committed": "signal_cnn_fold*.pt", "nocap": "signal_cnn_nocap_fold*.pt"}


def jittered(samples, draws, seed, n_samples, max_jitter=MAX_JITTER) -> list:
    """draws copies of the R peaks, each peak moved by its own whole shift in -max_jitter..max_jitter
    (random, from seed), kept inside the record; row i stays beat i (R peaks are far more than
    2 * max_jitter samples apart, so no shift reorders them)."""
    rng = np.random.default_rng(seed)
    samples = np.asarray(samples, dtype=int)
    return [np.clip(samples + rng.integers(-max_jitter, max_jitter + 1, len(samples)), 0, n_samples - 1)
            for _ in range(draws)]


def blend_verdict(beats, fold, probs) -> None:
    """--blend: print the nested out-of-fold blend of the GBM with the plain and with the averaged CNN
    (native), and the rule's verdict."""
    from ekg import ensemble
    from ekg.metrics import score

    gbm = ensemble.gbm_out_of_fold(recorders=("native",))["native"]
    order = ["record", "sample"]
    rows = {}
    for kind in ("plain", "average"):
        cnn = cv.classified_frame(beats, np.concatenate(probs[(kind, "native")]), fold=fold)
        # the same beats in the GBM's fold order (ensemble.check_aligned refuses anything else)
        cnn = cnn.set_index(order).loc[pd.MultiIndex.from_frame(gbm[order])].reset_index()
        table = ensemble.nested_out_of_fold(cnn, gbm)
        stats = cv.summary_row(score(table))
        rows[f"blend with the {kind} CNN"] = {k: 100 * float(stats[k]) for k in
                                             ("SVEB Se", "SVEB +P", "F1 S", "VEB Se", "VEB +P", "F1 V", "F Se", "F +P")}
        rows[f"blend with the {kind} CNN"]["weights chosen"] = "; ".join(sorted(set(table["weights"])))
    table = pd.DataFrame(rows).T
    numbers = [c for c in table if c != "weights chosen"]
    table[numbers] = table[numbers].astype(float)
    print("\nThe blend, nested out of fold (each fold's weights and thresholds chosen without it), percent:")
    print(table.round(1).to_string())
    plain, new = (table.loc[f"blend with the {k} CNN"] for k in ("plain", "average"))
    checks = {"a": new["F1 S"] >= plain["F1 S"] + 1, "b": new["F1 V"] >= plain["F1 V"] - 1,
              "c": new["F +P"] >= plain["F +P"] - 2}
    print("The blend rule: (a) S F1 up at least 1 point, (b) V F1 down at most 1, (c) F +P down at most 2: "
          + ", ".join(f"({k}) {'met' if v else 'not met'}" for k, v in checks.items()))
    print("-> next candidate for the offline blend:", "the average" if all(checks.values()) else "none; the blend stays")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=DRAWS)
    parser.add_argument("--models", choices=list(MODELS), default="committed")
    parser.add_argument("--blend", action="store_true", help="also the nested out-of-fold blend with the GBM")
    args = parser.parse_args()
    t0 = time.perf_counter()
    probs = {(kind, rate): [] for kind in ("plain", "average") for rate in ("native", "via128")}
    frames, folds = [], []
    for f, model, record, beats, signal in recorder_ds1.committed_folds(MODELS[args.models]):
        via, moved = features.recorder_signal(signal, beats["sample"].to_numpy(), "via128")
        for rate, (x, samples) in {"native": (signal, beats["sample"].to_numpy()), "via128": (via, moved)}.items():
            probs[("plain", rate)].append(classify_beats(model, x, samples))
            draws = jittered(samples, args.draws, record, len(x))
            probs[("average", rate)].append(np.mean([classify_beats(model, x, d) for d in draws], axis=0))
        frames.append(beats)
        folds.append(np.full(len(beats), f))
    beats, fold = pd.concat(frames, ignore_index=True), np.concatenate(folds)
    print(f"{args.models} fold models, {len(beats):,} DS1 beats, {args.draws} draws of shifts up to {MAX_JITTER} samples "
          f"({time.perf_counter() - t0:.0f} s)")
    pd.set_option("display.width", 200)
    rows = {}
    for kind in ("plain", "average"):
        native, via128 = (cv.classified_frame(beats, np.concatenate(probs[(kind, rate)]), fold=fold)
                          for rate in ("native", "via128"))
        table, drop, flips, thresholds = recorder_ds1.summary(native, via128)
        print(f"\n== {kind}: thresholds {thresholds}; beats decided differently at 128 Hz: {100 * flips:.2f}%")
        print(table.round(1).to_string())
        print("points lost at 128 Hz:", drop.round(1).to_dict())
        rows[kind] = recorder_ds1.verdict_row(table, drop, flips)
    verdicts = pd.DataFrame(rows).T
    base, new = verdicts.loc["plain"], verdicts.loc["average"]
    a = new["beats decided differently (%)"] <= base["beats decided differently (%)"] / 2
    b = new["native S F1"] >= base["native S F1"] - 1 and new["native V F1"] >= base["native V F1"] - 1
    print("\n" + verdicts.round(2).to_string())
    print(f"\nThe rule (the average against plain): (a) half the changes or fewer: {'met' if a else 'not met'}; "
          f"(b) native S and V F1 within 1 point: {'met' if b else 'not met'}")
    print("-> next candidate for classify_record:", "the average" if a and b else "none; the plain prediction stays")
    if args.blend:
        blend_verdict(beats, fold, probs)
    if args.models != "committed":
        held = new["native S F1"] >= base["native S F1"] + 1 and new["native V F1"] >= base["native V F1"] - 1
        print(f"The lead (S F1 up at least 1 point, V F1 down at most 1) on these models: "
              f"{'holds' if held else 'does not hold'} ({new['native S F1'] - base['native S F1']:+.1f}, "
              f"{new['native V F1'] - base['native V F1']:+.1f})")


if __name__ == "__main__":
    main()
