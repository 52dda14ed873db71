#!/usr/bin/env bash
# Apply MAGI-rs's RabbitMQ configuration: a vhost, its global exchanges, and users in three
# roles (orchestrator, node, tap) with resource and topic permissions. Idempotent: run it
# again to add users, change passwords, or repair permissions. See README.md.
#
# Usage: apply.sh [--vhost VHOST] [--prefix PREFIX]
#                 [--orchestrator USER:PASSWORD]... [--node USER:PASSWORD]... [--tap USER:PASSWORD]...
# The same from the environment (space-separated USER:PASSWORD lists):
#   MAGI_VHOST (default /magi), MAGI_PREFIX (default magi.),
#   MAGI_ORCHESTRATORS, MAGI_NODES, MAGI_TAPS.
# RABBITMQCTL names the rabbitmqctl to use (default: rabbitmqctl on the PATH).
set -euo pipefail

vhost="${MAGI_VHOST:-/magi}"
prefix="${MAGI_PREFIX:-magi.}"
read -r -a orchestrators <<<"${MAGI_ORCHESTRATORS:-}"
read -r -a nodes <<<"${MAGI_NODES:-}"
read -r -a taps <<<"${MAGI_TAPS:-}"
ctl="${RABBITMQCTL:-rabbitmqctl}"

die() { echo "apply.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --vhost) vhost="${2:?--vhost needs a value}"; shift 2 ;;
        --prefix) prefix="${2:?--prefix needs a value}"; shift 2 ;;
        --orchestrator) orchestrators+=("${2:?--orchestrator needs USER:PASSWORD}"); shift 2 ;;
        --node) nodes+=("${2:?--node needs USER:PASSWORD}"); shift 2 ;;
        --tap) taps+=("${2:?--tap needs USER:PASSWORD}"); shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

# User names go into permission regexes and into run names (`<user>.<anything>`), so they
# are kept to characters that mean nothing in either.
check_user() {
    [[ "$1" =~ ^[A-Za-z0-9_-]+$ ]] || die "user name '$1' must match [A-Za-z0-9_-]+"
}
[[ "$prefix" =~ ^[A-Za-z0-9_.:-]*$ ]] || die "prefix '$prefix' must match [A-Za-z0-9_.:-]*"
p="${prefix//./\\.}"   # the prefix as a regex

q() { "$ctl" -q "$@"; }

# The vhost (adding an existing one fails harmlessly, so look first).
if ! q list_vhosts name | grep -qxF -- "$vhost"; then
    q add_vhost "$vhost"
fi

# The five global exchanges: durable topic exchanges, declared here so that no client role
# needs the right to configure (hence delete) them. Clients only check them passively.
defs="$(mktemp)"
trap 'rm -f "$defs"' EXIT
chmod 644 "$defs" # read by the broker, which runs as another user
vhost_json="$(printf '%s' "$vhost" | sed 's/\\/\\\\/g; s/"/\\"/g')"
{
    printf '{"exchanges":['
    sep=""
    for x in calls nodes triggers status watch; do
        printf '%s{"name":"%s%s","vhost":"%s","type":"topic","durable":true,"auto_delete":false,"internal":false,"arguments":{}}' \
            "$sep" "$prefix" "$x" "$vhost_json"
        sep=","
    done
    printf ']}\n'
} >"$defs"
q import_definitions "$defs" >/dev/null

existing_users="$(q list_users | awk '{print $1}')"

# A user with this password exists afterwards, with no tags (no management access).
ensure_user() {
    local user="$1" password="$2"
    check_user "$user"
    [ -n "$password" ] || die "user $user needs a password (USER:PASSWORD)"
    if grep -qxF -- "$user" <<<"$existing_users"; then
        q change_password "$user" "$password"
    else
        q add_user "$user" "$password"
    fi
    q set_user_tags "$user"
}

split() { user="${1%%:*}"; password="${1#*:}"; [ "$user" != "$1" ] || die "expected USER:PASSWORD, got '$1'"; }

for entry in "${orchestrators[@]}"; do
    split "$entry"
    ensure_user "$user" "$password"
    u="$user"
    # Its runs are named <user>.<anything>: queue run.<user>:..., groups group.<user>:...
    q set_permissions -p "$vhost" "$u" \
        "^${p}(run|group)\\.${u}:.*\$" \
        "^${p}(calls|nodes|watch|run\\.${u}:.*)\$" \
        "^${p}(triggers|status|run\\.${u}:.*)\$"
    # Routing keys start with the run's word (<user>:...): publish and bind only its own.
    q clear_topic_permissions -p "$vhost" "$u"
    q set_topic_permissions -p "$vhost" "$u" "${prefix}calls" "^{username}:" "^{username}:"
    q set_topic_permissions -p "$vhost" "$u" "${prefix}nodes" "^{username}:" "^{username}:"
    q set_topic_permissions -p "$vhost" "$u" "${prefix}watch" "^{username}:[^.]*\\.call\$" "^{username}:"
    q set_topic_permissions -p "$vhost" "$u" "${prefix}triggers" "^\$" "^{username}:"
done

for entry in "${nodes[@]}"; do
    split "$entry"
    ensure_user "$user" "$password"
    # A node agent serves every run: its queue, any group's exchange (declared on join),
    # triggers, records, statuses and their tap copies.
    q set_permissions -p "$vhost" "$user" \
        "^${p}(node|group)\\..*\$" \
        "^${p}(node\\..*|group\\..*|triggers|watch|status)\$" \
        "^${p}(node\\..*|group\\..*|calls|nodes)\$"
    # In the tap stream a node may only speak of triggers and records, never of calls.
    q clear_topic_permissions -p "$vhost" "$user"
    q set_topic_permissions -p "$vhost" "$user" "${prefix}watch" "^[^.]*\\.(trigger|record)\$" "^\$"
done

for entry in "${taps[@]}"; do
    split "$entry"
    ensure_user "$user" "$password"
    # Its own queues only; reads the tap copies and statuses; writes to no exchange.
    q set_permissions -p "$vhost" "$user" \
        "^${p}tap\\..*\$" \
        "^${p}tap\\..*\$" \
        "^${p}(tap\\..*|watch|status)\$"
    q clear_topic_permissions -p "$vhost" "$user"
done

echo "apply.sh: vhost $vhost ready (prefix $prefix): ${#orchestrators[@]} orchestrator(s), ${#nodes[@]} node(s), ${#taps[@]} tap(s)"
