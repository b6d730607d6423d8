#!/bin/bash
# lmc eval: exit codes, JSON keys, bad input (short / empty / non-UTF-8
# text, ids outside the vocabulary, windows beyond the positions), -q, and
# with ../shared: --text against --ids and the reference token counts (the
# full-text perplexity checks live in tests/test_eval_ref.c).
set -u
. "$(dirname "$0")/../cli_lib.sh"

XS=data/llama-xs
# ---- usage errors ----
expect 2 "" "$LMC" eval
expect 2 "--text FILE or --ids FILE" "$LMC" eval $XS
expect 2 "exclusive" "$LMC" eval $XS --text data/eval.txt --ids x.i32
expect 2 "--seqlen" "$LMC" eval $XS --text data/eval.txt --seqlen 1
expect 2 "--threads" "$LMC" eval $XS --text data/eval.txt --threads 0
expect 2 "unknown option" "$LMC" eval $XS --text data/eval.txt --bogus
expect 2 "--device" "$LMC" eval $XS --text data/eval.txt --device tpu
expect 2 "--precision" "$LMC" eval $XS --text data/eval.txt --precision fp16
expect 2 "--residual applies" "$LMC" eval $XS --text data/eval.txt --residual fp32
expect 2 "--residual: 'fp16'" "$LMC" eval $XS --text data/eval.txt --device cuda --residual fp16
expect 2 "--residual half needs" "$LMC" eval $XS --text data/eval.txt --device cuda \
    --precision fp32 --residual half
"$LMC" eval --help | grep -q "FLOPs convention" || fail "--help lacks the FLOPs convention"

# ---- a run on the vendored model: JSON keys and consistent values ----
expect 0 "" "$LMC" eval $XS --text data/eval.txt --max-windows 2 --json -q
cp "$tmp/out" "$tmp/xs.json"
[ ! -s "$tmp/err" ] || fail "-q still printed on stderr: $(cat "$tmp/err")"
for k in ppl tokens windows scored seconds tokens_per_second params bytes_fp16 bytes_model \
         compression_ratio bits_per_weight flops_per_token flops_per_token_dense seqlen model threads; do
    [ "$(jget "$tmp/xs.json" "'$k' in d")" = True ] || fail "JSON lacks $k"
done
[ "$(jget "$tmp/xs.json" "d['windows'] == 2 and d['scored'] == 2046 and d['seqlen'] == 1024")" = True ] ||
    fail "windows/scored: $(cat "$tmp/xs.json")"
[ "$(jget "$tmp/xs.json" "1 < d['ppl'] < 8192 and d['tokens'] > 100000")" = True ] ||
    fail "implausible: $(cat "$tmp/xs.json")"
[ "$(jget "$tmp/xs.json" "d['bytes_fp16'] == 2 * d['params'] and d['compression_ratio'] == 1 and d['bits_per_weight'] == 16")" = True ] ||
    fail "sizes: $(cat "$tmp/xs.json")"
[ "$(jget "$tmp/xs.json" "d['flops_per_token'] == d['flops_per_token_dense'] > 2 * d['params'] * 0.5")" = True ] ||
    fail "flops: $(cat "$tmp/xs.json")"
# human output and progress without -q
expect 0 "window 1/1" "$LMC" eval $XS --text data/eval.txt --max-windows 1 --seqlen 256
grep -q "^perplexity" "$tmp/out" || fail "human output: $(cat "$tmp/out")"

# ---- same ids given as a file: same perplexity; --threads 1 agrees ----
python3 - "$tmp/ids.i32" <<'EOF' || fail "writing ids"
import struct, sys
open(sys.argv[1], 'wb').write(struct.pack('<%di' % 3000, *[(i * 7919) % 8000 for i in range(3000)]))
EOF
expect 0 "" "$LMC" eval $XS --ids "$tmp/ids.i32" --seqlen 512 --json -q
cp "$tmp/out" "$tmp/a.json"
expect 0 "" "$LMC" eval $XS --ids "$tmp/ids.i32" --seqlen 512 --json -q --threads 1
[ "$(jget "$tmp/a.json" "d['windows']")" = 5 ] || fail "ids windows: $(cat "$tmp/a.json")"
python3 - "$tmp/a.json" "$tmp/out" <<'EOF' || fail "--threads 1 differs"
import json, sys
a, b = (json.load(open(p))['ppl'] for p in sys.argv[1:3])
assert abs(a - b) <= 1e-6 * a, (a, b)
EOF

