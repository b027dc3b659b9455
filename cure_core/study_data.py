"""The data a command or page works on: a dataset, its samples under one split, and the index
sets of its forget requests. Loaded lazily; reading it never writes anything."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from cure_core.data import RatingsDataset, Samples, SplitConfig, build_samples, load_dataset, summarize
from cure_core.errors import CureError
from cure_core.requests import ForgetRequest, RequestSets, load_request, request_sets, user_request

DEFAULT_REQUEST = {"fraction": 0.05, "seed": 0}
"""The default forget request: 5% of the users, drawn with seed 0."""


class StudyData:
    """A dataset (a path, ``None`` for MovieLens-100K, or one already in memory) and its split."""

    def __init__(
        self, source: str | Path | None = None, split: SplitConfig | None = None, dataset: RatingsDataset | None = None
    ) -> None:
        self.source = None if source is None else str(source)
        self.split = split or SplitConfig()
        self.in_memory = dataset is not None
        """Data given in memory, not by path (other processes get it pickled, not reloaded)."""
        if dataset is not None:
            self.__dict__["dataset"] = dataset

    @cached_property
    def dataset(self) -> RatingsDataset:
        return load_dataset(self.source)

    @cached_property
    def samples(self) -> Samples:
        return build_samples(self.dataset, self.split)

    @cached_property
    def titles(self) -> dict[str, str]:
        return self.dataset.titles()

    def summary(self) -> dict[str, object]:
        return summarize(self.dataset, self.samples)

    def default_request(self) -> ForgetRequest:
        """The default request (:data:`DEFAULT_REQUEST`), computed, not saved: a request's id
        is the hash of its content, so whoever writes a result about it saves it
        (:func:`~cure_core.requests.keep_request`) and it is never stale."""
        return user_request(self.dataset, self.samples, **DEFAULT_REQUEST)  # type: ignore[arg-type]

    def request(self, request_id: str) -> ForgetRequest:
        """The request of ``request_id``: the default one (saved or not), else a saved one."""
        default = self.default_request()
        return default if request_id == default.id else load_request(request_id)

    def sets(self, request: ForgetRequest) -> RequestSets:
        if request.data_hash != self.dataset.content_hash:
            raise CureError(
                f"request {request.id} was made for other data (hash {request.data_hash})",
                f"create a request on this dataset ({self.dataset.name}) with `cure forget`",
            )
        return request_sets(request, self.samples)
