"""Progress bars and summary tables for long work (rich), shared by every command."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A context that yields `advance(n=1)`; draws a bar on stderr when `enabled`.

    Work that ends early without an error (training stopped by its patience or time limit)
    leaves a full bar of what was done, not one stuck at 95/150; an error or Ctrl-C leaves it
    where it stopped.
    """
    if not enabled:
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
        bar.update(task, total=bar.tasks[0].completed)


def print_table(title: str, columns: list[str], rows: list[list]) -> None:
    """A short summary table at the end of a command."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    Console().print(table)
