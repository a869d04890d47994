"""The running side of an endpoint: one ModelServer per production variant, its log stream, and
the choice of variant for each invocation (by weight, or the one a request targets)."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smlocal.runtime import gpus
from smlocal.runtime.job import RuntimeContext
from smlocal.runtime.logs import LogStreamWriter
from smlocal.runtime.model_server import DEFAULT_STARTUP_TIMEOUT, ModelServer, ModelServerError, new_instance_id
from smlocal.runtime.serving import responses

KIND = "endpoint"


@dataclass
class Variant:
    """A production variant being served."""

    name: str
    weight: float
    instance_count: int
    server: ModelServer
    writer: LogStreamWriter
    images: list[str]
    serverless: dict | None = None
    started_at: float = field(default_factory=time.time)

    def stop(self) -> None:
        try:
            self.server.stop()
        finally:
            self.writer.close()

    def summary(self) -> dict[str, Any]:
        """The variant's ProductionVariantSummary (DescribeEndpoint)."""
        doc: dict[str, Any] = {
            "VariantName": self.name,
            "DeployedImages": [{"SpecifiedImage": image, "ResolvedImage": responses.resolved_image(image),
                                "ResolutionTime": self.started_at} for image in self.images],
            "CurrentWeight": self.weight,
            "DesiredWeight": self.weight,
        }
        if self.serverless is not None:
            doc["CurrentServerlessConfig"] = dict(self.serverless)
            doc["DesiredServerlessConfig"] = dict(self.serverless)
        else:
            doc["CurrentInstanceCount"] = self.instance_count
            doc["DesiredInstanceCount"] = self.instance_count
        return doc


class UnknownVariant(LookupError):
    pass


@dataclass
class Deployment:
    """All variants of one endpoint configuration, as served."""

    config_name: str
    variants: list[Variant]

    def pick(self, target: str | None) -> Variant:
        """The targeted variant, else one drawn by weight (the first when every weight is 0)."""
        if target:
            for variant in self.variants:
                if variant.name == target:
                    return variant
            raise UnknownVariant(target)
        if len(self.variants) == 1:
            return self.variants[0]
        weights = [max(v.weight, 0.0) for v in self.variants]
        if sum(weights) <= 0:
            return self.variants[0]
        return random.choices(self.variants, weights=weights)[0]

    def stop(self) -> None:
        for variant in self.variants:
            variant.stop()


class DeploymentError(Exception):
    """A variant could not start; ``reason`` is the endpoint's FailureReason."""

    def __init__(self, reason: str, *, cancelled: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.cancelled = cancelled


def start_deployment(ctx: RuntimeContext, endpoint: str, config: dict[str, Any], models: dict[str, dict],
                     cancel: threading.Event | None = None, artifact_cache: Path | None = None) -> Deployment:
    """Starts every production variant of ``config`` (models by name, as snapshotted).

    ``artifact_cache`` keeps the archives the variants downloaded (see ModelServer.start), so the
    same deployment restarts without S3.

    Raises:
        DeploymentError: with the FailureReason SageMaker would show; servers already started for
            other variants are stopped.
    """
    started: list[Variant] = []
    try:
        for production in config["ProductionVariants"]:
            started.append(_start_variant(ctx, endpoint, production, models[production["ModelName"]], cancel,
                                          artifact_cache))
    except BaseException:
        for variant in started:
            variant.stop()
        raise
    return Deployment(config["EndpointConfigName"], started)


def _start_variant(ctx: RuntimeContext, endpoint: str, production: dict, model: dict,
                   cancel: threading.Event | None, artifact_cache: Path | None) -> Variant:
    name = production["VariantName"]
    instance = new_instance_id()
    writer = LogStreamWriter(ctx.logs_client, responses.log_group(endpoint), responses.log_stream(name, instance),
                             journal=ctx.log_journal)
    containers = model.get("Containers") or [model["PrimaryContainer"]]
    try:
        gpus.prepare_serving(ctx.settings, production.get("InstanceType"), writer.write)
    except gpus.GpuUnavailable as exc:
        writer.close()
        raise DeploymentError(str(exc)) from exc
    try:
        server = ModelServer.start(
            ctx, containers, name=endpoint, kind=KIND, log=writer.write, instance_id=instance,
            network_isolation=bool(model.get("EnableNetworkIsolation")), cancel=cancel, artifact_cache=artifact_cache,
            startup_timeout=float(production.get("ContainerStartupHealthCheckTimeoutInSeconds")
                                  or DEFAULT_STARTUP_TIMEOUT),
        )
    except ModelServerError as exc:
        writer.write(f"smlocal: {exc}")
        writer.close()
        raise DeploymentError(_failure_reason(exc, name), cancelled=exc.stage == "cancelled") from exc
    except BaseException:
        writer.close()
        raise
    serverless = production.get("ServerlessConfig")
    return Variant(
        name=name,
        weight=float(production.get("InitialVariantWeight", 1.0)),
        instance_count=int(production.get("InitialInstanceCount") or 1),
        server=server,
        writer=writer,
        images=server.images,
        serverless=dict(serverless) if serverless and not production.get("InstanceType") else None,
    )


def _failure_reason(exc: ModelServerError, variant: str) -> str:
    if exc.stage == "ping":
        return responses.clip(responses.ping_failure_reason(exc.container or "primary", variant, exc.detail))
    if exc.stage == "cancelled":
        return "InternalServerError: the smlocal server shut down while the endpoint was being deployed."
    return responses.clip(str(exc))
