# Sourced by scripts/test and scripts/bench: ensure_rabbitmq starts the local RabbitMQ when
# it is not running and waits until it serves.
#
# `rabbitmqctl await_startup` fails at once while the Erlang node is still booting ("node
# not running at all"), so the wait polls it until a deadline. The broker is started with
# a raised open-file limit (65536): Debian's rabbitmq-server resets it to 1024 through `su`;
# a benchmark's thousand connections need more, and a broker recovering more queues than it
# has file handles hangs (docs/deploy.md, LimitNOFILE). It is started
# with its own session (setsid) so that it outlives the shell that started it.
#
# Its callers run under `set -e`: no command here may fail but the wait (a failed `ulimit`
# in a subshell once ended CI after one second, with the broker never started).
ensure_rabbitmq() {
  # The server to start; a test points it elsewhere (testkit/tests/start_script.rs).
  local server="${MAGI_RABBITMQ_SERVER:-/usr/lib/rabbitmq/bin/rabbitmq-server}"
  if rabbitmqctl -q status >/dev/null 2>&1; then
    return 0
  fi
  echo "starting RabbitMQ" >&2
  if [ "$(id -u)" = 0 ] && [ -x "$server" ] && id rabbitmq >/dev/null 2>&1; then
    (ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
      cd /var/lib/rabbitmq && setsid runuser -u rabbitmq -- env HOME=/var/lib/rabbitmq sh -c \
      'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" -detached' "$server" \
      </dev/null >/dev/null 2>&1) || true
  else
    setsid rabbitmq-server -detached </dev/null >/dev/null 2>&1 || true
  fi
  local wait="${MAGI_RABBITMQ_WAIT:-120}"
  local deadline=$((SECONDS + wait))
  until rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "RabbitMQ did not start within $wait s; the end of its log:" >&2
      tail -n 30 /var/log/rabbitmq/*.log >&2 2>/dev/null || true
      return 1
    fi
    sleep 1
  done
}
