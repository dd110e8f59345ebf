"""The model registry: versions, their metadata, and the champion pointer, in the model store.

Layout under ``<store>/models/<model>/``::

    <version>/...             exported model, metrics.json, evaluation.json, plots
    <version>/metadata.json   written last: a version without it is not registered
    champion.json             the serving champion; names its history entry; replaced only by
                              a conditional write (compare-and-swap on its ETag)
    promotions/<key>.json     one object per promotion attempt, written before the pointer

Paths inside these documents are relative to the model folder, so a copied or restored store
points at itself. The history is the chain of entries the pointer leads back through (each
entry names its predecessor); an entry whose pointer write lost a race or never happened is
not part of it, so a crash between the two writes loses nothing and a retry starts afresh.

The deployment DAG asks here which version to serve (:func:`resolve_deployment`): the champion,
or a version named by hand, which becomes champion only once it serves (:func:`record_deployment`).
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from eksml.errors import ServiceError
from eksml.layout import METADATA, METRICS, STAMP, ModelVersion, recorded_accuracy
from eksml.storage import (
    PreconditionFailed,
    copy_tree,
    put_if_absent,
    put_if_match,
    read_json,
    read_versioned,
    remove_tree,
    store_path,
    uri_of,
    write_json_atomic,
)

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from eksml.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion.json"
PROMOTIONS = "promotions"
#: Conditional writes lost in a row before a promotion gives up (each loss means another won).
MAX_ATTEMPTS = 200


class RegistryError(ServiceError):
    """A registration or promotion would break the registry's rules."""


class CorruptPointer(RegistryError, AirflowFailException):
    """``champion.json`` cannot be read as a pointer. A task that meets it fails without a retry
    (another read finds the same bytes); ``repair --apply`` rebuilds it from the promotion history."""


