#!/usr/bin/env bash
# The pip user's path, checked end to end: build the sdist and the wheel once
# (python -m build: the wheel is built from the sdist), check what they hold
# (scripts/checks/check_dist.py), install the wheel in a fresh venv, and from an empty
# scratch folder run `kprune --version` and the README's main command with a
# small --limit; check that the core install has no tensorflow-datasets.
#
#   bash scripts/checks/check_wheel.sh        # in a venv with kprune[dev]; .ci/run calls it
#
# Environment: LIMIT examples per split (default 256); QUICKSTART_OPTIONS,
# extra `kprune prune` options that shorten the run (default: fewer, larger
# steps); KEEP=1 keeps the scratch folder. Prints the seconds of each phase;
# exits non-zero at the first failure. Needs Fashion-MNIST (scripts/checks/fetch_data.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

LIMIT=${LIMIT:-256}
QUICKSTART_OPTIONS=${QUICKSTART_OPTIONS:---filters-per-step 512 --finetune-steps 10 --rank-batches 2}
python=${PYTHON:-python}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/kprune-wheel.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "check_wheel: scratch folder $scratch"; else trap 'rm -rf "$scratch"' EXIT; fi
started=$SECONDS
last=$SECONDS
last_cpu=0
# Wall seconds of each phase, and the CPU seconds (user + sys) its processes used:
# on a machine shared with other jobs the second says more than the first.
phase() {
  local cpu
  times > "$scratch/times"  # this shell's finished children; a builtin, so not inside $(…)
  cpu=$(awk 'NR == 2 { split($1, u, "m"); split($2, s, "m"); printf "%d", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$scratch/times")
  echo "check_wheel: $1 ($((SECONDS - last)) s, CPU $((cpu - last_cpu)) s)"
  last=$SECONDS
  last_cpu=$cpu
}
fail() { echo "check_wheel: FAILED: $1" >&2; exit 1; }

"$python" -m build --outdir "$scratch/dist" . > "$scratch/build.log" 2>&1 \
  || { cat "$scratch/build.log"; fail "python -m build"; }
sdist=$(ls "$scratch"/dist/kprune-*.tar.gz)
wheel=$(ls "$scratch"/dist/kprune-*.whl)
"$python" -m scripts.checks.check_dist "$sdist" "$wheel"
phase "built and checked $(basename "$wheel")"

"$python" -m venv "$scratch/venv"
# --no-compile: no .pyc for all of TensorFlow up front; imports compile what they use.
"$scratch/venv/bin/pip" install -q --no-compile "$wheel"
phase "installed the wheel in a fresh venv ($(du -sm "$scratch/venv" | cut -f1) MB)"

mkdir "$scratch/work"
cd "$scratch/work"  # an empty folder: no models/, no configs/
kprune="$scratch/venv/bin/kprune"
expected="kprune $(basename "$wheel" | cut -d- -f2)"
printed=$("$kprune" --version)
[ "$printed" = "$expected" ] || fail "kprune --version printed '$printed', expected '$expected'"
phase "$printed"

# The README's main command (prune && bundle), the prune shortened.
# shellcheck disable=SC2086  # QUICKSTART_OPTIONS is a list of words
"$kprune" prune --criterion taylor --out runs/quickstart --limit "$LIMIT" $QUICKSTART_OPTIONS \
  || fail "kprune prune from the wheel"
grep -q '"pruned_from": "models/squeezenet1_1_fmnist_sgd.keras"' runs/quickstart/pruned.card.json \
  || fail "the run did not start from the default baseline"
phase "kprune prune --criterion taylor --out runs/quickstart --limit $LIMIT $QUICKSTART_OPTIONS, in $PWD"
"$kprune" bundle runs/quickstart/pruned.keras --out runs/quickstart/bundle \
  && [ -f runs/quickstart/bundle/manifest.json ] || fail "kprune bundle from the wheel"
phase "kprune bundle runs/quickstart/pruned.keras --out runs/quickstart/bundle"

# The core install leaves out the extras (tests/data/test_cifar10.py checks the error then).
"$scratch/venv/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('tensorflow_datasets') is not None)" \
  || fail "tensorflow-datasets came with the core install; it belongs to the cifar10 extra"

sizes="wheel $(du -k "$wheel" | cut -f1) kB, sdist $(du -k "$sdist" | cut -f1) kB"
if [ "${KEEP:-0}" != 1 ]; then
  cd /
  rm -rf "$scratch/venv"
  phase "removed the venv"
fi
echo "check_wheel: passed in $((SECONDS - started)) s (CPU $last_cpu s); $sizes"
