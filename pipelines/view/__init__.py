"""``pipelines view``: a live page of a run, read from its records, summary and manifest.

Modules, by idea:

- :mod:`.tail`: complete lines of the records file from an offset, as it grows;
- :mod:`.stats`: the figures (the summary's counts, histograms, series, failures);
- :mod:`.index`: the table in pages (line offsets), and a search of bounded cost;
- :mod:`.watch`: one run followed (records, manifest, summary, lock);
- :mod:`.app`: the page and its JSON, behind the service's guards.

Opening a run costs memory for the index (9 bytes a record) and the
figures (bounded), not for the records: the file is never loaded whole.
"""

from lc_async_pipelines.view.app import create_view_app
from lc_async_pipelines.view.watch import RunWatch

__all__ = ["RunWatch", "create_view_app"]
