"""Files copied into deployment bundles. They import numpy and a runtime, never kprune.

``kprune_runtime`` is also imported by kprune itself (verification,
benchmarks), so that the code that runs on the board is the code that is tested.
"""
