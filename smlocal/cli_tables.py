"""The CLI's tables: aligned columns through rich, statuses coloured on a terminal, plain text when piped.

On a terminal the table fits the window (long detail columns are cut with an ellipsis, names are
never wrapped); piped or redirected, it is plain text with no ANSI codes and no width limit, one
row a line, so that ``grep``/``awk`` and tests read it as they read any aligned table.
"""

from __future__ import annotations

import io
import sys
from typing import Iterable, Sequence, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

# AWS's statuses (jobs, pipeline executions and steps, images) → rich style
STATUS_STYLES = {
    "Completed": "green", "Succeeded": "green", "present": "green",
    "Failed": "bold red", "missing": "red",
    "InProgress": "yellow", "Executing": "yellow", "Starting": "yellow",
    "Stopping": "magenta", "Stopped": "magenta",
    "Skipped": "dim", "NotStarted": "dim",
}
PLAIN_WIDTH = 100_000  # piped output is never cut or wrapped


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (stdout by default) is an interactive terminal."""
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def status_text(status: str) -> Text:
    """``status`` as text in its colour (the colour shows only on a terminal)."""
    return Text(str(status), style=STATUS_STYLES.get(str(status), ""))


def build_table(header: Sequence[str], rows: Iterable[Sequence], *, status_column: int | None = None,
                shrink_column: int | None = None) -> Table:
    """A borderless table of ``rows`` under ``header``.

    Args:
        header: the column titles.
        rows: one sequence of cells per row (``None`` is shown empty).
        status_column: index of the column coloured by :data:`STATUS_STYLES`.
        shrink_column: index of the one column cut with an ellipsis when the terminal is narrow
            (a free-text detail); every other column keeps its full width.
    """
    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
    for index, title in enumerate(header):
        shrink = index == shrink_column
        table.add_column(title, no_wrap=True, overflow="ellipsis" if shrink else "ignore",
                         min_width=len(title) if not shrink else min(len(title), 10), ratio=1 if shrink else None)
    for row in rows:
        cells = ["" if cell is None else cell for cell in row]
        rendered = [status_text(cell) if index == status_column else Text(str(cell))
                    for index, cell in enumerate(cells)]
        table.add_row(*rendered)
    return table


def render(renderable, stream: TextIO | None = None) -> None:
    """Prints a rich renderable: styled to a terminal, as plain right-trimmed lines otherwise."""
    stream = stream or sys.stdout
    if is_terminal(stream):
        Console(file=stream).print(renderable)
        return
    buffer = io.StringIO()
    Console(file=buffer, width=PLAIN_WIDTH, color_system=None, force_terminal=False,
            legacy_windows=False).print(renderable)
    for line in buffer.getvalue().splitlines():
        stream.write(line.rstrip() + "\n")
    stream.flush()


def print_table(header: Sequence[str], rows: Iterable[Sequence], *, status_column: int | None = None,
                shrink_column: int | None = None, stream: TextIO | None = None) -> None:
    """Prints :func:`build_table` of the arguments (see :func:`render`)."""
    rows = list(rows)
    render(build_table(header, rows, status_column=status_column, shrink_column=shrink_column), stream)


def short_arn(arn: str) -> str:
    """The resource part of an ARN (``training-job/NAME``, ``pipeline/P/execution/ID``); anything else as is."""
    parts = str(arn).split(":", 5)
    return parts[5] if len(parts) == 6 and parts[0] == "arn" else str(arn)
