"""infra/compose.yaml holds together without a Docker engine: images, ports, variables,
and the addresses the services and the documentation give each other."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
# ${NAME}, ${NAME:-default}, ${NAME-default}; "$${" is a literal dollar for the container.
VARIABLE = re.compile(r"(?<!\$)\$\{(\w+)(?::?-([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((INFRA / "compose.yaml").read_text()))


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    values = {}
    for line in (INFRA / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _expand(text: str) -> str:
    """``text`` with every variable replaced by its default."""
    return VARIABLE.sub(lambda match: match.group(2) or "", text)


def _ports(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(published, container) of every port of ``service``."""
    pairs = []
    for entry in service.get("ports", []):
        host, _, container = _expand(entry).rpartition(":")
        pairs.append((int(host), int(container)))
    return pairs


_TOKEN = r"(\$\{[^}]*\}|[^:@/$]+)"
_DATABASE_URL = re.compile(rf"^(?P<scheme>[\w+]+)://{_TOKEN}:{_TOKEN}@{_TOKEN}:(\d+)/{_TOKEN}$")


def _database(url: str) -> dict[str, str]:
    """The parts of ``scheme://user:password@host:port/name``, variables unexpanded."""
    match = _DATABASE_URL.match(url)
    assert match, url
    keys = ("scheme", "user", "password", "host", "port", "name")
    return dict(zip(keys, match.groups(), strict=True))


def test_every_service_has_an_image_and_the_expected_ones_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    expected = {"postgres", "minio", "minio-init", "mlflow", "prefect", "dask-scheduler"}
    assert expected <= set(services)
    for name, service in services.items():
        assert isinstance(service.get("image"), str) and service["image"], name
        assert set(service.get("depends_on", [])) <= set(services), name


def test_commands_and_environments_are_strings(compose: dict[str, Any]) -> None:
    """YAML turns bare 1, true or 5000 into numbers and booleans, which compose refuses."""
    for name, service in compose["services"].items():
        command = service.get("command", [])
        if isinstance(command, list):
            assert all(isinstance(part, str) for part in command), name
        for key, value in service.get("environment", {}).items():
            assert isinstance(value, str), (name, key, value)
        assert isinstance(service.get("restart", ""), str), name


def test_published_ports_are_unique(compose: dict[str, Any]) -> None:
    published = [host for s in compose["services"].values() for host, _ in _ports(s)]
    assert published and len(published) == len(set(published))


def test_every_variable_is_in_env_example_with_the_same_default(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    text = (INFRA / "compose.yaml").read_text()
    used = {match.group(1): match.group(2) or "" for match in VARIABLE.finditer(text)}
    assert used
    assert set(used) <= set(env_example), sorted(set(used) - set(env_example))
    for name, default in used.items():
        assert env_example[name] == default, name
    for match in VARIABLE.finditer(text):
        assert (match.group(2) or "") == used[match.group(1)], f"two defaults for {match[1]}"


def test_mlflow_uses_the_postgres_service_and_the_minio_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    command = services["mlflow"]["command"]
    backend = _database(command[command.index("--backend-store-uri") + 1])
    postgres = services["postgres"]["environment"]
    assert backend["scheme"] == "postgresql"
    assert (backend["host"], backend["port"]) == ("postgres", "5432")
    assert backend["user"] == postgres["POSTGRES_USER"]
    assert backend["password"] == postgres["POSTGRES_PASSWORD"]
    assert backend["name"] == postgres["POSTGRES_DB"]
    assert set(services["mlflow"]["depends_on"]) >= {"postgres", "minio-init"}

    endpoint = urlparse(services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"])
    assert endpoint.hostname == "minio"
    minio_command = services["minio"]["command"]
    assert minio_command[minio_command.index("--address") + 1] == f":{endpoint.port}"
    assert endpoint.port in [container for _, container in _ports(services["minio"])]
    credentials = services["mlflow"]["environment"]
    minio = services["minio"]["environment"]
    assert credentials["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert credentials["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    bucket = urlparse(_expand(command[command.index("--artifacts-destination") + 1])).hostname
    init = services["minio-init"]["environment"]
    assert bucket == _expand(init["MLFLOW_BUCKET"])
    assert "5000" in command and [c for _, c in _ports(services["mlflow"])] == [5000]


def test_prefect_and_the_dask_workers_use_their_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    database = _database(services["prefect"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"])
    prefect_db = services["prefect-db"]["environment"]
    assert (database["host"], database["port"]) == ("prefect-db", "5432")
    for part, variable in (("user", "USER"), ("password", "PASSWORD"), ("name", "DB")):
        assert database[part] == prefect_db[f"POSTGRES_{variable}"], part
    worker = services["dask-worker"]
    assert "tcp://dask-scheduler:8786" in worker["command"]
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect:4200/api"
    assert worker["environment"]["OMP_NUM_THREADS"] == "1"


def test_the_readme_gives_the_published_addresses(compose: dict[str, Any]) -> None:
    readme = (INFRA / "README.md").read_text()
    section = readme[readme.index("## Shared MLflow") : readme.index("## Dask beyond")]
    services = compose["services"]

    def published(service: str, container: int) -> int:
        return next(h for h, c in _ports(services[service]) if c == container)

    expected = {
        "MLFLOW_TRACKING_URI=http://localhost:{}": published("mlflow", 5000),
        "PREFECT_API_URL=http://localhost:{}/api": published("prefect", 4200),
        "DNDX_DASK_ADDRESS=tcp://localhost:{}": published("dask-scheduler", 8786),
        "Dask dashboard | http://localhost:{}": published("dask-scheduler", 8787),
        "MinIO S3 API | http://localhost:{}": published("minio", 9000),
        "MinIO console | http://localhost:{}": published("minio", 9001),
    }
    for template, port in expected.items():
        assert template.format(port) in section, template
    all_published = {h for s in services.values() for h, _ in _ports(s)}
    for port in re.findall(r"localhost:(\d+)", section):
        assert int(port) in all_published, port
