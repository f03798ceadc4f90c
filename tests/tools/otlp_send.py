#!/usr/bin/env python3
"""Sends one sample OTLP export request, built with the official opentelemetry-proto
classes, so tests can check the OTLP receiver (tests/tools/otlp_receiver.py) on its own.

  otlp_send.py --signal metrics|traces|logs --name NAME --transport grpc|http --port PORT [--gzip]
  otlp_send.py --signal metrics|traces|logs --name NAME --write FILE

NAME becomes the metric's name, the span's name or the log record's body; the resource
has service.name=otlp_send. With --write the serialized Export*ServiceRequest is written to
FILE instead of being sent (for a test that POSTs it itself).

Only ever sends to 127.0.0.1. Exit code 0 when the export was answered OK; otherwise 1,
with the gRPC status code or the HTTP status on stderr (e.g. "UNAVAILABLE", "HTTP 503").

Run with the venv of tests/tools/install: .cache/tools/venv/bin/python.
"""

import argparse
import gzip
import sys
import time
import urllib.error
import urllib.request

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


def resource():
    return resource_pb2.Resource(
        attributes=[
            common_pb2.KeyValue(
                key="service.name", value=common_pb2.AnyValue(string_value="otlp_send")
            )
        ]
    )


def scope():
    return common_pb2.InstrumentationScope(name="otlp_send", version="1")


def sample_request(signal, name):
    now = time.time_ns()
    if signal == "metrics":
        point = metrics_pb2.NumberDataPoint(
            start_time_unix_nano=now - 1_000_000_000, time_unix_nano=now, as_int=42
        )
        metric = metrics_pb2.Metric(
            name=name,
            unit="1",
            sum=metrics_pb2.Sum(
                data_points=[point],
                aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
                is_monotonic=True,
            ),
        )
        return metrics_service_pb2.ExportMetricsServiceRequest(
            resource_metrics=[
                metrics_pb2.ResourceMetrics(
                    resource=resource(),
                    scope_metrics=[metrics_pb2.ScopeMetrics(scope=scope(), metrics=[metric])],
                )
            ]
        )
    if signal == "traces":
        span = trace_pb2.Span(
            trace_id=bytes(range(1, 17)),
            span_id=bytes(range(1, 9)),
            name=name,
            kind=trace_pb2.Span.SPAN_KIND_CLIENT,
            start_time_unix_nano=now - 1_000_000,
            end_time_unix_nano=now,
        )
        return trace_service_pb2.ExportTraceServiceRequest(
            resource_spans=[
                trace_pb2.ResourceSpans(
                    resource=resource(),
                    scope_spans=[trace_pb2.ScopeSpans(scope=scope(), spans=[span])],
                )
            ]
        )
    if signal == "logs":
        record = logs_pb2.LogRecord(
            time_unix_nano=now,
            severity_number=logs_pb2.SEVERITY_NUMBER_INFO,
            severity_text="INFO",
            body=common_pb2.AnyValue(string_value=name),
        )
        return logs_service_pb2.ExportLogsServiceRequest(
            resource_logs=[
                logs_pb2.ResourceLogs(
                    resource=resource(),
                    scope_logs=[logs_pb2.ScopeLogs(scope=scope(), log_records=[record])],
                )
            ]
        )
    raise ValueError(signal)


STUBS = {
    "metrics": metrics_service_pb2_grpc.MetricsServiceStub,
    "traces": trace_service_pb2_grpc.TraceServiceStub,
    "logs": logs_service_pb2_grpc.LogsServiceStub,
}


def send_grpc(signal, request, port, use_gzip):
    compression = grpc.Compression.Gzip if use_gzip else grpc.Compression.NoCompression
    # No proxy: the request must go straight to 127.0.0.1.
    options = [("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        try:
            STUBS[signal](channel).Export(request, timeout=10, compression=compression)
        except grpc.RpcError as e:
            print(f"{e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    return 0


def send_http(signal, request, port, use_gzip):
    body = request.SerializeToString()
    headers = {"Content-Type": "application/x-protobuf"}
    if use_gzip:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/{signal}", data=body, headers=headers, method="POST"
    )
    # No proxy: the request must go straight to 127.0.0.1.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as resp:
            resp.read()
    except urllib.error.HTTPError as e:
        print(f"HTTP {e.code}: {e.read()[:200]!r}", file=sys.stderr)
        return 1
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signal", choices=["metrics", "traces", "logs"], required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--transport", choices=["grpc", "http"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--write", metavar="FILE")
    args = parser.parse_args()

    request = sample_request(args.signal, args.name)
    if args.write:
        with open(args.write, "wb") as f:
            f.write(request.SerializeToString())
        return 0
    if not args.transport or not args.port:
        parser.error("--transport and --port are needed unless --write is given")
    send = send_grpc if args.transport == "grpc" else send_http
    return send(args.signal, request, args.port, args.gzip)


if __name__ == "__main__":
    sys.exit(main())
