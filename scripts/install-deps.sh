#!/usr/bin/env bash
# install-deps.sh [--test]: installs what gpt2c needs from Debian's packages.
#
#   (no flag)  to build and run: compiler, make, pkg-config, PCRE2, cJSON, zlib and,
#              where the architecture has it, oneDNN (without it the Makefile
#              uses gpt2c's portable GEMM).
#   --test     also what the tests need: PyTorch and NumPy (reference tests),
#              clang with its sanitizer and libFuzzer runtimes, the KJV text,
#              node + npm (gpt-3-encoder, the independent tokenizer oracle,
#              installed into tests/tokenizer/node_modules), chromium and
#              playwright-core, which drives it in the browser test
#              (into tests/browser/node_modules).
#
# Idempotent: asks dpkg what is missing, and only then runs apt-get update
# and apt-get install. Runs apt as root, or through sudo.
set -euo pipefail

cd "$(dirname "$0")/.."

want_test=0
for arg in "$@"; do
    case "$arg" in
        --test) want_test=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "install-deps.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

say()  { echo "install-deps: $*"; }
die()  { echo "install-deps: error: $*" >&2; exit 1; }

base_pkgs=(gcc make pkg-config libpcre2-dev libcjson-dev zlib1g-dev)
test_pkgs=(python3-torch python3-numpy clang libclang-rt-14-dev bible-kjv
           nodejs npm chromium)
# Debian builds oneDNN on these architectures only.
dnnl_arches=" amd64 arm64 ppc64el "

# Root runs apt directly; anyone else goes through sudo.
as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root to run '$*' (run as root or install sudo)"
    fi
}

is_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# Some programs may come from outside Debian (NodeSource's nodejs bundles npm
# and conflicts with Debian's npm package): the program on PATH is enough.
provided_by_program() {
    case "$1" in
        nodejs)   command -v node >/dev/null ;;
        npm)      command -v npm >/dev/null ;;
        chromium) command -v chromium >/dev/null ||
                  command -v chromium-browser >/dev/null ;;
        *) return 1 ;;
    esac
}

missing=()
check() {
    local p
    for p in "$@"; do
        if is_installed "$p" || provided_by_program "$p"; then continue; fi
        missing+=("$p")
    done
}

command -v dpkg-query >/dev/null || die "dpkg-query not found: this script is for Debian and its derivatives"

check "${base_pkgs[@]}"
arch=$(dpkg --print-architecture)
want_dnnl=0
if ! is_installed libdnnl-dev && [[ "$dnnl_arches" == *" $arch "* ]]; then
    want_dnnl=1
fi
[ $want_test = 1 ] && check "${test_pkgs[@]}"

export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ] || [ $want_dnnl = 1 ]; then
    say "apt-get update"
    as_root apt-get update -q || die "apt-get update failed"
    if [ $want_dnnl = 1 ]; then
        if apt-cache show libdnnl-dev >/dev/null 2>&1; then
            missing+=(libdnnl-dev)
        else
            say "libdnnl-dev is not available on $arch: the portable GEMM will be used"
        fi
    fi
fi
if [ ${#missing[@]} -gt 0 ]; then
    say "installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" ||
        die "apt-get install ${missing[*]} failed"
    for p in "${missing[@]}"; do
        is_installed "$p" || provided_by_program "$p" ||
            die "$p is still not installed after apt-get install"
    done
else
    say "Debian packages: all present"
fi

[ $want_test = 1 ] || exit 0

# npm packages, project-local: each directory's package.json pins them
# (tests/tokenizer: gpt-3-encoder; tests/browser: playwright-core).
# Complete when every dependency named in package.json has its package.json.
npm_complete() {
    node -e '
        const fs = require("fs"), path = require("path");
        const dir = process.argv[1];
        const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json")));
        const deps = Object.keys(Object.assign({}, pkg.dependencies, pkg.devDependencies));
        const lost = deps.filter(d => !fs.existsSync(path.join(dir, "node_modules", d, "package.json")));
        process.exit(lost.length ? 1 : 0);
    ' "$1"
}
npm_install() {
    local npm_dir=$1 npm_cmd
    if [ ! -f "$npm_dir/package.json" ]; then
        say "no $npm_dir/package.json: no npm packages to install"
        return 0
    fi
    if npm_complete "$npm_dir"; then
        say "npm packages in $npm_dir/node_modules: all present"
        return 0
    fi
    # With a lock file, install exactly it; without, write none into the tree.
    if [ -f "$npm_dir/package-lock.json" ]; then
        npm_cmd=(npm ci --prefix "$npm_dir" --no-audit --no-fund)
    else
        npm_cmd=(npm install --prefix "$npm_dir" --no-package-lock --no-audit --no-fund)
    fi
    say "${npm_cmd[*]}"
    "${npm_cmd[@]}" || die "${npm_cmd[*]} failed"
    npm_complete "$npm_dir" || die "npm packages still missing in $npm_dir/node_modules"
}
for npm_dir in tests/tokenizer tests/browser; do
    npm_install "$npm_dir"
done
