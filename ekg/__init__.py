"""ekg: heartbeat classification on MIT-BIH and a bedside monitor built on it.

The modules follow the data's path, and each imports only the ones above it in this list:

    config     paths, fast mode, output folders, seeds
    trees      fitted tree ensembles as plain numbers (no pickle), evaluated fast
    data       MIT-BIH: locate, download, verify; the beat table and signal windows
    signals    read any WFDB record's channel, resample, refine R peaks
    images     the seed's beat images; the Kaggle MITBIH_img folder
    splits     the seed split and the inter-patient (DS1/DS2) split
    features   the signal model's patient-relative, causal inputs
    models     the networks, saving and loading them
    batches    BeatSet and predict: what a model takes in and gives back
    training   the training loop and checkpoints
    metrics    per-class scores, EC57 statistics, bootstrap by patient
    baseline   the classical feature baseline: RR and morphology features, LDA and GBM
    blend      the CNN and the feature model's GBM combined, as classify and monitor apply it
    classify   any WFDB record, at reference or detected beats
    monitor    streaming QRS, signal quality, alarms, Monitor and Ward

The public names are available at the top (`ekg.load_beats`, `ekg.Monitor`), loaded on first
use, so `import ekg` stays cheap and `from ekg.monitor import Monitor` imports only the live path.
"""
from importlib import import_module

_PUBLIC = {
    "config": ["ROOT", "FAST", "RETRAIN", "WORKERS", "ON_KAGGLE", "kaggle_input", "seed_everything"],
    "data": ["FS", "RECORDS", "DS1", "DS2", "PACED", "VAL_RECORDS", "FAST_RECORDS", "CLASSES", "AAMI_MAP",
             "BEAT_SYMBOLS", "CONTEXT", "LOCAL_RR_BEATS", "DataError", "verify_files", "record_files",
             "download_mitdb", "find_data_dir", "causal_local_rr", "load_beats", "load_windows", "channel0_stats"],
    "signals": ["read_signal", "resample", "refine_peaks"],
    "images": ["CH0_MEAN", "CH0_STD", "RENDER_YLIM", "IMAGE_SHAPE", "render_beats", "beat_images",
               "export_image_folder", "find_kaggle_images", "kaggle_image_dataset"],
    "splits": ["seed_split", "inter_patient_split", "save_split", "load_split"],
    "features": ["BEAT_WINDOW", "CONTEXT_STEP", "TEMPLATE_BEATS", "QRS_HALF", "RHYTHM_FEATURES", "causal_median",
                 "beat_parts", "patient_inputs", "beats_from_signal", "load_inputs"],
    "models": ["SeedCNN", "ImageCNN", "SignalCNN", "ARCHITECTURES", "load_checkpoint", "save_model", "load_model",
               "saved_model", "model_path"],
    "batches": ["BeatSet", "predict"],
    "training": ["get_device", "class_weights", "fit"],
    "metrics": ["macro_f1", "per_class_scores", "EC57_LABELS", "ec57_confusion", "score", "bootstrap_by_record"],
    "trees": ["TreeModel", "export_trees"],
    "blend": ["FeatureBlend", "blend_path", "blend_probs"],
    "classify": ["MATCH_WINDOW_S", "match_beats", "vf_spans", "in_spans", "classify_beats", "classify_record"],
    "monitor": ["ALARM_PRIORITY", "ALARM_THRESHOLDS", "ARRHYTHMIA_ALARMS", "CRITICAL_ALARMS", "StreamingQRS",
                "detect_beats", "detect_beats_variants", "block_quality", "Monitor", "Ward", "VFDetector", "detect_vf",
                "VT_GRACE_S", "VF_RHYTHM_LABELS", "rhythm_spans", "score_vt_alarms", "vt_episodes", "replay",
                "replay_jobs"],
}
_WHERE = {name: module for module, names in _PUBLIC.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    """Load a public name's module on first use (PEP 562), so importing ekg imports nothing heavy."""
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'ekg' has no attribute {name!r}")


def __dir__():
    return __all__
