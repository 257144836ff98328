"""igaudit benchmarks: `python -m benchmarks.run` (what `make bench` runs) prints ratios measured
side by side in one run and writes benchmarks/RESULTS.md. Not timed tests: nothing here asserts."""
