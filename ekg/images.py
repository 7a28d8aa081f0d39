"""Beat images: the seed project's pictures of single beats, rendered from the raw signal, and the
Kaggle "ECG images" folder (MITBIH_img) written and read back with torchvision's ImageFolder.

Images are drawn in torch, on the device the model trains on (the GPU when there is one), so a
GPU does not wait for the CPU to draw its batches.
Imports: config, data, NumPy, torch; PIL and torchvision inside the functions that need them, so
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


def render_device() -> torch.device:
    """Return where beat images are rendered and kept by default: the GPU when there is one (the
    device training runs on), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def render_beats(windows, ylim=RENDER_YLIM, height=IMAGE_SHAPE[0], batch=2048):
    """Render signal windows (n, width) as uint8 images (n, height, width): a dark line on white.

    Column j is one sample; the line from sample j to j+1 is drawn in column j,
    as a plotted line would be. Vectorised over the batch: no figure per image.
    Written in torch so that it runs where the windows are: a tensor gives a uint8 tensor on
    its own device (CUDA included); a NumPy array gives a NumPy array (rendered on the CPU).
    Both give the pixels the seed's NumPy renderer gave (a test compares them on real beats).
    """
    if not 1 <= height <= 256:
        raise ValueError(f"height must be 1 to 256 rows (uint8 row arithmetic), not {height}")
    as_numpy = not isinstance(windows, torch.Tensor)
    windows = torch.from_numpy(np.asarray(windows, dtype=np.float32)) if as_numpy else windows.float()
    windows = torch.atleast_2d(windows)
    lo_y, hi_y = ylim
    device = windows.device
    # the scale as tensors on the device, not Python numbers: a tensor-by-number division may be
    # computed as a multiplication by the reciprocal, which moves a row now and then
    top_y = torch.tensor(hi_y, dtype=torch.float32, device=device)
    span = torch.tensor(hi_y - lo_y, dtype=torch.float32, device=device)
    rows = torch.arange(height, dtype=torch.uint8, device=device)[None, :, None]
    out = torch.empty((len(windows), height, windows.shape[1]), dtype=torch.uint8, device=device)
    for start in range(0, len(windows), batch):
        r = ((top_y - windows[start:start + batch]) / span * (height - 1)).clamp_(0, height - 1)
        nxt = torch.cat([r[:, 1:], r[:, -1:]], dim=1)
        top = torch.minimum(r, nxt).floor_().to(torch.uint8)[:, None, :]
        extent = torch.maximum(r, nxt).ceil_().to(torch.uint8)[:, None, :] - top
        # a row is on the line when 0 <= row - top <= extent; in uint8 a row above the line wraps
        # round to a large number, so one comparison finds the white pixels (about 7 times faster
        # on one CPU thread than two comparisons in int16, measured on batches of 128 beats)
        block = out[start:start + batch]
        torch.gt(rows - top, extent, out=block.view(torch.bool))
        block.mul_(255)
    return out.numpy() if as_numpy else out


def beat_images(context, spec, augment=False, rng=None, device=None) -> torch.Tensor:
    """Render context windows (n, 720) as normalised image tensors (n, 1, H, W) for an image model.

    context: a NumPy array or a tensor; the images are made on device (default: the tensor's
    own device, the CPU for an array), the augmentation included, and returned there.
    With augment, each beat is shifted by up to 4 samples and its amplitude scaled
    and offset slightly before rendering, as a different electrode placement would. The
    random draws come from the NumPy generator rng, in the order the NumPy version drew
    them, so a resumed training run repeats them; only the draws cross to the device.
    """
    from torchvision.transforms.v2 import functional as TF

    if isinstance(context, torch.Tensor):
        context = context.to(device) if device is not None else context
    else:
        context = torch.from_numpy(np.ascontiguousarray(context, dtype=np.float32)).to(device or "cpu")
    device = context.device
    before, after = spec["window"]
    centre = context.shape[1] // 2
    if augment:
        n = len(context)
        shift = torch.from_numpy(rng.integers(-4, 5, n)).to(device)
        gain = torch.from_numpy(rng.uniform(0.85, 1.15, (n, 1)).astype(np.float32)).to(device)
        offset = torch.from_numpy(rng.uniform(-0.1, 0.1, (n, 1)).astype(np.float32)).to(device)
        cols = centre - before + shift[:, None] + torch.arange(before + after, device=device)
        windows = torch.gather(context, 1, cols) * gain + offset
    else:
        windows = context[:, centre - before:centre + after]
    images = render_beats(windows, ylim=tuple(spec["ylim"]))[:, None]
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
