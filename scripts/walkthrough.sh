#!/usr/bin/env bash
# walkthrough.sh: makes docs/walkthrough.md from docs/walkthrough.md.in by
# running every command in it and pasting its real output underneath.
#
# In the template, a line "$ CMD" inside a ```console block is run (with
# `gpt2` meaning build/gpt2, from the repository root, stderr included);
# its output replaces nothing and is written after the line. A line
# "$ CMD #| N" keeps only the first N lines of the output (then "...").
# Everything else is copied as it is.
#
#   bash scripts/walkthrough.sh        (needs `make` and models/kjv)
set -euo pipefail
cd "$(dirname "$0")/.."
in=docs/walkthrough.md.in
out=docs/walkthrough.md
[ -x build/gpt2 ] || make -j2
[ -d models/kjv ] || { echo "walkthrough.sh: no models/kjv (make default-model)" >&2; exit 1; }
export PATH="$PWD/build:$PATH" OMP_WAIT_POLICY=passive
mkdir -p build/walkthrough docs/img
# the held-out text and the shards the examples read
[ -f build/kjv/val/66-Rev.txt ] || bash scripts/kjv-text.sh build/kjv
[ -f build/kjv/shards/val_000000.bin ] ||
    build/gpt2 prepare build/kjv/train --val build/kjv/val -o build/kjv/shards -q
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
in_console=0
while IFS= read -r line; do
    case "$line" in
        '```console') in_console=1; printf '%s\n' "$line" ;;
        '```') in_console=0; printf '%s\n' "$line" ;;
        '$ '*)
            if [ $in_console = 1 ]; then
                cmd=${line#\$ }
                keep=0
                if [[ "$cmd" == *' #| '* ]]; then keep=${cmd##* #| }; cmd=${cmd% #| *}; fi
                printf '$ %s\n' "$cmd"
                echo "walkthrough: $cmd" >&2
                bash -c "$cmd" > "$tmp" 2>&1 || true
                if [ "$keep" -gt 0 ] && [ "$(wc -l < "$tmp")" -gt "$keep" ]; then
                    head -n "$keep" "$tmp"; echo "..."
                else
                    cat "$tmp"
                fi
                # a fence must start its own line
                [ -s "$tmp" ] && [ "$(tail -c 1 "$tmp" | od -An -c | tr -d ' ')" != '\n' ] && echo
            else
                printf '%s\n' "$line"
            fi ;;
        *) printf '%s\n' "$line" ;;
    esac
done < "$in" > "$out.tmp"
mv "$out.tmp" "$out"
# screenshots of the attention page the template made, by the browser test's
# driver (headless chromium; `bash scripts/install-deps.sh --test`)
node tests/browser/attention_test.js --page build/walkthrough/robot.html \
    --json build/walkthrough/robot.json --shots docs/img > build/walkthrough/browser.log 2>&1 ||
    echo "walkthrough: the browser check failed: see build/walkthrough/browser.log" >&2
echo "walkthrough: wrote $out and docs/img/" >&2
