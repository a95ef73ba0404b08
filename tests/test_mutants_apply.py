"""Every planted bug of the mutation check (tests/mutants.py) still applies to the code as it is.

The mutation run itself takes tens of minutes and runs on request; this only checks that each
mutant's target text is found exactly once, so that moving code cannot silently retire a mutant.
"""
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).with_name("mutants.py")


def test_every_mutant_still_finds_its_target_text():
    run = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
