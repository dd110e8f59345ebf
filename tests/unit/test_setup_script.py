"""`make run`'s set-up prints one line per step and installs only what the main job needs.

apt-get cannot run in a test (root, network, the machine's packages), so it is modelled: an
``apt-get`` on PATH that records its arguments and prints what a real install prints (hundreds
of lines). Everything else is the real script on a copy of the project whose .venv is up to
date; Chromium is hidden from PATH, as on a fresh machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APT_LINES = 300


def make_dry_run(target: str) -> str:
    """`make -n TARGET`'s commands, as a user's shell prints them: run under `make test`, the outer
    make's MAKEFLAGS/MAKELEVEL would add "Entering directory" lines."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def fresh_copy(tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "images").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    for name in ("requirements.txt", "requirements-dev.txt"):
        shutil.copy(ROOT / name, repo / name)
    (repo / ".venv").mkdir()
    stamp = b"bytecode\n" + (repo / "requirements.txt").read_bytes()
    (repo / ".venv" / ".requirements.sha256").write_text(hashlib.sha256(stamp).hexdigest() + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    hidden = {"chromium", "chromedriver", "apt-get", "sudo"}
    for tool in Path("/usr/bin").iterdir():
        if tool.name not in hidden:
            (bin_dir / tool.name).symlink_to(tool)
    calls = tmp_path / "apt-calls"
    apt = bin_dir / "apt-get"
    apt.write_text(
        f'#!/bin/bash\necho "$*" >> {calls}\n'
        f'for i in $(seq {APT_LINES}); do echo "Selecting previously unselected package lib$i."; done\n'
    )
    apt.chmod(0o755)
    # uv is modelled the same way (no network in a test): it records what it was asked to install.
    uv = bin_dir / "uv"
    uv.write_text(f'#!/bin/bash\necho "$*" >> {tmp_path / "uv-calls"}\n')
    uv.chmod(0o755)
    others = [p for p in os.environ["PATH"].split(os.pathsep) if p not in ("/usr/bin", "/bin")]
    env = {**os.environ, "PATH": os.pathsep.join([str(bin_dir), *others])}
    return repo, env, calls


def test_make_runs_set_up_installs_no_browser_and_prints_one_line_per_step(tmp_path):
    repo, env, calls = fresh_copy(tmp_path)
    result = subprocess.run(
        ["bash", "scripts/setup.sh"], cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert not calls.exists(), f"apt-get ran for make run: {calls.read_text()}"
    assert result.stdout.splitlines() == [".venv (Airflow): up to date"], result.stdout[-1000:]


def test_the_browser_comes_with_make_test_and_apt_output_goes_to_the_log(tmp_path):
    repo, env, calls = fresh_copy(tmp_path)
    result = subprocess.run(
        ["bash", "scripts/setup.sh", "--browser"], cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "chromium chromium-driver" in calls.read_text()
    assert len(result.stdout.splitlines()) == 2, result.stdout[-1000:]
    assert "Selecting previously unselected" not in result.stdout + result.stderr
    assert (repo / ".local" / "setup.log").read_text().count("Selecting previously unselected") == APT_LINES
    # make test asks for it; its builds for the k8s and node tiers come from scripts/test.sh
    assert make_dry_run("test").splitlines() == ["bash scripts/setup.sh --dev --browser", "bash scripts/test.sh"]


def test_make_run_installs_the_main_jobs_packages_and_make_test_the_test_tools(tmp_path):
    """The test tools (moto, pytest, selenium, ruff...) of requirements-dev.txt come with the
    targets that use them, never with `make run`."""
    repo, env, _ = fresh_copy(tmp_path)
    (repo / ".venv" / ".requirements.sha256").unlink()  # a fresh clone
    uv_calls = tmp_path / "uv-calls"

    def setup(*args: str) -> list[str]:
        result = subprocess.run(
            ["bash", "scripts/setup.sh", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr[-2000:]
        calls = uv_calls.read_text().splitlines() if uv_calls.exists() else []
        uv_calls.unlink(missing_ok=True)
        return [call for call in calls if call.startswith("pip install")]

    assert setup() == ["pip install -q --python .venv/bin/python -r requirements.txt"]
    assert setup("--dev") == ["pip install -q --python .venv/bin/python -r requirements.txt -r requirements-dev.txt"]
    assert setup("--dev") == [] and setup() == []  # both up to date: nothing installed again
    # Every target that runs pytest or ruff asks for the test tools first.
    makefile = (ROOT / "Makefile").read_text()
    for recipe in makefile.split("\n\n"):
        if "$(PYTEST)" in recipe or ".venv/bin/ruff" in recipe:
            target = recipe.split("## ")[0].split(":")[-2].split("\n")[-1].strip()
            commands = make_dry_run(target)
            assert commands.startswith("bash scripts/setup.sh --dev"), (target, commands[:200])
    assert "setup.sh --dev" not in (ROOT / "scripts" / "run_local.sh").read_text()


def test_only_the_setup_target_runs_the_set_up_script():
    """Targets depend on `setup` and pass their flags; none calls scripts/setup.sh itself."""
    recipes = [line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("\t")]
    callers = [line for line in recipes if "scripts/setup.sh" in line]
    assert callers == ["\tbash scripts/setup.sh $(SETUP_FLAGS)"], "a target calls scripts/setup.sh: depend on `setup`"
    for target, flags in [
        ("test-unit", " --dev"),
        ("test-k8s", " --dev --k8s-testenv"),
        ("test-slow", " --dev --browser"),
    ]:
        assert make_dry_run(target).splitlines()[0].rstrip() == f"bash scripts/setup.sh{flags}", target


#: Where scripts/test.sh builds the Docker stack's Airflow image beside the k8s and node tiers:
#: as root with Go, as scripts/setup.sh builds images.
BUILDS_AIRFLOW_IMAGE = os.geteuid() == 0 and shutil.which("go") is not None


def run_test_script(
    tmp_path: Path,
    build_rc: int,
    build_s: int = 3,
    pytest_s: int = 1,
    args: tuple[str, ...] = (),
    airflow_rc: int = 0,
    airflow_s: int = 0,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """scripts/test.sh on a copy whose set-up script and tools are stand-ins that record when they
    ran: the set-up's builds take ``build_s`` seconds and exit with ``build_rc``, the Airflow
    image's ``airflow_s`` and ``airflow_rc``; each pytest call takes ``pytest_s`` seconds and logs
    its stream (its marker expression, and ``unit+integration`` or ``e2e`` when it got only those
    tiers) when it starts and ends, with the last event before its start (whether the builds had
    finished by then)."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for script in ("test.sh", "lint.sh"):
        shutil.copy(ROOT / "scripts" / script, repo / "scripts" / script)
    events = tmp_path / "events"
    (repo / "scripts" / "setup.sh").write_text(
        f'#!/bin/bash\n[ "$*" = "--k8s-testenv --no-airflow-image" ] || exit 9\necho "builds started" >> {events}\n'
        f'echo "compiling kube-apiserver"\nsleep {build_s}\necho "builds ended {build_rc}" >> {events}\n'
        f"exit {build_rc}\n"
    )
    (repo / "tools" / "k8s-node").mkdir(parents=True)
    (repo / "tools" / "k8s-node" / "build-images.sh").write_text(
        f'#!/bin/bash\n[ "$*" = airflow ] || exit 9\necho "airflow image starts" >> {events}\n'
        f'echo "compiling eksctl"\nsleep {airflow_s}\necho "airflow image ends {airflow_rc}" >> {events}\n'
        f"exit {airflow_rc}\n"
    )
    venv_bin = repo / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    for tool in ("ruff", "lint-imports"):
        (venv_bin / tool).write_text("#!/bin/bash\nexit 0\n")
    (venv_bin / "python").write_text(  # logs the last -m argument: the marker expression
        '#!/bin/bash\nprev=; for a in "$@"; do [ "$prev" = -m ] && expr="$a"; prev="$a"; done\n'
        'case " $* " in *" tests/unit tests/integration "*) expr="$expr unit+integration";; '
        '*--ignore=tests/unit*) expr="$expr e2e";; esac\n'
        f'echo "pytest $expr starts | $(tail -n 1 {events})" >> {events}\n'
        f'sleep {pytest_s}\necho "pytest $expr ends" >> {events}\necho "output of $expr"\n'
    )
    for tool in venv_bin.iterdir():
        tool.chmod(0o755)
    result = subprocess.run(["bash", "scripts/test.sh", *args], cwd=repo, capture_output=True, text=True, timeout=60)
    return result, events.read_text().splitlines()


FIRST_TIERS = "not cluster and not k8s and not node"
E2E = f"{FIRST_TIERS} e2e"
UNIT = f"{FIRST_TIERS} unit+integration"
CLUSTER_TIERS = "(k8s or node) and not cluster"


def at(events: list[str], prefix: str) -> int:
    (index,) = [i for i, event in enumerate(events) if event.startswith(prefix)]
    return index


def test_make_test_runs_the_other_tiers_while_the_k8s_builds_run(tmp_path):
    result, events = run_test_script(tmp_path, build_rc=0)
    assert result.returncode == 0, result.stderr
    # The e2e tier and, beside it, the unit and integration tiers run during the builds; the k8s
    # and node tiers after the builds.
    assert at(events, f"pytest {E2E} ends") < at(events, "builds ended 0")
    assert at(events, f"pytest {UNIT} ends") < at(events, "builds ended 0")
    assert at(events, "builds ended 0") < at(events, f"pytest {CLUSTER_TIERS} starts")
    assert [e for e in events if e.startswith("pytest")][-1] == f"pytest {CLUSTER_TIERS} ends"
    out = result.stdout
    assert out.index(f"output of {E2E}") < out.index(f"output of {UNIT}") < out.index(f"output of {CLUSTER_TIERS}")


def test_the_k8s_and_node_tiers_start_beside_the_others_once_the_builds_are_done(tmp_path):
    """A warm machine's builds end in seconds: the k8s and node tiers do not wait for the first tiers."""
    result, events = run_test_script(tmp_path, build_rc=0, build_s=0, pytest_s=2)
    assert result.returncode == 0, result.stderr
    assert at(events, f"pytest {CLUSTER_TIERS} starts") < at(events, f"pytest {E2E} ends")
    assert at(events, f"pytest {UNIT} starts") < at(events, f"pytest {E2E} ends")
    # Each stream's output comes whole, after the foreground one's, not mixed into it.
    out = result.stdout
    assert out.index(f"output of {E2E}") < out.index(f"output of {UNIT}") < out.index(f"output of {CLUSTER_TIERS}")


def test_arguments_reach_the_first_tiers_as_one_run(tmp_path):
    result, events = run_test_script(tmp_path, build_rc=0, args=("-k", "smoke"))
    assert result.returncode == 0, result.stderr
    starts = [e.split(" | ")[0] for e in events if e.startswith("pytest") and " starts" in e]
    assert sorted(starts) == sorted([f"pytest {FIRST_TIERS} starts", f"pytest {CLUSTER_TIERS} starts"])


def test_a_failed_build_fails_make_test_with_its_log_after_the_other_tiers(tmp_path):
    result, events = run_test_script(tmp_path, build_rc=1)
    assert result.returncode == 1
    assert events[-1] == "builds ended 1"  # neither the Airflow image nor the k8s and node tiers
    assert sorted(e.split(" | ")[0] for e in events if e.startswith("pytest") and " starts" in e) == [
        f"pytest {E2E} starts",
        f"pytest {UNIT} starts",
    ]
    assert "background builds failed" in result.stderr and "compiling kube-apiserver" in result.stderr


@pytest.mark.skipif(not BUILDS_AIRFLOW_IMAGE, reason="the Airflow image is built as root with Go only")
def test_the_airflow_image_builds_beside_the_k8s_and_node_tiers(tmp_path):
    """The longest build does not hold back the k8s and node tiers; make test waits for both."""
    result, events = run_test_script(tmp_path, build_rc=0, build_s=0, pytest_s=1, airflow_s=3)
    assert result.returncode == 0, result.stderr
    # Side by side: the tests start before the image is done, and the image before the tests end.
    assert at(events, f"pytest {CLUSTER_TIERS} starts") < at(events, "airflow image ends 0")
    assert at(events, "airflow image starts") < at(events, f"pytest {CLUSTER_TIERS} ends")
    assert at(events, "builds ended 0") < at(events, "airflow image starts")


@pytest.mark.skipif(not BUILDS_AIRFLOW_IMAGE, reason="the Airflow image is built as root with Go only")
def test_a_failed_airflow_image_fails_make_test_with_its_log_and_the_tiers_output(tmp_path):
    result, events = run_test_script(tmp_path, build_rc=0, build_s=0, airflow_rc=1, airflow_s=2)
    assert result.returncode == 1
    assert "airflow image ends 1" in events
    assert "background builds failed" in result.stderr and "compiling eksctl" in result.stderr
    assert f"output of {CLUSTER_TIERS}" in result.stdout  # the tests that ran are still reported


def test_the_airflow_image_test_runs_last_in_the_k8s_and_node_tiers():
    """It waits for the image that builds beside these tiers (tests/k8s/conftest.py)."""
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "pytest", "tests/k8s", "-m", "(k8s or node) and not cluster"]
        + ["--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    items = [line for line in result.stdout.splitlines() if "::" in line]
    assert len(items) > 40, result.stdout[-2000:]
    assert [i for i, item in enumerate(items) if "airflow_image" in item] == [len(items) - 1], items[-3:]
