"""Does the two-lead noise gate (monitor.gate) make the monitor's beats and alarms survive electrode-motion
noise? The DS1 patients out of fold, through the live monitor; DS2 is never read.

Each DS1 patient is replayed with the model of the cross-validation fold that never saw them and, for the
two-lead monitor (Monitor(leads=2)), with that fold's gate (monitor.gate_fit.fold_gates: fitted on the
other folds' patients): clean, and with nstdb's em noise added as WFDB's nst adds it (clean first 5
minutes, then 2-minute noisy and clean segments) at 12, 6 and 0 dB. Lead 0 gets the noise's channel 1
(as tune_noise_ds1.py adds it; channel 0 is kept for notebook 05's test of DS2) and lead 1 its channel 0.
The one-lead monitor is tune_noise_ds1.py's replay (lead 0 alone, the same noise), the baseline.

Printed for each: QRS Se and +P (bxb's 150-ms match) and V Se and +P at the detected beats, clean and
inside the noisy segments at each level; and the alarms as tune_noise_ds1.py counts them (the live beats
through ALARM_THRESHOLDS' rules): clean VT episodes alarmed, true rate alarms announced on clean DS1, and
the false announced VT, tachycardia and bradycardia alarms, clean and in the noisy segments.

Adoption rule, written before this script first ran: the two-lead monitor is offered (Monitor's
leads=2, and notebook 05's noise stress test run with it beside the one-lead monitor) if, against the
one-lead monitor, (1) on clean DS1 it alarms at least as many VT episodes, keeps at least 95% of the
true rate alarms and loses at most 0.05 points of QRS Se; (2) it cuts the false announced alarms, clean
and noisy together, by at least a quarter (the bar tune_noise_ds1.py set for changing the rules); and
(3) it lifts QRS +P at 12 dB inside the noisy segments by at least a point.

The fold gates take the threshold gate_fit's rule chooses from their own out-of-fold table (0.9).
Outcome (benchmarks/logs/two_leads_ds1_2026-12-08.txt, which lists every look in order): met, once
each record's last END_S seconds are left unscored (a measurement defect found after the first verdict:
a replay ends, and the two-lead monitor's last beats, which wait half a second longer, are never
emitted; 50 of its reference beats missed in the records' last 3 s against 34 for one lead). Scored to
the records' ends, clean QRS Se fell from 99.75% to 99.68%, 0.07 points against the 0.05 allowed; scored
without the ends, from 99.82% to 99.78%. The false announced alarms fall from 577 to 332, QRS +P at
12 dB from 97.45% to 98.90% and at 6 dB from 85.89% to 95.65%; of the 21 real beats dropped on the clean
records, 14 are S beats of record 201, which the second lead's detector misses too. A first run, of an
earlier state (its fold gates at 0.95, no extra wait), is logged and does not count. So the two-lead
monitor is offered (Monitor's leads=2, `ekg monitor --second-channel`); notebook 05's two-lead noise
stress test of DS2, the rule's other half, needs a full report run and is not done yet: DS2 has not
been replayed with two leads.

--without-rhythm, candidate B, written down (2026-12-08 03:49 UTC) before it first ran: the same gate
without its two rhythm measures (rr_prev / local RR, local RR sd / local RR), its threshold chosen by
gate_fit's own rule on its own out-of-fold table. Why: on the clean records the shipped design dropped
S beats (record 201), whose mark is prematurity, and a gate that reads prematurity can take an early
beat for a bump of noise; without them it must judge by the two leads' shapes alone. Its adoption rule
is the one above, unchanged. It is the second candidate weighed against that rule on the same DS1
replays (the first had failed it, as scored then), which the report says wherever it quotes the
outcome. It met the rule once the ends were left unscored (not as first scored); the shipped gate stays
the first design, which cuts the false alarms more (332 against 367).

Run (about 7 minutes on 2 cores; the replays are cached):
OMP_NUM_THREADS=1 .venv/bin/python benchmarks/two_leads_ds1.py [--without-rhythm]
"""
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tune_noise_ds1 as noise_tuning  # noqa: E402
import tune_vt_ds1 as vt  # noqa: E402
from ekg import config  # noqa: E402
from ekg.classify import match_beats  # noqa: E402
from ekg.data import FS, find_data_dir, load_beats  # noqa: E402
from ekg.monitor import gate_fit, nst, replay_jobs  # noqa: E402
from ekg.monitor.gate import GATE_FEATURES, NoiseGate  # noqa: E402

SNRS_DB = noise_tuning.SNRS_DB
LEAD1_NOISE = ("em", 0)
RHYTHM = ["rr_prev / local RR", "local RR sd / local RR"]  # what --without-rhythm leaves out
#: Each record's last seconds are not scored: a replay ends there, and a monitor's last beats are never
#: emitted (they wait for signal after them); a two-lead monitor's wait is half a second longer, so its
#: score would lose beats a live stream, which does not end, keeps.
END_S = 3.0