def _pointer_problem(body: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The pointer a stored body holds, or why it holds none."""
    if not body.strip():
        return None, "is empty"
    try:
        value = json.loads(body)
    except ValueError as exc:
        return None, f"is not valid JSON ({exc}; {len(body)} bytes, truncated?)"
    if not isinstance(value, dict):
        return None, f"holds a JSON {type(value).__name__}, not an object"
    if not isinstance(value.get("version"), str) or not value["version"]:
        return None, 'has no "version" (a non-empty string)'
    return value, None


def should_promote(candidate_accuracy: float, champion_accuracy: float | None, margin: float = 0.0) -> bool:
    """The evaluation gate: no champion yet, or strictly better and better by at least the margin.

    An equally accurate retrain does not replace the champion (nor trigger a redeploy).
    """
    if champion_accuracy is None:
        return True
    return candidate_accuracy > champion_accuracy and candidate_accuracy >= champion_accuracy + margin


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, indent=2, sort_keys=True, default=str).encode()


class ModelRegistry:
    """Registered versions of one model and its champion, on any object store."""

    def __init__(self, root: ObjectStoragePath) -> None:
        self.root = root

    # --- versions ----------------------------------------------------------------------
    def version_path(self, version: str) -> ObjectStoragePath:
        return self.root / version

    def is_registered(self, version: str) -> bool:
        return (self.version_path(version) / METADATA).exists()

    def versions(self) -> list[str]:
        """Registered versions, oldest data interval first."""
        if not self.root.exists():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and p.name != PROMOTIONS and (p / METADATA).exists()
        )

    def metadata(self, version: str) -> dict[str, Any]:
        """A version's metadata; ``uri`` is where the version is now, not where it was written."""
        path = self.version_path(version) / METADATA
        if not path.exists():
            raise RegistryError(f"version {version!r} is not registered")
        return {**read_json(path), "uri": uri_of(self.version_path(version))}

    def register(self, version: str, staging: ObjectStoragePath, metadata: dict[str, Any]) -> ObjectStoragePath:
        """Copy a finished training output into ``<version>/`` and write its metadata last.

        Re-registering a version is allowed only from the run that created it (a cleared and
        re-run task); another run's version is never overwritten.
        """
        if not ModelVersion(staging).finished:
            raise RegistryError(f"{staging} holds no {METRICS}: training did not finish, nothing registered")
        target = self.version_path(version)
        if self.is_registered(version):
            owner = self.metadata(version).get("run_id")
            if owner != metadata.get("run_id"):
                raise RegistryError(f"version {version} belongs to run {owner!r}; refusing to overwrite it")
        was_registered = self.is_registered(version)
        try:
            copied = copy_tree(staging, target)
            write_json_atomic(
                target / METADATA,
                {
                    **metadata,
                    "version": version,
                    "files": copied,
                    "registered_at": datetime.now(timezone.utc).isoformat(),
                },
            )
        except BaseException:
            if not was_registered:  # a partial copy is no version: leave nothing behind
                remove_tree(target)
            raise
        log.info("registered %s (%d files) at %s", version, len(copied), target)
        return target

    # --- champion ------------------------------------------------------------------------
    def pointer(self) -> tuple[dict[str, Any] | None, str | None]:
        """The stored champion pointer as it is (dangling or not) and its ETag, from one read.

        Raises :class:`CorruptPointer` (one line: the file, the problem, the fix) when the file
        holds no pointer."""
        found = read_versioned(self.root / CHAMPION)
        if found is None:
            return None, None
        pointer, problem = _pointer_problem(found.body)
        if problem:
            raise CorruptPointer(
                f"{uri_of(self.root / CHAMPION)} {problem}: `python -m eksml.registry repair --apply` "
                "rebuilds it from the promotion history"
            )
        return pointer, found.etag

    def _resolved(self, pointer: dict[str, Any]) -> dict[str, Any]:
        return {**pointer, "uri": uri_of(self.version_path(pointer["version"]))}

    def champion(self) -> dict[str, Any] | None:
        """The champion with its ``uri`` in this store, or None.

        A pointer naming a version that is not registered (deleted by hand, a partial restore)
        is treated as no champion, with a warning: the next good candidate replaces it.
        """
        pointer, _ = self.pointer()
        if pointer is None:
            return None
        if not self.is_registered(pointer["version"]):
            log.warning(
                "champion.json names version %s, which is not registered under %s: treated as no "
                "champion (`python -m eksml.registry repair` fixes the pointer)",
                pointer["version"],
                uri_of(self.root),
            )
            return None
        return self._resolved(pointer)

    def promote(
        self,
        version: str,
        *,
        test_accuracy: float,
        reason: str,
        margin: float = 0.0,
        force: bool = False,
        measured: dict[str, float] | None = None,
    ) -> dict[str, Any] | None:
        """Make ``version`` the champion if it passes the gate against the champion *now*.

        A compare-and-swap on every store: read the pointer and its ETag, decide, write the
        history entry under a new key, then replace the pointer only if its ETag is unchanged
        (create it only if still absent). A lost race re-reads and decides again, so two
        concurrent promotions cannot both win against a stale champion. Promoting the
        version that already is champion returns its pointer (a retried task is a no-op).
        ``force`` (a manual rollback) skips the gate. ``measured`` maps versions to
        accuracies measured on the candidate's own test data (the evaluation step scores the
        champion there too); the champion's recorded accuracy is the fallback.
        Returns the new pointer, or None when the gate refused.
        """
        meta = self.metadata(version)
        for attempt in range(MAX_ATTEMPTS):
            current, etag = self.pointer()
            if current and current["version"] == version:
                return self._resolved(current)
            current_acc = None
            if current and not self.is_registered(current["version"]):
                log.warning("champion %s is not registered: treated as no champion", current["version"])
            elif current:
                current_acc = (measured or {}).get(current["version"], current.get("test_accuracy"))
            if not force and not should_promote(test_accuracy, current_acc, margin):
                log.info(
                    "gate refused %s: test accuracy %.4f vs champion %s at %s; needs more than the "
                    "champion and at least champion + margin %s",
                    version,
                    test_accuracy,
                    current and current["version"],
                    current_acc,
                    margin,
                )
                return None
            now = datetime.now(timezone.utc)
            entry_key = f"{PROMOTIONS}/{now:{STAMP}%fZ}-{version}-{uuid.uuid4().hex[:8]}.json"
            entry = {
                "version": version,
                "framework": meta.get("framework"),
                "test_accuracy": test_accuracy,
                "promoted_at": now.isoformat(),
                "reason": reason,
                "run_id": meta.get("run_id"),
                "margin": margin,
                "champion_accuracy": current_acc,
                "previous": current and current["version"],
                "previous_entry": current and current.get("entry"),
            }
            put_if_absent(self.root / entry_key, _dumps(entry))
            pointer = {**entry, "entry": entry_key}
            try:
                if etag is None:
                    put_if_absent(self.root / CHAMPION, _dumps(pointer))
                else:
                    put_if_match(self.root / CHAMPION, _dumps(pointer), etag)
            except PreconditionFailed:
                # The entry stays behind, unreachable from the pointer: not part of the history.
                time.sleep(random.uniform(0.005, 0.05) * min(attempt + 1, 8))
                continue
            log.info("promoted %s to champion (%s); previous %s", version, reason, entry["previous"])
            return self._resolved(pointer)
        raise RegistryError(f"promotion of {version} lost {MAX_ATTEMPTS} conditional writes in a row")

    def history(self) -> list[dict[str, Any]]:
        """Promotions that moved the pointer, oldest first: the chain from the pointer's entry back."""
        pointer, _ = self.pointer()
        chain: list[dict[str, Any]] = []
        key = pointer and pointer.get("entry")
        seen: set[str] = set()
        while key and key not in seen:
            seen.add(key)
            found = read_versioned(self.root / key)
            if found is None:
                log.warning("history entry %s is missing; history before it is unknown", key)
                break
            entry, problem = _pointer_problem(found.body)
            if entry is None:
                log.warning("history entry %s %s; history before it is unknown", key, problem)
                break
            chain.append({**entry, "entry": key})
            key = entry.get("previous_entry")
        return chain[::-1]

    def _newest_valid_promotion(self) -> tuple[str, dict[str, Any]] | None:
        """The newest promotion entry (keys sort by time) that parses and names a registered version."""
        folder = self.root / PROMOTIONS
        keys = (
            sorted((p.name for p in folder.iterdir() if p.name.endswith(".json")), reverse=True)
            if folder.exists()
            else []
        )
        for name in keys:
            found = read_versioned(folder / name)
            entry, _ = _pointer_problem(found.body) if found else (None, "gone")
            if entry is not None and self.is_registered(entry["version"]):
                return f"{PROMOTIONS}/{name}", entry
        return None

    def _rebuild(self, apply: bool) -> dict[str, Any]:
        """Repair of a corrupt pointer: point again at the newest valid promotion entry."""
        found = read_versioned(self.root / CHAMPION)
        assert found is not None
        problem = _pointer_problem(found.body)[1]
        newest = self._newest_valid_promotion()
        report: dict[str, Any] = {"pointer": None, "corrupt": problem, "dangling": False}
        if newest is None:
            report["action"] = "none possible: no promotion entry names a registered version; promote one by hand"
            return report
        key, entry = newest
        report["action"] = f"rebuild from {key} ({entry['version']})"
        report["pointer"] = {**entry, "entry": key}
        if apply:
            try:  # replace exactly the corrupt bytes read above; a concurrent fix or promotion wins
                put_if_match(self.root / CHAMPION, _dumps(report["pointer"]), found.etag)
            except PreconditionFailed:
                report["action"] += ": not written, the pointer changed meanwhile (run repair again)"
                report["pointer"] = None
            else:
                log.warning("champion.json %s: rebuilt from %s (%s)", problem, key, entry["version"])
                report["pointer"] = self._resolved(report["pointer"])
        return report

    def repair(self, *, apply: bool = False) -> dict[str, Any]:
        """Diagnose the pointer; with ``apply``, point a dangling champion at a registered version.

        The replacement is the newest earlier champion in the history that is still registered,
        else the registered version with the best recorded test accuracy. A corrupt pointer (not
        JSON, empty, no ``version``) is rebuilt from the newest valid promotion entry instead:
        the chain it led back through is unreadable. The fix is itself a
        promotion (same compare-and-swap). With no version left there is nothing to point at;
        the pointer stays, treated as absent, until the next promotion replaces it.
        """
        try:
            pointer, _ = self.pointer()
        except CorruptPointer:
            return self._rebuild(apply)
        report: dict[str, Any] = {"pointer": pointer, "corrupt": None, "dangling": False, "action": "none"}
        if pointer is None or self.is_registered(pointer["version"]):
            return report
        report["dangling"] = True
        registered = set(self.versions())
        target = next((e["version"] for e in reversed(self.history()) if e["version"] in registered), None)
        if target is None and registered:
            target = max(registered, key=lambda v: recorded_accuracy(self.metadata(v)) or 0.0)
        report["action"] = (
            f"point at {target}"
            if target
            else "none possible: no version is registered; the next promoted version replaces it"
        )
        if apply and target:
            accuracy = recorded_accuracy(self.metadata(target)) or 0.0
            report["pointer"] = self.promote(
                target,
                test_accuracy=accuracy,
                force=True,
                reason=f"repair: champion {pointer['version']} is not registered",
            )
        return report


# --- what the deployment DAG serves ---------------------------------------------------------
def resolve_deployment(version: str | None, settings: Settings) -> dict[str, Any]:
    """The pointer to deploy: the champion, or the registered ``version`` asked for by hand.

    The champion is what ``champion.json`` names, the one source of truth for what serves (the
    champion asset event only announces a promotion). The version's ``metadata.json`` is read
    here, once, and what the deployment needs of it travels in the pointer (``data_uri``, the
    smoke test's data). A requested version becomes champion only after it deployed and passed
    its smoke test (:func:`record_deployment`), so a broken one never displaces the champion
    that serves.
    """
    registry = ModelRegistry(store_path(settings.models_root, settings))
    if version:
        meta = registry.metadata(version)  # raises for an unknown version before anything moves
        accuracy = recorded_accuracy(meta) or 0.0
        log.info("deploying %s by request", version)
        pointer = {"version": version, "uri": meta["uri"], "test_accuracy": accuracy, "requested": True}
    else:
        champion = registry.champion()
        if champion is None:
            raise RegistryError(f"no champion under {settings.models_root}: train a model first")
        meta = registry.metadata(champion["version"])
        pointer = {**champion, "requested": False}
    return {**pointer, "data_uri": meta.get("data_uri")}


def record_deployment(pointer: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """After a successful deploy of a requested version, make it the champion (a rollback or pin),
    so later evaluation gates compare against what actually serves."""
    if not pointer.get("requested"):
        return pointer
    registry = ModelRegistry(store_path(settings.models_root, settings))
    return (
        registry.promote(
            pointer["version"], test_accuracy=pointer["test_accuracy"], force=True, reason="manual redeploy"
        )
        or pointer
    )


def version_table(registry: ModelRegistry) -> list[str]:
    """One line per registered version, newest first: accuracy, framework, champion marker."""
    champion = (registry.champion() or {}).get("version")
    lines = [f"{'':2}{'version':<44} {'accuracy':>8}  {'framework':<10} {'trainer':<10} registered"]
    for version in reversed(registry.versions()):
        meta = registry.metadata(version)
        accuracy = recorded_accuracy(meta)
        shown = f"{accuracy:.4f}" if isinstance(accuracy, (int, float)) else "-"
        lines.append(
            f"{'*' if version == champion else '':2}{version:<44} {shown:>8}  "
            f"{meta.get('framework') or '-':<10} {meta.get('trainer') or '-':<10} "
            f"{(meta.get('registered_at') or '-')[:19]}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m eksml.registry list|champion|history|repair [--apply]`` against the configured store.

    ``list``: registered versions with their test accuracy (``*`` marks the champion)."""
    import argparse

    from eksml.settings import resolve_settings

    parser = argparse.ArgumentParser(prog="python -m eksml.registry", description=main.__doc__)
    parser.add_argument("command", choices=("list", "champion", "history", "repair"))
    parser.add_argument("--apply", action="store_true", help="repair: write the fix (default: only show it)")
    args = parser.parse_args(argv)
    settings = resolve_settings()
    registry = ModelRegistry(store_path(settings.models_root, settings))
    try:
        _command(registry, settings, args.command, args.apply)
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _command(registry: ModelRegistry, settings: Settings, command: str, apply: bool) -> None:
    if command == "list":
        lines = version_table(registry)
        print(f"model versions under {settings.models_root} (* = champion)")
        print("\n".join(lines) if len(lines) > 1 else "(none registered)")
        print(
            'roll back: trigger model_deployment with {"version": "<version>"} '
            '(airflow dags trigger model_deployment -c \'{"version": "..."}\')'
        )
    elif command == "champion":
        print(json.dumps(registry.pointer()[0], indent=2))
    elif command == "history":
        for entry in registry.history():
            print(
                f"{entry['promoted_at']}  {entry['version']}  {entry['test_accuracy']:.4f}  "
                f"previous {entry['previous']}  ({entry['reason']})"
            )
    else:
        report = registry.repair(apply=apply)
        state = (
            f"corrupt ({report['corrupt']})"
            if report["corrupt"]
            else "dangling (its version is not registered)"
            if report["dangling"]
            else "ok"
        )
        print(f"champion pointer: {state}; action: {report['action']}{'' if apply else ' (dry run)'}")
        print(json.dumps(report["pointer"], indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
