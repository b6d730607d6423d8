#!/bin/bash
# lmc export --format gptq|awq: no GPTQ/AWQ loader can be installed here, so
# an independent reader written from AutoGPTQ's and AutoAWQ's published
# layouts (tests/tools/read_export.py) decodes every exported tensor, and
# each must equal lmc's own decoding; the buffer shapes those loaders
# register, the quantization_config, the copied tokenizer files, what is
# refused by name and what --dequant excludes.
set -u
. tests/cli_lib.sh
. tests/tools/export_lib.sh
M=data/llama-xs

hf() { # FORMAT MODEL OUT [options]
    local f=$1 m=$2 o=$3; shift 3
    "$LMC" export "$m" -o "$o" --format "$f" --json -q "$@" > "$o.json" || fail "export $f $m: $(cat "$o.json")"
}
qc() { jget "$1/config.json" "d['quantization_config'][$2]"; }

# GPTQ: 2, 3 (words spill), 4, 8 bits, symmetric or not, groups or per row
while read -r name sym args; do
    "$LMC" rtn $M -o "$tmp/$name.lmc" -q $args > /dev/null || fail "rtn $args"
    hf gptq "$tmp/$name.lmc" "$tmp/$name-gptq"
    exact gptq "$tmp/$name-gptq" "$tmp/$name.lmc"
    [ "$(qc "$tmp/$name-gptq" "'quant_method'")" = gptq ] || fail "$name: quant_method"
    [ "$(qc "$tmp/$name-gptq" "'checkpoint_format'")" = gptq ] || fail "$name: checkpoint_format"
    [ "$(qc "$tmp/$name-gptq" "'sym'")" = "$sym" ] || fail "$name: sym"
    [ "$(qc "$tmp/$name-gptq" "'desc_act'")" = False ] || fail "$name: desc_act"
    cmp -s "$tmp/$name-gptq/quantize_config.json" <(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["quantization_config"]))' "$tmp/$name-gptq/config.json") \
        || python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["quantization_config"]; b=json.load(open(sys.argv[2])); sys.exit(a!=b)' \
            "$tmp/$name-gptq/config.json" "$tmp/$name-gptq/quantize_config.json" || fail "$name: quantize_config.json"
    echo "gptq $name: exact ($(cat "$tmp/cmp"))"
done <<'LIST'
w2-sym-g32 True --bits 2 --sym --group 32
w3-asym-g32 False --bits 3 --group 32
w3-sym-row True --bits 3 --sym --group -1
w4-asym-g128 False --bits 4 --group 128
w8-sym-g64 True --bits 8 --sym --group 64
LIST
[ "$(qc "$tmp/w3-asym-g32-gptq" "'bits'")" = 3 ] && [ "$(qc "$tmp/w3-asym-g32-gptq" "'group_size'")" = 32 ] || fail "bits/group"
[ "$(qc "$tmp/w3-sym-row-gptq" "'group_size'")" = -1 ] || fail "group -1"
# the original config.json text is kept; model weights under their HF names
python3 - "$M/config.json" "$tmp/w4-asym-g128-gptq/config.json" <<'PY' || fail "config.json changed beyond quantization_config"
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
b.pop('quantization_config'); sys.exit(a != b)
PY
grep -q '"rope_theta": 10000.0' "$tmp/w4-asym-g128-gptq/config.json" || fail "config.json text not kept"
# act-order: g_idx carries the column groups, desc_act true
"$LMC" gptq $M -o "$tmp/ao.lmc" --bits 4 --group 32 --act-order --nsamples 4 --seqlen 128 -q > /dev/null || fail gptq
hf gptq "$tmp/ao.lmc" "$tmp/ao-gptq"
exact gptq "$tmp/ao-gptq" "$tmp/ao.lmc"
[ "$(qc "$tmp/ao-gptq" "'desc_act'")" = True ] || fail "act-order: desc_act"
echo "gptq act-order: exact, desc_act true"

