#!/usr/bin/env bash
# `make demo-cluster` (run after `make install`, as root): Swarm classic on dockyard.
#
#   1. a private dockyardd that makes machines (data root /var/lib/dockyard-cluster-demo);
#   2. a netns host `store` running etcd (Debian's etcd-server, `dockyard swarm etcd start`),
#      three netns hosts made with `dockyard machine create --swarm --swarm-discovery etcd://...`
#      (h1 also --swarm-master: its engine runs the manager on tcp://H1:3376, as docker-machine's);
#   3. the compose app of examples/cluster-demo spread over the nodes, through the manager;
#   4. one node's dockyardd killed (SIGKILL): its rescheduling containers run elsewhere, timed;
#   5. the node back: it rejoins, the stale copies are removed from it;
#   6. everything torn down (also on failure or Ctrl-C), and checked gone.
# Every docker command is the real docker CLI, pointed at the manager by
# `eval $(dockyard machine env --swarm h1)`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=$ROOT/.venv
DY=$VENV/bin/dockyard
DYD=$VENV/bin/dockyardd
APP=$ROOT/examples/cluster-demo
DATA=/var/lib/dockyard-cluster-demo
EXEC=/run/dockyard-cluster-demo
SOCK=$EXEC/dockyard.sock
LOCAL=(-H "unix://$SOCK")
START=$(date +%s.%N)

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
proof() { printf '\033[32m    proves: %s\033[0m\n' "$*"; }
die() { printf '\n\033[31mdemo: %s\033[0m\n' "$1" >&2; exit "${2:-1}"; }
elapsed() { python3 -c "import time,sys; print(f'{time.time()-float(sys.argv[1]):.1f}')" "$1"; }

[ "$(id -u)" = 0 ] || die "the cluster demo makes network namespaces: run it as root"
[ -x "$DY" ] || die "$DY is missing: run 'make install' first"
command -v docker >/dev/null || die "the docker CLI is not installed"
command -v etcd >/dev/null || die "etcd is not installed (apt-get install etcd-server)"
[ -e "$SOCK" ] && die "$SOCK exists: is another cluster demo running? (stop it, or remove $EXEC and $DATA)"

