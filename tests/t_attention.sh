#!/usr/bin/env bash
# t_attention.sh: `gpt2 attention` and `gpt2 score` end to end.
#
#   1. A reference model (tests/reference/attention_ref.py make-model: random
#      weights with peaked attention, GPT-2's tokenizer) and the weights and
#      raw scores `gpt2 attention --scores` writes for a text, against the
#      PyTorch reference's within 1e-4; the same check on a copy with one
#      weight moved by 1e-3 must fail.
#   2. Every format: .json (strict UTF-8 JSON, also for a text that is not
#      valid UTF-8), .svg (parses as XML; every cell's colour is its weight
#      in the JSON), .png (signature, chunk CRCs, IHDR size, pixels of every
#      cell decoded with zlib and compared with the JSON), .html (written).
#   3. `gpt2 score --json`: every logprob against the reference (a text
#      longer than the context, in sliding windows), and their sum against
#      -loss * n_tokens of `gpt2 eval --json` on the same text.
#   4. Usage and runtime errors: exit 2 or 1 with a message, never a crash.
#
#   bash tests/t_attention.sh        (BUILD=build-asan for another build)
#
# Prints "ok - ..." / "not ok - ..." per check; exits non-zero on a failure.
. "$(dirname "$0")/lib.sh"
export PYTHONDONTWRITEBYTECODE=1

PY=${PYTHON:-/usr/bin/python3} # Debian's, with torch
REF=tests/reference/attention_ref.py
fail_detail_lines=20

# its own check: the test's output too, in the details
check() { # check NAME TEST...: passes when the test command succeeds
    local name=$1
    shift
    if "$@" > "$tmp/check.log" 2>&1; then
        pass "$name"
    else
        fail "$name" "$(tail -n 12 "$tmp/check.log"; tail -n 5 "$tmp/err" 2>/dev/null)"
    fi
}

# expect_error NAME CODE CMD...: exits CODE with a "gpt2 <cmd>: ..." message
# (its own: lib.sh's takes 1 or 2).
expect_error() {
    local name=$1 code=$2
    shift 2
    run "$@"
    if [ $rc = "$code" ] && grep -q '^gpt2' "$tmp/err"; then
        pass "$name (exit $rc: $(head -n 1 "$tmp/err" | cut -c1-90))"
    else
        fail "$name: exit $rc, expected $code" "$(cat "$tmp/err")"
    fi
}

need_gpt2
if ! "$PY" -c 'import torch' 2>/dev/null; then
    echo "not ok - $PY cannot import torch (Debian: apt-get install python3-torch)"
    exit 1
fi

# The heatmaps against the JSON of the same capture: python3 THIS JSON
# LAYER HEAD SVG PNG. Colours: white (w=0) to #08306b (w=1), straight per
# channel, masked cells #dddddd (src/attention.c).
cat > "$tmp/heatmaps.py" <<'EOF'
import json, struct, sys, zlib
import xml.etree.ElementTree as ET

d = json.load(open(sys.argv[1], encoding="utf-8", errors="strict"))
L, H = int(sys.argv[2]), int(sys.argv[3])
W = d["attention"][L][H]
T = len(W)
LO, HI, MASKED = (255, 255, 255), (8, 48, 107), (221, 221, 221)
problems = []

def colour(q, k):
    if k > q:
        return MASKED
    return tuple(lo + (hi - lo) * W[q][k] for lo, hi in zip(LO, HI))

def near(got, want):
    return all(abs(g - w) <= 1.0 for g, w in zip(got, want))

# --- SVG: valid XML, the title, one cell per unmasked pair, colours
ns = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[4]).getroot()
if root.tag != ns + "svg":
    problems.append("svg root is %s" % root.tag)
if root.find(ns + "title").text != "layer %d, head %d" % (L, H):
    problems.append("svg title %r" % root.find(ns + "title").text)
