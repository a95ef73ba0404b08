"""softjit's benchmarks: the Two-Pass Softmax paper's experiment on this host, the bandwidth
bound it is judged against, a kernel-parameter sweep and the per-host tuning of "auto".

    python -m softjit bench [--sizes ...] [--out DIR]    the suite (suite.py, report.py)
    python -m softjit bench --sweep                      kernel parameters (sweep.py)
    python -m softjit tune                               the choice table of "auto" (tune.py)

Timing rules live in timing.py, what is timed in candidates.py and peers.py.
"""
