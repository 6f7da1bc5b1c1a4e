"""The deployment files: docker-compose.yml, the Dockerfile, Prometheus/Grafana, Kubernetes,
HPC and TLS. Static checks only (no Docker, no network)."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CLI_ENV = {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
           "SATCHUNK_STORE"}
SERVICES = {"minio", "create-bucket", "scheduler", "worker", "dashboard", "prometheus",
            "grafana"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|ROOT_USER", re.IGNORECASE)
# ${NAME} or ${NAME:?message}: a secret never gets a literal default
REFERENCE = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(?::?\?[^}]*)?\}$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _host_ports(service: dict) -> list[str]:
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.append(f"{port.get('host_ip', '')}:{port.get('published', '')}:"
                       f"{port.get('target', '')}")
        else:
            out.append(str(port))
    return out


def _walk(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, str(i)))
    else:
        yield path, node


# -- docker compose ---------------------------------------------------------------------


def test_compose_services(compose):
    assert SERVICES <= set(compose["services"])
    assert {"minio-data", "grafana-data"} <= set(compose["volumes"])
    assert compose["services"]["prometheus"]["profiles"] == ["monitoring"]
    assert compose["services"]["grafana"]["profiles"] == ["monitoring"]
    for name in ("minio", "create-bucket", "prometheus", "grafana"):
        image = compose["services"][name]["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"


def test_compose_keeps_minio_and_bucket(compose):
    minio = compose["services"]["minio"]
    assert minio["image"].startswith("quay.io/minio/minio:")
    env = _env(minio)
    assert env["MINIO_ROOT_USER"].startswith("${AWS_ACCESS_KEY_ID:?")
    assert env["MINIO_ROOT_PASSWORD"].startswith("${AWS_SECRET_ACCESS_KEY:?")
    assert "healthcheck" in minio
    assert any(v.startswith("minio-data:") for v in minio["volumes"])
    bucket = compose["services"]["create-bucket"]
    assert bucket["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "store/satchunk" in bucket["entrypoint"]


def test_compose_satchunk_services_build_from_dockerfile(compose):
    services = compose["services"]
    for name in ("scheduler", "worker", "dashboard"):
        assert services[name]["image"] == "satchunk:latest"
        build = services[name]["build"]
        assert (build if isinstance(build, str) else build.get("context")) == "."
    assert "dask scheduler" in services["scheduler"]["command"]
    assert "--port 8786" in services["scheduler"]["command"]
    assert "--dashboard-address :8787" in services["scheduler"]["command"]
    assert "tcp://scheduler:8786" in services["worker"]["command"]
    assert services["dashboard"]["command"].startswith("satchunk dashboard")
    assert services["worker"]["depends_on"]["create-bucket"]["condition"] == (
        "service_completed_successfully")
    assert "scheduler" in services["worker"]["depends_on"]
    assert services["dashboard"]["depends_on"]["create-bucket"]["condition"] == (
        "service_completed_successfully")


def test_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim-bookworm"
    torch = next(i for i, ln in enumerate(lines) if "torch==2.13.0" in ln)
    assert "download.pytorch.org/whl/cpu" in lines[torch]
    project = next(i for i, ln in enumerate(lines)
                   if ln.startswith("RUN pip install") and re.search(r"\s\.(\s|$)", ln))
    assert torch < project, "torch must be installed before the project"
    assert "prometheus-client" in lines[project], "Dask serves /metrics only with it"
    for part in ("pyproject.toml", "README.md", "chunkstore", "ingest", "models",
                 "inference", "training", "dashboards", "satchunk"):
        assert any(ln.startswith("COPY") and part in ln.split() for ln in lines), part
    users = [ln.split(None, 1)[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert "WORKDIR /work" in lines
    assert "EXPOSE 8786 8787 8050" in lines
    assert lines[-1] in ('CMD ["satchunk", "--help"]', "CMD satchunk --help")
    assert not re.search(r"^(ENV|ARG)\s+\S*(SECRET|PASSWORD|ACCESS_KEY)", text, re.M)
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".git", ".satchunk-demo", "benchmarks/results", ".pytest_cache"} <= ignored
    assert {"runs", "runs/"} & ignored
    assert {"__pycache__", "**/__pycache__"} & ignored


def test_compose_ports_bind_localhost(compose):
    published = 0
    for name, service in compose["services"].items():
        for port in _host_ports(service):
            published += 1
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port}"
    assert published >= 7
    ports = {p for s in ("scheduler", "dashboard", "prometheus", "grafana")
             for p in _host_ports(compose["services"][s])}
    assert {"127.0.0.1:8786:8786", "127.0.0.1:8787:8787", "127.0.0.1:8050:8050",
            "127.0.0.1:9090:9090", "127.0.0.1:3000:3000"} <= ports


def test_compose_worker_scales(compose):
    worker = compose["services"]["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports")
    assert "--name" not in worker["command"]
    assert "--nthreads 1" in worker["command"]
    assert "--memory-limit" in worker["command"]


@pytest.mark.parametrize("name", ["worker", "dashboard"])
def test_compose_env_names_are_the_clis(compose, name):
    env = _env(compose["services"][name])
    assert {k for k in env if not k.startswith("DASK_")} == CLI_ENV
    endpoint = urlsplit(env["AWS_ENDPOINT_URL"])
    assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", "minio", 9000)
    assert "minio" in compose["services"]  # the service name resolves on the network
    assert env["AWS_ACCESS_KEY_ID"] == "${AWS_ACCESS_KEY_ID}"
    assert env["AWS_SECRET_ACCESS_KEY"] == "${AWS_SECRET_ACCESS_KEY}"
    assert env["AWS_REGION"].startswith("${AWS_REGION")
    assert env["SATCHUNK_STORE"].startswith("${SATCHUNK_STORE")
    if name == "worker":
        assert env["DASK_DISTRIBUTED__WORKER__DAEMON"] == "False"


def test_compose_no_literal_secrets(compose):
    checked = 0
    for path, value in _walk(compose):
        if not isinstance(value, str):
            continue
        if SECRET_NAME.search(path[-1]):
            checked += 1
            assert REFERENCE.match(value), f"{'.'.join(path)} is a literal: use ${{...}}"
        for word in re.findall(r"\b(?:minioadmin|changeme|password\d*)\b", value, re.I):
            pytest.fail(f"{'.'.join(path)} contains {word!r}")
    assert checked >= 7  # MinIO root, mc, worker, dashboard credentials, Grafana admin
    grafana = _env(compose["services"]["grafana"])
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_compose_mounts_exist(compose):
    mounts = []
    for service in compose["services"].values():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith("."):
                mounts.append(source)
                assert (ROOT / source).exists(), source
    assert {"./deploy/prometheus.yml", "./deploy/grafana/provisioning",
            "./dashboards/grafana"} <= set(mounts)


# -- Prometheus and Grafana -------------------------------------------------------------


def test_prometheus_scrapes_the_scheduler(compose):
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["dask-scheduler"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job.get("scrape_interval", config["global"]["scrape_interval"]) == "15s"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["scheduler:8787"]


def test_grafana_provisioning(compose):
    mounts = compose["services"]["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    assert "./dashboards/grafana:/var/lib/grafana/dashboards:ro" in mounts
    prov = DEPLOY / "grafana" / "provisioning"
    sources = [ds for f in sorted((prov / "datasources").glob("*.y*ml"))
               for ds in yaml.safe_load(f.read_text())["datasources"]]
    assert [(ds["type"], ds["uid"], ds["url"]) for ds in sources] == [
        ("prometheus", "prometheus", "http://prometheus:9090")]
    providers = [p for f in sorted((prov / "dashboards").glob("*.y*ml"))
                 for p in yaml.safe_load(f.read_text())["providers"]]
    assert [p["options"]["path"] for p in providers] == ["/var/lib/grafana/dashboards"]


def _exported_scheduler_metrics() -> set[str]:
    """Metric names the installed distributed's scheduler serves at /metrics, read from
    the source of distributed/http/scheduler/prometheus/core.py: namespace ``dask``,
    subsystem ``scheduler``, ``_<unit>`` appended and counters exposed with ``_total``
    (as prometheus_client does)."""
    spec = importlib.util.find_spec("distributed")
    assert spec is not None and spec.origin
    source = Path(spec.origin).parent / "http" / "scheduler" / "prometheus" / "core.py"
    tree = ast.parse(source.read_text())
    assert 'self.subsystem = "scheduler"' in source.read_text()
    names = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in {"GaugeMetricFamily", "CounterMetricFamily"}):
            continue
        first = node.args[0]
        assert (isinstance(first, ast.Call) and isinstance(first.func, ast.Attribute)
                and first.func.attr == "build_name"), ast.unparse(node)
        name = "dask_scheduler_" + first.args[0].value
        unit = next((kw.value.value for kw in node.keywords if kw.arg == "unit"), "")
        if unit and not name.endswith("_" + unit):
            name += "_" + unit
        if node.func.id == "CounterMetricFamily":
            name = name.removesuffix("_total") + "_total"
        names.add(name)
    return names


def test_exported_metric_names_are_read_from_source():
    names = _exported_scheduler_metrics()
    assert {"dask_scheduler_workers", "dask_scheduler_tasks", "dask_scheduler_clients",
            "dask_scheduler_tasks_compute_seconds_total",
            "dask_scheduler_tasks_output_bytes",
            "dask_scheduler_prefix_state_totals_total"} <= names
    assert "dask_scheduler_tasks_compute" not in names


def _panels(panels):
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def test_grafana_dashboard_uses_real_dask_metrics():
    dashboard = json.loads((ROOT / "dashboards" / "grafana" / "satchunk-dask.json").read_text())
    assert dashboard["uid"] == "satchunk-dask"
    assert dashboard["title"] == "satchunk · Dask scheduler"
    assert 36 <= dashboard["schemaVersion"] <= 41
    exported = _exported_scheduler_metrics()
    used = set()
    panels = [p for p in _panels(dashboard["panels"]) if p.get("type") != "row"]
    assert len(panels) >= 6
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] == "prometheus"
            metrics = set(re.findall(r"\bdask_[a-z0-9_]+", target["expr"]))
            assert metrics, f"{panel['title']}: no Dask metric in {target['expr']!r}"
            assert metrics <= exported, f"{panel['title']}: not exported: {metrics - exported}"
            assert target["expr"].count("(") == target["expr"].count(")")
            used |= metrics
    assert {"dask_scheduler_workers", "dask_scheduler_tasks", "dask_scheduler_clients",
            "dask_scheduler_tasks_compute_seconds_total", "dask_scheduler_tasks_output_bytes",
            "dask_scheduler_prefix_state_totals_total"} <= used


# -- Kubernetes, HPC, TLS ---------------------------------------------------------------


def _k8s(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()) if d]


def test_kubernetes_daskcluster():
    (cluster,) = _k8s("daskcluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("kubernetes.dask.org/v1", "DaskCluster")
    name = cluster["metadata"]["name"]
    spec = cluster["spec"]
    for role in ("scheduler", "worker"):
        (container,) = spec[role]["spec"]["containers"]
        assert container["image"] == "satchunk:latest"
        assert {"requests", "limits"} <= set(container["resources"])
        env = {e["name"]: e for e in container["env"]}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "satchunk-s3", "key": key}
            assert "value" not in env[key]
        assert {"AWS_ENDPOINT_URL", "SATCHUNK_STORE"} <= set(env)
        assert set(env) - {"DASK_DISTRIBUTED__WORKER__DAEMON"} <= CLI_ENV
    assert spec["scheduler"]["spec"]["containers"][0]["args"][:2] == ["dask", "scheduler"]
    assert spec["worker"]["spec"]["containers"][0]["args"][:2] == ["dask", "worker"]
    service = spec["scheduler"]["service"]
    assert service["type"] == "ClusterIP"
    assert service["selector"]["dask.org/cluster-name"] == name
    assert sorted(p["port"] for p in service["ports"]) == [8786, 8787]


def test_kubernetes_secret_and_autoscaler():
    (secret,) = _k8s("secret-example.yaml")
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "satchunk-s3"
    data = secret.get("stringData") or secret["data"]
    assert set(data) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert all("REPLACE" in v.upper() for v in data.values()), "placeholders only"
    assert "placeholder" in (DEPLOY / "kubernetes" / "secret-example.yaml").read_text().lower()
    (scaler,) = _k8s("autoscaler.yaml")
    assert (scaler["apiVersion"], scaler["kind"]) == ("kubernetes.dask.org/v1", "DaskAutoscaler")
    (cluster,) = _k8s("daskcluster.yaml")
    assert scaler["spec"] == {"cluster": cluster["metadata"]["name"], "minimum": 1,
                              "maximum": 10}


def test_hpc_jobqueue():
    source = (DEPLOY / "hpc" / "jobqueue.py").read_text()
    compile(source, "deploy/hpc/jobqueue.py", "exec")
    for word in ("SLURMCluster", "cores=", "memory=", "walltime=", "job_extra_directives=",
                 "interface=", '"dashboard_address": ":8787"', "scale(", "scheduler_address"):
        assert word in source, word
    config = yaml.safe_load((DEPLOY / "hpc" / "jobqueue.yaml").read_text())
    slurm = config["jobqueue"]["slurm"]
    assert {"cores", "memory", "walltime", "job-extra-directives", "interface"} <= set(slurm)


def test_tls_config():
    config = yaml.safe_load((DEPLOY / "tls" / "dask-tls.yaml").read_text())
    comm = config["distributed"]["comm"]
    assert comm["require-encryption"] is True
    tls = comm["tls"]
    assert tls["ca-file"]
    for role in ("scheduler", "worker", "client"):
        assert tls[role]["cert"] and tls[role]["key"], role
    assert "openssl" in (DEPLOY / "tls" / "dask-tls.yaml").read_text()


def test_image_sets_the_workers_malloc_threshold():
    """The image's workers get the mmap threshold that local workers get."""
    from satchunk.cluster import WORKER_ENV

    text = (ROOT / "Dockerfile").read_text()
    for k, v in WORKER_ENV.items():
        assert f"{k}={v}" in text
