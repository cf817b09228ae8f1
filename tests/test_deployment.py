"""The production files: docker-compose.yml validates and has the services the design names;
the Dockerfile installs the pinned torch from a configurable index, as a non-root user.

``docker-compose config`` needs no Docker engine, only the ``docker-compose`` binary (Debian's
package, 1.29) or the ``docker compose`` v2 plugin. Without one the compose tests skip, except in
CI (``CI=true``), where they fail.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, require_service

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

# What .env must provide (the file refuses to start without them: no default secrets).
REQUIRED_ENV = {
    "DJANGO_SECRET_KEY": "test-secret-key",
    "DJANGO_ALLOWED_HOSTS": "moderation.example.com",
    "DATABASE_URL": "postgres://moderation:pw@postgres:5432/moderation",
    "POSTGRES_PASSWORD": "pw",
}
# Variables the file reads with a default; removed so the developer's shell doesn't change them.
OPTIONAL_ENV = ("CELERY_BROKER_URL", "MODERATION_PROFILE", "MODERATION_DEVICE", "MODERATION_IMAGE",
                "MODERATION_GPU_IMAGE", "TORCH_INDEX_URL", "TORCH_CUDA_INDEX_URL", "WEB_PORT",
                "DJANGO_CSRF_TRUSTED_ORIGINS", "DJANGO_SECURE_SSL_REDIRECT", "COMPOSE_FILE",
                "COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME")
DESIGN_SERVICES = {"web", "worker-gpu0", "worker-default", "beat", "postgres", "redis"}


def _compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    require_service("docker-compose is not installed (apt-get install docker-compose); "
                    "`docker-compose config` validates docker-compose.yml without a Docker engine")
    raise AssertionError("unreachable")


def _compose(args: list[str], *, tmp_path: Path, env: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess[str]:
    # An empty --env-file: a developer's .env next to the compose file must not change the result.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    base = {k: v for k, v in os.environ.items() if k not in REQUIRED_ENV and k not in OPTIONAL_ENV}
    return subprocess.run(
        [*_compose_command(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *args],
        cwd=ROOT, env={**base, **(REQUIRED_ENV if env is None else env)},
        capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("compose")
    quiet = _compose(["config", "-q"], tmp_path=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    full = _compose(["config"], tmp_path=tmp_path)
    assert full.returncode == 0, full.stderr
    return yaml.safe_load(full.stdout)


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    return command.split() if isinstance(command, str) else list(command or [])


def _option(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _volume_targets(service: dict[str, Any]) -> dict[str, str]:
    """Mount target -> named volume (or host path) of a service's volumes, in either syntax."""
    targets = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        targets[target] = source
    return targets


