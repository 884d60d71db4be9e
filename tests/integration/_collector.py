"""A real OTLP receiver for the tests (Arize Phoenix) and a small client that reads spans back.

``running_collector()`` starts Phoenix (benchmarks/phoenix_server.py:
installed once per machine in its own virtualenv, a fresh server on free
loopback ports with its data in a temporary folder) and yields a
:class:`Collector`: ``endpoint`` for ``OTEL_EXPORTER_OTLP_ENDPOINT`` and
``spans()`` / ``wait_for()`` to read what arrived, by trace id and span name,
with attributes (typed as sent) and events.

Phoenix files spans under the project named by the resource attribute
``openinference.project.name`` (else ``default``); the client searches every
project. On ingest Phoenix adds OpenInference attributes derived from the
GenAI ones it recognises (``llm.token_count.prompt`` from
``gen_ai.usage.input_tokens``, ...): attributes sent come back as sent, next
to those (see ``PHOENIX_ADDED``). Its REST API does not return the OTLP
span kind (every span reads INTERNAL), so spans here have none.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from benchmarks.phoenix_server import Phoenix, spawn

__all__ = ["PHOENIX_ADDED", "Collector", "ReceivedEvent", "ReceivedSpan", "running_collector"]

# attribute namespaces Phoenix fills in itself (OpenInference), never sent by us
PHOENIX_ADDED = ("llm.", "openinference.", "input.", "output.")

# OTLP's status codes as numbers (trace.proto: STATUS_CODE_UNSET, _OK, _ERROR)
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2


def _value(any_value: dict[str, Any]) -> Any:
    """An OTLP AnyValue (as Phoenix's JSON spells it) as a Python value."""
    if any_value.get("array_value") is not None:
        return [_value(v) for v in any_value["array_value"].get("values") or []]
    if any_value.get("kvlist_value") is not None:
        return _attributes(any_value["kvlist_value"].get("values"))
    for key in ("string_value", "bool_value", "int_value", "double_value", "bytes_value"):
        if any_value.get(key) is not None:
            return any_value[key]
    return None


def _attributes(pairs: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {pair["key"]: _value(pair["value"]) for pair in pairs or []}


@dataclass(frozen=True)
class ReceivedEvent:
    """A span event as the receiver stored it."""

    name: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    """A span as the receiver stored it (ids as lowercase hex, as OTLP/JSON spells them)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    attributes: dict[str, Any]
    events: list[ReceivedEvent] = field(default_factory=list)
    status_code: int = STATUS_UNSET
    status_message: str | None = None
    start_ns: int = 0
    end_ns: int = 0

    @classmethod
    def from_otlp_json(cls, span: dict[str, Any]) -> ReceivedSpan:
        status = span.get("status") or {}
        return cls(
            trace_id=span["trace_id"],
            span_id=span["span_id"],
            parent_span_id=span.get("parent_span_id") or None,
            name=span["name"],
            attributes=_attributes(span.get("attributes")),
            events=[
                ReceivedEvent(e["name"], _attributes(e.get("attributes")))
                for e in span.get("events") or []
            ],
            status_code=int(status.get("code") or STATUS_UNSET),
            status_message=status.get("message"),
            start_ns=int(span.get("start_time_unix_nano") or 0),
            end_ns=int(span.get("end_time_unix_nano") or 0),
        )

    def sent_attributes(self) -> dict[str, Any]:
        """The attributes less those Phoenix added itself (``PHOENIX_ADDED``)."""
        return {k: v for k, v in self.attributes.items() if not k.startswith(PHOENIX_ADDED)}

    def events_named(self, name: str) -> list[ReceivedEvent]:
        return [event for event in self.events if event.name == name]


@dataclass
class Collector:
    """A running receiver: where to send OTLP, and what it received.

    Attributes:
        endpoint: for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (OTLP over HTTP, the
            exporter appends ``/v1/traces``).
        traces_url: the full OTLP/HTTP traces URL, for an exporter given one.
        server: the Phoenix server (its URL, gRPC endpoint, log file).
    """

    endpoint: str
    traces_url: str
    server: Phoenix
    _http: httpx.Client

    def _projects(self) -> list[str]:
        response = self._http.get("/v1/projects", params={"limit": 100})
        response.raise_for_status()
        return [project["name"] for project in response.json()["data"]]

    def spans(self, *, trace_id: str | None = None, name: str | None = None) -> list[ReceivedSpan]:
        """Every span received so far, of ``trace_id`` and named ``name`` when given, oldest first."""
        params: dict[str, Any] = {"limit": 1000}
        if trace_id is not None:
            params["trace_id"] = trace_id
        if name is not None:
            params["name"] = name
        found: list[ReceivedSpan] = []
        for project in self._projects():
            cursor: str | None = None
            while True:
                page = {**params, **({"cursor": cursor} if cursor else {})}
                response = self._http.get(f"/v1/projects/{project}/spans/otlpv1", params=page)
                response.raise_for_status()
                body = response.json()
                found.extend(ReceivedSpan.from_otlp_json(span) for span in body["data"])
                cursor = body.get("next_cursor")
                if not cursor:
                    break
        return sorted(found, key=lambda span: (span.start_ns, span.span_id))

    def wait_for(
        self,
        count: int,
        *,
        trace_id: str | None = None,
        name: str | None = None,
        timeout_s: float = 60.0,
        settle_s: float = 1.0,
    ) -> list[ReceivedSpan]:
        """Poll until at least ``count`` such spans arrived, and no more for ``settle_s``; return them.

        Phoenix inserts what it receives in batches: the settling lets the
        spans of a trace that were not counted (a number the caller cannot
        know) land too.

        Raises:
            AssertionError: fewer arrived within ``timeout_s``; the message lists those that did.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.spans(trace_id=trace_id, name=name)
            if len(spans) >= count:
                while True:
                    time.sleep(settle_s)
                    again = self.spans(trace_id=trace_id, name=name)
                    if len(again) == len(spans):
                        return again
                    spans = again
            if time.monotonic() > deadline:
                names = sorted(span.name for span in spans)
                raise AssertionError(
                    f"{len(spans)} of {count} spans (trace {trace_id}, name {name}) "
                    f"arrived in {timeout_s:.0f} s: {names}; server log: {self.server.log}"
                )
            time.sleep(0.25)


@contextmanager
def running_collector() -> Iterator[Collector]:
    """Start Phoenix (installing it first if needed), yield a :class:`Collector`, stop it after."""
    with (
        spawn() as server,
        httpx.Client(base_url=server.url, timeout=30, trust_env=False) as http,
    ):
        yield Collector(server.otlp_endpoint, server.traces_url, server, http)
