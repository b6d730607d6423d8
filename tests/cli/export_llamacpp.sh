#!/bin/bash
# GGUF exports run by the real llama.cpp (node-llama-cpp's prebuilt CPU
# build, tests/llamacpp/): its token ids of data/eval.txt equal lmc
# tokenize's, and its perplexity of the first windows equals lmc eval's of
# the source within 0.05% (F16), 0.3% (Q8_0), 0.5% (Q4_0/Q4_1/Q5_0; llama.cpp
# quantizes activations for quantized dot products on the CPU). llama-xs
# always (a few windows: LMC_EXPORT_WINDOWS, default 1); llama-s, gpt2-s
# (LMC_EXPORT_WINDOWS_SHARED, default 1) and tokenizer variants when
# ../shared is there. Skips (77) when npm or its
# registry is unreachable.
set -u
. tests/cli_lib.sh
. tests/tools/export_lib.sh
llamacpp_setup
W=${LMC_EXPORT_WINDOWS:-1}
M=data/llama-xs

gguf_type() { # GGUF TENSOR: its ggml type name per the exporter's --json
    jget "$1.json" "[i['to'] for i in d['items'] if i['name'] == '$2'][0]"
}
export_gguf() { # MODEL OUT [options]: export, keeping the --json report beside OUT
    local m=$1 o=$2; shift 2
    "$LMC" export "$m" -o "$o" --format gguf --json -q "$@" > "$o.json" || fail "export $m: $(cat "$o.json")"
}

"$LMC" tokenize $M data/eval.txt -o "$tmp/ids.i32" || fail "tokenize"
export_gguf $M "$tmp/f16.gguf"
llamacpp "$tmp/f16.gguf" tokenize data/eval.txt "$tmp/lc.i32" > /dev/null || fail "llama.cpp tokenize"
cmp -s "$tmp/lc.i32" "$tmp/ids.i32" || fail "llama.cpp's ids of data/eval.txt differ from lmc tokenize's"
echo "llama-xs: llama.cpp's $(( $(stat -c %s "$tmp/ids.i32") / 4 )) token ids of data/eval.txt equal lmc tokenize's"
ppl_check "llama-xs f16" "$tmp/f16.gguf" $M "$tmp/ids.i32" "$W" 0.05

# quantized sources: what each maps onto, then the perplexity
quant() { # NAME GGTYPE TOL rtn-args...
    local n=$1 ty=$2 tol=$3; shift 3
    "$LMC" rtn $M -o "$tmp/$n.lmc" --group 32 -q "$@" > /dev/null || fail "rtn $*"
    export_gguf "$tmp/$n.lmc" "$tmp/$n.gguf"
    [ "$(gguf_type "$tmp/$n.gguf" blk.0.attn_q.weight)" = "$ty" ] || fail "$n: not $ty"
    ppl_check "llama-xs $n -> $ty" "$tmp/$n.gguf" "$tmp/$n.lmc" "$tmp/ids.i32" "$W" "$tol"
}
quant w8-sym q8_0 0.3 --bits 8 --sym
quant w4-sym q4_0 0.5 --bits 4 --sym
quant w4-asym q5_0 0.5 --bits 4
# Q4_1 needs every -scale*zero to be an fp16 number: scales cut to 7 bits
"$SNAP" "$tmp/w4-asym.lmc" "$tmp/w4-q41.lmc" > /dev/null || fail "snap_scales"
export_gguf "$tmp/w4-q41.lmc" "$tmp/w4-q41.gguf"
[ "$(gguf_type "$tmp/w4-q41.gguf" blk.0.attn_q.weight)" = q4_1 ] || fail "snapped scales: not q4_1"
ppl_check "llama-xs w4-asym-7bit-scales -> q4_1" "$tmp/w4-q41.gguf" "$tmp/w4-q41.lmc" "$tmp/ids.i32" "$W" 0.5

# architectures and RoPE scalings of the mapping (512-token windows: quick)
for v in qwen2 rope-linear rope-llama3; do
    python3 tests/tools/make_variant.py $M "$tmp/$v" $v || fail "make_variant $v"
    export_gguf "$tmp/$v" "$tmp/$v.gguf"
    "$LMC" tokenize "$tmp/$v" data/eval.txt -o "$tmp/$v.i32" || fail "tokenize $v"
    "$LMC" eval "$tmp/$v" --text data/eval.txt --seqlen 512 --max-windows "$W" --json > "$tmp/ev.json" 2>/dev/null \
        || fail "lmc eval $v"
    lc=$(llamacpp "$tmp/$v.gguf" ppl "$tmp/$v.i32" 512 "$W") || fail "llama.cpp $v"
    python3 - "$v" "$(jget "$tmp/ev.json" "repr(d['ppl'])")" "$lc" <<'PY' || exit 1