cells = [e for e in root.iter(ns + "rect") if e.get("class") == "cell"]
if len(cells) != T * (T + 1) // 2:
    problems.append("svg has %d cells, want %d" % (len(cells), T * (T + 1) // 2))
seen = set()
for e in cells:
    c = int(e.get("width"))
    q, k = int(e.get("y")) // c, int(e.get("x")) // c
    f = e.get("fill")
    rgb = tuple(int(f[i:i + 2], 16) for i in (1, 3, 5))
    seen.add((q, k))
    if k > q or not near(rgb, colour(q, k)):
        problems.append("svg cell (%d, %d) is %s for weight %s" % (q, k, f, W[q][k]))
if len(seen) != len(cells):
    problems.append("svg cells overlap")
labels = [t for g in root.iter(ns + "g") if g.get("class") == "labels" for t in g.iter(ns + "text")]
if len(labels) != 2 * T:
    problems.append("svg has %d labels, want %d" % (len(labels), 2 * T))

# --- PNG: chunks and CRCs, IHDR, geometry, every cell's centre pixel
png = open(sys.argv[5], "rb").read()
if png[:8] != b"\x89PNG\r\n\x1a\n":
    problems.append("png signature")
pos, chunks, idat = 8, [], b""
while pos + 12 <= len(png):
    n, kind = struct.unpack(">I4s", png[pos:pos + 8])
    data = png[pos + 8:pos + 8 + n]
    (crc,) = struct.unpack(">I", png[pos + 8 + n:pos + 12 + n])
    if zlib.crc32(kind + data) != crc:
        problems.append("png %s chunk CRC" % kind)
    chunks.append((kind, data))
    idat += data if kind == b"IDAT" else b""
    pos += 12 + n
kinds = [k for k, _ in chunks]
if kinds[0] != b"IHDR" or kinds[-1] != b"IEND" or pos != len(png):
    problems.append("png chunk order %s" % kinds)
w, h, depth, ctype = struct.unpack(">IIBB", chunks[0][1][:10])
text = dict(c[1].split(b"\0", 1) for c in chunks if c[0] == b"tEXt")
geo = dict(kv.split("=") for kv in text[b"gpt2c-heatmap"].decode().split())
x0, y0, cell = int(geo["x0"]), int(geo["y0"]), int(geo["cell"])
if text.get(b"Title") != b"layer %d, head %d" % (L, H) or int(geo["n"]) != T:
    problems.append("png text %s" % text)
if depth != 8 or ctype != 2 or x0 + T * cell > w or y0 + T * cell > h:
    problems.append("png IHDR %dx%d depth %d type %d, grid at %d,%d" % (w, h, depth, ctype, x0, y0))
raw, stride = zlib.decompress(idat), 3 * w
if len(raw) != (stride + 1) * h:
    problems.append("png data is %d bytes for %dx%d" % (len(raw), w, h))
rows, prev = [], bytearray(stride)
for r in range(h):  # PNG's five row filters, as a decoder must apply them
    f, line = raw[r * (stride + 1)], bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - 3] if i >= 3 else 0
        b, c = prev[i], prev[i - 3] if i >= 3 else 0
        p = a + b - c
        pred = [0, a, b, (a + b) // 2,
                a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c)
                else b if abs(p - b) <= abs(p - c) else c][f]
        line[i] = (line[i] + pred) & 255
    rows.append(line)
    prev = line
bad = 0
for q in range(T):
    for k in range(T):
        x, y = x0 + k * cell + cell // 2, y0 + q * cell + cell // 2
        if not near(rows[y][3 * x:3 * x + 3], colour(q, k)):
            bad += 1
if bad:
    problems.append("png: %d of %d cells have the wrong colour" % (bad, T * T))
# labels are drawn (dark ink left of the grid) when cells are tall enough
ink = any(rows[y][3 * x] < 100 for y in range(y0, y0 + T * cell) for x in range(x0))
if cell >= 8 and not ink:
    problems.append("png: no labels left of the grid")
print("svg %d cells, png %dx%d with %d px cells: %s" % (len(cells), w, h, cell,
      "; ".join(problems) or "all match"))
sys.exit(1 if problems else 0)
EOF

# --------------------------------------------------- reference model
RM="$tmp/ref"
check "reference model (attention_ref.py make-model)" "$PY" "$REF" make-model "$RM"
TEXT="The robot must obey the orders given it by human beings except where such orders would conflict with the First Law."

run "$G" attention -m "$RM" -p "$TEXT" --scores -o "$tmp/a.json"
check "attention --scores -o a.json exits 0" test $rc = 0
check "attention weights and scores match the PyTorch reference within 1e-4" \
    "$PY" "$REF" check-attention "$RM" "$tmp/a.json"
# the check can fail: one weight moved by 1e-3
"$PY" - "$tmp/a.json" "$tmp/moved.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
d["attention"][2][1][9][4] += 1e-3
json.dump(d, open(sys.argv[2], "w"))
EOF
if "$PY" "$REF" check-attention "$RM" "$tmp/moved.json" > "$tmp/moved.log" 2>&1; then
    fail "the reference check fails on a weight moved by 1e-3" "$(tail -n 5 "$tmp/moved.log")"
else
    check "the reference check fails on a weight moved by 1e-3, naming it" \
        grep -q "FAIL attention\[2\]\[1\]" "$tmp/moved.log"
fi
run "$G" attention -m "$RM" -p "$TEXT" -o "$tmp/w.json"
check "without --scores: no \"scores\", same weights" \
    "$PY" -c 'import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
sys.exit("scores" in b or a["attention"] != b["attention"] or a["tokens"] != b["tokens"])' \
    "$tmp/a.json" "$tmp/w.json"

