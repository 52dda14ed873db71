#!/usr/bin/env bash
# Apply MAGI-rs's RabbitMQ configuration: a vhost, its global exchanges, users in three
# roles (orchestrator, node, tap) with resource and topic permissions, and operator policies
# bounding every queue. Idempotent: run it again to add users, change passwords, or repair
# permissions and limits. See README.md.
#
# Usage: apply.sh [--vhost VHOST] [--prefix PREFIX]
#                 [--orchestrator USER:PASSWORD]... [--tap USER:PASSWORD]...
#                 [--node NAME:PASSWORD]... [--nodes-from FILE] [--cred-dir DIR]
# A node's broker user is its node name. --nodes-from reads one `name` or `name:password`
# per line (# comments and blank lines skipped); a node without a password gets a generated
# one, written to DIR/<name>.cred (mode 0600, one line `name:password`; DIR is --cred-dir,
# default ./node-credentials) so that it can be copied to that node alone. A node whose
# .cred file exists keeps its password.
# The same from the environment (space-separated lists):
#   MAGI_VHOST (default /magi), MAGI_PREFIX (default magi.),
#   MAGI_ORCHESTRATORS, MAGI_NODES, MAGI_TAPS, MAGI_NODES_FROM, MAGI_CRED_DIR.
# RABBITMQCTL names the rabbitmqctl to use (default: rabbitmqctl on the PATH).
set -euo pipefail

vhost="${MAGI_VHOST:-/magi}"
prefix="${MAGI_PREFIX:-magi.}"
read -r -a orchestrators <<<"${MAGI_ORCHESTRATORS:-}"
read -r -a nodes <<<"${MAGI_NODES:-}"
read -r -a taps <<<"${MAGI_TAPS:-}"
nodes_from="${MAGI_NODES_FROM:-}"
cred_dir="${MAGI_CRED_DIR:-./node-credentials}"
ctl="${RABBITMQCTL:-rabbitmqctl}"

die() { echo "apply.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --vhost) vhost="${2:?--vhost needs a value}"; shift 2 ;;
        --prefix) prefix="${2:?--prefix needs a value}"; shift 2 ;;
        --orchestrator) orchestrators+=("${2:?--orchestrator needs USER:PASSWORD}"); shift 2 ;;
        --node) nodes+=("${2:?--node needs NAME:PASSWORD}"); shift 2 ;;
        --nodes-from) nodes_from="${2:?--nodes-from needs a file}"; shift 2 ;;
        --cred-dir) cred_dir="${2:?--cred-dir needs a directory}"; shift 2 ;;
        --tap) taps+=("${2:?--tap needs USER:PASSWORD}"); shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

# User names go into permission regexes and into run names (`<user>.<anything>`); a node's
# user name is its node name, which is also one word of routing keys. So they are kept to
# characters that mean nothing in any of these.
check_user() {
    [[ "$1" =~ ^[A-Za-z0-9_-]+$ ]] || die "user name '$1' must match [A-Za-z0-9_-]+"
}
[[ "$prefix" =~ ^[A-Za-z0-9_.:-]*$ ]] || die "prefix '$prefix' must match [A-Za-z0-9_.:-]*"
p="${prefix//./\\.}"   # the prefix as a regex

q() { "$ctl" -q "$@"; }

split() { user="${1%%:*}"; password="${1#*:}"; [ "$user" != "$1" ] || die "expected USER:PASSWORD, got '$1'"; }

# Passwords of 32 letters and digits (safe inside an amqp:// URL), $1 of them, into the
# array `generated`, from one read of /dev/urandom (a command per password took a fork each:
# seconds for a thousand nodes).
generate_passwords() {
    local all i
    generated=()
    [ "$1" -gt 0 ] || return 0
    all="$(LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c $((32 * $1)) || true)"
    [ "${#all}" -eq $((32 * $1)) ] || die "cannot generate passwords from /dev/urandom"
    for ((i = 0; i < $1; i++)); do generated+=("${all:$((32 * i)):32}"); done
}