def test_compose_has_every_service_of_the_design(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    assert DESIGN_SERVICES <= set(services)
    assert "migrate" in services, "migrations must run once, before web and the workers"


def test_compose_gpu_worker_reserves_one_nvidia_gpu_and_runs_solo(compose_config: dict[str, Any]) -> None:
    gpu = compose_config["services"]["worker-gpu0"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    assert devices[0]["driver"] == "nvidia"
    assert [str(d) for d in devices[0]["device_ids"]] == ["0"]
    assert "gpu" in devices[0]["capabilities"]

    command = _command(gpu)
    assert command[:4] == ["celery", "-A", "workers", "worker"]
    assert _option(command, "-P") == "solo"
    assert _option(command, "-c") == "1"
    assert _option(command, "-Q") == "gpu"
    assert _option(command, "-n").startswith("gpu0@")

    env = _env(gpu)
    assert env["MODERATION_DEVICE"] == "cuda"
    assert env["MODERATION_PROFILE"] == "large"
    # The model cache survives container restarts.
    hf_home = env["HF_HOME"]
    mounts = _volume_targets(gpu)
    assert any(hf_home == target or hf_home.startswith(target.rstrip("/") + "/") for target in mounts), (
        f"HF_HOME={hf_home} is not on a volume: {mounts}")


def test_compose_web_runs_gunicorn_with_production_settings(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    web = services["web"]
    command = _command(web)
    assert command[0] == "gunicorn"
    assert any(arg.startswith("demo.wsgi") for arg in command)
    # The image copies demo/, so the config the command names is this repository's file.
    config = ROOT / command[command.index("--config") + 1]
    assert config.is_file() and 'worker_class = "gthread"' in config.read_text()
    env = _env(web)
    assert env["DJANGO_SETTINGS_MODULE"] == "demo.settings.production"
    for name in ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL", "CELERY_BROKER_URL",
                 "MODERATION_PROFILE", "MODERATION_DEVICE"):
        assert name in env, name
    assert env["DJANGO_SECRET_KEY"] == REQUIRED_ENV["DJANGO_SECRET_KEY"]
    assert "healthz" in " ".join(_command({"command": web["healthcheck"]["test"]}))

    migrate = _command(services["migrate"])
    assert "migrate" in migrate
    for name in ("web", "worker-gpu0", "worker-default", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert _env(services[name])["DJANGO_SETTINGS_MODULE"] == "demo.settings.production", name


def test_compose_media_volume_is_shared_by_web_and_workers(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    media = {}
    for name in ("web", "worker-gpu0", "worker-default"):
        root = _env(services[name])["MODERATION_MEDIA_ROOT"]
        media[name] = _volume_targets(services[name]).get(root)
        assert media[name], f"{name}: MODERATION_MEDIA_ROOT={root} is not a volume"
    assert len(set(media.values())) == 1, media
    assert set(media.values()) <= set(compose_config.get("volumes") or {})


def test_compose_celery_roles(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    default = _command(services["worker-default"])
    assert default[:4] == ["celery", "-A", "workers", "worker"]
    assert _option(default, "-Q") == "default"
    assert _command(services["beat"])[:4] == ["celery", "-A", "workers", "beat"]


def test_compose_services_have_healthchecks(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    for name in ("web", "postgres", "redis"):
        assert services[name].get("healthcheck", {}).get("test"), name
    assert "pgvector" in services["postgres"]["image"]
    assert "pg_isready" in " ".join(_command({"command": services["postgres"]["healthcheck"]["test"]}))
    assert services["redis"]["image"].startswith("redis:7")
    assert "ping" in _command({"command": services["redis"]["healthcheck"]["test"]})
    for name in ("postgres", "redis"):
        assert _volume_targets(services[name]), f"{name} keeps its data on a volume"


def test_compose_refuses_to_start_without_the_secret_key(tmp_path: Path) -> None:
    env = {k: v for k, v in REQUIRED_ENV.items() if k != "DJANGO_SECRET_KEY"}
    result = _compose(["config", "-q"], tmp_path=tmp_path, env=env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_compose_adds_gpus_by_copying_the_worker() -> None:
    # The recipe for more GPUs is documented next to the service.
    text = COMPOSE_FILE.read_text()
    assert "worker-gpu1" in text and '["1"]' in text


# The Dockerfile can't be built here (no Docker engine); these check what the design requires of it.

def test_dockerfile_installs_the_pinned_torch_from_a_configurable_index() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM \S*python:3\.11-slim|^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cpu$", text, re.M)
    assert "--index-url \"$TORCH_INDEX_URL\"" in text
    # The Dockerfile takes torch's pin from requirements.txt: exactly one line, an exact pin.
    pins = [line for line in (ROOT / "requirements.txt").read_text().splitlines()
            if re.match(r"torch\s*[=<>~!]", line)]
    assert pins == ["torch==2.13.0"], pins


def test_dockerfile_runs_as_non_root_without_baked_secrets() -> None:
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "pip install --no-deps" in text
    assert "collectstatic" in text
    # Instructions with their continuation lines joined; ENV and ARG values end up in the image.
    instructions = re.sub(r"\\\n", " ", text).splitlines()
    baked = [line for line in instructions if re.match(r"(ENV|ARG)\s", line)]
    assert baked
    for secret in ("SECRET_KEY", "PASSWORD", "DATABASE_URL", "TOKEN"):
        assert not any(secret in line for line in baked), f"{secret} set in ENV/ARG"


def test_dockerignore_keeps_the_context_small_and_secret_free() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "var", ".env", "tests"} <= ignored
    # What the Dockerfile copies must stay in the context.
    for name in ("requirements.txt", "pyproject.toml", "README.md", "manage.py", "demo", "moderation",
                 "vlm_engine", "workers"):
        assert name not in ignored, name
