#!/usr/bin/env bash
# Container test, run by .ci/run (make container-test): build the CPU image with podman,
# then run it as a BIDS-App runs on a cluster and check what it wrote.
#
# Usage: tools/container_test.sh [--keep]
#        tools/container_test.sh --docker-image NAME [--keep]
#
#  1. podman, runc and debootstrap come from apt when missing (the build needs root);
#  2. a Debian 12 base image is made offline from this machine's Debian archive
#     (debootstrap --variant=minbase), in a private podman storage under a temp folder;
#  3. the CPU variant of ./Dockerfile is built (the network is used by the build only);
#  4. a tiny dataset is simulated with the image; then the image runs as a uid that it does
#     not know, with --network none, a read-only root filesystem (tmpfs /tmp and HOME) and
#     the dataset mounted read-only: --version, then participant (training) and group,
#     twice, into two output folders with two work folders;
#  5. checked: exit codes, the version, GeneratedBy.Container in dataset_description.json,
#     a synthesized BOLD for every participant, the group table, logs/outputs.sha256
#     (sha256sum -c), the same checksums from both runs, the input unchanged, no compiler
#     in the image.
# With --docker-image, steps 1-3 are skipped: NAME, built with docker and its IMAGE_TAG
# build argument set to NAME, is run with docker (GitHub Actions).
#
# Environment:
#   CONTAINER_TEST_TMPDIR  parent of the temp folder (default /var/tmp; it needs ~15 GB
#                          with podman's overlay driver at the build's peak, the final
#                          stage's commit: measured 14.1 GiB for a 3.3 GB image; more with vfs)
#   DEBIAN_MIRROR          archive for debootstrap (default: this machine's apt source)
#   CA_BUNDLE              PEM bundle that pip trusts in the build (default: the system
#                          bundle, /etc/ssl/certs/ca-certificates.crt; empty: none)
#   STORAGE_DRIVER         overlay or vfs (default: overlay if it works here, else vfs)
#   RUN_UID                uid:gid the image runs as (default 4242:4242; with docker as
#                          a non-root user: that user's)
# --keep leaves the temp folder (storage, dataset, outputs, logs) for inspection.
set -euo pipefail

