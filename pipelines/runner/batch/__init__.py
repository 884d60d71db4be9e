"""The provider's Batch API under any chain: a run's model calls go in batches, at the batch price.

:class:`BatchSession` (:mod:`lc_async_pipelines.runner.batch.session`) parks
each chat call its model would send, submits them in batches and hands the
results back; :class:`BatchOptions` says how, :class:`BatchStats` what it did,
and ``OUTPUT.batches.json`` (:func:`batches_path`) records the batches so a
resumed run waits on them instead of paying twice.
"""

from lc_async_pipelines.runner.batch.options import (
    BATCH_STATE_FORMAT,
    BatchLimits,
    BatchOptions,
    BatchStats,
)
from lc_async_pipelines.runner.batch.session import BatchSession
from lc_async_pipelines.runner.records.paths import batches_path

__all__ = [
    "BATCH_STATE_FORMAT",
    "BatchLimits",
    "BatchOptions",
    "BatchSession",
    "BatchStats",
    "batches_path",
]
