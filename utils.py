"""The notebooks' one shared import: setup, the figure helper, and the project's names from `ekg`.

Every notebook's first cell finds this file (the repository root, or an attached Kaggle
input) and imports it; the `ekg` package next to it holds the machinery, one module per
job (see ekg/__init__.py). Everything a notebook calls as `utils.X` is re-exported here,
so the notebooks read as a report and programs import `ekg` directly.
"""
from __future__ import annotations

from pathlib import Path

from ekg import config
from ekg.batches import BeatSet, predict
from ekg.blend import FeatureBlend, blend_path
from ekg.classify import (MATCH_WINDOW_S, classify_beats, classify_record, in_spans, match_beats,
                          vf_spans)
from ekg.config import (CACHE_DIR, FAST, ON_KAGGLE, OUTPUT_ROOT, PLOTS_DIR, ROOT, SPLITS_DIR, WORKERS,
                        kaggle_input, progress_bar, seed_everything)
from ekg.data import (AAMI_MAP, BEAT_SYMBOLS, CLASSES, CONTEXT, DS1, DS2, FAST_RECORDS, FS, LOCAL_RR_BEATS, PACED,
                      RECORDS, VAL_RECORDS, DataError, causal_local_rr, channel0_stats, download_mitdb,
                      find_data_dir, load_beats, load_windows, record_files, verify_files)
from ekg.features import (BEAT_WINDOW, CONTEXT_STEP, QRS_HALF, RHYTHM_FEATURES, TEMPLATE_BEATS, beat_parts,
                          beats_from_signal, causal_median, load_inputs, patient_inputs)
from ekg.images import (CH0_MEAN, CH0_STD, IMAGE_SHAPE, RENDER_YLIM, beat_images, export_image_folder,
                        find_kaggle_images, kaggle_image_dataset, render_beats)
from ekg.metrics import EC57_LABELS, bootstrap_by_record, ec57_confusion, macro_f1, per_class_scores, score
from ekg.models import (ARCHITECTURES, ImageCNN, SeedCNN, SignalCNN, load_checkpoint, load_model, model_path,
                        save_model, saved_model)
from ekg.monitor import (ALARM_THRESHOLDS, ARRHYTHMIA_ALARMS, CRITICAL_ALARMS, VF_RHYTHM_LABELS, VT_GRACE_S, Monitor,
                         StreamingQRS, Ward, block_quality, detect_beats, detect_beats_variants, replay, replay_jobs,
                         rhythm_spans, score_vt_alarms, vt_episodes)
from ekg.signals import read_signal, refine_peaks, resample
from ekg.splits import inter_patient_split, load_split, save_split, seed_split
from ekg.training import class_weights, fit, get_device

#: Resolution of every saved figure, in dots per inch.
DPI = 150


def save_fig(fig, name) -> Path:
    """Save a figure as plots/NAME.png, at the project's fixed resolution, and as plots/NAME.svg, a
    vector copy for write-ups and print; return the PNG's path."""
    import matplotlib

    config.PLOTS_DIR.mkdir(parents=True, exist_ok=True)
    path = config.PLOTS_DIR / f"{name}.png"
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    # ids salted by the name and no date: a figure that did not change gives the same SVG file,
    # so a re-run leaves git quiet
    with matplotlib.rc_context({"svg.hashsalt": name}):
        fig.savefig(path.with_suffix(".svg"), bbox_inches="tight", metadata={"Date": None})
    return path
