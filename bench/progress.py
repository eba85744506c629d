"""Progress of a long run: a rich progress bar on a terminal, else a line per step on stderr."""
import sys
import time


class Progress:
    def __init__(self, total):
        self.total, self.done, self.bar, self.start = total, 0, None, time.perf_counter()

    def __enter__(self):
        try:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar,
                                       TextColumn, TimeElapsedColumn, TimeRemainingColumn)
        except ImportError:
            Bar = None
        if Bar is not None and sys.stderr.isatty():
            self.bar = Bar(TextColumn("{task.description:<34}"), BarColumn(),
                           MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                           transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task("bench", total=self.total)
        return self

    def advance(self, what):
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=what)
        else:
            print(f"  [{self.done}/{self.total} {time.perf_counter() - self.start:.0f} s] {what}",
                  file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
