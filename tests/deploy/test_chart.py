"""The Helm chart in deploy/helm/devstream, rendered by the real helm and checked offline.

`make tools` puts helm into .venv/bin and installs kubernetes-validate. Without them these
tests skip, except under CI=true, where a missing tool is a failure.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "devstream"
EXAMPLE = CHART / "values-example.yaml"
HELM = ROOT / ".venv" / "bin" / "helm"
KUBE_VERSION = "1.35"  # the schemas validated against; helm and kubectl come from kubectl-v35
OLDEST_KUBE = "1.27"  # Chart.yaml's kubeVersion floor (gRPC probes are GA from 1.27)
IN_CI = os.environ.get("CI") == "true"

RELEASE = "rel"
FERNET_KEY = Fernet.generate_key().decode()
# The least an install needs: a token, a Fernet key and a database.
MINIMAL = (
    "auth.apiToken=test-token",
    f"encryption.key={FERNET_KEY}",
    "postgresql.enabled=true",
)
EXTERNAL_DB = (
    "auth.apiToken=test-token",
    f"encryption.key={FERNET_KEY}",
    "database.external.url=postgresql://u:p@db.example.com:5432/dtm",
)
TLS = ("tls.enabled=true", "tls.existingSecret=plugin-tls")
PLUGIN_PACKAGES = {  # name in plugin.yaml -> module under plugins/
    "localfile": "localfile",
    "repo-scaffolding": "repo_scaffolding",
    "github-actions": "github_actions",
    "gitlab-ci": "gitlab_ci",
    "icla": "icla",
    "github": "github",
    "gitextractor": "gitextractor",
}
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def _missing(what: str, how: str) -> None:
    message = f"{what} is missing: run `make tools` ({how})"
    if IN_CI:
        pytest.fail(f"{message}; CI=true, so this is a failure, not a skip")
    pytest.skip(message)


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not os.access(HELM, os.X_OK):
        _missing(str(HELM.relative_to(ROOT)), "helm and kubectl unpacked from a PyPI wheel")
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    env.update(
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
        KUBECONFIG=str(home / "no-kubeconfig"),  # nothing here talks to a cluster
        NO_COLOR="1",
    )
    return env


@pytest.fixture(scope="session")
def kv() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        _missing("the kubernetes-validate package", "pip install kubernetes-validate")
    return kubernetes_validate


def _set_args(sets: Iterable[str]) -> list[str]:
    return [arg for s in sets for arg in ("--set", s)]


def _run_helm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HELM), *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


@functools.cache
def _template(
    env_items: tuple[tuple[str, str], ...],
    sets: tuple[str, ...],
    files: tuple[str, ...],
    release: str,
) -> tuple[int, str, str]:
    args = ["template", release, str(CHART), "--namespace", "ns", "--kube-version", KUBE_VERSION]
    for f in files:
        args += ["-f", f]
    proc = _run_helm(dict(env_items), *args, *_set_args(sets))
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="session")
def template(helm_env: dict[str, str]) -> Any:
    env_items = tuple(sorted(helm_env.items()))

    def run(*sets: str, files: Iterable[Path] = (), release: str = RELEASE, ok: bool = True) -> Any:
        rc, out, err = _template(env_items, tuple(sets), tuple(map(str, files)), release)
        if not ok:
            assert rc != 0, f"helm template succeeded, expected a failure:\n{out[:2000]}"
            return err
        assert rc == 0, f"helm template failed:\n{err}"
        return [d for d in yaml.safe_load_all(out) if d]

    return run


# -- helpers over rendered manifests -------------------------------------------------------


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def plugin_name(doc: dict[str, Any]) -> str | None:
    return doc["metadata"].get("labels", {}).get("devstream.dev/plugin")


def plugins_of(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {p: d for d in docs if d["kind"] == kind and (p := plugin_name(d))}


def core(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(docs, "Deployment")[f"{RELEASE}-devstream"]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    return c


def env_of(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(workload).get("env", [])}


def remote_plugins(docs: list[dict[str, Any]]) -> dict[str, str]:
    value = env_of(core(docs))["DTM_REMOTE_PLUGINS"]["value"]
    return dict(item.split("=", 1) for item in value.split(";") if item)


def image_tag(workload: dict[str, Any]) -> str:
    return container(workload)["image"].rsplit(":", 1)[1]


# -- lint -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        # Lint renders in "lint mode", where the chart's fail checks are reported, not fatal.
        pytest.param([], id="bare"),
        pytest.param(_set_args(MINIMAL), id="defaults+bundled-db"),
        pytest.param(_set_args(EXTERNAL_DB + TLS), id="external-db+tls"),
        pytest.param(["-f", str(EXAMPLE)], id="values-example"),
    ],
)
def test_helm_lint_is_clean(helm_env: dict[str, str], args: list[str]) -> None:
    proc = _run_helm(
        helm_env, "lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART), *args
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "[ERROR]" not in out and "[WARNING]" not in out, out
    assert "0 chart(s) failed" in out, out


# -- every manifest is valid Kubernetes -----------------------------------------------------

RENDERS = {
    "defaults+bundled-db": (MINIMAL, ()),
    "external-db+tls": (EXTERNAL_DB + TLS, ()),
    "values-example": ((), (EXAMPLE,)),
}


@pytest.mark.parametrize("version", [KUBE_VERSION, OLDEST_KUBE])
@pytest.mark.parametrize("render", list(RENDERS))
def test_every_manifest_validates_against_kubernetes_schemas(
    template: Any, kv: Any, render: str, version: str
) -> None:
    sets, files = RENDERS[render]
    docs = template(*sets, files=files)
    assert docs, "nothing rendered"
    checked = 0
    for doc in docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            continue  # no schema offline; see test_service_monitor_shape
        try:
            validated = kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            pytest.fail(f"{render}: {where} is invalid for {version} at {path}: {exc.message}")
        assert validated == version
        checked += 1
        name = doc["metadata"]["name"]
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), where
    assert checked >= 10


def test_service_monitor_shape(template: Any) -> None:
    docs = template(files=[EXAMPLE])
    (sm,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["name"] == f"{RELEASE}-devstream"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    svc = by_kind(docs, "Service")[f"{RELEASE}-devstream"]
    selector = sm["spec"]["selector"]["matchLabels"]
    assert selector.items() <= svc["metadata"]["labels"].items(), "selects no core Service"
    # ...and only the core's: plugin Services must not match.
    for name, other in by_kind(docs, "Service").items():
        if name != svc["metadata"]["name"]:
            assert not selector.items() <= other["metadata"]["labels"].items(), name
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["ns"]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert endpoint["authorization"]["credentials"] == {"name": "devstream-api", "key": "api-token"}
    assert "ServiceMonitor" not in {d["kind"] for d in template(*MINIMAL)}


# -- install-time failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        pytest.param(
            (f"encryption.key={FERNET_KEY}", "postgresql.enabled=true"),
            "auth: the REST API needs a bearer token (DTM_API_TOKEN)",
            id="no-api-token",
        ),
        pytest.param(
            ("auth.apiToken=t", "postgresql.enabled=true"),
            "encryption: connection secrets are encrypted with a Fernet key (DTM_SECRET_KEY), "
            "and there is none",
            id="no-encryption-key",
        ),
        pytest.param(
            ("auth.apiToken=t", "encryption.key=not-a-fernet-key", "postgresql.enabled=true"),
            "encryption.key is not a Fernet key",
            id="bad-encryption-key",
        ),
        pytest.param(
            ("auth.apiToken=t", f"encryption.key={FERNET_KEY}"),
            "database: no database",
            id="no-database",
        ),
        pytest.param(
            (*EXTERNAL_DB, "postgresql.enabled=true"),
            "database: both database.external.* and postgresql.enabled are set",
            id="two-databases",
        ),
        pytest.param(
            (*MINIMAL, "tls.enabled=true"),
            "tls: tls.enabled needs tls.existingSecret",
            id="tls-without-secret",
        ),
        pytest.param(
            (*MINIMAL, "plugins.gihub.enabled=true"),
            "plugins.gihub: unknown plugin (no module)",
            id="typo-in-plugin-name",
        ),
        pytest.param(
            (*MINIMAL, "plugins.github.autoscaling.enabled=true"),
            "plugins.github.autoscaling: a CPU target needs plugins.github.resources.requests.cpu",
            id="hpa-without-cpu-request",
        ),
        pytest.param(
            (*MINIMAL, *(f"plugins.{p}.enabled=false" for p in PLUGIN_PACKAGES)),
            "plugins: every plugin is disabled",
            id="no-plugin",
        ),
    ],
)
def test_install_fails_with_a_clear_message(
    template: Any, sets: tuple[str, ...], message: str
) -> None:
    err = template(*sets, ok=False)
    assert message in err, err


def test_existing_secrets_satisfy_the_requirements(template: Any) -> None:
    docs = template(
        "auth.existingSecret=api",
        "encryption.existingSecret=enc",
        "encryption.existingSecretKey=fernet",
        "database.external.existingSecret=db",
    )
    env = env_of(core(docs))
    assert env["DTM_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "api", "key": "api-token"}
    assert env["DTM_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "enc", "key": "fernet"}
    assert env["DTM_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "db",
        "key": "database-url",
    }
    assert "Secret" not in {d["kind"] for d in docs}, "nothing inline, so no chart Secret"


def test_inline_values_go_into_the_chart_secret(template: Any) -> None:
    import base64

    docs = template(*EXTERNAL_DB)
    secret = by_kind(docs, "Secret")[f"{RELEASE}-devstream"]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "api-token": "test-token",
        "secret-key": FERNET_KEY,
        "database-url": "postgresql://u:p@db.example.com:5432/dtm",
    }
    env = env_of(core(docs))
    for var, key in [
        ("DTM_API_TOKEN", "api-token"),
        ("DTM_SECRET_KEY", "secret-key"),
        ("DTM_DATABASE_URL", "database-url"),
    ]:
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": f"{RELEASE}-devstream", "key": key}
    # Pods roll when the Secret changes.
    annotations = core(docs)["spec"]["template"]["metadata"]["annotations"]
    other = template(*EXTERNAL_DB[1:], "auth.apiToken=another")
    assert (
        annotations["checksum/secret"]
        != (core(other)["spec"]["template"]["metadata"]["annotations"]["checksum/secret"])
    )


def test_bundled_postgresql(template: Any) -> None:
    docs = template(*MINIMAL)
    (sts,) = by_kind(docs, "StatefulSet").values()
    assert container(sts)["image"] == "postgres:16-alpine"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert f"{RELEASE}-devstream-postgresql" in by_kind(docs, "Secret")
    env = container(core(docs))["env"]
    names = [e["name"] for e in env]
    # $(VAR) expansion needs the password defined before the URL.
    assert names.index("DTM_DATABASE_PASSWORD") < names.index("DTM_DATABASE_URL")
    url = env[names.index("DTM_DATABASE_URL")]["value"]
    assert url == (
        f"postgresql://devstream:$(DTM_DATABASE_PASSWORD)@{RELEASE}-devstream-postgresql:5432/"
        "devstream"
    )
    assert "StatefulSet" not in {d["kind"] for d in template(*EXTERNAL_DB)}


# -- plugins -----------------------------------------------------------------------------------


def test_one_deployment_and_headless_service_per_enabled_plugin(template: Any) -> None:
    disabled = {"gitlab-ci", "icla", "localfile"}
    docs = template(*MINIMAL, *(f"plugins.{p}.enabled=false" for p in disabled))
    enabled = set(PLUGIN_PACKAGES) - disabled
    deployments = plugins_of(docs, "Deployment")
    services = plugins_of(docs, "Service")
    assert set(deployments) == enabled
    assert set(services) == enabled
    for name in enabled:
        svc, dep = services[name], deployments[name]
        assert svc["spec"]["clusterIP"] == "None", f"{name}: Service must be headless"
        assert [p["port"] for p in svc["spec"]["ports"]] == [7000]
        assert svc["spec"]["selector"].items() <= (
            dep["spec"]["template"]["metadata"]["labels"].items()
        )
        assert dep["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
        args = container(dep)["args"]
        assert args[:6] == [
            "python",
            "-m",
            f"plugins.{PLUGIN_PACKAGES[name]}",
            "--standalone",
            "--listen",
            "0.0.0.0:7000",
        ]
    # Selectors of different plugins never overlap.
    selectors = [tuple(sorted(s["spec"]["selector"].items())) for s in services.values()]
    assert len(set(selectors)) == len(selectors)


def test_remote_plugins_list_exactly_the_enabled_plugins(template: Any) -> None:
    docs = template(*MINIMAL)
    services = plugins_of(docs, "Service")
    assert remote_plugins(docs) == {
        name: f"dns:///{svc['metadata']['name']}:7000" for name, svc in services.items()
    }
    assert set(remote_plugins(docs)) == set(PLUGIN_PACKAGES)

    docs = template(*MINIMAL, "plugins.github.enabled=false", "plugins.localfile.enabled=false")
    assert set(remote_plugins(docs)) == set(PLUGIN_PACKAGES) - {"github", "localfile"}


def test_release_name_holding_the_chart_name_is_not_repeated(template: Any) -> None:
    docs = template(*MINIMAL, release="devstream")
    assert "devstream" in by_kind(docs, "Deployment")
    assert "devstream-github" in by_kind(docs, "Deployment")
    long_release = "a-very-long-release-name-that-is-fifty-three-chars-xx"
    docs = template(*MINIMAL, release=long_release)
    for doc in docs:
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]


def test_image_tag_override_changes_only_that_plugin(template: Any) -> None:
    before = template(*MINIMAL)
    after = template(*MINIMAL, "plugins.github.image.tag=9.9.9")
    b, a = plugins_of(before, "Deployment"), plugins_of(after, "Deployment")
    assert image_tag(a["github"]) == "9.9.9"
    assert image_tag(b["github"]) == "0.1.0"  # appVersion
    for name in set(b) - {"github"}:
        assert a[name] == b[name], f"{name} changed"
    assert core(after) == core(before)
    # ...and the global tag moves everyone else, not the pinned plugin.
    moved = template(*MINIMAL, "plugins.github.image.tag=9.9.9", "image.tag=1.0.0")
    tags = {n: image_tag(d) for n, d in plugins_of(moved, "Deployment").items()}
    assert tags.pop("github") == "9.9.9"
    assert set(tags.values()) == {"1.0.0"}
    assert image_tag(core(moved)) == "1.0.0"


def test_plugin_settings_override_defaults_key_by_key(template: Any) -> None:
    docs = template(
        *MINIMAL,
        "pluginDefaults.replicas=3",
        "plugins.icla.replicas=1",
        "pluginDefaults.resources.requests.cpu=100m",
        "plugins.github.resources.requests.memory=1Gi",
        "plugins.github.nodeSelector.pool=data",
    )
    deps = plugins_of(docs, "Deployment")
    assert deps["icla"]["spec"]["replicas"] == 1
    assert deps["github"]["spec"]["replicas"] == 3
    assert container(deps["github"])["resources"] == {"requests": {"cpu": "100m", "memory": "1Gi"}}
    assert container(deps["icla"])["resources"] == {"requests": {"cpu": "100m"}}
    assert deps["github"]["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "data"}
    assert "nodeSelector" not in deps["icla"]["spec"]["template"]["spec"]


def test_rolling_updates_keep_plugins_serving_and_pdbs_follow_replicas(template: Any) -> None:
    docs = template(*MINIMAL, "plugins.github.replicas=3")
    for name, dep in plugins_of(docs, "Deployment").items():
        strategy = dep["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, name
        assert strategy["rollingUpdate"]["maxSurge"] >= 1, name
    pdbs = plugins_of(docs, "PodDisruptionBudget")
    assert set(pdbs) == {"github"}, "a PDB only where more than one replica"
    assert (
        pdbs["github"]["spec"]["selector"]["matchLabels"]
        == (plugins_of(docs, "Deployment")["github"]["spec"]["selector"]["matchLabels"])
    )
    assert "HorizontalPodAutoscaler" not in {d["kind"] for d in docs}
    assert f"{RELEASE}-devstream" not in by_kind(docs, "PodDisruptionBudget")
    docs = template(*MINIMAL, "core.replicas=2")
    assert f"{RELEASE}-devstream" in by_kind(docs, "PodDisruptionBudget")


def test_example_turns_every_option_on(template: Any) -> None:
    docs = template(files=[EXAMPLE])
    kinds = {d["kind"] for d in docs}
    assert {
        "Ingress",
        "ServiceMonitor",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ServiceAccount",
    } <= kinds
    hpas = plugins_of(docs, "HorizontalPodAutoscaler")
    deps = plugins_of(docs, "Deployment")
    assert set(hpas) == set(deps) == set(PLUGIN_PACKAGES)
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": deps[name]["metadata"]["name"],
        }
        assert "replicas" not in deps[name]["spec"], f"{name}: the HPA owns replicas"
    assert set(plugins_of(docs, "PodDisruptionBudget")) == set(PLUGIN_PACKAGES)
    assert image_tag(deps["github"]) == "0.1.1"
    assert {image_tag(d) for n, d in deps.items() if n != "github"} == {"0.1.0"}
    # Every secret comes from an existing Secret in the example.
    assert "Secret" not in kinds
    ingress = next(iter(by_kind(docs, "Ingress").values()))
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{RELEASE}-devstream", "port": {"name": "http"}}


def test_network_policies_let_only_the_core_reach_plugins(template: Any) -> None:
    docs = template(*MINIMAL, "networkPolicy.enabled=true")
    policies = by_kind(docs, "NetworkPolicy")
    core_labels = core(docs)["spec"]["template"]["metadata"]["labels"]
    for name, dep in plugins_of(docs, "Deployment").items():
        policy = policies[dep["metadata"]["name"]]
        assert (
            policy["spec"]["podSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
        )
        (rule,) = policy["spec"]["ingress"]
        (peer,) = rule["from"]
        assert peer["podSelector"]["matchLabels"].items() <= core_labels.items(), name
    assert f"{RELEASE}-devstream-postgresql" in policies
    assert "NetworkPolicy" not in {d["kind"] for d in template(*MINIMAL)}


# -- pods: security, probes, TLS ---------------------------------------------------------------


@pytest.mark.parametrize("render", list(RENDERS))
def test_all_pods_are_non_root_with_a_read_only_root(template: Any, render: str) -> None:
    sets, files = RENDERS[render]
    workloads = [d for d in template(*sets, files=files) if d["kind"] in POD_KINDS]
    assert workloads
    for w in workloads:
        where = f"{w['kind']}/{w['metadata']['name']}"
        pod = w["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, where
        assert pod.get("automountServiceAccountToken") is False, where
        ours = w["metadata"]["labels"]["app.kubernetes.io/component"] != "postgresql"
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert sc.get("privileged", False) is False, where
            assert (sc.get("seccompProfile") or psc.get("seccompProfile")) == {
                "type": "RuntimeDefault"
            }, where
            uid = sc.get("runAsUser", psc.get("runAsUser"))
            assert uid and uid != 0, where
            if ours:
                assert uid == 10001, where
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert "/tmp" in mounts, f"{where}: no writable /tmp"
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], where


def test_core_probes_and_contract(template: Any) -> None:
    docs = template(*MINIMAL)
    c = container(core(docs))
    assert c["args"] == ["dtm", "serve", "--listen", "0.0.0.0:8080"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    svc = by_kind(docs, "Service")[f"{RELEASE}-devstream"]
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    assert (
        svc["spec"]["selector"].items()
        <= core(docs)["spec"]["template"]["metadata"]["labels"].items()
    )
    assert {"DTM_API_TOKEN", "DTM_SECRET_KEY", "DTM_DATABASE_URL", "DTM_REMOTE_PLUGINS"} <= set(
        env_of(core(docs))
    )


def test_plugin_probes_use_grpc_health_without_tls(template: Any) -> None:
    for name, dep in plugins_of(template(*MINIMAL), "Deployment").items():
        c = container(dep)
        for probe in ("livenessProbe", "readinessProbe"):
            assert c[probe]["grpc"] == {"port": 7000, "service": "plugin"}, name
            assert "tcpSocket" not in c[probe]


def test_tls_flags_and_mounts_only_when_enabled(template: Any) -> None:
    tls_args = [
        "--tls-cert",
        "/tls/tls.crt",
        "--tls-key",
        "/tls/tls.key",
        "--tls-client-ca",
        "/tls/ca.crt",
    ]
    tls_env = {
        "DTM_REMOTE_TLS_CA",
        "DTM_REMOTE_TLS_CERT",
        "DTM_REMOTE_TLS_KEY",
        "DTM_REMOTE_TLS_SERVER_NAME",
    }

    def tls_volume(w: dict[str, Any]) -> str | None:
        mounts = {m["mountPath"]: m for m in container(w)["volumeMounts"]}
        if "/tls" not in mounts:
            return None
        assert mounts["/tls"]["readOnly"] is True
        volumes = {v["name"]: v for v in w["spec"]["template"]["spec"]["volumes"]}
        return str(volumes[mounts["/tls"]["name"]]["secret"]["secretName"])

    plain = template(*MINIMAL)
    for name, dep in plugins_of(plain, "Deployment").items():
        assert not set(tls_args) & set(container(dep)["args"]), name
        assert tls_volume(dep) is None, name
    assert not tls_env & set(env_of(core(plain)))
    assert tls_volume(core(plain)) is None

    docs = template(*MINIMAL, *TLS, "tls.serverName=plugins.internal")
    for name, dep in plugins_of(docs, "Deployment").items():
        args = container(dep)["args"]
        assert args[6:12] == tls_args, name
        assert tls_volume(dep) == "plugin-tls", name
        for probe in ("livenessProbe", "readinessProbe"):
            assert container(dep)[probe]["tcpSocket"] == {"port": "grpc"}, name
            assert "grpc" not in container(dep)[probe]
    env = env_of(core(docs))
    assert tls_env <= set(env)
    assert {k: env[k]["value"] for k in tls_env} == {
        "DTM_REMOTE_TLS_CA": "/tls/ca.crt",
        "DTM_REMOTE_TLS_CERT": "/tls/tls.crt",
        "DTM_REMOTE_TLS_KEY": "/tls/tls.key",
        "DTM_REMOTE_TLS_SERVER_NAME": "plugins.internal",
    }
    assert tls_volume(core(docs)) == "plugin-tls"
    # The core may present a client certificate of its own.
    docs = template(*MINIMAL, *TLS, "tls.clientExistingSecret=core-client")
    assert tls_volume(core(docs)) == "core-client"
    assert {tls_volume(d) for d in plugins_of(docs, "Deployment").values()} == {"plugin-tls"}


def test_notes_tell_how_to_reach_the_api_and_where_logs_and_metrics_are(
    helm_env: dict[str, str],
) -> None:
    proc = _run_helm(
        helm_env,
        "install",
        RELEASE,
        str(CHART),
        "--dry-run=client",
        "--namespace",
        "ns",
        *_set_args(MINIMAL),
    )
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert f"kubectl port-forward -n ns svc/{RELEASE}-devstream 8080:8080" in notes
    assert "/api/v1" in notes and "Authorization: Bearer" in notes
    assert "kubectl logs" in notes and "/metrics" in notes
    assert "EVALUATION ONLY" in notes


# -- static checks (no helm needed) ---------------------------------------------------------


def _values() -> dict[str, Any]:
    return dict(yaml.safe_load((CHART / "values.yaml").read_text()))


def test_chart_plugins_match_the_plugin_packages() -> None:
    """Every plugin package in plugins/ is in the chart under its manifest name, and back."""
    found = {}
    for manifest in sorted((ROOT / "plugins").glob("*/plugin.yaml")):
        if (manifest.parent / "__main__.py").exists():
            found[yaml.safe_load(manifest.read_text())["name"]] = manifest.parent.name
    chart = {name: entry["module"] for name, entry in _values()["plugins"].items()}
    assert chart == found
    assert chart == PLUGIN_PACKAGES


def _leaf_paths(value: Any, prefix: str = "") -> Iterable[str]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaf_paths(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix


def test_every_value_is_commented_and_in_the_readme_table() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    documented: set[str] = set()
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z0-9_.-]+):", line)
        if not m:
            continue
        indent, key = len(m.group(1)), m.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        j = i - 1  # the comment block right above the key
        while j >= 0 and lines[j].strip().startswith("#"):
            if lines[j].strip().startswith("# --"):
                documented.add(".".join(k for _, k in stack))
                break
            j -= 1
    readme = (CHART / "README.md").read_text()
    for path in documented:
        assert f"| `{path}` |" in readme, f"{path} is missing from the README's values table"
    for leaf in _leaf_paths(_values()):
        parts = leaf.split(".")
        covered = any(".".join(parts[:n]) in documented for n in range(len(parts), 0, -1))
        assert covered, f"values.yaml: {leaf} has no '# --' comment on it or a parent"


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == "0.1.0"
    assert chart["name"] == "devstream"
    assert chart["kubeVersion"] == f">={OLDEST_KUBE}.0-0"
    for name in ("_helpers.tpl", "NOTES.txt"):
        assert (CHART / "templates" / name).is_file()
