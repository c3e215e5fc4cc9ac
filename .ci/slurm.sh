#!/usr/bin/env bash
# .ci/slurm.sh - a real single-node Slurm cluster (munged + slurmctld + slurmd)
# on Debian 12, as root, WITHOUT systemd (daemons are started directly).
#
# Usage:
#   setup-slurm.sh [start]   install packages (if missing), write configs, start
#                            daemons (if not running), wait until the node is idle
#   setup-slurm.sh stop      stop the daemons this script started (by PID file)
#   setup-slurm.sh status    show daemon PIDs and sinfo
#
# Idempotent: re-running "start" only (re)starts what is missing; daemons are
# restarted only when slurm.conf/gres.conf content changed.
#
# Tunables (environment):
#   SLURM_LOCAL_CPUS     CPUs advertised for the node (default: nproc). If larger
#                        than nproc, SlurmdParameters=config_overrides is set so
#                        Slurm over-subscribes (more concurrent 1-CPU jobs).
#   SLURM_LOCAL_MEM_MB   RealMemory in MB (default: 80% of MemTotal). Must not
#                        exceed real memory unless CPUs are overridden too.
#   SLURM_LOCAL_GPUS     number of FAKE GPUs (gres gpu, 0-4, on /dev/null, /dev/zero, ...)
#                        (default: 1), empty files under /var/spool/slurm-local. Lets jobs with --gpus=1 / resources gpu=1
#                        be scheduled; CUDA_VISIBLE_DEVICES=0 is set in the job.
#   SLURM_LOCAL_PARTITION partition name (default: debug)
#   SLURM_LOCAL_WAIT     seconds to wait for the node to become idle (default 60)
#
# Files touched: /etc/slurm/{slurm,gres}.conf, /etc/munge/munge.key (created by
# the munge package), /run/munge, /var/spool/slurmctld, /var/spool/slurmd,
# /var/spool/slurm-local (state of this script), /var/log/slurm.
set -euo pipefail

ACTION="${1:-start}"
NODE="$(hostname -s)"
CPUS_REAL="$(nproc)"
CPUS="${SLURM_LOCAL_CPUS:-$CPUS_REAL}"
MEM_TOTAL_MB=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
MEM_MB="${SLURM_LOCAL_MEM_MB:-$(( MEM_TOTAL_MB * 8 / 10 ))}"
GPUS="${SLURM_LOCAL_GPUS:-1}"
[ "$GPUS" -le 4 ] || { echo "[setup-slurm] ERROR: at most 4 fake GPUs" >&2; exit 1; }
PARTITION="${SLURM_LOCAL_PARTITION:-debug}"
WAIT_S="${SLURM_LOCAL_WAIT:-60}"

STATE_DIR=/var/spool/slurm-local
CTLD_DIR=/var/spool/slurmctld
SLURMD_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
CTLD_PID="$CTLD_DIR/slurmctld.pid"
SLURMD_PID="$SLURMD_DIR/slurmd.pid"
MUNGE_PID=/run/munge/munged.pid
PKGS=(munge slurmctld slurmd slurm-client)

