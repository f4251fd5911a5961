"""Prometheus metrics of one app, in its own CollectorRegistry (several apps may share a process):
requests and their latency per route, method and status, measured around every request, and the
state of the service read at scrape time: the model's queue, the explanation and upload caches,
the size and generation of the served index."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from whysim.search.api.admin_auth import admin_token_required
from whysim.search.serving.engine import SearchEngine
from whysim.search.serving.explanations import Explanations
from whysim.search.serving.uploads import UploadCache

EXTENSION_KEY = "whysim.metrics"
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNMATCHED_ROUTE = "<unmatched>"  # 404s: the path itself would make one series per guess


def route_of_request() -> str:
    return request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE


class ServiceCollector(Collector):
    """Reads the service's state when Prometheus scrapes, so nothing has to keep gauges current."""

    def __init__(self, engine: SearchEngine, explanations: Explanations, uploads: UploadCache) -> None:
        self.engine = engine
        self.explanations = explanations
        self.uploads = uploads

    def collect(self) -> Iterator[Metric]:
        models = self.engine.models
        yield GaugeMetricFamily("whysim_model_queue_depth", "Model calls (uploads, explanations) waiting or running.",
                                value=models.queue_depth)
        yield GaugeMetricFamily("whysim_model_queue_size", "Model calls allowed to wait at once (--model-queue).",
                                value=models.queue_size)
        cache = self.explanations.cache
        yield CounterMetricFamily("whysim_explanation_cache_hits", "Explanations answered from the cache.",
                                  value=cache.hits)
        yield CounterMetricFamily("whysim_explanation_cache_misses", "Explanations computed by the model.",
                                  value=cache.misses)
        yield GaugeMetricFamily("whysim_explanation_cache_entries", "Explanations held.", value=len(cache))
        yield GaugeMetricFamily("whysim_upload_cache_entries", "Uploaded queries held.", value=len(self.uploads))
        snapshot = self.engine.watcher.current()
        yield GaugeMetricFamily("whysim_index_vectors", "Vectors in the served index.",
                                value=len(snapshot.store) if snapshot.store is not None else 0)
        yield GaugeMetricFamily("whysim_index_ready", "1 when the index can be searched.",
                                value=1 if snapshot.ready else 0)
        written = getattr(snapshot.stamp, "mtime_ns", None)  # FAISS files; Milvus stamps are generations
        yield GaugeMetricFamily("whysim_index_generation_timestamp_seconds",
                                "When the served index file was written (0 for a Milvus store); changes with "
                                "every new index.", value=written / 1e9 if written is not None else 0)
        yield GaugeMetricFamily("whysim_index_generation", "Indexes this server has loaded so far (any store).",
                                value=self.engine.watcher.reloads)


@dataclass
class AppMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram

    def exposition(self) -> Response:
        return Response(generate_latest(self.registry), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                        content_type=CONTENT_TYPE_LATEST)


def metrics_of(app: Flask) -> AppMetrics:
    """The app's metrics, made on first use."""
    if EXTENSION_KEY not in app.extensions:
        app.extensions[EXTENSION_KEY] = _new_metrics()
    return app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]


def _new_metrics() -> AppMetrics:
    registry = CollectorRegistry(auto_describe=True)
    labels = ("route", "method", "status")
    return AppMetrics(
        registry,
        Counter("whysim_http_requests", "HTTP requests answered.", labels, registry=registry),
        Histogram("whysim_http_request_duration_seconds", "Time to answer, from routing to the last header.",
                  labels, buckets=LATENCY_BUCKETS_S, registry=registry),
    )


def watch_service(app: Flask, engine: SearchEngine, explanations: Explanations, uploads: UploadCache) -> None:
    metrics_of(app).registry.register(ServiceCollector(engine, explanations, uploads))


metrics_page = Blueprint("metrics", __name__)


@metrics_page.route("/metrics", provide_automatic_options=False)
@admin_token_required
def metrics_view() -> Response:
    """Behind the admin token on the public port; `whysim serve --metrics-port` serves it apart instead."""
    return metrics_of(current_app).exposition()


def register_metrics_route(app: Flask) -> None:
    app.register_blueprint(metrics_page)


def request_started() -> None:
    g.whysim_started = time.perf_counter()


def request_seconds() -> float:
    return time.perf_counter() - g.get("whysim_started", time.perf_counter())
