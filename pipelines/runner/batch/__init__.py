"""The provider's Batch API under any chain: a run's model calls go in batches, at the batch price.

:class:`BatchSession` (:mod:`lc_async_pipelines.runner.batch.session`) parks
each chat call its model would send, submits them in batches and hands the
results back; :class:`BatchOptions` says how, :class:`BatchStats` what it did,
and ``OUTPUT.batches.json`` (:func:`batches_path`) records the batches so a
resumed run waits on them instead of paying twice. A :class:`BatchProvider`
(:mod:`lc_async_pipelines.runner.batch.provider`) talks to one provider's
batch API: OpenAI's (``ChatOpenAI``) and Anthropic's Message Batches
(``ChatAnthropic``, the ``[anthropic]`` extra) ship here, chosen by
:func:`provider_for`.
"""

from lc_async_pipelines.runner.batch.options import (
    BATCH_STATE_FORMAT,
    BatchLimits,
    BatchOptions,
    BatchStats,
)
from lc_async_pipelines.runner.batch.provider import (
    BatchProvider,
    BatchRequest,
    BatchStatus,
    LineResult,
)
from lc_async_pipelines.runner.batch.providers import provider_for
from lc_async_pipelines.runner.batch.session import BatchSession, batches_in_flight
from lc_async_pipelines.runner.records.paths import batches_path

__all__ = [
    "BATCH_STATE_FORMAT",
    "BatchLimits",
    "BatchOptions",
    "BatchProvider",
    "BatchRequest",
    "BatchSession",
    "BatchStats",
    "BatchStatus",
    "LineResult",
    "batches_in_flight",
    "batches_path",
    "provider_for",
]
