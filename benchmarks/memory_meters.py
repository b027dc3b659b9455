"""Two meters of a block's peak memory on the CPU, for the benchmarks.

- :class:`PeakRss`: the process's resident set size, sampled on a thread: what the machine
  gives the process, allocator caches and fragmentation included.
- :class:`TensorPeak`: the bytes of tensor storages created in the block and alive at once,
  counted at every op (a ``TorchDispatchMode``) and let go when a storage is freed: what CUDA's
  ``max_memory_allocated`` counts on a GPU, and what ``analysis.memory`` predicts.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class PeakRss:
    """Peak resident set size while the block runs, sampled on a thread."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __enter__(self) -> PeakRss:
        self.base = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def bytes(self) -> int:
        return self.peak - self.base


class TensorPeak(TorchDispatchMode):
    """Peak bytes of the tensor storages that ops create in the block (each storage counted once,
    views and in-place results included, until it is freed)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._storages: dict[int, weakref.ref] = {}

    def _freed(self, key: int, nbytes: int) -> None:
        self._storages.pop(key, None)
        self.live -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key = id(storage)
            if key in self._storages:
                continue
            nbytes = storage.nbytes()
            self._storages[key] = weakref.ref(storage, lambda _, key=key, nbytes=nbytes: self._freed(key, nbytes))
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        return out