# AWQ GEMM: 4-bit, groups dividing in_features; lmc's own awq pass too
# (llama-xs's FFN width 352 is no multiple of 128: groups of 32)
"$LMC" awq $M -o "$tmp/awq.lmc" --group 32 --nsamples 4 --seqlen 128 -q > /dev/null || fail "lmc awq"
"$LMC" rtn $M -o "$tmp/w4-asym-g32.lmc" --bits 4 --group 32 -q > /dev/null || fail rtn
refused() { # FORMAT MODEL PATTERN
    "$LMC" export "$2" -o "$tmp/r" --format "$1" > /dev/null 2> "$tmp/err"; local rc=$?
    [ $rc -eq 1 ] || fail "$1 $2: exit $rc, want 1"
    grep -qF -- "$3" "$tmp/err" || fail "$1 $2: '$3' not in: $(cat "$tmp/err")"
    [ "$(wc -l < "$tmp/err")" -eq 1 ] || fail "$1 $2: more than one line"
    ls "$tmp" | grep -q '^r' && fail "$1 $2: output left behind"
    return 0
}
refused awq "$tmp/w4-asym-g128.lmc" "in_features not a multiple of the group size 128 (AWQ has no short last group) (blk.0.down.weight"
for name in w4-asym-g32 awq; do
    hf awq "$tmp/$name.lmc" "$tmp/$name-awq"
    exact awq "$tmp/$name-awq" "$tmp/$name.lmc"
    [ "$(qc "$tmp/$name-awq" "'quant_method'")/$(qc "$tmp/$name-awq" "'version'")/$(qc "$tmp/$name-awq" "'zero_point'")/$(qc "$tmp/$name-awq" "'bits'")" = awq/gemm/True/4 ] \
        || fail "$name: awq quantization_config"
    echo "awq $name: exact ($(cat "$tmp/cmp"))"
done
"$LMC" rtn $M -o "$tmp/w4s.lmc" --bits 4 --sym --group 32 -q > /dev/null || fail rtn
hf awq "$tmp/w4s.lmc" "$tmp/w4s-awq"
exact awq "$tmp/w4s-awq" "$tmp/w4s.lmc"
# the reader's comparison can fail
$READER compare awq "$tmp/w4s-awq" "$tmp/dump-none" > "$tmp/cmp" 2>&1 && fail "reader accepted a missing dump"
"$DUMP" "$tmp/w4-asym-g32.lmc" "$tmp/d-other" || fail dump
$READER compare awq "$tmp/w4s-awq" "$tmp/d-other" > "$tmp/cmp" && fail "reader found no difference between two models"
grep -q MISMATCH "$tmp/cmp" || fail "reader: $(cat "$tmp/cmp")"

# tokenizer files: the container's tokenizer.json, or --hf-files DIR's set
[ -f "$tmp/w4s-awq/tokenizer.json" ] && [ ! -e "$tmp/w4s-awq/tokenizer_config.json" ] || fail "container: tokenizer.json only"
cmp -s "$tmp/w4s-awq/tokenizer.json" $M/tokenizer.json || fail "tokenizer.json differs"
hf gptq "$tmp/w4s.lmc" "$tmp/w4s-hf" --hf-files $M
for f in tokenizer.json tokenizer_config.json generation_config.json; do
    cmp -s "$tmp/w4s-hf/$f" "$M/$f" || fail "--hf-files: $f not copied"
done
ls -a "$tmp/w4s-hf" | grep -q 'tmp' && fail "temporary files left in the export"

# refused by name: AWQ is 4-bit, no act-order; GPTQ v1 cannot hold a zero of 0, nor 5 bits
refused awq "$tmp/w8-sym-g64.lmc" "8-bit codes (AWQ GEMM is 4-bit only) (blk.0.q.weight"
refused awq "$tmp/ao.lmc" "act-order g_idx (AWQ has none"
"$LMC" rtn $M -o "$tmp/w4row.lmc" --bits 4 --group -1 -q > /dev/null || fail rtn
refused awq "$tmp/w4row.lmc" "one group per row"
"$LMC" rtn $M -o "$tmp/w5.lmc" --bits 5 --group 32 -q > /dev/null || fail rtn
refused gptq "$tmp/w5.lmc" "5-bit codes (GPTQ loaders pack 2, 3, 4 or 8 bits)"
refused gptq $M "no linear is stored in grouped integers"
"$LMC" magnitude $M -o "$tmp/sp.lmc" --sparsity 0.5 -q > /dev/null || fail magnitude
refused gptq "$tmp/sp.lmc" "no linear is stored in grouped integers (blk.0.q.weight is sparse"
# a zero point of 0 (a group without negative weights) does not fit v1's zero - 1
python3 - "$M" "$tmp/pos" <<'PY' || fail "positive-weight variant"
import json, os, shutil, struct, sys
src, dst = sys.argv[1:]
shutil.copytree(src, dst)
p = os.path.join(dst, 'model.safetensors'); d = bytearray(open(p, 'rb').read())
n = struct.unpack_from('<Q', d, 0)[0]; h = json.loads(d[8:8 + n])
b, e = h['model.layers.0.self_attn.q_proj.weight']['data_offsets']
for i in range(8 + n + b, 8 + n + b + 64, 2):       # row 0, columns 0..31: |w|
    d[i + 1] &= 0x7f
