#!/usr/bin/env bash
# t_memory.sh: memory at decode (issue 4): the resident size of `gpt2
# generate` does not grow over a 10,000-token run whose window slides
# (n_ctx 64: a slide every 32 tokens), its peak is the weights plus the KV
# cache plus a stated overhead, and (where valgrind is installed) a run
# that slides its window frees everything. The leak check of a 10,000-token
# generate under AddressSanitizer is t_cli.sh's, in run_all's ASan section.
#
#   bash tests/t_memory.sh        (BUILD=... for another build dir; not an
#                                  ASan build: its allocator keeps freed memory)
. "$(dirname "$0")/lib.sh"
export LC_ALL=C # $EPOCHREALTIME and awk with a decimal point
# as run_all.sh: gpt2 then does not re-exec itself to set it (a re-exec
# under valgrind runs valgrind's tool binary without valgrind)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

need_gpt2
if ldd "$G" 2> /dev/null | grep -q 'libasan\|libtsan'; then
    echo "# $G is a sanitizer build: resident sizes mean nothing there; nothing to check"
    finish
fi
kb() { echo $((($1 + 1023) / 1024)); } # bytes to KiB, rounded up
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; } # KiB to MiB, for messages

# -------------------------------------------- no growth over 10,000 tokens
# VmRSS and VmHWM of the process every 0.1 s, as "seconds rss_kib hwm_kib".
# Growth is measured from the sample at 10% of the run's time (the first
# window and the first slides are long done by then) to the end: the
# largest VmRSS after it (a leak only adds) and VmHWM at the end (which
# also sees between the samples). A decode that allocates nothing per token
# stays flat to the KiB; BOUND_KIB allows 4 bytes a token (generate's token
# history). What this catches is memory that grows and stays reachable (a
# cache, a buffer or a KV cache that never slides): 1 KiB a token adds
# 10 MiB. Small leaks first fill the heap that loading freed (about 4 MiB),
# so RSS misses those below about 0.5 KiB a token: the leak checks (valgrind
# below, LeakSanitizer in t_cli.sh) find them.
BOUND_KIB=256
N=10000
"$G" init --n-layer 2 --n-head 2 --n-embd 64 --n-ctx 64 --seed 1 -o "$tmp/small" \
    > /dev/null 2> "$tmp/err" || { fail "init a small model" "$(cat "$tmp/err")"; finish; }

sample_status() { # sample_status PID: one line, or nothing once it has gone
    local k v rest rss='' hwm=''
    while read -r k v rest; do
        case $k in VmRSS:) rss=$v ;; VmHWM:) hwm=$v ;; esac
    done < "/proc/$1/status" 2> /dev/null
    [ -n "$rss" ] && [ -n "$hwm" ] && echo "$EPOCHREALTIME $rss $hwm"
}
# one thread: a 2-layer model gains nothing from more, and its RSS is then
# the same on every machine
"$G" --threads 1 generate -m "$tmp/small" -p "In the beginning" -n $N --ignore-eos \
    --seed 1 > "$tmp/text" 2> "$tmp/err" &
pid=$!
: > "$tmp/rss"
while kill -0 $pid 2> /dev/null; do
    sample_status $pid >> "$tmp/rss"
    sleep 0.1
done
wait $pid
rc=$?
if [ $rc != 0 ]; then
    fail "generate $N tokens (n_ctx 64)" "exit $rc: $(tail -n 5 "$tmp/err")"
else
    # the 10% mark, the growth after it, the number of samples
    read -r n_samples base_rss grow_rss grow_hwm <<< "$(awk '
        { t[NR] = $1; r[NR] = $2; h[NR] = $3 }
        END {
            mark = t[1] + 0.1 * (t[NR] - t[1]); b = NR
            for (i = 1; i <= NR; i++) if (t[i] >= mark) { b = i; break }
            mx = r[b]
            for (i = b; i <= NR; i++) if (r[i] > mx) mx = r[i]
            print NR, r[b], mx - r[b], h[NR] - h[b]
        }' "$tmp/rss")"
    detail="$n_samples samples; RSS $(mb "$base_rss") at 10%, then +${grow_rss} KiB (largest), VmHWM +${grow_hwm} KiB"
    if [ "${n_samples:-0}" -lt 20 ]; then
        fail "RSS sampled through a $N-token generate" "$detail: too few to judge"
    elif [ "$grow_rss" -le $BOUND_KIB ] && [ "$grow_hwm" -le $BOUND_KIB ]; then
        pass "no growth over $N tokens with a sliding window (<= $BOUND_KIB KiB): $detail"
    else
        fail "no growth over $N tokens with a sliding window (<= $BOUND_KIB KiB)" \
             "$detail
