#!/bin/bash
# lmc svd / lmc int8 on the vendored llama-xs: option errors (exit 2, naming
# the option), a failure leaves no output, the encodings, sizes and
# provenance of the outputs, FLOPs that fall with the rank, whitening's
# output error below plain SVD's, and LLM.int8() perplexity next to fp16.
set -u
. "$(dirname "$0")/../cli_lib.sh"
XS=data/llama-xs
CAL="--calib data/calib.txt --nsamples 4 --seqlen 128"
EV="--text data/eval.txt --max-windows 1 --seqlen 256 --json -q"

"$LMC" svd --help | grep -qF -- "--method M" || fail "svd --help lacks --method"
"$LMC" int8 --help | grep -qF -- "--threshold T" || fail "int8 --help lacks --threshold"
expect 2 "exactly one" "$LMC" svd $XS -o "$tmp/x.lmc"
expect 2 "exactly one" "$LMC" svd $XS -o "$tmp/x.lmc" --keep 0.5 --rank 4
expect 2 "--keep 1.5" "$LMC" svd $XS -o "$tmp/x.lmc" --keep 1.5
expect 2 "--keep 0:" "$LMC" svd $XS -o "$tmp/x.lmc" --keep 0
expect 2 "--rank 0" "$LMC" svd $XS -o "$tmp/x.lmc" --rank 0
expect 2 "--method 'qr'" "$LMC" svd $XS -o "$tmp/x.lmc" --keep 0.5 --method qr
expect 2 "--dtype 'bf16'" "$LMC" svd $XS -o "$tmp/x.lmc" --keep 0.5 --dtype bf16
expect 2 "--alpha" "$LMC" svd $XS -o "$tmp/x.lmc" --keep 0.5 --alpha -1
expect 2 "unknown option" "$LMC" svd $XS -o "$tmp/x.lmc" --keep 0.5 --bogus
expect 2 "missing -o" "$LMC" svd $XS --keep 0.5
expect 2 "--threshold 0" "$LMC" int8 $XS -o "$tmp/x.lmc" --threshold 0
expect 2 "--threshold abc" "$LMC" int8 $XS -o "$tmp/x.lmc" --threshold abc
expect 2 "unknown option" "$LMC" int8 $XS -o "$tmp/x.lmc" --keep 0.5
# calibration that cannot be read: exit 1, naming the file, nothing left behind
for c in "svd --keep 0.5 --method whiten" "int8"; do
    expect 1 "$tmp/nope.txt" "$LMC" $c $XS -o "$tmp/x.lmc" --calib "$tmp/nope.txt" -q
    [ ! -e "$tmp/x.lmc" ] || fail "$c left an output after a failure"
done

# --- svd ---
expect 0 "" "$LMC" svd $XS -o "$tmp/plain.lmc" --keep 0.8 -q --json
cp "$tmp/out" "$tmp/plain.json"
expect 0 "" "$LMC" svd $XS -o "$tmp/whiten.lmc" --keep 0.8 --method whiten $CAL -q --json
cp "$tmp/out" "$tmp/whiten.json"
expect 0 "" "$LMC" svd $XS -o "$tmp/asvd.lmc" --keep 0.8 --method asvd --alpha 0.5 $CAL -q
expect 0 "" "$LMC" svd $XS -o "$tmp/f32.lmc" --rank 16 --dtype f32 -q
# rank 200 > min(out, in) everywhere: every linear stays as it was
expect 0 "28 linear(s) left dense" "$LMC" svd $XS -o "$tmp/dense.lmc" --rank 200
"$LMC" inspect "$tmp/dense.lmc" | grep -q "lowrank" && fail "dense: a linear was factored"

"$LMC" inspect "$tmp/plain.lmc" >"$tmp/i" || fail "inspect plain"
grep -q "blk.0.q.weight .*lowrank r51" "$tmp/i" || fail "plain: q not rank 51: $(cat "$tmp/i")"
grep -q "blk.3.down.weight .*lowrank r75" "$tmp/i" || fail "plain: down not rank 75"
grep -q "embed.weight .*f16" "$tmp/i" || fail "plain: embeddings not left f16"
grep -qF '"pass":"svd","args":{"method":"plain","keep":0.8,"dtype":"f16"}' "$tmp/i" ||
    fail "plain provenance"
