"""The production deployment (infra/k8s): the overlay renders offline, every object is valid
against the Kubernetes schemas (kubernetes-validate), every setting the code reads reaches every
process, probes and metrics point at ports the containers expose, and the dependencies' manifests
carry what Grantflow needs (topics, search attributes, databases)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from infra.k8s.render import UnsupportedKustomization, render
from services.common.config import Settings
from services.common.kafka.topics import PARTITIONS, all_topics
from services.common.migrate import SERVICES
from workflows.contracts import SEARCH_ATTRIBUTES

K8S = Path(__file__).resolve().parents[2] / "infra" / "k8s"
OVERLAY = K8S / "overlays" / "production"
# The oldest Kubernetes the manifests are for (native gRPC probes are GA since 1.27), and the
# newest the schemas know.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())

# Settings whose default is right in production, or that production does not use. Every other
# field of Settings must be given to every process by the ConfigMap or the Secret: a new field
# fails this test until it is given a production value or listed here with its reason.
SAFE_DEFAULTS = {
    "data_dir": "only locates SQLite files, which the production profile refuses",
    "temporal_ui_port": "the embedded Temporal dev server's Web UI",
    "sqlite_synchronous": "SQLite only",
    "treasury_failure_rate": "fault injection of the simulated treasury: 0",
    "treasury_timeout_rate": "fault injection of the simulated treasury: 0",
    "treasury_seed": "randomness of the simulated treasury's fault injection",
    "treasury_rejected_payees": "fault injection of the simulated treasury: none",
    "treasury_settle_delay_rate": "fault injection of the simulated treasury: 0",
    "treasury_settle_delay_s": "fault injection of the simulated treasury (unused at rate 0)",
    "treasury_return_rate": "fault injection of the simulated treasury: 0",
    "treasury_return_delay_s": "fault injection of the simulated treasury (unused at rate 0)",
    "treasury_returned_payees": "fault injection of the simulated treasury: none",
    "payment_requires_account": "true: production pays only confirmed receiving accounts",
    "notice_period_seconds": "demo timer override: the production profile requires it unset",
    "supplement_period_seconds": "demo timer override: the production profile requires it unset",
    "review_period_seconds": "demo timer override: the production profile requires it unset",
    "stack_metrics_port": "the embedded stack's first metrics port; each pod uses METRICS_PORT",
    "log_json": "superseded by LOG_FORMAT, which the ConfigMap sets",
    "smtp_password": "a secret only the applications service reads: an optional key of "
    "grantflow-secrets on its Deployment (empty: the relay needs no login)",
    "sms_gateway_token": "a secret only the applications service reads: an optional key of "
    "grantflow-secrets on its Deployment",
    "console_session_secret": "a secret only the console reads: a key of grantflow-secrets on "
    "its Deployment",
}
# ConfigMap keys read by something other than Settings.
NOT_SETTINGS = {"PYTHONUNBUFFERED"}
METRICS_PORT = 9464


def env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else field.upper()


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render(OVERLAY)


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def config_map(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = of_kind(objects, "ConfigMap")
    return found


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec["containers"]]


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return of_kind(objects, "Deployment") + of_kind(objects, "Job")


def environment(container: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, Any]:
    """What the container's environment holds: ConfigMap values, then its own env entries
    (a secretKeyRef stands for its key)."""
    config = config_map(objects)
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"] == config["metadata"]["name"]
        env.update(config["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            env[variable["name"]] = variable["valueFrom"]["secretKeyRef"]
    return env


def test_every_rendered_object_is_valid_against_the_kubernetes_schemas(
    rendered: list[dict[str, Any]],
) -> None:
    kinds = {o["kind"] for o in rendered}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "ConfigMap",
        "NetworkPolicy",
        "ServiceAccount",
        "Namespace",
    } <= kinds
    for version in KUBERNETES_VERSIONS:
        for obj in rendered:
            kubernetes_validate.validate(obj, version, strict=True)
    (job,) = yaml.safe_load_all((K8S / "dependencies" / "temporal-search-attributes.yaml").open())
    kubernetes_validate.validate(job, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_overlay_sets_namespace_image_and_replicas(rendered: list[dict[str, Any]]) -> None:
    for obj in rendered:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "grantflow", obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "grantflow"
    for obj in workloads(rendered):
        for container in containers(obj):
            assert container["image"] == "registry.example.gov.cn/grantflow/grantflow:0.1.0"
    deployments = {d["metadata"]["name"]: d for d in of_kind(rendered, "Deployment")}
    assert deployments["grantflow-intake"]["spec"]["replicas"] == 3
    autoscalers = {
        h["metadata"]["name"]: h["spec"] for h in of_kind(rendered, "HorizontalPodAutoscaler")
    }
    assert (
        autoscalers["grantflow-worker"]["minReplicas"],
        autoscalers["grantflow-worker"]["maxReplicas"],
    ) == (3, 10)
    # The patch changed the range only: the rest of the object is the base's.
    assert autoscalers["grantflow-worker"]["scaleTargetRef"]["name"] == "grantflow-worker"
    for spec in autoscalers.values():
        assert spec["scaleTargetRef"]["name"] in deployments
    # The overlay's values merge over the base's.
    assert config_map(rendered)["data"]["GRANTFLOW_PROFILE"] == "production"


def test_every_process_of_the_embedded_stack_has_a_deployment(
    rendered: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.local import stack

    monkeypatch.setattr(stack, "temporal_binary", lambda: "temporal")
    monkeypatch.setattr(stack, "tansu_binary", lambda: "tansu")
    ours = [
        spec.argv[1:]
        for spec in stack.LocalStack(Settings()).specs()
        if spec.name not in ("temporal", "tansu")
    ]
    commands = [
        d["spec"]["template"]["spec"]["containers"][0]["command"]
        for d in of_kind(rendered, "Deployment")
    ]
    assert sorted(c[1:] for c in commands) == sorted(ours)
    assert all(c[0] == "python" for c in commands)
    migrations = sorted(
        j["spec"]["template"]["spec"]["containers"][0]["command"] for j in of_kind(rendered, "Job")
    )
    assert migrations == sorted(["python", "-m", "services.common.migrate", s] for s in SERVICES)


def test_every_setting_the_code_reads_reaches_every_process(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    required = {env_name(f) for f in Settings.model_fields if f not in SAFE_DEFAULTS}
    known = {env_name(f) for f in Settings.model_fields}
    assert set(SAFE_DEFAULTS) <= set(Settings.model_fields), "a safe default names no setting"
    unknown = set(config_map(rendered)["data"]) - known - NOT_SETTINGS
    assert not unknown, f"ConfigMap keys that no setting reads: {sorted(unknown)}"
    secrets = env_file(OVERLAY / "secrets.env.example")
    for obj in workloads(rendered):
        mounts = {m["mountPath"] for c in containers(obj) for m in c.get("volumeMounts", [])}
        for container in containers(obj):
            env = environment(container, rendered)
            missing = required - set(env)
            assert not missing, f"{obj['metadata']['name']}/{container['name']}: {sorted(missing)}"
            for name, value in env.items():
                if isinstance(value, dict):
                    assert value["name"] == "grantflow-secrets" and value["key"] == name
                    assert name in secrets, f"{name} is not in secrets.env.example"
            for name in ("TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE"):
                assert str(Path(env[name]).parent) in mounts
            # With the Secret's values (and TLS files where the volume puts them), the
            # production profile accepts what the container gets.
            values = {k: v for k, v in env.items() if not isinstance(v, dict)}
            values |= {
                "AUTH_SECRET": "s" * 48,
                "SERVICE_TOKEN": "system-token",
                **{k: v for k, v in secrets.items() if k.endswith("_DATABASE_URL")},
            }
            for name in ("TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE"):
                path = tmp_path / Path(env[name]).name
                path.write_text("pem")
                values[name] = str(path)
            settings = Settings.model_validate(values)
            assert settings.profile == "production"
            assert settings.production_problems() == []


def env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line and not line.startswith("#")
    )
    return {key: value for key, value in pairs}


def test_probes_and_metrics_point_at_ports_the_containers_expose(
    rendered: list[dict[str, Any]],
) -> None:
    config = config_map(rendered)["data"]
    services = {s["metadata"]["name"]: s for s in of_kind(rendered, "Service")}
    for deployment in of_kind(rendered, "Deployment"):
        name = deployment["metadata"]["name"]
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(METRICS_PORT) == config["METRICS_PORT"]
        (main,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in main["ports"]}
        assert ports["metrics"] == METRICS_PORT
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = main.get(kind)
            if probe is None:
                continue
            port = next(
                iter(
                    action["port"]
                    for key, action in probe.items()
                    if key in ("grpc", "httpGet", "tcpSocket")
                )
            )
            assert port in ports.values() or port in ports, f"{name} {kind} port {port}"
            if "grpc" in probe:
                # The plaintext health-only port: the kubelet's gRPC probe cannot speak TLS.
                assert probe["grpc"]["port"] == ports["health"] == int(config["HEALTH_PORT"])
        if template["metadata"]["labels"]["app.kubernetes.io/component"] == "service":
            assert "readinessProbe" in main and "livenessProbe" in main
            service = services[name]
            (service_port,) = service["spec"]["ports"]
            assert service_port["targetPort"] == "grpc"
            # The service binds its gRPC port; the others reach it at the Service's name.
            short = name.removeprefix("grantflow-").upper()
            bind = environment(main, rendered)[f"{short}_ADDRESS"]
            assert bind == f"0.0.0.0:{ports['grpc']}"
            assert config[f"{short}_ADDRESS"] == f"{name}:{service_port['port']}"
            assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()


def test_pods_run_as_non_root_with_resources_and_disruption_budgets(
    rendered: list[dict[str, Any]],
) -> None:
    budgets = of_kind(rendered, "PodDisruptionBudget")
    for obj in workloads(rendered):
        spec = pod_spec(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for container in containers(obj):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    for deployment in of_kind(rendered, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(b["spec"]["selector"]["matchLabels"].items() <= labels.items() for b in budgets)


def test_the_dependencies_carry_grantflows_topics_search_attributes_and_databases(
    rendered: list[dict[str, Any]],
) -> None:
    config = config_map(rendered)["data"]
    kafka = list(yaml.safe_load_all((K8S / "dependencies" / "kafka.yaml").open()))
    topics = {t["spec"]["topicName"]: t["spec"] for t in kafka if t["kind"] == "KafkaTopic"}
    prefix = Settings(kafka_topic_prefix=config["KAFKA_TOPIC_PREFIX"])
    assert sorted(topics) == sorted(all_topics(prefix))
    assert {t["partitions"] for t in topics.values()} == {PARTITIONS}
    (cluster,) = [k for k in kafka if k["kind"] == "Kafka"]
    assert config["KAFKA_BOOTSTRAP_SERVERS"].startswith(
        f"{cluster['metadata']['name']}-kafka-bootstrap."
    )

    (job,) = yaml.safe_load_all((K8S / "dependencies" / "temporal-search-attributes.yaml").open())
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    for name, kind in SEARCH_ATTRIBUTES.items():
        assert f"ensure {name} {kind}\n" in script
    values = yaml.safe_load((K8S / "dependencies" / "temporal-values.yaml").read_text())
    namespaces = [n["name"] for n in values["server"]["config"]["namespaces"]["namespace"]]
    assert config["TEMPORAL_NAMESPACE"] in namespaces
    assert config["TEMPORAL_ADDRESS"].startswith("temporal-frontend.")

    postgres = list(yaml.safe_load_all((K8S / "dependencies" / "postgres-cluster.yaml").open()))
    databases = {d["spec"]["name"] for d in postgres if d["kind"] == "Database"}
    (pg,) = [d for d in postgres if d["kind"] == "Cluster"]
    databases.add(pg["spec"]["bootstrap"]["initdb"]["database"])
    for key, url in env_file(OVERLAY / "secrets.env.example").items():
        if key.endswith("_DATABASE_URL"):
            assert url.rsplit("/", 1)[1] in databases
            assert f"@{pg['metadata']['name']}-rw." in url


# ---------------------------------------------------------------------------- the renderer


def write_kustomization(directory: Path, text: str, **files: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kustomization.yaml").write_text(text)
    for name, content in files.items():
        (directory / name.replace("__", ".")).write_text(content)
    return directory


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers:
        - name: app
          image: grantflow:dev
          envFrom: [{configMapRef: {name: settings}}]
          env:
            - {name: A, value: "1"}
            - name: TOKEN
              valueFrom: {secretKeyRef: {name: keys, key: TOKEN}}
"""


