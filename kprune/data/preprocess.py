"""Which input transform a run uses — the model's, not a guess.

The rule for a model file (``kprune prune``, ``rank``, ``eval``, ``export``,
``verify``, ``bundle``): ``--preprocess`` when given; else the preprocessing
in the model's kprune card (models that ``kprune train`` or ``kprune prune``
wrote); else raw pixels, float32 0..255 resized to the model's input, which
is what Keras' own image loaders give and what a model trained on them (often
with a ``Rescaling`` layer first) expects.

``--preprocess`` takes ``raw``, ``card``, ``dataset`` (the dataset's own
standardization, as ``kprune train`` uses) or explicit values
``scale=S,mean=M,std=D``: ``(pixel * S - M) / D``. Omitted keys are
``scale=1``, ``mean=0``, ``std=1``; a value may be a fraction (``1/255``);
per-channel values are joined by ``:`` (``mean=0.485:0.456:0.406``).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

from kprune.card import read_card
from kprune.data.info import Preprocessing
from kprune.errors import InvalidArgumentError

NAMED = ("raw", "card", "dataset")
KEYS = ("scale", "mean", "std")
SYNTAX = "raw, card, dataset or scale=S,mean=M,std=D"
# Notes for the person running kprune (the CLI prints them as "Note: ..." on stderr).
notes = logging.getLogger("kprune")


@dataclass(frozen=True)
class PreprocessChoice:
    """The transform a run uses and how it was chosen.

    Attributes:
        preprocessing: What `load` takes: ``"dataset"`` or a `Preprocessing`.
        name: ``"card"``, ``"raw"``, ``"dataset"`` or ``"explicit"``.
    """

    preprocessing: str | Preprocessing
    name: str


def parse_preprocess(text: str) -> str | dict:
    """``"raw"``, ``"card"``, ``"dataset"`` as is; explicit values as a dict.

    Returns:
        The name, or ``{"scale": float, "mean": (float, ...), "std": (float, ...)}``.

    Raises:
        InvalidArgumentError: One line naming the syntax, with an example.

    Example:
        >>> parse_preprocess("scale=1/255,mean=0.5,std=0.5")
        {'scale': 0.00392156862745098, 'mean': (0.5,), 'std': (0.5,)}
    """
    cleaned = str(text).strip().lower()
    if cleaned in NAMED:
        return cleaned
    values: dict = {"scale": 1.0, "mean": (0.0,), "std": (1.0,)}
    seen = set()
    for item in cleaned.split(","):
        key, equals, value = (part.strip() for part in item.partition("="))
        if key not in KEYS or not equals or key in seen:
            raise _syntax_error(text)
        seen.add(key)
        numbers = tuple(_number(part, text) for part in value.split(":"))
        if key == "scale":
            if len(numbers) != 1:
                raise _syntax_error(text, "scale is one number")
            values[key] = numbers[0]
        else:
            values[key] = numbers
    if values["scale"] <= 0 or any(v <= 0 for v in values["std"]):
        raise _syntax_error(text, "scale and std must be positive")
    return values


def check_preprocess(text: str | None) -> str | None:
    """``text`` unchanged when it parses (for configs); None stays None."""
    if text is not None:
        parse_preprocess(text)
    return text


def choose_preprocessing(
    preprocess: str | Preprocessing | None,
    model_path: str | os.PathLike | None,
    input_shape: tuple[int, int, int],
) -> PreprocessChoice:
    """The rule: ``preprocess`` when given, else the model card's, else raw pixels.

    Without ``preprocess`` and without a card, a note says that raw pixels are
    used and how to change that (logger ``"kprune"``).

    Args:
        preprocess: ``--preprocess`` text (see `parse_preprocess`), a
            `Preprocessing`, or None for the rule.
        model_path: The model's ``.keras`` file (its card sits beside it), or
            None for a model that is not a file.
        input_shape: The model's ``(height, width, channels)``.

    Raises:
        InvalidArgumentError: Bad text; ``card`` for a model without a card;
            values or a card that do not fit ``input_shape``.
    """
    input_shape = tuple(int(v) for v in input_shape)
    if isinstance(preprocess, Preprocessing):
        return PreprocessChoice(_fitted(preprocess, input_shape, "The preprocessing"), "explicit")
    chosen = parse_preprocess(preprocess) if preprocess is not None else None
    if chosen == "dataset":
        return PreprocessChoice("dataset", "dataset")
    if chosen == "raw":
        return PreprocessChoice(Preprocessing.raw(input_shape), "raw")
    if isinstance(chosen, dict):
        channels = input_shape[-1]
        for key in ("mean", "std"):
            if len(chosen[key]) not in (1, channels):
                raise InvalidArgumentError(
                    f"`preprocess` gives {len(chosen[key])} {key} values, but the model takes "
                    f"{channels} channel(s). Fix: give one value, or one per channel joined by ':'."
                )
        return PreprocessChoice(Preprocessing(input_shape, **chosen), "explicit")
    card = (read_card(model_path) or {}) if model_path is not None else {}
    if "preprocessing" in card:
        described = f"The model card of {model_path}"
        card_preprocessing = Preprocessing.from_dict(card["preprocessing"])
        return PreprocessChoice(_fitted(card_preprocessing, input_shape, described), "card")
    if chosen == "card":
        raise InvalidArgumentError(
            f"`preprocess` is card, but {model_path or 'the model'} has no kprune model card "
            f"with preprocessing beside it. Fix: pass --preprocess raw, dataset or "
            "scale=S,mean=M,std=D."
        )
    raw = Preprocessing.raw(input_shape)
    if model_path is not None and os.path.isfile(model_path):
        notes.warning(
            f"{model_path} has no kprune model card: its inputs are {raw.describe()}, as "
            "Keras' image loaders give them. If it expects others, pass --preprocess dataset "
            "or scale=S,mean=M,std=D."
        )
    return PreprocessChoice(raw, "raw")


def _fitted(preprocessing: Preprocessing, input_shape: tuple, described: str) -> Preprocessing:
    if tuple(preprocessing.input_shape) != input_shape:
        raise InvalidArgumentError(
            f"{described} resizes to {tuple(preprocessing.input_shape)}, but the model takes "
            f"{input_shape}. Fix: pass --preprocess raw, dataset or scale=S,mean=M,std=D."
        )
    return preprocessing


def _number(text: str, whole: str) -> float:
    numerator, slash, denominator = text.partition("/")
    try:
        value = float(numerator) / float(denominator) if slash else float(numerator)
    except (ValueError, ZeroDivisionError):
        raise _syntax_error(whole) from None
    if not math.isfinite(value):
        raise _syntax_error(whole, "values must be finite")
    return value


def _syntax_error(text: str, problem: str = "") -> InvalidArgumentError:
    problem = f" ({problem})" if problem else ""
    return InvalidArgumentError(
        f"`preprocess` must be {SYNTAX}{problem}. Received preprocess={text!r}. Fix: e.g. "
        "--preprocess raw, or --preprocess scale=1/255,mean=0.5,std=0.5 (omitted keys are "
        "scale=1, mean=0, std=1; per-channel values joined by ':', e.g. mean=0.485:0.456:0.406)."
    )
