"""choose_preprocessing / parse_preprocess: --preprocess text, the card rule, raw by default."""

import json

import numpy as np
import pytest

from kprune.data import Preprocessing, choose_preprocessing, fashion_mnist, load, parse_preprocess
from kprune.errors import InvalidArgumentError

CARD_PREPROCESSING = {
    "input_shape": [28, 28, 1],
    "scale": 1 / 255,
    "mean": [0.286],
    "std": [0.353],
    "resize": "bilinear",
    "channel_order": "GRAY",
    "layout": "NHWC",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("raw", "raw"),
        (" Card ", "card"),
        ("dataset", "dataset"),
        ("scale=1/255,mean=0.5,std=0.5", {"scale": 1 / 255, "mean": (0.5,), "std": (0.5,)}),
        ("scale=0.00392", {"scale": 0.00392, "mean": (0.0,), "std": (1.0,)}),
        (
            "mean=0.485:0.456:0.406, std=0.229:0.224:0.225",
            {"scale": 1.0, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
        ),
    ],
)
def test_parse(text, expected):
    assert parse_preprocess(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "imagenet",
        "scale",
        "scale=abc",
        "scale=1/0",
        "scale=1:2",
        "std=0",
        "scale=-1",
        "mean=0.5,mean=0.4",
        "offset=3",
        "scale=inf",
    ],
)
def test_parse_errors_are_one_line_naming_the_fix(text):
    with pytest.raises(InvalidArgumentError) as caught:
        parse_preprocess(text)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("`preprocess` must be raw, card, dataset or scale=S,mean=M,std=D")
    assert (
        f"Received preprocess={text!r}. Fix: e.g. --preprocess raw, or --preprocess scale=1/255," in message
    )


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "net.keras"
    path.write_bytes(b"")  # only its card matters here
    return path


def write_card(model_file, preprocessing):
    model_file.with_name("net.card.json").write_text(json.dumps({"preprocessing": preprocessing}))


def test_a_model_with_a_card_gets_the_cards_preprocessing(model_file, caplog):
    write_card(model_file, CARD_PREPROCESSING)
    chosen = choose_preprocessing(None, model_file, (28, 28, 1))
    assert chosen.name == "card"
    assert chosen.preprocessing == Preprocessing((28, 28, 1), 1 / 255, (0.286,), (0.353,))
    assert chosen.preprocessing.to_dict() == CARD_PREPROCESSING
    assert choose_preprocessing("card", model_file, (28, 28, 1)) == chosen
    assert not caplog.records


def test_without_a_card_raw_pixels_and_a_note(model_file, caplog):
    chosen = choose_preprocessing(None, model_file, (8, 8, 3))
    assert chosen.name == "raw" and chosen.preprocessing == Preprocessing.raw((8, 8, 3))
    assert chosen.preprocessing.to_dict()["mean"] == [0.0, 0.0, 0.0]
    (note,) = [record.getMessage() for record in caplog.records]
    assert note.startswith(f"{model_file} has no kprune model card: its inputs are raw pixels 0..255")
    assert "--preprocess dataset or scale=S,mean=M,std=D" in note
    # A model that is not a file (a builder name, a keras.Model) gets raw pixels quietly.
    caplog.clear()
    assert choose_preprocessing(None, None, (8, 8, 3)).name == "raw" and not caplog.records


def test_the_option_overrides_the_card(model_file):
    write_card(model_file, CARD_PREPROCESSING)
    assert choose_preprocessing("raw", model_file, (28, 28, 1)).preprocessing.is_raw
    assert choose_preprocessing("dataset", model_file, (28, 28, 1)).preprocessing == "dataset"
    chosen = choose_preprocessing("scale=1/255,mean=0.5,std=0.25", model_file, (28, 28, 1))
    assert chosen.name == "explicit"
    assert chosen.preprocessing == Preprocessing((28, 28, 1), 1 / 255, (0.5,), (0.25,))


def test_choice_errors(model_file):
    with pytest.raises(
        InvalidArgumentError,
        match=r"`preprocess` is card, but .*net.keras has no "
        r"kprune model card with preprocessing beside it. Fix: pass --preprocess raw",
    ):
        choose_preprocessing("card", model_file, (28, 28, 1))
    with pytest.raises(
        InvalidArgumentError,
        match=r"gives 3 mean values, but the model takes 1 "
        r"channel\(s\). Fix: give one value, or one per channel joined by ':'",
    ):
        choose_preprocessing("mean=1:2:3", model_file, (28, 28, 1))
    write_card(model_file, CARD_PREPROCESSING)
    with pytest.raises(
        InvalidArgumentError,
        match=r"The model card of .*net.keras resizes to "
        r"\(28, 28, 1\), but the model takes \(32, 32, 1\). Fix: pass --preprocess",
    ):
        choose_preprocessing(None, model_file, (32, 32, 1))


def test_explicit_values_apply_like_numpy(fake_fashion_dir, model_file):
    chosen = choose_preprocessing("scale=1/255,mean=0.5,std=0.5", model_file, (28, 28, 1))
    split = load(
        "fashion_mnist",
        "test",
        data_dir=fake_fashion_dir,
        download=False,
        shuffle=False,
        preprocessing=chosen.preprocessing,
    )
    images = np.concatenate([batch.numpy() for batch, _ in split])
    raw = fashion_mnist.load_arrays(fake_fashion_dir, download=False)[0]["test"][0]
    expected = (raw.reshape(images.shape).astype(np.float32) / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(images, expected, rtol=1e-6, atol=1e-6)
    assert split.preprocessing.to_dict()["mean"] == [0.5]
