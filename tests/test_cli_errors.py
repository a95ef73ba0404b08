"""Every error the command line reports is one line `softjit COMMAND: message` on stderr and exit
status 2, whichever command it comes from (a bad option value, an unknown name, a path that
cannot be written); SOFTJIT_DEBUG=1 shows the traceback instead; a bug (any other exception) is
never hidden behind a one-line message."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from softjit import __main__ as cli


@pytest.fixture
def run_cli(tmp_path: Path):
    """`python -m softjit ARGS` in a child with an empty cache and none of the user's settings."""
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("SOFTJIT_")}
    environment["SOFTJIT_CACHE_DIR"] = str(tmp_path / "cache")

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "softjit", *args], capture_output=True,
                              text=True, timeout=120, env={**environment, **extra})

    return run


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], command: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"softjit {command}: "), lines[0]


@pytest.mark.parametrize("args, command, named", [
    (("bench", "--algorithms", "nope"), "bench", "'nope'"),  # an unknown name from bench/cli.py
    (("bench", "--sizes", "-5"), "bench", "'-5'"),  # a bad value
    (("build", "--isa", "avx2", "--out", "/proc/softjit-nope"), "build", "/proc/softjit-nope"),
])
def test_command_errors_are_one_line_with_status_2(run_cli, args, command, named) -> None:
    result = run_cli(*args)
    assert_one_line_exit_2(result, command)
    assert named in result.stderr


def test_softjit_debug_shows_the_traceback(run_cli) -> None:
    result = run_cli("bench", "--algorithms", "nope", SOFTJIT_DEBUG="1")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ValueError: unknown algorithm 'nope'" in result.stderr


def test_softjit_debug_0_keeps_the_one_line(run_cli) -> None:
    assert_one_line_exit_2(run_cli("bench", "--algorithms", "nope", SOFTJIT_DEBUG="0"), "bench")


def every_command_runs(monkeypatch, handler) -> None:
    """Make every command's handler `handler`."""
    real_parser = cli._parser

    def parser():
        p = real_parser()
        for action in p._subparsers._group_actions:
            for sub in action.choices.values():
                sub.set_defaults(handler=handler)
        return p

    monkeypatch.setattr(cli, "_parser", parser)
    monkeypatch.delenv(cli.DEBUG_ENV_VARIABLE, raising=False)


def test_a_bug_is_not_turned_into_a_usage_message(monkeypatch) -> None:
    """Only softjit's own errors, ValueError/TypeError from arguments and OSError are reported
    in one line; anything else is a bug and propagates with its traceback."""
    def broken(args):
        raise ZeroDivisionError("a bug")

    every_command_runs(monkeypatch, broken)
    with pytest.raises(ZeroDivisionError):
        cli.main(["info"])


@pytest.mark.parametrize("error", [TypeError("bad type"), OSError(5, "Input/output error")])
def test_type_and_os_errors_are_reported_in_one_line(monkeypatch, capsys, error) -> None:
    def failing(args):
        raise error

    every_command_runs(monkeypatch, failing)
    assert cli.main(["info"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("softjit info: ")


@pytest.mark.parametrize("isa", [["avx2"], {"avx2"}, 3])
def test_an_isa_that_is_not_a_string_is_named_with_the_valid_ones(isa) -> None:
    import numpy as np

    import softjit

    x = np.ones((2, 3), np.float32)
    for function in (softjit.softmax, softjit.exp):
        with pytest.raises(TypeError, match=r"isa must be a string, one of auto, .*avx2") as raised:
            function(x, isa=isa)
        assert repr(isa) in str(raised.value)
