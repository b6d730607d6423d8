#!/bin/bash
# usage: fuzz/run.sh SECONDS JOBS TARGET...   (what `make fuzz` runs)
#
# Runs each libFuzzer target of build-fuzz/fuzz/ for SECONDS, JOBS targets at
# a time, on build-fuzz/corpus/TARGET (kept between runs, so a later run
# continues where this one stopped) seeded from fuzz/seeds.py and the
# regression inputs of tests/fixtures/fuzz/TARGET. Crashes, leaks and hangs
# go to build-fuzz/artifacts/TARGET/; the log of each run to
# build-fuzz/logs/TARGET.log. Prints one line per target: executions, time,
# corpus size, coverage, artifacts.
set -u
secs=${1:?seconds}; jobs=${2:?jobs}; shift 2
[ $# -gt 0 ] || { echo "fuzz/run.sh: no targets" >&2; exit 2; }
cd "$(dirname "$0")/.."
F=build-fuzz
if [ ! -d $F/seeds/container ]; then
    rm -rf $F/seeds
    python3 fuzz/seeds.py $F/seeds build/lmc || exit 1
fi
# longest input each target is given: the largest seed of each kind fits
declare -A maxlen=([fuzz_safetensors]=16384 [fuzz_config]=4096 [fuzz_tokenizer]=16384
                   [fuzz_container]=65536)
one() {
    local t=$1 kind=${1#fuzz_}
    mkdir -p $F/corpus/$t $F/artifacts/$t $F/logs
    local dirs=($F/corpus/$t $F/seeds/$kind)
    [ -d tests/fixtures/fuzz/$t ] && dirs+=(tests/fixtures/fuzz/$t)
    # one thread: the encodings' OpenMP kernels must not spin against the other target
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 \
        $F/fuzz/$t -max_total_time="$secs" -max_len="${maxlen[$t]:-65536}" -timeout=10 \
        -rss_limit_mb=2048 -dict=fuzz/lmc.dict -print_final_stats=1 \
        -artifact_prefix=$F/artifacts/$t/ "${dirs[@]}" >$F/logs/$t.log 2>&1
    local rc=$?
    local execs time cov corp arts
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' $F/logs/$t.log | tail -1)
    time=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' $F/logs/$t.log | grep -oE '[0-9]+ second' | grep -oE '[0-9]+')
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' $F/logs/$t.log | tail -1)
    arts=$(ls $F/artifacts/$t | wc -l)
    printf '%s: exit %d, %s executions in %s s, %s, %d artifact(s) in %s\n' "$t" "$rc" \
        "${execs:-?}" "${time:-?}" "${cov:-?}" "$arts" "$F/artifacts/$t"
}
export -f one
export F secs
export maxlen_s="$(declare -p maxlen)"
printf '%s\n' "$@" | xargs -P "$jobs" -I{} bash -c 'eval "$maxlen_s"; one {}'
