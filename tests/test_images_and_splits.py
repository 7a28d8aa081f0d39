"""The seed's beat images and the two splits."""
import numpy as np
import pandas as pd
import pytest

import utils


def test_render_shape_and_style():
    flat = np.full((3, 192), utils.CH0_MEAN, dtype=np.float32)
    images = utils.render_beats(flat)
    assert images.shape == (3, 128, 192) and images.dtype == np.uint8
    dark_rows = np.flatnonzero((images[0] == 0).any(axis=1))
    assert len(dark_rows) <= 2  # a flat signal is one thin line...
    assert abs(dark_rows.mean() - 127 * 0.5) < 1.5  # ...half-way up (mean is mid-axis)
    assert set(np.unique(images)) == {0, 255}


def test_render_draws_every_column_and_clips():
    windows = utils.load_windows([208])[:50]
    images = utils.render_beats(np.concatenate([windows, windows * 100]))
    assert ((images == 0).sum(axis=1) > 0).all()  # a continuous line: no empty column


def test_render_is_higher_for_higher_voltage():
    low, high = utils.render_beats(np.array([[-1.0] * 192, [0.5] * 192], dtype=np.float32))
    assert np.argmax(high[:, 0] == 0) < np.argmax(low[:, 0] == 0)


def test_export_reads_back_through_imagefolder(tmp_path, monkeypatch):
    beats = utils.load_beats([208, 232])
    sample = beats.groupby("aami", observed=True).head(4)
    windows = utils.load_windows([208, 232])[beats.index.get_indexer(sample.index)]
    monkeypatch.setenv("EKG_KAGGLE_INPUT", str(tmp_path / "input"))
    assert utils.find_kaggle_images() is None
    utils.export_image_folder(sample, windows, tmp_path / "input" / "ecg-images")
    folder = utils.find_kaggle_images()
    assert folder == tmp_path / "input" / "ecg-images" / "MITBIH_img"
    dataset = utils.kaggle_image_dataset(folder)
    assert dataset.classes == ["F", "N", "Q", "S", "V"]
    labels = pd.Series([dataset.classes[t] for t in dataset.targets]).value_counts().to_dict()
    assert labels == sample["aami"].value_counts().loc[lambda c: c > 0].to_dict()
    image, _ = dataset[0]
    assert tuple(image.shape) == (1, 128, 192)
    # the PNG holds exactly what the renderer drew
    cls_f = np.flatnonzero(sample["aami"].to_numpy() == "F")[0]
    np.testing.assert_array_equal(image[0].numpy(), utils.render_beats(windows[cls_f:cls_f + 1])[0])


@pytest.fixture(scope="module")
def beats():
    return utils.load_beats()


def test_seed_split_takes_a_fifth_of_each_class(beats):
    split = utils.seed_split(beats)
    assert len(split) == 109_446
    test = split[split["split"] == "test"]["aami"].value_counts()
    total = split["aami"].value_counts()
    for cls in utils.CLASSES:
        assert test[cls] == int(total[cls] * 0.2)
    assert split["record"].groupby(split["split"]).nunique().to_dict() == {"test": 48, "train": 48}
    assert utils.seed_split(beats).equals(split)  # fixed seed: repeatable


def test_inter_patient_split_shares_no_record(beats):
    split = utils.inter_patient_split(beats)
    records = split.groupby("split")["record"].agg(set)
    assert not records["train"] & records["val"]
    assert not records["train"] & records["test"]
    assert not records["val"] & records["test"]
    assert records["test"] == set(utils.DS2)
    assert records["train"] | records["val"] == set(utils.DS1)
    assert records["val"] == set(utils.VAL_RECORDS)
    assert not set(split["record"]) & set(utils.PACED)


def test_split_manifest_round_trip(beats):
    utils.save_split(utils.inter_patient_split(beats[beats["record"].isin([101, 100])]), "roundtrip")
    loaded = utils.load_split("roundtrip")
    assert set(loaded["split"]) == {"train", "test"}
    assert len(loaded) == int(beats["record"].isin([100, 101]).sum())
    # the index is the row of load_beats over the manifest's records, as BeatSet expects
    rows = utils.load_beats([100, 101])
    assert (rows.loc[loaded.index, "sample"].to_numpy() == loaded["sample"].to_numpy()).all()
    assert (rows.loc[loaded.index, "aami"].astype(str) == loaded["aami"].astype(str)).all()


def test_every_notebook_starts_with_the_same_setup_cell():
    import json
    cells = []
    for path in sorted((utils.ROOT / "notebooks").glob("*.ipynb")):
        code = [c for c in json.load(open(path))["cells"] if c["cell_type"] == "code"]
        cells.append("".join(code[0]["source"]))
    assert len(cells) >= 2 and len(set(cells)) == 1
    assert "import utils" in cells[0]
