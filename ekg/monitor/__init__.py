"""The bedside monitor: streaming QRS detection, signal quality, clinical alarms, the two-lead noise
gate, and the Monitor and Ward that put them together.

    from ekg.models import load_model
    from ekg.monitor import Monitor
    monitor = Monitor(load_model("models/recommended.pt"), fs=250)
    for event in monitor.push(samples):  # any chunk of samples, as they arrive
        print(event)

Imports torch, NumPy and SciPy, never torchvision, matplotlib, the training loop or the
notebooks' utils.
"""
from .alarms import (ALARM_PRIORITY, ALARM_THRESHOLDS, ARRHYTHMIA_ALARMS, CRITICAL_ALARMS, NEVER_SUPPRESSED, VF_RHYTHM_LABELS,
                     VT_GRACE_S, AlarmRules, rhythm_spans, score_vt_alarms, vt_episodes)
from .gate import NoiseGate, default_gate
from .qrs import StreamingQRS, detect_beats, detect_beats_variants
from .quality import block_quality
from .replays import replay, replay_jobs
from .stream import Monitor, Ward
from .vf import VF_SETTINGS, VFDetector, detect_vf

__all__ = ["ALARM_PRIORITY", "ALARM_THRESHOLDS", "ARRHYTHMIA_ALARMS", "CRITICAL_ALARMS", "NEVER_SUPPRESSED",
           "VF_RHYTHM_LABELS", "VT_GRACE_S", "AlarmRules", "rhythm_spans", "score_vt_alarms", "vt_episodes", "NoiseGate", "default_gate", "StreamingQRS",
           "detect_beats", "detect_beats_variants", "block_quality", "Monitor", "Ward", "replay", "replay_jobs", "VF_SETTINGS", "VFDetector", "detect_vf"]
