#!/bin/bash
# lmc sparsegpt on the vendored llama-xs (2 short calibration windows):
# option errors (exit 2, naming the option), an N:M that does not divide an
# input width (exit 1, naming the tensor, no output left), the encodings,
# bits per weight and provenance of unstructured / N:M / joint-quantized
# outputs; and prune-then-quantize (wanda, then gptq or rtn) keeping the
# sparse layout with quantized values. The container read-back of every
# weight (exact sparsity, N:M groups, zeros kept) is tests/test_sparsegpt.c.
set -u
. "$(dirname "$0")/../cli_lib.sh"
XS=data/llama-xs
CAL="--calib data/calib.txt --nsamples 2 --seqlen 128 -q"
S="$LMC sparsegpt $XS -o $tmp/x.lmc"

"$LMC" sparsegpt --help | grep -qF -- "--nm N:M" || fail "--help lacks --nm"
"$LMC" sparsegpt --help | grep -qF -- "--bits B" || fail "--help lacks --bits"
expect 2 "give --sparsity P" $S
expect 2 "--sparsity '1.5'" $S --sparsity 1.5
expect 2 "--sparsity '0'" $S --sparsity 0
expect 2 "--nm '4:4': N must" $S --nm 4:4
expect 2 "not both" $S --nm 2:4 --sparsity 0.5
expect 2 "SparseGPT supports M up to 64" $S --nm 2:128
expect 2 "block size 30 must be a multiple of M" $S --nm 2:4 --block 30
expect 2 "--group and --sym need --bits" $S --sparsity 0.5 --group 128
expect 2 "--inner applies to unquantized values" $S --sparsity 0.5 --bits 4 --inner f32
expect 2 "--bits 9" $S --sparsity 0.5 --bits 9
expect 2 "--damp 0" $S --sparsity 0.5 --damp 0
expect 2 "unknown option" $S --sparsity 0.5 --bogus
expect 2 "missing -o" "$LMC" sparsegpt $XS --sparsity 0.5
# 64 divides 128 (q k v o gate up) but not 352 (down)
expect 1 "M = 64 does not divide the input width 352 of blk.0.down.weight" $S --nm 2:64 $CAL
[ ! -e "$tmp/x.lmc" ] || fail "left an output after a failure"
ls "$tmp" | grep -q tmp && fail "left a temporary file"

# unstructured f16: 1 mask bit + 16 bits x 50% = 9 bits per weight
expect 0 "" "$LMC" sparsegpt $XS -o "$tmp/s50.lmc" --sparsity 0.5 $CAL --json
python3 - "$tmp/out" <<'PY' || fail "sparsegpt --json summary"
import json, sys
d = json.load(open(sys.argv[1]))
# pruned weights are exactly half; a kept value may also be 0.0 in f16
assert d["pass"] == "sparsegpt" and 0.5 <= d["zero_fraction"] < 0.5 + 1e-4, d
assert d["linear_bits_per_weight"] == 9, d
assert all(l["encoding"].startswith("sparse") and l["sparsity"] == 0.5 for l in d["layers"]), d["layers"]
PY
"$LMC" inspect "$tmp/s50.lmc" >"$tmp/i" || fail "inspect s50"
grep -q "blk.0.q.weight .*sparse" "$tmp/i" || fail "s50: q not sparse"
grep -q "embed.weight .*f16" "$tmp/i" || fail "s50: embeddings not left f16"
grep -qF "9.000 linear" "$tmp/i" || fail "s50: not 9 bits/weight"
grep -qF '"pass":"sparsegpt","args":{"sparsity":0.5,"inner":"f16","damp":0.01,"block":128}' "$tmp/i" \
    || fail "s50 provenance: $(grep pass "$tmp/i")"

# 2:4 jointly quantized: N:M indices + 4-bit codes + per-group scales/zeros
expect 0 "" "$LMC" sparsegpt $XS -o "$tmp/q24.lmc" --nm 2:4 --bits 4 --group 32 $CAL
"$LMC" inspect "$tmp/q24.lmc" --json >"$tmp/i" || fail "inspect q24"
python3 - "$tmp/i" <<'PY' || fail "q24 encodings"
import json, sys
d = json.load(open(sys.argv[1]))
lin = [t for t in d["tensors"] if t["name"].startswith("blk.") and t["name"].endswith(("q.weight", "k.weight", "v.weight", "o.weight", "gate.weight", "up.weight", "down.weight"))]
assert len(lin) == 28, len(lin)
for t in lin:
    # 1 + 0.5 x 4 + (16 + 4) / 32 bits, the f16 2:4 would be 9
    assert t["encoding"].startswith("nm 2:4") and t["encoding_id"] == 33, t
    assert 3.6 < t["bits_per_weight"] < 3.65, t
assert 3.5 < d["linear_bits_per_weight"] < 3.7, d["linear_bits_per_weight"]
PY
expect 0 "" "$LMC" eval "$tmp/q24.lmc" --text data/eval.txt --max-windows 1 --seqlen 256 --json -q
python3 - "$tmp/out" <<'PY' || fail "eval of the 2:4 quantized model"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["flops_per_token"] < d["flops_per_token_dense"], d
assert 1 < d["ppl"] < 1e4, d
PY

# prune, then quantize: the sparse layout survives with integer values
expect 0 "" "$LMC" wanda $XS -o "$tmp/w24.lmc" --nm 2:4 $CAL
expect 0 "" "$LMC" gptq "$tmp/w24.lmc" -o "$tmp/w24q.lmc" --bits 4 --group 128 $CAL
expect 0 "" "$LMC" wanda $XS -o "$tmp/w50.lmc" --sparsity 0.5 $CAL
expect 0 "" "$LMC" rtn "$tmp/w50.lmc" -o "$tmp/w50r.lmc" --bits 4 --group 128 -q
for f in w24q w50r; do
    "$LMC" inspect "$tmp/$f.lmc" --json >"$tmp/i" || fail "inspect $f"
    python3 - "$tmp/i" $f <<'PY' || fail "$f: not a sparse quantized container"
import json, sys
d, f = json.load(open(sys.argv[1])), sys.argv[2]
lin = [t for t in d["tensors"] if t["name"].endswith(".down.weight")]
assert len(lin) == 4, lin
for t in lin:
    assert t["encoding"].startswith("nm 2:4" if f == "w24q" else "sparse"), t
    # 1 + 0.5 x 4 + 3 groups x 20 bits / 352: integer values, not f16 (9)
    assert 3.15 < t["bits_per_weight"] < 3.2, t
# ~1 + 0.5 x 4 + overhead, not the dense 4.16
assert 3.0 < d["linear_bits_per_weight"] < 3.35, d["linear_bits_per_weight"]
PY
done
exit 0
