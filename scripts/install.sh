#!/usr/bin/env bash
# Install the harness and its pinned dependencies into a virtual environment, from nothing.
#
#   bash scripts/install.sh              # dev: ./.venv with tests, lint, shellcheck, unsloth sources
#   VENV=/runpod_volume/venv bash scripts/install.sh gpu    # a pod: + unsloth, bitsandbytes
#   bash scripts/install.sh torch-choice # only say which torch build this host's driver gets
#   bash scripts/install.sh lock         # resolve the gpu extra again into scripts/constraints.txt
#
# With uv (from PyPI, pinned, put into the venv by its own pip): seconds where pip takes minutes,
# which a pod pays in GPU time on every fresh volume. Where uv cannot be had, pip does the same.
# Every mode installs within scripts/constraints.txt, the resolved set of the gpu extra
# (training/constraints.py), so a pod gets exactly the versions that were resolved and tested.
# torch comes from PyPI (its CUDA 13.0 build, driver >= 580) unless the host's NVIDIA driver is
# older: then from PyTorch's index, the CUDA 12.6 build (training/pod/cuda_build.py decides, and checks
# that the index serves the pinned wheels for this Python before the venv is touched).
# Package sources: uv reads none of pip's configuration, so the ones pip is set up with here
# (pip.conf, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS: a mirror, a folder of wheels) are
# handed to it, searched as pip searches them. INSTALLER=pip uses pip.
# Safe to re-run: an existing environment is reused and only what changed is installed.
set -euo pipefail

MODE="${1:-dev}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
INSTALLER="${INSTALLER:-uv}"
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
UNSLOTH_PINS=(unsloth==2026.10.9 unsloth_zoo==2026.10.9)
UV_PIN=uv==0.13.8
CONSTRAINTS="$ROOT/scripts/constraints.txt"

case "$MODE" in
  dev|gpu|run|torch-choice|lock) ;;
  *) echo "usage: bash scripts/install.sh [dev|gpu|run|torch-choice|lock]" >&2; exit 2 ;;
esac
case "$INSTALLER" in
  uv|pip) ;;
  *) echo "error: INSTALLER=$INSTALLER: must be uv (the default; pip where uv cannot be had) or pip" >&2; exit 2 ;;
esac

# "LABEL INDEX-URL" of the torch build for this host's driver, empty for PyPI's; exit 2 if none fits.
if [ "$MODE" = torch-choice ]; then
  TORCH_BUILD="$("$PYTHON" "$ROOT/training/pod/cuda_build.py")" || exit 2
  echo "${TORCH_BUILD:-PyPI}"
  exit 0
fi
if [ "$MODE" != lock ]; then
  # Before anything changes: the index of a labelled build must serve the pinned wheels for this Python.
  TORCH_BUILD="$("$PYTHON" "$ROOT/training/pod/cuda_build.py" --check-index "${TORCH_PINS[@]}")" || exit 2
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# No cache kept: the venv is the copy that is kept, and a cached torch with its CUDA libraries would
# take as much disk again (a pod's container disk, a nearly full CI machine).
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check --no-cache-dir "$@"; }

pip_sources() {
  # One argument a line: the index, extra indexes and wheel folders of pip's configuration.
  "$VENV/bin/python" - <<'EOF'
import ast, subprocess, sys
listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
found = {}
for line in listed.splitlines():
    key, _, value = line.partition("=")
    scope, _, option = key.rpartition(".")
    if option in ("index-url", "extra-index-url", "find-links") and scope in (":env:", "install", "global"):
        rank = (":env:", "install", "global").index(scope)  # pip's own precedence
        if option not in found or rank < found[option][0]:
            found[option] = (rank, ast.literal_eval(value).split())
for option in ("index-url", "extra-index-url", "find-links"):
    for item in found.get(option, (0, []))[1]:
        print(f"--{option}\n{item}")
if "extra-index-url" in found or "find-links" in found:
    print("--index-strategy\nunsafe-best-match")  # pip's: the best version across every source
EOF
}