$(awk 'NR == 1 { t0 = $1 } NR % 10 == 1 { printf "%5.1f s  VmRSS %s KiB  VmHWM %s KiB\n", $1 - t0, $2, $3 }' "$tmp/rss")"
    fi
fi

# --------------------------------------------------- peak: weights + KV
# A GPT-2 of gpt2's widths (n_embd 768, 12 heads, n_ctx 1024, 50257 ids)
# with 2 layers: 214 MB of F32 weights, a 12.6 MB KV cache. A 1,000-token
# prompt (prefilled in chunks) and 40 tokens more fill the cache and slide
# the window once. The peak (getrusage's ru_maxrss, the process's VmHWM at
# exit) may be at most the weights + the KV cache + this overhead:
#   - what the process needs anyway (libraries, the tokenizer): the peak of
#     a 5-token generate with the small model, less that model's weights;
#   - the session's activations, sized once for a prefill chunk of
#     min(n_ctx, PREFILL_CHUNK) tokens (src/session.c; 18 C + 4 floats a
#     token for a block, C more for its input) and the logits (V floats);
#   - prefill attention's scores, one head per thread (one thread here):
#     chunk x n_ctx floats;
#   - 8 MiB for everything else (oneDNN's packing buffers, about 3 MiB
#     here; allocator slack).
# A second copy of the weights or of the KV cache, or activations sized for
# the whole context, fail it.
peak_kib() { # peak_kib CMD...: the command's peak RSS in KiB (prints "rc kib")
    "$PY" -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   stdin=subprocess.DEVNULL)
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"
}
L=2 NH=12 C=768 CTX=1024 V=50257
"$G" init --n-layer $L --n-head $NH --n-embd $C --n-ctx $CTX --seed 1 -o "$tmp/big" \
    > /dev/null 2> "$tmp/err" || { fail "init a gpt2-wide model" "$(cat "$tmp/err")"; finish; }
printf 'the %.0s' $(seq 1 1000) > "$tmp/prompt.txt"
read -r rc_small peak_small <<< "$(peak_kib "$G" --threads 1 generate -m "$tmp/small" \
    -p "In the beginning" -n 5 --seed 1)"
read -r rc_big peak_big <<< "$(peak_kib "$G" --threads 1 generate -m "$tmp/big" \
    --prompt-file "$tmp/prompt.txt" -n 40 --ignore-eos --seed 1)"
if [ "$rc_small" != 0 ] || [ "$rc_big" != 0 ]; then
    fail "peak RSS runs" "exit $rc_small (small model), $rc_big (gpt2-wide model)"
else
    weights=$(kb "$(stat -c %s "$tmp/big/model.safetensors")")
    base=$((peak_small - $(kb "$(stat -c %s "$tmp/small/model.safetensors")")))
    kv=$(kb $((2 * L * CTX * C * 4)))
    pc=$(sed -n 's/^#define PREFILL_CHUNK \([0-9]*\).*/\1/p' src/session.c)
    chunk=$((CTX < ${pc:-512} ? CTX : ${pc:-512}))
    acts=$(kb $(((chunk * (19 * C + 4) + C + V + chunk * CTX) * 4)))
    other=$((8 * 1024))
    allowed=$((weights + kv + base + acts + other))
    detail="peak $(mb "$peak_big"): weights $(mb "$weights") + KV cache $(mb "$kv") + $(mb $((peak_big - weights - kv))) more; allowed $(mb "$allowed") (process $(mb "$base"), activations $(mb "$acts"), other $(mb "$other"))"
    if [ "$peak_big" -le "$allowed" ]; then
        pass "peak RSS of a gpt2-wide decode is the weights + the KV cache + overhead: $detail"
    else
        fail "peak RSS of a gpt2-wide decode is the weights + the KV cache + overhead" "$detail"
    fi
fi

# ------------------------------------------------- everything is freed
# valgrind is not among the test dependencies; where it is installed, a
# short generate that slides its window (n_ctx 32) loses nothing.
if command -v valgrind > /dev/null 2>&1; then
    if "$G" init --n-layer 2 --n-head 2 --n-embd 32 --n-ctx 32 --seed 1 -o "$tmp/tiny" \
           > /dev/null 2> "$tmp/err" &&
       valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect,possible \
           --error-exitcode=99 "$G" --threads 1 generate -m "$tmp/tiny" -p "In the beginning" \
           -n 100 --ignore-eos --seed 1 > /dev/null 2> "$tmp/err"; then
        pass "valgrind: a generate that slides its window frees everything"
    else
        fail "valgrind: a generate that slides its window frees everything" \
             "$(grep -A 12 'lost\|Invalid\|uninitialised' "$tmp/err" | head -n 40 | grep . ||
                tail -n 5 "$tmp/err")"
    fi
else
    echo "# valgrind is not installed: the leak check is t_cli.sh's under ASan"
fi

finish
