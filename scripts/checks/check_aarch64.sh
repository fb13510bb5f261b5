#!/usr/bin/env bash
# Runs a kprune bundle on emulated aarch64 cores and compares it with x86.
#
#   sudo PYTHON=.venv/bin/python bash scripts/checks/check_aarch64.sh BUNDLE [options]
#   sudo PYTHON=.venv/bin/python bash scripts/checks/check_aarch64.sh --root-only
#
# In an arm64 Debian root (mmdebstrap + qemu-user-static, built once and
# cached), installs what docs/DEPLOY.md tells a board user to install for
# this bundle, then runs scripts/checks/aarch64_probe.py — run_bundle.py and the RTMaps
# component (stand-in RTMaps API) on real Fashion-MNIST test images, and with
# --profile the bundle's board-side profiler kprune_profile.py — once per
# emulated core and once on x86 with $PYTHON. Exit 1 when an ARM result
# differs from x86 beyond the bundle's thresholds, or the profiler fails or
# writes a table kprune cannot load (scripts.checks.crosscheck). Beside that
# check it prints the executed aarch64 instructions per inference of every
# .tflite file on every core (kprune's counting; needs Debian's dynamic
# qemu-user and the count venv of --root-only, else it says why in one line).
#
# Options:
#   --cores LIST     emulated cores, comma-separated (default cortex-a53,cortex-a72)
#   --samples N      real test images (default 500)
#   --suite NAME     Debian release of the root (default bookworm; bullseye has Python 3.9)
#   --profile MODEL  also write MODEL's profile plan here (kprune profile --plan-only) and
#                    time it with the bundle's kprune_profile.py on every core
#   --no-updates     the release alone, without SUITE-updates and SUITE-security
#                    (old releases whose update pools the mirror no longer holds)
#   --pin SPEC       constrain an installed package, e.g. numpy==1.24.4 (repeatable)
#   --root DIR       the arm64 root (default ~/.cache/kprune/aarch64-root/SUITE)
#   --out DIR        records, comparison and timings (default runs/aarch64/BUNDLE_NAME)
#   --root-only      no bundle: build the root and the venv that kprune's instruction
#                    counts run in (numpy, ai-edge-litert in /opt/kprune-count/venv), then stop
#   --dry-run        print the commands instead of running them
#   PYTHON=...       (environment) the x86 Python; imports kprune, numpy, Pillow, the runtimes
#
# Re-running reuses the root and the installed packages (a marker file says
# each is complete; an interrupted step starts again). Mounts are made inside
# `unshare --mount` and vanish with it. Emulated timings say nothing about a board.
set -euo pipefail
# Every step is a function and the last line calls main: bash reads the whole
# file before running anything, so editing it during a run cannot derail that run.

die() { echo "Error: $*" >&2; exit 1; }
run() { if ((DRY)); then printf '%q ' "$@"; echo; else "$@"; fi; }
# kprune.latency.emulator.COUNT_VENV names the same folder: the instruction counts run there.
COUNT_VENV=/opt/kprune-count/venv
COUNT_PACKAGES=(--only-binary=:all: numpy ai-edge-litert)

crosscheck() { PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m scripts.checks.crosscheck "$@"; }

