"""softjit's version, written here and nowhere else.

pyproject.toml reads it at build time (`dynamic = ["version"]`), `softjit.__version__`, the
command line's `--version`, the kernel cache's key and the tuning table import it from here, so
a source checkout and an installed copy always agree with the package metadata they ship.
"""

__version__ = "0.1.0"
