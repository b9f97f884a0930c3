#!/bin/sh
# Appends a line to the shared log every TICK_SECONDS; /tmp/alive is its healthcheck's signal.
trap 'echo "worker: stopping"; exit 0' TERM INT
echo "worker: started, ticking every ${TICK_SECONDS:-5}s"
touch /tmp/alive
while true; do
  echo "tick $(date -u +%H:%M:%S)" >> /data/worker.log
  sleep "${TICK_SECONDS:-5}" & wait $!
done
