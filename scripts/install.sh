#!/usr/bin/env bash
# Install the harness and its pinned dependencies into a virtual environment, from nothing.
#
#   bash scripts/install.sh              # dev: ./.venv with tests, lint, shellcheck, unsloth sources
#   VENV=/runpod_volume/venv bash scripts/install.sh gpu    # a pod: + unsloth, bitsandbytes
#
# Safe to re-run: an existing environment is reused and only what changed is installed.
set -euo pipefail

MODE="${1:-dev}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
UNSLOTH_PINS=(unsloth==2026.10.9 unsloth_zoo==2026.10.9)

case "$MODE" in
  dev|gpu|run) ;;
  *) echo "usage: bash scripts/install.sh [dev|gpu|run]" >&2; exit 2 ;;
esac

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check "$@"; }

echo "[install] $MODE environment in $VENV"
pip_install -q --upgrade pip
# torch alone first, so pip settles the pinned build before anything else can ask for another.
pip_install "${TORCH_PINS[@]}"
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
