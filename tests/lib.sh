# shellcheck shell=bash
# tests/lib.sh: the harness every tests/t_*.sh shares. Each sources it first:
#
#   . "$(dirname "$0")/lib.sh"
#
# and is then in the repository root (BUILD is relative to it), with
#   BUILD      the build directory under test (default build; run_all.sh
#              sets it, e.g. BUILD=build-asan)
#   G          the gpt2 program in it
#   PY         Debian's python3, which has torch and numpy (the first python3
#              on PATH may lack them); a script may set its own after this
#   test_name  the script's name without .sh, for its summary line
#   tmp        a temporary directory of its own, removed at exit
# and the functions below. Output is TAP-like: "ok - NAME" or "not ok -
# NAME", details indented as "    # ..."; run_all.sh goes by the exit status.
# Not a test itself: run_all.sh runs tests/t_*.sh only.

set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

BUILD=${BUILD:-build}
G="$BUILD/gpt2"
# shellcheck disable=SC2034 # for the scripts that source this
PY=/usr/bin/python3
test_name=$(basename "$0" .sh)
# mktemp's default name: messages that show a path under it are cut to a
# width, and a longer name would cut them elsewhere
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

n_checks=0
n_failed=0
# a script may set these after sourcing: how many lines of a failure's
# details to show, and what its summary line starts with
fail_detail_lines=15
summary_prefix="$test_name: "

pass() { n_checks=$((n_checks + 1)); echo "ok - $1"; }
fail() { # fail NAME [DETAILS]
    n_checks=$((n_checks + 1))
    n_failed=$((n_failed + 1))
    echo "not ok - $1"
    if [ -n "${2:-}" ]; then
        printf '%s\n' "$2" | head -n "$fail_detail_lines" | sed 's/^/    # /'
    fi
}

# finish: prints the summary line, "<summary_prefix><N> checks, <M> failed",
# and exits, non-zero after a failure. Also the way out of a script that
# cannot go on.
finish() {
    echo "$summary_prefix$n_checks checks, $n_failed failed"
    [ "$n_failed" = 0 ]
    exit
}

# need_gpt2: stops with a failure when $G has not been built.
need_gpt2() {
    if [ ! -x "$G" ]; then
        echo "not ok - $G is not built (make)"
        exit 1
    fi
}

check() { # check NAME TEST...: passes when the test command succeeds
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name" "$(tail -n 5 "$tmp/err" 2>/dev/null)"; fi
}

# run CMD...: runs with stdout in $tmp/out, stderr in $tmp/err, stdin from
# $STDIN (default /dev/null); sets rc. A sanitizer report is a failure of
# its own, whatever the exit code (ASan exits 1, like a runtime error). A
# command that hangs is stopped after $CMD_TIMEOUT seconds (exit 124).
run() {
    timeout -k 5 "${CMD_TIMEOUT:-300}" "$@" < "${STDIN:-/dev/null}" \
        > "$tmp/out" 2> "$tmp/err"
    rc=$?
    if grep -qE 'Sanitizer|runtime error:' "$tmp/err"; then
        fail "no sanitizer report: $*" "$(grep -A 12 -E 'Sanitizer|runtime error:' "$tmp/err")"
    fi
    return $rc
}

# expect_error NAME CMD...: exit 1 or 2, a "gpt2 <cmd>: ..." message on
# stderr, and no crash (exit >= 128 is a signal).
expect_error() {
    local name=$1
    shift
    run "$@"
    if { [ $rc = 1 ] || [ $rc = 2 ]; } && grep -q '^gpt2' "$tmp/err"; then
        pass "$name (exit $rc: $(head -n 1 "$tmp/err" | cut -c1-90))"
    else
        fail "$name: exit $rc" "$(cat "$tmp/err")"
    fi
}
