#!/bin/bash
# The main job on the embedded default: the vendored llama-xs demo model and
# public-domain texts in data/. Prints what it does; writes into out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
LMC=${LMC_BIN:-build/lmc}
MODEL=data/llama-xs
OUT=out/demo
mkdir -p "$OUT"
echo "== lmc inspect $MODEL"
"$LMC" inspect "$MODEL"
echo
echo "== lmc eval $MODEL --text data/eval.txt"
"$LMC" eval "$MODEL" --text data/eval.txt
