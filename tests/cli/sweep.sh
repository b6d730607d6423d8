#!/bin/bash
# scripts/sweep on the vendored llama-xs: grid errors (exit 2 before any
# run), a sweep of 9 configurations + baseline killed halfway and resumed
# (finished runs are not recomputed, no temporary file is left, the final
# results are complete and agree with lmc eval run by hand), JSONL, CSV and
# SVG outputs (well-formed XML; rendered when rsvg-convert is installed), a
# grid extended by one run, and a failing run that does not stop the others.
set -u
LMC=${LMC_BIN:-build/lmc}
[ -x "$LMC" ] || { echo "FAIL: $LMC not built"; exit 1; }
command -v python3 >/dev/null || { echo "python3 not installed"; exit 77; }
export LMC_BIN=$LMC
tmp=$(mktemp -d /tmp/lmc-sweep-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
py() { python3 - "$@"; }
mtime() { python3 -c 'import os, sys; print(os.stat(sys.argv[1]).st_mtime_ns)' "$1"; }
S=scripts/sweep
OUT=$tmp/sw
# short texts: tokenizing the whole of data/*.txt would cost more than the runs
head -c 40000 data/calib.txt >"$tmp/calib.txt"
head -c 20000 data/eval.txt >"$tmp/eval.txt"
ARGS=(data/llama-xs --calib "$tmp/calib.txt" --text "$tmp/eval.txt"
      --pass-args '--nsamples 4 --seqlen 128' --eval-args '--max-windows 2 --seqlen 128')
GRID='rtn:bits=2..4 gptq:bits=3,4 wanda:sparsity=0.5,0.7 magnitude:nm=2:4 magnitude:sparsity=0.5+rtn:bits=4'

# ---- usage errors: exit 2 and a message naming the problem, nothing run ----
expect2() {
    local pat=$1; shift
    "$S" "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
    [ $rc -eq 2 ] || fail "sweep $*: exit $rc, want 2: $(cat "$tmp/err")"
    grep -qF -- "$pat" "$tmp/err" || fail "sweep $*: stderr lacks '$pat': $(cat "$tmp/err")"
}
expect2 "--grid" "${ARGS[@]}" --out "$tmp/u"
expect2 "--out DIR" "${ARGS[@]}" --grid rtn
expect2 "empty value" "${ARGS[@]}" --out "$tmp/u" --grid 'gptq:bits=2,,3'
expect2 "bad range" "${ARGS[@]}" --out "$tmp/u" --grid 'gptq:bits=4..2'
expect2 "pass 'bogus'" "${ARGS[@]}" --out "$tmp/u" --grid 'bogus:bits=4'
expect2 "has no option --bitz" "${ARGS[@]}" --out "$tmp/u" --grid 'rtn:bits=4 gptq:bitz=4'
expect2 "set by the sweep" "${ARGS[@]}" --out "$tmp/u" --grid 'rtn:output=x.lmc'
expect2 "given twice" "${ARGS[@]}" --out "$tmp/u" --grid 'rtn:bits=3;bits=4'
expect2 "no such file" data/no-such-model --text data/eval.txt --out "$tmp/u" --grid rtn
[ ! -e "$tmp/u/runs" ] || fail "a usage error started runs"
"$S" --help | grep -q "KEY=true becomes" || fail "--help lacks the grid syntax"

# ---- a sweep killed halfway ----
set -m  # the sweep in its own process group, killed as a whole like a job
"$S" "${ARGS[@]}" --grid "$GRID" --out "$OUT" -j 2 >"$tmp/log1" 2>&1 &
pid=$!
set +m
for _ in $(seq 600); do  # until 3 records exist (at most 60 s)
    n=$(ls "$OUT"/runs/*.json 2>/dev/null | grep -vc '\.compress\.json$')
    [ "$n" -ge 3 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
done
kill -TERM -- -$pid 2>/dev/null
wait $pid; rc=$?
[ $rc -ne 0 ] || fail "the killed sweep exited 0 (it finished before the kill?): $(cat "$tmp/log1")"
# the group's processes got SIGTERM with the sweep; on a loaded machine they
# may take a moment to clean up and exit: wait up to 10 s for them
py "$OUT" <<'EOF' || fail "processes left after the kill"
import glob, os, sys, time
def left():
    found = []
    for p in glob.glob("/proc/[0-9]*/cmdline"):
        if p == "/proc/%d/cmdline" % os.getpid():
            continue
        try:
            args = open(p, "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if sys.argv[1] in args:
            found.append(args)
    return found
for _ in range(100):
    if not left():
        break
    time.sleep(0.1)
assert not left(), left()
EOF
left=$(find "$OUT" -name '*.tmp*')
[ -z "$left" ] || fail "temporary files left after the kill: $left"
py "$OUT" >"$tmp/before" <<'EOF' || fail "records after the kill"
import glob, json, os, sys
out = sys.argv[1]
recs = [p for p in glob.glob(out + "/runs/*.json") if not p.endswith(".compress.json")]
plan = json.load(open(out + "/plan.json"))
assert 3 <= len(recs) < len(plan["runs"]), "%d of %d records after the kill" % (len(recs), len(plan["runs"]))
for p in recs:
    r = json.load(open(p))          # whole JSON: written atomically
    assert r["ppl"] > 1, p
    print(p, os.stat(p).st_mtime_ns)
    lmc = p[:-5] + ".lmc"
    if os.path.exists(lmc):
        print(lmc, os.stat(lmc).st_mtime_ns)
EOF
done_before=$(grep -c '\.json ' "$tmp/before")

# ---- resume: the same command finishes only what is missing ----
"$S" "${ARGS[@]}" --grid "$GRID" --out "$OUT" -j 2 >"$tmp/out2" 2>"$tmp/log2" ||
    fail "resumed sweep: exit $?: $(cat "$tmp/log2")"
grep -q "10 runs (baseline + 9), $done_before done, $((10 - done_before)) to run" "$tmp/log2" ||
    fail "resume did not count the finished runs ($done_before): $(cat "$tmp/log2")"
[ "$(grep -c 'ppl ' "$tmp/log2")" -eq $((10 - done_before)) ] || fail "runs recomputed: $(cat "$tmp/log2")"
while read -r f t; do
    [ "$(mtime "$f")" = "$t" ] ||
        fail "$f was rewritten by the resumed sweep"
done <"$tmp/before"
[ -z "$(find "$OUT" -name '*.tmp*')" ] || fail "temporary files left"

# ---- the results: complete, consistent, and what lmc eval says ----
py "$OUT" <<'EOF' || fail "results"
import csv, json, math, sys
out = sys.argv[1]
plan = json.load(open(out + "/plan.json"))
ids = [l.strip() for l in open(out + "/ids.txt")]
assert ids == [r["id"] for r in plan["runs"]] and len(ids) == 10, ids
recs = [json.loads(l) for l in open(out + "/results.jsonl")]
got = [r["id"] for r in recs]
assert sorted(got) == sorted(ids) and len(set(got)) == len(got), got
assert got[0] == "baseline", got
by = {r["id"]: r for r in recs}
for r in recs:
    assert r["fingerprint"] == next(p["fingerprint"] for p in plan["runs"] if p["id"] == r["id"])
    assert math.isfinite(r["ppl"]) and r["ppl"] > 1, r["id"]
    assert r["eval"]["windows"] == 2 and r["eval"]["seqlen"] == 128, r["id"]
    assert r["baseline_ppl"] == by["baseline"]["ppl"]
    assert abs(r["ppl_vs_baseline"] - r["ppl"] / r["baseline_ppl"]) < 1e-12
    for k in ("bits_per_weight", "compression_ratio", "flops_per_token", "flops_per_token_dense"):
        assert r[k] > 0, (r["id"], k)
    if r["id"] != "baseline":
        assert r["commands"]["compress"] and "--nsamples 4" in r["commands"]["compress"][0]
        assert r["provenance"] and r["provenance"][-1]["pass"] == r["stages"][-1]["pass"], r["id"]
        assert r["seconds"]["compress"] > 0
b = by["baseline"]
assert b["bits_per_weight"] == 16 and b["compression_ratio"] == 1 and b["stages"] == []
q = [by["rtn-bits%d" % n] for n in (2, 3, 4)]
assert q[0]["bits_per_weight"] < q[1]["bits_per_weight"] < q[2]["bits_per_weight"] < 16
assert q[0]["ppl"] > q[2]["ppl"] and q[0]["ppl"] > b["ppl"], [x["ppl"] for x in q]
w5, w7 = by["wanda-sparsity0.5"], by["wanda-sparsity0.7"]
assert w7["flops_per_token"] < w5["flops_per_token"] < w5["flops_per_token_dense"]
assert w5["sparsity"] == 0.5 and by["magnitude-nm2_4"]["sparsity"] == 0.5
ch = by["magnitude-sparsity0.5+rtn-bits4"]
assert [s["pass"] for s in ch["stages"]] == ["magnitude", "rtn"] and len(ch["commands"]["compress"]) == 2
assert ch["bits_per_weight"] < by["rtn-bits4"]["bits_per_weight"]
# the CSV holds the same numbers
rows = list(csv.DictReader(open(out + "/results.csv")))
assert [r["id"] for r in rows] == got
for row in rows:
    assert abs(float(row["ppl"]) - by[row["id"]]["ppl"]) <= 1e-6 * by[row["id"]]["ppl"]
assert rows[got.index("gptq-bits3")]["gptq.bits"] == "3"
EOF
# one record checked against lmc eval by hand (same threads: same numbers)
th=$(py "$OUT" <<'EOF'
import json, sys; print(json.load(open(sys.argv[1] + "/runs/rtn-bits3.json"))["eval"]["threads"])
EOF
)
"$LMC" eval "$OUT/runs/rtn-bits3.lmc" --text "$tmp/eval.txt" --max-windows 2 --seqlen 128 --threads "$th" --json -q >"$tmp/e.json" ||
    fail "lmc eval of a sweep output"
py "$tmp/e.json" "$OUT/runs/rtn-bits3.json" <<'EOF' || fail "the record differs from lmc eval"
import json, sys
e, r = (json.load(open(p)) for p in sys.argv[1:3])
assert e["ppl"] == r["ppl"] and e["bits_per_weight"] == r["bits_per_weight"], (e["ppl"], r["ppl"])
EOF

# ---- plots: well-formed SVG, one marker per run, rendered when possible ----
py "$OUT" <<'EOF' || fail "SVG"
import sys, xml.etree.ElementTree as ET
out = sys.argv[1]
ns = "{http://www.w3.org/2000/svg}"
for name, n in (("ppl_vs_bits.svg", 9), ("ppl_vs_sparsity.svg", 4)):
    root = ET.parse(out + "/" + name).getroot()
    assert root.tag == ns + "svg", root.tag
    pts = [g for g in root.iter(ns + "g") if g.get("class") == "point"]
    assert len(pts) == n, (name, len(pts))
    texts = " ".join(t.text or "" for t in root.iter(ns + "text"))
    for want in ("perplexity", "llama-xs", "eval.txt", "uncompressed"):
        assert want in texts, (name, want)
EOF
if command -v rsvg-convert >/dev/null; then
    for f in ppl_vs_bits ppl_vs_sparsity; do
        rsvg-convert "$OUT/$f.svg" -o "$tmp/$f.png" 2>"$tmp/err" || fail "rsvg-convert $f.svg: $(cat "$tmp/err")"
        [ "$(head -c 4 "$tmp/$f.png" | tail -c 3)" = PNG ] || fail "$f.png is not a PNG"
    done
else
    echo "rsvg-convert not installed: SVG rendering not checked"
fi

# ---- nothing to do: a third run changes nothing ----
cp "$OUT/results.jsonl" "$tmp/r1"
"$S" "${ARGS[@]}" --grid "$GRID" --out "$OUT" -j 2 >/dev/null 2>"$tmp/log3" || fail "third run: $(cat "$tmp/log3")"
grep -q "10 done, 0 to run" "$tmp/log3" || fail "third run recomputed: $(cat "$tmp/log3")"
cmp -s "$OUT/results.jsonl" "$tmp/r1" || fail "results.jsonl changed without a new run"
"$S" --out "$OUT" --run rtn-bits2 2>&1 | grep -q "already done" || fail "--run of a finished run"
"$S" --out "$OUT" --run no-such-run >/dev/null 2>&1; [ $? -eq 2 ] || fail "--run of an unknown id"

# ---- a grown grid runs only the new runs; a failing run stops no other ----
"$S" "${ARGS[@]}" --grid "$GRID rtn:bits=8 magnitude:nm=2:64" --out "$OUT" -j 2 -q >"$tmp/out4" 2>"$tmp/log4"
rc=$?
[ $rc -eq 1 ] || fail "a failed run: exit $rc, want 1: $(cat "$tmp/log4")"
grep -q "magnitude-nm2_64: lmc magnitude failed (exit 1): .*does not divide" "$tmp/log4" ||
    fail "the failure is not reported: $(cat "$tmp/log4")"
grep -q "no result" "$tmp/out4" || fail "the table does not list the failed run: $(cat "$tmp/out4")"
[ "$(wc -l <"$OUT/results.jsonl")" -eq 11 ] || fail "results.jsonl: want 11 records"
[ ! -e "$OUT/runs/magnitude-nm2_64.lmc" ] && [ ! -e "$OUT/runs/magnitude-nm2_64.json" ] ||
    fail "the failed run left an output"
while read -r f t; do
    [ "$(mtime "$f")" = "$t" ] ||
        fail "$f was recomputed when the grid grew"
done <"$tmp/before"
[ -z "$(find "$OUT" -name '*.tmp*')" ] || fail "temporary files left"
exit 0
