#!/usr/bin/env bash
# Install the harness and its pinned dependencies into a virtual environment, from nothing.
#
#   bash scripts/install.sh              # dev: ./.venv with tests, lint, shellcheck, unsloth sources
#   VENV=/runpod_volume/venv bash scripts/install.sh gpu    # a pod: + unsloth, bitsandbytes
#   bash scripts/install.sh torch-choice # only say which torch build this host's driver gets
#
# torch comes from PyPI (its CUDA 13.0 build, driver >= 580) unless the host's NVIDIA driver is
# older: then from PyTorch's index, the CUDA 12.6 build (training/cuda_build.py decides, and checks
# that the index serves the pinned wheels for this Python before the venv is touched).
# Safe to re-run: an existing environment is reused and only what changed is installed.
set -euo pipefail

MODE="${1:-dev}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
UNSLOTH_PINS=(unsloth==2026.10.9 unsloth_zoo==2026.10.9)

case "$MODE" in
  dev|gpu|run|torch-choice) ;;
  *) echo "usage: bash scripts/install.sh [dev|gpu|run|torch-choice]" >&2; exit 2 ;;
esac

# "LABEL INDEX-URL" of the torch build for this host's driver, empty for PyPI's; exit 2 if none fits.
if [ "$MODE" = torch-choice ]; then
  TORCH_BUILD="$("$PYTHON" "$ROOT/training/cuda_build.py")" || exit 2
  echo "${TORCH_BUILD:-PyPI}"
  exit 0
fi
# Before anything changes: the index of a labelled build must serve the pinned wheels for this Python.
TORCH_BUILD="$("$PYTHON" "$ROOT/training/cuda_build.py" --check-index "${TORCH_PINS[@]}")" || exit 2

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# No pip cache: the venv is the copy that is kept, and a cached torch with its CUDA libraries would
# take as much disk again (a pod's container disk, a nearly full CI machine).
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check --no-cache-dir "$@"; }

echo "[install] $MODE environment in $VENV"
pip_install -q --upgrade pip
# torch alone first, so pip settles the pinned build before anything else can ask for another.
# A build from PyTorch's index is pinned with its label (torch==2.14.1+cu126): that replaces a
# PyPI build already in the venv, and satisfies the plain ==2.14.1 pins that follow.
read -r torch_label torch_index <<<"$TORCH_BUILD" || true
if [ -n "${torch_label:-}" ]; then
  pip_install "${TORCH_PINS[@]/%/+$torch_label}" --index-url "$torch_index"
else
  pip_install "${TORCH_PINS[@]}"
fi
case "$MODE" in
  dev)
    pip_install -e "${ROOT}[dev]"
    # Contract tests read unsloth's real signatures; its GPU-only requirements are not needed
    # for that and fight the torch pin on a CPU machine, hence --no-deps.
    pip_install --no-deps "${UNSLOTH_PINS[@]}"
    ;;
  gpu) pip_install -e "${ROOT}[gpu]" ;;
  run) pip_install -e "$ROOT" ;;
esac
echo "[install] done: activate with '. $VENV/bin/activate'"
