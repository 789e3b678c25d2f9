"""agentfleet bench: benchmark suites with stored samples, baselines, regression detection and A/B.

``load_suite`` reads a suite (YAML), ``run_suite`` / ``run_ab`` sample it in worker processes,
``BenchStore`` keeps every raw sample with the environment and named baselines, and ``compare`` /
``compare_many`` (Mann-Whitney U, a bootstrap CI of the median ratio, Benjamini-Hochberg and a
practical threshold) decide faster / slower / no change; ``confirm`` makes a regression stand only
when a rerun shows it too. ``render_bench_html`` draws the distributions.
"""

from ._chart import render_bench_html
from ._runner import BenchError, BenchResult, environment, run_ab, run_benchmark, run_suite
from ._stats import Comparison, benjamini_hochberg, compare, compare_many, confirm, ratio_ci
from ._store import BenchRun, BenchStore
from ._suite import BenchSettings, BenchSpec, SuiteSpec, load_suite

__all__ = [
    "BenchError",
    "BenchResult",
    "BenchRun",
    "BenchSettings",
    "BenchSpec",
    "BenchStore",
    "Comparison",
    "SuiteSpec",
    "benjamini_hochberg",
    "compare",
    "compare_many",
    "confirm",
    "environment",
    "load_suite",
    "ratio_ci",
    "render_bench_html",
    "run_ab",
    "run_benchmark",
    "run_suite",
]
