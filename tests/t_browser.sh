#!/usr/bin/env bash
# t_browser.sh: the attention page in a real browser. Makes a small model
# (`gpt2 init`, 2 layers x 3 heads), writes `gpt2 attention` for the
# tutorial's sentence as a page with scores, a page without, and the .json
# of the same capture, then has headless Chromium (Debian's /usr/bin/chromium,
# driven by playwright-core from tests/browser/node_modules) open each page
# by file:// and check it: no console errors, no network requests, the data
# equal to the JSON, every view switching and drawing, and heatmap cell
# colours in a screenshot that track the JSON's weights and scores
# (tests/browser/attention_test.js says what exactly). The unchanged source
# page, web/attention.html, must load its demo data as cleanly.
#
#   bash tests/t_browser.sh          (BUILD=dir; CHROMIUM=path of the browser)
#
# Screenshots of each view are left in $BUILD/attention-{head,model,matrix,
# attends}.png. Needs node, chromium and playwright-core (all from
# scripts/install-deps.sh --test). Prints "ok - ..." / "not ok - ..." per
# check; exits non-zero on a failure.
. "$(dirname "$0")/lib.sh"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
here=tests/browser

missing() { echo "not ok - $1"; exit 1; }
[ -x "$G" ] || missing "$G is not built (make)"
command -v node >/dev/null || missing "node is not installed (scripts/install-deps.sh --test)"
[ -x "$CHROMIUM" ] || missing "$CHROMIUM is not installed (scripts/install-deps.sh --test installs chromium)"
[ -f "$here/node_modules/playwright-core/package.json" ] ||
    missing "playwright-core is missing from $here/node_modules: run 'npm install --prefix $here' (or scripts/install-deps.sh --test)"

# step NAME CMD...: one setup step, reported as a check of its own
step() {
    local name=$1
    shift
    if "$@" > "$tmp/out" 2>&1; then
        echo "ok - $name"
    else
        echo "not ok - $name"
        tail -n 8 "$tmp/out" | sed 's/^/    # /'
        exit 1
    fi
}

text="A robot must obey the orders given it"
step "gpt2 init: a 2-layer, 3-head model" \
    "$G" init --n-layer 2 --n-head 3 --n-embd 48 --n-ctx 64 --seed 1 -o "$tmp/model"
step "gpt2 attention --scores: the page" \
    "$G" attention -m "$tmp/model" -p "$text" --scores -o "$tmp/page.html"
step "gpt2 attention --no-scores: the page without scores" \
    "$G" attention -m "$tmp/model" -p "$text" --no-scores -o "$tmp/noscores.html"
step "gpt2 attention --scores: the JSON" \
    "$G" attention -m "$tmp/model" -p "$text" --scores -o "$tmp/capture.json"

# The browser gets its own HOME, so nothing of the user's profile or
# caches is read or written.
mkdir -p "$tmp/home"
HOME="$tmp/home" timeout -k 5 300 node "$here/attention_test.js" \
    --page "$tmp/page.html" --json "$tmp/capture.json" \
    --no-scores-page "$tmp/noscores.html" --demo web/attention.html \
    --shots "$BUILD" --chromium "$CHROMIUM"
