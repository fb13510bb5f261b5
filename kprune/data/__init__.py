"""Datasets → batched tf.data pipelines: fashion_mnist, cifar10, folder:PATH, synthetic."""

from kprune.data.fashion_mnist import read_idx
from kprune.data.info import DatasetInfo, Preprocessing, Split
from kprune.data.pipeline import NAMES, as_dataset, batches_per_epoch, dataset_info, load
from kprune.data.preprocess import PreprocessChoice, choose_preprocessing, parse_preprocess

__all__ = [
    "NAMES",
    "DatasetInfo",
    "PreprocessChoice",
    "Preprocessing",
    "Split",
    "as_dataset",
    "batches_per_epoch",
    "choose_preprocessing",
    "dataset_info",
    "load",
    "parse_preprocess",
    "read_idx",
]
