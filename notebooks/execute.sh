#!/usr/bin/env bash
# Re-execute course notebooks in place under the CI's conditions, so that their stored outputs are
# exactly what `pytest --nbval notebooks` will compare against: fast mode, MNIST and the published
# checkpoints from ../shared (checkpoints served over loopback HTTP, so the real download path runs),
# a fresh checkpoint cache, a headless matplotlib.
#
# Usage (from anywhere):  notebooks/execute.sh [NOTEBOOK.py ...]    (default: every notebook)
# Each .ipynb is first updated from its .py (the reviewed source), then executed top to bottom.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
shared="${NFLOWS_TUTORIAL_SHARED:-$(cd .. && pwd)/shared}"
python="${PYTHON:-$repo/.venv/bin/python}"
for need in "$shared/data/MNIST/raw" "$shared/checkpoints/tutorial11"; do
  [ -d "$need" ] || { echo "missing $need: set NFLOWS_TUTORIAL_SHARED to the folder holding data/ and checkpoints/" >&2; exit 1; }
done

work="$(mktemp -d)"
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$python" -m http.server "$port" --bind 127.0.0.1 --directory "$shared/checkpoints/tutorial11" >"$work/http.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
export NFLOWS_TUTORIAL_CHECKPOINT_URL="http://127.0.0.1:$port/"
export NFLOWS_TUTORIAL_QUICK=1
export PATH_DATASETS="$shared/data"
export PATH_CHECKPOINT="$work/checkpoints"
export MPLBACKEND=Agg
for _ in $(seq 50); do
  "$python" -c "import urllib.request; urllib.request.urlopen('$NFLOWS_TUTORIAL_CHECKPOINT_URL', timeout=1)" 2>/dev/null && break
  sleep 0.2
done

if [ "$#" -eq 0 ]; then set -- notebooks/[0-9]*.py; fi
for source in "$@"; do
  notebook="${source%.py}.ipynb"
  "$python" -m jupytext --update --to ipynb "$source" >/dev/null
  start=$(date +%s)
  "$python" -m jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1800 "$notebook" 2>/dev/null
  echo "$notebook: executed in $(( $(date +%s) - start )) s"
done
