"""The signal CNN, the feature baseline's GBM and their blend (ekg.ensemble) on pooled out-of-fold
predictions over the 22 DS1 patients, native and as a 128-Hz recorder gives the signal. DS2 is
never opened here.

Sources:
- the CNN at 360 Hz: data/oof/signal_cnn.csv.gz (notebook 03's cross-validation);
- the CNN at 128 Hz: the same five fold models (models/checkpoints/signal_cnn_cv_<held-out
  records>.ckpt, written by notebook 03's run) on the held-out beats' via128 inputs, as notebook
  03 scored them; the fold models are first checked to reproduce the 360-Hz file;
- the GBM at both: ensemble.gbm_out_of_fold (one fit per fold on native features).
The last two are cached in data/cache/ensemble_oof/ (--fresh rebuilds them).

Prints: the best blend of each family (ensemble.FAMILIES; the project's is ensemble.BLEND_FAMILY)
and of all together (weights and thresholds chosen on the pooled out-of-fold predictions by
S F1 + V F1, ensemble.choose_blend), the table (S and V Se, +P, F1, gross EC57, for the CNN
with its own thresholds, the GBM with its own, and the blends; native and 128 Hz with the
native choices), the drop at 128 Hz, and the nested estimates (each fold's choice made without
it) for the models alone, the blend within BLEND_FAMILY and within any family.
Run: OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/ensemble_oof.py [--fresh]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ekg import config, cv, ensemble  # noqa: E402
from ekg.data import CLASSES, load_beats  # noqa: E402

CACHE = config.CACHE_DIR / "ensemble_oof"
CNN_OOF = ROOT / "data" / "oof" / "signal_cnn.csv.gz"
CHECKPOINTS = ROOT / "models" / "checkpoints"
STATS = ["SVEB Se", "SVEB +P", "F1 S", "VEB Se", "VEB +P", "F1 V", "F Se", "F +P"]


def same_beats(a, b) -> bool:
    try:
        ensemble.check_aligned(a, b)
        return True
    except ValueError:
        return False


def gbm_tables(cnn, fresh):
    paths = {r: CACHE / f"gbm_{r}.csv.gz" for r in ("native", "via128")}
    if not fresh and all(p.is_file() for p in paths.values()):
        tables = {r: pd.read_csv(p) for r, p in paths.items()}
        if all(same_beats(cnn, t) for t in tables.values()):
            return tables
    t0 = time.perf_counter()
    tables = ensemble.gbm_out_of_fold(sorted(set(cnn["record"])), ("native", "via128"), progress=True)
    print(f"GBM out of fold (5 fits, native and via128 features): {time.perf_counter() - t0:.0f} s")
    CACHE.mkdir(parents=True, exist_ok=True)
    for r, t in tables.items():
        t.to_csv(paths[r], index=False)
    return tables


def cnn_via128(cnn, fresh):
    """The CNN's fold models on the held-out beats as a 128-Hz recorder gives them (rows as cnn)."""
    path = CACHE / "signal_cnn_via128.csv.gz"
    if not fresh and path.is_file():
        table = pd.read_csv(path)
        if same_beats(cnn, table):
            return table
    import torch

    from ekg.batches import BeatSet, predict
    from ekg.models import ARCHITECTURES, load_checkpoint, load_model, model_path

    torch.set_num_threads(1)
    meta = load_model(model_path("recommended")).meta
    records = sorted(set(cnn["record"]))
    ds1 = BeatSet(load_beats(records), records)
    record_of = ds1.frame["record"].to_numpy()
    parts, worst = [], 0.0
    for f, _, held in cv.folds(records):
        ckpt = CHECKPOINTS / f"signal_cnn_cv_{'-'.join(map(str, held))}.ckpt"
        state = load_checkpoint(ckpt)
        if state["cfg"] != {k: meta["cfg"][k] for k in sorted(meta["cfg"])}:
            raise SystemExit(f"{ckpt} was trained with other settings than {meta['name']}: not its fold model")
        model = ARCHITECTURES[meta["arch"]](**meta["arch_kwargs"])
        model.load_state_dict(state["best_state"])
        data = ds1.subset(np.isin(record_of, held))
        native = predict(model, data, meta["input"], torch.device("cpu"))
        # the fold model must reproduce notebook 03's out-of-fold file, or it is another run's
        worst = max(worst, float(np.abs(native - cnn.loc[cnn["fold"] == f, cv.PROB_COLUMNS].to_numpy()).max()))
        at_128 = BeatSet.from_arrays(data.context, data.recorder_inputs()["via128"], data.labels)
        probs = predict(model, at_128, meta["input"], torch.device("cpu"))
        rows = cnn[cnn["fold"] == f]
        parts.append(cv.classified_frame(rows.rename(columns={"aami_true": "aami"}), probs, fold=f))
    print(f"CNN fold models: largest difference from data/oof/signal_cnn.csv.gz at 360 Hz: {worst:.2e}")
    if worst > 1e-3:
        raise SystemExit("the fold checkpoints do not reproduce the out-of-fold file: not the same run")
    table = pd.concat(parts, ignore_index=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return table


def decided(table, thresholds):
    probs = table[cv.PROB_COLUMNS].to_numpy(float)
    return table.assign(aami_pred=np.asarray(CLASSES)[cv.apply_thresholds(probs, thresholds)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached GBM and 128-Hz CNN predictions")
    parser.add_argument("--no-nested", action="store_true", help="skip the nested estimate (slow)")
    args = parser.parse_args()

    cnn = {"native": pd.read_csv(CNN_OOF)}
    cnn["native"]["aami_true"] = cnn["native"]["aami_true"].astype(str)
    gbm = gbm_tables(cnn["native"], args.fresh)
    cnn["via128"] = cnn_via128(cnn["native"], args.fresh)
    print(f"{len(cnn['native']):,} DS1 beats of {cnn['native']['record'].nunique()} patients, 5 folds")

    # each model alone, with thresholds chosen on its own out-of-fold predictions (as notebook 04)
    alone = {"signal_cnn": cv.pick_thresholds(cnn["native"], ("S", "V")),
             "baseline_gbm": cv.pick_thresholds(gbm["native"], ("S", "V"))}
    tables = {}
    for r in ("native", "via128"):
        tables[("signal_cnn", r)] = decided(cnn[r], alone["signal_cnn"])
        tables[("baseline_gbm", r)] = decided(gbm[r], alone["baseline_gbm"])
    t0 = time.perf_counter()
    search = ensemble.choose_blend(cnn["native"], gbm["native"], "all")
    print(f"blend search: {len(search['table'])} weightings, each with its own S and V thresholds "
          f"({time.perf_counter() - t0:.0f} s)")
    candidates = search["table"]
    best = {}
    for family in ensemble.FAMILIES:  # each family's winner (first of ties, as choose_blend)
        rows = candidates[candidates["family"] == family]
        best[family] = rows.loc[rows["F1 S + F1 V"].idxmax()]
    best["chosen, any family"] = candidates.loc[candidates["F1 S + F1 V"].idxmax()]
    for name, row in best.items():
        print(f"blend, {name}{' (' + row['family'] + ')' if name.startswith('chosen') else ''}: GBM share {row['weights']}, "
              f"thresholds {row['thresholds']}, S F1 {row['F1 S']:.3f}, V F1 {row['F1 V']:.3f}")
        if name.startswith("chosen"):
            continue
        for r in ("native", "via128"):
            tables[(f"blend, {name}", r)] = ensemble.blend_frame(cnn[r], gbm[r], row["weights"], row["thresholds"])
    print("thresholds of the models alone:", alone)

    rows = {}
    for (name, r), table in tables.items():
        s = cv.summary_row(cv.oof_score(table, n_boot=200))
        rows[(name, "360 Hz" if r == "native" else "128 Hz")] = {k: s[k] for k in STATS} | {
            f"{k} CI": s[f"{k} CI"] for k in ("F1 S", "F1 V")}
    result = pd.DataFrame(rows).T.sort_index(level=[0, 1], ascending=[True, False], sort_remaining=False)
    numeric = (100 * result[STATS].astype(float)).round(1)
    result = pd.concat([numeric, result[["F1 S CI", "F1 V CI"]]], axis=1)
    pd.set_option("display.width", 200)
    print("\nPooled out-of-fold, 22 DS1 patients (%; gross EC57 Se/+P, per-class F1; 95% patient-bootstrap CI):")
    print(result.to_string())
    drop = (numeric.xs("360 Hz", level=1) - numeric.xs("128 Hz", level=1)).round(1)
    print("\nPoints lost at 128 Hz against 360 Hz (same models, weights and thresholds):")
    print(drop.to_string())

    if not args.no_nested:
        # the same held-out choice for the models alone (only their thresholds chosen), for a fair
        # comparison: choosing thresholds on the beats they are scored on flatters them too
        nested_rows = {}
        for name, family, grid in [("signal_cnn", "one weight", np.array([0.0])),
                                   ("baseline_gbm", "one weight", np.array([1.0])),
                                   ("blend, family V (weight, thresholds)", "V", ensemble.WEIGHT_GRID),
                                   ("blend, any family (family, weights, thresholds)", "all", ensemble.WEIGHT_GRID)]:
            t0 = time.perf_counter()
            nested = ensemble.nested_out_of_fold(cnn["native"], gbm["native"], family, grid)
            s = cv.summary_row(cv.oof_score(nested, n_boot=200))
            nested_rows[name] = {k: round(100 * s[k], 1) for k in STATS} | {
                f"{k} CI": s[f"{k} CI"] for k in ("F1 S", "F1 V")}
            print(f"nested, {name}: {time.perf_counter() - t0:.0f} s")
            if family != "one weight":
                print(nested.groupby("fold")[["family", "weights", "thresholds"]].first().to_string())
        print("\nNested out-of-fold (each fold's choice made on the other 4 folds; 360 Hz):")
        print(pd.DataFrame(nested_rows).T.to_string())

if __name__ == "__main__":
    main()
