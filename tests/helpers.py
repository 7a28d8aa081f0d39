"""Small helpers the unit tests share (tests/ is on sys.path when pytest runs them)."""
import numpy as np


def stream(detector_or_monitor, signal, chunk):
    """Feed a signal to a StreamingQRS (feed) or Monitor (push) in chunks; return everything it gave back."""
    feed = getattr(detector_or_monitor, "feed", None) or detector_or_monitor.push
    out = []
    for i in range(0, len(signal), chunk):
        out += feed(signal[i:i + chunk])
    return out


def stream_in_pieces(detector_or_monitor, signal, cuts):
    """Feed a signal cut at the given sample positions (any order, repeats allowed)."""
    feed = getattr(detector_or_monitor, "feed", None) or detector_or_monitor.push
    edges = [0, *sorted(set(int(c) for c in cuts if 0 < c < len(signal))), len(signal)]
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        out += feed(signal[a:b])
    return out


def beats_of(events):
    return [e for e in events if e["type"] == "beat"]


def probabilities(beat_events):
    return np.array([list(e["probabilities"].values()) for e in beat_events])

