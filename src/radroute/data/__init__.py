"""Training data: the model input recipe, dataset sources, splits, cache, augmentation.

This package imports only numpy and Pillow; the torch parts live in
``radroute.data.dataset`` and ``radroute.data.augment``; the cache is ``radroute.data.cache``.
"""
from radroute.data.datasource import DataSource, load_labelled_data
from radroute.data.manifest import Manifest, Sample
from radroute.data.preprocess import Preprocessing
from radroute.data.sources import load_shared, load_source
from radroute.data.splits import assign_splits, ensure_splits

__all__ = ["DataSource", "Manifest", "Preprocessing", "Sample", "assign_splits", "ensure_splits",
           "load_labelled_data", "load_shared", "load_source"]
