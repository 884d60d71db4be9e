"""``python -m lc_async_pipelines``: the command line."""

from lc_async_pipelines.cli import main

raise SystemExit(main())
