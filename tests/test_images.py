"""The seed's beat images: rendering, the channel-0 constants, and the Kaggle MITBIH_img folder."""
import numpy as np
import pandas as pd
import pytest

from ekg.data import channel0_stats, load_beats, load_windows
from ekg.images import (CH0_MEAN, CH0_STD, export_image_folder, find_kaggle_images, kaggle_image_dataset,
                        render_beats)


def test_render_shape_and_style():
    flat = np.full((3, 192), CH0_MEAN, dtype=np.float32)
    images = render_beats(flat)
    assert images.shape == (3, 128, 192) and images.dtype == np.uint8
    dark_rows = np.flatnonzero((images[0] == 0).any(axis=1))
    assert len(dark_rows) <= 2  # a flat signal is one thin line...
    assert abs(dark_rows.mean() - 127 * 0.5) < 1.5  # ...half-way up (mean is mid-axis)
    assert set(np.unique(images)) == {0, 255}


def test_render_draws_every_column_and_clips():
    windows = load_windows([208])[:50]
    images = render_beats(np.concatenate([windows, windows * 100]))
    assert ((images == 0).sum(axis=1) > 0).all()  # a continuous line: no empty column


def test_render_is_higher_for_higher_voltage():
    low, high = render_beats(np.array([[-1.0] * 192, [0.5] * 192], dtype=np.float32))
    assert np.argmax(high[:, 0] == 0) < np.argmax(low[:, 0] == 0)


def test_render_constants_are_the_channel0_statistics():
    mean, std = channel0_stats()
    assert mean == pytest.approx(CH0_MEAN, abs=1e-9)
    assert std == pytest.approx(CH0_STD, abs=1e-9)


def test_export_reads_back_through_imagefolder(tmp_path, monkeypatch):
    beats = load_beats([208, 232])
    sample = beats.groupby("aami", observed=True).head(4)
    windows = load_windows([208, 232])[beats.index.get_indexer(sample.index)]
    monkeypatch.setenv("EKG_KAGGLE_INPUT", str(tmp_path / "input"))
    assert find_kaggle_images() is None
    export_image_folder(sample, windows, tmp_path / "input" / "ecg-images")
    folder = find_kaggle_images()
    assert folder == tmp_path / "input" / "ecg-images" / "MITBIH_img"
    dataset = kaggle_image_dataset(folder)
    assert dataset.classes == ["F", "N", "Q", "S", "V"]
    labels = pd.Series([dataset.classes[t] for t in dataset.targets]).value_counts().to_dict()
    assert labels == sample["aami"].value_counts().loc[lambda c: c > 0].to_dict()
    image, _ = dataset[0]
    assert tuple(image.shape) == (1, 128, 192)
    # the PNG holds exactly what the renderer drew
    cls_f = np.flatnonzero(sample["aami"].to_numpy() == "F")[0]
    np.testing.assert_array_equal(image[0].numpy(), render_beats(windows[cls_f:cls_f + 1])[0])


def seed_numpy_render(windows, ylim, height=128):
    """The NumPy renderer that render_beats replaced, kept as the reference for its pixels."""
    windows = np.asarray(windows, dtype=np.float32)
    lo_y, hi_y = ylim
    rows = np.arange(height, dtype=np.float32)[None, :, None]
    r = np.clip((hi_y - windows) / (hi_y - lo_y) * (height - 1), 0, height - 1)
    nxt = np.concatenate([r[:, 1:], r[:, -1:]], axis=1)
    top = np.floor(np.minimum(r, nxt))[:, None, :]
    bottom = np.ceil(np.maximum(r, nxt))[:, None, :]
    return np.where((rows >= top) & (rows <= bottom), 0, 255).astype(np.uint8)


def test_torch_render_gives_the_numpy_renderers_pixels():
    """Every beat of two records, as recorded, tiny, huge and upside down (clipped at both edges):
    the torch renderer draws exactly the pixels the NumPy one drew (all 109,446 seed images were
    compared the same way when it replaced it)."""
    import torch

    from ekg.images import RENDER_YLIM

    windows = load_windows([208, 232])
    windows = np.concatenate([windows, windows[:500] * 0.01, windows[:500] * 100, windows[:500] * -3])
    expected = seed_numpy_render(windows, RENDER_YLIM)
    np.testing.assert_array_equal(render_beats(windows), expected)
    as_tensor = render_beats(torch.from_numpy(windows))
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.uint8
    np.testing.assert_array_equal(as_tensor.numpy(), expected)
    np.testing.assert_array_equal(render_beats(windows[0]), expected[:1])  # one window: one image