"$LMC" inspect "$tmp/whiten.lmc" | grep -qF '"args":{"method":"whiten","keep":0.8,"dtype":"f16"},"source":"data/llama-xs","device":"cpu","precision":"fp32","calibration":{' ||
    fail "whiten provenance"
"$LMC" inspect "$tmp/f32.lmc" | grep -q "blk.0.k.weight .*lowrank r16 f32 *12288 " ||
    fail "f32 factors: $("$LMC" inspect "$tmp/f32.lmc" | grep blk.0.k)"

"$LMC" eval $XS $EV >"$tmp/fp16.eval" || fail "eval fp16"
"$LMC" eval "$tmp/plain.lmc" $EV >"$tmp/plain.eval" || fail "eval plain"
"$LMC" eval "$tmp/whiten.lmc" $EV >"$tmp/whiten.eval" || fail "eval whiten"
python3 - "$tmp" <<'PY' || fail "svd outputs"
import json, sys
t = sys.argv[1]
ld = lambda n: json.load(open(f"{t}/{n}"))
base, plain, whiten = ld("fp16.eval"), ld("plain.eval"), ld("whiten.eval")
sp, sw = ld("plain.json"), ld("whiten.json")
# the linears shrink to the kept fraction (within 2%)
frac = sp["svd"]["params_after"] / sp["svd"]["params_before"]
assert abs(frac - 0.8) < 0.016, frac
lin_fp16 = 2 * sp["svd"]["params_before"]
saved = base["bytes_model"] - plain["bytes_model"]
assert abs((lin_fp16 - saved) / lin_fp16 - frac) < 0.001, (saved, lin_fp16, frac)
# effective FLOPs fall by the removed multiply-adds, 2 per parameter
drop = plain["flops_per_token_dense"] - plain["flops_per_token"]
assert drop == 2 * (sp["svd"]["params_before"] - sp["svd"]["params_after"]), drop
assert plain["flops_per_token_dense"] == base["flops_per_token"]
# per-layer statistics; whitening minimizes the output error, not ||W - AB||
assert len(sw["layers"]) == 28 and all("rel_output_error" in l for l in sw["layers"])
assert all(0 < l["rel_error"] < 1 for l in sp["layers"])
for l in sw["layers"]:
    assert l["rel_output_error"] < l["rel_error"], l
for e in (plain, whiten):
    assert 1 < e["ppl"] < 2 * base["ppl"], e["ppl"]
assert whiten["ppl"] < plain["ppl"], (whiten["ppl"], plain["ppl"])
print(f"svd keep 0.8 on llama-xs: fp16 {base['ppl']:.3f} plain {plain['ppl']:.3f} whiten {whiten['ppl']:.3f}")
PY

# --- int8 ---
expect 0 "" "$LMC" int8 $XS -o "$tmp/int8.lmc" $CAL -q --json
cp "$tmp/out" "$tmp/int8.json"
"$LMC" inspect "$tmp/int8.lmc" >"$tmp/i" || fail "inspect int8"
grep -q "blk.2.up.weight .*int8" "$tmp/i" || fail "int8: up not int8"
grep -qF '"pass":"int8","args":{"threshold":6,"outliers":[{"tensor":"blk.0.q.weight","n_outlier":' "$tmp/i" ||
    fail "int8 provenance"
"$LMC" eval "$tmp/int8.lmc" $EV >"$tmp/int8.eval" || fail "eval int8"
python3 - "$tmp" <<'PY' || fail "int8 outputs"
import json, sys
t = sys.argv[1]
ld = lambda n: json.load(open(f"{t}/{n}"))
base, q, s = ld("fp16.eval"), ld("int8.eval"), ld("int8.json")
assert len(s["layers"]) == 28
for l in s["layers"]:
    assert l["n_outlier"] == len(l["outlier_columns"])
    assert (l["n_outlier"] > 0) == (l["act_absmax"] >= 6), l
    assert 0 < l["rel_error"] < 0.02, l
assert s["int8"]["outlier_columns"] == sum(l["n_outlier"] for l in s["layers"])
assert q["flops_per_token"] == base["flops_per_token"]
assert q["bits_per_weight"] < 8.5, q["bits_per_weight"]
rel = abs(q["ppl"] / base["ppl"] - 1)
assert rel < 0.01, (q["ppl"], base["ppl"])
print(f"int8 on llama-xs: ppl {q['ppl']:.4f} vs fp16 {base['ppl']:.4f}")
PY
exit 0
