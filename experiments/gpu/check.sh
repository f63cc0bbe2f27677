#!/usr/bin/env bash
# The GPU check (issue 19): every method on a GPT-2-small-sized model in bf16 on one GPU, in one call; see check.py.
#   bash experiments/gpu/check.sh                      # on the GPU machine (about 6 minutes)
#   bash experiments/gpu/check.sh --device cpu --tiny  # anywhere (tested)
# On a bare PyTorch GPU machine without network, the packages it lacks (hydra-core, omegaconf, antlr4 runtime, ...)
# travel as wheels in .whl/ (see experiments/gpu/README.md); they are installed first when present.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}  # the interpreter (tests pass their own)
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
"$PYTHON" experiments/gpu/check.py "$@"