SPEC = dict(kind="image", window=[96, 96], ylim=[-1.756, 1.079], normalise=[0.5, 0.5], size=[48, 72])


def test_augmentation_shifts_scales_and_offsets_each_beat_before_rendering():
    import torch
    from torchvision.transforms.v2 import functional as TF

    from ekg.images import beat_images

    context = load_windows([208], 360, 360)[:64]
    got = beat_images(context, SPEC, augment=True, rng=np.random.default_rng(7))
    # the same draws, applied by hand
    rng = np.random.default_rng(7)
    shift = rng.integers(-4, 5, len(context))
    gain, offset = rng.uniform(0.85, 1.15, (len(context), 1)), rng.uniform(-0.1, 0.1, (len(context), 1))
    assert (shift != 0).any()
    windows = np.stack([c[360 - 96 + s:360 + 96 + s] for c, s in zip(context, shift)])
    windows = (windows * gain.astype(np.float32) + offset.astype(np.float32)).astype(np.float32)
    images = TF.resize(torch.from_numpy(seed_numpy_render(windows, SPEC["ylim"]))[:, None], [48, 72], antialias=True)
    np.testing.assert_allclose(got.numpy(), ((images.float() / 255 - 0.5) / 0.5).numpy(), atol=1e-6)
    # a tensor in gives the same images, made on its device; the same seed repeats the draws
    again = beat_images(torch.from_numpy(context), SPEC, augment=True, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(again.numpy(), got.numpy())
    plain = beat_images(context, SPEC)
    assert got.shape == plain.shape == (64, 1, 48, 72) and not torch.equal(got, plain)


def test_a_beat_set_renders_its_images_once_and_keeps_them_on_the_render_device():
    import torch

    from ekg.batches import BeatSet
    from ekg.images import beat_images, render_device

    context = load_windows([208], 360, 360)[:300]
    data = BeatSet.from_arrays(context, {}, np.zeros(len(context), np.int64))
    idx = np.array([5, 0, 299, 17])
    first = data.batch(SPEC, idx)[0]
    cached = list(data._image_cache.values())
    assert len(cached) == 1 and cached[0].dtype == torch.uint8 and cached[0].device.type == render_device().type
    assert first.device.type == render_device().type
    np.testing.assert_allclose(first.cpu().numpy(), beat_images(context[idx], SPEC).numpy(), atol=1e-6)
    data.batch(SPEC, idx[::-1].copy())
    assert data._image_cache[next(iter(data._image_cache))] is cached[0]  # rendered once, re-used
    augmented = data.batch(SPEC, idx, augment=True, rng=np.random.default_rng(0))[0]
    assert data._image_cache["context"].device.type == render_device().type  # the windows moved there once
    np.testing.assert_array_equal(augmented.cpu().numpy(),
                                  beat_images(context[idx], SPEC, augment=True, rng=np.random.default_rng(0)).numpy())


def test_rendering_on_the_gpu_matches_the_cpu():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from ekg.images import RENDER_YLIM, beat_images

    context = load_windows([208, 232], 360, 360)
    windows = torch.from_numpy(context[:, 264:456].copy())
    on_gpu = render_beats(windows.cuda())
    assert on_gpu.device.type == "cuda"
    np.testing.assert_array_equal(on_gpu.cpu().numpy(), seed_numpy_render(windows.numpy(), RENDER_YLIM))
    gpu = beat_images(torch.from_numpy(context).cuda(), SPEC, augment=True, rng=np.random.default_rng(3))
    cpu = beat_images(context, SPEC, augment=True, rng=np.random.default_rng(3))
    assert gpu.device.type == "cuda"
    # the same pixels drawn; resizing on the GPU rounds in float where the CPU has a uint8 kernel
    assert (gpu.cpu() - cpu).abs().max() <= 2 / 255 / 0.5 + 1e-6