# ---- bad input ----
head -c 1500 data/eval.txt >"$tmp/short.txt"
expect 1 "short.txt: " "$LMC" eval $XS --text "$tmp/short.txt"
grep -q "tokens, fewer than one window of 1024" "$tmp/err" || fail "short text: $(cat "$tmp/err")"
: >"$tmp/empty.txt"
expect 1 "empty" "$LMC" eval $XS --text "$tmp/empty.txt"
expect 1 "no-such.txt" "$LMC" eval $XS --text "$tmp/no-such.txt"
# invalid UTF-8: the tokenizer decides; never a crash
head -c 20000 /dev/urandom >"$tmp/bytes.txt"
"$LMC" eval $XS --text "$tmp/bytes.txt" --seqlen 64 --max-windows 2 -q >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -le 1 ] || fail "non-UTF-8 text: exit $rc"
python3 -c 'import struct; open("'"$tmp"'/bad.i32","wb").write(struct.pack("<4i", 1, 2, 99999, 3) * 300)'
expect 1 "outside the model's vocabulary" "$LMC" eval $XS --ids "$tmp/bad.i32" --seqlen 16
printf 'abc' >"$tmp/odd.i32"
expect 1 "odd.i32" "$LMC" eval $XS --ids "$tmp/odd.i32"
# RoPE model beyond its 1024 positions: error, or a warning with --force
expect 1 "--force" "$LMC" eval $XS --text data/eval.txt --seqlen 2048
expect 0 "warning" "$LMC" eval $XS --text data/eval.txt --seqlen 2048 --force --max-windows 1 --json
expect 1 "no-such-model" "$LMC" eval "$tmp/no-such-model" --text data/eval.txt

# ---- with ../shared: tokenizer vs reference ids, learned positions ----
# streaming (one block decoded at a time, what a model too large for memory
# gets): the same numbers as decoding the whole model
expect 0 "" "$LMC" eval data/llama-xs --text data/eval.txt --max-windows 3 --json -q
cp "$tmp/out" "$tmp/whole.json"
LMC_EVAL_STREAM=1 expect 0 "decoding one block at a time" "$LMC" eval data/llama-xs --text data/eval.txt --max-windows 3 --json
python3 - "$tmp/whole.json" "$tmp/out" <<'EOF' || fail "streamed eval differs"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a['ppl'] == b['ppl'] and a['windows'] == b['windows'] == 3, (a['ppl'], b['ppl'])
EOF
# the head and embeddings decoded 100 vocab rows at a time (what an 8B
# model's get): the same numbers again, chunked the same way in both modes
LMC_EVAL_HEAD_VC=100 expect 0 "" "$LMC" eval data/llama-xs --text data/eval.txt --max-windows 3 --json -q
cp "$tmp/out" "$tmp/whole.json"
LMC_EVAL_STREAM=1 LMC_EVAL_HEAD_VC=100 expect 0 "decoding one block at a time" "$LMC" eval data/llama-xs --text data/eval.txt --max-windows 3 --json
python3 - "$tmp/whole.json" "$tmp/out" <<'EOF' || fail "streamed eval with a chunked head differs"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a['ppl'] == b['ppl'] and a['windows'] == b['windows'] == 3, (a['ppl'], b['ppl'])
EOF

SHARED=${LMC_SHARED:-../shared}
if [ ! -d "$SHARED/models" ]; then
    echo "../shared absent: shared-model checks skipped"
    exit 77
fi
for m in llama-s opt-s gpt2-s; do
    expect 0 "" "$LMC" eval "$SHARED/models/$m" --text "$SHARED/data/eval.txt" --max-windows 2 --json -q
    cp "$tmp/out" "$tmp/t.json"
    expect 0 "" "$LMC" eval "$SHARED/models/$m" --ids "$SHARED/reference/$m.eval.ids.i32" --max-windows 2 --json -q
    python3 - "$tmp/t.json" "$tmp/out" "$SHARED/reference/$m.json" <<'EOF' || fail "$m: --text vs --ids vs reference"
import json, sys
t, i, r = (json.load(open(p)) for p in sys.argv[1:4])
assert t['ppl'] == i['ppl'], (t['ppl'], i['ppl'])
assert t['tokens'] == i['tokens'] == r['eval']['tokens'], (t['tokens'], r['eval']['tokens'])
assert t['params'] == r['params']
EOF
done
expect 1 "learned positions" "$LMC" eval "$SHARED/models/opt-s" --text "$SHARED/data/eval.txt" --seqlen 1025 --force
expect 1 "learned positions" "$LMC" eval "$SHARED/models/gpt2-s" --text "$SHARED/data/eval.txt" --seqlen 2048
exit 0
