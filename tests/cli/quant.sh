#!/bin/bash
# lmc rtn / gptq on the vendored demo model: containers that evaluate, GPTQ
# better than RTN at the same setting, deterministic output for a fixed seed,
# provenance, and the bad-input paths: empty / short / binary
# calibration file, invalid --bits / --group, no partial output on failure.
set -u
. "$(dirname "$0")/../cli_lib.sh"
XS=data/llama-xs
CAL="--nsamples 16 --seqlen 512"
# 30 windows of 1024: fewer tokens make the RTN/GPTQ comparison noise
EV="--text data/eval.txt --max-windows 30 --json -q"

# ---- usage errors: exit 2, nothing written ----
expect 2 "--bits" "$LMC" gptq $XS -o "$tmp/x.lmc" --bits 1
expect 2 "--bits" "$LMC" rtn $XS -o "$tmp/x.lmc" --bits 9
expect 2 "--group" "$LMC" gptq $XS -o "$tmp/x.lmc" --group 0
expect 2 "--group" "$LMC" rtn $XS -o "$tmp/x.lmc" --group -2
expect 2 "-o" "$LMC" gptq $XS
expect 2 "unknown option" "$LMC" gptq $XS -o "$tmp/x.lmc" --bogus
[ ! -e "$tmp/x.lmc" ] || fail "usage error left an output"

# ---- bad calibration files: exit 1, message names the file, no output ----
: >"$tmp/empty.txt"
expect 1 "$tmp/empty.txt" "$LMC" gptq $XS -o "$tmp/x.lmc" --calib "$tmp/empty.txt" $CAL
echo "just a few words" >"$tmp/short.txt"
expect 1 "fewer than one calibration window" "$LMC" gptq $XS -o "$tmp/x.lmc" --calib "$tmp/short.txt" $CAL
head -c 20000 /dev/urandom >"$tmp/bin.txt"; printf '\0' >>"$tmp/bin.txt"
expect 1 "binary" "$LMC" gptq $XS -o "$tmp/x.lmc" --calib "$tmp/bin.txt" $CAL
expect 1 "missing.txt" "$LMC" gptq $XS -o "$tmp/x.lmc" --calib "$tmp/missing.txt" $CAL
ls "$tmp" | grep -q "x.lmc" && fail "failed run left $(ls "$tmp" | grep x.lmc)"

# ---- RTN and GPTQ at W3 g64: both evaluate, GPTQ wins ----
expect 0 "" "$LMC" rtn $XS -o "$tmp/rtn.lmc" --bits 3 --group 64 -q
expect 0 "" "$LMC" gptq $XS -o "$tmp/gptq.lmc" --bits 3 --group 64 $CAL -q --json
cp "$tmp/out" "$tmp/gptq-summary.json"
[ "$(jget "$tmp/gptq-summary.json" "len(d['layers'])")" = 28 ] || fail "summary should list 4 x 7 linears"
"$LMC" eval "$tmp/rtn.lmc" $EV >"$tmp/rtn.json" || fail "eval rtn"
"$LMC" eval "$tmp/gptq.lmc" $EV >"$tmp/gptq.json" || fail "eval gptq"
"$LMC" eval $XS $EV >"$tmp/fp16.json" || fail "eval fp16"
r=$(jget "$tmp/rtn.json" "d['ppl']"); g=$(jget "$tmp/gptq.json" "d['ppl']"); f=$(jget "$tmp/fp16.json" "d['ppl']")
echo "fp16 $f  rtn w3g64 $r  gptq w3g64 $g"
python3 -c "import sys; f,r,g=map(float,sys.argv[1:]); sys.exit(0 if f < g < r else 1)" "$f" "$r" "$g" \
    || fail "expected fp16 < gptq < rtn, got $f $g $r"
b=$(jget "$tmp/gptq.json" "d['bits_per_weight']")
python3 -c "import sys; b=float(sys.argv[1]); sys.exit(0 if 3.2 < b < 3.4 else 1)" "$b" \
    || fail "W3 g64 should cost ~3.3 bits per weight, got $b"

# tensor CRCs straight from a container header (docs/FORMAT.md)
crcs() { PYTHONPATH=tests/tools python3 -c '
import sys, lmc_container
print([(t["name"], t["crc32"]) for t in lmc_container.read(sys.argv[1])[0]["tensors"]])' "$1"; }

# ---- determinism: same seed, same tensors (only time stamps differ) ----
"$LMC" gptq $XS -o "$tmp/a.lmc" --bits 4 $CAL -q || fail gptq a
"$LMC" gptq $XS -o "$tmp/b.lmc" --bits 4 $CAL -q || fail gptq b
[ "$(crcs "$tmp/a.lmc")" = "$(crcs "$tmp/b.lmc")" ] || fail "same seed gave different tensors"
"$LMC" inspect "$tmp/a.lmc" --json >"$tmp/a.json"

# ---- provenance: pass, args, seed, calibration hash ----
python3 - "$tmp/a.json" <<'PY' || fail "provenance incomplete"
import json, sys
d = json.load(open(sys.argv[1]))
p = d["provenance"][-1]
assert p["pass"] == "gptq" and p["args"]["bits"] == 4, p
c = p["calibration"]
assert len(c["sha256"]) == 64 and c["nsamples"] == 16 and c["seqlen"] == 512 and c["seed"] == 0, c
PY

# ---- a different seed gives different windows, hence different weights ----
"$LMC" gptq $XS -o "$tmp/c.lmc" --bits 4 $CAL --seed 7 -q || fail "gptq seed 7"
[ "$(crcs "$tmp/a.lmc")" != "$(crcs "$tmp/c.lmc")" ] || fail "seed 7 gave the same tensors as seed 0"
exit 0