@pytest.mark.parametrize(
    "field",
    [
        "commonLabels",
        "namePrefix",
        "helmCharts",
        "components",
        "patchesStrategicMerge",
        "replacements",
    ],
)
def test_the_renderer_refuses_kustomize_features_it_does_not_render(
    tmp_path: Path, field: str
) -> None:
    directory = write_kustomization(
        tmp_path, f"resources: [app.yaml]\n{field}: {{}}\n", app__yaml=DEPLOYMENT
    )
    with pytest.raises(UnsupportedKustomization, match=field):
        render(directory)


def test_the_renderer_refuses_selector_labels_and_patch_directives(tmp_path: Path) -> None:
    labels = write_kustomization(
        tmp_path / "labels",
        "resources: [app.yaml]\nlabels: [{pairs: {a: b}, includeSelectors: true}]\n",
        app__yaml=DEPLOYMENT,
    )
    with pytest.raises(UnsupportedKustomization, match="includeSelectors"):
        render(labels)
    directive = write_kustomization(
        tmp_path / "directive",
        "resources: [app.yaml]\npatches:\n  - patch: |\n      apiVersion: apps/v1\n      kind: Deployment\n"
        "      metadata: {name: app}\n      spec: {template: {spec: {$patch: replace}}}\n",
        app__yaml=DEPLOYMENT,
    )
    with pytest.raises(UnsupportedKustomization, match=r"\$patch"):
        render(directive)
    nothing = write_kustomization(
        tmp_path / "nothing",
        "resources: [app.yaml]\npatches:\n  - patch: |\n      apiVersion: apps/v1\n      kind: Deployment\n"
        "      metadata: {name: other}\n",
        app__yaml=DEPLOYMENT,
    )
    with pytest.raises(UnsupportedKustomization, match="matches no object"):
        render(nothing)


