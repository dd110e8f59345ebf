"""Concurrent promotions and reads against one registry, and what they left behind.

Used by ``tests/*/test_registry_race*.py`` and ``bench/registry_race.py``. Only the registry's
public methods are called, so the same harness measures any revision of it.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from eksml.registry import ModelRegistry
from eksml.settings import load_settings
from eksml.storage import store_path

BASELINE = 0.10


@dataclass
class RaceResult:
    trials: int = 0
    wrong_champion: int = 0
    lost_entries: int = 0
    wrong_previous: int = 0
    failed_reads: int = 0
    reads: int = 0
    promotions: int = 0
    failed_promotions: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"trials {self.trials}, wrong champion {self.wrong_champion}, successful promotions "
            f"{self.promotions}, history entries lost {self.lost_entries}, with a wrong previous "
            f"{self.wrong_previous}, failed promotions {self.failed_promotions}, failed reads "
            f"{self.failed_reads} of {self.reads}"
        )


def _register(registry: ModelRegistry, store_uri: str, version: str, accuracy: float) -> None:
    settings = load_settings({"store_uri": store_uri})
    staging = store_path(f"{store_uri}/staging/{version}", settings)
    if staging.protocol in ("file", "local", ""):
        staging.mkdir(parents=True, exist_ok=True)
    (staging / "model.bin").write_bytes(version.encode())
    (staging / "metrics.json").write_text(json.dumps({"test_accuracy": accuracy}))
    registry.register(
        version, staging, {"run_id": version, "framework": "tensorflow", "metrics": {"test_accuracy": accuracy}}
    )


def race_trial(
    store_uri: str, writers: int, readers: int, result: RaceResult, on_start: Callable[[], None] | None = None
) -> None:
    """One trial: a 0.10 champion, ``writers`` better candidates promoted at once, ``readers`` reading."""
    settings = load_settings({"store_uri": store_uri})
    registry = ModelRegistry(store_path(settings.models_root, settings))
    _register(registry, store_uri, "v-base", BASELINE)
    registry.promote("v-base", test_accuracy=BASELINE, reason="baseline")
    accuracies = random.sample(range(50, 99), writers)
    candidates = {f"v-{i:02d}-{uuid.uuid4().hex[:4]}": acc / 100 for i, acc in enumerate(accuracies)}
    for version, acc in candidates.items():
        _register(registry, store_uri, version, acc)
    start = threading.Barrier(writers + readers)
    stop = threading.Event()
    won: list[dict[str, Any]] = []
    lock = threading.Lock()

    def write(version: str) -> None:
        start.wait()
        try:
            pointer = registry.promote(version, test_accuracy=candidates[version], reason="race")
        except Exception as exc:  # noqa: BLE001 - counted
            with lock:
                result.failed_promotions += 1
                result.errors.append(f"promote: {type(exc).__name__}: {exc}")
            return
        if pointer is not None:
            with lock:
                won.append(pointer)

    def read() -> None:
        start.wait()
        while True:
            try:
                champion = registry.champion()
                if champion is None or "version" not in champion:
                    raise AssertionError(f"champion read returned {champion!r}")
            except Exception as exc:  # noqa: BLE001 - counted
                with lock:
                    result.failed_reads += 1
                    result.errors.append(f"read: {type(exc).__name__}: {exc}")
            with lock:
                result.reads += 1
            if stop.is_set():
                return

    threads = [threading.Thread(target=write, args=(v,)) for v in candidates]
    threads += [threading.Thread(target=read) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads[:writers]:
        thread.join()
    stop.set()
    for thread in threads[writers:]:
        thread.join()

    best = max(candidates, key=candidates.get)
    result.trials += 1
    result.promotions += len(won)
    if (registry.champion() or {}).get("version") != best:
        result.wrong_champion += 1
    history = [h for h in registry.history() if h["version"] != "v-base"]
    recorded = [h["version"] for h in history]
    result.lost_entries += sum(1 for pointer in won if pointer["version"] not in recorded)
    chain = ["v-base", *recorded]
    result.wrong_previous += sum(1 for i, h in enumerate(history) if h.get("previous") != chain[i])
