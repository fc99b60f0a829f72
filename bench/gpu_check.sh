#!/usr/bin/env bash
# One prepared GPU check (< 5 minutes): kernel tests on the GPU, decode-attention microbench vs the
# torch reference, and (when the engine works) greedy parity and tok/s vs HF transformers.
# Prints one markdown table on stdout (logs on stderr); also writes $OUT/gpu_check.md when $OUT is set.
# Works from a bare copy of the repo: no install, PYTHONPATH points at the repo root.
#   bench/gpu_check.sh                 # the real check (needs CUDA)
#   bench/gpu_check.sh --dry-run       # tiny shapes on CPU under TRITON_INTERPRET=1 (tests the script)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export SLUICEGATE_CACHE_DIR="${SLUICEGATE_CACHE_DIR:-${TMPDIR:-/tmp}/sluicegate-cache}"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
case " $* " in *" --dry-run "*) ;; *) unset TRITON_INTERPRET ;; esac
# A project venv is used if its torch sees a GPU (the CPU venv of a dev box would not), or for --dry-run.
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  PY=python3
  if [ -x .venv/bin/python ]; then
    case " $* " in
      *" --dry-run "*) PY=.venv/bin/python ;;
      *) .venv/bin/python -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
           && PY=.venv/bin/python ;;
    esac
  fi
fi
BUDGET="${GPU_CHECK_BUDGET_S:-285}"
# SIGTERM at the budget + 10 s lets the script print the rows it has; SIGKILL 10 s later.
exec timeout --signal=TERM --kill-after=10 "$((BUDGET + 10))" "$PY" bench/gpu_check.py --budget-s "$BUDGET" "$@"