enter_root() {  # ROOT CORE CPUINFO BUNDLE OUT REPO COMMAND...
    # Runs inside `unshare --mount --propagation private`: these mounts are this
    # process's own and disappear when it exits.
    local root=$1 core=$2 cpuinfo=$3 bundle=$4 out=$5 repo=$6 pair source target mode name
    shift 6
    mount -t proc proc "$root/proc"
    mount --bind "$cpuinfo" "$root/proc/cpuinfo"  # QEMU shows the host's x86 one
    # XNNPACK's cpuinfo reads the processor lists here; without them it fails to
    # initialize and TFLite falls back to its builtin kernels.
    mount -t sysfs sysfs "$root/sys"
    mount --rbind /dev "$root/dev"
    mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
    for pair in "$bundle:/mnt/bundle:ro" "$repo:/mnt/kprune:ro" "$out:/mnt/out:rw"; do
        IFS=: read -r source target mode <<<"$pair"
        mount --bind "$source" "$root$target"
        mount -o "remount,bind,$mode" "$root$target"
    done
    local forwarded=()
    for name in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_DEFAULT_TIMEOUT http_proxy https_proxy no_proxy; do
        if [[ -n ${!name:-} ]]; then forwarded+=("$name=${!name}"); fi
    done
    local chroot
    chroot=$(command -v chroot)  # looked up before env -i sets the guest's PATH
    exec env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
        PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
        PIP_CERT=/etc/kprune-host-ca.crt QEMU_CPU="$core" "${forwarded[@]}" \
        "$chroot" "$root" /usr/bin/env -C /mnt/bundle "$@"
}

parse_arguments() {
    BUNDLE= CORES=cortex-a53,cortex-a72 SAMPLES=500 SUITE=bookworm ROOT= OUT= DRY=0 UPDATES=1 PROFILE=
    ROOT_ONLY=0
    PINS=()
    while [[ $# -gt 0 ]]; do
        case $1 in
            --cores) CORES=$2; shift 2 ;;
            --samples) SAMPLES=$2; shift 2 ;;
            --suite) SUITE=$2; shift 2 ;;
            --pin) PINS+=("$2"); shift 2 ;;
            --profile) PROFILE=$2; shift 2 ;;
            --root) ROOT=$2; shift 2 ;;
            --out) OUT=$2; shift 2 ;;
            --no-updates) UPDATES=0; shift ;;
            --dry-run) DRY=1; shift ;;
            --root-only) ROOT_ONLY=1; shift ;;
            -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
            -*) die "unknown option $1. Fix: see bash scripts/checks/check_aarch64.sh --help." ;;
            *) [[ -z $BUNDLE ]] || die "one bundle at a time (got $BUNDLE and $1)."; BUNDLE=$1; shift ;;
        esac
    done
    ROOT=${ROOT:-${HOME}/.cache/kprune/aarch64-root/$SUITE}
    IFS=, read -r -a CORE_LIST <<<"$CORES"
    if ((ROOT_ONLY)); then
        [[ -z $BUNDLE && -z $PROFILE ]] || die "--root-only takes no bundle and no --profile. Fix: drop them, or drop --root-only."
        OUT=${OUT:-$REPO/runs/aarch64/root-only}
        return
    fi
    [[ -n $BUNDLE ]] || die "no bundle given. Fix: bash scripts/checks/check_aarch64.sh BUNDLE_DIR (see --help)."
    [[ -f $BUNDLE/manifest.json ]] || die "$BUNDLE is not a kprune bundle (no manifest.json). Fix: pass the folder written by \`kprune bundle\`."
    BUNDLE=$(cd "$BUNDLE" && pwd)
    if [[ -n $PROFILE && ! -f $BUNDLE/kprune_profile.py ]]; then
        die "$BUNDLE has no kprune_profile.py (--profile times the plan with it). Fix: write the bundle again with kprune bundle."
    fi
    OUT=${OUT:-$REPO/runs/aarch64/$(basename "$BUNDLE")}
}

preflight() {
    [[ $(id -u) == 0 ]] || die "building and entering the arm64 root needs root (mmdebstrap, chroot, mount). Fix: run it with sudo."
    local tool binfmt=/proc/sys/fs/binfmt_misc/qemu-aarch64
    for tool in mmdebstrap qemu-aarch64-static unshare chroot; do
        command -v "$tool" >/dev/null || die "$tool is missing. Fix: apt-get install -y qemu-user-static binfmt-support mmdebstrap"
    done
    [[ -f $binfmt ]] && grep -qx enabled "$binfmt" && grep -q '^flags:.*F' "$binfmt" \
        || die "the kernel does not hand aarch64 programs to QEMU (binfmt_misc). Fix: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64"
    "$PYTHON" -c 'import kprune, numpy, PIL' 2>/dev/null \
        || die "$PYTHON cannot import kprune, numpy and PIL. Fix: PYTHON=path/to/kprune/venv/bin/python"
}

