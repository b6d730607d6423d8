#!/bin/bash
# lmc export --format gguf without llama.cpp: every tensor of the file,
# decoded by an independent reader (tests/tools/read_export.py, from ggml's
# published block formulas), equals lmc's own decoding; the chosen ggml
# types; what is refused, by name, and what --dequant writes instead.
set -u
. tests/cli_lib.sh
. tests/tools/export_lib.sh
M=data/llama-xs

"$LMC" export --help | grep -q "lmc export MODEL -o OUT --format gguf|gptq|awq" || fail "--help"
"$LMC" --help | grep -q "^  export " || fail "export missing from lmc --help"

types() { # JSON: "type:count ..." of the blk.* 2-D tensors
    jget "$1" "' '.join(sorted({f\"{t}:{sum(1 for i in d['items'] if i['name'].startswith('blk.') and i['to']==t and i['name'].endswith('weight') and 'norm' not in i['name'])}\" for t in {i['to'] for i in d['items'] if i['name'].startswith('blk.') and 'norm' not in i['name'] and i['name'].endswith('weight')}}))"
}
# source (rtn args) -> expected ggml type of every block linear
while read -r name want args; do
    "$LMC" rtn $M -o "$tmp/$name.lmc" -q $args > /dev/null || fail "rtn $args"
    "$LMC" export "$tmp/$name.lmc" -o "$tmp/$name.gguf" --format gguf --json -q > "$tmp/$name.json" \
        || fail "export $name: $(cat "$tmp/$name.json")"
    got=$(types "$tmp/$name.json")
    [ "$got" = "$want:28" ] || fail "$name: block linears $got, want $want:28"
    exact gguf "$tmp/$name.gguf" "$tmp/$name.lmc"
    echo "$name -> $want: exact ($(cat "$tmp/cmp"))"
