"""The Kubernetes manifests of the archiver (deploy/kubernetes/archive), checked offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from strategyq.archive.db import Database
from strategyq.observability import HEALTH_PATH, READY_PATH
from strategyq.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE = ROOT / "deploy" / "kubernetes" / "archive"
K8S_VERSION = "1.30"


def load(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def manifests() -> list[Path]:
    return sorted(p for p in ARCHIVE.glob("*.yaml") if p.name != "kustomization.yaml")


def kind(name: str) -> dict[str, Any]:
    (found,) = [o for p in manifests() for o in load(p) if o["kind"] == name]
    return found


def container() -> dict[str, Any]:
    (c,) = kind("Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(c)


@pytest.mark.parametrize(
    "path",
    [*manifests(), ROOT / "deploy/kubernetes/examples/archive-secret.yaml"],
    ids=lambda p: p.name,
)
def test_manifest_validates_against_the_kubernetes_schema(path: Path) -> None:
    for obj in load(path):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_the_workers_image() -> None:
    (kustomization,) = load(ARCHIVE / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifests())
    (base,) = load(ROOT / "deploy/kubernetes/base/kustomization.yaml")
    assert kustomization["images"] == base["images"]


def test_runs_strategyq_archive_non_root_read_only_with_the_url_from_a_secret() -> None:
    pod = kind("Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    c = container()
    assert c["args"][0] == "archive"
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    env = {e["name"]: e for e in c["env"]}
    ref = env["STRATEGYQ_ARCHIVE_URL"]["valueFrom"]["secretKeyRef"]
    (secret,) = load(ROOT / "deploy/kubernetes/examples/archive-secret.yaml")
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    # The example's URL is one the archive accepts (a PostgreSQL one).
    assert Database(secret["stringData"][ref["key"]]).dialect == "postgresql"
    values = {k: v["value"] for k, v in env.items() if "value" in v}
    settings = Settings.from_env(values)
    assert settings.archive_retention_days == 365


def test_probes_and_scrape_hit_the_archivers_port_and_routes() -> None:
    c = container()
    args = c["args"]
    port = int(args[args.index("--metrics-port") + 1])
    assert args[args.index("--metrics-host") + 1] == "0.0.0.0"
    assert port == Settings.from_env({}).archive_port
    (declared,) = c["ports"]
    assert declared["containerPort"] == port
    assert c["readinessProbe"]["httpGet"]["path"] == READY_PATH
    assert c["livenessProbe"]["httpGet"]["path"] == HEALTH_PATH
    assert c["startupProbe"]["httpGet"]["path"] == HEALTH_PATH
    annotations = kind("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    svc = kind("Service")
    assert svc["spec"]["ports"][0]["targetPort"] == declared["name"]
    (monitor,) = load(ROOT / "deploy/kubernetes/components/monitoring/servicemonitor-archiver.yaml")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]


def test_network_policy_allows_redis_postgresql_and_dns_out_and_redis_admits_it() -> None:
    policy = kind("NetworkPolicy")["spec"]
    ports = sorted(p["port"] for rule in policy["egress"] for p in rule["ports"])
    assert ports == [53, 53, 5432, 6379]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9102}]
    labels = kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    redis_policies = load(ROOT / "deploy/kubernetes/components/redis/networkpolicy.yaml")
    admitted = [
        peer.get("podSelector", {}).get("matchLabels")
        for p in redis_policies
        for r in p["spec"].get("ingress", [])
        for peer in r.get("from", [])
    ]
    assert {"app": labels["app"]} in admitted
