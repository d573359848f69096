"""Data sets (the idx family, CIFAR-10, image folders) behind one registry, as uint8 tensors on
the training device; batches, augmentation and normalisation on the device; fingerprints."""
from centerloss.data.registry import dataset_for, normalization_of, open_dataset
from centerloss.data.types import Dataset, Split

__all__ = ["Dataset", "Split", "dataset_for", "normalization_of", "open_dataset"]
