#!/bin/bash
# Crafted inputs and failing writes (issue 18; rules in docs/DESIGN.md):
# - a NaN/Inf weight is refused by convert, every pass and eval, naming the
#   file, the tensor and the element; inspect (which reads no values) shows it
# - a tokenizer.json that is not JSON is refused at model load, naming it, by
#   every command (inspect included), in a checkpoint and in a container
# - a write that hits a file-size limit or a full disk fails naming the
#   output, exit 1, leaving neither the output nor a temporary (an existing
#   output is left as it was)
# - a SIGKILL mid-write leaves only OUT.tmp.XXXXXX, which the next run ignores
set -u
. "$(dirname "$0")/../cli_lib.sh"
XS=data/llama-xs
CAL=(--calib data/calib.txt --nsamples 2 --seqlen 32 -q)

# poison SRC DST TENSOR ROW COL VALUE: copy of checkpoint SRC with one f16
# element of TENSOR (a Hugging Face name) set to VALUE (nan, inf or -inf)
poison() {
    cp -r "$1" "$2" && chmod -R u+w "$2"
    python3 - "$2/model.safetensors" "$3" "$4" "$5" "$6" <<'EOF' || fail "poison $*"
import json, struct, sys
path, name, row, col, val = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
b = bytearray(open(path, 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
t = json.loads(b[8:8 + n])[name]
assert t['dtype'] == 'F16'
cols = t['shape'][1] if len(t['shape']) == 2 else 1
at = 8 + n + t['data_offsets'][0] + 2 * (row * cols + col)
b[at:at + 2] = struct.pack('<H', {'nan': 0x7e00, 'inf': 0x7c00, '-inf': 0xfc00}[val])
open(path, 'wb').write(b)
EOF
}

# edit_container SRC DST PYTHON: copy of container SRC with its data edited
# by PYTHON (given d = the header dict, data = bytearray of the data area,
# blob(name) = (offset, nbytes)); CRCs are recomputed, as a crafted file
# would carry them
edit_container() {
    PYTHONPATH=tests/tools python3 - "$1" "$2" "$3" <<'EOF' || fail "edit_container $1"
import json, struct, sys, zlib
import lmc_container
src, dst, code = sys.argv[1:4]
d, data = lmc_container.read(src)
data = bytearray(data)
def blob(name):
    o = d['tokenizer'] if name == 'tokenizer' else next(t for t in d['tensors'] if t['name'] == name)
    return o['offset'], o['nbytes']
exec(code)
for o in [d['tokenizer']] + d['tensors']:
    o['crc32'] = zlib.crc32(data[o['offset']:o['offset'] + o['nbytes']])
lmc_container.write(dst, d, data)
EOF
}

# no_output FILE: neither FILE nor a temporary of it exists
no_output() {
    [ ! -e "$1" ] || fail "$1 exists after a failed run"
    ! ls "$1".tmp.* >/dev/null 2>&1 || fail "temporary left behind: $(ls "$1".tmp.*)"
}

# ---- NaN / Inf weights ----
poison $XS "$tmp/nan" model.layers.1.self_attn.k_proj.weight 3 5 nan
msg="$tmp/nan: tensor blk.1.k.weight: non-finite weight (NaN) at [3, 5]"
expect 1 "$msg" "$LMC" convert "$tmp/nan" -o "$tmp/nan.lmc"
no_output "$tmp/nan.lmc"
run_pass() { # NAME ARGS...: the pass must refuse the NaN checkpoint
    local name=$1; shift
    expect 1 "$msg" "$LMC" "$name" "$tmp/nan" -o "$tmp/nan-$name.lmc" "$@" "${CAL[@]}"
    no_output "$tmp/nan-$name.lmc"
}
run_pass rtn --bits 4
run_pass gptq --bits 4
run_pass awq --bits 4
run_pass smoothquant
run_pass int8
run_pass sparsegpt --sparsity 0.5
run_pass wanda --sparsity 0.5
run_pass magnitude --sparsity 0.5
run_pass svd --rank 8
expect 1 "tensor blk.1.k.weight: non-finite weight (NaN) at [3, 5]" \
    "$LMC" eval "$tmp/nan" --text data/eval.txt --max-windows 1 --seqlen 32 -q
grep -qF "$tmp/nan" "$tmp/err" || fail "eval's NaN message lacks the model path: $(cat "$tmp/err")"
# inspect reads no weight values: it still describes the checkpoint
"$LMC" inspect "$tmp/nan" >/dev/null || fail "inspect of the NaN checkpoint failed"

# +Inf in a norm (1-D) and -Inf in the embedding of a container
poison $XS "$tmp/inf" model.norm.weight 7 0 inf
expect 1 "$tmp/inf: tensor final_norm.weight: non-finite weight (+Inf) at [7]" \
    "$LMC" rtn "$tmp/inf" -o "$tmp/inf.lmc" -q
"$LMC" convert -q $XS -o "$tmp/xs.lmc" >/dev/null || fail "convert $XS"
edit_container "$tmp/xs.lmc" "$tmp/ninf.lmc" '
o, n = blob("embed.weight")
cols = 128
data[o + 2 * (11 * cols + 2):o + 2 * (11 * cols + 2) + 2] = struct.pack("<H", 0xfc00)'
msg="$tmp/ninf.lmc: tensor embed.weight: non-finite weight (-Inf) at [11, 2]"
expect 1 "$msg" "$LMC" magnitude "$tmp/ninf.lmc" -o "$tmp/ninf-m.lmc" --sparsity 0.5 -q
no_output "$tmp/ninf-m.lmc"
expect 1 "$msg" "$LMC" convert "$tmp/ninf.lmc" -o "$tmp/ninf-c.lmc" --dtype f32
no_output "$tmp/ninf-c.lmc"
expect 1 "tensor embed.weight: non-finite weight (-Inf) at [11, 2]" \
    "$LMC" eval "$tmp/ninf.lmc" --text data/eval.txt --max-windows 1 --seqlen 32 -q
# a quantized tensor with a non-finite value: an Inf fp16 scale (the first
# scale of a qgroup blob, docs/FORMAT.md) in an RTN container
"$LMC" rtn -q $XS -o "$tmp/w4.lmc" --bits 4 --group 32 >/dev/null || fail "rtn $XS"
edit_container "$tmp/w4.lmc" "$tmp/w4inf.lmc" '
o, n = blob("blk.0.q.weight")
codes = 128 * 128 * 4 // 8  # [128, 128] at 4 bits: the scales follow the codes
data[o + codes:o + codes + 2] = struct.pack("<H", 0x7c00)'
# (the decoder's own validation names it)
expect 1 "$tmp/w4inf.lmc: tensor blk.0.q.weight: qgroup: scale of row 0 group 0 is not finite" \
    "$LMC" gptq "$tmp/w4inf.lmc" -o "$tmp/w4inf-g.lmc" "${CAL[@]}"
no_output "$tmp/w4inf-g.lmc"

# ---- a tokenizer.json that is not JSON ----
cp -r $XS "$tmp/badtok" && chmod -R u+w "$tmp/badtok"
printf '{"model": {"type": "BPE", "vocab": {"a": 0}' >"$tmp/badtok/tokenizer.json"
msg="$tmp/badtok/tokenizer.json: not valid JSON"
expect 1 "$msg" "$LMC" inspect "$tmp/badtok"
expect 1 "$msg" "$LMC" convert "$tmp/badtok" -o "$tmp/badtok.lmc"
no_output "$tmp/badtok.lmc"
expect 1 "$msg" "$LMC" rtn "$tmp/badtok" -o "$tmp/badtok-r.lmc" -q
no_output "$tmp/badtok-r.lmc"
expect 1 "$msg" "$LMC" tokenize "$tmp/badtok" data/eval.txt -o "$tmp/ids.i32"
no_output "$tmp/ids.i32"
printf '[1, 2, 3]' >"$tmp/badtok/tokenizer.json"
expect 1 "$tmp/badtok/tokenizer.json: not a tokenizer.json (top level is not an object)" \
    "$LMC" inspect "$tmp/badtok"
# the same text inside a container (an old or crafted file)
edit_container "$tmp/xs.lmc" "$tmp/badtok.lmc" '
o, n = blob("tokenizer")
data[o:o + n] = b"x" * n'
expect 1 "$tmp/badtok.lmc: tokenizer: not valid JSON" "$LMC" inspect "$tmp/badtok.lmc"
expect 1 "$tmp/badtok.lmc: tokenizer: not valid JSON" "$LMC" eval "$tmp/badtok.lmc" \
    --text data/eval.txt --max-windows 1 -q

# ---- a block index that overflows int (sscanf's %d wrapped it to block 0) ----
edit_container "$tmp/xs.lmc" "$tmp/blk.lmc" '
next(t for t in d["tensors"] if t["name"] == "blk.0.q.weight")["name"] = "blk.4294967296.q.weight"'
expect 1 "$tmp/blk.lmc: tensor blk.4294967296.q.weight: block 4294967296 but the config has 4 layers" \
    "$LMC" inspect "$tmp/blk.lmc"

# ---- a file-size limit during the write ----
# fsize_fail OUT CMD...: CMD under a 64 KiB limit fails naming OUT, leaving
# nothing; with an older OUT in place, OUT is left byte for byte
fsize_fail() {
    local out=$1; shift
    (ulimit -f 64; "$@" >"$tmp/out" 2>"$tmp/err"); local rc=$?
    [ $rc -eq 1 ] || fail "$* under ulimit -f 64: exit $rc, want 1; stderr: $(cat "$tmp/err")"
    grep -qF "$out: write failed: File too large" "$tmp/err" ||
        fail "$*: stderr lacks '$out: write failed: File too large': $(cat "$tmp/err")"
    no_output "$out"
}
fsize_fail "$tmp/big.lmc" "$LMC" convert $XS -o "$tmp/big.lmc"
fsize_fail "$tmp/big-rtn.lmc" "$LMC" rtn $XS -o "$tmp/big-rtn.lmc" -q
fsize_fail "$tmp/ids.i32" "$LMC" tokenize $XS data/eval.txt -o "$tmp/ids.i32"
# an existing output survives a failed replacement untouched
cp "$tmp/w4.lmc" "$tmp/keep.lmc"
(ulimit -f 64; "$LMC" rtn $XS -o "$tmp/keep.lmc" -q 2>/dev/null) && fail "rtn under ulimit -f 64 succeeded"
cmp -s "$tmp/w4.lmc" "$tmp/keep.lmc" || fail "a failed write changed the existing output"
! ls "$tmp/keep.lmc".tmp.* >/dev/null 2>&1 || fail "temporary left behind by the failed replacement"

# ---- a full disk (a 64 KiB tmpfs; needs root and mount, else this part is skipped) ----
mkdir "$tmp/full"
if mount -t tmpfs -o size=64k tmpfs "$tmp/full" 2>/dev/null; then
    trap 'umount "$tmp/full" 2>/dev/null; rm -rf "$tmp"' EXIT
    expect 1 "$tmp/full/x.lmc: write failed: No space left on device" \
        "$LMC" convert $XS -o "$tmp/full/x.lmc"
    [ -z "$(ls -A "$tmp/full")" ] || fail "full disk: files left: $(ls -A "$tmp/full")"
    expect 1 "$tmp/full/ids.i32: write failed: No space left on device" \
        "$LMC" tokenize $XS data/eval.txt -o "$tmp/full/ids.i32"
    [ -z "$(ls -A "$tmp/full")" ] || fail "full disk: files left: $(ls -A "$tmp/full")"
    umount "$tmp/full"
else
    echo "note: full-disk case skipped (cannot mount a tmpfs here)"
fi

# ---- SIGKILL in the middle of the write ----
# Stop lmc as soon as its temporary appears, while the output does not exist
# yet, then kill it; retried, since the write may finish first.
killed=0
for attempt in 1 2 3 4 5 6 7 8 9 10; do
    rm -f "$tmp/k.lmc" "$tmp/k.lmc".tmp.*
    python3 - "$LMC" "$tmp/k.lmc" <<'EOF'
import glob, os, signal, subprocess, sys
lmc, out = sys.argv[1:3]
p = subprocess.Popen([lmc, 'convert', 'data/llama-xs', '-o', out, '--dtype', 'f32', '-q'],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while p.poll() is None and not glob.glob(out + '.tmp.*'):
    pass
if p.poll() is None:
    os.kill(p.pid, signal.SIGSTOP)
    if not os.path.exists(out):
        os.kill(p.pid, signal.SIGKILL)
    else:
        os.kill(p.pid, signal.SIGCONT)
p.wait()
EOF
    if [ ! -e "$tmp/k.lmc" ] && ls "$tmp/k.lmc".tmp.* >/dev/null 2>&1; then
        killed=1
        break
    fi
done
if [ $killed = 1 ]; then
    stale=$(ls "$tmp/k.lmc".tmp.*)
    # the next run writes its own temporary and renames it into place
    "$LMC" convert $XS -o "$tmp/k.lmc" --dtype f32 -q >/dev/null || fail "convert after a SIGKILL"
    "$LMC" inspect "$tmp/k.lmc" >/dev/null || fail "output after a SIGKILL does not load"
    # stale temporaries are not cleaned (another job may be writing one): still there
    [ "$(ls "$tmp/k.lmc".tmp.*)" = "$stale" ] || fail "temporaries: $(ls "$tmp/k.lmc".tmp.*)"
    # and, read by mistake, refused as the unfinished file it is (its
    # preamble is written last; under 64 bytes it is merely truncated)
    expect 1 "$stale: " "$LMC" inspect "$stale"
    grep -qE "incomplete container|truncated" "$tmp/err" || fail "stale temporary: $(cat "$tmp/err")"
else
    echo "note: the write finished before the kill in 10 attempts; SIGKILL case not exercised"
fi
exit 0