# Nodes listed in a file: `name[:password]` per line. The whole file is checked before
# any credential file is written or anything changes on the broker, so a bad line changes
# nothing.
if [ -n "$nodes_from" ]; then
    [ -r "$nodes_from" ] || die "cannot read --nodes-from file $nodes_from"
    listed=()
    lineno=0
    while IFS= read -r line || [ -n "$line" ]; do
        lineno=$((lineno + 1))
        line="${line%%#*}"
        line="${line//[[:space:]]/}"
        [ -n "$line" ] || continue
        name="${line%%:*}"
        [[ "$name" =~ ^[A-Za-z0-9_-]+$ ]] ||
            die "$nodes_from:$lineno: node name '$name' must match [A-Za-z0-9_-]+"
        [ "$name" = "$line" ] || [ -n "${line#*:}" ] ||
            die "$nodes_from:$lineno: empty password for node $name"
        listed+=("$line")
    done <"$nodes_from"
    # Passwords for the nodes that have no credential file yet, generated at once.
    fresh=()
    for line in "${listed[@]}"; do
        name="${line%%:*}"
        [ "$name" != "$line" ] || [ -f "$cred_dir/$name.cred" ] || fresh+=("$name")
    done
    generate_passwords "${#fresh[@]}"
    declare -A fresh_pw=()
    for i in "${!fresh[@]}"; do fresh_pw[${fresh[$i]}]="${generated[$i]}"; done
    old_umask="$(umask)"
    umask 077
    [ "${#fresh[@]}" -eq 0 ] || mkdir -p "$cred_dir"
    for line in "${listed[@]}"; do
        name="${line%%:*}"
        if [ "$name" != "$line" ]; then
            nodes+=("$line")
            continue
        fi
        cred="$cred_dir/$name.cred"
        if [ -n "${fresh_pw[$name]:-}" ]; then
            pw="${fresh_pw[$name]}"
            printf '%s:%s\n' "$name" "$pw" >"$cred"
        else
            first=""
            read -r first <"$cred" || true
            pw="${first#*:}"
            [ -n "$pw" ] && [ "$pw" != "$first" ] || die "$cred: expected one line name:password"
        fi
        nodes+=("$name:$pw")
    done
    umask "$old_umask"
fi

# The vhost (adding an existing one fails harmlessly, so look first).
if ! q list_vhosts name | grep -qxF -- "$vhost"; then
    q add_vhost "$vhost"
fi

# Limits on every queue: operator policies, which no user can lift (where a queue's own
# arguments ask for more, the lower value wins). A full queue drops its oldest messages.
# The numbers and why: README.md, "Queue limits".
limit() { # name pattern max-length max-length-bytes expires-ms priority
    q set_operator_policy -p "$vhost" --apply-to queues --priority "$6" "${prefix}$1" "$2" \
        "{\"max-length\":$3,\"max-length-bytes\":$4,\"expires\":$5}"
}
limit node-limits "^${p}node\\." 10000 134217728 1800000 10
limit run-limits "^${p}run\\." 100000 268435456 1800000 10
limit tap-limits '^amq\.gen-' 10000 67108864 300000 10
# Anything else a role may declare (e.g. an orchestrator's queue named like its groups).
limit other-limits '.*' 1000 16777216 600000 0

# Everything else (the global exchanges, every user, its permissions and topic
# permissions) goes to the broker in one definitions file: one `rabbitmqctl` for any
# number of users, where a command per setting took minutes for 55 nodes.
declare -A existing=()
while read -r name _; do existing[$name]=1; done < <(q list_users)
# JSON string of $1, into J (no subshell: these run a few times per user).
js() { local s="${1//\\/\\\\}"; J="\"${s//\"/\\\"}\""; }
js "$vhost"; vj=$J
users=() passwords=() permissions=() topics=() stale=()

# A user with this password exists afterwards, with no tags (no management access). A user
# that existed loses its old topic permissions first (re-running with another prefix).
ensure_user() {
    check_user "$1"
    [ -n "$2" ] || die "user $1 needs a password (USER:PASSWORD)"
    users+=("$1")
    passwords+=("$2")
    [ -z "${existing[$1]:-}" ] || stale+=("$1")
}
# One JSON object of four string fields and the vhost (names $1 $3 $5 $7, values $2 $4 $6
# $8), into J.
quad() {
    local a b c d
    js "$2"; a=$J; js "$4"; b=$J; js "$6"; c=$J; js "$8"; d=$J
    J="{\"$1\":$a,\"vhost\":$vj,\"$3\":$b,\"$5\":$c,\"$7\":$d}"
}
permit() { # user configure write read
    quad user "$1" configure "$2" write "$3" read "$4"; permissions+=("$J")
}
topic() { # user exchange write read
    quad user "$1" exchange "$2" write "$3" read "$4"; topics+=("$J")
}

for entry in "${orchestrators[@]}"; do
    split "$entry"
    ensure_user "$user" "$password"
    u="$user"
    # Its runs are named <user>.<anything>: queue run.<user>:..., groups group.<user>:...
    permit "$u" \
        "^${p}(run|group)\\.${u}:.*\$" \
        "^${p}(calls|nodes|watch|run\\.${u}:.*)\$" \
        "^${p}(triggers|status|run\\.${u}:.*)\$"
    # Routing keys start with the run's word (<user>:...): publish and bind only its own.
    topic "$u" "${prefix}calls" "^{username}:" "^{username}:"
    topic "$u" "${prefix}nodes" "^{username}:" "^{username}:"
    topic "$u" "${prefix}watch" "^{username}:[^.]*\\.call\$" "^{username}:"
    topic "$u" "${prefix}triggers" "^\$" "^{username}:"
