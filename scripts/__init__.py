"""Programs around kprune, not part of it (not in the wheel). Run them from the repository root
as modules, e.g. ``python -m scripts.experiments.results_seeds``; shell scripts with ``bash``.

- ``experiments/``: what produces the numbers of docs/RESULTS.md (reproduce*.sh run the
  experiments, results*.py write their sections, bench_defaults, criterion_oracle, accuracy_tflite).
- ``benchmarks/``: timings of kprune itself (bench_*.py), printed as ratios measured in one run.
- ``checks/``: CI and checks (fetch_data.sh, check_wheel.sh, check_dist.py, check_aarch64.sh with
  aarch64_probe.py and crosscheck.py, gen_supported.py, shipped_bundles.py: writes and checks models/*_bundle).
- ``common.py``: the one helper module they share (JSON, doc sections, the budget pick).
"""
