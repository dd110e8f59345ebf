"""DAG parse cost: cold (first parse in a fresh interpreter, imports included) and warm
(re-parse with modules loaded, what the DAG processor pays on every refresh).

Usage: .venv/bin/python bench/dag_parse.py [repeats]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = """
import sys, time, runpy
sys.path.insert(0, {plugins!r})
t0 = time.perf_counter(); import airflow.sdk; t1 = time.perf_counter()
runpy.run_path({dag!r}); t2 = time.perf_counter()
runpy.run_path({dag!r}); t3 = time.perf_counter()
print(f"{{t1 - t0:.3f}} {{t2 - t1:.3f}} {{t3 - t2:.3f}}")
"""


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    print(f"{'dag file':32} {'airflow.sdk':>12} {'cold parse':>11} {'warm parse':>11}  (seconds, best of {repeats})")
    for dag in sorted((ROOT / "dags").glob("*.py")):
        runs = []
        for _ in range(repeats):
            out = subprocess.run(
                [sys.executable, "-c", CODE.format(plugins=str(ROOT / "plugins"), dag=str(dag))],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            runs.append(tuple(map(float, out[-3:])))
        best = [min(r[i] for r in runs) for i in range(3)]
        print(f"{dag.name:32} {best[0]:12.3f} {best[1]:11.3f} {best[2]:11.3f}")


if __name__ == "__main__":
    main()
