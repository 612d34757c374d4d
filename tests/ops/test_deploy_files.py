"""compose.yaml (PostgreSQL + Redis + workers; docker cannot run here, so it is checked as data) and
docs/deploy.md's list of environment variables, against what the code reads."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.conftest import ROOT

DEPLOY = (ROOT / "docs" / "deploy.md").read_text()


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_compose_runs_migrations_once_then_workers_on_postgres_and_redis() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "api"} <= services.keys()
    api, migrate = services["api"], services["migrate"]
    assert api["command"][:2] == ["levelup", "serve"] and "--workers" in api["command"]
    assert api["deploy"]["replicas"] >= 2
    assert migrate["command"] == ["levelup", "init"]
    assert api["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"]
    env = api["environment"]
    assert env == migrate["environment"]  # one block for both (a YAML merge): they see the same database
    assert re.match(r"postgresql://[^@]+@postgres:5432/", env["LEVELUP_DATABASE_URL"])
    assert env["LEVELUP_REDIS_URL"].startswith("redis://redis:6379/")
    assert env["PROMETHEUS_MULTIPROC_DIR"]


def test_compose_pool_fits_postgres_max_connections() -> None:
    services = compose()["services"]
    api = services["api"]
    workers = int(api["command"][api["command"].index("--workers") + 1])
    command = services["postgres"]["command"]
    max_connections = int(next(c.split("=")[1] for c in command if c.startswith("max_connections=")))
    per_process = int(api["environment"]["LEVELUP_DB_POOL"]) + 2  # the pool, the jobs' lock, the migration check
    assert api["deploy"]["replicas"] * workers * per_process < max_connections


def test_every_environment_variable_the_code_reads_is_in_the_deployment_guide() -> None:
    read = set()
    for path in (ROOT / "src" / "levelup").rglob("*.py"):
        source = path.read_text()
        read |= set(re.findall(r"\"((?:LEVELUP|PROMETHEUS)_[A-Z_]+)\"", source))
    assert {"LEVELUP_DATABASE_URL", "LEVELUP_REDIS_URL", "LEVELUP_LOG_FORMAT"} <= read
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", DEPLOY, flags=re.MULTILINE))
    assert read <= documented, sorted(read - documented)
    in_compose = set(compose()["x-levelup"]["environment"])
    assert in_compose <= documented
