"""igaudit benchmarks: `python -m benchmarks.run` (what `make bench` runs) prints ratios measured
side by side in one run and writes benchmarks/RESULTS.md. Not timed tests: nothing here asserts."""
import importlib

# Before anything imports TensorFlow: the benchmark's own process (bare engine, rules) then runs
# with igaudit's oneDNN setting, as `igaudit run` does (igaudit.transforms: transforms/__init__.py). The
# throughput workers set TF_ENABLE_ONEDNN_OPTS themselves, which this leaves alone.
importlib.import_module("igaudit.transforms")
