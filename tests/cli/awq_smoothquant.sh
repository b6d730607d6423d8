#!/bin/bash
# lmc smoothquant and lmc awq on the vendored llama-xs (4 calibration
# windows of 128 tokens, evaluation on 4 windows of 256): option errors,
# encodings and provenance, W8A8 close to fp16 and smoothing-only equal to
# it, AWQ better than RTN at the same bits/group, AWQ --scale-only then
# GPTQ, GPTQ on an AWQ container. Unit tests: tests/test_smoothquant.c,
# tests/test_awq.c.
set -u
. "$(dirname "$0")/../cli_lib.sh"
XS=data/llama-xs
CAL="--calib data/calib.txt --nsamples 4 --seqlen 128 -q"
EV="--text data/eval.txt --max-windows 4 --seqlen 256 --json -q"
ppl() { "$LMC" eval "$1" $EV | python3 -c 'import json,sys; print(json.load(sys.stdin)["ppl"])' \
    || fail "eval $1"; }

# ---- usage ----
"$LMC" smoothquant --help | grep -qF -- "--alpha A" || fail "smoothquant --help lacks --alpha"
"$LMC" awq --help | grep -qF -- "--scale-only" || fail "awq --help lacks --scale-only"
expect 2 "--alpha 1.5" "$LMC" smoothquant $XS -o "$tmp/x.lmc" --alpha 1.5
expect 2 "would leave the model unchanged" "$LMC" smoothquant $XS -o "$tmp/x.lmc" --no-smooth --no-quant
expect 2 "unknown option" "$LMC" smoothquant $XS -o "$tmp/x.lmc" --bogus
expect 2 "missing -o" "$LMC" smoothquant $XS
expect 2 "--bits 9" "$LMC" awq $XS -o "$tmp/x.lmc" --bits 9
expect 2 "--group 0" "$LMC" awq $XS -o "$tmp/x.lmc" --group 0
expect 2 "--grid 0" "$LMC" awq $XS -o "$tmp/x.lmc" --grid 0
expect 2 "unknown option" "$LMC" awq $XS -o "$tmp/x.lmc" --alpha 0.5
expect 1 "no-such-file" "$LMC" awq $XS -o "$tmp/x.lmc" --calib "$tmp/no-such-file"
[ ! -e "$tmp/x.lmc" ] || fail "left an output after a failure"

fp=$(ppl $XS)

# ---- SmoothQuant ----
expect 0 "" "$LMC" smoothquant $XS -o "$tmp/nq.lmc" --no-quant $CAL
nq=$(ppl "$tmp/nq.lmc")
python3 -c "import sys; a,b=$fp,$nq; sys.exit(abs(a-b) > 1e-4*a)" \
    || fail "smoothing alone changed the perplexity: $fp -> $nq"
"$LMC" inspect "$tmp/nq.lmc" | grep -q "blk.0.attn_norm.weight .*f32" || fail "nq: norm not rescaled"

expect 0 "" "$LMC" smoothquant $XS -o "$tmp/sq.lmc" --alpha 0.5 $CAL --json
python3 - "$tmp/out" <<'PY' || fail "smoothquant --json summary"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["pass"] == "smoothquant", d
assert len(d["layers"]) == 8 and all(l["scale_max"] > 0 for l in d["layers"]), d["layers"]
assert len(d["w8a8"]) == 28 and all(0 < l["weight_rel_err"] < 0.02 for l in d["w8a8"]), d["w8a8"]
PY
"$LMC" inspect "$tmp/sq.lmc" --json >"$tmp/i" || fail "inspect sq"
python3 - "$tmp/i" <<'PY' || fail "sq encodings"
import json, sys
d = json.load(open(sys.argv[1]))
t = {x["name"]: x for x in d["tensors"]}
for l in range(4):
    for r in ("q", "k", "v", "o", "gate", "up", "down"):
        assert t["blk.%d.%s.weight" % (l, r)]["encoding"] == "w8a8", t["blk.%d.%s.weight" % (l, r)]
assert t["embed.weight"]["encoding"] == "f16"
PY
"$LMC" inspect "$tmp/sq.lmc" | grep -qF '"pass":"smoothquant","args":{"alpha":0.5,"smooth":true,"w8a8":true}' \
    || fail "sq provenance: $(grep pass "$tmp/i" | head -3)"
sq=$(ppl "$tmp/sq.lmc")
expect 0 "" "$LMC" smoothquant $XS -o "$tmp/ns.lmc" --no-smooth -q
"$LMC" inspect "$tmp/ns.lmc" | grep -q '"calibration"' && fail "--no-smooth used calibration"
ns=$(ppl "$tmp/ns.lmc")
python3 -c "import sys; f,a,b=$fp,$sq,$ns; sys.exit(not (a != f and b != f and abs(a-f) < 0.02*f and abs(b-f) < 0.02*f))" \
    || fail "W8A8 perplexity fp $fp, smoothquant $sq, plain $ns"

# ---- AWQ ----
expect 0 "" "$LMC" awq $XS -o "$tmp/a3.lmc" --bits 3 --group 64 $CAL --json
python3 - "$tmp/out" <<'PY' || fail "awq --json summary"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["pass"] == "awq", d
lay = d["layers"]
assert len(lay) == 28, len(lay)
assert any(l.get("ratio", 0) > 0 for l in lay), lay
assert all("clip_err_ratio" in l for l in lay if not l["tensor"].endswith(("q.weight", "k.weight"))), lay
PY
"$LMC" inspect "$tmp/a3.lmc" | grep -q "blk.3.down.weight .*qgroup w3 g64 asym" || fail "a3 encoding"
"$LMC" inspect "$tmp/a3.lmc" | grep -qF '"pass":"awq","args":{"bits":3,"group":64' || fail "a3 provenance"
expect 0 "" "$LMC" rtn $XS -o "$tmp/r3.lmc" --bits 3 --group 64 -q
a3=$(ppl "$tmp/a3.lmc")
r3=$(ppl "$tmp/r3.lmc")
python3 -c "import sys; sys.exit(not ($a3 < $r3))" || fail "AWQ w3 g64 $a3 not better than RTN $r3"

# AWQ scaling + clipping, then GPTQ on the scaled fp16 weights
expect 0 "" "$LMC" awq $XS -o "$tmp/so.lmc" --bits 3 --group 64 --scale-only $CAL
"$LMC" inspect "$tmp/so.lmc" | grep -q "blk.0.q.weight .*f16" || fail "scale-only: q not f16"
expect 0 "" "$LMC" gptq "$tmp/so.lmc" -o "$tmp/ag.lmc" --bits 3 --group 64 $CAL
"$LMC" inspect "$tmp/ag.lmc" | grep -q "blk.0.q.weight .*qgroup w3 g64" || fail "awq+gptq encoding"
ag=$(ppl "$tmp/ag.lmc")
python3 -c "import sys; sys.exit(not ($ag < 1.1 * $fp))" || fail "awq+gptq ppl $ag (fp $fp)"
# GPTQ accepts an AWQ container as input too
expect 0 "" "$LMC" gptq "$tmp/a3.lmc" -o "$tmp/g2.lmc" --bits 4 $CAL
echo "fp $fp smoothquant $sq w8a8 $ns awq-w3g64 $a3 rtn $r3 awq+gptq $ag"
exit 0
