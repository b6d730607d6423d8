#!/bin/bash
# lmc tokenize on the vendored demo model (always), then against the
# reference ids of ../shared when it is there.
set -u
LMC="${LMC_BIN:-build/lmc}"
T=$(mktemp -d /tmp/lmc-tokenize-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
M=data/llama-xs

"$LMC" tokenize --help | grep -q "lmc tokenize MODEL TEXTFILE" || fail "--help"

# encode to a file, decode back: the exact text (special tokens skipped)
"$LMC" tokenize $M data/eval.txt -o "$T/ids.i32" || fail "encode"
n=$(( $(stat -c %s "$T/ids.i32") / 4 ))
[ "$n" -gt 50000 ] || fail "only $n ids"
"$LMC" tokenize $M --decode "$T/ids.i32" --skip-special > "$T/back.txt" || fail "decode"
cmp -s "$T/back.txt" data/eval.txt || fail "decode round trip differs from data/eval.txt"
# without --skip-special the decoded text starts with <s>
"$LMC" tokenize $M --decode "$T/ids.i32" -o "$T/back2.txt" || fail "decode -o"
head -c 3 "$T/back2.txt" | grep -q '^<s>' || fail "decode keeps <s> by default"

# ids on stdout, one per line, same as the file; --json summary
"$LMC" tokenize $M data/eval.txt > "$T/ids.txt" || fail "encode to stdout"
[ "$(wc -l < "$T/ids.txt")" -eq "$n" ] || fail "stdout count differs"
[ "$(head -1 "$T/ids.txt")" = 1 ] || fail "first id is not <s>"
od -An -v -t d4 "$T/ids.i32" | tr -s ' ' '\n' | sed '/^$/d' | cmp -s - "$T/ids.txt" \
    || fail "stdout ids differ from the int32 file"
"$LMC" tokenize $M data/eval.txt --json > "$T/sum.json" || fail "--json"
grep -q "\"tokens\": $n," "$T/sum.json" || fail "--json token count: $(cat "$T/sum.json")"
grep -q '"seconds": ' "$T/sum.json" || fail "--json seconds"

# --no-special drops the leading <s>
"$LMC" tokenize $M data/eval.txt --no-special -o "$T/ns.i32" || fail "--no-special"
[ $(( $(stat -c %s "$T/ns.i32") / 4 )) -eq $((n - 1)) ] || fail "--no-special count"
cmp -s "$T/ns.i32" <(tail -c +5 "$T/ids.i32") || fail "--no-special ids"

# empty text: just <s>; invalid UTF-8: encoded through byte fallback
: > "$T/empty.txt"
[ "$("$LMC" tokenize $M "$T/empty.txt")" = 1 ] || fail "empty text"
printf 'a\xff\xfeb' > "$T/bad.txt"
"$LMC" tokenize $M "$T/bad.txt" -o "$T/bad.i32" || fail "invalid UTF-8 input"
[ $(( $(stat -c %s "$T/bad.i32") / 4 )) -ge 4 ] || fail "invalid UTF-8 ids"

# errors: unreadable text file (exit 1, named), usage (exit 2), no partial output
"$LMC" tokenize $M "$T/missing.txt" -o "$T/out.i32" 2> "$T/err"; rc=$?
[ $rc -eq 1 ] || fail "missing text file: exit $rc"
grep -q "missing.txt" "$T/err" || fail "missing text file not named: $(cat "$T/err")"
[ ! -e "$T/out.i32" ] || fail "output left behind after a failure"
"$LMC" tokenize $M data/eval.txt -o "$T/nodir/out.i32" 2> "$T/err"; rc=$?
[ $rc -eq 1 ] || fail "unwritable output: exit $rc"
"$LMC" tokenize "$T/nomodel" data/eval.txt 2> /dev/null; rc=$?
[ $rc -eq 1 ] || fail "missing model: exit $rc"
"$LMC" tokenize $M 2> /dev/null; rc=$?
[ $rc -eq 2 ] || fail "missing TEXTFILE: exit $rc"
"$LMC" tokenize $M data/eval.txt --bogus 2> /dev/null; rc=$?
[ $rc -eq 2 ] || fail "unknown option: exit $rc"
printf 'abc' > "$T/odd.i32"
"$LMC" tokenize $M --decode "$T/odd.i32" 2> "$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q "multiple of 4" "$T/err" || fail "odd-sized ids file"

# against transformers' ids
S=../shared
if [ ! -d "$S" ]; then
    echo "SKIP: ../shared absent (reference ids)"
    exit 0
fi
for m in llama-s llama-xs opt-s gpt2-s; do
    ref=$m; [ $m = llama-xs ] && ref=llama-s
    "$LMC" tokenize "$S/models/$m" "$S/data/eval.txt" -o "$T/$m.i32" || fail "$m encode"
    cmp "$T/$m.i32" "$S/reference/$ref.eval.ids.i32" || fail "$m ids differ from the reference"
done
"$LMC" tokenize $M data/eval.txt -o "$T/v.i32" && cmp -s "$T/v.i32" "$S/reference/llama-s.eval.ids.i32" \
    || fail "vendored llama-xs ids differ from the reference"
# the byte-level tokenizer decodes calib.txt back exactly
"$LMC" tokenize "$S/models/gpt2-s" "$S/data/calib.txt" -o "$T/c.i32" || fail "calib encode"
"$LMC" tokenize "$S/models/gpt2-s" --decode "$T/c.i32" | cmp -s - "$S/data/calib.txt" \
    || fail "gpt2-s calib round trip"
echo "ok"
