"""load_model / save_model: files, names, errors, atomic writes."""

import os
import stat
from pathlib import Path

import keras
import numpy as np
import pytest

from kprune import baselines
from kprune.card import read_card
from kprune.errors import InvalidArgumentError, ModelFileError
from kprune.modelio import load_model, resolve_model_path, save_model
from kprune.training.setup import TrainingSetup, TrainSettings


def test_round_trip(tmp_path, tiny_cnn, tiny_arrays):
    images, _ = tiny_arrays
    path = save_model(tiny_cnn, tmp_path / "sub" / "model.keras")
    assert path == tmp_path / "sub" / "model.keras" and path.is_file()
    loaded = load_model(path)
    assert loaded.name == "tiny_cnn"
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in tiny_cnn.layers]
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), tiny_cnn.predict(images, verbose=0), rtol=1e-6
    )
    assert load_model(str(path)).count_params() == tiny_cnn.count_params()


def test_save_is_atomic_and_overwrites(tmp_path, tiny_cnn):
    path = tmp_path / "model.keras"
    path.write_bytes(b"old")
    save_model(tiny_cnn, path)
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]  # no temporary file left behind
    assert load_model(path).name == "tiny_cnn"


def test_saved_file_has_the_usual_permissions(tmp_path, tiny_cnn):
    mask = os.umask(0o022)
    os.umask(mask)
    path = save_model(tiny_cnn, tmp_path / "model.keras")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # not the temporary's 0600


def test_failed_save_leaves_nothing(tmp_path, tiny_cnn, monkeypatch):
    def broken_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", broken_save)
    path = tmp_path / "model.keras"
    with pytest.raises(OSError, match="disk full"):
        save_model(tiny_cnn, path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["model.h5", "model", "model.keras.tmp"])
def test_save_refuses_other_suffixes(tmp_path, tiny_cnn, name):
    with pytest.raises(InvalidArgumentError, match=r"`path` must end in .keras .*Received path="):
        save_model(tiny_cnn, tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_compiled_model_saved_without_training_state(tmp_path, tiny_cnn, tiny_arrays):
    save_model(tiny_cnn, tmp_path / "fresh.keras")
    # Label smoothing compiles a kprune loss that plain Keras could not deserialize.
    settings = TrainSettings(optimizer="adamw", label_smoothing=0.1, warmup_epochs=0)
    TrainingSetup(settings).fit(tiny_cnn, tiny_arrays, epochs=1, progress=False)
    assert tiny_cnn.compiled
    save_model(tiny_cnn, tmp_path / "trained.keras")
    plain = keras.models.load_model(tmp_path / "trained.keras")  # compile=True, no custom objects
    assert not plain.compiled and plain.name == "tiny_cnn"
    images, _ = tiny_arrays
    np.testing.assert_allclose(
        plain.predict(images, verbose=0), tiny_cnn.predict(images, verbose=0), rtol=1e-5
    )
    # No AdamW moments: the file is as small as the untrained one.
    fresh, trained = (os.path.getsize(tmp_path / f) for f in ("fresh.keras", "trained.keras"))
    assert abs(trained - fresh) < 2000


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match=r"Model file .*absent.keras does not exist. Fix: "):
        load_model(tmp_path / "absent.keras")


def test_wrong_suffix(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"\x89HDF\r\n")
    with pytest.raises(
        ModelFileError,
        match=r"weights.h5 is not a .keras file. Fix: save the model "
        r"with model.save\('model.keras'\)",
    ):
        load_model(path)
    other = tmp_path / "model.txt"
    other.write_text("hello")
    with pytest.raises(ModelFileError, match="is not a .keras file"):
        load_model(other)


def test_folder_is_not_a_model_file(tmp_path):
    (tmp_path / "saved.keras").mkdir()
    with pytest.raises(ModelFileError, match="is not a .keras file"):
        load_model(tmp_path / "saved.keras")


@pytest.mark.parametrize("content", [b"garbage bytes, not a zip", b""])
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "x.keras"
    path.write_bytes(content)
    with pytest.raises(
        ModelFileError,
        match=r"Cannot load .*x.keras: .*Fix: check that it is a "
        r"complete Keras 3 .keras file",
    ):
        load_model(path)


def test_truncated_file(tmp_path, tiny_cnn):
    path = save_model(tiny_cnn, tmp_path / "x.keras")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="Cannot load"):
        load_model(path)


def test_by_name_and_passthrough(tiny_cnn):
    assert load_model(tiny_cnn) is tiny_cnn
    model = load_model("squeezenet1_1", input_shape=(32, 32, 3), num_classes=4)
    assert model.name == "squeezenet1_1" and model.output_shape == (None, 4)
    with pytest.raises(
        InvalidArgumentError,
        match=r"Building model 'squeezenet1_1' by name needs "
        r"input_shape and num_classes",
    ):
        load_model("squeezenet1_1")
    with pytest.raises(InvalidArgumentError, match=r"Unknown model 'no_such_net'"):
        load_model("no_such_net", input_shape=(32, 32, 3), num_classes=4)


def test_shipped_baseline_is_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no models/ here: the packaged copy answers
    packaged = baselines.DIRECTORY / "squeezenet1_1_fmnist_sgd.keras"
    assert Path(resolve_model_path(baselines.DEFAULT)) == packaged
    assert Path(resolve_model_path("./models/squeezenet1_1_fmnist_sgd.keras")) == packaged
    assert read_card(resolve_model_path(baselines.DEFAULT))["dataset"] == "fashion_mnist"
    assert load_model(baselines.DEFAULT).count_params() == 726_474
    assert resolve_model_path("models/nope.keras") == "models/nope.keras"
    assert resolve_model_path("other/squeezenet1_1_fmnist_sgd.keras").startswith("other/")
    assert resolve_model_path("squeezenet1_1") == "squeezenet1_1"  # a name, not a file
    with pytest.raises(ModelFileError, match="models/nope.keras does not exist"):
        load_model("models/nope.keras")


def test_a_file_in_the_working_folder_comes_before_the_shipped_one(tmp_path, monkeypatch, tiny_cnn):
    monkeypatch.chdir(tmp_path)
    save_model(tiny_cnn, tmp_path / "models" / "squeezenet1_1_fmnist_sgd.keras")
    assert resolve_model_path(baselines.DEFAULT) == baselines.DEFAULT
    assert load_model(baselines.DEFAULT).name == "tiny_cnn"
