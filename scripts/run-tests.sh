#!/bin/bash
# Runs the Check test binaries given as arguments and the CLI tests in
# tests/cli/*.sh, then prints one summary line "N passed, N failed, N skipped".
# A CLI test exits 0 (pass), 77 (skip, e.g. ../shared absent) or else (fail).
set -u
# Arguments: test binaries, and optionally tests/cli/*.sh scripts; without
# any script argument every tests/cli/*.sh runs.
export LMC_BIN="${LMC_BIN:-build/lmc}"
# see lmc.c: OpenMP threads must not spin against OpenBLAS's
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
passed=0 failed=0 skipped=0
failures=()
bins=() scripts=()
for a in "$@"; do case $a in *.sh) scripts+=("$a") ;; *) bins+=("$a") ;; esac; done
[ ${#scripts[@]} -eq 0 ] && scripts=(tests/cli/*.sh)
for t in "${bins[@]}"; do
    out=$(CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-600} "$t" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks: ' | tail -1)
    printf '%s: %s\n' "$(basename "$t")" "${line:-exit $rc}"
    n=$(printf '%s' "$line" | sed -nE 's/.*Checks: ([0-9]+), Failures: ([0-9]+), Errors: ([0-9]+).*/\1 \2 \3/p')
    if [ -n "$n" ]; then
        set -- $n "$@"; c=$1 f=$2 e=$3; shift 3
        passed=$((passed + c - f - e)); failed=$((failed + f + e))
        s=$(printf '%s\n' "$out" | grep -c '^SKIP:')
        skipped=$((skipped + s))
    fi
    if [ $rc -ne 0 ] || [ -z "$n" ]; then
        [ -z "$n" ] && failed=$((failed + 1))
        failures+=("$t"); printf '%s\n' "$out" | grep -vE '^(Running suite|[0-9]+%: Checks)' | head -40
    fi
done
if true; then
    for t in "${scripts[@]}"; do
        [ -e "$t" ] || continue
        out=$(bash "$t" 2>&1); rc=$?
        case $rc in
            0) passed=$((passed + 1)); echo "$(basename "$t"): ok" ;;
            77) skipped=$((skipped + 1)); echo "$(basename "$t"): skipped ($(printf '%s\n' "$out" | tail -1))" ;;
            *) failed=$((failed + 1)); failures+=("$t"); echo "$(basename "$t"): FAILED (exit $rc)"
               printf '%s\n' "$out" | tail -30 ;;
        esac
    done
fi
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