done

for entry in "${nodes[@]}"; do
    split "$entry"
    ensure_user "$user" "$password"
    n="$user"
    # A node agent serves every run (nodes are shared by orchestrators) but only as itself:
    # its own queue (and, on a cluster, its lock queue node.<n>.lock); the group exchanges
    # it joins (declared on join, bound to `calls`); triggers, records, statuses and their
    # tap copies.
    permit "$n" \
        "^${p}(node\\.${n}(\\.lock)?|group\\..*)\$" \
        "^${p}(node\\.${n}|group\\..*|triggers|watch|status)\$" \
        "^${p}(node\\.${n}|group\\..*|calls|nodes)\$"
    # Triggers and records under its own name only (<run>.trigger.<node>, <run>.record.<node>).
    topic "$n" "${prefix}triggers" "^[^.]+\\.(trigger|record)\\.{username}\$" "^\$"
    # Its own status only.
    topic "$n" "${prefix}status" "^{username}\$" "^\$"
    # In the tap stream it may only speak of triggers and records, never of calls.
    topic "$n" "${prefix}watch" "^[^.]+\\.(trigger|record)\$" "^\$"
    # Bindings: a group exchange under exactly one run and group (<run>.<group>, no `*` or
    # `#`, which a word never contains), and its queue to its own node calls (*.<node>).
    topic "$n" "${prefix}calls" "^\$" "^[^.*#]+\\.[^.*#]+\$"
    topic "$n" "${prefix}nodes" "^\$" "^\\*\\.{username}\$"
done

for entry in "${taps[@]}"; do
    split "$entry"
    ensure_user "$user" "$password"
    # Server-named queues only (amq.gen-..., which no client can use for an exchange): no
    # exchange to declare, nothing to publish to. Reads the tap copies and statuses.
    permit "$user" \
        '^amq\.gen-.*$' \
        '^amq\.gen-.*$' \
        "^(amq\\.gen-.*|${p}(watch|status))\$"
done

# Password hashes as the broker keeps them (rabbit_password_hashing_sha256: base64 of a
# 4-byte salt followed by SHA-256 of salt + password), so that no password is written to
# the definitions file. One hash per line, passwords read from stdin (never arguments).
hashes=()
if [ "${#users[@]}" -gt 0 ]; then
    command -v python3 >/dev/null || die "python3 is needed to hash the users' passwords"
    mapfile -t hashes < <(printf '%s\n' "${passwords[@]}" | python3 -c '
import base64, hashlib, os, sys
for line in sys.stdin.read().split("\n")[:-1]:
    salt = os.urandom(4)
    print(base64.b64encode(salt + hashlib.sha256(salt + line.encode()).digest()).decode())
')
    [ "${#hashes[@]}" -eq "${#users[@]}" ] || die "hashing the passwords failed"
fi

# Users that existed lose their old topic permissions (all of them in one command).
if [ "${#stale[@]}" -gt 0 ]; then
    list=""
    for u in "${stale[@]}"; do list+="${list:+,}<<\"$u\">>"; done
    ev="${vhost//\\/\\\\}"
    ev="${ev//\"/\\\"}"
    q eval "[rabbit_auth_backend_internal:clear_topic_permissions(U, <<\"$ev\"/utf8>>, <<\"apply.sh\">>) || U <- [$list]], ok." >/dev/null
fi

defs="$(mktemp)"
trap 'rm -f "$defs"' EXIT
chmod 644 "$defs" # read by the broker, which runs as another user
join() { local IFS=,; printf '%s' "$*"; }
exchanges=()
# The five global exchanges: durable topic exchanges, declared here so that no client role
# needs the right to configure (hence delete) them. Clients only check them passively.
for x in calls nodes triggers status watch; do
    js "$prefix$x"
    exchanges+=("{\"name\":$J,\"vhost\":$vj,\"type\":\"topic\",\"durable\":true,\"auto_delete\":false,\"internal\":false,\"arguments\":{}}")
done
user_defs=()
for i in "${!users[@]}"; do
    js "${users[$i]}"; name=$J; js "${hashes[$i]}"
    user_defs+=("{\"name\":$name,\"password_hash\":$J,\"hashing_algorithm\":\"rabbit_password_hashing_sha256\",\"tags\":[]}")
done
printf '{"exchanges":[%s],"users":[%s],"permissions":[%s],"topic_permissions":[%s]}\n' \
    "$(join "${exchanges[@]}")" "$(join "${user_defs[@]}")" \
    "$(join "${permissions[@]}")" "$(join "${topics[@]}")" >"$defs"
q import_definitions "$defs" >/dev/null

echo "apply.sh: vhost $vhost ready (prefix $prefix): ${#orchestrators[@]} orchestrator(s), ${#nodes[@]} node(s), ${#taps[@]} tap(s)"
