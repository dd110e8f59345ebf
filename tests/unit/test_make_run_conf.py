"""`make run CONF=...` hands its value to scripts/run_local.sh byte for byte, whatever it holds.

The real Makefile runs in a copy of the project whose scripts/run_local.sh only records its
first argument: what the recipe passes is what is checked, not what the script then does.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

HOSTILE = [
    b"{}'; touch pwned; echo '",  # a single quote closing '$(CONF)' ran the rest as shell
    b'{"run_name": "it\'s mine"}',  # ...and a legitimate quote was a shell syntax error
    b'{"x": "$(shell touch pwned)"}',  # make's own expansion
    b'{"x": "`touch pwned` $(touch pwned) $HOME $$ \\\\ \\" %"}',
    b'{"x": "# not a comment"}',
    b'{"x": "two\nlines"}',
    b'{"x": "\xff\xfe not UTF-8"}',
]


@pytest.fixture
def project(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "run_local.sh").write_text('printf "%s" "$1" > received\n')
    return tmp_path


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_conf_reaches_the_script_unchanged_and_nothing_runs(project, value):
    subprocess.run([b"make", b"-s", b"run", b"CONF=" + value], cwd=project, check=True, timeout=60)
    assert (project / "received").read_bytes() == value
    assert not (project / "pwned").exists()


def test_without_conf_the_script_gets_an_empty_object(project):
    subprocess.run(["make", "-s", "run"], cwd=project, check=True, timeout=60)
    assert (project / "received").read_bytes() == b"{}"
