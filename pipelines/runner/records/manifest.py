"""What a records file belongs to: the :class:`RunManifest` beside it, and its fingerprint."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lc_async_pipelines.runner.records.paths import manifest_path

__all__ = [
    "MANIFEST_FORMAT",
    "RunManifest",
    "chain_fingerprint",
    "manifest_text",
    "other_run",
    "read_manifest",
]


MANIFEST_FORMAT = 1
"""Version of the manifest layout; a newer one is refused rather than misread."""


def chain_fingerprint(parts: Mapping[str, Any]) -> str:
    """Return the sha256 (hex) of what defines a chain, for :attr:`RunManifest.fingerprint`.

    Args:
        parts: JSON-able values that define the chain, e.g. ``{"target": "story",
            "options": {"max_words": 80}, "prompt": <prompt text>, "schema":
            <schema text>}``. Keys are sorted; values that are not JSON types
            are hashed by ``str()``.

    Returns:
        64 hex characters; equal parts give an equal fingerprint in any process.
    """
    canonical = json.dumps(
        parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RunManifest:
    """What a records file belongs to, stored beside it as ``OUTPUT.manifest.json``.

    A resume must have the same ``fingerprint`` and ``model``; the other fields
    describe the run for people and tools. Build one with :meth:`new`;
    :func:`open_run` fills ``created_at``, ``sessions`` and ``wall_s`` from the
    manifest already there.

    Attributes:
        format: manifest layout version (:data:`MANIFEST_FORMAT`).
        pipeline: what runs: a registered name, ``module:attr``, or a prompt file path.
        fingerprint: sha256 hex over what defines the chain (target, options,
            prompt text, schema), computed by the caller (:func:`chain_fingerprint`).
        model: the model, stable across sessions and without secrets (name,
            provider or endpoint; no key, no port of a throwaway server).
        input: the input path as given.
        input_resolved: the input path made absolute.
        created_at: when the run's first session started (ISO 8601, UTC).
        sessions: sessions that opened this output, the current one included.
        wall_s: wall time of the sessions that finished (seconds; one killed
            by ``kill -9`` never finished and is not counted).
        options: the pipeline's options, for reading (the fingerprint covers them).
        items: items in the input (cut to ``--limit``) as this session counted
            them; None when not counted (too large, or a caller that does not say).
        limits: the budget this session set: ``rpm``, ``tpm`` (per minute) and
            ``max_in_flight``, those given only.
        session_started_at: when this session started (ISO 8601, UTC); None
            in manifests written before it was kept.
    """

    pipeline: str
    fingerprint: str
    model: str
    input: str
    input_resolved: str
    created_at: str
    sessions: int = 1
    wall_s: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    items: int | None = None
    limits: dict[str, float] = field(default_factory=dict)
    session_started_at: str | None = None
    format: int = MANIFEST_FORMAT

    @classmethod
    def new(
        cls,
        *,
        pipeline: str,
        fingerprint: str,
        model: str,
        input: Path,
        options: Mapping[str, Any] | None = None,
        items: int | None = None,
        limits: Mapping[str, float | None] | None = None,
    ) -> RunManifest:
        """Return the manifest of a session starting now.

        Args:
            pipeline: registered name, ``module:attr`` or prompt file path.
            fingerprint: sha256 hex of what defines the chain (:func:`chain_fingerprint`).
            model: stable model description without secrets.
            input: the input file, as given on the command line.
            options: the pipeline's options.
            items: items in the input, if counted.
            limits: ``rpm``, ``tpm``, ``max_in_flight``; None values are left out.
        """
        now = datetime.now(UTC).isoformat(timespec="seconds")
        return cls(
            pipeline=pipeline,
            fingerprint=fingerprint,
            model=model,
            input=str(input),
            input_resolved=str(input.resolve()),
            created_at=now,
            options=dict(options or {}),
            items=items,
            limits={k: v for k, v in (limits or {}).items() if v is not None},
            session_started_at=now,
        )

    def trace_attributes(self) -> dict[str, Any]:
        """The run span's attributes (``RunOptions.trace_attributes``): no secret in any.

        ``pipelines.pipeline``, ``pipelines.fingerprint``, ``pipelines.model``
        (:attr:`model`: the model and where it is served, so not the GenAI
        conventions' bare ``gen_ai.request.model``, which each request's span
        carries), ``pipelines.input`` (the path as given) and
        ``pipelines.options`` (JSON).
        """
        return {
            "pipelines.pipeline": self.pipeline,
            "pipelines.fingerprint": self.fingerprint,
            "pipelines.model": self.model,
            "pipelines.input": self.input,
            "pipelines.options": json.dumps(self.options, sort_keys=True, default=str),
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest as written to ``OUTPUT.manifest.json``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> RunManifest:
        """Read a manifest written by :meth:`to_dict` (unknown keys are ignored).

        Raises:
            ValueError: not an object, a missing or mistyped field, or a newer format.
        """
        if not isinstance(data, dict):
            msg = "not a JSON object"
            raise ValueError(msg)
        version = data.get("format")
        if not isinstance(version, int) or isinstance(version, bool):
            msg = "no format number"
            raise ValueError(msg)
        if version > MANIFEST_FORMAT:
            msg = f"format {version} is newer than this version reads ({MANIFEST_FORMAT})"
            raise ValueError(msg)
        text = ("pipeline", "fingerprint", "model", "input", "input_resolved", "created_at")
        for name in text:
            if not isinstance(data.get(name), str):
                msg = f"{name!r} is missing or not a string"
                raise ValueError(msg)
        sessions, wall_s = data.get("sessions"), data.get("wall_s", 0.0)
        if not isinstance(sessions, int) or isinstance(sessions, bool) or sessions < 0:
            msg = "'sessions' is missing or not a count"
            raise ValueError(msg)
        if not isinstance(wall_s, int | float) or isinstance(wall_s, bool) or wall_s < 0:
            msg = "'wall_s' is not a number of seconds"
            raise ValueError(msg)
        options = data.get("options", {})
        if not isinstance(options, dict):
            msg = "'options' is not an object"
            raise ValueError(msg)
        return cls(
            **{name: data[name] for name in text},
            sessions=sessions,
            wall_s=float(wall_s),
            options=options,
            format=version,
            **_described(data),
        )


def _described(data: dict[str, Any]) -> dict[str, Any]:
    """The optional fields that describe a session (items, limits, start); mistyped ones dropped.

    They are for reading only (``pipelines view``), so a wrong one is left
    out rather than refusing the run's manifest.
    """
    items, limits, started = data.get("items"), data.get("limits"), data.get("session_started_at")
    counted = isinstance(items, int) and not isinstance(items, bool) and items >= 0
    numbers = {
        str(k): float(v)
        for k, v in (limits.items() if isinstance(limits, dict) else ())
        if isinstance(v, int | float) and not isinstance(v, bool) and v > 0
    }
    return {
        "items": items if counted else None,
        "limits": numbers,
        "session_started_at": started if isinstance(started, str) else None,
    }


def manifest_text(manifest: RunManifest) -> str:
    """Return ``manifest`` as written to ``OUTPUT.manifest.json``: UTF-8 text.

    A path that is not valid UTF-8 (a file name's bytes, decoded by Python with
    ``surrogateescape``) is written with ASCII escapes, which read back as the
    same path.
    """
    data = manifest.to_dict()
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, indent=2) + "\n"
    return text


def read_manifest(output: Path) -> RunManifest | None:
    """The manifest beside ``output``, None when there is none.

    Raises:
        ValueError: it is not a manifest this version reads (the message says why).
    """
    path = manifest_path(output)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        msg = "not JSON"
        raise ValueError(msg) from None
    return RunManifest.from_dict(data)


def other_run(found: RunManifest, ours: RunManifest) -> str | None:
    """Say how ``found`` is another run than ``ours``, or None when it is the same run."""
    if found.fingerprint != ours.fingerprint:
        return (
            f"chain {found.pipeline} {found.fingerprint[:12]} there, "
            f"{ours.pipeline} {ours.fingerprint[:12]} here"
        )
    if found.model != ours.model:
        return f"model {found.model!r} there, {ours.model!r} here"
    return None
