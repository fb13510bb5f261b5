"""Latency as data: per-layer tables measured on a runtime, and predictions built on them.

- `layers`: which layers of a model cost time, keyed by configuration;
- `table`: `LatencyTable`, the measurements and the fitted predictor;
- `profile`: `profile()` measures a table, `write_plan()` prepares one for the board;
- `predict`: `predict_latency()` for a model, `GroupLatency` for channel groups;
- `instructions`: executed aarch64 instructions per inference under QEMU (a table's
  other unit), with `emulator` (QEMU, the arm64 root, the counting plugin).
"""
