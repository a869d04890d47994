"""The SageMaker Metrics service for trial components: BatchPutMetrics and BatchGetMetrics.

``sagemaker.experiments.Run.log_metric`` sends each value here (botocore ``sagemaker-metrics``,
REST-JSON ``PUT /BatchPutMetrics``, signed for ``sagemaker``; the gateway routes it). What was put
is kept per trial component and metric, and summarised as the component's
``TrialComponentMetricSummary`` list in DescribeTrialComponent and Search (Count, Min, Max, Avg,
the sample StdDev as a training job's summaries have it, Last = the value with the latest
Timestamp, TimeStamp = that time).

Per-entry failures are not errors of the call: AWS answers 200 with ``Errors`` [{Code,
MetricIndex}] (``VALIDATION_ERROR`` for a Timestamp outside two weeks before / two hours after now,
the window the SDK also enforces in ``_RawMetricData``, or a value that is not a finite number;
``METRIC_LIMIT_EXCEEDED`` past :data:`MAX_METRICS` metrics or :data:`MAX_POINTS` values in all on
a component: smlocal's bounds, as AWS publishes no number). Series are stored in chunks of
:data:`CHUNK` points, so a put rewrites one small record.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Callable

from smlocal.service.store import Store

log = logging.getLogger(__name__)

STATS = "TrialComponentMetricStats"  # component name -> {"Metrics": {metric: running statistics}}
SERIES = "TrialComponentMetricSeries"  # "<component>/<chunk>/<metric>" -> {"Points": [[time, step|None, value]]}
CHUNK = 1000
MAX_POINTS = 100_000  # values kept per trial component, all its metrics together
MAX_METRICS = 1000
PAST_WINDOW, FUTURE_WINDOW = 14 * 86400, 7200  # seconds before / after now a Timestamp may be
_PERIODS = {"OneMinute": 60, "FiveMinute": 300, "OneHour": 3600}

# component name -> its public document (raises ResourceNotFound); a component ARN -> its name or None
Resolve = Callable[[str], dict]
NameOfArn = Callable[[str], "str | None"]


class ExperimentMetrics:
    """BatchPutMetrics / BatchGetMetrics on the store; :meth:`summaries` for the component's documents."""

    def __init__(self, store: Store, resolve: Resolve, name_of_arn: NameOfArn, clock: Callable[[], float] = time.time):
        self._store = store
        self._resolve = resolve
        self._name_of_arn = name_of_arn
        self._clock = clock
        self._lock = threading.Lock()  # a put updates the statistics and a chunk: one put at a time

    def operations(self) -> dict:
        return {"BatchPutMetrics": self.put, "BatchGetMetrics": self.get}

    # ---- BatchPutMetrics
    def put(self, request: dict[str, Any]) -> dict[str, Any]:
        component = self._resolve(request["TrialComponentName"])["TrialComponentName"]
        errors: list[dict[str, Any]] = []
        now = self._clock()
        with self._lock:
            stats = (self._store.get(STATS, component) or {}).get("Metrics", {})
            appended: dict[str, list[list]] = {}
            total = sum(entry["Count"] for entry in stats.values())
            for index, item in enumerate(request["MetricData"]):
                code = _invalid(item, now)
                name = item["MetricName"]
                if code is None and name not in stats and len(stats) >= MAX_METRICS:
                    code = "METRIC_LIMIT_EXCEEDED"
                if code is None and total >= MAX_POINTS:
                    code = "METRIC_LIMIT_EXCEEDED"
                if code is not None:
                    errors.append({"Code": code, "MetricIndex": index})
                    continue
                entry = stats.setdefault(name, new_stats())
                step = item.get("Step")
                point = [float(item["Timestamp"]), None if step is None else int(step), float(item["Value"])]
                appended.setdefault(name, []).append([entry["Count"], point])
                add_point(entry, point[2], point[0])
                total += 1
            for name, points in appended.items():
                chunks: dict[int, list[list]] = {}
                for position, point in points:
                    chunks.setdefault(position // CHUNK, []).append(point)
                for chunk, added in chunks.items():
                    self._append(_chunk_key(component, chunk, name), added)
            self._store.put(STATS, component, {"Metrics": stats})
        return {"Errors": errors} if errors else {}

    def _append(self, key: str, points: list[list]) -> None:
        if self._store.exists(SERIES, key):
            self._store.update(SERIES, key, lambda d: d["Points"].extend(points))
        else:
            self._store.put(SERIES, key, {"Points": points})

    # ---- BatchGetMetrics
    def get(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"MetricQueryResults": [self._query(q) for q in request["MetricQueries"]]}

    def _query(self, query: dict[str, Any]) -> dict[str, Any]:
        component = self._name_of_arn(query["ResourceArn"])
        if component is None:
            return {"Status": "ValidationError", "XAxisValues": [], "MetricValues": [],
                    "Message": f"Resource {query['ResourceArn']} does not exist or is not a trial component."}
        points = self.series(component, query["MetricName"])
        xs, values = aggregate(points, query["MetricStat"], query["Period"], query["XAxisType"],
                               query.get("Start"), query.get("End"))
        return {"Status": "Complete", "XAxisValues": xs, "MetricValues": values}

    # ---- for the trial components
    def series(self, component: str, name: str) -> list[list]:
        """Every point [time, step or None, value] of a component's metric, in the order put."""
        count = ((self._store.get(STATS, component) or {}).get("Metrics", {}).get(name) or {}).get("Count", 0)
        points: list[list] = []
        for chunk in range((count + CHUNK - 1) // CHUNK):
            points.extend((self._store.get(SERIES, _chunk_key(component, chunk, name)) or {}).get("Points", []))
        return points

    def summaries(self, component: str, source_arn: str) -> list[dict[str, Any]]:
        """The component's TrialComponentMetricSummary list from what was put (empty when nothing was)."""
        stats = (self._store.get(STATS, component) or {}).get("Metrics", {})
        return [summary(name, entry, source_arn) for name, entry in stats.items()]

    def forget(self, component: str) -> None:
        """Drops a deleted component's metrics."""
        with self._lock:
            stats = (self._store.get(STATS, component) or {}).get("Metrics", {})
            for name, entry in stats.items():
                for chunk in range((entry["Count"] + CHUNK - 1) // CHUNK):
                    self._store.delete(SERIES, _chunk_key(component, chunk, name))
            self._store.delete(STATS, component)


def _chunk_key(component: str, chunk: int, name: str) -> str:
    return f"{component}/{chunk}/{name}"  # component names have no "/": the key is unambiguous


def _invalid(item: dict[str, Any], now: float) -> str | None:
    """The BatchPutMetricsError code of a RawMetricData entry, or None (pure)."""
    value, stamp = item.get("Value"), item.get("Timestamp")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "VALIDATION_ERROR"
    if not isinstance(stamp, (int, float)) or not now - PAST_WINDOW <= stamp <= now + FUTURE_WINDOW:
        return "VALIDATION_ERROR"
    return None


def new_stats() -> dict[str, Any]:
    return {"Count": 0, "Min": None, "Max": None, "Mean": 0.0, "M2": 0.0, "Last": None, "TimeStamp": None}


def add_point(stats: dict[str, Any], value: float, stamp: float) -> None:
    """Adds one value to running statistics (Welford's mean and squared deviations; pure)."""
    stats["Count"] += 1
    stats["Min"] = value if stats["Min"] is None else min(stats["Min"], value)
    stats["Max"] = value if stats["Max"] is None else max(stats["Max"], value)
    delta = value - stats["Mean"]
    stats["Mean"] += delta / stats["Count"]
    stats["M2"] += delta * (value - stats["Mean"])
    if stats["TimeStamp"] is None or stamp >= stats["TimeStamp"]:
        stats["Last"], stats["TimeStamp"] = value, stamp


def summary(name: str, stats: dict[str, Any], source_arn: str) -> dict[str, Any]:
    """A TrialComponentMetricSummary of running statistics (StdDev: the sample one, 0 for one value)."""
    count = stats["Count"]
    std = math.sqrt(max(0.0, stats["M2"] / (count - 1))) if count > 1 else 0.0
    return {"MetricName": name, "SourceArn": source_arn, "TimeStamp": stats["TimeStamp"], "Max": stats["Max"],
            "Min": stats["Min"], "Last": stats["Last"], "Count": count, "Avg": stats["Mean"], "StdDev": std}


def aggregate(points: list[list], stat: str, period: str, x_axis: str, start: int | None = None,
              end: int | None = None) -> tuple[list[int], list[float]]:
    """A BatchGetMetrics series (pure): ``points`` ([time, step, value]) grouped by ``period`` (one
    group per step for ``IterationNumber``, else per minute / five minutes / hour), each group's
    ``stat``, on an x axis of steps or epoch seconds (a time group's start, or a step group's latest
    time), sorted by x. ``start``/``end`` (epoch seconds, inclusive) bound the points' times; a point
    without a step is left out where a step is needed."""
    groups: dict[Any, list[list]] = {}
    for point in points:
        stamp, step, _ = point
        if (start is not None and stamp < start) or (end is not None and stamp > end):
            continue
        if period == "IterationNumber":
            if step is None:
                continue
            key = step
        else:
            key = int(stamp // _PERIODS[period]) * _PERIODS[period]
        groups.setdefault(key, []).append(point)
    rows = []
    for key, members in groups.items():
        if x_axis == "IterationNumber":
            steps = [p[1] for p in members if p[1] is not None]
            if not steps:
                continue
            x = key if period == "IterationNumber" else max(steps)
        else:
            x = int(max(p[0] for p in members)) if period == "IterationNumber" else key
        rows.append((x, _statistic(members, stat)))
    rows.sort(key=lambda r: r[0])
    return [int(r[0]) for r in rows], [r[1] for r in rows]


def _statistic(points: list[list], stat: str) -> float:
    entry = new_stats()
    for stamp, _, value in points:
        add_point(entry, value, stamp)
    if stat == "Count":
        return float(entry["Count"])
    return summary("", entry, "")[stat]

