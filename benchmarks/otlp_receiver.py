"""A tiny OTLP/HTTP receiver: what a run's exporter sent, decoded (a stand-in, not a collector).

It takes ``POST /v1/traces`` and ``POST /v1/metrics`` (protobuf, as
opentelemetry-exporter-otlp-proto-http sends them), keeps every span and
metric name it decoded, and answers 200. For checking the exporter's wiring
without a collector; the real collector test is Phoenix or the OpenTelemetry
Collector (issue 20 point 4)::

    python -m benchmarks.otlp_receiver --port 4318 &
    pipelines run summary ... --trace http://127.0.0.1:4318
    kill %1    # prints the metric counts, then one JSON line per span
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks._process import answers, free_port, running


class Received:
    """What the receiver decoded: spans (name, attributes, events, ids) and metric names."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[dict[str, Any]] = []
        self.metrics: Counter[str] = Counter()
        self.posts: Counter[str] = Counter()

    def add_traces(self, body: bytes) -> None:
        """Keep the spans of one ``ExportTraceServiceRequest`` (protobuf bytes)."""
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        self.spans.append(_span(span))

    def add_metrics(self, body: bytes) -> None:
        """Count the metrics of one ``ExportMetricsServiceRequest`` (protobuf bytes)."""
        request = ExportMetricsServiceRequest.FromString(body)
        with self.lock:
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        self.metrics[metric.name] += 1


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def _span(span: Any) -> dict[str, Any]:
    return {
        "name": span.name,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_id": span.parent_span_id.hex(),
        "attributes": {a.key: _value(a.value) for a in span.attributes},
        "events": [e.name for e in span.events],
        "seconds": (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9,
    }


def serve(port: int = 0, host: str = "127.0.0.1") -> tuple[ThreadingHTTPServer, Received]:
    """Start the receiver in a thread; return the server (``server_port``) and what it keeps."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            received.posts[self.path] += 1
            if self.path == "/v1/traces":
                received.add_traces(body)
            elif self.path == "/v1/metrics":
                received.add_metrics(body)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


@contextlib.contextmanager
def spawn_receiver() -> Iterator[str]:
    """Run the receiver in its own process (its CPU not counted); yield its base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "benchmarks.otlp_receiver", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    root = Path(__file__).resolve().parents[1]
    with running(cmd, ready=partial(answers, base + "/"), name="the OTLP receiver", cwd=root):
        yield base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    server, received = serve(args.port, args.host)
    print(f"OTLP/HTTP receiver on http://{args.host}:{server.server_port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # print what came, as on Ctrl-C
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        with received.lock:
            print(json.dumps({"posts": received.posts, "metrics": received.metrics}))
            for span in received.spans:
                print(json.dumps(span))


if __name__ == "__main__":
    main()
