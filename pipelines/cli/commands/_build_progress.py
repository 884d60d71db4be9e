"""A progress line on stderr while llama-server builds: rich's bar on a terminal, lines off one."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from lc_async_pipelines._llama_build import LLAMA_CPP_PYTHON_VERSION, BuildProgress

_PHASES = {
    "waiting": "waiting for another process's build",
    "download": f"download llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} source",
    "configure": "configure (cmake)",
    "compile": "compile",
    "done": "built",
}


class BuildDisplay:
    """A :data:`~lc_async_pipelines._llama_build.ProgressCallback` that draws the build's progress.

    On a terminal: one line with the phase, a bar through the compile, the
    percentage and the time elapsed. Off a terminal: one plain line per phase
    and per tenth of the compile. Nothing is shown unless a build happens.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._shown: tuple[str, int] | None = None

    def __call__(self, progress: BuildProgress) -> None:
        """Show ``progress``: a phase of the build and how far its compile is."""
        if progress.phase in ("waiting", "download"):
            self.console.print(
                "building llama-server once for this machine: about 5 minutes on 2 cores; "
                f"output in {progress.log_path}",
                highlight=False,
            )
        if self.console.is_terminal:
            self._draw(progress)
        else:
            self._print(progress)

    def _draw(self, progress: BuildProgress) -> None:
        if self._progress is None:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("llama-server: {task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._progress.start()
            self._task = self._progress.add_task(_PHASES[progress.phase], total=100)
        assert self._task is not None
        completed = 100 if progress.phase == "done" else progress.percent or 0
        self._progress.update(self._task, description=_PHASES[progress.phase], completed=completed)

    def _print(self, progress: BuildProgress) -> None:
        tenth = int((progress.percent or 0) // 10)
        if self._shown == (progress.phase, tenth):
            return
        self._shown = (progress.phase, tenth)
        percent = "" if progress.percent is None else f" {progress.percent:.0f}%"
        minutes, seconds = divmod(int(progress.elapsed_s), 60)
        self.console.print(
            f"llama-server: {_PHASES[progress.phase]}{percent} ({minutes}:{seconds:02})",
            highlight=False,
        )

    def __enter__(self) -> BuildDisplay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
