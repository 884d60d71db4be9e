"""The version of lc-async-pipelines (one place: the wheel and ``--version`` read it)."""

__version__ = "0.2.0"
