"""The commands of ``pipelines``, one module each (pip's ``commands/`` layout).

Each module registers its subparser with ``add_parser(sub, formatter)``,
which sets ``execute``: the function that runs the command on the parsed
arguments and returns its :class:`~lc_async_pipelines.cli.exit_codes.ExitCode`.
Module tops import the standard library only; each command imports what it
runs (LangChain, the runner, the service) inside its functions.
"""

__all__: list[str] = []
