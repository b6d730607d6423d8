#!/bin/bash
# lmc inspect / lmc convert: parameter counts, the container round trip
# (checked by an independent Python reader of docs/FORMAT.md), exit codes and
# corruption detection.
set -u
. "$(dirname "$0")/../cli_lib.sh"

# field of a JSON file: jget FILE EXPR (EXPR applied to the parsed object d)

# ---- exit codes that need no model ----
out=$("$LMC" inspect "$tmp/does-not-exist" 2>&1); rc=$?
[ $rc -eq 1 ] || fail "inspect of a missing path: exit $rc, want 1"
grep -qF "$tmp/does-not-exist" <<<"$out" || fail "missing-path message lacks the path: $out"
"$LMC" convert data/llama-xs >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "convert without -o: exit $rc, want 2"
"$LMC" convert -o "$tmp/x.lmc" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "convert without MODEL: exit $rc, want 2"
"$LMC" convert data/llama-xs -o "$tmp/x.lmc" --dtype f8 >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "convert --dtype f8: exit $rc, want 2"
"$LMC" inspect --bogus data/llama-xs >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "inspect --bogus: exit $rc, want 2"

"$LMC" inspect data/llama-xs --json >"$tmp/xs.json" 2>"$tmp/err" ||
    fail "inspect data/llama-xs: $(cat "$tmp/err")"

# Independent reader of the container (docs/FORMAT.md): verifies magic,
# version, CRCs, alignment and zero padding; prints name -> sha256 of bytes.
cat >"$tmp/lmcread.py" <<'EOF'
import hashlib, json, struct, sys, zlib
b = open(sys.argv[1], 'rb').read()
assert b[:8] == b'\x89LMC\r\n\x1a\n', 'magic'
ver, hcrc, hlen = struct.unpack('<IIQ', b[8:24])
if ver == 2:  # data from byte 64, the header at the end
    hoff, = struct.unpack('<Q', b[24:32])
    assert not any(b[32:64]), 'preamble padding'
    assert hoff + hlen == len(b), 'header ends the file'
    ds, data_end = 64, hoff
else:
    assert ver == 1, 'version'
    hoff = 24
    ds = (24 + hlen + 63) // 64 * 64
    assert not any(b[24 + hlen:ds]), 'header padding'
    data_end = len(b)
hdr = b[hoff:hoff + hlen]
assert zlib.crc32(hdr) == hcrc, 'header crc'
h = json.loads(hdr)
assert h['format_version'] == ver
blobs = [('tokenizer', h['tokenizer'])] if h.get('tokenizer') else []
blobs += [(t['name'], t) for t in h['tensors']]
end = 0
for name, t in sorted(blobs, key=lambda x: x[1]['offset']):
    o, n = t['offset'], t['nbytes']
    assert o % 64 == 0 and o >= end, name
    assert not any(b[ds + end:ds + o]), 'padding before ' + name
    assert zlib.crc32(b[ds + o:ds + o + n]) == t['crc32'], 'crc ' + name
    end = o + n
assert ds + end == data_end, 'data area size'
for name, t in blobs:
    print(name, hashlib.sha256(b[ds + t['offset']:ds + t['offset'] + t['nbytes']]).hexdigest())
EOF

version=$("$LMC" --version | awk '{print $2}')

# check_model NAME DIR PARAMS: inspect, convert, inspect again, read back
check_model() {
    local name=$1 dir=$2 want=$3
    "$LMC" inspect "$dir" --json >"$tmp/$name.ck.json" || fail "inspect $dir"
    [ "$(jget "$tmp/$name.ck.json" 'd["format"]')" = checkpoint ] || fail "$name: format"
    local p n
    p=$(jget "$tmp/$name.ck.json" 'd["params"]')
    n=$(jget "$tmp/$name.ck.json" 'd["n_tensors"]')
    [ "$p" = "$want" ] || fail "$name: checkpoint params $p, want $want"
    [ "$n" = "$(jget "$tmp/$name.ck.json" 'len(d["tensors"])')" ] || fail "$name: n_tensors"
    "$LMC" convert -q "$dir" -o "$tmp/$name.lmc" >/dev/null || fail "convert $dir"
    "$LMC" inspect "$tmp/$name.lmc" --json >"$tmp/$name.ct.json" || fail "inspect $name.lmc"
    [ "$(jget "$tmp/$name.ct.json" 'd["format"]')" = container ] || fail "$name: format"
    [ "$(jget "$tmp/$name.ct.json" 'd["params"]')" = "$want" ] || fail "$name: container params"
    [ "$(jget "$tmp/$name.ct.json" 'd["n_tensors"]')" = "$n" ] || fail "$name: container tensors"
    # fp16 checkpoint -> f16 container: 16 bits per weight, nothing changed
    [ "$(jget "$tmp/$name.ct.json" 'd["bits_per_weight"]')" = 16 ] || fail "$name: bits/weight"
    [ "$(jget "$tmp/$name.ct.json" 'd["linear_bits_per_weight"]')" = 16 ] || fail "$name: linear bits"
    [ "$(jget "$tmp/$name.ct.json" 'd["bytes"]')" = "$(jget "$tmp/$name.ck.json" 'd["bytes"]')" ] ||
        fail "$name: bytes differ"
    [ "$(jget "$tmp/$name.ct.json" '[t["name"] for t in d["tensors"]] == [t["name"] for t in json.load(open(sys.argv[1].replace(".ct.", ".ck.")))["tensors"]]')" = True ] ||
        fail "$name: tensor names/order differ"
    [ "$(jget "$tmp/$name.ct.json" 'd["provenance"][-1]["pass"] + " " + d["provenance"][-1]["version"]')" = "convert $version" ] ||
        fail "$name: provenance record"
    python3 "$tmp/lmcread.py" "$tmp/$name.lmc" >"$tmp/$name.sums" || fail "$name: Python reader rejects the container"
    echo "ok: $name params $p, $n tensors"
}

