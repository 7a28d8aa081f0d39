"""Beat images: the seed project's pictures of single beats, rendered from the raw signal, and the
Kaggle "ECG images" folder (MITBIH_img) written and read back with torchvision's ImageFolder.

Imports: data, NumPy, torch; PIL and torchvision inside the functions that need them, so
importing this module does not import torchvision.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import kaggle_input
from .data import CLASSES


#: channel0_stats() over all records (a test recomputes them): the seed fixed its
#: y-axis to mean +- 3 sd so that beat amplitude stays visible across images.
CH0_MEAN, CH0_STD = -0.33859005208333, 0.47236843197534


RENDER_YLIM = (CH0_MEAN - 3 * CH0_STD, CH0_MEAN + 3 * CH0_STD)


IMAGE_SHAPE = (128, 192)


def render_beats(windows, ylim=RENDER_YLIM, height=IMAGE_SHAPE[0], batch=2048) -> np.ndarray:
    """Render signal windows (n, width) as uint8 images (n, height, width): a dark line on white.

    Column j is one sample; the line from sample j to j+1 is drawn in column j,
    as a plotted line would be. Vectorised over the batch: no figure per image.
    """
    windows = np.atleast_2d(np.asarray(windows, dtype=np.float32))
    lo_y, hi_y = ylim
    out = np.empty((len(windows), height, windows.shape[1]), dtype=np.uint8)
    rows = np.arange(height, dtype=np.float32)[None, :, None]
    for start in range(0, len(windows), batch):
        w = windows[start:start + batch]
        r = np.clip((hi_y - w) / (hi_y - lo_y) * (height - 1), 0, height - 1)
        nxt = np.concatenate([r[:, 1:], r[:, -1:]], axis=1)
        top = np.floor(np.minimum(r, nxt))[:, None, :]
        bottom = np.ceil(np.maximum(r, nxt))[:, None, :]
        out[start:start + batch] = np.where((rows >= top) & (rows <= bottom), 0, 255)
    return out


def beat_images(context, spec, augment=False, rng=None) -> torch.Tensor:
    """Render context windows (n, 720) as normalised image tensors (n, 1, H, W) for an image model.

    With augment, each beat is shifted by up to 4 samples and its amplitude scaled
    and offset slightly before rendering, as a different electrode placement would.
    """
    from torchvision.transforms.v2 import functional as TF

    before, after = spec["window"]
    centre = context.shape[1] // 2
    if augment:
        shift = rng.integers(-4, 5, len(context))
        cols = centre - before + shift[:, None] + np.arange(before + after)
        windows = np.take_along_axis(context, cols, axis=1)
        windows = windows * rng.uniform(0.85, 1.15, (len(context), 1)) + rng.uniform(-0.1, 0.1, (len(context), 1))
    else:
        windows = context[:, centre - before:centre + after]
    images = torch.from_numpy(render_beats(windows, ylim=tuple(spec["ylim"])))[:, None]
    images = TF.resize(images, list(spec["size"]), antialias=True)
    mean, std = spec["normalise"]
    return (images.float() / 255 - mean) / std


def export_image_folder(beats, windows, dest) -> Path:
    """Write rendered beats as PNGs in the Kaggle "ECG images" layout dest/MITBIH_img/{class}/.

    File names are counters per class, as in the Kaggle set, so they carry no
    record. Returns the MITBIH_img folder.
    """
    from PIL import Image

    root = Path(dest) / "MITBIH_img"
    images = render_beats(windows)
    labels = np.asarray(beats["aami"])
    for cls in CLASSES:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, idx in enumerate(np.flatnonzero(labels == cls)):
            Image.fromarray(images[idx], mode="L").save(root / cls / f"{i}.png")
    return root


def find_kaggle_images() -> Path | None:
    """Return an attached Kaggle "ECG images" folder (MITBIH_img), or None."""
    if kaggle_input().is_dir():
        for candidate in sorted(kaggle_input().glob("**/MITBIH_img")):
            if all((candidate / c).is_dir() for c in CLASSES):
                return candidate
    return None


def kaggle_image_dataset(root, transform=None):
    """Return a torchvision ImageFolder over a MITBIH_img folder, images as grayscale.

    ImageFolder sorts class folders alphabetically (F, N, Q, S, V); the dataset
    carries that order in .classes, which the seed mixed up with N, S, V, F, Q.
    """
    from torchvision import datasets, transforms

    steps = [transforms.Grayscale()] + ([transform] if transform else [transforms.PILToTensor()])
    return datasets.ImageFolder(str(root), transform=transforms.Compose(steps))