open(p, 'wb').write(d)
PY
"$LMC" rtn "$tmp/pos" -o "$tmp/pos.lmc" --bits 4 --group 32 -q > /dev/null || fail rtn
refused gptq "$tmp/pos.lmc" "a zero point of 0 in some group (GPTQ v1 stores zero - 1 in 4 bits) (blk.0.q.weight)"
# --dequant: q's fused partners k and v go dense with it, and are excluded
hf gptq "$tmp/pos.lmc" "$tmp/pos-gptq" --dequant --dequant-type f32
exact gptq "$tmp/pos-gptq" "$tmp/pos.lmc"
[ "$(jget "$tmp/pos-gptq.json" "d['dequantized']")" = 3 ] || fail "--dequant: q, k, v"
python3 - "$tmp/pos-gptq/config.json" <<'PY' || fail "--dequant: exclusions in quantization_config"
import json, sys
q = json.load(open(sys.argv[1]))['quantization_config']
keep = q['modules_in_block_to_quantize'][0]
assert 'model.layers.0.self_attn.q_proj' not in keep and 'model.layers.0.self_attn.o_proj' in keep, keep
assert len(keep) == 25, len(keep)
assert set(q['dynamic']) == {'-:^model\\.layers\\.0\\.self_attn\\.%s_proj$' % r for r in 'qkv'}, q['dynamic']
PY
hf awq "$tmp/w4s.lmc" "$tmp/ex-awq" # (no exclusions: null)
[ "$(qc "$tmp/ex-awq" "'modules_to_not_convert'")" = None ] || fail "awq: modules_to_not_convert"

S=../shared
if [ ! -d "$S" ]; then
    echo "SKIP: ../shared absent (opt-s, gpt2-s, llama-s)"
    exit 0
fi
for m in opt-s gpt2-s llama-s; do
    "$LMC" rtn "$S/models/$m" -o "$tmp/$m.lmc" --bits 4 --group 128 -q > /dev/null || fail "$m rtn"
done
for f in gptq awq; do
    hf $f "$tmp/opt-s.lmc" "$tmp/opt-$f" --hf-files "$S/models/opt-s"
    exact $f "$tmp/opt-$f" "$tmp/opt-s.lmc"
    echo "opt-s $f: exact"
done
hf gptq "$tmp/gpt2-s.lmc" "$tmp/gpt2-gptq"
exact gptq "$tmp/gpt2-gptq" "$tmp/gpt2-s.lmc"
grep -q '"transformer.h.0.attn.c_attn.qweight"' "$tmp/gpt2-gptq.json" || fail "gpt2: c_attn not fused"
echo "gpt2-s gptq: exact (Conv1D, fused c_attn)"
expect 1 "GPT-2's are Conv1D" "$LMC" export "$tmp/gpt2-s.lmc" -o "$tmp/gpt2-awq" --format awq
# llama-s: FFN width 688 fits neither GPTQ's 32-multiples nor AWQ's group 128
refused gptq "$tmp/llama-s.lmc" "not a multiple of 32"
refused awq "$tmp/llama-s.lmc" "not a multiple of the group size 128"
hf awq "$tmp/llama-s.lmc" "$tmp/ls-awq" --dequant --dequant-type f32
exact awq "$tmp/ls-awq" "$tmp/llama-s.lmc"
[ "$(jget "$tmp/ls-awq/config.json" "len(d['quantization_config']['modules_to_not_convert'])")" = 8 ] || fail "llama-s awq exclusions"
echo "ok"
