"""Endpoint configurations and real-time endpoints, and InvokeEndpoint.

Lifecycle (as SageMaker): CreateEndpoint -> ``Creating`` -> ``InService`` (one model server per
production variant, started in the background) or ``Failed`` with a FailureReason;
UpdateEndpoint -> ``Updating`` -> ``InService`` on the new configuration (servers swapped once the
new ones answer their ping; if they do not, the endpoint stays InService on the old ones with a
FailureReason); DeleteEndpoint -> ``Deleting`` -> gone. An endpoint keeps serving after its
configuration or model is deleted: both are snapshotted when deployed.

Server restarts: ``close()`` stops every model server but leaves the records as clients last saw
them; ``recover()`` brings InService endpoints back (same configuration, new instances), resumes
Creating ones, finishes Deleting ones and returns Updating ones to their previous configuration.
Each deployment keeps a copy of the archives it downloaded (``<data dir>/endpoint-artifacts``), so
it restarts even when S3 (e.g. the embedded, in-memory one) no longer has them, as an instance
keeps what it downloaded. An endpoint whose servers cannot be restarted becomes Failed with the
reason.
"""

from __future__ import annotations

import copy
import logging
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from smlocal.errors import ValidationError
from smlocal.runtime.job import RuntimeContext
from smlocal.runtime.model_server import ModelServer, ModelServerError, ModelTimeout
from smlocal.runtime.serving import responses
from smlocal.runtime.serving.deployment import KIND as SERVER_KIND
from smlocal.runtime.serving.deployment import Deployment, DeploymentError, UnknownVariant, start_deployment
from smlocal.service.common import Account, list_page, now, pick
from smlocal.service.models import Models
from smlocal.service.store import Store

log = logging.getLogger(__name__)

CONFIG_KIND = "EndpointConfig"
KIND = "Endpoint"
_PRIVATE = "_smlocal"  # snapshot of config and models in the endpoint record; never returned
_CONFIG_ECHOED = ("ProductionVariants", "DataCaptureConfig", "KmsKeyId", "AsyncInferenceConfig", "ExplainerConfig",
                  "ShadowProductionVariants", "ExecutionRoleArn", "VpcConfig", "EnableNetworkIsolation",
                  "MetricsConfig")
_IN_PROGRESS = ("Creating", "Updating", "Deleting", "SystemUpdating", "RollingBack")
_RECOVERY_WAIT = 60.0


