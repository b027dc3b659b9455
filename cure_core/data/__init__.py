"""Data: loading ratings, building TALLRec samples and splits, and a synthetic generator."""

from cure_core.data.dataset import RatingsDataset
from cure_core.data.loading import load_dataset
from cure_core.data.samples import Samples, SplitConfig, build_samples, summarize
from cure_core.data.synthetic import make_synthetic

__all__ = ["RatingsDataset", "Samples", "SplitConfig", "build_samples", "load_dataset", "make_synthetic", "summarize"]
