"""The Kubernetes manifests of ``strategyq serve`` (deploy/kubernetes/serve), checked offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from strategyq.api.config import ApiConfig, parse_tokens
from strategyq.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SERVE = ROOT / "deploy" / "kubernetes" / "serve"
K8S_VERSION = "1.30"


def load(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def manifests() -> list[Path]:
    return sorted(p for p in SERVE.glob("*.yaml") if p.name != "kustomization.yaml")


def kind(name: str) -> dict[str, Any]:
    (found,) = [o for p in manifests() for o in load(p) if o["kind"] == name]
    return found


def container() -> dict[str, Any]:
    (c,) = kind("Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(c)


@pytest.mark.parametrize(
    "path",
    [*manifests(), ROOT / "deploy/kubernetes/examples/api-secret.yaml"],
    ids=lambda p: p.name,
)
def test_manifest_validates_against_the_kubernetes_schema(path: Path) -> None:
    for obj in load(path):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = load(SERVE / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifests())


def test_pod_runs_non_root_read_only_without_a_service_account_token() -> None:
    pod = kind("Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = container()["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]


def test_probes_hit_the_apps_health_routes_on_its_port() -> None:
    c = container()
    args = c["args"]
    port = int(args[args.index("--port") + 1])
    (declared,) = c["ports"]
    assert declared["containerPort"] == port
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert kind("Service")["spec"]["ports"][0]["targetPort"] == declared["name"]
    (rule,) = kind("NetworkPolicy")["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": port}]


def test_public_bind_has_tokens_from_a_secret_and_the_example_secret_parses() -> None:
    c = container()
    env = {e["name"]: e for e in c["env"]}
    assert env["STRATEGYQ_API_TOKENS"]["valueFrom"]["secretKeyRef"]["name"] == "strategyq-api"
    host = c["args"][c["args"].index("--host") + 1]
    with pytest.raises(ConfigError, match="needs tokens"):
        ApiConfig(host=host).check()
    (secret,) = load(ROOT / "deploy/kubernetes/examples/api-secret.yaml")
    tokens = parse_tokens(secret["stringData"]["tokens"])
    assert {t.scope.value for t in tokens} == {"read", "write"}
    ApiConfig(host=host, tokens=tokens).check()


def test_network_policy_allows_only_redis_and_dns_out() -> None:
    egress = kind("NetworkPolicy")["spec"]["egress"]
    ports = sorted(p["port"] for rule in egress for p in rule["ports"])
    assert ports == [53, 53, 6379]


def test_same_image_tag_as_the_workers_and_redis_admits_the_api() -> None:
    (serve,) = load(SERVE / "kustomization.yaml")
    (base,) = load(ROOT / "deploy/kubernetes/base/kustomization.yaml")
    assert serve["images"] == base["images"]
    labels = kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    redis_policies = load(ROOT / "deploy/kubernetes/components/redis/networkpolicy.yaml")
    admitted = [
        peer.get("podSelector", {}).get("matchLabels")
        for policy in redis_policies
        for rule in policy["spec"].get("ingress", [])
        for peer in rule.get("from", [])
    ]
    assert {"app": labels["app"]} in admitted
