#!/usr/bin/env bash
# t_install.sh: `make install` works for a user: installs into a temporary
# prefix, then, from a directory outside the repository, runs the installed
# `gpt2` (which must find its tokenizer under <prefix>/share/gpt2c, also after
# the prefix is moved), builds examples/generate.c against the installed
# header and library with pkg-config, shared and static, and runs both on a
# model made by the installed `gpt2 init`; last, `make uninstall` removes it
# all. One line per check, "ok - ..." or "not ok - ..."; exits non-zero if
# any check failed. BUILD selects the build directory (default build).
. "$(dirname "$0")/lib.sh"
repo=$PWD
build=$BUILD
prefix=$tmp/prefix
away=$tmp/elsewhere
mkdir -p "$away"
# The installed program must find its data itself.
unset GPT2C_DATA GPT2C_MODEL

failures=0
ok()     { echo "ok - $*"; }
not_ok() { echo "not ok - $*"; failures=$((failures + 1)); }
# check DESCRIPTION CMD...: ok when CMD succeeds; else shows its output.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        ok "$what"
    else
        not_ok "$what"
        printf '%s\n' "$out" | tail -n 20 | sed 's/^/    # /'
    fi
}
# same_text DESCRIPTION EXPECTED ACTUAL
same_text() {
    if [ "$2" = "$3" ]; then ok "$1"; else
        not_ok "$1"; echo "    # expected: '$2'"; echo "    #      got: '$3'"; fi
}

# ------------------------------------------------------------------ install
if ! make --no-print-directory BUILD="$build" PREFIX="$prefix" install \
        > "$tmp/install.log" 2>&1; then
    not_ok "make install PREFIX=$prefix"
    tail -n 30 "$tmp/install.log" | sed 's/^/    # /'
    echo "t_install: make install failed; nothing more to check"
    exit 1
fi
ok "make install PREFIX=<tmp>"
for f in bin/gpt2 lib/libgpt2.a lib/libgpt2.so.0 lib/libgpt2.so include/gpt2.h \
         lib/pkgconfig/gpt2c.pc share/gpt2c/tokenizer/vocab.json \
         share/gpt2c/tokenizer/merges.txt; do
    check "installed $f" test -e "$prefix/$f"
done
check "installed header is the repository's" cmp include/gpt2.h "$prefix/include/gpt2.h"

cd "$away" || exit 1
gpt2=$prefix/bin/gpt2
version=$(sed -n 's/^#define GPT2_VERSION "\(.*\)"/\1/p' "$repo/include/gpt2.h")

# ------------------------------------------------------- the installed CLI
out=$("$gpt2" --version 2>&1); rc=$?
if [ $rc = 0 ] && [[ "$out" == *"$version"* ]]; then
    ok "gpt2 --version says $version"
else
    not_ok "gpt2 --version (exit $rc): '$out'"
fi

# "Hello world" is [15496, 995] in GPT-2's vocabulary.
same_text "gpt2 tokenize finds its tokenizer from another directory" \
    "15496 995" "$(printf 'Hello world' | "$gpt2" tokenize 2>&1)"
cp -a "$prefix" "$tmp/moved"
same_text "gpt2 tokenize works after the prefix is moved (data found beside the program)" \
    "15496 995" "$(printf 'Hello world' | "$tmp/moved/bin/gpt2" tokenize 2>&1)"
rm -rf "$tmp/moved"

check "installed gpt2 init makes a model with the installed tokenizer" \
    "$gpt2" init --n-layer 2 --n-head 2 --n-embd 64 --n-ctx 128 --seed 1 \
    -o "$tmp/model"
check "the model has the tokenizer files" \
    test -f "$tmp/model/vocab.json" -a -f "$tmp/model/merges.txt"

# -------------------------------------------- a program built with pkg-config
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
same_text "pkg-config --modversion gpt2c" "$version" \
    "$(pkg-config --modversion gpt2c 2>&1)"
cp "$repo/examples/generate.c" "$away/prog.c"
prompt="In the beginning"
shared_out=""
cc=${CC:-cc}

# Shared: the plain pkg-config line; the program needs libgpt2.so.0.
check "cc prog.c \$(pkg-config --cflags --libs gpt2c)" \
    $cc -o prog_shared prog.c $(pkg-config --cflags --libs gpt2c)  # split on purpose
if [ -x prog_shared ]; then
    check "prog_shared links libgpt2.so.0" \
        bash -c "readelf -d prog_shared | grep -q 'NEEDED.*libgpt2.so.0'"
    out=$(LD_LIBRARY_PATH=$prefix/lib ./prog_shared "$tmp/model" "$prompt" 2>&1); rc=$?
    shared_out=$out
    if [ $rc = 0 ] && [ ${#out} -gt ${#prompt} ]; then ok "prog_shared generates text"; else
        not_ok "prog_shared generates text (exit $rc)"; printf '%s\n' "$out" | tail -n 10 | sed 's/^/    # /'; fi
fi

# Static: --static adds the private libraries; the archive is named so the
# linker cannot pick the shared library instead.
static_flags=$(pkg-config --cflags --static --libs gpt2c | sed 's/-lgpt2\b/-l:libgpt2.a/')
check "cc prog.c \$(pkg-config --cflags --static --libs gpt2c) with libgpt2.a" \
    $cc -o prog_static prog.c $static_flags
if [ -x prog_static ]; then
    check "prog_static does not need libgpt2.so" \
        bash -c "! readelf -d prog_static | grep -q 'NEEDED.*libgpt2'"
    out=$(./prog_static "$tmp/model" "$prompt" 2>&1); rc=$?
    if [ $rc = 0 ] && [ ${#out} -gt ${#prompt} ]; then ok "prog_static generates text"; else
        not_ok "prog_static generates text (exit $rc)"; printf '%s\n' "$out" | tail -n 10 | sed 's/^/    # /'; fi
    # the same library code, seed and model: the same text
    [ -x prog_shared ] && same_text "static and shared programs print the same text" \
        "$shared_out" "$out"
fi

# ---------------------------------------------------------------- uninstall
cd "$repo" || exit 1
check "make uninstall PREFIX=<tmp>" \
    make --no-print-directory BUILD="$build" PREFIX="$prefix" uninstall
left=$(find "$prefix" -type f -o -type l 2>/dev/null)
same_text "nothing installed is left after uninstall" "" "$left"

if [ $failures = 0 ]; then echo "t_install: all checks passed"; else
    echo "t_install: $failures checks failed"; fi
[ $failures = 0 ]
