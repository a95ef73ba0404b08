"""A progress bar on stderr: tqdm when it is installed, else a plain one of our own."""
from __future__ import annotations

import sys
import time


class _Plain:
    """tqdm's few methods the benchmarks use, drawn with \\r on a terminal, or as a line every
    few seconds when stderr is a file."""

    def __init__(self, total: int, description: str, stream=None):
        self.total, self.count, self.description, self.note = total, 0, description, ""
        self.stream = stream or sys.stderr
        self.terminal = getattr(self.stream, "isatty", lambda: False)()
        self.started = self.drawn = time.monotonic()

    def update(self, count: int = 1) -> None:
        self.count += count
        now = time.monotonic()
        if self.terminal or now - self.drawn >= 5 or self.count >= self.total:
            self.drawn = now
            self._draw()

    def set_postfix_str(self, note: str) -> None:
        self.note = note

    def refresh(self) -> None:
        self._draw()

    def _draw(self) -> None:
        total = max(self.total, self.count, 1)
        width = 30
        filled = int(width * self.count / total)
        elapsed = time.monotonic() - self.started
        text = (f"{self.description} [{'#' * filled}{'.' * (width - filled)}] "
                f"{self.count}/{total} {elapsed:5.0f}s {self.note}")
        if self.terminal:
            self.stream.write("\r" + text[:119].ljust(119))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.terminal:
            self.stream.write("\n")
            self.stream.flush()


class _Silent:
    total = 0

    def update(self, count: int = 1) -> None:
        pass

    def set_postfix_str(self, note: str) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, description: str, enabled: bool = True):
    """An object with update(k), set_postfix_str(s), refresh(), close() and a settable total."""
    if not enabled:
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Plain(total, description)
    return tqdm(total=total, desc=description, file=sys.stderr, leave=True,
                dynamic_ncols=True, mininterval=0.5)