# ------------------------------------------------------------ formats
run "$G" attention -m "$RM" -p "$TEXT" --layer 1 --head 2 -o "$tmp/a.svg"
check "attention -o a.svg exits 0 and says what it wrote" \
    grep -q "wrote $tmp/a.svg: layer 1, head 2" "$tmp/out"
run "$G" attention -m "$RM" -p "$TEXT" --layer 1 --head 2 -o "$tmp/a.PNG"
check "attention -o a.PNG (any case) exits 0" test $rc = 0
check "SVG parses as XML and PNG decodes; every cell's colour is its weight" \
    "$PY" "$tmp/heatmaps.py" "$tmp/a.json" 1 2 "$tmp/a.svg" "$tmp/a.PNG"
# a text that fills most of the context
LONG=$(printf 'In the beginning God created the heaven and the earth. %.0s' 1 2 3)
run "$G" attention -m "$RM" -p "$LONG" -o "$tmp/long.json"
run "$G" attention -m "$RM" -p "$LONG" --layer 2 --head 0 -o "$tmp/long.svg"
run "$G" attention -m "$RM" -p "$LONG" --layer 2 --head 0 -o "$tmp/long.png"
check "heatmaps of a text filling the context" \
    "$PY" "$tmp/heatmaps.py" "$tmp/long.json" 2 0 "$tmp/long.svg" "$tmp/long.png"
run "$G" attention -m "$RM" -p "$TEXT" -o "$tmp/a.html"
check "attention -o a.html writes a page" \
    grep -qi "<html" "$tmp/a.html"

# text that is not valid UTF-8 (a lone continuation byte, a cut character)
printf 'caf\xc3\xa9 \x80 ok \xe2\x82' > "$tmp/bad.txt"
run "$G" attention -m "$RM" --prompt-file "$tmp/bad.txt" --scores -o "$tmp/bad.json"
check "invalid UTF-8 text: exits 0" test $rc = 0
check "invalid UTF-8 text: strict UTF-8 JSON, pieces with U+FFFD, values match" \
    "$PY" "$REF" check-attention "$RM" "$tmp/bad.json"
check "invalid UTF-8 text: some piece holds U+FFFD" \
    "$PY" -c 'import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8", errors="strict"))
sys.exit(not any("\ufffd" in p for p in d["pieces"]))' "$tmp/bad.json"
STDIN="$tmp/bad.txt" run "$G" attention -m "$RM" -o "$tmp/stdin.json"
check "the text from stdin" test $rc = 0 -a -s "$tmp/stdin.json"

# -------------------------------------------------------------- score
# LICENSE is longer than the reference model's 40-token context
head -c 1500 LICENSE > "$tmp/long.txt"
run "$G" score -m "$RM" --stride 16 --json "$tmp/long.txt"
cp "$tmp/out" "$tmp/score.json"
check "score --json exits 0" test $rc = 0
check "score logprobs match the PyTorch reference, windows of eval (stride 16)" \
    "$PY" "$REF" check-score "$RM" "$tmp/score.json" 16
run "$G" score -m "$RM" --json "$tmp/long.txt"
cp "$tmp/out" "$tmp/score20.json"
check "score logprobs match the reference with the default stride (n_ctx/2)" \
    "$PY" "$REF" check-score "$RM" "$tmp/score20.json" 20
for stride in 16 20; do
    run "$G" eval -m "$RM" --json --stride $stride "$tmp/long.txt"
    cp "$tmp/out" "$tmp/eval.json"
    s=$([ $stride = 16 ] && echo "$tmp/score.json" || echo "$tmp/score20.json")
    check "sum of score's logprobs = -loss * n_tokens of gpt2 eval (stride $stride)" \
        "$PY" -c 'import json, sys
s, e = (json.load(open(f)) for f in sys.argv[1:3])
total, want = sum(s["logprobs"][1:]), -e["loss"] * e["n_tokens"]
print("score %.6f, eval %.6f over %d" % (total, want, e["n_tokens"]))
sys.exit(not (abs(total - want) <= max(1e-3, 1e-5 * abs(want))
              and s["n_scored"] == e["n_tokens"]))' "$s" "$tmp/eval.json"
done
run "$G" score -m "$RM" "$tmp/long.txt"
check "score's table: the first token has no prediction, a total at the end" \
    "$PY" -c 'import sys
lines = open(sys.argv[1]).read().splitlines()
first = lines[1].split()
sys.exit(not (lines[0].split()[:3] == ["#", "token", "piece"]
              and first[0] == "0" and first[-2:] == ["-", "-"]
              and lines[-1].startswith("total logprob ")))' "$tmp/out"
printf 'Hello' > "$tmp/one.txt"
run "$G" score -m "$RM" --json "$tmp/one.txt"
check "score of one token: logprobs [null], nothing scored" \
    "$PY" -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(not (d["logprobs"] == [None] and d["n_scored"] == 0
              and d["total_logprob"] == 0 and d["mean_logprob"] is None))' "$tmp/out"
