"""The model, loaded once per worker process, on the worker's own GPU.

GPU pinning follows dask-cuda: ``dask cuda worker`` and ``LocalCUDACluster`` start one worker per
GPU and set ``CUDA_VISIBLE_DEVICES`` so that the worker's own GPU is listed first; torch then
calls it ``cuda:0``. A plain ``dask worker --nworkers N`` on a multi-GPU host without dask-cuda
gets ``cuda:(i % n_gpus)`` from its worker name's trailing index. ``--device cpu`` never pins.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

_LOCK = threading.Lock()
_CACHE: dict[str, Any] = {}


def settings_key(model: str, upscaler_kwargs: dict[str, Any]) -> str:
    return json.dumps({"model": str(model), **upscaler_kwargs}, sort_keys=True, default=str)


def pick_device(device: str, worker_name: str | None) -> str:
    """The torch device for this worker (see the module docstring)."""
    import torch

    if device not in ("auto", "cuda") or not torch.cuda.is_available():
        return device
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        return "cuda:0"  # dask-cuda: this worker's GPU is the first visible one
    n = torch.cuda.device_count()
    m = re.search(r"(\d+)$", str(worker_name or ""))
    return f"cuda:{int(m.group(1)) % n if m and n > 1 else 0}"


def get_upscaler(
    model: str,
    upscaler_kwargs: dict[str, Any],
    threads: int | None = None,
    worker_name: str | None = None,
) -> Any:
    """This process's :class:`~slimdiffsr.engine.run.Upscaler` for these settings (built once)."""
    key = settings_key(model, upscaler_kwargs)
    with _LOCK:
        up = _CACHE.get(key)
        if up is not None:
            return up
        import torch

        from slimdiffsr.engine.run import Upscaler

        if threads:
            torch.set_num_threads(int(threads))
        kwargs = dict(upscaler_kwargs)
        kwargs["device"] = pick_device(str(kwargs.get("device", "auto")), worker_name)
        up = Upscaler(model, **kwargs)
        _CACHE.clear()  # one model per process: a new run's settings replace the old ones
        _CACHE[key] = up
        return up


class ModelPlugin(WorkerPlugin):
    """Loads the model when attached to a worker, so the first task does not pay for it.

    A load error is not raised here (it would only reach the worker's log): the first task
    loads again and reports the error for its file.
    """

    def __init__(
        self, model: str, upscaler_kwargs: dict[str, Any], threads: int | None = None
    ) -> None:
        self.model = str(model)
        self.upscaler_kwargs = dict(upscaler_kwargs)
        self.threads = threads

    def setup(self, worker: Any) -> None:
        try:
            get_upscaler(self.model, self.upscaler_kwargs, self.threads, str(worker.name))
        except Exception as e:  # noqa: BLE001 - reported per file by the tasks
            worker.log_event("slimdiffsr-plugin", {"worker": worker.address, "error": str(e)})
