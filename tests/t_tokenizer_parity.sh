#!/usr/bin/env bash
# t_tokenizer_parity.sh: gpt2c's tokenizer against an independent one,
# gpt-3-encoder (npm), on megabytes of mixed text: the KJV Bible, C headers,
# numbers, whitespace runs, contractions, a dozen scripts, emoji and a sweep
# over Unicode (tests/tokenizer/parity.py builds it, deterministically, in
# $BUILD/tokenizer-corpus/). gpt2c encodes the whole corpus in one call
# (tok_ids, which also checks that the ids decode back to the corpus);
# gpt-3-encoder encodes it in chunks cut where the pre-tokenizer cuts anyway
# (tests/tokenizer/encode_chunks.js), in parallel. The id lists must be
# identical; the first difference is printed with its context. Then the
# single-thread encode speed on the Bible is printed, for information.
#
#   bash tests/t_tokenizer_parity.sh     (BUILD=dir; TOK_IDS=path to use
#                                         another tok_ids binary)
#
# Needs node, gpt-3-encoder in tests/tokenizer/node_modules (npm install
# --prefix tests/tokenizer, or scripts/install-deps.sh --test), the `bible`
# program (Debian's bible-kjv) and /usr/bin/python3. Exits 0 on parity.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
here=tests/tokenizer
out=$BUILD/tokenizer-corpus
TOK_IDS=${TOK_IDS:-$BUILD/tests/tools/tok_ids}

die() { echo "t_tokenizer_parity: $*" >&2; exit 1; }

[ -f "$here/node_modules/gpt-3-encoder/Encoder.js" ] ||
    die "gpt-3-encoder is missing from $here/node_modules: run" \
        "'npm install --prefix $here' (or scripts/install-deps.sh --test)"
command -v node >/dev/null || die "node is not installed (scripts/install-deps.sh --test)"
command -v bible >/dev/null || die "the bible program is not installed (Debian package bible-kjv)"
[ -x "$PY" ] || die "$PY is not installed"
if [ ! -x "$TOK_IDS" ]; then
    make --no-print-directory BUILD="$BUILD" "$TOK_IDS" >&2 || die "could not build $TOK_IDS"
fi

echo "corpus ($out/corpus.txt):"
"$PY" "$here/parity.py" corpus "$out"

jobs=$(nproc)
[ "$jobs" -gt 4 ] && jobs=4
t0=$SECONDS
pids=()
for ((p = 0; p < jobs; p++)); do
    node "$here/encode_chunks.js" "$out/corpus.txt" "$p" "$jobs" > "$out/node.$p" &
    pids+=($!)
done
c_ok=1
"$TOK_IDS" --check "$out/corpus.txt" > "$out/c.ids" || c_ok=0
node_ok=1
for pid in "${pids[@]}"; do wait "$pid" || node_ok=0; done
[ $c_ok = 1 ] || die "tok_ids failed on the corpus (see above)"
[ $node_ok = 1 ] || die "gpt-3-encoder (node) failed on the corpus (see above)"
for ((p = 0; p < jobs; p++)); do cat "$out/node.$p"; done > "$out/node.ids"
echo "encoded by gpt2c (one call, decode checked) and by gpt-3-encoder" \
     "($jobs node processes) in $((SECONDS - t0))s"

"$PY" "$here/parity.py" compare "$out" "$out/c.ids" "$out/node.ids"

"$TOK_IDS" --bench 3 "$out/kjv.txt" 2>&1 | sed 's/^tok_ids: /single-thread speed on the KJV: /'
