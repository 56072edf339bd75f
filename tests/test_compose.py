"""The production shape: docker-compose.yml validates and keeps the promises of DESIGN.md.

No database and no Docker engine needed: Debian's docker-compose (v1) validates the file without a
daemon, and the structural checks read the YAML.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"

APP_SERVICES = ("web", "worker-gpu", "worker-cpu", "signer", "scheduler", "flower")
WORKERS = ("worker-gpu", "worker-cpu", "signer")
REQUIRED_ENV = {
    "DJANGO_SECRET_KEY": "test-only-secret",
    "ATELIER_PSEUDONYM_KEY": "test-only-pseudonyms",
    "FLOWER_BASIC_AUTH": "admin:test-only",
}

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose (Debian's v1) is not installed: apt-get install docker-compose",
)


@pytest.fixture(scope="module")
def services():
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def _compose_config(tmp_path, **env_overrides):
    """Run `docker-compose config -q` on a copy of the file, beside a dummy chain key."""
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "chain_private_key").write_text("0x" + "11" * 32)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COMPOSE_", "DOCKER_")) and k not in REQUIRED_ENV
    }
    env.update({k: v for k, v in env_overrides.items() if v is not None})
    return subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _healthcheck_command(service):
    return " ".join(str(part) for part in service["healthcheck"]["test"])


@needs_compose
def test_compose_validates_the_file_when_the_required_variables_are_set(tmp_path):
    result = _compose_config(tmp_path, **REQUIRED_ENV)

    assert result.returncode == 0, result.stderr


@needs_compose
def test_compose_refuses_the_file_without_a_django_secret_key(tmp_path):
    result = _compose_config(tmp_path, **{**REQUIRED_ENV, "DJANGO_SECRET_KEY": None})

    assert result.returncode != 0
    assert "set DJANGO_SECRET_KEY" in result.stderr


@needs_compose
def test_compose_refuses_the_file_without_a_pseudonym_key(tmp_path):
    result = _compose_config(tmp_path, **{**REQUIRED_ENV, "ATELIER_PSEUDONYM_KEY": None})

    assert result.returncode != 0
    assert "set ATELIER_PSEUDONYM_KEY" in result.stderr


def test_it_defines_every_process_of_the_design(services):
    expected = {
        "web",
        "worker-gpu",
        "worker-cpu",
        "signer",
        "scheduler",
        "redis",
        "postgres",
        "flower",
    }

    assert expected <= set(services)


def test_each_worker_consumes_only_its_own_queue(services):
    queues = {}
    for name in WORKERS:
        command = services[name]["command"]
        queues[name] = command[command.index("-Q") + 1]

    assert queues == {"worker-gpu": "gpu", "worker-cpu": "cpu", "signer": "chain"}


def test_the_gpu_worker_and_the_signer_run_one_task_at_a_time(services):
    for name in ("worker-gpu", "signer"):
        assert "--concurrency=1" in services[name]["command"], name
        assert "--pool=prefork" not in services[name]["command"], name


def test_redis_keeps_an_append_only_log_and_never_evicts_keys(services):
    command = " ".join(services["redis"]["command"])

    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command


def test_the_gpu_worker_reserves_one_nvidia_device(services):
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]

    assert [(d["driver"], d["count"], d["capabilities"]) for d in devices] == [
        ("nvidia", 1, ["gpu"])
    ]


def test_only_the_signer_receives_the_chain_key(services):
    mentions = {
        name
        for name, service in services.items()
        if "chain_private_key" in yaml.safe_dump(service).lower()
    }

    assert mentions == {"signer"}
    assert services["signer"]["secrets"] == ["chain_private_key"]
    assert services["signer"]["environment"]["CHAIN_PRIVATE_KEY_FILE"] == (
        "/run/secrets/chain_private_key"
    )


def test_every_long_running_service_has_a_healthcheck(services):
    long_running = [name for name, s in services.items() if s.get("restart") != "no"]
    without = [
        name for name in long_running if not services[name].get("healthcheck", {}).get("test")
    ]

    assert "migrate" not in long_running
    assert without == []


def test_each_worker_healthcheck_pings_its_own_node_name(services):
    for name in WORKERS:
        command = services[name]["command"]
        node_prefix = command[command.index("-n") + 1].split("@")[0]

        assert f"inspect ping -d {node_prefix}@$$HOSTNAME" in _healthcheck_command(services[name])


def test_the_web_healthcheck_asks_healthz_without_curl(services):
    command = _healthcheck_command(services["web"])

    assert "http://127.0.0.1:8000/healthz" in command
    assert "urllib" in command
    assert "curl" not in command


def test_app_services_wait_for_healthy_redis_and_postgres_and_finished_migrations(services):
    for name in APP_SERVICES:
        depends_on = services[name]["depends_on"]

        assert depends_on["redis"]["condition"] == "service_healthy", name
        if name != "flower":
            assert depends_on["postgres"]["condition"] == "service_healthy", name
            assert depends_on["migrate"]["condition"] == "service_completed_successfully", name


def test_app_services_share_one_environment_that_stays_offline(services):
    for name in (*APP_SERVICES, "migrate"):
        env = services[name]["environment"]

        assert env["HF_HUB_OFFLINE"] == "1", name
        assert env["TRANSFORMERS_OFFLINE"] == "1", name
        assert env["DJANGO_DEBUG"] == "0", name
        assert env["REDIS_URL"] == "redis://redis:6379/0", name
        assert env["DATABASE_URL"].startswith("postgres://"), name


def test_web_and_every_worker_share_the_media_and_models_volumes(services):
    for name in ("web", *WORKERS):
        volumes = services[name]["volumes"]

        assert "media:/data/media" in volumes, name
        assert "models:/data/models" in volumes, name


def test_the_local_chain_starts_only_with_the_dev_chain_profile(services):
    chain = services["chain"]

    assert chain["profiles"] == ["dev-chain"]
    assert chain["image"].startswith("ghcr.io/foundry-rs/foundry")
    assert "--state" in chain["command"]
