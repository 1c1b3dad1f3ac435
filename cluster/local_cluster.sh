#!/usr/bin/env bash
# A real two-node Ray cluster on one machine (head 127.0.0.2, worker 127.0.0.3), for trying
# `--address` without cloud machines.
#   cluster/local_cluster.sh start      # prints the address; writes PIDs to $RBC_CLUSTER_DIR
#   rbc-ray sweep tune_configs/seeds.yaml --address 127.0.0.2:6389
#   cluster/local_cluster.sh stop       # stops only the processes this script started
# Each node has its own short --temp-dir. Stop by PID only: the global stop command kills every Ray on the host.
set -euo pipefail
DIR=${RBC_CLUSTER_DIR:-/tmp/rbc-cluster}
PORT=${RBC_CLUSTER_PORT:-6389}
RAY=${RAY:-ray}
HEAD_CPUS=${HEAD_CPUS:-1}
WORKER_CPUS=${WORKER_CPUS:-1}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}

start() {
  mkdir -p "$DIR"
  "$RAY" start --head --node-ip-address=127.0.0.2 --port="$PORT" --num-cpus="$HEAD_CPUS" \
      --temp-dir="$DIR/h" --include-dashboard=false --disable-usage-stats >"$DIR/head.log" 2>&1
  "$RAY" start --address="127.0.0.2:$PORT" --node-ip-address=127.0.0.3 --num-cpus="$WORKER_CPUS" \
      --temp-dir="$DIR/w" --disable-usage-stats >"$DIR/worker.log" 2>&1
  echo "127.0.0.2:$PORT"
}

stop() {
  # Every Ray process started above runs with a --temp-dir (or Ray's per-run dir) under $DIR.
  pids=$(pgrep -f -- "$DIR/" || true)
  [ -n "$pids" ] && kill $pids 2>/dev/null || true
  sleep 2
  pids=$(pgrep -f -- "$DIR/" || true)
  [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
  echo "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
