#!/bin/bash
# lmc export on bad input and bad output: a corrupt or unsupported model, a
# full disk (RLIMIT_FSIZE with SIGXFSZ ignored: writes fail as on a full
# disk), an output in a missing directory, outputs it must not overwrite.
# Each: exit 1 (2 for usage), one line naming the file and the problem,
# nothing left behind (no output, no temporary file or directory).
set -u
. tests/cli_lib.sh
M=data/llama-xs
"$LMC" rtn $M -o "$tmp/w4.lmc" --bits 4 --sym --group 32 -q > /dev/null || fail rtn

nothing_left() { # DIR: no file but the inputs this test made
    local extra
    extra=$(ls -A "$1" | grep -vE '^(w4\.lmc|bad\.lmc|short\.lmc|junk\.bin|keep\.txt|nocfg|out|err|old\.gguf|olddir)$')
    [ -z "$extra" ] || fail "left behind in $1: $extra"
}
one_line() { [ "$(wc -l < "$tmp/err")" -eq 1 ] || fail "$*: not one line: $(cat "$tmp/err")"; }

# usage errors: exit 2
expect 2 "--format gguf|gptq|awq is required" "$LMC" export $M -o "$tmp/x.gguf"
expect 2 "--format must be gguf, gptq or awq" "$LMC" export $M -o "$tmp/x" --format onnx
expect 2 "-o OUT is required" "$LMC" export $M --format gguf
expect 2 "unknown option" "$LMC" export $M -o "$tmp/x.gguf" --format gguf --bogus
expect 2 "--dequant-type must be" "$LMC" export $M -o "$tmp/x.gguf" --format gguf --dequant-type f8
nothing_left "$tmp"

# corrupt and unsupported models
cp "$tmp/w4.lmc" "$tmp/bad.lmc"
printf '\x5a' | dd of="$tmp/bad.lmc" bs=1 seek=$(( $(stat -c %s "$tmp/bad.lmc") - 100 )) conv=notrunc status=none
for f in gguf gptq; do
    expect 1 "bad.lmc" "$LMC" export "$tmp/bad.lmc" -o "$tmp/x.$f" --format $f; one_line "corrupt $f"
    grep -q "CRC" "$tmp/err" || fail "corrupt container: $(cat "$tmp/err")"
done
head -c 1000 "$tmp/w4.lmc" > "$tmp/short.lmc"
expect 1 "short.lmc" "$LMC" export "$tmp/short.lmc" -o "$tmp/x.gguf" --format gguf; one_line truncated
head -c 4096 /dev/urandom > "$tmp/junk.bin"
expect 1 "neither a Hugging Face checkpoint directory nor an .lmc container" "$LMC" export "$tmp/junk.bin" -o "$tmp/x.gguf" --format gguf
mkdir -p "$tmp/nocfg"
expect 1 "no config.json" "$LMC" export "$tmp/nocfg" -o "$tmp/x.gguf" --format gguf
expect 1 "no such file or directory" "$LMC" export "$tmp/missing.lmc" -o "$tmp/x.gguf" --format gguf
nothing_left "$tmp"

# outputs: a missing directory; never the input; never a non-GGUF file or an existing directory
for f in gguf gptq awq; do
    expect 1 "$tmp/nodir/out" "$LMC" export "$tmp/w4.lmc" -o "$tmp/nodir/out" --format $f; one_line "nodir $f"
    grep -q "No such file or directory" "$tmp/err" || fail "nodir $f: $(cat "$tmp/err")"
done
[ ! -e "$tmp/nodir" ] || fail "nodir created"
"$LMC" export "$tmp/w4.lmc" -o "$tmp/slash/" --format gptq -q > /dev/null 2> "$tmp/err" || true
[ -d "$tmp/slash" ] && [ -f "$tmp/slash/config.json" ] || fail "OUT/ with a slash: $(cat "$tmp/err")"
rm -rf "$tmp/slash"
expect 1 "refusing to overwrite the input" "$LMC" export "$tmp/w4.lmc" -o "$tmp/w4.lmc" --format gguf
echo keep > "$tmp/keep.txt"
expect 1 "exists and is not a GGUF file" "$LMC" export "$tmp/w4.lmc" -o "$tmp/keep.txt" --format gguf
[ "$(cat "$tmp/keep.txt")" = keep ] || fail "keep.txt overwritten"
"$LMC" export "$tmp/w4.lmc" -o "$tmp/old.gguf" --format gguf -q > /dev/null || fail "gguf"
"$LMC" export $M -o "$tmp/old.gguf" --format gguf -q > /dev/null || fail "replacing a GGUF file"
mkdir -p "$tmp/olddir"
expect 1 "exists (remove it first" "$LMC" export "$tmp/w4.lmc" -o "$tmp/olddir" --format gptq
[ -z "$(ls -A "$tmp/olddir")" ] || fail "olddir written into"
nothing_left "$tmp"

# a full disk: the write fails, one line, nothing left (GGUF file and checkpoint directory)
full() { # FORMAT KiB
    ( trap '' XFSZ; ulimit -f "$2"; exec "$LMC" export "$tmp/w4.lmc" -o "$tmp/out.$1" --format "$1" -q ) \
        > /dev/null 2> "$tmp/err"; local rc=$?
    [ $rc -eq 1 ] || fail "full disk $1: exit $rc: $(cat "$tmp/err")"
    one_line "full disk $1"
    grep -q "out.$1" "$tmp/err" || fail "full disk $1: output not named: $(cat "$tmp/err")"
    grep -qi "file too large\|write failed" "$tmp/err" || fail "full disk $1: $(cat "$tmp/err")"
    [ ! -e "$tmp/out.$1" ] || fail "full disk $1: output left"
    nothing_left "$tmp"
}
full gguf 1024
full gptq 1024
full awq 200
echo "ok"