timed() {  # timed LABEL COMMAND...: runs it, then records its wall time
    local label=$1 started=$SECONDS
    shift
    "$@"
    echo "$label: $((SECONDS - started)) s" | { ((DRY)) && cat || tee -a "$TIMINGS"; }
}

in_root() {  # in_root CORE COMMAND...: COMMAND inside the root, QEMU emulating CORE
    local core=$1
    shift
    run unshare --mount --propagation private -- bash "$REPO/scripts/checks/check_aarch64.sh" \
        --enter-root "$ROOT" "$core" "$OUT/cpuinfo-$core" "$BUNDLE" "$OUT" "$REPO" "$@"
}

prepare_root_only() {  # no bundle: the count venv's packages, a cpuinfo to enter the root with
    PIP_ARGS=("${COUNT_PACKAGES[@]}")
    VENV=$COUNT_VENV
    BUNDLE=$OUT  # something to mount at /mnt/bundle
    local core
    for core in "${CORE_LIST[@]}"; do
        if ((DRY)); then
            run crosscheck cpuinfo "$core" --out "$OUT/cpuinfo-$core"
        else
            crosscheck cpuinfo "$core" --out "$OUT/cpuinfo-$core"
        fi
    done
}

prepare() {  # the images, one cpuinfo per core, and the pip arguments of this bundle
    if ((DRY)); then
        run crosscheck prepare "$BUNDLE" --out "$OUT" --cores "$CORES" --samples "$SAMPLES"
        PIP_ARGS=(PIP_ARGUMENTS)
    else
        read -r -a PIP_ARGS <<<"$(crosscheck prepare "$BUNDLE" --out "$OUT" --cores "$CORES" --samples "$SAMPLES")"
    fi
    local key
    key=$({ printf '%s\n' "$SUITE" "${PIP_ARGS[@]}" "${PINS[@]}"; cat "$BUNDLE/requirements.txt" 2>/dev/null || true; } | sha256sum | cut -c1-12)
    VENV=/opt/kprune-check/venv-$key
}

build_root() {
    if [[ -f $ROOT/.kprune-root-complete ]]; then echo "arm64 root: reusing $ROOT"; return; fi
    local mirror
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
        | grep -e '^URIs:' -e '^deb ' | grep -o 'https\?://[^ ]*/debian/\?' | head -1 || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    local sources=("deb $mirror $SUITE main")
    if ((UPDATES)); then
        sources+=("deb $mirror $SUITE-updates main" "deb ${mirror%/}-security $SUITE-security main")
    fi
    run rm -rf "$ROOT.partial"
    run mkdir -p "$(dirname "$ROOT")"
    # In its own mount namespace: a killed build leaves no /proc or /dev mounted in the root.
    run unshare --mount --propagation private -- mmdebstrap --architectures=arm64 --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates "$SUITE" "$ROOT.partial" "${sources[@]}"
    run mkdir -p "$ROOT.partial/mnt/bundle" "$ROOT.partial/mnt/kprune" "$ROOT.partial/mnt/out"
    run touch "$ROOT.partial/.kprune-root-complete"
    run mv "$ROOT.partial" "$ROOT"
}

