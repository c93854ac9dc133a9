"""bearerguard's benchmark suite (issue 6): in-process, loopback, memory and profiles.

Run ``python -m bench`` (in-process only) or ``make bench`` (everything); see
``python -m bench --help`` and docs/benchmarks.md.
"""
