"""The command line: `python -m ekg COMMAND` (or the `ekg` console script).

    ekg classify RECORD [--model PATH] [--blend PATH|none] [--beats reference|detect] [--out DIR]
        beat labels as a WFDB annotation file (OUT/NAME.ekg, read by bxb, rdann, WAVE and
        wfdb.plot_wfdb) and as CSV (OUT/NAME.ekg.csv)
    ekg monitor RECORD [--speed X] [--seconds N] [--blend recommended|PATH]
        the record replayed through the bedside Monitor at X times real time, one JSON line per
        beat, alarm and signal-quality event, then a JSON summary line
    ekg export [--notebooks DIR] [--out DIR]
        report/: each notebook as standalone HTML and one combined report (see ekg.export)

RECORD is a WFDB record path without extension (data/mitdb/100), as wfdb and the WFDB tools take
it; RECORD.hea is accepted too. Errors (a missing record, annotation or model file) print one
line naming the problem and exit with status 1; bad signal (NaN or flat stretches, no beats)
gives warnings and a result, never a crash. With the recommended model (no --model), classify
applies the recommended blend (models/recommended_blend.json.gz: V from the feature model,
ekg.blend) unless --blend none; monitor runs the model alone, as the bedside monitor ships (on DS1
with electrode-motion noise the blend raised far more false VT alarms: README), unless --blend
recommended or --blend PATH; a blend must have been chosen with the model it is given with.

The top of the package: imports classify, models, signals, monitor and export, each inside the
command that needs it, so `ekg --help` starts fast.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

#: The MIT-BIH beat symbol written for each AAMI class, so that bxb, rdann and WAVE read the
#: labels with their usual meaning: N normal beat; A atrial premature beat (S: bxb and the AAMI
#: mapping count every supraventricular ectopic symbol as S, and A is the commonest); V premature
#: ventricular contraction; F fusion of ventricular and normal beat; Q unclassifiable beat.
#: Each symbol maps back to its class through data.AAMI_MAP (a test checks the round trip).
AAMI_TO_SYMBOL = {"N": "N", "S": "A", "V": "V", "F": "F", "Q": "Q"}

#: The annotator name (file extension) the classifier's labels are written under:
#: `bxb -r 100 -a atr ekg` compares them with the reference.
ANNOTATOR = "ekg"


class CliError(Exception):
    """A problem with the command's input that the user can fix; main prints it and exits 1."""


def _warn(message):
    print(f"ekg: warning: {message}", file=sys.stderr)


def _info(args, message):
    if not getattr(args, "quiet", False):
        print(f"ekg: {message}", file=sys.stderr)


# -- inputs ------------------------------------------------------------------------------------

def record_path(record) -> Path:
    """Return the WFDB record path (no extension) for RECORD, or raise CliError if it has no header."""
    path = Path(record)
    if path.suffix in (".hea", ".dat", ".atr"):
        path = path.with_suffix("")
    if not Path(f"{path}.hea").is_file():
        where = path.parent if str(path.parent) != "." else Path.cwd()
        raise CliError(f"record {record!r} not found: there is no header file {path.name}.hea in {where}")
    return path


def load_model_file(path):
    """Load a model saved by ekg.models.save_model; raise CliError saying what is wrong with the file."""
    from .models import ARCHITECTURES, load_checkpoint, load_model, model_path

    path = Path(path) if path else model_path("recommended")
    if not path.is_file():
        raise CliError(f"model file {str(path)!r} not found (the default is models/recommended.pt, "
                       f"written by notebooks/03_training.ipynb)")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is some other file
        raise CliError(f"{path} is not a PyTorch model file (torch.save writes a zip archive; this is not one)")
    try:
        saved = load_checkpoint(path)
    except ValueError as err:  # pickled objects: refused by weights_only=True
        raise CliError(str(err)) from None
    except Exception as err:  # not a file torch.load reads at all
        raise CliError(f"{path} is not a PyTorch model file ({type(err).__name__}: {err})") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("meta"), dict) or "state_dict" not in saved:
        raise CliError(f"{path} is not a model saved by ekg.models.save_model: it has no 'meta' and 'state_dict'")
    arch = saved["meta"].get("arch")
    if arch not in ARCHITECTURES:
        raise CliError(f"{path} holds an unknown architecture {arch!r}; ekg knows {sorted(ARCHITECTURES)}")
    try:
        return load_model(path)
    except RuntimeError as err:  # weights of other shapes
        first = " ".join(str(err).split("\n")[:2])  # torch lists every mismatched tensor: the first says enough
        raise CliError(f"{path}: its weights do not fit an {arch} ({first})") from None
    except Exception as err:  # metadata the architecture or today's inputs do not take
        raise CliError(f"{path} cannot be used: {type(err).__name__}: {err}") from None