def two_lead_replay(records, features=GATE_FEATURES) -> tuple:
    """({record or (record, snr): live events}, {record: noisy spans}, the gates' threshold) of the records'
    two-lead streams, clean and with noise, each replayed with its fold's model and fold's gate (fitted on the
    named features, at the threshold gate_fit's rule chooses from their out-of-fold table); cached in
    config.CACHE_DIR."""
    folds = vt.fold_models(records)
    rows = gate_fit.build_rows(records)
    threshold = gate_fit.choose(gate_fit.scores(*gate_fit.out_of_fold(rows, records, features)["clean"]))
    gates = {tuple(held): spec for held, spec in gate_fit.fold_gates(rows, records, features, threshold)}
    key = hashlib.sha256((vt.cache_key(folds, records) + repr((noise_tuning.NOISE, LEAD1_NOISE, SNRS_DB))
                          + repr(sorted((k, len(v["trees"]), v["features"], v["threshold"]) for k, v in gates.items()))
                          ).encode()).hexdigest()[:16]
    path = config.CACHE_DIR / "vt_live" / f"two-leads-{key}.pkl"
    if path.is_file():
        return (*pd.read_pickle(path), threshold)
    noise, noise_fs = nst.read_noise(*noise_tuning.NOISE)
    noise1, _ = nst.read_noise(*LEAD1_NOISE)
    jobs, spans = [], {}
    for model, held, _, _ in folds:
        signals, fold_spans = nst.stress_records(held, SNRS_DB, noise, noise_fs, with_clean=True, noise1=noise1)
        spans.update(fold_spans)
        if tuple(sorted(held)) not in gates:
            raise ValueError(f"no fold gate holds out exactly the fold model's patients {held}")
        gate = NoiseGate(gates[tuple(sorted(held))])
        jobs.append((model, {(r if snr is None else (r, snr)): x for (r, snr), x in signals.items()}, None, {"gate": gate}))
    events = replay_jobs(jobs, chunk_s=1.0, workers=config.WORKERS)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.to_pickle((events, spans), path)
    return events, spans, threshold


def detection_scores(events, reference, spans=None) -> dict:
    """QRS Se/+P and V Se/+P (%) of one stream's beat events against its reference beats (sample, aami),
    counting only beats inside spans when given; returns the counts too."""
    beats = [e for e in events if e["type"] == "beat"]
    det = np.array([int(round(e["time"] * FS)) for e in beats], dtype=int)
    called_v = np.array([e["class"] == "V" for e in beats], bool)
    ref, ref_v = reference
    if spans is not None:
        keep_d = np.any([(det >= a) & (det < b) for a, b in spans], axis=0) if len(det) else np.zeros(0, bool)
        keep_r = np.any([(ref >= a) & (ref < b) for a, b in spans], axis=0)
        det, called_v, ref, ref_v = det[keep_d], called_v[keep_d], ref[keep_r], ref_v[keep_r]
    ri, di = match_beats(ref, det, FS)
    both_v = int((ref_v[ri] & called_v[di]).sum())
    return {"ref": len(ref), "det": len(det), "matched": len(ri), "ref V": int(ref_v.sum()), "called V": int(called_v.sum()),
            "V both": both_v}


def clean_drops(events, records) -> pd.DataFrame:
    """The reference beats (record, sample, AAMI class) that the gate's noise events on the clean records matched."""
    rows = []
    for r in records:
        noise = np.array([int(round(e["time"] * FS)) for e in events[r] if e["type"] == "noise"], dtype=int)
        beats = load_beats([r])
        ri, _ = match_beats(beats["sample"].to_numpy(), noise, FS)
        rows += [(r, int(s), str(c)) for s, c in zip(beats["sample"].to_numpy()[ri], beats["aami"].astype(str).to_numpy()[ri])]
    return pd.DataFrame(rows, columns=["record", "sample", "class"])


