"""Datasets for counterfeit: Fashion-MNIST and MNIST (found, downloaded, verified), image folders, 2-D toys."""

from .base import DataError, Dataset, cache_dir
from .download import download_idx
from .folder import folder_classes, load_folder
from .idx import SYSTEM_DATA_DIRS, find_idx_dir, load_idx, search_dirs
from .idxfile import IDX_DATASETS
from .load import builtin_name, check_data_source, class_index, drop_class, load_dataset
from .sampler import batch_indices
from .toys import TOY_DATASETS, load_toy, toy_modes

__all__ = [
    "IDX_DATASETS",
    "SYSTEM_DATA_DIRS",
    "TOY_DATASETS",
    "DataError",
    "Dataset",
    "batch_indices",
    "builtin_name",
    "cache_dir",
    "check_data_source",
    "class_index",
    "download_idx",
    "drop_class",
    "folder_classes",
    "find_idx_dir",
    "load_dataset",
    "load_folder",
    "load_idx",
    "load_toy",
    "search_dirs",
    "toy_modes",
]