import json, sys
lmc, lc = float(sys.argv[2]), json.loads(sys.argv[3])['ppl']
d = 100 * (lc - lmc) / lmc
print(f"llama-xs {sys.argv[1]} f16 (512-token windows): llama.cpp {lc:.4f}, lmc {lmc:.4f}: {d:+.4f}% (tolerance 0.05%)")
sys.exit(abs(d) > 0.05)
PY
done
grep -q 'architecture qwen2' "$tmp/qwen2.gguf.json" || fail "qwen2 variant not exported as qwen2"
# bf16 weights, and a Qwen2 with its own byte-fallback tokenizer: the random
# tiny-qwen2 of scripts/make-random-checkpoint (its near-uniform predictions
# check the weights' path and the tokenizer, not much of the model)
scripts/make-random-checkpoint tiny-qwen2 "$tmp/tq2" > /dev/null 2>&1 || fail "make-random-checkpoint"
export_gguf "$tmp/tq2" "$tmp/tq2.gguf"
[ "$(gguf_type "$tmp/tq2.gguf" blk.0.attn_q.weight)" = bf16 ] || fail "tiny-qwen2: not bf16"
"$LMC" tokenize "$tmp/tq2" data/eval.txt -o "$tmp/tq2.i32" || fail "tokenize tq2"
llamacpp "$tmp/tq2.gguf" tokenize data/eval.txt "$tmp/tq2.lc.i32" > /dev/null || fail "llama.cpp tokenize tq2"
cmp -s "$tmp/tq2.i32" "$tmp/tq2.lc.i32" || fail "tiny-qwen2: llama.cpp's ids differ from lmc's"
ppl_check "tiny-qwen2 (random) bf16" "$tmp/tq2.gguf" "$tmp/tq2" "$tmp/tq2.i32" 2 0.05

S=../shared
if [ ! -d "$S" ]; then
    echo "SKIP: ../shared absent (llama-s, gpt2-s)"
    exit 0
fi
WS=${LMC_EXPORT_WINDOWS_SHARED:-1}
for m in llama-s gpt2-s; do
    export_gguf "$S/models/$m" "$tmp/$m.gguf"
    llamacpp "$tmp/$m.gguf" tokenize "$S/data/eval.txt" "$tmp/$m.lc.i32" > /dev/null || fail "$m tokenize"
    cmp -s "$tmp/$m.lc.i32" "$S/reference/$m.eval.ids.i32" || fail "$m: llama.cpp's ids differ from the reference ids"
    echo "$m: llama.cpp's token ids of eval.txt equal the Hugging Face reference ids"
    ppl_check "$m f16" "$tmp/$m.gguf" "$S/models/$m" "$S/reference/$m.eval.ids.i32" "$WS" 0.05 "$S/data/eval.txt"
    "$LMC" rtn "$S/models/$m" -o "$tmp/$m-w4.lmc" --bits 4 --sym --group 32 -q > /dev/null || fail "$m rtn"
    # llama-s's FFN width 688 is no multiple of 32: its down_proj needs --dequant
    export_gguf "$tmp/$m-w4.lmc" "$tmp/$m-w4.gguf" --dequant
    ppl_check "$m w4-sym -> q4_0" "$tmp/$m-w4.gguf" "$tmp/$m-w4.lmc" "$S/reference/$m.eval.ids.i32" "$WS" 0.5 "$S/data/eval.txt"
done
[ "$(jget "$tmp/llama-s-w4.gguf.json" "d['dequantized']")" = 8 ] || fail "llama-s: the 8 down_proj are not the only dequantized tensors"
# byte-level tokenizers that select llama.cpp's Llama-3 and Qwen2 regexes
for k in llama-bpe qwen2; do
    mkdir -p "$tmp/tv-$k" && cp "$S"/models/gpt2-s/* "$tmp/tv-$k/" && chmod u+w "$tmp/tv-$k"/*
    python3 - "$S/models/gpt2-s/tokenizer.json" "$tmp/tv-$k/tokenizer.json" $k <<'PY' || fail "tokenizer variant"
import json, sys
t = json.load(open(sys.argv[1]))
l3 = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
      "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
re_ = l3 if sys.argv[3] == 'llama-bpe' else l3.replace("\\p{N}{1,3}", "\\p{N}")
t['pre_tokenizer'] = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": re_}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
t['model']['ignore_merges'] = sys.argv[3] == 'llama-bpe'
if sys.argv[3] == 'qwen2':
    t['normalizer'] = {"type": "NFC"}
json.dump(t, open(sys.argv[2], 'w'))
PY
    export_gguf "$tmp/tv-$k" "$tmp/tv-$k.gguf"
    llamacpp "$tmp/tv-$k.gguf" tokenize "$S/data/eval.txt" "$tmp/tv-$k.lc.i32" > /dev/null || fail "$k tokenize"
    "$LMC" tokenize "$tmp/tv-$k" "$S/data/eval.txt" -o "$tmp/tv-$k.i32" || fail "$k lmc tokenize"
    cmp -s "$tmp/tv-$k.lc.i32" "$tmp/tv-$k.i32" || fail "tokenizer.ggml.pre $k: llama.cpp's ids differ from lmc's"
    echo "gpt2-s with a $k pre-tokenizer: llama.cpp's ids of eval.txt equal lmc tokenize's"
done
echo "ok"