MANAGER_UP=""
DAEMON_PID=""
NAMESPACES=""
cleanup() {
  status=$?
  trap - EXIT INT TERM
  say "tearing everything down"
  if [ -n "$MANAGER_UP" ]; then
    (swarm_env; "$DY" compose -p cluster-demo -f "$APP/compose.yaml" down -t 0 >/dev/null 2>&1) || true
  fi
  "$DY" swarm etcd stop --data-dir "$DATA/etcd" >/dev/null 2>&1 || true
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    "$DY" "${LOCAL[@]}" machine rm -f -y h1 h2 h3 store >/dev/null 2>&1 || true
    kill "$DAEMON_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$DATA" "$EXEC"
  left=0
  for ns in $NAMESPACES; do ip netns list 2>/dev/null | grep -qw -- "$ns" && left=$((left + 1)); done
  echo "left behind: $left of the demo's network namespaces ($NAMESPACES), $(pgrep -fc -- "$DATA" || true) processes naming $DATA"
  echo "demo took $(elapsed "$START") s, exit status $status"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ 1. the machine maker
SUBNET=$("$VENV/bin/python" -c "
from dockyard_plugin_sdk.conformance.network import free_test_subnet
print(free_test_subnet('10.247.0.0/16', 24))")
mkdir -p "$DATA" "$EXEC"
printf '{"provision-opts": ["subnet=%s"]}\n' "$SUBNET" > "$DATA/daemon.json"
say "starting a dockyardd that makes machines (netns hosts on $SUBNET)"
setsid "$DYD" --config-file "$DATA/daemon.json" --data-root "$DATA/root" --exec-root "$EXEC/root" \
  --pidfile "$EXEC/dockyardd.pid" "${LOCAL[@]}" >>"$DATA/dockyardd.log" 2>&1 </dev/null &
DAEMON_PID=$!
for _ in $(seq 100); do "$DY" "${LOCAL[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
"$DY" "${LOCAL[@]}" version >/dev/null || die "dockyardd did not answer (log: $DATA/dockyardd.log)"

# ------------------------------------------------------------------ 2. etcd, hosts, manager
machine_field() {  # machine_field NAME KEY -> a field of `machine inspect NAME`'s Driver
  "$DY" "${LOCAL[@]}" machine inspect "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['Driver']['$2'])"
}
node_env() { eval "$("$DY" "${LOCAL[@]}" machine env "$1")"; }
swarm_env() { eval "$("$DY" "${LOCAL[@]}" machine env --swarm h1)"; }

say "dockyard machine create store   (a host for the cluster store)"
"$DY" "${LOCAL[@]}" machine create -d netns store | tail -n 1
STORE=$(machine_field store IPAddress)
ETCD_URL="etcd://$STORE:2379/cluster-demo"
MACHINES=$DATA/root/machines/machines
SM=$MACHINES/store
say "dockyard swarm etcd start --listen $STORE:2379 --tlscacert ... (Debian's etcd inside the store host, mutual TLS)"
ip netns exec "$(machine_field store Netns)" "$DY" swarm etcd start --data-dir "$DATA/etcd" --listen "$STORE:2379" \
  --tlscacert "$SM/ca.pem" --tlscert "$SM/server.pem" --tlskey "$SM/server-key.pem"
# every client of etcd presents the machines' client certificate (as the docker CLI does to the engines)
KV=(--cluster-store-opt "kv.cacertfile=$SM/ca.pem" --cluster-store-opt "kv.certfile=$SM/cert.pem"
    --cluster-store-opt "kv.keyfile=$SM/key.pem")
ENGINE_KV=(--engine-opt "cluster-store-opt=kv.cacertfile=$SM/ca.pem" --engine-opt "cluster-store-opt=kv.certfile=$SM/cert.pem"
           --engine-opt "cluster-store-opt=kv.keyfile=$SM/key.pem")
proof "the cluster's state lives in etcd, reached by every host over the hosts' bridge with mutual TLS (the machines' CA)"

say "dockyard machine create --swarm [--swarm-master] --swarm-discovery $ETCD_URL h1 h2 h3   (in parallel)"
for h in h1 h2 h3; do
  master=(); [ "$h" = h1 ] && master=(--swarm-master)
  "$DY" "${LOCAL[@]}" machine create -d netns --swarm "${master[@]}" --swarm-discovery "$ETCD_URL" \
    "${ENGINE_KV[@]}" --engine-label "zone=$h" "$h" > "$DATA/$h.create" 2>&1 &
  eval "P_$h=$!"
done
for h in h1 h2 h3; do
  pid_var="P_$h"; wait "${!pid_var}" || die "creating $h failed: $(cat "$DATA/$h.create")"
done
"$DY" "${LOCAL[@]}" machine ls

proof "machine create --swarm started each engine with --cluster-store/--cluster-advertise (its address)"
for h in store h1 h2 h3; do NAMESPACES="$NAMESPACES $(machine_field "$h" Netns)"; done

for h in h1 h2 h3; do (node_env "$h"; "$DY" image bootstrap busybox >/dev/null); done
proof "each engine has the offline busybox image (the hosts reach no registry)"

say "the nodes in etcd: dockyard swarm list -v $ETCD_URL"
for _ in $(seq 50); do [ "$("$DY" swarm list "${KV[@]}" "$ETCD_URL" | wc -l)" = 3 ] && break; sleep 0.2; done
"$DY" swarm list -v "${KV[@]}" "$ETCD_URL"
proof "three engines joined by heartbeat (nodes/<name> on a lease)"

say "eval \$(dockyard machine env --swarm h1)   (h1's engine runs the manager: docker-machine's swarm master)"
swarm_env
MANAGER_UP=1
echo "DOCKER_HOST=$DOCKER_HOST"
for _ in $(seq 150); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
docker version --format 'docker CLI {{.Client.Version}} -> {{.Server.Version}} at '"$DOCKER_HOST"
proof "the real docker CLI talks to the manager over mutual TLS with the machine's certificates"
nodes_info() { docker info --format '{{range .SystemStatus}}{{index . 0}}: {{index . 1}}{{"\n"}}{{end}}' 2>&1 \
  | grep -E '^(Role|Strategy|Nodes| ?h[0-9]|  └ Status)' || true; }
echo "docker info (Swarm classic's SystemStatus):"
nodes_info

# ------------------------------------------------------------------ 3. the app, spread
say "dockyard compose up -d   (examples/cluster-demo/compose.yaml, through the manager)"
"$DY" compose -p cluster-demo -f "$APP/compose.yaml" up -d
docker ps --format 'table {{.Names}}\t{{.Status}}\t{{.Image}}'
placement() { docker ps -a --format '{{.Names}} {{.Status}}' | sort; }
nodes_of() { placement | awk -v s="$1" '$1 ~ "/cluster-demo-"s"-" {split($1,a,"/"); print a[1]}' | sort -u | tr '\n' ' '; }
echo "web on: $(nodes_of web)  worker on: $(nodes_of worker)  db on: $(nodes_of db)"
[ "$(nodes_of web)" = "h1 h2 h3 " ] || die "the three web replicas are not one per node"
proof "spread: the three web and worker replicas landed one per node; db honours its constraint node==h3"
docker exec cluster-demo-web-1 wget -qO- http://127.0.0.1:8080/cgi-bin/hello
proof "docker exec through the manager reaches the node that holds the container"

say "docker network inspect cluster-demo_default   (one overlay network spanning the hosts)"
docker network inspect -f '{{.Name}}: driver {{.Driver}}, scope {{.Scope}}, subnet {{range .IPAM.Config}}{{.Subnet}}{{end}}' \
  cluster-demo_default
docker network inspect -f '{{range .Containers}}  {{.Name}} {{.IPv4Address}}{{"\n"}}{{end}}' cluster-demo_default | sort
[ "$(docker network inspect -f '{{len .Containers}}' cluster-demo_default)" = 7 ] \
  || die "the overlay network does not list the 7 containers of the three hosts"
WNODE=$(placement | awk '$1 ~ "/cluster-demo-worker-1$" {split($1, a, "/"); print a[1]}')
WEB_OTHER=$(placement | awk -v n="$WNODE" '$1 ~ "/cluster-demo-web-" {split($1, a, "/"); if (a[1] != n) {print a[2]; exit}}')
docker exec cluster-demo-worker-1 wget -qO- "http://$WEB_OTHER:8080/cgi-bin/hello"
proof "the overlay lists the containers of every host; worker-1 on $WNODE fetched from $WEB_OTHER on another host by name"

# ------------------------------------------------------------------ 4. a node dies
VICTIM=h3
PID=$(machine_field "$VICTIM" Pid)
say "kill -9 $PID   ($VICTIM's dockyardd: its heartbeat stops, its lease expires)"
KILLED=$(date +%s.%N)
kill -9 "$PID"
moved=""
for _ in $(seq 150); do
  if ! placement | grep -E "^$VICTIM/cluster-demo-(web|worker)-" >/dev/null \
     && [ "$(placement | grep -cE '/cluster-demo-(web|worker)-[0-9]+ Up')" = 6 ]; then
    moved=$(elapsed "$KILLED"); break
  fi
  sleep 0.2
done
[ -n "$moved" ] || { placement; die "the containers of $VICTIM were not rescheduled within 30 s"; }
placement
echo "web on: $(nodes_of web)  worker on: $(nodes_of worker)  db on: $(nodes_of db)"
proof "rescheduled: $VICTIM's web and worker run on the other nodes, $moved s after its engine was killed"
docker events --since "${KILLED%.*}" --until "$(( $(date +%s) + 1 ))" --filter event=reschedule \
  --format '{{.Action}} {{.Actor.Attributes.name}}: {{.Actor.Attributes.from}} -> {{.Actor.Attributes.to}}' 2>&1 || true
proof "a reschedule event per moved container"
nodes_info
"$DY" swarm list -v "${KV[@]}" "$ETCD_URL"

# ------------------------------------------------------------------ 5. the node returns
say "dockyard machine start $VICTIM   (its engine again: it rejoins, the stale copies go)"
"$DY" "${LOCAL[@]}" machine start "$VICTIM" >/dev/null
for _ in $(seq 100); do
  left=$( (node_env "$VICTIM"; docker ps -a --format '{{.Names}}') | grep -cE 'cluster-demo-(web|worker)-' || true)
  [ "$left" = 0 ] && break
  sleep 0.2
done
echo "containers left on $VICTIM itself: $( (node_env "$VICTIM"; docker ps -a --format '{{.Names}}') | tr '\n' ' ')"
[ "$left" = 0 ] || die "the stale copies on $VICTIM were not removed"
placement
proof "$VICTIM rejoined without duplicates: only db (no reschedule policy) is back there"

say "done in $(elapsed "$START") s (teardown follows)"