usage() {
    echo "usage: $0 [--keep] [--docker-image NAME]" >&2
    exit 64
}
keep=0
docker_image=
while [[ $# -gt 0 ]]; do
    case $1 in
        --keep) keep=1 ;;
        --docker-image)
            [[ $# -ge 2 ]] || usage
            docker_image=$2
            shift
            ;;
        *) usage ;;
    esac
    shift
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
base_image=docker.io/library/debian:bookworm-slim
ca_bundle=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
started=$SECONDS
step_started=$SECONDS
timings=()

say() { printf '[container-test] %s\n' "$*" >&2; }
fail() {
    say "FAIL: $*"
    exit 1
}
step() {
    if [[ -n ${current_step:-} ]]; then
        timings+=("$(printf '%5ds  %s' $((SECONDS - step_started)) "$current_step")")
    fi
    current_step=$1
    step_started=$SECONDS
    if [[ -n $1 ]]; then say "== $1"; fi
}

# ---------------------------------------------------------------------------------------
step "prerequisites"
if [[ -z $docker_image && $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        say "not root: running again with sudo"
        exec sudo -n --preserve-env=CONTAINER_TEST_TMPDIR,DEBIAN_MIRROR,CA_BUNDLE,STORAGE_DRIVER,RUN_UID \
            "$0" "$@"
    fi
    fail "needs root (debootstrap, podman with a private storage); no password-less sudo"
fi
if [[ -z $docker_image ]]; then
    missing=()
    for tool in podman runc debootstrap; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        command -v apt-get >/dev/null || fail "missing ${missing[*]}, and no apt-get to install them"
        say "installing podman runc debootstrap with apt"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq podman runc debootstrap >/dev/null
    fi
    say "$(podman --version), runc $(runc --version | sed -n '1s/.* //p')"
else
    command -v docker >/dev/null || fail "--docker-image needs docker"
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    fail "python3 >= 3.11 needed on the host for the checks"
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/bids_eeg2fmri/__init__.py")
[[ -n $version ]] || fail "no __version__ in bids_eeg2fmri/__init__.py"
if [[ $EUID -eq 0 ]]; then
    run_uid=${RUN_UID:-4242:4242}
else
    run_uid=${RUN_UID:-$(id -u):$(id -g)}
fi

tmp=$(mktemp -d "${CONTAINER_TEST_TMPDIR:-/var/tmp}/bids-eeg2fmri-ct.XXXXXX")
runroot=$(mktemp -d /tmp/bids-ct-run.XXXXXX) # podman wants a short path (<= 50 characters)
say "temp folder: $tmp ($(df -h --output=avail "$tmp" | tail -n1 | tr -d ' ') free)"
free_kib=$(df -k --output=avail "$tmp" | tail -n1 | tr -d ' ')
if ((free_kib < 15 * 1024 * 1024)); then
    say "WARNING: the build peaks at ~15 GB in $tmp; $((free_kib / 1024 / 1024)) GiB free" \
        "(a 'no space left on device' below means that; CONTAINER_TEST_TMPDIR picks the disk)"
fi
driver=${STORAGE_DRIVER:-overlay}
storage_conf() { # a storage of our own: no storage setting of this machine leaks in
    printf '[storage]\ndriver = "%s"\ngraphroot = "%s"\nrunroot = "%s"\n' \
        "$driver" "$tmp/storage" "$runroot" >"$tmp/storage.conf"
}
storage_conf
pm() {
    CONTAINERS_STORAGE_CONF=$tmp/storage.conf podman \
        --root "$tmp/storage" --runroot "$runroot" --tmpdir "$tmp/libpod" \
        --storage-driver "$driver" --runtime runc --cgroup-manager cgroupfs \
        --events-backend file "$@"
}
# podman's default limits (nofile 1048576, ...) exceed what runc may set on some machines
# (this one: "error setting rlimit ... operation not permitted"): ask for modest ones.
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
[[ $nofile == unlimited || $nofile -gt 4096 ]] && nofile=4096
[[ $nproc == unlimited || $nproc -gt 4096 ]] && nproc=4096
limits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")

cleanup() {
    local status=$?
    set +e
    step "clean up"
    if [[ $keep -eq 1 ]]; then
        say "kept: $tmp"
        [[ -n $docker_image ]] ||
            say "podman storage: podman --root $tmp/storage --storage-driver $driver ..."
    else
        if [[ -z $docker_image ]]; then
            pm rm --all --force >/dev/null 2>&1
            pm rmi --all --force >/dev/null 2>&1
            # anything podman left mounted under the temp folders, deepest first
            findmnt -rn -o TARGET | grep -F -e "$tmp/" -e "$runroot/" | sort -r |
                xargs -r umount -l 2>/dev/null
        fi
        rm -rf "$tmp"
    fi
    rm -rf "$runroot"
    step ""
    say "timings:"
    printf '[container-test]   %s\n' "${timings[@]}" >&2
    if [[ $status -ne 0 ]]; then
        say "FAILED after $((SECONDS - started)) s (exit $status)"
    else
        say "PASSED in $((SECONDS - started)) s"
    fi
}
trap cleanup EXIT

if [[ -z $docker_image ]]; then
    image=localhost/bids-eeg2fmri:ci-cpu
    engine=(pm)
    # --read-only-tmpfs=false: only the tmpfs asked for, as docker does
    run=(pm run --rm "${limits[@]}" --read-only-tmpfs=false)

    # -----------------------------------------------------------------------------------
    step "base image: debootstrap bookworm (offline from the Debian archive)"
    mirror=${DEBIAN_MIRROR:-}
    if [[ -z $mirror ]]; then
        # this machine's apt source for Debian (deb822 first, then one-line format)
        mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' \
            /etc/apt/sources.list.d/*.sources 2>/dev/null |
            grep -v -e -security -e '^cdrom:' | head -n1 || true)
    fi
    if [[ -z $mirror ]]; then
        mirror=$(sed -n -E 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            grep -v -e -security -e '^cdrom:' | head -n1 || true)
    fi
    mirror=${mirror:-http://deb.debian.org/debian}
    say "mirror: $mirror"
    debootstrap --variant=minbase bookworm "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 || {
        tail -n 20 "$tmp/debootstrap.log" >&2
        fail "debootstrap"
    }
    # The archive of this machine may serve snapshots whose Release files have expired.
    echo 'Acquire::Check-Valid-Until "false";' >"$tmp/rootfs/etc/apt/apt.conf.d/99container-test"
    import_base() {
        tar -C "$tmp/rootfs" -c . | pm import --quiet - "$base_image" >/dev/null
    }
    probe() { # the base image imported and a container started: storage and runtime work
        import_base && pm run --rm --network none "${limits[@]}" "$base_image" true
    } 2>"$tmp/probe.log"
    if ! probe; then
        [[ -z ${STORAGE_DRIVER:-} ]] || fail "podman with $driver storage: $(tail -n1 "$tmp/probe.log")"
        say "overlay storage does not work here ($(tail -n1 "$tmp/probe.log")): vfs (slower)"
        pm rmi --all --force >/dev/null 2>&1 || true
        rm -rf "$tmp/storage" "$tmp/libpod" "${runroot:?}"/*
        driver=vfs
        storage_conf
        probe || fail "podman with vfs storage: $(tail -n1 "$tmp/probe.log")"
    fi
    say "storage driver: $driver"

    # -----------------------------------------------------------------------------------
    step "build the CPU image"
    build_args=(
        --build-arg BASE_IMAGE="$base_image"
        --build-arg VARIANT=cpu
        --build-arg IMAGE_TAG="$image"
        --build-arg VERSION="$version"
        --build-arg VCS_REF="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
        --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    )
    if [[ -n $ca_bundle && -r $ca_bundle ]]; then
        build_args+=(--secret "id=ca-bundle,src=$ca_bundle" --build-arg PIP_CERT=/run/secrets/ca-bundle)
    fi
    pm build --pull=never --network host --layers=false --tag "$image" "${build_args[@]}" \
        --file "$repo/Dockerfile" "$repo" >"$tmp/build.log" 2>&1 || {
        tail -n 40 "$tmp/build.log" >&2
        fail "podman build (whole log kept with --keep)"
    }
else
    image=$docker_image
    engine=(docker)
    run=(docker run --rm)
    docker image inspect "$image" >/dev/null || fail "no docker image $image"
fi
say "image: $image, $("${engine[@]}" image inspect --format '{{.Size}}' "$image" |
    awk '{printf "%.2f GB", $1 / 1e9}')"
label=$("${engine[@]}" image inspect --format '{{index .Config.Labels "org.opencontainers.image.version"}}' "$image")
[[ $label == "$version" ]] || fail "label org.opencontainers.image.version is '$label', not $version"

# ---------------------------------------------------------------------------------------
step "run: --version, simulate a tiny dataset"
run+=(--network none --user "$run_uid" --read-only --tmpfs /tmp --tmpfs /home/bids-eeg2fmri)
own() { # make folders writable by the uid the image runs as
    mkdir -p "$@"
    if [[ $EUID -eq 0 ]]; then chown "$run_uid" "$@"; fi
}
mkdir -p "$tmp/logs"
own "$tmp/sim"

got=$("${run[@]}" "$image" --version)
[[ $got == "bids-eeg2fmri v$version" ]] || fail "--version says '$got', not 'bids-eeg2fmri v$version'"
say "--version: $got"
# shellcheck disable=SC2016 # "$c" expands in the container's shell
compilers=$("${run[@]}" --entrypoint /bin/sh "$image" -c \
    'for c in cc gcc g++ c++ clang; do command -v "$c" || true; done')
[[ -z $compilers ]] || fail "compilers in the image: $compilers"

"${run[@]}" -v "$tmp/sim:/sim" --entrypoint bids-eeg2fmri-simulate "$image" \
    /sim/ds --participants 3 --volumes 40 --channels 12 --grid 12 13 8 --seed 0 \
    >"$tmp/logs/simulate.log" 2>&1 || {
    tail -n 20 "$tmp/logs/simulate.log" >&2
    fail "bids-eeg2fmri-simulate"
}
data=$tmp/sim/ds
tree_state() {
    (cd "$1" && find . -printf '%y %m %s %T@ %p\n' | LC_ALL=C sort &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}
tree_state "$data" >"$tmp/input-before.txt"

# ---------------------------------------------------------------------------------------
app() { # app NAME LEVEL [options]: one analysis level into $tmp/NAME/out, work in $tmp/NAME/work
    local name=$1
    shift
    own "$tmp/$name/out" "$tmp/$name/work"
    "${run[@]}" -v "$data:/data:ro" -v "$tmp/$name/out:/out" -v "$tmp/$name/work:/work" \
        "$image" /data /out "$@" -w /work >"$tmp/logs/$name-$1.log" 2>&1 || {
        local status=$?
        tail -n 30 "$tmp/logs/$name-$1.log" >&2
        fail "$name: $1 level exited $status"
    }
}
for name in first second; do
    step "run ($name): participant --train, then group"
    app "$name" participant --train --epochs 1 --batch-size 8 --model-grid 12 13 8
    app "$name" group
done

# ---------------------------------------------------------------------------------------
step "check the outputs"
out=$tmp/first/out
python3 - "$out/dataset_description.json" "$image" <<'EOF' || fail "dataset_description.json"
import json, sys
description = json.load(open(sys.argv[1], encoding="utf-8"))
container = description["GeneratedBy"][0].get("Container")
expected = {"Type": "docker", "Tag": sys.argv[2]}
if container != expected:
    sys.exit(f"GeneratedBy[0].Container is {container}, expected {expected}")
EOF
for sub in sub-01 sub-02 sub-03; do
    compgen -G "$out/$sub/func/${sub}_*desc-synth_bold.nii.gz" >/dev/null ||
        fail "no $sub/func/*_desc-synth_bold.nii.gz"
done
[[ -s $out/group_desc-synth_metrics.tsv ]] || fail "no group_desc-synth_metrics.tsv"
for name in first second; do
    [[ -s $tmp/$name/out/logs/outputs.sha256 ]] || fail "$name: no logs/outputs.sha256"
    (cd "$tmp/$name/out" && sha256sum --check --quiet --strict logs/outputs.sha256) ||
        fail "$name: logs/outputs.sha256 does not match the files"
done
grep -q ' group_desc-synth_metrics.tsv$' "$out/logs/outputs.sha256" ||
    fail "logs/outputs.sha256 does not list group_desc-synth_metrics.tsv"
say "$(wc -l <"$out/logs/outputs.sha256") files in logs/outputs.sha256"
tree_state "$data" >"$tmp/input-after.txt"
diff -u "$tmp/input-before.txt" "$tmp/input-after.txt" >&2 || fail "the input dataset changed"
say "input unchanged"
if ! diff -u "$tmp/first/out/logs/outputs.sha256" "$tmp/second/out/logs/outputs.sha256" >&2; then
    # name the JSON keys that differ, to tell what is not deterministic
    python3 - "$tmp/first/out" "$tmp/second/out" <<'EOF' >&2 || true
import json, sys
from pathlib import Path
first, second = Path(sys.argv[1]), Path(sys.argv[2])
manifest = lambda root: dict(
    reversed(line.split("  ", 1)) for line in (root / "logs/outputs.sha256").read_text().splitlines()
)
a, b = manifest(first), manifest(second)
def leaves(value, prefix=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, value
for name in sorted(set(a) | set(b)):
    if a.get(name) == b.get(name):
        continue
    if name.endswith(".json") and name in a and name in b:
        one = dict(leaves(json.loads((first / name).read_text())))
        two = dict(leaves(json.loads((second / name).read_text())))
        keys = sorted(k for k in set(one) | set(two) if one.get(k) != two.get(k))
        print(f"differs: {name}: {', '.join(keys)}")
    else:
        print(f"differs: {name}")
EOF
    fail "two runs in deterministic mode wrote different outputs (above)"
fi
say "both runs: identical logs/outputs.sha256"
