"""What a model takes in: a BeatSet (the beats of a split, their labels and model inputs, built on
demand) and predict (class probabilities for every beat of a BeatSet).

Both training and the live monitor use these, so they sit below the training loop.
Imports: data, features, images, NumPy, pandas, torch.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .data import CLASSES, CONTEXT, load_windows
from .features import RECORDERS, load_inputs
from .images import beat_images, render_device


class BeatSet:
    """Beats of a split with their labels and model inputs, built on demand.

    frame: rows of load_split(...) (index = row of load_beats over the split's
    records). Holds channel-0 context windows, patient-relative signal inputs and
    integer labels in CLASSES order.
    """

    def __init__(self, frame, records):
        rows = np.asarray(frame.index)
        self.frame, self._records, self._rows = frame, list(records), rows
        self.context = load_windows(records, *CONTEXT)[rows]
        self.inputs = {k: v[rows] for k, v in load_inputs(records).items()}
        self._image_cache, self._recorders = {}, None
        self.labels = pd.Categorical(frame["aami"], categories=CLASSES).codes.astype(np.int64)

    @classmethod
    def from_arrays(cls, context, inputs, labels, recorders=None):
        """A BeatSet from context windows, patient_inputs(...) and integer labels (no split frame).

        recorders: {recorder: inputs} of the same beats (features.RECORDERS versions, "native" among
        them) for augment="recorders"; without it the set has its native inputs only."""
        data = cls.__new__(cls)
        data.frame, data.context, data.inputs, data.labels, data._image_cache = None, context, inputs, labels, {}
        data._records, data._rows, data._recorders = None, None, None
        if recorders is not None:
            if "native" not in recorders or any(len(v["rhythm"]) != len(labels) for v in recorders.values()):
                raise ValueError("recorders must hold a 'native' version and one row per beat in each version")
            data._recorders = recorders
        return data

    def subset(self, mask) -> "BeatSet":
        """The beats where mask is true (a fold's records, say), sharing nothing mutable with self."""
        mask = np.asarray(mask, dtype=bool)
        data = BeatSet.from_arrays(self.context[mask], {k: v[mask] for k, v in self.inputs.items()},
                                   self.labels[mask])
        data.frame = None if self.frame is None else self.frame[mask]
        if self._recorders is not None or self._records is not None:
            data._recorders = {name: {k: v[mask] for k, v in inputs.items()}
                               for name, inputs in self.recorder_inputs().items()}
        return data

    def recorder_inputs(self) -> dict:
        """{recorder: inputs} for every features.RECORDERS version of these beats (built on first
        use; a BeatSet made from arrays has only the inputs it was given)."""
        if self._recorders is None:
            if self._records is None:
                self._recorders = {"native": self.inputs}
            else:
                self._recorders = {name: self.inputs if name == "native" else
                                   {k: v[self._rows] for k, v in load_inputs(self._records, name).items()}
                                   for name in RECORDERS}
        return self._recorders

    def __len__(self):
        return len(self.labels)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(CLASSES))

    def batch(self, spec, idx, augment=False, rng=None, morph_dropout=0.0) -> list:
        """Return the model's input tensors for beats idx, as spec (a model's "input" meta) says.

        augment (signal inputs): True adds noise, baseline wander and gain changes; "recorders" also
        draws each beat from a random recorder version (features.RECORDERS). Augmented signal
        batches are built on the GPU when there is one (signal_device), with NumPy otherwise. morph_dropout: the
        share of beats (when augmenting) whose beat and context inputs are blanked, so that the
        rhythm inputs learn to decide on their own.
        """
        if spec["kind"] == "signal":
            device = self.signal_device()
            if augment and device is not None:
                return self._signal_batch_on(device, idx, augment, rng, morph_dropout)
            if augment == "recorders":
                out = self._recorder_batch(idx, rng)
            else:
                out = [self.inputs[k][idx] for k in ("beat", "context", "rhythm")]
            if augment:  # gain changes and noise: robustness, not new patients
                n = len(idx)
                gain = rng.uniform(0.9, 1.1, (n, 1, 1)).astype(np.float32)
                noise = rng.normal(0, 1, (n, 1, out[0].shape[2])) * rng.uniform(0, 0.05, (n, 1, 1))
                # baseline wander left after the 2-s median: an offset and a slope across the window
                ramp = np.linspace(-1, 1, out[0].shape[2])
                wander = rng.normal(0, 0.05, (n, 1, 1)) * ramp + rng.normal(0, 0.03, (n, 1, 1))
                beat = out[0] + (noise + wander).astype(np.float32)  # on both channels: the template is clean
                beat[:, :1] *= gain  # the beat's own size against the patient's typical one
                context = out[1] + (rng.normal(0, 0.1, (n, 1, 1)) * np.linspace(-1, 1, out[1].shape[2])).astype(np.float32)
                if morph_dropout:
                    blank = rng.random(n) < morph_dropout
                    beat[blank], context[blank] = 0, 0
                out = [beat, context, out[2]]
            return [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in out]
        if augment:  # drawn on the render device from context windows moved there once
            if "context" not in self._image_cache:
                self._image_cache["context"] = torch.from_numpy(
                    np.ascontiguousarray(self.context, dtype=np.float32)).to(render_device())
            return [beat_images(self._image_cache["context"][idx], spec, augment, rng)]
        mean, std = spec["normalise"]
        return [(self._images(spec)[idx].float() / 255 - mean) / std]

    def signal_device(self):
        """Return where augmented signal batches are built: the GPU when there is one (training runs
        there, and the CPU would otherwise build every batch while the GPU waits), else None (the
        NumPy path). A BeatSet's `on_device` attribute, when set, overrides it: a device ("cpu":
        the torch path on the CPU, as the tests run it) or "numpy" (the NumPy path anywhere)."""
        device = getattr(self, "on_device", None)
        if device == "numpy":
            return None
        if device is not None:
            return torch.device(device)
        device = render_device()
        return device if device.type == "cuda" else None

    def _signal_batch_on(self, device, idx, augment, rng, morph_dropout=0.0) -> list:
        """The augmented signal batch of `batch`, built on device from inputs moved there once.

        The same augmentation as the NumPy path (recorder version, gain, noise, baseline wander,
        context ramp, morph dropout), drawn with a torch generator seeded from rng, so a run is
        repeatable, but not the same draws as the NumPy path."""
        names, stacked = self._device_inputs(device, augment == "recorders")
        gen = torch.Generator(device=device)
        gen.manual_seed(int(rng.integers(2 ** 62)))
        i = torch.as_tensor(np.asarray(idx), device=device)
        n = len(i)

        def uniform(low, high, shape):
            return torch.rand(shape, generator=gen, device=device) * (high - low) + low

        def normal(std, shape):
            return torch.randn(shape, generator=gen, device=device) * std

        if augment == "recorders":
            pick = torch.randint(0, len(names), (n,), generator=gen, device=device)
            beat, context, rhythm = (x[pick, i] for x in stacked)
        else:
            beat, context, rhythm = (x[0, i] for x in stacked)
        width, context_width = beat.shape[2], context.shape[2]
        gain = uniform(0.9, 1.1, (n, 1, 1))
        noise = normal(1.0, (n, 1, width)) * uniform(0.0, 0.05, (n, 1, 1))
        ramp = torch.linspace(-1, 1, width, device=device)
        wander = normal(0.05, (n, 1, 1)) * ramp + normal(0.03, (n, 1, 1))
        beat = beat + noise + wander  # on both channels: the template is clean
        beat[:, :1] *= gain
        context = context + normal(0.1, (n, 1, 1)) * torch.linspace(-1, 1, context_width, device=device)
        if morph_dropout:
            blank = torch.rand(n, generator=gen, device=device) < morph_dropout
            beat[blank], context[blank] = 0, 0
        return [beat, context, rhythm]

    def _device_inputs(self, device, recorders) -> tuple:
        """(version names, [beat, context, rhythm] each as one (versions, n, ...) tensor on device),
        moved there on first use: the native inputs alone, or every recorder version."""
        key = ("signal", str(device), bool(recorders))
        if key not in self._image_cache:
            versions = self.recorder_inputs() if recorders else {"native": self.inputs}
            self._image_cache[key] = (list(versions), [
                torch.from_numpy(np.ascontiguousarray(np.stack([v[k] for v in versions.values()]),
                                                      dtype=np.float32)).to(device)
                for k in ("beat", "context", "rhythm")])
        return self._image_cache[key]

    def _recorder_batch(self, idx, rng) -> list:
        """Each beat's inputs from a randomly drawn recorder version (features.RECORDERS)."""
        versions = self.recorder_inputs()
        names = list(versions)
        pick = rng.integers(0, len(names), len(idx))
        out = [np.empty((len(idx),) + self.inputs[k].shape[1:], np.float32) for k in ("beat", "context", "rhythm")]
        for v, name in enumerate(names):
            chosen = pick == v
            for array, k in zip(out, ("beat", "context", "rhythm")):
                array[chosen] = versions[name][k][idx[chosen]]
        return out

    def _images(self, spec) -> torch.Tensor:
        """All beats rendered once at the spec's size, as uint8 on the render device (the GPU when
        there is one): un-augmented epochs and predict re-use them there."""
        key = repr(sorted(spec.items()))
        if key not in self._image_cache:
            plain = {**spec, "normalise": [0.0, 1 / 255]}  # keeps beat_images' output in 0..255
            device = render_device()
            self._image_cache[key] = torch.cat([beat_images(self.context[i:i + 4096], plain, device=device)
                                                .round().to(torch.uint8) for i in range(0, len(self), 4096)])
        return self._image_cache[key]


def predict(model, data, spec, device=None, batch_size=1024) -> np.ndarray:
    """Return class probabilities (n, 5) for every beat of a BeatSet."""
    device = torch.device(device or next(model.parameters()).device)
    model.eval()
    # image CNNs on the CPU: oneDNN's 2-D convolutions run channels-last faster (DS2's 49,712 beats on
    # two cores: image_cnn 53 s instead of 79, seed_cnn 46 instead of 67; probabilities within 1.1e-6,
    # every class the same); the weights are put back as they were afterwards
    channels_last = spec["kind"] == "image" and device.type == "cpu"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                idx = np.arange(start, min(start + batch_size, len(data)))
                inputs = [x.to(device) for x in data.batch(spec, idx)]
                with torch.autocast(device.type, enabled=device.type == "cuda"):
                    out.append(torch.softmax(model(*inputs).float(), 1).cpu().numpy())
    finally:
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)
