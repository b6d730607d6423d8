# Sourced by tests/cli/*.sh: the binary under test, a temporary directory
# removed on exit, and the assertions every CLI test uses.
LMC=${LMC_BIN:-build/lmc}
[ -x "$LMC" ] || { echo "FAIL: $LMC not built"; exit 1; }
tmp=$(mktemp -d /tmp/lmc-cli-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# jget FILE EXPR: EXPR evaluated on the parsed JSON object d
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
# expect RC PATTERN CMD...: exit code RC and PATTERN (if not empty) in stderr
expect() {
    local want=$1 pat=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
    [ $rc -eq "$want" ] || fail "$*: exit $rc, want $want; stderr: $(cat "$tmp/err")"
    [ -z "$pat" ] || grep -qF -- "$pat" "$tmp/err" || fail "$*: stderr lacks '$pat': $(cat "$tmp/err")"
}
