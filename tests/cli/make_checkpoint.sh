#!/bin/bash
# scripts/make-random-checkpoint on the small shapes: lmc loads, inspects,
# tokenizes and evaluates what it writes; sharding writes a valid index; both
# dtypes; the values are normal(0, std) with norms 1 and biases 0, fixed by the
# seed and independent of --shards / --layers; bad arguments exit 2, failures
# exit 1 and leave nothing behind.
set -u
. "$(dirname "$0")/../cli_lib.sh"
command -v "${CC:-cc}" >/dev/null || { echo "SKIP: no C compiler to build the generator"; exit 77; }
MK=scripts/make-random-checkpoint

# st FILE... -- PYTHON: PYTHON run with t = {name: (dtype, shape, raw bytes, file)} over FILES
st() {
    local files=()
    while [ "$1" != "--" ]; do files+=("$1"); shift; done
    python3 - "$2" "${files[@]}" <<'EOF'
import json, struct, sys, math
t = {}
for p in sys.argv[2:]:
    with open(p, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        h = json.loads(f.read(n)); data = f.read()
    assert n % 8 == 0, p + ': header not padded to 8'
    end = 0
    for k, v in sorted(((k, v) for k, v in h.items() if k != '__metadata__'),
                       key=lambda kv: kv[1]['data_offsets'][0]):
        a, b = v['data_offsets']; assert a == end, p + ': gap or overlap at ' + k; end = b
        t[k] = (v['dtype'], v['shape'], data[a:b], p)
    assert end == len(data), p + ': data area not tiled'
    assert h['__metadata__'] == {'format': 'pt'}
def vals(k):
    d, s, raw, _ = t[k]; n = len(raw) // 2
    if d == 'F16': return struct.unpack('<%de' % n, raw)
    return [struct.unpack('<f', b'\0\0' + raw[i:i + 2])[0] for i in range(0, len(raw), 2)]
exec(sys.argv[1])
EOF
}

# ---- tiny: fp16, one file, what lmc makes of it ----
expect 0 "" $MK tiny "$tmp/a"
for f in config.json generation_config.json model.safetensors tokenizer.json \
         tokenizer_config.json; do
    [ -f "$tmp/a/$f" ] || fail "tiny: no $f"
done
[ ! -e "$tmp/a/model.safetensors.index.json" ] || fail "one shard has no index"
ls "$tmp" | grep -q tmp && fail "a temporary directory was left: $(ls "$tmp")"
[ "$(jget "$tmp/a/config.json" "d['dtype'], d['rope_parameters']['rope_theta'], d['vocab_size']")" \
    = "('float16', 10000.0, 512)" ] || fail "tiny config: $(cat "$tmp/a/config.json")"
expect 0 "" "$LMC" inspect "$tmp/a"
# embed + head 2*512*128, 2 x (q,o 128*128 + k,v 64*128 + 3 * 128*352 + 2 norms), norm
want=$((2 * 512 * 128 + 2 * (2 * 128 * 128 + 2 * 64 * 128 + 3 * 128 * 352 + 2 * 128) + 128))
grep -Eq "^params: +$want$" "$tmp/out" || fail "tiny params, want $want: $(head -6 "$tmp/out")"
grep -q "source dtype float16" "$tmp/out" || fail "tiny dtype: $(head -4 "$tmp/out")"
# the tokenizer: byte fallback, ~1 id per byte, every id inside the vocab
"$LMC" tokenize "$tmp/a" data/eval.txt > "$tmp/ids" || fail "lmc tokenize"
python3 -c '
import sys; ids = [int(x) for x in open(sys.argv[1])]; n = int(sys.argv[2])
assert ids[0] == 1, "first id %d is not <s>" % ids[0]
assert 0 <= min(ids) and max(ids) < 512, "ids outside the vocab: %d..%d" % (min(ids), max(ids))
assert n <= len(ids) <= 1.05 * n, "%d ids for %d bytes" % (len(ids), n)
' "$tmp/ids" "$(stat -c %s data/eval.txt)" || fail "tokenize ids"
"$LMC" tokenize "$tmp/a" --decode <(python3 -c '
import struct, sys; ids = [int(x) for x in open(sys.argv[1])]
sys.stdout.buffer.write(struct.pack("<%di" % len(ids), *ids))' "$tmp/ids") --skip-special \
    > "$tmp/back.txt" || fail "decode"
cmp -s "$tmp/back.txt" data/eval.txt || fail "tokenizer round trip differs"
# a random model's perplexity is about the vocab size: exp(log V + var(logit)/2),
# logit std = sqrt(hidden) * 0.02 = 0.23, so about 525 here
expect 0 "" "$LMC" eval "$tmp/a" --text data/eval.txt --max-windows 2 --seqlen 64 --json -q
ppl=$(jget "$tmp/out" "d['ppl']")
python3 -c "import sys; p = float(sys.argv[1]); sys.exit(not 400 < p < 700)" "$ppl" \
    || fail "tiny perplexity $ppl, want about 525"
# the values: normal(0, 0.02), norms 1
st "$tmp/a/model.safetensors" -- '
v = vals("model.embed_tokens.weight"); n = len(v); m = sum(v) / n
s = math.sqrt(sum((x - m) ** 2 for x in v) / n)
k = sum((x - m) ** 4 for x in v) / n / s ** 4
assert abs(m) < 0.0005 and abs(s - 0.02) < 0.0004 and abs(k - 3) < 0.15, (m, s, k)
assert set(vals("model.norm.weight")) == {1.0}
assert set(vals("model.layers.1.post_attention_layernorm.weight")) == {1.0}
assert t["model.layers.0.self_attn.k_proj.weight"][1] == [64, 128]
assert t["model.layers.1.mlp.down_proj.weight"][1] == [128, 352]
assert len(t) == 21 and "lm_head.weight" in t
' || fail "tiny values"

# ---- the same seed gives the same files; another seed other weights ----
expect 0 "" $MK tiny "$tmp/a2"
for f in $(ls "$tmp/a"); do cmp -s "$tmp/a/$f" "$tmp/a2/$f" || fail "seed 0 twice: $f differs"; done
expect 0 "" $MK tiny "$tmp/s7" --seed 7 --std 0.05
cmp -s "$tmp/a/model.safetensors" "$tmp/s7/model.safetensors" && fail "--seed 7: same weights"
st "$tmp/s7/model.safetensors" -- '
v = vals("lm_head.weight"); s = math.sqrt(sum(x * x for x in v) / len(v))
assert abs(s - 0.05) < 0.001, s' || fail "--std 0.05"

# ---- bf16 in 3 shards: a valid index, the same draws as one file ----
expect 0 "" $MK tiny "$tmp/b" --dtype bfloat16 --shards 3
[ "$(jget "$tmp/b/config.json" "d['dtype']")" = bfloat16 ] || fail "bf16 config dtype"
python3 - "$tmp/b" <<'EOF' || fail "sharded index"
import json, os, struct, sys
d = sys.argv[1]
idx = json.load(open(os.path.join(d, 'model.safetensors.index.json')))
wm = idx['weight_map']
files = sorted(set(wm.values()))
assert files == ['model-%05d-of-00003.safetensors' % k for k in (1, 2, 3)], files
assert sorted(f for f in os.listdir(d) if f.endswith('.safetensors')) == files
assert list(wm) == sorted(wm), 'weight_map not sorted'
size = params = 0
for f in files:
    with open(os.path.join(d, f), 'rb') as fh:
        h = json.loads(fh.read(struct.unpack('<Q', fh.read(8))[0]))
    names = [k for k in h if k != '__metadata__']
    assert sorted(names) == sorted(k for k, v in wm.items() if v == f), f
    for k in names:
        a, b = h[k]['data_offsets']; size += b - a; assert h[k]['dtype'] == 'BF16'
        n = 1
        for x in h[k]['shape']: n *= x
        params += n; assert b - a == 2 * n
assert idx['metadata'] == {'total_parameters': params, 'total_size': size}, idx['metadata']
assert len(wm) == 21
EOF
expect 0 "" "$LMC" inspect "$tmp/b"
grep -Eq "^params: +$want$" "$tmp/out" || fail "sharded params: $(head -6 "$tmp/out")"
grep -q "source dtype bfloat16" "$tmp/out" || fail "sharded dtype"
expect 0 "" $MK tiny "$tmp/b1" --dtype bfloat16
expect 0 "" $MK tiny "$tmp/l1" --dtype bfloat16 --layers 1
st "$tmp"/b/model-0000*.safetensors -- 'assert len(t) == 21' || fail "shard files"
python3 - "$tmp" <<'EOF' || fail "values depend on --shards or --layers"
import json, struct, sys, os
def load(paths):
    t = {}
    for p in paths:
        with open(p, 'rb') as f:
            h = json.loads(f.read(struct.unpack('<Q', f.read(8))[0])); data = f.read()
        for k, v in h.items():
            if k != '__metadata__':
                a, b = v['data_offsets']; t[k] = data[a:b]
    return t
d = sys.argv[1]
sh = load([os.path.join(d, 'b', 'model-%05d-of-00003.safetensors' % k) for k in (1, 2, 3)])
one = load([os.path.join(d, 'b1', 'model.safetensors')])
cut = load([os.path.join(d, 'l1', 'model.safetensors')])
assert sh == one
assert sorted(cut) == sorted(k for k in one if not k.startswith('model.layers.1.'))
assert all(cut[k] == one[k] for k in cut)
# bf16 of the same draws as fp16: the two roundings agree to bf16's precision
f16 = load([os.path.join(d, 'a', 'model.safetensors')])['model.layers.0.mlp.up_proj.weight']
b16 = one['model.layers.0.mlp.up_proj.weight']
for i in range(0, 2000, 2):
    x = struct.unpack('<e', f16[i:i + 2])[0]; y = struct.unpack('<f', b'\0\0' + b16[i:i + 2])[0]
    assert abs(x - y) <= abs(x) / 128 + 1e-7, (i, x, y)
EOF
[ "$(jget "$tmp/l1/config.json" "d['num_hidden_layers']")" = 1 ] || fail "--layers 1 config"

# ---- the Qwen2 family: q/k/v biases (0), its special-token ids ----
expect 0 "" $MK tiny-qwen2 "$tmp/q"
expect 0 "" "$LMC" inspect "$tmp/q"
grep -q "model_type qwen2, source dtype bfloat16" "$tmp/out" || fail "qwen2: $(head -4 "$tmp/out")"
grep -Eq "^params: +$((want + 2 * (128 + 64 + 64)))$" "$tmp/out" || fail "qwen2 params"
[ "$(jget "$tmp/q/config.json" "d['architectures'], d['bos_token_id'], len(d['layer_types'])")" \
    = "(['Qwen2ForCausalLM'], 400, 2)" ] || fail "qwen2 config"
st "$tmp/q/model.safetensors" -- '
assert set(vals("model.layers.0.self_attn.q_proj.bias")) == {0.0}
assert t["model.layers.1.self_attn.v_proj.bias"][1] == [64]' || fail "qwen2 biases"
"$LMC" tokenize "$tmp/q" data/eval.txt | sort -n | tail -1 | python3 -c '
import sys; m = int(sys.stdin.read()); sys.exit(not 0 <= m < 512)' || fail "qwen2 ids > vocab"

# ---- bad arguments: exit 2 and one line ----
expect 2 "need SHAPE and OUT_DIR" $MK
expect 2 "need SHAPE and OUT_DIR" $MK tiny
expect 2 "unknown shape 'llama9'" $MK llama9 "$tmp/x"
expect 2 "--dtype 'float32'" $MK tiny "$tmp/x" --dtype float32
expect 2 "--layers '0'" $MK tiny "$tmp/x" --layers 0
expect 2 "tiny has only 2 layers" $MK tiny "$tmp/x" --layers 3
expect 2 "--shards '0'" $MK tiny "$tmp/x" --shards 0
expect 2 "more shards than the 21 tensors" $MK tiny "$tmp/x" --shards 22
expect 2 "--seed '-1'" $MK tiny "$tmp/x" --seed -1
expect 2 "--std 'nan'" $MK tiny "$tmp/x" --std nan
expect 2 "--std '0'" $MK tiny "$tmp/x" --std 0
expect 2 "unknown option '--bogus'" $MK tiny "$tmp/x" --bogus
expect 2 "--seed needs a value" $MK tiny "$tmp/x" --seed
expect 2 "unexpected argument 'extra'" $MK tiny "$tmp/x" extra
$MK --help | grep -q "llama3-8b" || fail "--help lists no shapes"
# ---- failures: exit 1, one line, nothing left ----
expect 1 "already exists" $MK tiny "$tmp/a"
expect 1 "no such directory" $MK tiny "$tmp/nodir/x"
mkdir "$tmp/empty" && expect 0 "" $MK tiny "$tmp/empty"   # an empty directory is fine
( ulimit -f 200; $MK tiny "$tmp/big" ) 2> "$tmp/err" && fail "past the file-size limit: exit 0"
grep -q "File too large" "$tmp/err" || fail "file-size limit: $(cat "$tmp/err")"
[ "$(ls "$tmp" | grep -c big)" = 0 ] || fail "output left after a failed write: $(ls "$tmp")"
[ ! -e "$tmp/x" ] || fail "a refused run created its output"
exit 0
