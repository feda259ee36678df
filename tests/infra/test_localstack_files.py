"""The LocalStack compose file, its init hook, the example CI workflow and the checkov installer are valid."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .terraform_hcl import REPO_ROOT

LOCALSTACK = REPO_ROOT / "localstack"
COMPOSE = LOCALSTACK / "docker-compose.yml"
READY_D = LOCALSTACK / "init" / "ready.d"
WORKFLOW = LOCALSTACK / "ci-example" / "github-actions.yml"
INSTALL_CHECKOV = REPO_ROOT / ".ci" / "install-checkov.sh"


def load_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    assert isinstance(data, dict)
    return data


def compose_service() -> dict[str, Any]:
    services = load_yaml(COMPOSE)["services"]
    assert list(services) == ["localstack"]
    return services["localstack"]


def default_of(value: str) -> str:
    """The default of a compose ${VAR:-default} interpolation (or the value itself)."""
    match = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    return match.group(1) if match else value


def test_compose_runs_localstack_with_s3_and_secrets_manager() -> None:
    service = compose_service()
    assert default_of(service["image"]).startswith("localstack/localstack:")
    assert not default_of(service["image"]).endswith(":latest")
    services = set(service["environment"]["SERVICES"].split(","))
    assert {"s3", "secretsmanager"} <= services


def test_compose_publishes_the_edge_port_on_loopback_only() -> None:
    ports = compose_service()["ports"]
    assert len(ports) == 1
    match = re.fullmatch(r"([\d.]+):(\$\{[^}]*\}|\d+):(\d+)", ports[0])
    assert match, ports[0]
    host, published, container = match.groups()
    assert host == "127.0.0.1"
    assert default_of(published) == "4566" and container == "4566"


def test_compose_mounts_the_init_hooks_and_waits_for_them() -> None:
    service = compose_service()
    mounts = [v.split(":") for v in service["volumes"]]
    hook_mounts = [m for m in mounts if m[1] == "/etc/localstack/init/ready.d"]
    assert len(hook_mounts) == 1
    assert (COMPOSE.parent / hook_mounts[0][0]).resolve() == READY_D.resolve()
    bucket = default_of(service["environment"]["PACKVAULT_TEST_BUCKET"])
    assert bucket == "packvault-test"
    assert "head-bucket" in " ".join(service["healthcheck"]["test"])


def init_scripts() -> list[Path]:
    scripts = sorted(READY_D.glob("*.sh"))
    assert scripts, "no init hook in localstack/init/ready.d"
    return scripts


def test_init_hooks_are_executable_bash_that_parses() -> None:
    for script in init_scripts():
        assert script.stat().st_mode & stat.S_IXUSR, f"{script.name} is not executable (LocalStack skips it)"
        assert script.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash")
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_init_hook_creates_the_bucket_and_secret_idempotently(tmp_path: Path) -> None:
    """Run the hook with a fake awslocal: first run creates, second run finds everything present."""
    state = tmp_path / "state"
    state.mkdir()
    log = tmp_path / "calls.log"
    fake = tmp_path / "awslocal"
    # awslocal SERVICE COMMAND --option NAME: remember created names as files, answer look-ups from them.
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> "{log}"\n'
        f'marker="{state}/${{4//\\//_}}"\n'
        'case "$2" in\n'
        '  head-bucket|describe-secret) test -e "$marker" ;;\n'
        '  create-bucket|create-secret) touch "$marker" ;;\n'
        "esac\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "PACKVAULT_TEST_BUCKET": "b1"}
    for script in init_scripts():
        subprocess.run(["bash", str(script)], check=True, env=env, capture_output=True)
    first = log.read_text(encoding="utf-8").splitlines()
    assert "s3api create-bucket --bucket b1" in first
    assert any(line.startswith("secretsmanager create-secret --name packvault/test/passphrase") for line in first)
    log.unlink()
    for script in init_scripts():
        subprocess.run(["bash", str(script)], check=True, env=env, capture_output=True)
    second = log.read_text(encoding="utf-8").splitlines()
    assert not [line for line in second if "create-" in line]


# --- example CI workflow -------------------------------------------------------------------------------------


def workflow() -> dict[str, Any]:
    data = load_yaml(WORKFLOW)
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def test_workflow_has_triggers_and_read_only_token() -> None:
    data = workflow()
    assert data["on"], "no trigger"
    assert data["permissions"] == {"contents": "read"}


def test_workflow_runs_tests_against_a_localstack_service_container() -> None:
    jobs = workflow()["jobs"]
    assert len(jobs) == 1
    job = next(iter(jobs.values()))
    assert job["runs-on"]
    service = job["services"]["localstack"]
    assert service["image"].startswith("localstack/localstack:")
    assert "4566:4566" in [str(p) for p in service["ports"]]
    assert "s3" in service["env"]["SERVICES"].split(",")
    assert "--health-cmd" in service["options"]
    assert job["env"]["PACKVAULT_TEST_LOCALSTACK"] == "http://localhost:4566"


def test_workflow_steps_check_out_install_and_test() -> None:
    job = next(iter(workflow()["jobs"].values()))
    steps = job["steps"]
    for step in steps:
        assert ("uses" in step) != ("run" in step), step
        assert step.get("name"), step
    uses = [s["uses"].split("@")[0] for s in steps if "uses" in s]
    runs = [s["run"] for s in steps if "run" in s]
    assert uses[:2] == ["actions/checkout", "actions/setup-python"]
    assert all("@" in s["uses"] for s in steps if "uses" in s), "actions must be pinned to a version"
    install = next(i for i, r in enumerate(runs) if "make install" in r)
    test = next(i for i, r in enumerate(runs) if "pytest" in r or "make test" in r)
    assert install < test
    assert any("create-bucket" in r and "packvault-test" in r for r in runs[:test])
    assert any("install-checkov.sh" in r for r in runs[:test])


# --- checkov installer ---------------------------------------------------------------------------------------


def test_install_checkov_script_is_valid_and_pinned() -> None:
    text = INSTALL_CHECKOV.read_text(encoding="utf-8")
    subprocess.run(["bash", "-n", str(INSTALL_CHECKOV)], check=True)
    assert "set -euo pipefail" in text
    assert re.search(r"checkov==3\.3\.\*", text)
    assert ".venv-checkov" in text and "-m venv" in text


@pytest.mark.skipif(not (REPO_ROOT / ".venv-checkov" / "bin" / "checkov").exists(), reason="checkov not installed")
def test_install_checkov_is_idempotent() -> None:
    result = subprocess.run(["bash", str(INSTALL_CHECKOV)], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    again = subprocess.run(["bash", str(INSTALL_CHECKOV)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout == "" and again.stderr == ""