class Endpoints:
    """Endpoint configurations, endpoints and the runtime's InvokeEndpoint."""

    def __init__(self, store: Store, account: Account, runtime: RuntimeContext, models: Models):
        self._store = store
        self._account = account
        self._runtime = runtime
        self._models = models
        self._live: dict[str, Deployment] = {}
        self._pending: dict[str, threading.Event] = {}  # endpoints whose servers are (re)starting
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._closing = threading.Event()

    def operations(self) -> dict:
        return {
            "CreateEndpointConfig": self.create_config,
            "DescribeEndpointConfig": self.describe_config,
            "ListEndpointConfigs": self.list_configs,
            "DeleteEndpointConfig": self.delete_config,
            "CreateEndpoint": self.create,
            "DescribeEndpoint": self.describe,
            "ListEndpoints": self.list,
            "DeleteEndpoint": self.delete,
            "UpdateEndpoint": self.update,
            "UpdateEndpointWeightsAndCapacities": self.update_weights,
        }

    # ---- names
    def _config_arn(self, name: str) -> str:
        return self._account.arn("endpoint-config", name)

    def _arn(self, name: str) -> str:
        return self._account.arn("endpoint", name)

    def _config(self, name: str) -> dict[str, Any]:
        doc = self._store.get(CONFIG_KIND, name)
        if doc is None:
            raise ValidationError(f'Could not find endpoint configuration "{self._config_arn(name)}".')
        return doc

    def _endpoint(self, name: str) -> dict[str, Any]:
        doc = self._store.get(KIND, name)
        if doc is None:
            raise ValidationError(f'Could not find endpoint "{self._arn(name)}".')
        return doc

    # ---- endpoint configurations
    def create_config(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["EndpointConfigName"]
        arn = self._config_arn(name)
        variants = request["ProductionVariants"]
        names = [v["VariantName"] for v in variants]
        if len(set(names)) != len(names):
            raise ValidationError("VariantName must be unique within an endpoint configuration.")
        for variant in variants:
            if not variant.get("ModelName"):
                raise ValidationError(f"ModelName must be specified for production variant {variant['VariantName']}.")
            self._models.get(variant["ModelName"])
            if not variant.get("InstanceType") and not variant.get("ServerlessConfig"):
                raise ValidationError(f"Either InstanceType or ServerlessConfig must be specified for production "
                                      f"variant {variant['VariantName']}.")
        doc: dict[str, Any] = {"EndpointConfigName": name, "EndpointConfigArn": arn}
        for key in _CONFIG_ECHOED:
            if key in request:
                doc[key] = copy.deepcopy(request[key])
        for variant in doc["ProductionVariants"]:
            if variant.get("InstanceType"):
                variant.setdefault("InitialVariantWeight", 1.0)
        doc["CreationTime"] = now()
        if not self._store.insert(CONFIG_KIND, name, doc):
            raise ValidationError(f'Cannot create already existing endpoint configuration "{arn}".')
        return {"EndpointConfigArn": arn}

    def describe_config(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._config(request["EndpointConfigName"])

    def list_configs(self, request: dict[str, Any]) -> dict[str, Any]:
        page, token = list_page(self._store.all(CONFIG_KIND), request, name_key="EndpointConfigName",
                                sort_keys={"Name": "EndpointConfigName", "CreationTime": "CreationTime"})
        keys = ("EndpointConfigName", "EndpointConfigArn", "CreationTime")
        result: dict[str, Any] = {"EndpointConfigs": [pick(d, keys) for d in page]}
        if token:
            result["NextToken"] = token
        return result

    def delete_config(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["EndpointConfigName"]
        if not self._store.delete(CONFIG_KIND, name):
            raise ValidationError(f'Could not find endpoint configuration "{self._config_arn(name)}".')
        return {}

    # ---- endpoints
    def _snapshot(self, config: dict[str, Any]) -> dict[str, Any]:
        models = {v["ModelName"]: self._models.serving(v["ModelName"]) for v in config["ProductionVariants"]}
        return {"id": secrets.token_hex(6), "config": config, "models": models}

    @property
    def _artifacts_root(self) -> Path:
        return self._runtime.settings.data_dir / "endpoint-artifacts"

    def _artifacts(self, name: str, snapshot: dict[str, Any] | None = None) -> Path:
        folder = self._artifacts_root / name
        return folder / snapshot["id"] if snapshot is not None else folder

    def _start(self, name: str, snapshot: dict[str, Any]) -> Deployment:
        return start_deployment(self._runtime, name, snapshot["config"], snapshot["models"], self._closing,
                                artifact_cache=self._artifacts(name, snapshot))

    def _install(self, name: str, deployment: Deployment, snapshot: dict[str, Any], change) -> bool:
        """Makes ``deployment`` the one serving ``name`` and records it; False (and stops it) when
        the server is closing or the endpoint record is gone (a reset)."""
        with self._lock:
            if self._closing.is_set() or not self._store.exists(KIND, name):
                old = None
                installed = False
            else:
                old = self._live.get(name)
                self._live[name] = deployment
                installed = True
        if not installed:
            deployment.stop()
            return False
        if old is not None:
            old.stop()
        self._store.update(KIND, name, change)
        for stale in self._artifacts(name).glob("*"):
            if stale.name != snapshot["id"]:
                shutil.rmtree(stale, ignore_errors=True)
        return True

    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["EndpointName"]
        arn = self._arn(name)
        config = self._config(request["EndpointConfigName"])
        snapshot = self._snapshot(config)
        stamp = now()
        doc = {"EndpointName": name, "EndpointArn": arn, "EndpointConfigName": config["EndpointConfigName"],
               "EndpointStatus": "Creating", "CreationTime": stamp, "LastModifiedTime": stamp,
               _PRIVATE: {"deployed": snapshot}}
        if request.get("DeploymentConfig"):
            doc["LastDeploymentConfig"] = copy.deepcopy(request["DeploymentConfig"])
        if not self._store.insert(KIND, name, doc):
            raise ValidationError(f'Cannot create already existing endpoint "{arn}".')
        self._background(name, self._deploy, name, snapshot, None)
        return {"EndpointArn": arn}

    def describe(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._endpoint(request["EndpointName"])
        doc.pop(_PRIVATE, None)
        return doc

    def list(self, request: dict[str, Any]) -> dict[str, Any]:
        page, token = list_page(self._store.all(KIND), request, name_key="EndpointName", status_key="EndpointStatus",
                                sort_keys={"Name": "EndpointName", "CreationTime": "CreationTime",
                                           "Status": "EndpointStatus"})
        keys = ("EndpointName", "EndpointArn", "CreationTime", "LastModifiedTime", "EndpointStatus")
        result: dict[str, Any] = {"Endpoints": [pick(d, keys) for d in page]}
        if token:
            result["NextToken"] = token
        return result

    def update(self, request: dict[str, Any]) -> dict[str, Any]:
        name = self._endpoint(request["EndpointName"])["EndpointName"]  # as created, whatever the request's case
        config = self._config(request["EndpointConfigName"])
        snapshot = self._snapshot(config)
        previous: dict[str, str] = {}

        def change(d: dict) -> None:
            self._check_not_in_progress(d)
            previous["status"] = d["EndpointStatus"]
            d.update(EndpointStatus="Updating", LastModifiedTime=now())
            d[_PRIVATE]["pending"] = snapshot
            if request.get("DeploymentConfig"):
                d["LastDeploymentConfig"] = copy.deepcopy(request["DeploymentConfig"])

        self._store.update(KIND, name, change)
        self._background(name, self._deploy, name, snapshot, previous["status"])
        return {"EndpointArn": self._arn(name)}

    def update_weights(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._endpoint(request["EndpointName"])
        name = doc["EndpointName"]  # as created, whatever the request's case
        if doc["EndpointStatus"] != "InService":
            raise ValidationError(f'Cannot update in-progress endpoint "{self._arn(name)}".')
        with self._lock:
            deployment = self._live.get(name)
        variants = {v.name: v for v in deployment.variants} if deployment else {}
        missing = [d["VariantName"] for d in request["DesiredWeightsAndCapacities"] if d["VariantName"] not in variants]
        if missing:
            raise ValidationError(f'The variant name(s) "{", ".join(missing)}" is/are not present within endpoint '
                                  f'configuration "{doc["EndpointConfigName"]}".')
        for desired in request["DesiredWeightsAndCapacities"]:
            variant = variants[desired["VariantName"]]
            if desired.get("DesiredWeight") is not None:
                variant.weight = float(desired["DesiredWeight"])
            if desired.get("DesiredInstanceCount") is not None:
                variant.instance_count = int(desired["DesiredInstanceCount"])
        self._store.update(KIND, name, lambda d: d.update(
            ProductionVariants=[v.summary() for v in deployment.variants], LastModifiedTime=now()))
        return {"EndpointArn": self._arn(name)}

    def delete(self, request: dict[str, Any]) -> dict[str, Any]:
        name = self._endpoint(request["EndpointName"])["EndpointName"]  # as created, whatever the request's case

        def change(d: dict) -> None:
            self._check_not_in_progress(d)
            d.update(EndpointStatus="Deleting", LastModifiedTime=now())

        self._store.update(KIND, name, change)
        self._background(name, self._remove, name)
        return {}

    def _check_not_in_progress(self, doc: dict[str, Any]) -> None:
        """Raised inside a store update, so two concurrent calls cannot both pass."""
        if doc["EndpointStatus"] in _IN_PROGRESS:
            raise ValidationError(f'Cannot update in-progress endpoint "{doc["EndpointArn"]}".')

    # ---- background work
    def _background(self, name: str, target, *args) -> None:
        with self._lock:
            self._pending.setdefault(name, threading.Event())

        def run() -> None:
            try:
                target(*args)
            except Exception:  # noqa: BLE001 - a deployment thread must never die silently
                log.exception("endpoint %s: background work failed", name)
                if not self._closing.is_set():
                    self._set_failed(name, "InternalServerError: smlocal could not deploy the endpoint.")
            finally:
                with self._lock:
                    event = self._pending.pop(name, None)
                    self._threads.discard(threading.current_thread())
                if event is not None:
                    event.set()

        thread = threading.Thread(target=run, name=f"smlocal-endpoint-{name}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _deploy(self, name: str, snapshot: dict[str, Any], previous_status: str | None) -> None:
        """Starts ``snapshot``'s variants; on success they replace what the endpoint served."""
        try:
            deployment = self._start(name, snapshot)
        except DeploymentError as exc:
            if exc.cancelled or self._closing.is_set():
                return  # the server is shutting down: recover() resumes this work
            reason = exc.reason
            shutil.rmtree(self._artifacts(name, snapshot), ignore_errors=True)
            try:
                self._artifacts(name).rmdir()  # when no other deployment of it keeps artefacts
            except OSError:
                pass
            with self._lock:
                serving = name in self._live
            if previous_status is not None and serving and self._store.exists(KIND, name):
                self._store.update(KIND, name, lambda d: _after_failed_update(d, reason))
            else:
                self._set_failed(name, reason)
            return

        def change(d: dict) -> None:
            d.update(EndpointStatus="InService", EndpointConfigName=deployment.config_name, LastModifiedTime=now(),
                     ProductionVariants=[v.summary() for v in deployment.variants])
            d.pop("FailureReason", None)
            d[_PRIVATE]["deployed"] = snapshot
            d[_PRIVATE].pop("pending", None)

        self._install(name, deployment, snapshot, change)

    def _remove(self, name: str) -> None:
        with self._lock:
            deployment = self._live.pop(name, None)
        if deployment is not None:
            deployment.stop()
        self._store.delete(KIND, name)
        shutil.rmtree(self._artifacts(name), ignore_errors=True)

    def _set_failed(self, name: str, reason: str) -> None:
        def change(d: dict) -> None:
            d.update(EndpointStatus="Failed", FailureReason=reason, LastModifiedTime=now())
            d.pop("ProductionVariants", None)
            d[_PRIVATE].pop("pending", None)

        if self._store.exists(KIND, name):
            self._store.update(KIND, name, change)

    # ---- the runtime: POST /endpoints/<name>/invocations
    def invoke(self, name: str, headers: dict[str, Any], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """The gateway's runtime handler: (status, headers, body) of InvokeEndpoint."""
        response = self._invoke(name, headers, body)
        return response.status, response.headers, response.body

    def _invoke(self, name: str, headers: dict[str, Any], body: bytes) -> responses.RuntimeResponse:
        region, account = self._account.region, self._account.account_id
        deployment = self._deployment(name)
        if deployment is None:
            return responses.endpoint_not_found(name, account)
        if headers.get("x-amzn-sagemaker-target-model"):
            return responses.validation_error(
                f"Endpoint {name} is not a multi-model endpoint and does not support target model header.")
        try:
            variant = deployment.pick(headers.get("x-amzn-sagemaker-target-variant"))
        except UnknownVariant as exc:
            return responses.validation_error(f"Variant {exc.args[0]} is not valid for endpoint {name}.")
        target = headers.get("x-amzn-sagemaker-target-container-hostname")
        if target and target not in variant.server.containers:
            return responses.validation_error(
                f"Container hostname {target} is not valid for endpoint {name}.")
        try:
            result = variant.server.invoke_detailed(body, headers.get("content-type"), headers.get("accept"),
                                                    target_container=target)
        except ModelTimeout as exc:
            return responses.model_timeout(container=exc.container or "primary", endpoint=name, region=region,
                                           account=account)
        except ModelServerError as exc:
            return responses.model_unreachable(container=exc.container or "primary", detail=str(exc),
                                               endpoint=name, region=region, account=account)
        if result.status >= 400:
            return responses.model_error(status=result.status, body=result.body, container=result.container,
                                         endpoint=name, region=region, account=account)
        return responses.success(result.body, result.content_type, variant.name)

    def _deployment(self, name: str) -> Deployment | None:
        with self._lock:
            deployment = self._live.get(name)
            pending = self._pending.get(name)
        if deployment is not None and not self._store.exists(KIND, name):
            self._background(name, self._remove, name)  # the record is gone (a reset): stop serving it
            return None
        if deployment is not None or pending is None:
            return deployment
        doc = self._store.get(KIND, name)
        if doc is None or doc["EndpointStatus"] != "InService":
            return None
        pending.wait(_RECOVERY_WAIT)  # InService but restarting after a server restart
        with self._lock:
            return self._live.get(name)

    # ---- server lifecycle
    def recover(self) -> int:
        """Restarts endpoints a previous server left InService; see the module docstring."""
        for doc in self._store.all(KIND):
            name, status = doc["EndpointName"], doc["EndpointStatus"]
            ModelServer.kill_orphans(self._runtime, SERVER_KIND, name)
            shutil.rmtree(self._runtime.jobs_root / SERVER_KIND / name, ignore_errors=True)
            private = doc.get(_PRIVATE) or {}
            if status == "Deleting":
                self._store.delete(KIND, name)
            elif status in ("InService", "Creating") and private.get("deployed"):
                self._background(name, self._restart, name, private["deployed"])
            elif status == "Updating" and private.get("deployed"):
                pending = (private.get("pending") or {}).get("config", {}).get("EndpointConfigName", "?")
                reason = (f"The smlocal server stopped while this endpoint was being updated to endpoint "
                          f"configuration {pending}; it kept its previous configuration. Call UpdateEndpoint again.")
                self._store.update(KIND, name, lambda d, r=reason: _after_failed_update(d, r))
                self._background(name, self._restart, name, private["deployed"])
        return 0

    def _restart(self, name: str, snapshot: dict[str, Any]) -> None:
        try:
            deployment = self._start(name, snapshot)
        except DeploymentError as exc:
            if not (exc.cancelled or self._closing.is_set()):
                self._set_failed(name, f"smlocal could not restart this endpoint after a server restart: {exc.reason}")
            return

        def change(d: dict) -> None:
            d.update(EndpointStatus="InService", EndpointConfigName=deployment.config_name, LastModifiedTime=now(),
                     ProductionVariants=[v.summary() for v in deployment.variants])

        self._install(name, deployment, snapshot, change)

    def reset(self) -> None:
        """Stops every endpoint's servers and forgets their artefacts (the server's reset_all)."""
        with self._lock:
            live, self._live = self._live, {}
        for deployment in live.values():
            deployment.stop()
        shutil.rmtree(self._artifacts_root, ignore_errors=True)

    def close(self) -> None:
        """Stops every model server; records stay as they are (recover() brings them back)."""
        self._closing.set()
        deadline = time.monotonic() + 15
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            live, self._live = self._live, {}
        for deployment in live.values():
            try:
                deployment.stop()
            except Exception:  # noqa: BLE001 - stop the others whatever happens
                log.exception("could not stop an endpoint's model servers")


def _after_failed_update(doc: dict, reason: str) -> None:
    """A failed update leaves the endpoint InService on its previous configuration."""
    doc.update(EndpointStatus="InService", FailureReason=reason, LastModifiedTime=now())
    doc[_PRIVATE].pop("pending", None)