install_requirements() {
    if [[ -f $ROOT$VENV/.complete ]]; then echo "packages: reusing $VENV"; return; fi
    run cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$ROOT/etc/kprune-host-ca.crt"
    run rm -rf "$ROOT$VENV"
    in_root "${CORE_LIST[0]}" python3 -m venv "$VENV"
    local constraints=()
    if ((${#PINS[@]})); then
        ((DRY)) || printf '%s\n' "${PINS[@]}" >"$OUT/pins.txt"
        constraints=(-c /mnt/out/pins.txt)
    fi
    in_root "${CORE_LIST[0]}" "$VENV/bin/python" -m pip install -q "${PIP_ARGS[@]}" "${constraints[@]}"
    if ((!DRY)); then
        in_root "${CORE_LIST[0]}" "$VENV/bin/python" -m pip freeze >"$OUT/pip-freeze.txt"
    fi
    run touch "$ROOT$VENV/.complete"
}

write_plan() {  # the profile plan of --profile MODEL, timed by every probe
    run "$PYTHON" -c 'from kprune.cli import main; main()' profile "$PROFILE" --runtime tflite \
        --plan-only "$OUT/profile-plan"
}

probe_x86() {
    local plan=()
    [[ -z $PROFILE ]] || plan=(--profile-plan "$OUT/profile-plan")
    run env PYTHONDONTWRITEBYTECODE=1 "$PYTHON" "$REPO/scripts/checks/aarch64_probe.py" --bundle "$BUNDLE" \
        --images "$OUT/images" --rtmaps-stub "$REPO/tests/export/rtmaps_stub" --out "$OUT/x86.json" \
        "${plan[@]}"
}

probe_arm() {
    local plan=()
    [[ -z $PROFILE ]] || plan=(--profile-plan /mnt/out/profile-plan)
    in_root "$1" "$VENV/bin/python" /mnt/kprune/scripts/checks/aarch64_probe.py --bundle /mnt/bundle \
        --images /mnt/out/images --rtmaps-stub /mnt/kprune/tests/export/rtmaps_stub \
        --out "/mnt/out/$1.json" "${plan[@]}"
}

main() {
    REPO=$(cd "$(dirname "$0")/../.." && pwd)
    PYTHON=${PYTHON:-python3}
    parse_arguments "$@"
    ((DRY)) || preflight
    mkdir -p "$OUT"
    OUT=$(cd "$OUT" && pwd)
    TIMINGS=$OUT/timings.txt
    ((DRY)) || : >"$TIMINGS"
    if ((ROOT_ONLY)); then
        timed "cpuinfo" prepare_root_only
        timed "arm64 root ($SUITE)" build_root
        timed "packages (${PIP_ARGS[*]} ${PINS[*]})" install_requirements
        echo "total: $SECONDS s" | { ((DRY)) && cat || tee -a "$TIMINGS"; }
        return 0
    fi
    timed "images ($SAMPLES) and cpuinfo" prepare
    [[ -z $PROFILE ]] || timed "profile plan ($PROFILE)" write_plan
    timed "arm64 root ($SUITE)" build_root
    timed "packages (${PIP_ARGS[*]} ${PINS[*]})" install_requirements
    timed "x86 probe" probe_x86
    local core candidates=() status=0
    for core in "${CORE_LIST[@]}"; do
        timed "$core probe" probe_arm "$core"
        candidates+=("$core=$OUT/$core.json")
    done
    run crosscheck compare --bundle "$BUNDLE" --labels "$OUT/images/labels.json" \
        --reference "$OUT/x86.json" --json "$OUT/comparison.json" "${candidates[@]}" \
        | { ((DRY)) && cat || tee "$OUT/comparison.md"; } || status=$?
    # the board's cost beside the agreement: executed instructions of every .tflite file
    run crosscheck counts --bundle "$BUNDLE" --cores "$CORES" --root "$ROOT" --json "$OUT/instructions.json" \
        | { ((DRY)) && cat || tee "$OUT/instructions.md"; }
    echo "total: $SECONDS s" | { ((DRY)) && cat || tee -a "$TIMINGS"; }
    return "$status"
}

if [[ ${1:-} == --enter-root ]]; then
    shift
    enter_root "$@"
else
    main "$@"
    exit
fi
