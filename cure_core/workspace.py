"""One dataset with its samples, recipe and cached models: what the CLI and the app work on.

Models are cached under ``cache/models/<key>/`` where the key hashes everything that decides
the weights (data hash, split, recipe, role, request). ``Original`` trains on every training
sample of the non-holdout users; ``Retrain`` on a request's retain set only — the exact
unlearning reference. A missing model is trained on first use; a corrupt one is retrained.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import cached_property
from pathlib import Path
from queue import Empty
from typing import Literal

import numpy as np
import torch

from cure_core.cache import cache_dir
from cure_core.data import RatingsDataset, Samples, SplitConfig, build_samples, load_dataset, summarize
from cure_core.errors import CureError
from cure_core.metrics import utility
from cure_core.model.recipe import Recipe
from cure_core.model.recommender import Recommender
from cure_core.model.store import CorruptModelError, load_recommender, save_recommender
from cure_core.model.train import TrainSets, train_item_model
from cure_core.progress import ProgressFn
from cure_core.requests import ForgetRequest, RequestSets, request_sets, save_request, trainable_users, user_request

Role = Literal["original", "retrain"]


class Workspace:
    """Lazily loaded dataset + samples, and the Original/Retrain models for its requests."""

    def __init__(self, data: str | Path | None = None, split: SplitConfig | None = None, recipe: Recipe | None = None, dataset: RatingsDataset | None = None) -> None:
        self.data_source = None if data is None else str(data)
        self.split = split or SplitConfig()
        self.recipe = recipe or Recipe()
        if dataset is not None:
            self.__dict__["dataset"] = dataset

    @cached_property
    def dataset(self) -> RatingsDataset:
        return load_dataset(self.data_source)

    @cached_property
    def samples(self) -> Samples:
        return build_samples(self.dataset, self.split)

    @cached_property
    def titles(self) -> dict[str, str]:
        return self.dataset.titles()

    def summary(self) -> dict[str, object]:
        return summarize(self.dataset, self.samples)

    # --- requests -------------------------------------------------------------------------

    def default_request(self) -> ForgetRequest:
        """5% of users, seed 0 — saved so it can be named by id."""
        request = user_request(self.dataset, self.samples, fraction=0.05, seed=0)
        save_request(request)
        return request

    def sets(self, request: ForgetRequest) -> RequestSets:
        if request.data_hash != self.dataset.content_hash:
            raise CureError(f"request {request.id} was made for other data (hash {request.data_hash})", f"create a request on this dataset ({self.dataset.name}) with `cure forget`")
        return request_sets(request, self.samples)

    # --- models ---------------------------------------------------------------------------

    def train_sets(self, role: Role, request: ForgetRequest | None = None) -> TrainSets:
        samples = self.samples
        known = trainable_users(samples)
        if role == "original":
            return TrainSets(samples.index(Samples.TRAIN), samples.index(Samples.VALID), samples.index(Samples.TEST), known)
        if request is None:
            raise ValueError("Retrain needs a request")
        sets = self.sets(request)
        return TrainSets(sets.retain, sets.valid, sets.test, np.setdiff1d(known, sets.forget_users))

    def model_dir(self, role: Role, request: ForgetRequest | None = None) -> Path:
        spec = {
            "data": self.dataset.content_hash,
            "split": self.split.model_dump(),
            "recipe": self.recipe.model_dump(),
            "role": role,
            "request": request.id if role == "retrain" and request else None,
        }
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
        name = f"{role}-{self.dataset.name}-{digest}" if role == "original" else f"retrain-{request.id}-{digest}"  # type: ignore[union-attr]
        return cache_dir("models") / name

    def load_model(self, role: Role, request: ForgetRequest | None = None) -> Recommender | None:
        """The cached model, or ``None`` when missing. A corrupt entry is deleted and reported."""
        folder = self.model_dir(role, request)
        if not folder.exists():
            return None
        try:
            return load_recommender(folder, self.samples)
        except CorruptModelError as err:
            print(f"warning: {err.problem}; retraining it", file=sys.stderr)
            shutil.rmtree(folder, ignore_errors=True)
            return None

    def train_model(self, role: Role, request: ForgetRequest | None = None, progress: ProgressFn | None = None, threads: int | None = None, quiet: bool = False, position: int | None = None) -> Recommender:
        """Train and cache one model (Original, or Retrain of ``request``)."""
        sets = self.train_sets(role, request)
        previous_threads = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        try:
            desc = "Original" if role == "original" else f"Retrain {request.id}"  # type: ignore[union-attr]
            rec, curve = train_item_model(self.samples, sets, self.recipe, progress=progress, quiet=quiet, desc=desc, position=position)
        finally:
            torch.set_num_threads(previous_threads)
        seconds = time.perf_counter() - start
        best = max(curve, key=lambda row: row["valid_auc"])
        test = utility(self.samples.label[sets.test], rec.predict(self.samples, sets.test))
        meta = {
            "role": role,
            "request": request.id if request is not None and role == "retrain" else None,
            "dataset": self.dataset.name,
            "data_hash": self.dataset.content_hash,
            "split": self.split.model_dump(),
            "recipe": self.recipe.model_dump(),
            "train_samples": len(sets.train),
            "n_params": int(sum(p.numel() for p in rec.model.parameters())),
            "train_seconds": round(seconds, 1),
            "threads": threads or previous_threads,
            "best_epoch": best["epoch"],
            "curve": curve,
            "metrics": {"valid_auc": best["valid_auc"], "test_auc": test["auc"], "test_acc": test["acc"], "test_logloss": test["logloss"]},
            "torch": torch.__version__,
        }
        save_recommender(rec, self.model_dir(role, request), self.samples, meta)
        return rec

    def model(self, role: Role, request: ForgetRequest | None = None, progress: ProgressFn | None = None, quiet: bool = False) -> Recommender:
        """Load from the cache, or train now."""
        return self.load_model(role, request) or self.train_model(role, request, progress=progress, quiet=quiet)

    def original(self, progress: ProgressFn | None = None, quiet: bool = False) -> Recommender:
        return self.model("original", progress=progress, quiet=quiet)

    def retrain(self, request: ForgetRequest, progress: ProgressFn | None = None, quiet: bool = False) -> Recommender:
        return self.model("retrain", request, progress=progress, quiet=quiet)

    def ensure_models(self, request: ForgetRequest, progress: ProgressFn | None = None, quiet: bool = False) -> tuple[Recommender, Recommender]:
        """Original and Retrain of ``request``; when both are missing they train side by side.

        Two single-thread processes are faster here than one two-thread process. ``progress``
        gets the sum of both jobs' steps.
        """
        original, retrain = self.load_model("original"), self.load_model("retrain", request)
        missing: list[Role] = [r for r, m in (("original", original), ("retrain", retrain)) if m is None]
        if len(missing) == 2 and torch.get_num_threads() > 1:
            self._train_in_parallel(request, progress, quiet)
        else:
            for role in missing:
                self.train_model(role, request if role == "retrain" else None, progress=progress, quiet=quiet)
        return self.model("original"), self.model("retrain", request)

    def _train_in_parallel(self, request: ForgetRequest, progress: ProgressFn | None, quiet: bool) -> None:
        ctx = mp.get_context("spawn")
        with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
            queue = manager.Queue()
            jobs = [pool.submit(_train_job, self._spec(), role, request if role == "retrain" else None, queue, quiet, pos) for pos, role in enumerate(("original", "retrain"))]
            state: dict[int, tuple[int, int]] = {}
            while not all(job.done() for job in jobs) or not queue.empty():
                try:
                    pos, done, total, info = queue.get(timeout=0.5)
                except Empty:
                    continue
                state[pos] = (done, total)
                if progress is not None:
                    progress(sum(d for d, _ in state.values()), sum(t for _, t in state.values()), {**info, "job": pos})
            for job in jobs:
                job.result()  # re-raise a worker's error here

    def _spec(self) -> dict[str, object]:
        dataset = self.__dict__.get("dataset") if self.data_source is None and self.dataset.name != "ml-100k" else None
        return {"data": self.data_source, "split": self.split, "recipe": self.recipe, "dataset": dataset}


def _train_job(spec: dict[str, object], role: Role, request: ForgetRequest | None, queue, quiet: bool, position: int) -> None:
    """Worker: rebuild the workspace in a fresh process and train one model on one thread."""
    ws = Workspace(data=spec["data"], split=spec["split"], recipe=spec["recipe"], dataset=spec["dataset"])  # type: ignore[arg-type]
    ws.train_model(role, request, progress=lambda d, t, info: queue.put((position, d, t, info)), threads=1, quiet=quiet, position=position)
