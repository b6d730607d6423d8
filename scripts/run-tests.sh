#!/bin/bash
# Runs the Check test binaries given as arguments and the CLI tests in
# tests/cli/*.sh, then prints one summary line "N passed, N failed, N skipped".
# A CLI test exits 0 (pass), 77 (skip, e.g. ../shared absent) or else (fail).
# Tests run LMC_TEST_JOBS at a time (default: the number of cores; 1: one
# after the other), the longest first (test_eval_ref, the llama.cpp and
# quantization scripts), so that they overlap the many short ones; results
# print in the usual order once all have finished.
set -u
# Arguments: test binaries, and optionally tests/cli/*.sh scripts; without
# any script argument every tests/cli/*.sh runs.
export LMC_BIN="${LMC_BIN:-build/lmc}"
# see lmc.c: OpenMP threads must not spin against OpenBLAS's
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
jobs=${LMC_TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
passed=0 failed=0 skipped=0
failures=()
bins=() scripts=()
for a in "$@"; do case $a in *.sh) scripts+=("$a") ;; *) bins+=("$a") ;; esac; done
[ ${#scripts[@]} -eq 0 ] && scripts=(tests/cli/*.sh)
out=$(mktemp -d /tmp/lmc-tests-XXXXXX)
trap 'rm -rf "$out"' EXIT

# run_one I PATH: output in $out/I.out, exit status in $out/I.rc
run_one() {
    local i=$1 t=$2 rc
    case $t in
    *.sh) bash "$t" >"$out/$i.out" 2>&1; rc=$? ;;
    *) CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-600} "$t" >"$out/$i.out" 2>&1; rc=$? ;;
    esac
    echo $rc >"$out/$i.rc"
}

all=("${bins[@]}" "${scripts[@]}")
# the longest first, so that they overlap the rest
order=()
for i in "${!all[@]}"; do
    case $(basename "${all[$i]}") in
    test_eval_ref|export_llamacpp.sh|quant.sh|export_hf.sh|export_gguf.sh) order=("$i" "${order[@]}") ;;
    *) order+=("$i") ;;
    esac
done
running=0
for i in "${order[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
    run_one "$i" "${all[$i]}" &
    running=$((running + 1))
done
wait

for i in "${!all[@]}"; do
    t=${all[$i]}
    rc=$(cat "$out/$i.rc" 2>/dev/null || echo 1)
    o="$out/$i.out"
    case $t in
    *.sh)
        case $rc in
            0) passed=$((passed + 1)); echo "$(basename "$t"): ok" ;;
            77) skipped=$((skipped + 1)); echo "$(basename "$t"): skipped ($(tail -1 "$o"))" ;;
            *) failed=$((failed + 1)); failures+=("$t"); echo "$(basename "$t"): FAILED (exit $rc)"
               tail -30 "$o" ;;
        esac ;;
    *)
        line=$(grep -E '^[0-9]+%: Checks: ' "$o" | tail -1)
        printf '%s: %s\n' "$(basename "$t")" "${line:-exit $rc}"
        n=$(printf '%s' "$line" | sed -nE 's/.*Checks: ([0-9]+), Failures: ([0-9]+), Errors: ([0-9]+).*/\1 \2 \3/p')
        if [ -n "$n" ]; then
            read -r c f e <<<"$n"
            passed=$((passed + c - f - e)); failed=$((failed + f + e))
            skipped=$((skipped + $(grep -c '^SKIP:' "$o")))
        fi
        if [ "$rc" -ne 0 ] || [ -z "$n" ]; then
            [ -z "$n" ] && failed=$((failed + 1))
            failures+=("$t"); grep -vE '^(Running suite|[0-9]+%: Checks)' "$o" | head -40
        fi ;;
    esac
done
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
