# Sourced by the tests/cuda/*.sh scripts after tests/cli_lib.sh: exits 77
# (skip) unless ../shared has the test models and a CUDA device evaluates.
S=../shared
[ -d "$S/models/llama-s" ] || { echo "skip: ../shared absent"; exit 77; }
"$LMC" eval data/llama-xs --text data/eval.txt --device cuda --max-windows 1 -q >/dev/null 2>"$tmp/e" ||
    { echo "skip: no CUDA device ($(head -1 "$tmp/e"))"; exit 77; }
