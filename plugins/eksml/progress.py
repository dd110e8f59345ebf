"""What ``make run`` shows while a DAG runs: one line per task start and end (with its
duration), the per-epoch lines of training, the run's outcome and every error, read from
the ``airflow dags test`` log on stdin. The full log stays in the file ``make run`` tees to.

Everything else (task-runner chatter, returned values, TensorFlow's start-up noise) is left
out: a line shown here means something to the person waiting.

``airflow dags test ... 2>&1 | python -m eksml.progress``
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime

from eksml.local.runner import OWN_TIMESTAMP

#: ``2026-11-29T18:59:47.785557Z [info     ] message [logger] loc=file.py:87``
_RECORD = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z?\s+\[(?P<level>\w+)\s*\]\s+(?P<msg>.*)$")
_TRAILER = re.compile(r"\s+\[[\w.]+\](?:\s+\w+=\S+)*\s*$")
_START = re.compile(r"\[DAG TEST\] starting task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
_END = re.compile(r"\[DAG TEST\] end task task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
#: Messages worth a line of their own (matched on the message, the logger trailer removed).
_KEEP = re.compile(
    r"^(epoch \d+/\d+ |OUTCOME |  (Model version|Metrics|Plots|Per-class plot) "
    r"|registered \S+ \(|promoted \S+ to champion"
    r"|gate refused|scheduled training is off|deployed |smoke test|rolled back)"
)
_RUN_END = re.compile(r"Marking run <DagRun .*: (?P<run>\S+), state:.*> (?P<state>successful|failed)")
_NEVER = re.compile(r"Returned value was|Condition result is|EKSML_RESULT")


def _clock(stamp: str) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return None


def condense(lines: Iterable[str]) -> Iterator[str]:
    """The lines a person waiting for the run should see, in order."""
    started: dict[tuple[str, str], datetime | None] = {}
    in_traceback = False
    for raw in lines:
        line = raw.rstrip("\n")
        record = _RECORD.match(line)
        if record is None:
            # Continuation lines: only a traceback's are shown (it follows an error record).
            if (
                line.startswith("Traceback")
                or in_traceback
                and line.startswith((" ", "\t"))
                or (in_traceback and re.match(r"^\w+(\.\w+)*(Error|Exception)\b", line))
            ):
                in_traceback = True
                yield line
            else:
                in_traceback = False
            continue
        in_traceback = False
        stamp, level = _clock(record["ts"]), record["level"].lower()
        message = OWN_TIMESTAMP.sub("", _TRAILER.sub("", record["msg"]), count=1)
        clock = f"{stamp:%H:%M:%S}" if stamp else "--:--:--"
        if match := _START.search(message):
            task = match["task"] + (f"[{match['index']}]" if match["index"] != "-1" else "")
            started[(match["task"], match["index"])] = stamp
            yield f"{clock}  {task}: started"
        elif match := _END.search(message):
            task = match["task"] + (f"[{match['index']}]" if match["index"] != "-1" else "")
            begun = started.pop((match["task"], match["index"]), None)
            took = f" in {(stamp - begun).total_seconds():.0f} s" if begun and stamp else ""
            yield f"{clock}  {task}: finished{took}"
        elif _NEVER.search(message):
            continue
        elif match := _RUN_END.search(message):
            yield f"{clock}  run {match['run']}: {match['state']}"
        elif level in ("error", "critical") or _KEEP.search(message):
            marker = "ERROR " if level in ("error", "critical") else ""
            yield f"{clock}    {marker}{message}"


def main() -> int:
    for line in condense(sys.stdin):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
