"""Micro-batching of concurrent requests into one model call.

The server handles each HTTP request on its own, but per image one model call on 32 images
costs a fraction of 32 calls on one (see bench/inference_latency.py), so under concurrent
load grouping requests raises throughput. The model runs in one worker thread, so
the event loop keeps accepting requests meanwhile: those that arrive while the model is busy
form the next batch. ``max_latency_ms`` (default 0) lets a request also wait that long for
company when the model is idle; a group never exceeds ``max_batch_size`` images.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Item:
    pixels: np.ndarray
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Group arrays submitted concurrently into batches along axis 0."""

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int,
        max_latency_ms: float,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_latency_ms < 0:
            raise ValueError(f"max_latency_ms must be >= 0, got {max_latency_ms}")
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_ms / 1000.0
        #: Called with (images, requests) of every batch run (Prometheus metrics).
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None
        self._held: _Item | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._running_since: float | None = None
        self.closed = False

    def stalled_for(self) -> float:
        """Seconds the model call in progress has run (0 when the model is idle)."""
        return 0.0 if self._running_since is None else time.monotonic() - self._running_since

    async def submit(self, pixels: np.ndarray) -> np.ndarray:
        """Predict ``pixels`` (at most ``max_batch_size`` rows) as part of the next batch."""
        if len(pixels) > self.max_batch_size:
            raise ValueError(f"{len(pixels)} rows exceed max_batch_size {self.max_batch_size}")
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")
        assert self._queue is not None
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(pixels, future))
        return await future

    async def _collect(self, first: _Item) -> list[_Item]:
        """``first`` plus whatever fits before the batch is full or its oldest request's deadline."""
        assert self._queue is not None
        batch, size = [first], len(first.pixels)
        deadline = first.enqueued + self.max_latency
        while size < self.max_batch_size:
            try:
                if self._queue.empty():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                else:
                    item = self._queue.get_nowait()
            except TimeoutError:
                break
            if size + len(item.pixels) > self.max_batch_size:
                self._held = item  # starts the next batch
                break
            batch.append(item)
            size += len(item.pixels)
        return batch

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = self._held or await self._queue.get()
            self._held = None
            batch = await self._collect(first)
            batch = [item for item in batch if not item.future.done()]  # cancelled (client gone)
            if not batch:
                continue
            pixels = np.concatenate([item.pixels for item in batch]) if len(batch) > 1 else batch[0].pixels
            self._running_since = batch[0].enqueued
            try:
                out = await loop.run_in_executor(self._executor, self.predict, pixels)
            except Exception as exc:  # the model failed: every request of the batch gets the error
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            finally:
                self._running_since = None
            if self.on_batch:
                self.on_batch(len(pixels), len(batch))
            start = 0
            for item in batch:
                end = start + len(item.pixels)
                if not item.future.done():
                    item.future.set_result(out[start:end])
                start = end

    def close(self) -> None:
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