def summary(counts) -> dict:
    c = pd.DataFrame(counts).sum()
    return {"QRS Se": 100 * c["matched"] / c["ref"], "QRS +P": 100 * c["matched"] / c["det"],
            "V Se": 100 * c["V both"] / c["ref V"], "V +P": 100 * c["V both"] / c["called V"]}


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--without-rhythm", action="store_true", help="candidate B: the gate without " + " and ".join(RHYTHM))
    args = parser.parse_args()
    features = [f for f in GATE_FEATURES if not (args.without_rhythm and f in RHYTHM)]
    records = sorted(vt.DS1)
    t0 = time.perf_counter()
    one_clean_frames, _, episodes, flutter, hours = vt.ds1_streams(records)
    one_clean_events = vt.live_replay(records)
    one_noisy_events, spans = noise_tuning.noisy_replay(records)
    two_events, two_spans, threshold = two_lead_replay(records, features)
    assert two_spans == spans, "the one- and two-lead replays must put the noise in the same spans"
    print(f"DS1: {len(records)} patients, {hours:.1f} patient-hours clean, em noise at {', '.join(map(str, SNRS_DB))} dB "
          f"(lead 0: channel {noise_tuning.NOISE[1]}, lead 1: channel {LEAD1_NOISE[1]}); replayed in "
          f"{time.perf_counter() - t0:.0f} s (or read from the cache)")
    print(f"the gate: {len(features)} features{' (without ' + ', '.join(RHYTHM) + ')' if args.without_rhythm else ''}, "
          f"threshold {threshold:g} (gate_fit's rule on its out-of-fold table)")
    reference, scored = {}, {}
    for r in records:
        b = load_beats([r])
        reference[r] = (b["sample"].to_numpy(), b["aami"].astype(str).to_numpy() == "V")
        end = int(wfdb.rdheader(str(find_data_dir() / str(r))).sig_len - END_S * FS)
        scored[r] = [(0, end)]
        spans[r] = [(a, min(b, end)) for a, b in spans[r] if a < end]
    rates = noise_tuning.reference_rate(records)
    monitors = {"one lead": ({r: one_clean_events[r] for r in records}, one_noisy_events),
                "two leads, noise gate": ({r: two_events[r] for r in records},
                                          {k: v for k, v in two_events.items() if isinstance(k, tuple)})}
    detection, alarms = {}, {}
    for name, (clean, noisy) in monitors.items():
        row = {f"clean {k}": v for k, v in summary([detection_scores(clean[r], reference[r], scored[r]) for r in records]).items()}
        row["QRS Se with the ends"] = summary([detection_scores(clean[r], reference[r]) for r in records])["QRS Se"]
        for snr in SNRS_DB:
            row.update({f"{snr} dB {k}": v for k, v in summary(
                [detection_scores(noisy[(r, snr)], reference[r], spans[r]) for r in records]).items()})
        row["noise events, clean"] = sum(e["type"] == "noise" for r in records for e in clean[r])
        detection[name] = row
        frames = {r: vt.beat_frame([e for e in clean[r] if e["type"] == "beat"]) for r in records}
        noisy_frames = {k: vt.beat_frame([e for e in ev if e["type"] == "beat"]) for k, ev in noisy.items()}
        alarms[name] = noise_tuning.candidate_row({}, frames, noisy_frames, episodes, flutter, rates, spans)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    table = pd.DataFrame(detection).T
    print(f"\nBeats at the monitor's detections (%; each record's last {END_S:g} s not scored; 12/6/0 dB: inside the noisy "
          "segments only):")
    for part in ["clean", *(f"{snr} dB" for snr in SNRS_DB)]:
        print(table[[c for c in table.columns if c.startswith(part + " ")]].round(2).to_string())
    with_ends = table["QRS Se with the ends"].round(3).to_dict()
    print(f"clean QRS Se with each record's last {END_S:g} s scored too: {with_ends}")
    print(f"noise events on the clean records: {table['noise events, clean'].astype(int).to_dict()}")
    dropped = clean_drops(monitors["two leads, noise gate"][0], records)
    print(f"of which real beats (a reference beat within 150 ms), by record and class: "
          f"{dropped.groupby(['record', 'class']).size().to_dict()}")
    shown = ["VT episodes (clean)", "true rate alarms (clean)", "false, clean", *[f"false in noise {s} dB" for s in SNRS_DB],
             *[f"of which VT {s} dB" for s in SNRS_DB], "false VT (all)", "false tachycardia (all)",
             "false bradycardia (all)", "false alarms (all)"]
    alarm_table = pd.DataFrame(alarms).T[shown]
    print(f"\nAlarms (ALARM_THRESHOLDS' rules on the live beats; VT episodes of {sum(map(len, episodes.values()))}; "
          "false: announced; (all): clean and noisy together):")
    print(alarm_table.to_string())
    one, two = alarm_table.loc["one lead"], alarm_table.loc["two leads, noise gate"]
    d_one, d_two = table.loc["one lead"], table.loc["two leads, noise gate"]
    checks = {"VT episodes (clean) not fewer": two["VT episodes (clean)"] >= one["VT episodes (clean)"],
              "true rate alarms (clean) at least 95%": two["true rate alarms (clean)"] >= 0.95 * one["true rate alarms (clean)"],
              "clean QRS Se at most 0.05 points lower": d_two["clean QRS Se"] >= d_one["clean QRS Se"] - 0.05,
              "false alarms (all) cut by a quarter": two["false alarms (all)"] <= 0.75 * one["false alarms (all)"],
              "QRS +P at 12 dB a point higher": d_two["12 dB QRS +P"] >= d_one["12 dB QRS +P"] + 1}
    print("\nThe rule (written before the first run):")
    for name, ok in checks.items():
        print(f"  {name}: {'yes' if ok else 'NO'}")
    print(f"  -> {'met: the two-lead monitor is offered' if all(checks.values()) else 'not met'}")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
