#!/bin/bash
# Perplexity regression checks for CI: scripts/check-ppl over lmc's JSON
# (always) and `lmc eval --expect-ppl` (when this lmc has it). An unchanged
# model passes against its own measured perplexity; a model made worse on
# purpose (rtn 2-bit) and an expectation lowered on purpose fail with exit 1
# and a "perplexity regressed" line; --two-sided also fails an improvement.
set -u
LMC=${LMC_BIN:-build/lmc}
[ -x "$LMC" ] || { echo "FAIL: $LMC not built"; exit 1; }
command -v python3 >/dev/null || { echo "python3 not installed"; exit 77; }
tmp=$(mktemp -d /tmp/lmc-regr-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# expect RC PATTERN CMD...: exit code RC and PATTERN in stderr
expect() {
    local want=$1 pat=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
    [ $rc -eq "$want" ] || fail "$*: exit $rc, want $want; stderr: $(cat "$tmp/err")"
    [ -z "$pat" ] || grep -qF -- "$pat" "$tmp/err" || fail "$*: stderr lacks '$pat': $(cat "$tmp/err")"
}
C=scripts/check-ppl
XS=data/llama-xs
head -c 20000 data/eval.txt >"$tmp/eval.txt"
EV=(--text "$tmp/eval.txt" --max-windows 4 --seqlen 128 --threads 1)
"$LMC" eval $XS "${EV[@]}" --json -q >"$tmp/base.json" || fail "eval of $XS"
"$LMC" eval $XS "${EV[@]}" --json -q >"$tmp/again.json" || fail "second eval of $XS"
"$LMC" rtn $XS -o "$tmp/w2.lmc" --bits 2 --group -1 -q >/dev/null || fail "rtn --bits 2"
"$LMC" eval "$tmp/w2.lmc" "${EV[@]}" --json -q >"$tmp/w2.json" || fail "eval of the 2-bit model"
ppl() { python3 -c 'import json, sys; print(repr(json.load(open(sys.argv[1]))["ppl"]))' "$1"; }
P=$(ppl "$tmp/base.json")
P2=$(ppl "$tmp/w2.json")
python3 -c "import sys; sys.exit(not $P2 > $P * 1.05)" || fail "rtn 2-bit is not worse: $P2 vs $P"
lower=$(python3 -c "print($P * 0.95)")
higher=$(python3 -c "print($P * 1.05)")
near=$(python3 -c "print($P * 0.995)")

# ---- scripts/check-ppl ----
expect 0 "" $C "$tmp/again.json" --expect-ppl "$P" --tolerance 0  # unchanged: same numbers
grep -q "ok: perplexity" "$tmp/out" || fail "check-ppl printed no ok line"
expect 0 "" $C "$tmp/base.json" --expect-ppl "$near"               # within the default 1%
expect 0 "" $C - --expect-ppl "$P" -q <"$tmp/base.json"
[ ! -s "$tmp/out" ] || fail "-q still printed: $(cat "$tmp/out")"
expect 1 "perplexity regressed: " $C "$tmp/w2.json" --expect-ppl "$P"  # made worse
grep -qF "x (1 + 0.01)" "$tmp/err" || fail "message lacks the tolerance: $(cat "$tmp/err")"
expect 1 "perplexity regressed" $C "$tmp/base.json" --expect-ppl "$lower"  # expectation lowered
expect 0 "" $C "$tmp/base.json" --expect-ppl "$lower" --tolerance 0.1
expect 0 "" $C "$tmp/base.json" --expect-ppl "$higher"            # better: one-sided passes
expect 1 "improved beyond the tolerance" $C "$tmp/base.json" --expect-ppl "$higher" --two-sided
# golden file: every id of the reference must be there and within tolerance
python3 - "$tmp" <<'EOF' || fail "writing JSONL"
import json, sys
t = sys.argv[1]
b, w = (dict(json.load(open("%s/%s.json" % (t, n))), id=n) for n in ("base", "w2"))
open(t + "/now.jsonl", "w").write(json.dumps(b) + "\n" + json.dumps(w) + "\n")
open(t + "/gold.json", "w").write(json.dumps({"base": b["ppl"], "w2": w["ppl"]}))
open(t + "/gold-worse.json", "w").write(json.dumps({"base": b["ppl"], "w2": b["ppl"]}))
open(t + "/gold-more.json", "w").write(json.dumps({"base": b["ppl"], "gone": 10}))
EOF
expect 0 "" $C "$tmp/now.jsonl" --expect "$tmp/gold.json" --tolerance 0
expect 0 "" $C "$tmp/now.jsonl" --expect "$tmp/now.jsonl"
expect 1 "w2: perplexity regressed" $C "$tmp/now.jsonl" --expect "$tmp/gold-worse.json"
expect 1 "gone: no result" $C "$tmp/now.jsonl" --expect "$tmp/gold-more.json"
expect 0 "" $C "$tmp/now.jsonl" --expect-ppl "$P" --id base
expect 1 "regressed" $C "$tmp/now.jsonl" --expect-ppl "$P" --id w2
expect 1 "no record with id" $C "$tmp/now.jsonl" --expect-ppl "$P" --id nope
expect 2 "--id ID" $C "$tmp/now.jsonl" --expect-ppl "$P"
expect 2 "one of them" $C "$tmp/base.json"
expect 2 "--tolerance" $C "$tmp/base.json" --expect-ppl "$P" --tolerance abc
expect 1 "no-such.json" $C "$tmp/no-such.json" --expect-ppl "$P"
echo '{"windows": 2}' >"$tmp/bad.json"
expect 1 "numeric \"ppl\"" $C "$tmp/bad.json" --expect-ppl "$P"

# ---- lmc eval --expect-ppl (once cli/cmd_eval.c has it) ----
if ! "$LMC" eval --help | grep -qF -- "--expect-ppl"; then
    echo "lmc eval has no --expect-ppl yet: scripts/check-ppl checked only"
    exit 0
fi
"$LMC" eval --help | grep -qF "1 failure or a failed --expect-ppl check" || fail "--help lacks the exit status"
expect 0 "" "$LMC" eval $XS "${EV[@]}" --expect-ppl "$P" --tolerance 0
grep -q "^perplexity" "$tmp/out" || fail "the results are not printed with --expect-ppl"
expect 1 "lmc eval: perplexity regressed: " "$LMC" eval "$tmp/w2.lmc" "${EV[@]}" --expect-ppl "$P" --json -q
python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$tmp/out" || fail "no JSON on stdout with a failed check"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "more than one line on stderr: $(cat "$tmp/err")"
expect 1 "perplexity regressed" "$LMC" eval $XS "${EV[@]}" --expect-ppl "$lower" -q
expect 0 "" "$LMC" eval $XS "${EV[@]}" --expect-ppl "$higher" -q
expect 1 "improved beyond the tolerance" "$LMC" eval $XS "${EV[@]}" --expect-ppl "$higher" --two-sided -q
expect 2 "--expect-ppl" "$LMC" eval $XS "${EV[@]}" --expect-ppl 0
expect 2 "--tolerance" "$LMC" eval $XS "${EV[@]}" --expect-ppl "$P" --tolerance -1
expect 2 "go with --expect-ppl" "$LMC" eval $XS "${EV[@]}" --two-sided
exit 0