def load_blend_file(args, model, by_default):
    """Return the blend.FeatureBlend the command applies, or None: --blend none, --blend recommended,
    a --blend PATH, or without --blend the recommended blend if by_default and the model is the
    recommended one (not a --model of the user's); raise CliError for a missing or unreadable file,
    or a blend chosen with another model."""
    from .blend import FeatureBlend, blend_path

    choice = args.blend if args.blend is not None else ("recommended" if by_default and args.model is None else "none")
    if choice == "none":
        return None
    path = blend_path() if choice == "recommended" else Path(choice)
    if not path.is_file():
        raise CliError(f"blend file {str(path)!r} not found (the default is models/recommended_blend.json.gz; "
                       "--blend none classifies with the model alone)")
    try:
        blend = FeatureBlend.load(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CliError(f"{path} is not a blend file written by ekg ({type(err).__name__}: {err})") from None
    try:
        blend.check(model)
    except ValueError as err:
        raise CliError(f"{path}: {err}; --blend none classifies with the model alone") from None
    return blend


def read(record, channel):
    """read_signal, with a CliError naming the record when wfdb cannot read it or has no such channel."""
    from .signals import read_signal

    try:
        return read_signal(record, channel)
    except Exception as err:  # an unknown channel, a damaged or truncated file: wfdb's words, our record
        raise CliError(f"cannot read record {record}: {err}") from None


def signal_problems(signal, fs) -> dict:
    """Return the seconds of signal in each bad state ("missing", "flat", "saturated", "noisy"),
    judged on 1-s blocks by the monitor's own signal-quality check."""
    from .monitor.quality import block_quality

    block = max(int(round(fs)), 1)
    seconds = {}
    for start in range(0, len(signal), block):
        state = block_quality(signal[start:start + block], fs=fs)
        if state != "ok":
            seconds[state] = seconds.get(state, 0) + len(signal[start:start + block]) / fs
    return seconds


class _CountingModel:
    """The model, counting the beats it classifies on a tqdm bar: classify_record has no progress
    hook, but it calls the model once per batch of beats."""

    def __init__(self, model, bar):
        self._model, self._bar, self._started = model, bar, False

    def __getattr__(self, name):
        return getattr(self._model, name)

    def __call__(self, *inputs):
        if not self._started:  # the rate counts classification, not the reading and detection before it
            self._bar.reset(total=self._bar.total)
            self._started = True
        self._bar.update(len(inputs[0]))
        return self._model(*inputs)


# -- classify ----------------------------------------------------------------------------------

def write_annotations(out, name, extension, samples, classes, fs) -> Path:
    """Write beats (samples, AAMI classes) as the WFDB annotation file OUT/NAME.EXTENSION; return it.

    Classes become MIT-BIH symbols by AAMI_TO_SYMBOL. wfdb.wrann refuses an empty file, so a
    record without beats gets one comment annotation ('"', aux note "no beats found") at sample 1
    (wfdb.rdann takes a comment at sample 0 for its own header note and drops it), which rdann
    reads and bxb, counting beat annotations only, ignores.
    """
    import wfdb

    samples = np.asarray(samples, dtype=np.int64)
    symbols = [AAMI_TO_SYMBOL[c] for c in classes]
    notes = None
    if len(samples) == 0:
        samples, symbols, notes = np.ones(1, np.int64), ['"'], ["no beats found"]
    wfdb.wrann(name, extension, samples, symbol=symbols, aux_note=notes, fs=fs, write_dir=str(out))
    return Path(out) / f"{name}.{extension}"


def classify(args) -> int:
    """Classify a record's beats; write OUT/NAME.ekg (WFDB annotations) and OUT/NAME.ekg.csv."""
    import wfdb
    from .config import progress_bar as tqdm

    from .classify import classify_record
    from .data import BEAT_SYMBOLS, CLASSES
    record = record_path(args.record)
    annotation = Path(f"{record}.{args.annotator}")
    if args.beats == "reference" and not annotation.is_file():
        raise CliError(f"{annotation} not found: record {record.name} has no reference beats to classify; "
                       f"run with --beats detect to classify the beats the QRS detector finds")
    model = load_model_file(args.model)
    blend = load_blend_file(args, model, by_default=True)
    signal, fs, channel = read(record, args.channel)
    _info(args, f"record {record.name}: {len(signal) / fs / 60:.1f} min at {fs:g} Hz, channel {channel}, "
                f"{args.beats} beats, {'the model blended with the feature model' if blend else 'the model alone'}")
    problems = signal_problems(signal, fs)
    if problems:
        _warn(f"record {record.name}: bad signal for " + ", ".join(f"{s:.0f} s {kind}" for kind, s in problems.items())
              + "; beats there may be missed or mislabelled")
    total = None
    if args.beats == "reference":
        total = int(np.isin(wfdb.rdann(str(record), args.annotator).symbol, BEAT_SYMBOLS).sum())
    # the bar appears only for records that take more than a second
    with tqdm(total=total, unit="beat", desc=f"classifying {record.name}", delay=1.0, file=sys.stderr,
              disable=args.quiet) as bar:
        table = classify_record(record, _CountingModel(model, bar), beats=args.beats, channel=args.channel,
                                annotator=args.annotator, blend=blend)
    found = table[table["aami_pred"].isin(CLASSES)]  # not the reference beats the detector missed ("O")
    if len(found) == 0:
        _warn(f"record {record.name}: no beats found; the annotation file is empty")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_annotations(out, record.name, args.extension, found["sample"].to_numpy(dtype=np.int64),
                      found["aami_pred"].to_numpy(), fs)
    csv = out / f"{record.name}.{args.extension}.csv"
    table.assign(mitbih_symbol=table["aami_pred"].map(AAMI_TO_SYMBOL)).to_csv(csv, index=False)
    counts = found["aami_pred"].value_counts().reindex(CLASSES, fill_value=0)
    _info(args, f"record {record.name}: {len(found):,} beats (" + ", ".join(f"{c} {n:,}" for c, n in counts.items())
                + f") -> {out / record.name}.{args.extension}, {csv}")
    return 0


# -- monitor -----------------------------------------------------------------------------------

def _jsonable(value):
    """Plain JSON values: NumPy scalars as numbers, NaN and infinity as null (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _emit(event):
    print(json.dumps(_jsonable(event), allow_nan=False), flush=True)


def monitor(args) -> int:
    """Replay a record through Monitor; print each event and then a summary as JSON lines."""
    from .data import CLASSES
    from .monitor import Monitor
    record = record_path(args.record)
    model = load_model_file(args.model)
    blend = load_blend_file(args, model, by_default=False)
    signal, fs, channel = read(record, args.channel)
    second = None
    if args.second_channel is not None:  # a two-lead stream: the second lead feeds the noise gate
        lead1, _, second = read(record, args.second_channel)
        if second == channel:
            raise CliError(f"--second-channel names the classified channel {channel!r}: give the record's other lead")
        signal = np.column_stack([signal, lead1])
    if args.seconds is not None:
        signal = signal[:max(int(round(args.seconds * fs)), 0)]
    live = args.speed > 0 and math.isfinite(args.speed)
    _info(args, f"record {record.name}: replaying {len(signal) / fs:.1f} s at {fs:g} Hz, channel {channel}"
                + (f" (noise gate on channel {second})" if second is not None else "") + ", "
                + (f"{args.speed:g}x real time" if live else "as fast as possible"))
    mon = Monitor(model, fs, blend=blend, leads=1 if second is None else 2)
    chunk = max(int(round(args.chunk * fs)), 1)
    beats = dict.fromkeys(CLASSES, 0)
    alarms, quality, noise = {}, {}, 0
    start, interrupted = time.monotonic(), False
    try:
        for i in range(0, len(signal), chunk):
            if live:  # a chunk is pushed once its last sample would have arrived
                wait = start + min(i + chunk, len(signal)) / fs / args.speed - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            for event in mon.push(signal[i:i + chunk]):
                _emit(event)
                if event["type"] == "beat":
                    beats[event["class"]] += 1
                elif event["type"] == "alarm":
                    alarms[event["kind"]] = alarms.get(event["kind"], 0) + 1
                elif event["type"] == "noise":
                    noise += 1
                else:
                    quality[event["kind"]] = quality.get(event["kind"], 0) + 1
    except KeyboardInterrupt:
        interrupted = True
    _emit({"type": "summary", "record": record.name, "fs": fs, "channel": channel,
           "seconds": mon.n_in / fs, "beats": sum(beats.values()), "classes": beats, "alarms": alarms,
           "signal_quality": quality, "second_channel": second, "noise_detections": noise,
           # beats found in the last second or two wait for the signal after them, which never comes
           "unclassified_at_end": len(mon.pending), "interrupted": interrupted})
    return 130 if interrupted else 0


# -- export ------------------------------------------------------------------------------------

def export(args) -> int:
    """Build the HTML report (see ekg.export.export_report)."""
    from .export import ExportError, export_report

    try:
        written = export_report(args.notebooks, args.out)
    except ExportError as err:
        raise CliError(str(err)) from None
    folder = written[-1].parent if written else args.out  # the default folder when --out is not given
    _info(args, f"wrote {len(written)} files to {folder}: " + ", ".join(p.name for p in written))
    return 0


# -- entry point -------------------------------------------------------------------------------

def _speed(text):
    value = float(text)
    if value < 0 or math.isnan(value):
        raise argparse.ArgumentTypeError(f"speed must be 0 (as fast as possible) or positive, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ekg command line."""
    parser = argparse.ArgumentParser(prog="ekg", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub, record=True):
        if record:
            sub.add_argument("record", metavar="RECORD", help="WFDB record path without extension, e.g. data/mitdb/100")
            sub.add_argument("--model", metavar="PATH", default=None,
                             help="model file from ekg.models.save_model (default: models/recommended.pt)")
            sub.add_argument("--blend", metavar="PATH", default=None,
                             help="a CNN + feature-model blend file chosen with the model, 'recommended' "
                                  "(models/recommended_blend.json.gz) or 'none' (default: classify the recommended "
                                  "blend with the recommended model; monitor none)")
            sub.add_argument("--channel", default=None, type=lambda text: int(text) if text.isdigit() else text,
                             help="signal name or index to use (default: the first channel)")
        sub.add_argument("-q", "--quiet", action="store_true", help="no progress or status lines on stderr")

    sub = commands.add_parser("classify", help="write a record's beat labels as WFDB annotations and CSV",
                              description="Classify every beat of a WFDB record into N, S, V, F, Q and write "
                                          "OUT/NAME.EXT (WFDB annotations, MIT-BIH symbols N, A, V, F, Q) and "
                                          "OUT/NAME.EXT.csv (times, classes, probabilities).")
    common(sub)
    sub.add_argument("--beats", choices=["reference", "detect"], default="reference",
                     help="classify the annotated beats (RECORD.atr) or the beats the QRS detector finds")
    sub.add_argument("--out", metavar="DIR", default=".", help="folder for the output files (default: here)")
    sub.add_argument("--annotator", default="atr", help="reference annotation extension (default: atr)")
    sub.add_argument("--extension", default=ANNOTATOR,
                     help=f"annotator name of the written file (default: {ANNOTATOR})")
    sub.set_defaults(run=classify)

    sub = commands.add_parser("monitor", help="replay a record through the bedside monitor, events as JSON lines",
                              description="Replay a WFDB record through ekg.monitor.Monitor and print each beat, "
                                          "alarm and signal-quality event as one JSON line, then a summary line.")
    common(sub)
    sub.add_argument("--speed", type=_speed, default=1.0,
                     help="times real time (default 1); 0 or inf: as fast as possible")
    sub.add_argument("--seconds", type=float, default=None, metavar="N", help="replay only the first N seconds")
    sub.add_argument("--chunk", type=float, default=0.25, metavar="S",
                     help="seconds of signal per push, as a live feed would deliver them (default 0.25)")
    sub.add_argument("--second-channel", default=None, type=lambda text: int(text) if text.isdigit() else text,
                     metavar="CH", help="a second lead (index or name) for the two-lead noise gate (ekg.monitor.gate): "
                                        "first-lead detections it reads as noise are printed as noise events")
    sub.set_defaults(run=monitor)

    sub = commands.add_parser("export", help="build report/: each notebook and one combined report as HTML",
                              description="Export the executed notebooks as standalone HTML (figures embedded) "
                                          "and one combined report with a contents list; fails if a cell "
                                          "of the run raised an error.")
    common(sub, record=False)
    sub.add_argument("--notebooks", metavar="DIR", default=None, help="notebook folder (default: notebooks/)")
    sub.add_argument("--out", metavar="DIR", default=None, help="output folder (default: report/)")
    sub.set_defaults(run=export)
    return parser


def main(argv=None) -> int:
    """Run the command line; return the exit status (0 success, 1 an error, 2 a usage error)."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CliError as err:
        print(f"ekg {args.command}: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`ekg monitor ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
