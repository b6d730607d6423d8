#!/bin/bash
# tests/llamacpp/install.sh: llama.cpp for the GGUF tests, as node-llama-cpp's
# prebuilt CPU binaries, installed with `npm ci` from the committed lock file
# into $LMC_LLAMACPP_DIR (default .cache/llamacpp, ignored by git), once per
# lock file. Prints the directory on stdout and exits 0; exits 77 with a
# "SKIP: ..." line when npm or the registry cannot be reached; 1 otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=${LMC_LLAMACPP_DIR:-$root/.cache/llamacpp}
lock=$here/package-lock.json
stamp=.installed-$(sha256sum "$lock" | cut -c1-16)
[ -f "$dir/$stamp" ] && { echo "$dir"; exit 0; }
command -v node >/dev/null && command -v npm >/dev/null || { echo "SKIP: node/npm not found"; exit 77; }
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
[ -f "$dir/$stamp" ] && { echo "$dir"; exit 0; }   # another test installed it meanwhile
tmp=$dir.tmp.$$
rm -rf "$tmp" && mkdir -p "$tmp" && cp "$here/package.json" "$lock" "$tmp/"
# only the linux-x64 CPU binaries (a direct dependency); the CUDA/Vulkan
# variants are optional dependencies and skipped. No install scripts: the
# prebuilt binaries need no build step.
if ! (cd "$tmp" && timeout 600 npm ci --omit=optional --ignore-scripts --no-audit --no-fund \
        --loglevel=error) > "$tmp.log" 2>&1; then
    if grep -qE 'ENOTFOUND|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EAI_AGAIN|network|fetch failed|getaddrinfo' "$tmp.log"; then
        echo "SKIP: npm registry unreachable ($(grep -m1 -oE 'E[A-Z_]+' "$tmp.log" || echo network error))"
        rm -rf "$tmp" "$tmp.log"
        exit 77
    fi
    echo "FAIL: npm ci in $tmp failed:" >&2
    tail -20 "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    exit 1
fi
rm -f "$tmp.log"
touch "$tmp/$stamp"
rm -rf "$dir" && mv "$tmp" "$dir"
echo "$dir"