if [ "$INSTALLER" = uv ] && ! { [ -x "$VENV/bin/uv" ] && [ "$("$VENV/bin/uv" --version | cut -d' ' -f2)" = "${UV_PIN#uv==}" ]; }; then
  pip_install -q "$UV_PIN" || { echo "[install] uv could not be installed: installing with pip" >&2; INSTALLER=pip; }
fi
UV_INDEX=()    # --index-url of pip's configuration, unless a command names its own
UV_SOURCES=()  # the rest: extra indexes, wheel folders, how to search them
if [ "$INSTALLER" = uv ]; then
  while IFS= read -r option && IFS= read -r value; do
    if [ "$option" = --index-url ]; then UV_INDEX=("$option" "$value"); else UV_SOURCES+=("$option" "$value"); fi
  done < <(pip_sources)
fi

package_install() {  # package_install ARGS...: the same arguments for uv's pip interface and for pip
  if [ "$INSTALLER" = pip ]; then
    pip_install "$@"
    return
  fi
  local index=("${UV_INDEX[@]+"${UV_INDEX[@]}"}") arg
  for arg in "$@"; do [ "$arg" != --index-url ] || index=(); done
  # --compile-bytecode, as pip does: without it every process imports torch and transformers from
  # source until it may write its own .pyc (never, under PYTHONDONTWRITEBYTECODE): the test suite
  # took 13 min 42 s on a fresh uv venv here against 8 min 51 s with the bytecode compiled.
  "$VENV/bin/uv" pip install --python "$VENV/bin/python" --no-cache --compile-bytecode ${index[@]+"${index[@]}"} \
    ${UV_SOURCES[@]+"${UV_SOURCES[@]}"} "$@"
}

if [ "$MODE" = lock ]; then
  [ "$INSTALLER" = uv ] || { echo "error: the lock is resolved with uv, which could not be installed" >&2; exit 1; }
  cd "$ROOT"
  resolve=()  # the command training/constraints.py records in the file's header, a word a line
  while IFS= read -r word; do resolve+=("$word"); done \
    < <("$VENV/bin/python" -c 'import sys; sys.path[:0] = ["."]; from training.constraints import COMMAND; print(*COMMAND, sep="\n")')
  "$VENV/bin/uv" "${resolve[@]:1}" --quiet | "$VENV/bin/python" training/constraints.py write
  echo "[install] wrote $CONSTRAINTS"
  exit 0
fi

echo "[install] $MODE environment in $VENV, with $INSTALLER"
[ "$INSTALLER" = uv ] || pip_install -q --upgrade pip
# torch alone first, so the pinned build is settled before anything else can ask for another.
# A build from PyTorch's index is pinned with its label (torch==2.14.1+cu126): that replaces a
# PyPI build already in the venv, and satisfies the plain ==2.14.1 pins that follow.
read -r torch_label torch_index <<<"$TORCH_BUILD" || true
if [ -n "${torch_label:-}" ]; then
  package_install "${TORCH_PINS[@]/%/+$torch_label}" --index-url "$torch_index"
else
  package_install "${TORCH_PINS[@]}" -c "$CONSTRAINTS"
fi
case "$MODE" in
  dev)
    package_install -e "${ROOT}[dev]" -c "$CONSTRAINTS"
    # Contract tests read unsloth's real signatures; its GPU-only requirements are not needed
    # for that and fight the torch pin on a CPU machine, hence --no-deps.
    package_install --no-deps "${UNSLOTH_PINS[@]}"
    ;;
  gpu) package_install -e "${ROOT}[gpu]" -c "$CONSTRAINTS" ;;
  run) package_install -e "$ROOT" -c "$CONSTRAINTS" ;;
esac
echo "[install] done: activate with '. $VENV/bin/activate'"