def test_the_renderer_generates_merges_patches_and_renames_references(tmp_path: Path) -> None:
    base = write_kustomization(
        tmp_path / "base",
        "resources: [app.yaml]\nconfigMapGenerator: [{name: settings, envs: [settings.env]}]\n",
        app__yaml=DEPLOYMENT,
        settings__env="# comment\nX=1\nY=\n",
    )
    overlay = write_kustomization(
        tmp_path / "overlay",
        "namespace: city\n"
        f"resources: [../{base.name}]\n"
        "images: [{name: grantflow, newName: registry/grantflow, newTag: '2.0'}]\n"
        "replicas: [{name: app, count: 4}]\n"
        "configMapGenerator: [{name: settings, behavior: merge, literals: [Y=2]}]\n"
        "secretGenerator: [{name: keys, literals: [TOKEN=secret]}]\n"
        "patches:\n"
        "  - target: {kind: Deployment, name: app}\n"
        "    patch: |\n"
        "      - {op: replace, path: /spec/template/spec/containers/0/env/0/value, value: '9'}\n"
        "  - patch: |\n"
        "      apiVersion: apps/v1\n"
        "      kind: Deployment\n"
        "      metadata: {name: app}\n"
        "      spec:\n"
        "        template:\n"
        "          spec:\n"
        "            containers:\n"
        "              - name: app\n"
        "                env: [{name: B, value: '3'}]\n",
    )
    objects = {o["kind"]: o for o in render(overlay)}
    settings, keys, app = objects["ConfigMap"], objects["Secret"], objects["Deployment"]
    assert settings["data"] == {"X": "1", "Y": "2"}
    assert keys["data"] == {"TOKEN": "c2VjcmV0"}
    assert settings["metadata"]["name"].startswith("settings-")
    assert "annotations" not in settings["metadata"]
    assert {o["metadata"]["namespace"] for o in objects.values()} == {"city"}
    assert app["spec"]["replicas"] == 4
    (container,) = app["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry/grantflow:2.0"
    assert container["envFrom"] == [{"configMapRef": {"name": settings["metadata"]["name"]}}]
    assert [e.get("value") for e in container["env"]] == ["9", None, "3"]
    assert container["env"][1]["valueFrom"]["secretKeyRef"]["name"] == keys["metadata"]["name"]
    # Another value, another name: pods roll when their configuration changes.
    (base / "settings.env").write_text("X=2\n")
    renamed = {o["kind"]: o for o in render(overlay)}
    assert renamed["ConfigMap"]["metadata"]["name"] != settings["metadata"]["name"]
