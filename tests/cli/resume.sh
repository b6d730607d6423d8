#!/bin/bash
# A streamed pass killed mid-run (SIGKILL) and resumed gives the same bytes
# as an uninterrupted run (SOURCE_DATE_EPOCH fixes the provenance's time);
# what a resume refuses, and why.
set -u
cd "$(dirname "$0")/../.."
. tests/cli_lib.sh
export SOURCE_DATE_EPOCH=1700000000
XS=data/llama-xs
args=(--bits 4 --group 64 --nsamples 32 --seqlen 512 --threads 1 -q)

expect 0 "" "$LMC" gptq $XS -o "$tmp/full.lmc" "${args[@]}"
[ ! -e "$tmp/full.lmc.partial" ] && [ ! -e "$tmp/full.lmc.resume" ] ||
    fail "a finished run left its partial output or state"

# kill it after its first finished block, before the last
killed=0
for attempt in 1 2 3; do
    rm -f "$tmp/part.lmc" "$tmp/part.lmc.partial" "$tmp/part.lmc.resume"
    "$LMC" gptq $XS -o "$tmp/part.lmc" "${args[@]}" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
        if [ -e "$tmp/part.lmc.resume" ]; then
            kill -9 $pid 2>/dev/null && killed=1
            break
        fi
        sleep 0.02
    done
    wait $pid 2>/dev/null
    [ $killed = 1 ] && [ ! -e "$tmp/part.lmc" ] && break
    killed=0
done
[ $killed = 1 ] || fail "could not kill the run between its first and last block"
[ ! -e "$tmp/part.lmc" ] || fail "a killed run left a file under the output name"
[ -e "$tmp/part.lmc.partial" ] && [ -e "$tmp/part.lmc.resume" ] || fail "no partial output and state"
done=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["blocks_done"])' "$tmp/part.lmc.resume")
[ "$done" -ge 1 ] && [ "$done" -lt 4 ] || fail "blocks_done $done after the kill"

# a different job is refused, naming what differs; the partial stays
expect 1 '"calibration" differs' "$LMC" gptq $XS -o "$tmp/part.lmc" "${args[@]}" --seed 1 --resume
expect 1 '"args" differs' "$LMC" gptq $XS -o "$tmp/part.lmc" --bits 3 --group 64 \
    --nsamples 32 --seqlen 512 --resume -q
[ -e "$tmp/part.lmc.partial" ] || fail "a refused resume removed the partial output"
# the same job resumes after the last finished block: identical bytes
expect 0 "resuming" "$LMC" gptq $XS -o "$tmp/part.lmc" --bits 4 --group 64 --nsamples 32 \
    --seqlen 512 --threads 1 --resume
cmp -s "$tmp/full.lmc" "$tmp/part.lmc" || fail "resumed output differs from the uninterrupted run"
[ ! -e "$tmp/part.lmc.partial" ] && [ ! -e "$tmp/part.lmc.resume" ] || fail "resume left its state"
echo "killed after $done of 4 blocks; resumed output identical"

# nothing to resume; a pass that does not stream
expect 1 "nothing to continue" "$LMC" gptq $XS -o "$tmp/none.lmc" "${args[@]}" --resume
[ ! -e "$tmp/none.lmc" ] || fail "refused resume wrote an output"
expect 2 "does not stream its output" "$LMC" sparsegpt $XS -o "$tmp/s.lmc" --sparsity 0.5 --resume
# SIGTERM, too, leaves a resumable state (the handler does not remove it)
rm -f "$tmp/t.lmc"*
"$LMC" gptq $XS -o "$tmp/t.lmc" "${args[@]}" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -e "$tmp/t.lmc.resume" ] && break; sleep 0.02; done
kill -TERM $pid 2>/dev/null
wait $pid
rc=$?
if [ ! -e "$tmp/t.lmc" ]; then
    [ $rc -ne 0 ] || fail "a run stopped by SIGTERM exited 0"
    [ -e "$tmp/t.lmc.partial" ] && [ -e "$tmp/t.lmc.resume" ] || fail "SIGTERM removed the state"
    expect 0 "" "$LMC" gptq $XS -o "$tmp/t.lmc" "${args[@]}" --resume
    cmp -s "$tmp/full.lmc" "$tmp/t.lmc" || fail "output resumed after SIGTERM differs"
    echo "stopped by SIGTERM (exit $rc); resumed output identical"
else
    echo "SIGTERM came after the run had finished: not checked"
fi
exit 0
