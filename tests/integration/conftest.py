"""Model servers shared by the serving tests: one per framework on real exports, started once."""

from __future__ import annotations

from pathlib import Path

import inference_models as im
import pytest


@pytest.fixture(scope="session")
def versions() -> dict[str, Path]:
    missing = im.missing_venvs("inference", "tf-fashion-mnist", "mxnet-horovod")
    if missing:
        pytest.skip(f"virtualenv(s) missing: {', '.join(missing)} (bash scripts/setup.sh)")
    return {"tensorflow": im.trained_model("tensorflow"), "mxnet": im.trained_model("mxnet")}


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory) -> dict[str, Path]:
    """Log file of each framework's server (what it wrote to stdout and stderr)."""
    logs = tmp_path_factory.mktemp("server-logs")
    return {framework: logs / f"{framework}.log" for framework in ("tensorflow", "mxnet")}


@pytest.fixture(scope="session")
def servers(versions, server_logs) -> dict[str, int]:
    """Port per framework; the ONNX server waits up to 50 ms to group requests."""
    ports, procs = {}, {}
    try:
        for framework, extra in (("tensorflow", ()), ("mxnet", ("--max-latency-ms", "50"))):
            ports[framework] = im.free_port()
            procs[framework] = im.start_server(
                versions[framework], ports[framework], *extra, log_path=server_logs[framework]
            )
        yield ports
    finally:
        for proc in procs.values():
            im.stop_server(proc)
