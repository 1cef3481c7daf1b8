#!/usr/bin/env bash
# What an edge-only install weighs on this machine: builds feredge's wheel from a commit, installs it
# into a fresh venv with plain `pip install WHEEL` (its dependencies from the package index), and
# prints the wheel's size, the venv's size and the largest parts of it. docs/deploy.md quotes it.
set -euo pipefail
{

usage() {
  cat <<'EOF'
usage: benchmarks/arm64/install_size.sh [--ref GIT_REF] [--python PYTHON]

  --ref GIT_REF    the commit the wheel is built from (default: HEAD; uncommitted changes are left out)
  --python PYTHON  the Python that makes the venv (default: python3)
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ref=HEAD
python=python3
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --ref | --python)
      (($# >= 2)) || { echo "install_size.sh: error: $1 needs a value" >&2; exit 2; }
      if [[ $1 == --ref ]]; then ref=$2; else python=$2; fi
      shift 2 ;;
    *) echo "install_size.sh: error: unknown argument: $1 (--help for usage)" >&2; exit 2 ;;
  esac
done
commit=$(git -C "$repo" rev-parse --verify --quiet "$ref^{commit}") || {
  echo "install_size.sh: error: --ref: no commit '$ref' in $repo" >&2
  exit 2
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src" "$work/dist"
git -C "$repo" archive --format=tar "$commit" | tar -C "$work/src" -xf -
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$work/src" >/dev/null
wheel=$(find "$work/dist" -name 'feredge-*.whl')
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --no-cache-dir "$wheel" >"$work/pip.log" 2>&1 || {
  cat "$work/pip.log" >&2
  exit 1
}
site=$(find "$work/venv/lib" -maxdepth 2 -name site-packages)

echo "date:      $(date -u +%Y-%m-%dT%H:%MZ), $(uname -m), $("$python" --version)"
echo "feredge:   $(basename "$wheel") from $ref = ${commit:0:12}"
echo "wheel:     $(stat -c %s "$wheel") bytes ($(du -h "$wheel" | cut -f1))"
echo "venv:      $(du -sh "$work/venv" | cut -f1) in all (du -sh), pip and setuptools included"
echo "installed: $("$work/venv/bin/pip" freeze --exclude-editable | grep -v '^feredge @' | paste -sd ' ')"
echo "largest parts of site-packages (MB):"
du -sm "$site"/* | sort -rn | head -n 8 | while read -r size path; do
  printf '  %5s  %s\n' "$size" "$(basename "$path")"
done
}
