#!/usr/bin/env bash
# Does feredge's wheel install and run on a Raspberry Pi's userland? This builds a Debian bookworm
# arm64 root (the base of 64-bit Raspberry Pi OS), has pip, running on the root's Python 3.11 under
# qemu-user, install the wheel and its aarch64 dependency wheels, runs `feredge predict` and
# `feredge info` there, and checks that the int8 outputs are bit-identical to an x86-64 run of the
# same wheel with the same dependency versions (the float scores after them within 4 float32 steps).
# Emulated timing means nothing, so none is reported.
# shellcheck disable=SC2317 # the step functions run through `logged`, which shellcheck cannot follow
set -euo pipefail
# The braces make bash read the whole script before running it, so editing it mid-run is harmless.
{

usage() {
  cat <<'EOF'
usage: benchmarks/arm64/check.sh [--cache DIR] [--image PHOTO] [--ref GIT_REF] [--cpu NAME]... [--with SPEC]...
                                 [--mirror URL]

Installs feredge's wheel into an emulated Debian bookworm arm64 root and runs it there.
Needs root, debootstrap and qemu-user-static (apt-get install debootstrap qemu-user-static),
git, python3 with pip, and access to a Debian mirror and the Python package index.

  --cache DIR    the arm64 root, the aarch64 wheels and the x86-64 reference venv, reused by the
                 next run (default: ~/.cache/feredge-arm64, or $XDG_CACHE_HOME/feredge-arm64)
  --image PHOTO  a photo with a face (default: demo/examples/astronaut.png, NASA, public domain)
  --ref GIT_REF  the commit the wheel is built from (default: HEAD; uncommitted changes are left out)
  --cpu NAME     the CPU to emulate, with a matching /proc/cpuinfo: cortex-a72 (Raspberry Pi 4) or
                 cortex-a76 (Raspberry Pi 5); repeat it for both (default: both)
  --with SPEC    one more requirement for both installs, repeatable: "numpy<2" is what a venv that
                 shares Debian's python3-picamera2 needs
  --mirror URL   Debian mirror (default: http://deb.debian.org/debian)

Prints one PASS or FAIL line per check, then the versions used. Exits 1 when a check fails and
2 on a usage error. Each step's output is in CACHE/logs/.
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$repo/benchmarks/arm64
cache=${XDG_CACHE_HOME:-$HOME/.cache}/feredge-arm64
image=$repo/demo/examples/astronaut.png
ref=HEAD
cpus=()
extra=()
mirror=http://deb.debian.org/debian

usage_error() {
  echo "check.sh: error: $1 (--help for usage)" >&2
  exit 2
}

while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --cache | --image | --ref | --cpu | --with | --mirror)
      (($# >= 2)) || usage_error "$1 needs a value"
      case $1 in
        --cache) cache=$2 ;;
        --image) image=$2 ;;
        --ref) ref=$2 ;;
        --cpu) cpus+=("$2") ;;
        --with) extra+=("$2") ;;
        --mirror) mirror=$2 ;;
      esac
      shift 2 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done
