# Sourced by tests/cli/export*.sh (after tests/cli_lib.sh): the helper
# programs and the llama.cpp comparison the export tests share.
DUMP=${LMC_TOOLS:-build/tests/tools}/dump_weights
SNAP=${LMC_TOOLS:-build/tests/tools}/snap_scales
READER="python3 tests/tools/read_export.py"
[ -x "$DUMP" ] && [ -x "$SNAP" ] || fail "$DUMP / $SNAP not built (make check builds them)"

# exact KIND EXPORT MODEL: every tensor of EXPORT, decoded by the independent
# reader, equals lmc's decoding of MODEL
exact() {
    local d=$tmp/dump.$$.$RANDOM
    "$DUMP" "$3" "$d" || fail "dump_weights $3"
    $READER compare "$1" "$2" "$d" > "$tmp/cmp" || fail "$1 export of $3 is not exact: $(cat "$tmp/cmp")"
    rm -rf "$d"
}

# llamacpp_setup: LLAMACPP_DIR, or exit 77 with the installer's SKIP line
llamacpp_setup() {
    local out rc
    out=$(tests/llamacpp/install.sh); rc=$?
    [ $rc -eq 77 ] && { echo "$out"; exit 77; }
    [ $rc -eq 0 ] || fail "tests/llamacpp/install.sh failed: $out"
    export LMC_LLAMACPP_DIR=$out
}
llamacpp() { node tests/llamacpp/llamacpp.mjs "$@"; }

# ppl_check NAME GGUF MODEL IDS WINDOWS TOL_PERCENT: llama.cpp's perplexity of
# the first WINDOWS windows of IDS equals lmc eval --max-windows of MODEL
# within TOL_PERCENT (relative); prints the measurement
ppl_check() {
    local name=$1 gguf=$2 model=$3 ids=$4 win=$5 tol=$6 text=${7:-data/eval.txt}
    "$LMC" eval "$model" --text "$text" --max-windows "$win" --json > "$tmp/ev.json" 2>/dev/null \
        || fail "$name: lmc eval $model"
    local seqlen lmc_ppl lc
    seqlen=$(jget "$tmp/ev.json" "d['seqlen']")
    lmc_ppl=$(jget "$tmp/ev.json" "repr(d['ppl'])")
    lc=$(llamacpp "$gguf" ppl "$ids" "$seqlen" "$win") || fail "$name: llama.cpp on $gguf"
    python3 - "$name" "$lmc_ppl" "$lc" "$tol" "$win" <<'PY' || exit 1
import json, sys
name, lmc, lc, tol, win = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
d = 100 * (lc['ppl'] - lmc) / lmc
print(f"{name}: llama.cpp {lc['ppl']:.4f}, lmc {lmc:.4f} ({win} windows): {d:+.4f}% (tolerance {tol}%)")
if abs(d) > tol:
    print(f"FAIL: {name}: llama.cpp and lmc differ by {d:+.4f}%, beyond {tol}%")
    sys.exit(1)
PY
}
