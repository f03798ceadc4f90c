#!/usr/bin/env python3
"""OTLP receiver for the integration tests: what an OpenTelemetry collector would see.

Listens on 127.0.0.1 only:
  * gRPC: opentelemetry.proto.collector.{metrics,trace,logs}.v1 {Metrics,Trace,Logs}Service/Export
  * HTTP: POST /v1/metrics, /v1/traces, /v1/logs with an Export*ServiceRequest body,
    Content-Type application/x-protobuf (or application/json), optionally
    Content-Encoding gzip; answered with the matching Export*ServiceResponse in the
    request's encoding.

Every export request is decoded with the official opentelemetry-proto classes and appended
to --out as one JSON line, flushed at once:

  {"transport": "grpc"|"http", "signal": "metrics"|"traces"|"logs",
   "accepted": true|false, "request": {...MessageToDict(preserving_proto_field_name)...}}

"accepted" is false for the requests refused by --fail-first N: the first N requests of
each transport get gRPC UNAVAILABLE / HTTP 503, as an exporter sees during an outage.

When both servers listen it prints exactly one line to stdout, `READY grpc=<port>
http=<port>`, and nothing else there (its log goes to stderr). SIGTERM or SIGINT stops it
with exit code 0.

Run with the venv of tests/tools/install: .cache/tools/venv/bin/python.
"""

import argparse
import base64
import gzip
import json
import logging
import signal
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

log = logging.getLogger("otlp_receiver")

# signal -> (request class, response class)
MESSAGES = {
    "metrics": (
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
    ),
    "traces": (
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
    ),
    "logs": (
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
    ),
}
HTTP_PATHS = {"/v1/metrics": "metrics", "/v1/traces": "traces", "/v1/logs": "logs"}



ID_FIELDS = ("trace_id", "span_id", "parent_span_id")


def hex_ids(value):
    """Trace and span ids as lowercase hex, as OTLP/JSON writes them (the protobuf JSON
    mapping would give base64), so tests compare them with `traceparent` headers."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in ID_FIELDS and isinstance(v, str):
                out[k] = base64.b64decode(v).hex()
            else:
                out[k] = hex_ids(v)
        return out
    if isinstance(value, list):
        return [hex_ids(v) for v in value]
    return value


class Recorder:
    """Appends one JSON line per request to the output file and counts requests per
    transport for --fail-first."""

    def __init__(self, path, fail_first):
        self._file = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self._fail_first = fail_first
        self._seen = {"grpc": 0, "http": 0}

    def record(self, transport, signal_name, request):  # noqa: D401
        """Records the request; returns False when it must be refused (--fail-first)."""
        with self._lock:
            self._seen[transport] += 1
            accepted = self._seen[transport] > self._fail_first
            line = {
                "transport": transport,
                "signal": signal_name,
                "accepted": accepted,
                "request": hex_ids(
                    json_format.MessageToDict(request, preserving_proto_field_name=True)
                ),
            }
            self._file.write(json.dumps(line, sort_keys=False) + "\n")
            self._file.flush()
        log.info("%s %s accepted=%s", transport, signal_name, accepted)
        return accepted

    def close(self):
        with self._lock:
            self._file.close()


def grpc_servicers(recorder):
    """One servicer per OTLP service, each recording and answering Export."""

    def export(signal_name):
        _, response_class = MESSAGES[signal_name]

        def handler(self, request, context):
            if not recorder.record("grpc", signal_name, request):
                context.abort(
                    grpc.StatusCode.UNAVAILABLE, "otlp_receiver: --fail-first"
                )
            return response_class()

        return handler

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
        Export = export("metrics")

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        Export = export("traces")

    class Logs(logs_service_pb2_grpc.LogsServiceServicer):
        Export = export("logs")

    return [
        (metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server, Metrics()),
        (trace_service_pb2_grpc.add_TraceServiceServicer_to_server, Traces()),
        (logs_service_pb2_grpc.add_LogsServiceServicer_to_server, Logs()),
    ]


def make_http_handler(recorder):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as exporters use it

        def log_message(self, fmt, *args):
            log.info("http %s", fmt % args)

        def _reply(self, status, body=b"", content_type="application/x-protobuf"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _read_body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()  # CRLF after the chunk
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))

        def do_POST(self):
            body = self._read_body()
            signal_name = HTTP_PATHS.get(self.path.split("?")[0])
            if signal_name is None:
                self._reply(404, b"unknown path", "text/plain")
                return
            encoding = self.headers.get("Content-Encoding", "identity").lower()
            if encoding == "gzip":
                try:
                    body = gzip.decompress(body)
                except OSError as e:
                    self._reply(400, f"bad gzip body: {e}".encode(), "text/plain")
                    return
            elif encoding != "identity":
                self._reply(415, f"unsupported Content-Encoding {encoding}".encode(), "text/plain")
                return
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            request_class, response_class = MESSAGES[signal_name]
            request = request_class()
            try:
                if content_type == "application/x-protobuf":
                    request.ParseFromString(body)
                elif content_type == "application/json":
                    json_format.Parse(body, request)
                else:
                    self._reply(415, f"unsupported Content-Type {content_type!r}".encode(), "text/plain")
                    return
            except Exception as e:  # DecodeError, ParseError
                self._reply(400, f"cannot decode {signal_name} request: {e}".encode(), "text/plain")
                return
            if not recorder.record("http", signal_name, request):
                self._reply(503, b"otlp_receiver: --fail-first", "text/plain")
                return
            if content_type == "application/json":
                self._reply(200, json_format.MessageToJson(response_class()).encode(), "application/json")
            else:
                self._reply(200, response_class().SerializeToString())

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--http-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--out", required=True, help="JSON lines file, appended to")
    parser.add_argument("--fail-first", type=int, default=0, metavar="N",
                        help="refuse the first N requests of each transport")
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s otlp_receiver %(message)s")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    recorder = Recorder(args.out, args.fail_first)

    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    for add, servicer in grpc_servicers(recorder):
        add(servicer, grpc_server)
    grpc_port = grpc_server.add_insecure_port(f"127.0.0.1:{args.grpc_port}")
    if grpc_port == 0:
        sys.exit(f"otlp_receiver: cannot listen on 127.0.0.1:{args.grpc_port} (gRPC)")
    grpc_server.start()

    httpd = ThreadingHTTPServer(("127.0.0.1", args.http_port), make_http_handler(recorder))
    httpd.daemon_threads = True
    http_thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    http_thread.start()

    print(f"READY grpc={grpc_port} http={httpd.server_address[1]}", flush=True)

    while not stop.wait(0.5):
        pass
    log.info("stopping")
    httpd.shutdown()
    httpd.server_close()
    grpc_server.stop(grace=1).wait()
    recorder.close()


if __name__ == "__main__":
    main()