((${#cpus[@]})) || cpus=(cortex-a72 cortex-a76)
for cpu in "${cpus[@]}"; do
  [[ $cpu == cortex-a72 || $cpu == cortex-a76 ]] || usage_error "--cpu: expected cortex-a72 or cortex-a76, got '$cpu'"
done
[[ -f $image ]] || usage_error "no photo at $image (pass --image PHOTO)"
((EUID == 0)) || usage_error "debootstrap needs root"
for tool in debootstrap qemu-aarch64-static dpkg-deb git python3; do
  command -v "$tool" >/dev/null || usage_error "$tool is not installed (apt-get install debootstrap qemu-user-static git python3-pip)"
done
commit=$(git -C "$repo" rev-parse --verify --quiet "$ref^{commit}") || usage_error "--ref: no commit '$ref' in $repo"

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
image=$(cd "$(dirname "$image")" && pwd)/$(basename "$image")
root=$cache/bookworm-arm64   # the debootstrapped root, kept between runs
wheels=$cache/wheels-aarch64 # pip's downloads of the aarch64 dependency wheels, kept
x86=$cache/x86-64-venv       # the reference venv on this machine, kept
venv=$root/opt/feredge-venv  # the arm64 install under test, made anew each run
built_by=.feredge-root       # in the root: how it was built, for the summary
logs=$cache/logs
rm -rf "$logs"
mkdir -p "$logs" "$wheels"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" # so nothing picks up the source checkout's packages instead of the installed wheel
started=$SECONDS
failures=0

result() { # PASS|FAIL, what was checked, detail
  printf '%-4s  %-30s %s\n' "$1" "$2" "$3"
  [[ $1 == PASS ]] || failures=$((failures + 1))
}

versions() {
  echo
  echo "date:        $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "feredge:     ${wheel_name:-(no wheel)} from $ref = ${commit:0:12}"
  if ((${#extra[@]})); then
    echo "also asked:  ${extra[*]}"
  fi
  echo "host:        $(uname -m), $(sed -n 's/^PRETTY_NAME="\(.*\)"$/\1/p' /etc/os-release), $(python3 --version)," \
    "$(qemu-aarch64-static --version | head -n 1), debootstrap $(dpkg-query -W -f '${Version}' debootstrap)"
  echo "arm64 root:  Debian $(cat "$root/etc/debian_version" 2>/dev/null || echo '(not built)'), ${arm_python:-}"
  if [[ -s $work/arm64.txt ]]; then
    echo "arm64 venv:  $(paste -sd ' ' "$work/arm64.txt") ($(du -sm "$venv" | cut -f1) MB)"
  fi
  if [[ -s $work/x86.txt ]]; then
    echo "x86-64 venv: $(paste -sd ' ' "$work/x86.txt") ($(du -sm "$x86" | cut -f1) MB, pip included)"
  fi
  echo "photo:       $(basename "$image"), sha256 $(sha256sum "$image" | cut -c1-16)…"
  echo "wall time:   $(((SECONDS - started) / 60)) min for the whole run (emulated: not a speed)"
}

finish() {
  versions
  ((failures == 0)) || exit 1
  exit 0
}

# Runs a step with its output in logs/NAME.log, showing the log's end when it fails. The step runs
# as a background job because bash ignores `set -e` inside a function called from `cmd || ...`.
logged() {
  local log=$logs/$1.log status=0
  shift
  "$@" >"$log" 2>&1 &
  wait "$!" || status=$?
  if ((status)); then
    echo "--- $log ends with:" >&2
    tail -n 15 "$log" >&2
  fi
  return "$status"
}

# qemu's -L prefix serves ROOT/proc/cpuinfo to the emulated program. The x86 host's own cpuinfo
# makes ai-edge-litert 2.2 and 2.3 segfault while loading a model; a Pi's does not.
write_cpuinfo() {
  local features part variant revision board model
  case $1 in
    cortex-a72) features="fp asimd evtstrm crc32 cpuid" part=0xd08 variant=0x0 revision=3
      board=c03114 model="Raspberry Pi 4 Model B Rev 1.4" ;;
    cortex-a76) features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
      part=0xd0b variant=0x4 revision=1 board=d04170 model="Raspberry Pi 5 Model B Rev 1.0" ;;
  esac
  local n
  for n in 0 1 2 3; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$n" "$features"
    printf 'CPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "$variant" "$part" "$revision"
  done >"$root/proc/cpuinfo"
  printf 'Revision\t: %s\nSerial\t\t: 10000000feed0000\nModel\t\t: %s\n' "$board" "$model" >>"$root/proc/cpuinfo"
}

arm() { # CPU, an aarch64 program inside the root, its arguments
  local cpu=$1
  shift
  write_cpuinfo "$cpu"
  qemu-aarch64-static -L "$root" -cpu "$cpu" "$@"
}

# debootstrap's first stage (--foreign) downloads and unpacks the packages without running arm64 code.
# Its second stage runs their maintainer scripts inside the root, which needs the kernel to hand
# aarch64 programs to qemu: binfmt_misc with qemu-user-static's aarch64 entry (registered on most
# hosts; in a container, mount binfmt_misc and write /usr/lib/binfmt.d/qemu-aarch64.conf to its
# register file). Without it the packages are unpacked directly: no maintainer scripts run, which
# Python and pip do not need. A partial root is never taken for a cached one.
build_root() {
  rm -rf "$root.partial"
  debootstrap --foreign --arch=arm64 --variant=minbase --include=python3.11 bookworm "$root.partial" "$mirror"
  if binfmt_ready; then
    chroot "$root.partial" /debootstrap/debootstrap --second-stage
    echo "debootstrap --second-stage ran under qemu (binfmt_misc)" >"$root.partial/$built_by"
  else
    local deb
    for deb in "$root.partial"/var/cache/apt/archives/*.deb; do
      dpkg-deb --fsys-tarfile "$deb" | tar -C "$root.partial" --keep-directory-symlink -xf -
    done
    rm -f "$root.partial"/var/cache/apt/archives/*.deb
    echo "packages unpacked, no second stage (no binfmt_misc entry for aarch64)" >"$root.partial/$built_by"
  fi
  # In a container debootstrap links proc to the host's /proc; the root needs its own for cpuinfo.
  if [[ -L $root.partial/proc ]]; then
    rm "$root.partial/proc"
    mkdir "$root.partial/proc"
  fi
  mv "$root.partial" "$root"
}

binfmt_ready() {
  [[ $(head -n 1 /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null) == enabled ]]
}

build_wheel() {
  mkdir "$work/src" "$work/dist"
  git -C "$repo" archive --format=tar "$commit" | tar -C "$work/src" -xf -
  python3 -m pip wheel --no-deps --wheel-dir "$work/dist" "$work/src"
}

download_wheels() {
  local platforms=(--platform manylinux2014_aarch64) glibc
  for glibc in $(seq 17 36); do # bookworm has glibc 2.36; pip does not widen a manylinux tag by itself
    platforms+=(--platform "manylinux_2_${glibc}_aarch64")
  done
  python3 -m pip download --dest "$wheels" --only-binary=:all: --python-version 3.11 --implementation cp \
    --abi cp311 "${platforms[@]}" "$wheel" "${extra[@]}" pip
  rm -f "$wheels"/feredge-*.whl # the wheel under test is passed by path, never taken from here
}

install_arm64() {
  rm -rf "$venv"
  arm "${cpus[0]}" "$root/usr/bin/python3.11" -m venv --without-pip "$venv"
  local pip_wheel
  pip_wheel=$(find "$wheels" -name 'pip-*.whl' | sort -V | tail -n 1)
  # pip runs from its own wheel on the arm64 Python, so it chooses the wheels by that Python's tags.
  arm "${cpus[0]}" "$venv/bin/python" "$pip_wheel/pip" install --isolated --no-cache-dir --no-index \
    --find-links "$wheels" "$wheel" "${extra[@]}"
  arm "${cpus[0]}" "$venv/bin/python" "$here/summary.py" freeze >"$work/arm64.txt"
}

install_x86() {
  [[ -x $x86/bin/python ]] || python3 -m venv "$x86"
  grep -v '^feredge==' "$work/arm64.txt" >"$work/pins.txt"
  "$x86/bin/python" -m pip install --force-reinstall --no-deps "$wheel"
  "$x86/bin/python" -m pip install -r "$work/pins.txt"
  "$x86/bin/python" "$here/summary.py" freeze | grep -vxE '(setuptools|wheel)==.*' >"$work/x86.txt"
  diff "$work/arm64.txt" "$work/x86.txt" # the reference must run the very same versions
}

x86_predict() { # DETECTOR: the x86-64 reference's predict summary with it, run once per check
  local out=$logs/predict-$1-x86-64
  [[ -s $out.json ]] || "$x86/bin/feredge" predict "$image" --detector "$1" --json >"$out.json" 2>"$out.log" || true
  python3 "$here/summary.py" predict <"$out.json" || echo "(nothing: see $out.log)"
}

echo "feredge arm64 check: the wheel on emulated Raspberry Pi OS (Debian bookworm arm64), $(date -u +%F)"
echo

# 1. the root, built once per cache
if [[ -x $root/usr/bin/python3.11 ]]; then
  how="cached in $root"
elif logged root build_root; then
  how="built in $root"
else
  result FAIL "arm64 root" "debootstrap failed, see $logs/root.log"
  finish
fi
if [[ -s $root/$built_by ]]; then
  how+=": $(cat "$root/$built_by")"
fi
if arm_python=$(arm "${cpus[0]}" "$root/usr/bin/python3.11" -c \
  'import platform; print(f"{platform.machine()} Python {platform.python_version()}")' 2>"$logs/python.log") \
  && [[ $arm_python == aarch64* ]]; then
  result PASS "arm64 root" "Debian $(cat "$root/etc/debian_version"), $arm_python, $how"
else
  result FAIL "arm64 root" "its Python does not run under qemu, see $logs/python.log"
  finish
fi

# 2. the wheel and the aarch64 wheels of its dependencies
if logged wheel build_wheel; then
  wheel=$(find "$work/dist" -name 'feredge-*.whl')
  wheel_name="$(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"
  result PASS "wheel" "$wheel_name"
else
  result FAIL "wheel" "pip wheel failed, see $logs/wheel.log"
  finish
fi
if logged download download_wheels; then
  result PASS "aarch64 wheels" "pip download --platform manylinux_2_17..36_aarch64 --python-version 3.11 into $wheels"
else
  result FAIL "aarch64 wheels" "pip download failed, see $logs/download.log"
  finish
fi

# 3. pip install on the arm64 Python, and the same versions on x86-64 for the reference
if logged install-arm64 install_arm64; then
  result PASS "pip install (arm64)" "$(grep -E '^(feredge|ai-edge-litert|numpy|opencv-python-headless)==' "$work/arm64.txt" | paste -sd ' ')"
else
  result FAIL "pip install (arm64)" "see $logs/install-arm64.log"
  finish
fi
reference=""
if logged install-x86 install_x86; then
  result PASS "x86-64 reference venv" "the same versions in $x86"
  reference=$("$x86/bin/python" "$here/scores.py" "$image" 2>"$logs/scores-x86-64.log") || reference=""
else
  result FAIL "x86-64 reference venv" "not the same versions or pip failed, see $logs/install-x86.log"
fi

# 4. per emulated CPU: predict, info, and the scores against x86-64
for cpu in "${cpus[@]}"; do
  feredge=("$venv/bin/python" "$venv/bin/feredge")
  if arm "$cpu" "${feredge[@]}" predict "$image" --json >"$logs/predict-$cpu.json" 2>"$logs/predict-$cpu.log" \
    && detail=$(python3 "$here/summary.py" predict <"$logs/predict-$cpu.json"); then
    result PASS "predict ($cpu)" "$(basename "$image"): $detail"
  else
    result FAIL "predict ($cpu)" "no face or an error, see $logs/predict-$cpu.log and .json"
  fi

  if arm "$cpu" "${feredge[@]}" info --json >"$logs/info-$cpu.json" 2>"$logs/info-$cpu.log" \
    && detail=$(python3 "$here/summary.py" info <"$logs/info-$cpu.json"); then
    result PASS "info ($cpu)" "$detail"
  else
    result FAIL "info ($cpu)" "see $logs/info-$cpu.log and .json"
  fi

  if [[ -z $reference ]]; then
    result FAIL "bit-identical ($cpu)" "no x86-64 reference, see $logs/scores-x86-64.log"
  elif ! scores=$(arm "$cpu" "$venv/bin/python" "$here/scores.py" "$image" 2>"$logs/scores-$cpu.log"); then
    result FAIL "bit-identical ($cpu)" "scores.py failed, see $logs/scores-$cpu.log"
  elif detail=$(printf '%s\n%s\n' "$reference" "$scores" | python3 "$here/summary.py" scores); then
    result PASS "bit-identical ($cpu)" "$detail"
  else
    printf '%s\n%s\n' "$reference" "$scores" >"$logs/scores-differ-$cpu.txt"
    result FAIL "bit-identical ($cpu)" "$detail; both in $logs/scores-differ-$cpu.txt"
  fi

  # The other shipped detectors (Haar, BlazeFace) must find the face too. Whether their boxes equal
  # x86-64's is reported, not required: their float convolutions may round differently on NEON.
  for detector in $(python3 "$here/summary.py" detectors <"$logs/info-$cpu.json" 2>/dev/null); do
    out=$logs/predict-$detector-$cpu
    if arm "$cpu" "${feredge[@]}" predict "$image" --detector "$detector" --json >"$out.json" 2>"$out.log" \
      && detail=$(python3 "$here/summary.py" predict <"$out.json"); then
      x86_detail=$(x86_predict "$detector")
      [[ $detail == "$x86_detail" ]] && same="as on x86-64" || same="x86-64 found $x86_detail"
      result PASS "predict $detector ($cpu)" "$detail; $same"
    else
      result FAIL "predict $detector ($cpu)" "no face or an error, see $out.log and .json"
    fi
  done
done

finish
}