log() { echo "[setup-slurm] $*"; }
die() { echo "[setup-slurm] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

# pid_alive PIDFILE COMM -> prints pid and returns 0 if the process in PIDFILE
# is alive and its /proc/PID/comm is COMM (guards against recycled PIDs).
pid_alive() {
  local f="$1" comm="$2" pid
  [ -s "$f" ] || return 1
  pid="$(tr -dc '0-9' < "$f")"
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
  [ "$(cat "/proc/$pid/comm")" = "$comm" ] || return 1
  echo "$pid"
}

# stop_pid PIDFILE COMM: SIGTERM the pid, wait up to 15 s, then SIGKILL.
stop_pid() {
  local f="$1" comm="$2" pid i
  if pid="$(pid_alive "$f" "$comm")"; then
    log "stopping $comm (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 30); do
      [ -d "/proc/$pid" ] || break
      sleep 0.5
    done
    if [ -d "/proc/$pid" ]; then
      log "$comm (pid $pid) still alive, SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

install_packages() {
  local missing=() p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
  log "slurm $(slurmd -V | awk '{print $2}'), munge $(dpkg-query -W -f='${Version}' munge)"
}

write_if_changed() { # write_if_changed PATH (content on stdin); returns 0 if changed
  local path="$1" tmp
  tmp="$(mktemp)"
  cat > "$tmp"
  if [ -f "$path" ] && cmp -s "$tmp" "$path"; then rm -f "$tmp"; return 1; fi
  install -m 0644 "$tmp" "$path"; rm -f "$tmp"; return 0
}

write_configs() {
  CONF_CHANGED=0
  mkdir -p /etc/slurm "$CTLD_DIR" "$SLURMD_DIR" "$LOG_DIR" "$STATE_DIR"
  local overrides="" gres_types="" node_gres=""
  if [ "$CPUS" -gt "$CPUS_REAL" ] || [ "$MEM_MB" -gt "$MEM_TOTAL_MB" ]; then
    overrides="SlurmdParameters=config_overrides"
  fi
  if [ "$GPUS" -gt 0 ]; then
    gres_types="GresTypes=gpu"
    node_gres=" Gres=gpu:${GPUS}"
  fi
  if write_if_changed /etc/slurm/slurm.conf <<EOF
# Written by .ci/slurm.sh: single-node test cluster, no cgroups, no slurmdbd.
ClusterName=localci
SlurmctldHost=${NODE}(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=${CTLD_DIR}
SlurmdSpoolDir=${SLURMD_DIR}
SlurmctldPidFile=${CTLD_PID}
SlurmdPidFile=${SLURMD_PID}
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: plain process tracking, no task binding/confinement.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
# No slurmdbd: sacct does NOT work ("Slurm accounting storage is disabled").
AccountingStorageType=accounting_storage/none
# Plain-text record of finished jobs (for humans; sacct cannot read it).
JobCompType=jobcomp/filetxt
JobCompLoc=${LOG_DIR}/jobcomp.log
# Keep finished jobs visible to squeue/scontrol for 10 min: the snakemake
# slurm plugin's squeue status mode needs MinJobAge >= 3 x init-seconds.
MinJobAge=600
# Without this a job that gives no --mem gets the whole node's memory.
DefMemPerCPU=1000
# Start batch jobs right away (default batch_sched_delay=3 adds 1-3 s per job).
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
${overrides}
${gres_types}
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM_MB}${node_gres} State=UNKNOWN
PartitionName=${PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  then CONF_CHANGED=1; log "wrote /etc/slurm/slurm.conf"; fi

  if write_if_changed /etc/slurm/gres.conf <<EOF
# Written by .ci/slurm.sh. Fake GPUs: each needs its own character-device File (never opened; with
# no File slurmd reports 0 GPUs and the node drains, two GPUs on one File are refused, and a plain
# file gives jobs no CUDA_VISIBLE_DEVICES).
AutoDetect=off
$(for f in $(echo /dev/null /dev/zero /dev/full /dev/urandom | cut -d' ' -f"1-${GPUS}"); do echo "NodeName=${NODE} Name=gpu File=${f}"; done)
EOF
  then CONF_CHANGED=1; log "wrote /etc/slurm/gres.conf"; fi
}

start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    log "creating munge key"
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  chown munge:munge /etc/munge /etc/munge/munge.key
  chmod 0700 /etc/munge; chmod 0600 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 0755 /run/munge
  if munge_ok; then
    log "munged already running"
    return
  fi
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock "$MUNGE_PID"
  runuser -u munge -- /usr/sbin/munged
  touch "$STATE_DIR/munged.started"
  local i
  for i in $(seq 1 20); do munge_ok && break; sleep 0.25; done
  munge_ok || die "munged did not come up (see /var/log/munge/munged.log)"
  log "munged started (pid $(cat "$MUNGE_PID"))"
}

start_slurm() {
  if [ "$CONF_CHANGED" = 1 ]; then
    stop_pid "$SLURMD_PID" slurmd
    stop_pid "$CTLD_PID" slurmctld
  fi
  if pid_alive "$CTLD_PID" slurmctld >/dev/null; then
    log "slurmctld already running"
  else
    /usr/sbin/slurmctld    # daemonizes; writes $CTLD_PID
    log "slurmctld started"
  fi
  local i
  for i in $(seq 1 40); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.25; done
  if pid_alive "$SLURMD_PID" slurmd >/dev/null; then
    log "slurmd already running"
  else
    /usr/sbin/slurmd -N "$NODE"   # daemonizes; writes $SLURMD_PID
    log "slurmd started"
  fi
}

wait_idle() {
  local i state
  for i in $(seq 1 $(( WAIT_S * 2 ))); do
    state="$(sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -1 || true)"
    case "$state" in
      idle|mixed|allocated) break ;;
      drained|draining|inval|down|"drained*"|"down*")
        # e.g. left over from an earlier, different config
        scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
  done
  sinfo -N -o '%N %P %T %c %m %G'
  case "$state" in
    idle|mixed|allocated) log "node $NODE is $state - cluster ready" ;;
    *) tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
       die "node $NODE not idle after ${WAIT_S}s (state: '$state')" ;;
  esac
}

case "$ACTION" in
  start)
    install_packages
    write_configs
    start_munge
    start_slurm
    wait_idle
    ;;
  stop)
    stop_pid "$SLURMD_PID" slurmd
    stop_pid "$CTLD_PID" slurmctld
    if [ -f "$STATE_DIR/munged.started" ]; then
      stop_pid "$MUNGE_PID" munged
      rm -f "$STATE_DIR/munged.started"
    fi
    log "stopped"
    ;;
  status)
    for spec in "$MUNGE_PID:munged" "$CTLD_PID:slurmctld" "$SLURMD_PID:slurmd"; do
      f="${spec%%:*}"; c="${spec##*:}"
      if p="$(pid_alive "$f" "$c")"; then echo "$c: running (pid $p)"; else echo "$c: not running"; fi
    done
    sinfo -N -o '%N %P %T %c %m %G' 2>/dev/null || true
    ;;
  *) die "unknown action '$ACTION' (start|stop|status)" ;;
esac
