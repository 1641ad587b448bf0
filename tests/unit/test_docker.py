"""docker/: the compose file is a valid Compose file (`docker compose config -q` where the
compose plugin is installed, the Compose JSON schema always), images are pinned by digest,
workers have resource limits, and the application uses its own S3 user, not MinIO's root."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT

DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
# The Compose specification's JSON schema as docker compose itself validates with: the file
# schema/compose-spec.json of github.com/compose-spec/compose-go (Apache-2.0), commit
# e70e961c3a3acebf0800b882f1afb3dbf1fb74a2 (v2.13.0-6), copied unchanged.
COMPOSE_SCHEMA = DOCKER / "compose-spec.json"
DIGEST = re.compile(r"^[a-z0-9][a-z0-9./_-]*(:[A-Za-z0-9._-]+)?@sha256:[0-9a-f]{64}$")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME and $$.
VARIABLE = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?])(?P<argument>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(node, variables: dict[str, str]):
    """node with every ${...} replaced as compose does; a missing ${NAME:?error} raises."""
    if isinstance(node, dict):
        return {key: interpolate(value, variables) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, variables) for value in node]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        operator, argument = match.group("operator"), match.group("argument")
        value = variables.get(name)
        unset = value is None or (value == "" and operator and operator.startswith(":"))
        if unset and operator and operator.endswith("?"):
            raise ValueError(f"required variable {name} is missing: {argument}")
        if unset and operator and operator.endswith("-"):
            return argument
        return value or ""

    return VARIABLE.sub(replace, node)


@pytest.fixture(scope="module")
def compose() -> dict:
    """The compose file as `docker compose config` sees it with docker/.env.example."""
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), env_example())


def test_the_compose_file_follows_the_compose_schema(compose):
    import jsonschema

    schema = json.loads(COMPOSE_SCHEMA.read_text())
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(compose), key=lambda e: e.path
    )
    assert not errors, "\n".join(
        f"{'/'.join(map(str, error.path))}: {error.message}" for error in errors
    )


def test_docker_compose_config_accepts_the_file_where_the_plugin_is_installed():
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "compose", "version"], capture_output=True).returncode
    ):
        pytest.skip("no `docker compose` here; the schema test above checks the file")
    result = subprocess.run(
        [
            docker,
            "compose",
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(ENV_EXAMPLE),
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_a_missing_required_setting_is_named(compose):
    variables = {
        key: value for key, value in env_example().items() if key != "PMATCH_S3_SECRET_KEY"
    }
    with pytest.raises(ValueError, match="PMATCH_S3_SECRET_KEY"):
        interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), variables)


def test_every_pulled_image_is_pinned_by_digest(compose):
    pulled = {
        name: service["image"]
        for name, service in compose["services"].items()
        if "build" not in service
    }
    assert pulled, "no service pulls an image?"
    unpinned = {name: image for name, image in pulled.items() if not DIGEST.match(image)}
    assert not unpinned, f"images not pinned by digest (name:tag@sha256:<64 hex>): {unpinned}"


def test_the_built_image_starts_from_a_digest_of_the_locked_airflow():
    """The Dockerfile's only external base comes from AIRFLOW_BASE_IMAGE, which compose must
    be given; .env.example holds its form, with the digest to fill in (it cannot be looked up
    without a registry), and the Airflow version of the lock file."""
    bases = re.findall(r"^FROM\s+(\S+)", (DOCKER / "Dockerfile").read_text(), re.MULTILINE)
    external = [base for base in bases if base not in ("dependencies",)]
    assert external == ["${AIRFLOW_BASE_IMAGE}"], bases
    build_args = yaml.safe_load(COMPOSE_FILE.read_text())["x-airflow-common"]["build"]["args"]
    assert build_args["AIRFLOW_BASE_IMAGE"].startswith("${AIRFLOW_BASE_IMAGE:?")
    airflow = re.search(
        r"^apache-airflow==(\S+)", (ROOT / "requirements/lock.txt").read_text(), re.M
    )
    image = env_example()["AIRFLOW_BASE_IMAGE"]
    name, _, digest = image.partition("@sha256:")
    assert name == f"apache/airflow:{airflow.group(1)}-python3.11", image
    assert re.fullmatch(r"[0-9a-f]{64}", digest) or digest.startswith("change-me"), image


def test_workers_have_cpu_and_memory_limits(compose):
    limits = compose["services"]["airflow-worker"]["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0
    assert re.fullmatch(r"\d+(\.\d+)?[kmg]b?", str(limits["memory"]).lower()), limits


def test_the_application_uses_its_own_s3_user_created_with_a_bucket_policy(compose):
    variables = env_example()
    services = compose["services"]
    init = "\n".join(services["minio-init"]["command"])
    for step in ("mc admin user add", "mc admin policy create", "mc admin policy attach"):
        assert step in init, step
    policy = re.search(r"<<POLICY\n(.*?)\nPOLICY", init, re.S).group(1)
    bucket = json.loads(policy.replace("$PMATCH_S3_BUCKET", "pmatch"))
    resources = {each for statement in bucket["Statement"] for each in statement["Resource"]}
    assert resources == {"arn:aws:s3:::pmatch", "arn:aws:s3:::pmatch/*"}
    root_secrets = {variables["MINIO_ROOT_USER"], variables["MINIO_ROOT_PASSWORD"]}
    for name, service in services.items():
        environment = service.get("environment") or {}
        if name.startswith(("airflow", "flower")):
            assert environment["AWS_ACCESS_KEY_ID"] == variables["PMATCH_S3_ACCESS_KEY"], name
            assert not root_secrets & set(map(str, environment.values())), name
            connection = json.loads(environment["AIRFLOW_CONN_PMATCH_S3"])
            assert connection["login"] == variables["PMATCH_S3_ACCESS_KEY"]
            assert connection["extra"]["endpoint_url"] == "http://minio:9000"


def test_no_folder_is_shared_between_the_airflow_containers(compose):
    """Tasks hand data over through S3 (pmatch.run_tasks): no Airflow container mounts a
    volume at the project or the runs' workspaces, and workers keep runs in a folder of
    their own."""
    environment = compose["services"]["airflow-worker"]["environment"]
    project, runs = environment["PMATCH_PROJECT_DIR"], environment["PMATCH_RUNS_DIR"]
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            target = volume.split(":")[1] if isinstance(volume, str) else volume["target"]
            assert not project.startswith(target) and not runs.startswith(target), (name, volume)
    assert "pmatch-workspace" not in compose.get("volumes", {})
