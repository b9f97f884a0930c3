#!/usr/bin/env bash
# `make demo` (run after `make install`): the compose demo app on a local engine.
#
#   1. start a dockyardd (data root /var/lib/dockyard-demo, socket /run/dockyard-demo/dockyard.sock,
#      pidfile /run/dockyard-demo/dockyardd.pid), or reuse the one already running there;
#   2. bootstrap the offline busybox base image into it (`dockyard image bootstrap busybox`);
#   3. `dockyard compose up -d --wait` examples/compose-demo (builds FROM busybox, no network);
#   4. prove it works with real HTTP requests to 127.0.0.1, show `compose ps`, say how to tear down.
#
# Running it again converges: nothing is recreated (compose prints "Running").
# DEMO_ENGINE=podman runs the same app against podman's Docker-compatible API service instead
# (socket /run/dockyard-demo/podman.sock).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/.venv
DY=$VENV/bin/dockyard
DYD=$VENV/bin/dockyardd
APP=$ROOT/examples/compose-demo
ENGINE=${DEMO_ENGINE:-dockyardd}
DATA=/var/lib/dockyard-demo
EXEC=/run/dockyard-demo
# Port and greeting come from examples/compose-demo/.env; the shell environment wins over it.
PORT=${DEMO_PORT:-$(sed -n 's/^DEMO_PORT=//p' "$APP/.env")}

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\n\033[31mdemo: %s\033[0m\n' "$1" >&2; exit "${2:-1}"; }

[ -x "$DY" ] || die "$DY is missing: run 'make install' first"

ping_sock() {  # ping_sock SOCKET -> 0 when an engine answers /_ping on it
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(2)
try:
    s.connect(sys.argv[1]); s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
    sys.exit(0 if s.recv(64).split(b" ")[1:2] == [b"200"] else 1)
except OSError:
    sys.exit(1)
PY
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_sock() {  # wait_sock SOCKET PID LOG
  for _ in $(seq 1 100); do
    ping_sock "$1" && return 0
    kill -0 "$2" 2>/dev/null || { tail -n 30 "$3" >&2 || true; die "the engine exited during start-up (log: $3)"; }
    sleep 0.1
  done
  die "the engine did not answer on $1 within 10s (log: $3)"
}

mkdir -p "$DATA" "$EXEC"
case "$ENGINE" in
dockyardd)
  SOCK=$EXEC/dockyard.sock
  PIDFILE=$EXEC/dockyardd.pid
  LOG=$DATA/dockyardd.log
  if alive "$PIDFILE" && ping_sock "$SOCK"; then
    say "reusing dockyardd (pid $(cat "$PIDFILE")) on unix://$SOCK"
  else
    say "starting dockyardd: data root $DATA, socket unix://$SOCK"
    [ -x "$DYD" ] || die "$DYD is missing: run 'make install' first"
    setsid "$DYD" --data-root "$DATA" --exec-root "$EXEC" --pidfile "$PIDFILE" \
      -H "unix://$SOCK" >>"$LOG" 2>&1 < /dev/null &
    wait_sock "$SOCK" $! "$LOG"
    echo "dockyardd pid $(cat "$PIDFILE"), log $LOG"
  fi
  HOST=unix://$SOCK
  STOP_ENGINE="kill \$(cat $PIDFILE)"

  say "bootstrapping the offline busybox image"
  if ! "$DY" -H "$HOST" image bootstrap --help >/dev/null 2>&1; then
    die "'dockyard image bootstrap' is not available yet (the image plugin is still being built), so
      dockyardd has no busybox base image to build the demo FROM. Nothing was created.
      The same demo runs today against podman's API service:  DEMO_ENGINE=podman bash examples/demo.sh
      dockyardd ($HOST) is left running; stop it with: $STOP_ENGINE" 2
  fi
  "$DY" -H "$HOST" image bootstrap busybox
  ;;
podman)
  command -v podman >/dev/null || die "podman is not installed (run: bash shared/peers/setup-peers.sh)"
  SOCK=$EXEC/podman.sock
  PIDFILE=$EXEC/podman-service.pid
  LOG=$DATA/podman-service.log
  if alive "$PIDFILE" && ping_sock "$SOCK"; then
    say "reusing podman's API service (pid $(cat "$PIDFILE")) on unix://$SOCK"
  else
    say "starting podman's API service on unix://$SOCK"
    rm -f "$SOCK"
    setsid podman system service --time=0 "unix://$SOCK" >>"$LOG" 2>&1 < /dev/null &
    echo $! > "$PIDFILE"
    wait_sock "$SOCK" $! "$LOG"
  fi
  HOST=unix://$SOCK
  STOP_ENGINE="kill \$(cat $PIDFILE)"
  podman image exists docker.io/library/busybox:latest \
    || die "podman has no offline busybox image: run 'bash shared/peers/setup-peers.sh' (it imports one)"
  ;;
*) die "DEMO_ENGINE must be dockyardd or podman, not '$ENGINE'" ;;
esac

COMPOSE=("$DY" -H "$HOST" compose --project-directory "$APP" -f "$APP/compose.yaml")

# The demo's images are built FROM busybox by the engine (POST /build). An engine without a
# builder answers 404 there: say so before creating anything. (An empty body is not a valid
# context, so an engine that has the endpoint answers 4xx/5xx other than 404, or 200 with an
# error line, and builds nothing.)
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" -X POST \
  -H 'Content-Type: application/x-tar' "http://localhost/v1.41/build?t=dockyard-demo-probe:none" \
  --data-binary @/dev/null || true)
if [ "$code" = 404 ]; then
  die "$ENGINE at $HOST has no image builder (POST /build answered 404; for dockyardd the
      dockyard-builder plugin provides it), so the demo's Dockerfiles (FROM busybox) cannot be
      built there. Nothing was created.
      The same demo runs today against podman's API service:  DEMO_ENGINE=podman bash examples/demo.sh
      $ENGINE is left running; stop it with: $STOP_ENGINE" 3
fi

say "dockyard compose up -d --wait   (a second run converges: containers stay 'Running')"
"${COMPOSE[@]}" up -d --wait || die "compose up failed against $ENGINE ($HOST): see the error above.
      Tear down what was created with: ${COMPOSE[*]} down -v"

say "proving it works: two HTTP requests to http://127.0.0.1:$PORT/cgi-bin/visits"
for i in 1 2; do
  body=$(curl -fsS --max-time 5 "http://127.0.0.1:$PORT/cgi-bin/visits") \
    || die "the request to 127.0.0.1:$PORT failed"
  echo "--- request $i"
  echo "$body"
done
first=$(curl -fsS --max-time 5 "http://127.0.0.1:$PORT/cgi-bin/visits" | sed -n 's/^visits: //p')
second=$(curl -fsS --max-time 5 "http://127.0.0.1:$PORT/cgi-bin/visits" | sed -n 's/^visits: //p')
[ "$second" -eq $((first + 1)) ] || die "the visit counter did not advance ($first -> $second)"
echo "--- the counter on the named volume advances: $first -> $second"

say "dockyard compose ps"
"${COMPOSE[@]}" ps

say "done. To tear it down:"
echo "  ${COMPOSE[*]} down -v      # containers, networks and the visits volume"
echo "  $STOP_ENGINE               # the $ENGINE engine"
