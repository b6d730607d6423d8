#!/bin/bash
# lmc magnitude / lmc wanda on the vendored llama-xs: option errors (exit 2,
# naming the option), an N:M that does not divide an input width (exit 1,
# naming the tensor, no output left), the encodings and provenance of the
# outputs, and FLOPs that drop with the pruned weights. (For tests/cli/ once
# cli/cmd_magnitude.c and cli/cmd_wanda.c are in.)
set -u
. "$(dirname "$0")/../cli_lib.sh"
XS=data/llama-xs
CAL="--calib data/calib.txt --nsamples 2 --seqlen 128"

for cmd in magnitude wanda; do
    "$LMC" $cmd --help | grep -qF -- "--nm N:M" || fail "$cmd --help lacks --nm"
    expect 2 "give --sparsity P" "$LMC" $cmd $XS -o "$tmp/x.lmc"
    expect 2 "--sparsity '1.5'" "$LMC" $cmd $XS -o "$tmp/x.lmc" --sparsity 1.5
    expect 2 "--sparsity '0'" "$LMC" $cmd $XS -o "$tmp/x.lmc" --sparsity 0
    expect 2 "--nm '4:4': N must" "$LMC" $cmd $XS -o "$tmp/x.lmc" --nm 4:4
    expect 2 "expected N:M" "$LMC" $cmd $XS -o "$tmp/x.lmc" --nm 2/4
    expect 2 "not both" "$LMC" $cmd $XS -o "$tmp/x.lmc" --nm 2:4 --sparsity 0.5
    expect 2 "--inner 'q4'" "$LMC" $cmd $XS -o "$tmp/x.lmc" --sparsity 0.5 --inner q4
    expect 2 "unknown option" "$LMC" $cmd $XS -o "$tmp/x.lmc" --sparsity 0.5 --bogus
    expect 2 "missing -o" "$LMC" $cmd $XS --sparsity 0.5
    # 64 divides 128 (q k v o gate up) but not 352 (down)
    expect 1 "M = 64 does not divide the input width 352 of blk.0.down.weight" \
        "$LMC" $cmd $XS -o "$tmp/x.lmc" --nm 2:64 $CAL -q
    [ ! -e "$tmp/x.lmc" ] || fail "$cmd left an output after a failure"
    ls "$tmp" | grep -q tmp && fail "$cmd left a temporary file"
done

expect 0 "" "$LMC" magnitude $XS -o "$tmp/m50.lmc" --sparsity 0.5 -q
expect 0 "" "$LMC" magnitude $XS -o "$tmp/m24.lmc" --nm 2:4 --inner f32 -q
expect 0 "" "$LMC" wanda $XS -o "$tmp/w50.lmc" --sparsity 0.5 $CAL -q
"$LMC" inspect "$tmp/m50.lmc" >"$tmp/i" || fail "inspect m50"
grep -q "blk.0.q.weight .*sparse" "$tmp/i" || fail "m50: q not sparse: $(cat "$tmp/i")"
grep -q "embed.weight .*f16" "$tmp/i" || fail "m50: embeddings not left f16"
grep -qF "9.000 linear" "$tmp/i" || fail "m50: 50% sparse f16 is not 9 bits/weight"
grep -qF '"pass":"magnitude","args":{"sparsity":0.5,"inner":"f16"}' "$tmp/i" || fail "m50 provenance"
"$LMC" inspect "$tmp/m24.lmc" >"$tmp/i" || fail "inspect m24"
grep -q "blk.3.down.weight .*nm 2:4" "$tmp/i" || fail "m24: down not 2:4"
grep -qF '"args":{"nm":"2:4","inner":"f32"}' "$tmp/i" || fail "m24 provenance"
"$LMC" inspect "$tmp/w50.lmc" >"$tmp/i" || fail "inspect w50"
grep -qF '"pass":"wanda"' "$tmp/i" && grep -qF '"calibration":{' "$tmp/i" || fail "w50 provenance"
cmp -s "$tmp/m50.lmc" "$tmp/w50.lmc" && fail "wanda and magnitude produced the same file"

expect 0 "" "$LMC" eval "$tmp/m50.lmc" --text data/eval.txt --max-windows 1 --seqlen 256 --json -q
python3 - "$tmp/out" <<'PY' || fail "eval of the pruned model"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["bits_per_weight"] == 9, d
assert d["flops_per_token"] < d["flops_per_token_dense"], d
assert d["ppl"] > 1 and d["ppl"] < 1e4, d
PY
exit 0
