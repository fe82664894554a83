"""Services on a Ray cluster through Ray Serve, driven over the dashboard's HTTP address only.

No Ray Client and no ``import ray`` here: a laptop that reaches only the dashboard can deploy.
The image's build context travels to the cluster as a runtime-env package (uploaded the way
Ray's job submission client uploads a working dir); each service is one Serve application
running ``amlmm_magics.scoring.serve`` (the same scoring code as local services). Serve's
declarative REST API replaces the whole config at once, so this target keeps the full config
of its cluster and writes it under a lock: two concurrent operations never drop each other's
applications. Keys reach the replicas only as salted hashes in ``user_config``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from amlmm_magics.local.errors import ApiError
from amlmm_magics.local.images import RUNTIME_DISTRIBUTIONS
from amlmm_magics.local.supervisor import DeploymentSpec
from amlmm_magics.redact import redact_text

log = logging.getLogger("amlmm_magics.local.ray")

APPLICATIONS = "/api/serve/applications/"
DEPLOY_TIMEOUT_S = 600.0
REQUEST_TIMEOUT = (10.0, 120.0)
CHECK_TIMEOUT = (3.0, 10.0)
KEYS_TIMEOUT_S = 60.0
DEFAULT_SERVE_PORT = 8000
# Each replica reserves this much CPU unless the service asks otherwise (STACK-NOTES: a
# whole CPU per replica leaves no room on small clusters for autoscaling or rolling updates).
DEFAULT_REPLICA_CPUS = 0.25
_MEMORY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
                 "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
                 "Ei": 2**60}


def cpu_quantity(text: str) -> float:
    """A Kubernetes CPU quantity (``250m``, ``0.5``, ``2``) in CPUs."""
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory_quantity(text: str) -> int:
    """A Kubernetes memory quantity (``512Mi``, ``1Gi``, ``1G``, ``1e9``) in bytes."""
    if "e" in text and not text.endswith(("Ei", "E")):
        return int(float(text))
    digits = text.rstrip("EPTGMKik")
    return int(float(digits) * _MEMORY_UNITS[text[len(digits):]])


def zip_context(context: Path) -> bytes:
    """The build context as a working-dir package: the runtime and the app at the top.

    Deterministic (sorted, fixed timestamps), so an unchanged context keeps its package.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for top in ("runtime", "app"):
            base = context / top
            prefix = "" if top == "runtime" else "app/"
            for path in sorted(p for p in base.rglob("*") if p.is_file()):
                info = zipfile.ZipInfo(prefix + path.relative_to(base).as_posix(),
                                       date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with path.open("rb") as stream, zf.open(info, "w") as target:
                    for chunk in iter(lambda s=stream: s.read(1024 * 1024), b""):
                        target.write(chunk)
    return out.getvalue()


class RayServeTarget:
    """A Ray cluster, reached at its dashboard URL, as a compute target."""

    def __init__(self, name: str, dashboard_url: str, serve_url: str | None, token: str | None,
                 apps: dict[str, dict[str, Any]], save: Callable[[dict[str, Any]], None]) -> None:
        self.name = name
        self.dashboard_url = dashboard_url.rstrip("/")
        parts = urlsplit(self.dashboard_url)
        self.serve_url = (serve_url or f"{parts.scheme}://{parts.hostname}:{DEFAULT_SERVE_PORT}"
                          ).rstrip("/")
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._apps = apps  # service id -> application config (this target's part of the config)
        self._save = save
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RayServeTarget({self.name!r}, {self.dashboard_url!r})"

    # -- talking to the dashboard ------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.dashboard_url + path
        kwargs.setdefault("timeout", REQUEST_TIMEOUT)
        try:
            answer = self._session.request(method, url, **kwargs)
        except requests.RequestException as exc:
            raise ApiError(502, "ClusterUnreachable",
                           f"The Ray cluster '{self.name}' does not answer at "
                           f"{self.dashboard_url}: {type(exc).__name__}.") from None
        if answer.status_code in (401, 403):
            raise ApiError(502, "ClusterAuthFailed",
                           f"The Ray cluster '{self.name}' refused its token "
                           f"({answer.status_code}); register it again with the right "
                           "--token-env.")
        return answer

    def check(self) -> None:
        """Raise a clear 400 unless the dashboard answers with Serve's REST API (the caller
        named a cluster that does not work: its input is what is wrong)."""
        try:
            answer = self._call("GET", APPLICATIONS, timeout=CHECK_TIMEOUT)
        except ApiError as exc:
            raise ApiError(400, exc.code, exc.message) from None
        if answer.status_code == 404:
            raise ApiError(400, "NotServe", f"{self.dashboard_url} is not a Ray dashboard with "
                           "Serve's REST API (is ray[serve] installed on the cluster?).")
        if answer.status_code != 200:
            raise ApiError(502, "ClusterError", f"The Ray dashboard answered "
                           f"{answer.status_code}: {redact_text(answer.text[:200])}")

    def _status(self) -> dict[str, Any]:
        answer = self._call("GET", APPLICATIONS)
        if answer.status_code != 200:
            raise ApiError(502, "ClusterError", f"Reading Serve's status answered "
                           f"{answer.status_code}: {redact_text(answer.text[:200])}")
        return answer.json().get("applications") or {}

    def _put_config(self) -> None:
        """Write the whole declarative config: every application this target manages."""
        parts = urlsplit(self.serve_url)
        config = {"http_options": {"host": parts.hostname, "port": parts.port or 80},
                  "applications": list(self._apps.values())}
        answer = self._call("PUT", APPLICATIONS, json=config)
        if answer.status_code != 200:
            raise ApiError(400, "ServeConfigRefused", "Ray Serve refused the config: "
                           f"{redact_text(answer.text.strip()[:500])}")
        self._save(self._apps)

    def _upload(self, context: Path) -> str:
        package = zip_context(context)
        name = f"_ray_pkg_{hashlib.sha1(package).hexdigest()}.zip"
        path = f"/api/packages/gcs/{name}"
        if self._call("GET", path).status_code != 200:
            answer = self._call("PUT", path, data=package)
            if answer.status_code != 200:
                raise ApiError(502, "UploadFailed", "Uploading the build context to the Ray "
                               f"cluster answered {answer.status_code}: "
                               f"{redact_text(answer.text[:200])}")
        return f"gcs://{name}"

    # -- the compute target interface ---------------------------------------------------------
    def application(self, spec: DeploymentSpec, working_dir: str) -> dict[str, Any]:
        settings = spec.settings
        options: dict[str, Any] = {"num_cpus": DEFAULT_REPLICA_CPUS}
        reservation = settings.get("containerResourceReservation") or {}
        if reservation.get("cpu"):
            options["num_cpus"] = cpu_quantity(reservation["cpu"])
        if reservation.get("memory"):
            options["memory"] = memory_quantity(reservation["memory"])
        deployment: dict[str, Any] = {"name": "scoring", "ray_actor_options": options,
                                      "user_config": {"keys": spec.keys or {}}}
        max_concurrent = settings.get("maxConcurrentRequestsPerContainer")
        if max_concurrent:
            # Beyond it, 503 with Retry-After at once, as local replicas answer.
            deployment.update(max_ongoing_requests=max_concurrent, max_queued_requests=0,
                              backpressure_config={"status_code": 503, "retry_after_s": 1})
        scaler = settings.get("autoScaler") or {}
        if scaler.get("autoscaleEnabled"):
            per_replica = max_concurrent or 5
            target = max(0.1, (scaler.get("targetUtilization") or 70) / 100 * per_replica)
            deployment["autoscaling_config"] = {
                "min_replicas": scaler.get("minReplicas", 1),
                "max_replicas": scaler.get("maxReplicas", max(1, scaler.get("minReplicas", 1))),
                "target_ongoing_requests": target,
                "upscale_delay_s": float(scaler.get("refreshPeriodInSeconds") or 30),
            }
        else:
            deployment["num_replicas"] = spec.replicas
        # Serve brings its own uvicorn: pinning the runtime's here could break the replicas.
        requirements = [line for line in (spec.context / "requirements.txt").read_text()
                        .splitlines() if line.strip() and canonicalize_name(
                            Requirement(line).name) not in RUNTIME_DISTRIBUTIONS]
        runtime_env: dict[str, Any] = {"working_dir": working_dir}
        if requirements:
            runtime_env["pip"] = requirements
        args = {"driver": spec.meta["driver"], "title": spec.service_name,
                "log_requests": spec.log_requests, "max_concurrent": max_concurrent}
        if spec.meta.get("schema"):
            args["schema"] = spec.meta["schema"]
        return {"name": spec.service_name, "route_prefix": f"/{spec.service_name}",
                "import_path": "amlmm_magics.scoring.serve:build", "args": args,
                "runtime_env": runtime_env, "deployments": [deployment]}

    def scoring_uri(self, service_name: str) -> str:
        return f"{self.serve_url}/{service_name}/score"

    def deploy(self, spec: DeploymentSpec, note: Callable[[str], None]) -> str:
        if not (spec.context / "runtime" / "amlmm_magics" / "scoring" / "serve.py").exists():
            raise ApiError(400, "ImageTooOld", "This image was built before Ray Serve support "
                           "and cannot run there: create the image again.")
        note(f"Uploading the build context to the Ray cluster '{self.name}'.")
        app = self.application(spec, self._upload(spec.context))
        self._check_capacity(app)
        with self._lock:
            previous = self._apps.get(spec.service_id)
            self._apps[spec.service_id] = app
            try:
                self._put_config()
            except BaseException:
                self._restore(spec.service_id, previous)
                raise
        note(f"Deployed the Serve application '{spec.service_name}'; waiting for its replicas.")
        try:
            self._wait_running(spec.service_name, app)
        except BaseException:
            with self._lock:
                self._restore(spec.service_id, previous)
                self._put_config()
            raise
        return self.scoring_uri(spec.service_name)

    def _capacity(self) -> dict[str, float]:
        """Total resources of the cluster's alive nodes (empty when the API says nothing)."""
        answer = self._call("GET", "/api/v0/nodes", params={"limit": 1000, "detail": "true"})
        if answer.status_code != 200:
            return {}
        result = (answer.json().get("data") or {}).get("result") or {}
        nodes = result.get("result") if isinstance(result, dict) else result
        total: dict[str, float] = {}
        for node in nodes or []:
            if node.get("state") == "ALIVE":
                for key, value in (node.get("resources_total") or {}).items():
                    total[key] = total.get(key, 0.0) + float(value)
        return total

    def _check_capacity(self, app: dict[str, Any]) -> None:
        """Refuse at once what the cluster could never schedule, instead of waiting forever."""
        deployment = app["deployments"][0]
        replicas = deployment.get("num_replicas") or deployment.get(
            "autoscaling_config", {}).get("min_replicas", 1)
        options = deployment["ray_actor_options"]
        total = self._capacity()
        for resource, per_replica, unit in (("CPU", options.get("num_cpus", 0), "CPU"),
                                            ("memory", options.get("memory", 0), "bytes")):
            available = total.get(resource)
            if available is not None and per_replica and replicas * per_replica > available:
                raise ApiError(400, "NotEnoughResources",
                               f"Not enough resources on '{self.name}': {replicas} replicas x "
                               f"{per_replica:g} {unit} > {available:g} {unit} in the cluster; "
                               "ask for fewer replicas or a smaller reservation.")

    def _restore(self, service_id: str, previous: dict[str, Any] | None) -> None:
        if previous is None:
            self._apps.pop(service_id, None)
        else:
            self._apps[service_id] = previous

    def _wait_running(self, name: str, app: dict[str, Any]) -> None:
        deadline = time.monotonic() + DEPLOY_TIMEOUT_S
        message = ""
        while time.monotonic() < deadline:
            status = self._status().get(name) or {}
            deployed = (status.get("deployed_app_config") or {}).get("runtime_env") or {}
            state = status.get("status")
            # The application's message is generic ("Failed to update the deployments");
            # its deployment's says why.
            message = "\n".join(m for m in (_deployment_message(status),
                                              status.get("message")) if m)
            current = deployed.get("working_dir") == app["runtime_env"]["working_dir"]
            if state == "RUNNING" and current:
                return
            if state == "DEPLOY_FAILED" and current:
                raise ApiError(400, "ServeDeployFailed",
                               f"Ray Serve could not start '{name}': {_first_line(message)}")
            time.sleep(0.5)
        raise ApiError(504, "ServeDeployTimedOut",
                       f"Ray Serve did not run '{name}' within {DEPLOY_TIMEOUT_S:.0f} s: "
                       f"{_first_line(message) or 'no message from Serve'} (not enough CPUs "
                       "for the replicas asked?)")

    def retire(self, service_id: str, deployment_id: str) -> None:
        """Nothing to do: redeploying an application under its name rolled its replicas."""

    def remove(self, service_id: str) -> None:
        """Take the service's application off the cluster; returns once Serve has."""
        with self._lock:
            app = self._apps.pop(service_id, None)
            if app is None:
                return
            self._put_config()
        deadline = time.monotonic() + DEPLOY_TIMEOUT_S
        while app["name"] in self._status() and time.monotonic() < deadline:
            time.sleep(0.2)

    def update_keys(self, service_id: str, keys: dict[str, Any]) -> None:
        """New key hashes through user_config: the replicas reconfigure, none restarts.

        Returns once every replica has taken them, so the old key is refused from then on.
        """
        with self._lock:
            app = self._apps.get(service_id)
            if app is None:
                return
            user_config = {"keys": keys}
            app["deployments"][0]["user_config"] = user_config
            self._put_config()
        deadline = time.monotonic() + KEYS_TIMEOUT_S
        while time.monotonic() < deadline:
            deployment = self._deployment(app["name"])
            if (deployment.get("deployment_config", {}).get("user_config") == user_config
                    and deployment.get("status") == "HEALTHY"
                    and deployment.get("status_trigger") != "CONFIG_UPDATE_STARTED"):
                return
            time.sleep(0.2)
        raise ApiError(504, "KeysNotApplied", f"The replicas of '{app['name']}' did not take "
                       f"the new keys within {KEYS_TIMEOUT_S:.0f} s.")

    def _deployment(self, app_name: str) -> dict[str, Any]:
        status = self._status().get(app_name) or {}
        return (status.get("deployments") or {}).get("scoring") or {}

    def adopt(self, spec: DeploymentSpec) -> str | None:
        """The scoring URI if the service still runs on the cluster (daemon restart)."""
        app = self._apps.get(spec.service_id)
        if app is None:
            return None
        status = self._status().get(spec.service_name) or {}
        return self.scoring_uri(spec.service_name) if status.get("status") == "RUNNING" else None

    def logs(self, service_id: str, log_file: Path, tail: int) -> list[str]:
        """The last lines of each replica's log, from the cluster's log API."""
        app = self._apps.get(service_id)
        if app is None:
            return []
        lines: list[str] = []
        for replica in self._deployment(app["name"]).get("replicas") or []:
            answer = self._call("GET", "/api/v0/logs/file", params={
                "node_id": replica.get("node_id"),
                "filename": str(replica.get("log_file_path", "")).lstrip("/"), "lines": tail})
            if answer.status_code == 200:
                lines += [f"[{replica.get('replica_id')}] {line}"
                          for line in answer.text.splitlines()]
        return lines[-tail:]

    def port_of(self, service_id: str) -> int | None:
        return None

    def shutdown(self) -> None:
        """The cluster's applications outlive the daemon; nothing to stop here."""
        self._session.close()


def _deployment_message(status: dict[str, Any]) -> str:
    for deployment in (status.get("deployments") or {}).values():
        if deployment.get("message"):
            return str(deployment["message"])
    return ""


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")


def _first_line(text: str) -> str:
    """The line of a Serve status message that says what went wrong."""
    lines = [line.strip() for line in redact_text(text).splitlines() if line.strip()]
    if not lines:
        return ""
    for line in lines:  # pip failures name the requirement on an ERROR: line
        if line.startswith("ERROR:") or "No matching distribution" in line:
            return line
    exceptions = [line for line in lines if _EXCEPTION_LINE.match(line)]
    line = exceptions[-1] if exceptions else lines[0]  # the innermost exception of a trace
    return line if len(line) < 300 else line[:300] + "..."
