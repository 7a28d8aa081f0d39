"""The seed's leaky 80/20 split, the inter-patient split, and split manifests."""
import pytest

from ekg.data import CLASSES, DS1, DS2, FAST_RECORDS, PACED, VAL_RECORDS, load_beats
from ekg.splits import inter_patient_split, load_split, save_split, seed_split


@pytest.fixture(scope="module")
def beats():
    return load_beats()


def test_seed_split_takes_a_fifth_of_each_class(beats):
    split = seed_split(beats)
    assert len(split) == 109_446
    test = split[split["split"] == "test"]["aami"].value_counts()
    total = split["aami"].value_counts()
    for cls in CLASSES:
        assert test[cls] == int(total[cls] * 0.2)
    assert split["record"].groupby(split["split"]).nunique().to_dict() == {"test": 48, "train": 48}
    assert seed_split(beats).equals(split)  # fixed seed: repeatable


def test_inter_patient_split_shares_no_record(beats):
    split = inter_patient_split(beats)
    records = split.groupby("split")["record"].agg(set)
    assert not records["train"] & records["val"]
    assert not records["train"] & records["test"]
    assert not records["val"] & records["test"]
    assert records["test"] == set(DS2)
    assert records["train"] | records["val"] == set(DS1)
    assert records["val"] == set(VAL_RECORDS)
    assert not set(split["record"]) & set(PACED)


def test_split_manifest_round_trip(beats):
    save_split(inter_patient_split(beats[beats["record"].isin([101, 100])]), "roundtrip")
    loaded = load_split("roundtrip")
    assert set(loaded["split"]) == {"train", "test"}
    assert len(loaded) == int(beats["record"].isin([100, 101]).sum())
    # the index is the row of load_beats over the manifest's records, as BeatSet expects
    rows = load_beats([100, 101])
    assert (rows.loc[loaded.index, "sample"].to_numpy() == loaded["sample"].to_numpy()).all()
    assert (rows.loc[loaded.index, "aami"].astype(str) == loaded["aami"].astype(str)).all()


def test_a_missing_split_is_built_as_notebook_02_builds_it(tmp_path, monkeypatch):
    """On Kaggle a notebook runs without 02's outputs: load_split rebuilds the manifest it needs."""
    import ekg.config

    monkeypatch.setattr(ekg.config, "SPLITS_DIR", tmp_path / "splits")
    monkeypatch.setattr(ekg.config, "FAST", True)
    loaded = load_split("inter_patient")
    assert (tmp_path / "splits" / "inter_patient.csv").is_file()
    expected = inter_patient_split(load_beats(FAST_RECORDS))
    assert loaded["record"].tolist() == expected["record"].tolist()
    assert loaded["sample"].tolist() == expected["sample"].tolist()
    assert loaded["split"].tolist() == expected["split"].tolist()
    with pytest.raises(FileNotFoundError, match="none of the splits"):
        load_split("nonsense")
