"""Importing kprune — every module of it — leaves the user's process as it was."""

import json
import subprocess
import sys

PROBE = r"""
import json, os, pkgutil, random, importlib
import numpy as np
def state():
    import keras, tensorflow as tf
    from tensorflow.python.framework import config as tf_config
    return {
        "environ": dict(os.environ),
        "determinism": tf_config.is_op_determinism_enabled(),
        "floatx": keras.config.floatx(),
        "image_data_format": keras.config.image_data_format(),
        "python_random": random.random(),
        "numpy_random": float(np.random.random()),
        "tf_seed": tf.random.get_global_generator().state.numpy().tolist(),
    }
import keras, tensorflow as tf  # what the user has loaded already
random.seed(7); np.random.seed(7)
before = state()
random.seed(7); np.random.seed(7)
import kprune
names = [m.name for m in pkgutil.walk_packages(kprune.__path__, "kprune.")
         if ".templates." not in m.name and not m.name.endswith(".templates")]
for name in names:
    importlib.import_module(name)
for public in kprune.__all__:
    getattr(kprune, public)
after = state()
print(json.dumps({"same": before == after, "modules": len(names),
                  "changed": sorted(k for k in before if before[k] != after[k])}))
"""


def test_importing_every_module_changes_no_process_state():
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["modules"] > 40
    assert report["changed"] == [] and report["same"]
