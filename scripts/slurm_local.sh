#!/usr/bin/env bash
# A real single-node Slurm on this host, for tests: `slurm_local.sh up` / `slurm_local.sh down`.
#
# up:   installs slurm-wlm and munge with apt when missing (as root), writes a slurm.conf under
#       .slurm/ (SlurmUser=root, cons_tres/CR_Core, linuxproc, no accounting, one `debug` partition
#       with this host's cores and most of its memory), starts munged, slurmctld and slurmd, and waits
#       for the node to be idle. Prints `export SLURM_CONF=…`, which every client call needs.
# down: stops the three daemons by the pids `up` recorded (never by name) and keeps the logs.
# No GPU is configured (no gres.conf): jobs here are CPU jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${SLURM_STATE:-$PWD/.slurm}
CONF=$STATE/slurm.conf
log() { echo "[slurm-local] $*" >&2; }

up() {
  [ "$(id -u)" = 0 ] || { log "needs root (apt, munge, slurmd)"; exit 1; }
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurm-wlm and munge with apt"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; }
  fi
  down quiet
  mkdir -p "$STATE"/{spool,state,log}
  host=$(hostname -s)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
  cat >"$CONF" <<EOF
ClusterName=spectra-cv-ci
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
KillWait=10
MinJobAge=30
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  if [ ! -d /run/munge ]; then mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true; fi
  if ! pgrep -u munge -x munged >/dev/null 2>&1 && [ ! -S /run/munge/munge.socket.2 ]; then
    log "starting munged"
    runuser -u munge -- munged --force 2>/dev/null || munged --force
    pgrep -n -x munged >"$STATE/munged.pid"
  fi
  export SLURM_CONF=$CONF
  log "starting slurmctld and slurmd"
  slurmctld -f "$CONF" -i
  slurmd -f "$CONF"
  for _ in $(seq 1 60); do
    state=$(sinfo --noheader --format=%T 2>/dev/null | head -1 || true)
    if [ "$state" = idle ]; then
      log "node $host idle: $(sinfo --noheader --format='%P %D %c cpus %m MB' | head -1)"
      echo "export SLURM_CONF=$CONF"
      return
    fi
    sleep 1
  done
  log "the node did not come up (state: ${state:-none}); logs in $STATE/log"
  tail -20 "$STATE"/log/*.log >&2 || true
  exit 1
}

down() {
  local quiet=${1:-}
  for daemon in slurmd slurmctld munged; do
    pidfile=$STATE/$daemon.pid
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      [ -n "$quiet" ] || log "stopping $daemon (pid $pid)"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
