"""The pruning loop and its parts: ranking, selection, targets, checkpoints, reports,
the run-dir lock. `loop.prune` is `kprune.prune`."""