run "$G" score -m "$RM" --json "$tmp/bad.txt"
check "score of invalid UTF-8: strict UTF-8 JSON" \
    "$PY" -c 'import json, sys; json.load(open(sys.argv[1], encoding="utf-8", errors="strict"))' "$tmp/out"

# ------------------------------------------------------- help, errors
for cmd in attention score; do
    run "$G" "$cmd" --help
    check "$cmd --help exits 0 and prints its usage" grep -q "usage: gpt2 $cmd" "$tmp/out"
    expect_error "$cmd --no-such-option" 2 "$G" "$cmd" --no-such-option
done
run "$G" --help
check "gpt2 --help lists attention and score" \
    bash -c "grep -q '^  attention ' '$tmp/out' && grep -q '^  score ' '$tmp/out'"
A=("$G" attention -m "$RM")
expect_error "attention without -o" 2 "${A[@]}" -p "$TEXT"
expect_error "attention -o with an unknown extension" 2 "${A[@]}" -p "$TEXT" -o "$tmp/a.txt"
expect_error "attention -o without an extension" 2 "${A[@]}" -p "$TEXT" -o "$tmp/a"
expect_error "attention --layer past the model's layers" 2 "${A[@]}" -p "$TEXT" --layer 3 -o "$tmp/x.svg"
expect_error "attention --head past the model's heads" 2 "${A[@]}" -p "$TEXT" --head 3 -o "$tmp/x.png"
expect_error "attention --layer -1" 2 "${A[@]}" -p "$TEXT" --layer -1 -o "$tmp/x.png"
expect_error "attention --layer with .json" 2 "${A[@]}" -p "$TEXT" --layer 0 -o "$tmp/x.json"
expect_error "attention --scores with .png" 2 "${A[@]}" -p "$TEXT" --scores -o "$tmp/x.png"
expect_error "attention --no-scores with .json" 2 "${A[@]}" -p "$TEXT" --no-scores -o "$tmp/x.json"
expect_error "attention -p and --prompt-file" 2 "${A[@]}" -p "$TEXT" --prompt-file "$tmp/bad.txt" -o "$tmp/x.json"
expect_error "attention -p ''" 2 "${A[@]}" -p "" -o "$tmp/x.json"
expect_error "attention with a text longer than the context (-p)" 2 "${A[@]}" -p "$LONG $LONG" -o "$tmp/x.json"
printf '%s %s' "$LONG" "$LONG" > "$tmp/toolong.txt"
expect_error "attention with a text longer than the context (file)" 1 "${A[@]}" --prompt-file "$tmp/toolong.txt" -o "$tmp/x.json"
expect_error "attention --prompt-file missing" 1 "${A[@]}" --prompt-file "$tmp/nope.txt" -o "$tmp/x.json"
expect_error "attention with an empty stdin" 1 "${A[@]}" -o "$tmp/x.json"
expect_error "attention into a missing directory" 1 "${A[@]}" -p "$TEXT" -o "$tmp/no/such/dir/x.json"
check "nothing is left behind by a failed write" test ! -e "$tmp/no"
expect_error "attention -m a missing model" 1 "$G" attention -m "$tmp/nomodel" -p "$TEXT" -o "$tmp/x.json"
expect_error "attention --max-mb 0" 2 "${A[@]}" -p "$TEXT" --max-mb 0 -o "$tmp/x.json"
# 3 layers x 3 heads x 40 x 40 floats, weights and scores: 0.11 MiB; a
# bigger model for a capture over the limit
run "$G" init --n-layer 2 --n-head 8 --n-embd 64 --n-ctx 512 --seed 3 -o "$tmp/big"
BIGTEXT=$(head -c 1800 LICENSE)
expect_error "attention over --max-mb" 1 "$G" attention -m "$tmp/big" -p "$BIGTEXT" --scores --max-mb 4 -o "$tmp/x.json"
check "the --max-mb message names the size" grep -q "MiB" "$tmp/err"
expect_error "score without FILE" 2 "$G" score -m "$RM"
expect_error "score with two FILEs" 2 "$G" score -m "$RM" "$tmp/one.txt" "$tmp/one.txt"
expect_error "score --stride 0" 2 "$G" score -m "$RM" --stride 0 "$tmp/one.txt"
expect_error "score --stride past the context" 2 "$G" score -m "$RM" --stride 41 "$tmp/one.txt"
expect_error "score of a missing file" 1 "$G" score -m "$RM" "$tmp/nope.txt"
: > "$tmp/empty.txt"
expect_error "score of an empty file" 1 "$G" score -m "$RM" "$tmp/empty.txt"

echo "t_attention: $((n_checks - n_failed)) of $n_checks passed ($BUILD)"
[ $n_failed = 0 ]
