#!/bin/bash
# The main job on the embedded default: compress the vendored llama-xs demo
# model with three passes (RTN and GPTQ at 3 and 4 bits, Wanda at 50%
# sparsity), evaluate each against the original on data/eval.txt (the whole
# text), print the table and write the plots. Everything goes into out/demo/;
# a second run reuses the finished results (scripts/sweep resumes).
set -euo pipefail
cd "$(dirname "$0")/.."
export LMC_BIN=${LMC_BIN:-build/lmc}
command -v python3 >/dev/null || {
    echo "demo: python3 is needed by scripts/sweep (apt-get install python3)" >&2; exit 1; }
MODEL=data/llama-xs
OUT=out/demo
GRID='rtn:bits=3,4 gptq:bits=3,4 wanda:sparsity=0.5'
mkdir -p "$OUT"
echo "== lmc inspect $MODEL"
"$LMC_BIN" inspect "$MODEL"
echo
echo "== scripts/sweep $MODEL --grid '$GRID'"
echo "   (calibration: data/calib.txt; evaluation: data/eval.txt; the original is run 'baseline')"
jobs=$(( $(nproc 2>/dev/null || echo 1) >= 2 ? 2 : 1 ))
scripts/sweep "$MODEL" --calib data/calib.txt --text data/eval.txt --grid "$GRID" \
    --out "$OUT" -j "$jobs"
echo
echo "== plots: $OUT/ppl_vs_bits.svg $OUT/ppl_vs_sparsity.svg"
echo "   records: $OUT/results.jsonl ($OUT/runs/ID.json), table: $OUT/results.csv"
