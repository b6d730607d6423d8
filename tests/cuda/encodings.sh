#!/bin/bash
# The CUDA evaluator's compressed-weight kernels against their references
# (make cuda-check; needs a GPU and ../shared, else exit 77), on llama-s,
# opt-s and gpt2-s:
#   W8A8 (smoothquant) and LLM.int8() (int8) containers: the ppl through the
#   CUDA int8 kernels at --precision fp32 and at the default precision within
#   1e-3 relative of the CPU evaluator's (same windows; LMC_ENC_TOL). Not
#   1e-4: the quantizers' inputs differ in the last bit between the devices,
#   and on the CPU alone a 1-ulp change of half the W8A8 quantizer inputs
#   moves a llama-s SmoothQuant ppl by 2.9e-4 (test_cuda.c, test_encoded_ppl;
#   the kernels on identical inputs: test_slot_int8);
#   GPTQ 4-bit g128 and 3-bit g128 act-order containers, kept packed on the
#   device: within 1e-5 of the dequantize-at-load path (LMC_CUDA_PACKED=0) at
#   fp32 and at the default precision, with fewer device weight bytes.
# LMC_ENC_MODELS narrows the models; LMC_ENC_WINDOWS (default 40) windows of
# 1024 tokens.
set -u
cd "$(dirname "$0")/../.."
. tests/cli_lib.sh
. tests/cuda/lib.sh
W=${LMC_ENC_WINDOWS:-40}
fails=0
ev() { # ev CONTAINER ARGS...: the eval JSON
    "$LMC" eval "$1" --text data/eval.txt --seqlen 1024 --max-windows "$W" --json -q "${@:2}" \
        2>"$tmp/eerr" || { echo "eval failed: $(cat "$tmp/eerr")" >&2; echo '{}'; }
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], "nan"))' "$1" "$2"; }
check() { # check LABEL A B TOL
    read -r rel ok < <(python3 -c "a,b=float('$2'),float('$3'); r=abs(b-a)/a; print(f'{r:.2e}', int(r <= $4))")
    printf '%-8s %-44s %12.6f %12.6f %10s  (<= %s)\n' "$m" "$1" "$2" "$3" "$rel" "$4"
    [ "$ok" = 1 ] || { echo "FAIL: $m $1: $3 vs $2 (rel $rel > $4)"; fails=$((fails + 1)); }
}
printf '%-8s %-44s %12s %12s %10s\n' model check reference cuda rel
for m in ${LMC_ENC_MODELS:-llama-s opt-s gpt2-s}; do
    for c in "smoothquant --alpha 0.5" "int8" "gptq --bits 4 --group 128" \
             "gptq --bits 3 --group 128 --act-order"; do
        $LMC $c "$S/models/$m" -o "$tmp/c.lmc" --calib data/calib.txt --nsamples 16 \
            --seqlen 1024 -q >/dev/null 2>"$tmp/err" ||
            { echo "FAIL: $m $c: $(tail -1 "$tmp/err")"; fails=$((fails + 1)); continue; }
        case $c in
        gptq*)
            for p in fp32 auto; do
                a=$(LMC_CUDA_PACKED=0 ev "$tmp/c.lmc" --device cuda --precision $p)
                b=$(ev "$tmp/c.lmc" --device cuda --precision $p)
                check "$c, $p: packed vs decoded" "$(field "$a" ppl)" "$(field "$b" ppl)" 1e-5
                python3 -c "import sys; sys.exit(0 if float('$(field "$b" device_weight_bytes)') < float('$(field "$a" device_weight_bytes)') else 1)" ||
                    { echo "FAIL: $m $c: packed weights not smaller on the device"; fails=$((fails + 1)); }
            done ;;
        *)
            a=$(ev "$tmp/c.lmc" --device cpu)
            for p in fp32 auto; do
                tol=${LMC_ENC_TOL:-1e-3}
                b=$(ev "$tmp/c.lmc" --device cuda --precision $p)
                check "$c, cuda $p vs cpu" "$(field "$a" ppl)" "$(field "$b" ppl)" $tol
            done ;;
        esac
        rm -f "$tmp/c.lmc"
    done
done
[ $fails -eq 0 ] || fail "$fails check(s) failed"
