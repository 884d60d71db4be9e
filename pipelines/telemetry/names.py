"""The names of the spans, attributes, events and metrics the telemetry emits.

GenAI names follow OpenTelemetry's semantic conventions for generative AI
clients (https://opentelemetry.io/docs/specs/semconv/gen-ai/, spans and
metrics); the ``pipelines.*`` names are this project's, for what those
conventions do not cover (a batch run, its items, the rate budget).
docs/telemetry.md lists each with its unit.
"""

from __future__ import annotations

__all__ = [
    "BATCH_DOWNLOAD_SPAN",
    "BATCH_UPLOAD_SPAN",
    "BATCH_WAIT_SPAN",
    "BUDGET_WAIT_METRIC",
    "BUDGET_WAIT_SPAN",
    "CAPTURE_CONTENT_ENV",
    "COST_METRIC",
    "DURATION_METRIC",
    "ITEMS_METRIC",
    "ITEM_SPAN",
    "RATE_LIMITS_METRIC",
    "RATE_LIMIT_EVENT",
    "REQUESTS_METRIC",
    "RETRIES_METRIC",
    "RETRY_EVENT",
    "RUN_SPAN",
    "SCOPE",
    "SERVICE_SPAN",
    "TOKEN_USAGE_METRIC",
]

# the instrumentation scope of every span and metric
SCOPE = "lc_async_pipelines"

# the env variable the GenAI conventions name for prompt and reply text
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# spans (a model request's is "chat {gen_ai.request.model}", a tool's
# "execute_tool {gen_ai.tool.name}", as the GenAI conventions name them)
RUN_SPAN = "pipelines.run"
ITEM_SPAN = "pipelines.item"
BUDGET_WAIT_SPAN = "pipelines.budget.wait"
BATCH_UPLOAD_SPAN = "pipelines.batch.upload"
BATCH_WAIT_SPAN = "pipelines.batch.wait"
BATCH_DOWNLOAD_SPAN = "pipelines.batch.download"
SERVICE_SPAN = "pipelines.service.request"

# events
RETRY_EVENT = "pipelines.retry"
RATE_LIMIT_EVENT = "pipelines.rate_limit"

# metrics
TOKEN_USAGE_METRIC = "gen_ai.client.token.usage"
DURATION_METRIC = "gen_ai.client.operation.duration"
REQUESTS_METRIC = "pipelines.requests"
RATE_LIMITS_METRIC = "pipelines.rate_limits"
RETRIES_METRIC = "pipelines.retries"
ITEMS_METRIC = "pipelines.items"
COST_METRIC = "pipelines.cost"
BUDGET_WAIT_METRIC = "pipelines.budget.wait"