done <<'LIST'
w8-sym-g32 q8_0 --bits 8 --sym --group 32
w5-sym-g128 q5_0 --bits 5 --sym --group 128
w5-asym-g32 q8_0 --bits 5 --group 32
w4-sym-g32 q4_0 --bits 4 --sym --group 32
w4-sym-row q4_0 --bits 4 --sym --group -1
w4-asym-g128 q5_0 --bits 4 --group 128
w3-asym-g32 q4_0 --bits 3 --group 32
w2-sym-g64 q4_0 --bits 2 --sym --group 64
LIST
# the comparison can fail: a 4-bit export is not the fp16 model
"$DUMP" $M "$tmp/dump-f16" || fail "dump"
$READER compare gguf "$tmp/w4-sym-g32.gguf" "$tmp/dump-f16" > "$tmp/cmp" && fail "reader found no difference between q4_0 and f16"
grep -q MISMATCH "$tmp/cmp" || fail "reader: $(cat "$tmp/cmp")"
# dense, and Q4_1 where every -scale*zero is an fp16 number
"$LMC" export $M -o "$tmp/f16.gguf" --format gguf -q > /dev/null || fail "export f16"
exact gguf "$tmp/f16.gguf" $M
"$SNAP" "$tmp/w4-asym-g128.lmc" "$tmp/q41.lmc" > /dev/null || fail snap
"$LMC" export "$tmp/q41.lmc" -o "$tmp/q41.gguf" --format gguf --json -q > "$tmp/q41.json" || fail "q41"
[ "$(types "$tmp/q41.json")" = "q4_1:28" ] || fail "snapped scales: $(types "$tmp/q41.json")"
exact gguf "$tmp/q41.gguf" "$tmp/q41.lmc"
# metadata llama.cpp reads
$READER info gguf "$tmp/f16.gguf" > "$tmp/info.json" || fail "info"
for kv in "'general.architecture']=='llama'" "'llama.attention.head_count_kv']==2" \
          "'llama.rope.dimension_count']==32" "'tokenizer.ggml.model']=='llama'" \
          "'tokenizer.ggml.add_bos_token']==True" "'tokenizer.ggml.bos_token_id']==1"; do
    [ "$(jget "$tmp/info.json" "d['kv'][$kv")" = True ] || fail "metadata: $kv"
done

# refused, by name and reason; nothing written
refused() { # MODEL PATTERN
    "$LMC" export "$1" -o "$tmp/r.gguf" --format gguf > /dev/null 2> "$tmp/err"; local rc=$?
    [ $rc -eq 1 ] || fail "$1: exit $rc, want 1"
    grep -qF -- "$2" "$tmp/err" || fail "$1: '$2' not in: $(cat "$tmp/err")"
    grep -q "blk.0.q.weight" "$tmp/err" || fail "$1: tensors not named: $(cat "$tmp/err")"
    [ "$(wc -l < "$tmp/err")" -eq 1 ] || fail "$1: more than one line"
    ls "$tmp" | grep -q '^r\.gguf' && fail "$1: output left behind"
    return 0
}
"$LMC" rtn $M -o "$tmp/g16.lmc" --bits 4 --group 16 -q > /dev/null || fail rtn
refused "$tmp/g16.lmc" "group size 16 is not a multiple of ggml's 32-column blocks"
"$LMC" rtn $M -o "$tmp/w8a.lmc" --bits 8 --group 64 -q > /dev/null || fail rtn
refused "$tmp/w8a.lmc" "asymmetric 8-bit codes with q - zero beyond Q8_0's int8"
"$LMC" gptq $M -o "$tmp/ao.lmc" --bits 4 --group 32 --act-order --nsamples 4 --seqlen 128 -q > /dev/null || fail gptq
refused "$tmp/ao.lmc" "act-order g_idx"
"$LMC" gptq $M -o "$tmp/sg.lmc" --bits 4 --group 32 --act-order --static-groups --nsamples 4 --seqlen 128 -q > /dev/null || fail gptq
"$LMC" export "$tmp/sg.lmc" -o "$tmp/sg.gguf" --format gguf -q > /dev/null || fail "static groups refused"
exact gguf "$tmp/sg.gguf" "$tmp/sg.lmc"
"$LMC" magnitude $M -o "$tmp/sp.lmc" --sparsity 0.5 -q > /dev/null || fail magnitude
refused "$tmp/sp.lmc" "sparse weights: ggml has no sparse types"
"$LMC" magnitude $M -o "$tmp/nm.lmc" --nm 2:4 -q > /dev/null || fail magnitude
refused "$tmp/nm.lmc" "nm weights: ggml has no sparse types"
"$LMC" svd $M -o "$tmp/lr.lmc" --keep 0.5 --nsamples 4 --seqlen 128 -q > /dev/null || fail svd
refused "$tmp/lr.lmc" "lowrank weights: llama.cpp has no factor pairs"
"$LMC" int8 $M -o "$tmp/i8.lmc" --nsamples 4 --seqlen 128 -q > /dev/null || fail int8
refused "$tmp/i8.lmc" "does not quantize activations"
"$LMC" smoothquant $M -o "$tmp/sq.lmc" --nsamples 4 --seqlen 128 -q > /dev/null || fail smoothquant
refused "$tmp/sq.lmc" "w8a8 weights"
grep -q -- "--dequant writes them as f16" "$tmp/err" || fail "no --dequant hint"

# --dequant: those tensors dense, reported; f32 keeps the decoded values exactly
"$LMC" export "$tmp/ao.lmc" -o "$tmp/ao.gguf" --format gguf --dequant --json -q > "$tmp/ao.json" || fail "--dequant"
[ "$(jget "$tmp/ao.json" "d['dequantized']")" = 28 ] || fail "--dequant count"
[ "$(types "$tmp/ao.json")" = "f16:28" ] || fail "--dequant types $(types "$tmp/ao.json")"
"$LMC" export "$tmp/lr.lmc" -o "$tmp/lr.gguf" --format gguf --dequant -q > "$tmp/out" || fail "--dequant text"
grep -q "dequantized: blk.0.attn_q.weight (lowrank" "$tmp/out" || fail "--dequant not listed: $(cat "$tmp/out")"
for m in ao sp lr; do
    "$LMC" export "$tmp/$m.lmc" -o "$tmp/$m-32.gguf" --format gguf --dequant --dequant-type f32 -q > /dev/null || fail "f32 $m"
    exact gguf "$tmp/$m-32.gguf" "$tmp/$m.lmc"
done
# sparse f16 values are exact in f16 too
exact gguf "$(f=$tmp/sp.gguf; "$LMC" export "$tmp/sp.lmc" -o $f --format gguf --dequant -q > /dev/null; echo $f)" "$tmp/sp.lmc"

# architectures: OPT refused (llama.cpp has none); GPT-2 and Qwen2 fused/biased
S=../shared
if [ -d "$S" ]; then
    expect 1 "llama.cpp has no OPT architecture" "$LMC" export "$S/models/opt-s" -o "$tmp/o.gguf" --format gguf
    [ ! -e "$tmp/o.gguf" ] || fail "OPT output left"
    "$LMC" rtn "$S/models/gpt2-s" -o "$tmp/g2.lmc" --bits 4 --group 64 -q > /dev/null || fail rtn
    "$LMC" export "$tmp/g2.lmc" -o "$tmp/g2.gguf" --format gguf -q > /dev/null || fail "gpt2"
    exact gguf "$tmp/g2.gguf" "$tmp/g2.lmc"
    $READER info gguf "$tmp/g2.gguf" > "$tmp/g2.info" && grep -q '"blk.0.attn_qkv.weight"' "$tmp/g2.info" \
        || fail "gpt2: no fused attn_qkv"
    "$LMC" export "$S/models/llama-s" -o "$tmp/ls.gguf" --format gguf -q > /dev/null || fail "llama-s"
    exact gguf "$tmp/ls.gguf" "$S/models/llama-s"
fi
python3 tests/tools/make_variant.py $M "$tmp/qwen2" qwen2 || fail "qwen2 variant"
"$LMC" rtn "$tmp/qwen2" -o "$tmp/qwen2.lmc" --bits 8 --sym --group 32 -q > /dev/null || fail rtn
"$LMC" export "$tmp/qwen2.lmc" -o "$tmp/qwen2.gguf" --format gguf -q > /dev/null || fail "qwen2"
exact gguf "$tmp/qwen2.gguf" "$tmp/qwen2.lmc"
$READER info gguf "$tmp/qwen2.gguf" > "$tmp/q2.info" && grep -q '"blk.0.attn_q.bias"' "$tmp/q2.info" \
    || fail "qwen2: no q bias"
echo "ok"
