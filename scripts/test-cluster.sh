#!/usr/bin/env bash
# A real 2-node SLURM cluster on this one machine, for the SLURM engine's tests (tests/test_slurm.py).
#
#   scripts/test-cluster.sh install   apt packages slurmctld, slurmd, slurm-client (needs root)
#   scripts/test-cluster.sh start     slurmctld + two slurmd daemons (nodes n1, n2), those not running; waits
#                                     until both nodes respond (tests stop one daemon and start it again)
#   scripts/test-cluster.sh stop      stops the daemons this script started (by their PIDs)
#   scripts/test-cluster.sh status    sinfo of the running cluster
#   scripts/test-cluster.sh env       prints `export SLURM_CONF=...` for clients (eval "$(... env)")
#
# Debian's daemons run without systemd or munge (auth/none). Two slurmd on one host make two nodes,
# each advertising 2 CPUs. Everything lives in $ACCEL_RUN_CLUSTER_DIR (default /tmp/accel-run-cluster).
set -euo pipefail

DIR="${ACCEL_RUN_CLUSTER_DIR:-/tmp/accel-run-cluster}"
CONF="$DIR/slurm.conf"

write_conf() {
  local host
  host="$(hostname -s)"
  mkdir -p "$DIR/state" "$DIR/spool/n1" "$DIR/spool/n2" "$DIR/log"
  cat >"$CONF" <<CONF
ClusterName=accelrun
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmdPidFile=$DIR/slurmd.%n.pid
SlurmdLogFile=$DIR/log/slurmd.%n.log
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MinJobAge=600
KillWait=5
SlurmdParameters=config_overrides
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=6818 CPUs=2 RealMemory=4000
NodeName=n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=6819 CPUs=2 RealMemory=4000
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

alive() { # pid file -> running (zombies count as dead: PID 1 here reaps slowly)
  [ -f "$1" ] || return 1
  local pid state
  pid="$(cat "$1")"
  state="$(ps -o stat= -p "$pid" 2>/dev/null || true)"
  [ -n "$state" ] && [ "${state:0:1}" != "Z" ]
}

start_daemon() { # name pidfile argv...
  local name="$1" pidfile="$2"
  shift 2
  if alive "$pidfile"; then return; fi
  setsid "$@" </dev/null >"$DIR/log/$name.out" 2>&1 &
  echo $! >"$pidfile"
}

case "${1:-}" in
  install)
    command -v slurmctld >/dev/null && command -v sbatch >/dev/null && exit 0
    apt-get install -y --no-install-recommends slurmctld slurmd slurm-client >/dev/null 2>&1 || {
      apt-get update >/dev/null
      apt-get install -y --no-install-recommends slurmctld slurmd slurm-client >/dev/null
    }
    ;;
  start)
    command -v slurmctld >/dev/null || { echo "test-cluster: slurmctld not installed (run: $0 install)" >&2; exit 1; }
    write_conf
    start_daemon slurmctld "$DIR/ctld.started.pid" slurmctld -D -i -f "$CONF"
    sleep 1
    start_daemon slurmd-n1 "$DIR/n1.started.pid" slurmd -D -N n1 -f "$CONF"
    start_daemon slurmd-n2 "$DIR/n2.started.pid" slurmd -D -N n2 -f "$CONF"
    # up = both nodes respond (idle, or running a job: a daemon restarted under a job is up too)
    for _ in $(seq 60); do
      if [ "$(SLURM_CONF="$CONF" sinfo -h -N -r -o %N 2>/dev/null | sort -u | wc -l)" = 2 ]; then
        echo "test-cluster: nodes n1, n2 up (SLURM_CONF=$CONF)"
        exit 0
      fi
      sleep 1
    done
    echo "test-cluster: the nodes did not respond in 60 s; logs in $DIR/log" >&2
    SLURM_CONF="$CONF" sinfo >&2 || true
    exit 1
    ;;
  stop)
    for name in n1 n2 ctld; do
      pidfile="$DIR/$name.started.pid"
      if alive "$pidfile"; then kill "$(cat "$pidfile")" || true; fi
      rm -f "$pidfile"
    done
    ;;
  status)
    SLURM_CONF="$CONF" sinfo
    ;;
  env)
    echo "export SLURM_CONF=$CONF"
    ;;
  *)
    sed -n '2,10p' "$0" >&2
    exit 2
    ;;
esac
