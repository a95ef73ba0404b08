"""`python -m softjit.bench`: the same as `python -m softjit bench` (and `... tune`)."""
import sys

from softjit.bench.cli import main

sys.exit(main())
