# lib.sh: the argument helpers of the project's shell scripts (bench/compare, bench/race99,
# bench/serve-load, scripts/ensemble), sourced once prog is set. A script's usage is its
# header comment, from line 2 to the line that starts "# Exit status".
# shellcheck shell=bash

usage() { sed -n '2,/^# Exit status/s/^# \{0,1\}//p' "$0"; }

# die MESSAGE: a step failed; exit 1
die() {
    echo "$prog: error: $*" >&2
    exit 1
}

# usage_error MESSAGE: one line naming the problem, then the usage, on stderr; exit 2
usage_error() {
    echo "$prog: $1" >&2
    usage >&2
    exit 2
}

# need_value FLAG ARGC: the flag (with ARGC = $# words left, itself included) has a value
need_value() { [ "$2" -ge 2 ] || usage_error "$1 needs a value"; }

# posint FLAG VALUE [MAX]: VALUE is a whole number in 1..MAX (default 999999999), or exit 2
posint() {
    local max=${3:-999999999}
    [[ $2 =~ ^[1-9][0-9]{0,8}$ ]] && [ "$2" -le "$max" ] ||
        usage_error "$1 wants a whole number in 1..$max, not '$2'"
}