check_model llama-xs data/llama-xs 1787008

# f16 -> f32 -> f16 is exact: tensors and tokenizer byte-identical
"$LMC" convert -q data/llama-xs -o "$tmp/xs32.lmc" --dtype f32 >/dev/null || fail "convert --dtype f32"
[ "$(jget <("$LMC" inspect "$tmp/xs32.lmc" --json) 'd["bits_per_weight"]')" = 32 ] || fail "f32 bits/weight"
"$LMC" convert -q "$tmp/xs32.lmc" -o "$tmp/xs16.lmc" >/dev/null || fail "convert container f32 -> f16"
python3 "$tmp/lmcread.py" "$tmp/xs16.lmc" >"$tmp/xs16.sums" || fail "Python reader: xs16"
cmp -s "$tmp/llama-xs.sums" "$tmp/xs16.sums" || fail "f16 -> f32 -> f16 round trip changed tensors"
[ "$(jget <("$LMC" inspect "$tmp/xs16.lmc" --json) 'len(d["provenance"])')" = 2 ] || fail "provenance not appended"
# bf16 conversion runs and halves nothing: still 16 bits
"$LMC" convert -q data/llama-xs -o "$tmp/xsbf.lmc" --dtype bf16 >/dev/null || fail "convert --dtype bf16"
[ "$(jget <("$LMC" inspect "$tmp/xsbf.lmc" --json) 'd["tensors"][0]["encoding"]')" = bf16 ] || fail "bf16 encoding"

# refuse to overwrite the input, or a file that is not a container
out=$("$LMC" convert "$tmp/llama-xs.lmc" -o "$tmp/llama-xs.lmc" 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "overwrite" <<<"$out" || fail "overwriting the input: exit $rc: $out"
cp data/llama-xs/config.json "$tmp/config.json"
"$LMC" convert data/llama-xs -o "$tmp/config.json" >/dev/null 2>&1 && fail "overwrote a non-container"
cmp -s data/llama-xs/config.json "$tmp/config.json" || fail "non-container output was modified"

# a flipped byte in the tensor data: exit 1 naming the file and the CRC
cp "$tmp/llama-xs.lmc" "$tmp/bad.lmc"
size=$(stat -c %s "$tmp/bad.lmc")
pos=$((size - 1000))
byte=$(od -An -tu1 -j "$pos" -N1 "$tmp/bad.lmc" | tr -d ' ')
printf "\\$(printf '%03o' $(((byte ^ 0x5a) & 255)))" | dd of="$tmp/bad.lmc" bs=1 seek="$pos" conv=notrunc status=none
cmp -s "$tmp/llama-xs.lmc" "$tmp/bad.lmc" && fail "byte flip did not change the file"
out=$("$LMC" inspect "$tmp/bad.lmc" 2>&1); rc=$?
[ $rc -eq 1 ] || fail "corrupted container: exit $rc, want 1"
grep -qF "$tmp/bad.lmc" <<<"$out" && grep -q "CRC" <<<"$out" || fail "corruption message: $out"
"$LMC" convert "$tmp/bad.lmc" -o "$tmp/bad2.lmc" >/dev/null 2>&1; rc=$?
[ $rc -eq 1 ] && [ ! -e "$tmp/bad2.lmc" ] || fail "convert of a corrupted container: exit $rc"
# a flip in the header (version 2: at the end, where the preamble says)
cp "$tmp/llama-xs.lmc" "$tmp/badh.lmc"
hoff=$(python3 -c 'import struct,sys; print(struct.unpack("<Q", open(sys.argv[1],"rb").read()[24:32])[0])' "$tmp/badh.lmc")
printf 'X' | dd of="$tmp/badh.lmc" bs=1 seek=$((hoff + 16)) conv=notrunc status=none
out=$("$LMC" inspect "$tmp/badh.lmc" 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "header CRC" <<<"$out" || fail "header corruption: exit $rc: $out"
# truncated
head -c $((size / 2)) "$tmp/llama-xs.lmc" >"$tmp/trunc.lmc"
out=$("$LMC" inspect "$tmp/trunc.lmc" 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "truncated" <<<"$out" || fail "truncated container: exit $rc: $out"

# ---- the shared test models, when ../shared is there ----
shared=${LMC_SHARED:-../shared}
if [ -d "$shared/models" ]; then
    for spec in llama-s:9998592 opt-s:7098880 gpt2-s:7098368; do
        name=${spec%%:*}
        check_model "$name" "$shared/models/$name" "${spec#*:}"
    done
else
    echo "note: $shared absent, shared models not checked"
fi
echo "all ok"
