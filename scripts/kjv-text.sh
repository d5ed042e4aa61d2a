#!/usr/bin/env bash
# kjv-text.sh OUTDIR: the King James Bible (public domain), from Debian's
# bible-kjv package, as one plain-text file per book with the verse
# references stripped: OUTDIR/train/NN-Book.txt for Genesis to Jude and
# OUTDIR/val/66-Rev.txt for Revelation, the held-out validation book.
set -euo pipefail
out=${1:?usage: kjv-text.sh OUTDIR}
command -v bible >/dev/null || { echo "kjv-text.sh: 'bible' not found: apt-get install bible-kjv" >&2; exit 1; }
rm -rf "$out/train" "$out/val"
mkdir -p "$out/train" "$out/val"
# Each line is "Ge1:1 In the beginning ..."; a new book starts when the
# abbreviation before the chapter number changes.
bible -f gen1:1-rev22:21 | awk -v out="$out" '
  match($0, /^[1-9]?[A-Za-z]+[0-9]+:[0-9]+ /) {
    ref = substr($0, 1, RLENGTH - 1)
    book = ref; sub(/[0-9]+:[0-9]+$/, "", book)
    if (book != cur) {
      if (file) close(file)
      cur = book; n++
      file = sprintf("%s/%s/%02d-%s.txt", out, (book == "Rev" ? "val" : "train"), n, book)
    }
    print substr($0, RLENGTH + 1) > file
    next
  }
  { print "kjv-text.sh: unexpected line: " $0 > "/dev/stderr"; exit 1 }
  END { if (n != 66) { print "kjv-text.sh: found " n " books, expected 66" > "/dev/stderr"; exit 1 } }'
echo "kjv-text.sh: $(ls "$out/train" | wc -l) training books, $(ls "$out/val" | wc -l) validation book in $out" >&2
