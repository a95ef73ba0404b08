"""`python -m softjit.bench`: the same as `python -m softjit bench` (and `... tune`)."""
import sys

from .cli import main

sys.exit(main())
