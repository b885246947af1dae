#!/usr/bin/env bash
# Re-execute course notebooks in place: MNIST and the published checkpoints from ../shared (the
# checkpoints served over loopback HTTP, so the real download path runs), a fresh checkpoint cache,
# a headless matplotlib.
#
# Usage (from anywhere):  notebooks/execute.sh [--full] [NOTEBOOK.py ...]    (default: every notebook)
#
#   --full   what the stored outputs are: notebook 3 scores all 10,000 validation and test images
#            with 8 importance samples and draws its importance-sampling curve on 1,000 images; where
#            the published multi-scale checkpoint is not in the mirror, the course's own checkpoint in
#            ../shared/checkpoints/course is used (NFLOWS_TUTORIAL_COURSE_CHECKPOINTS). On a 2-core
#            CPU one model's full test split takes about 10 minutes, so notebook 3 takes well over an
#            hour there; use a GPU. The script prints each notebook's time.
#   (none)   quick mode, what CI runs under nbval (NFLOWS_TUTORIAL_QUICK=1): a few minutes on a CPU.
#            nbval compares only the cells that print the same in both modes, so a quick run checks
#            stored full-mode outputs; use it to try a change, and --full before committing outputs.
#
# Each .ipynb is first updated from its .py (the reviewed source), then executed top to bottom.
set -euo pipefail
full=0
if [ "${1:-}" = "--full" ]; then full=1; shift; fi
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
if [ "$full" = 1 ]; then
  unset NFLOWS_TUTORIAL_QUICK
  if [ -f "$shared/checkpoints/course/MNISTFlow_multiscale.ckpt" ]; then
    export NFLOWS_TUTORIAL_COURSE_CHECKPOINTS="$shared/checkpoints/course"
  fi
else
  export NFLOWS_TUTORIAL_QUICK=1
  unset NFLOWS_TUTORIAL_COURSE_CHECKPOINTS
fi
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
  echo "$notebook: executed in $(( $(date +%s) - start )) s ($([ "$full" = 1 ] && echo full || echo quick) mode)"
done
