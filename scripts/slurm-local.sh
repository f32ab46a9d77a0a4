#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine (Debian 12's slurm-wlm 22.05), for the tests,
# CI and trying profiles/slurm without a site cluster:
#   bash scripts/slurm-local.sh start     munged, MariaDB, slurmdbd, slurmctld, slurmd
#   bash scripts/slurm-local.sh status    which daemons run (exit 0 all, 3 none, 1 some)
#   bash scripts/slurm-local.sh env       the line to eval so sbatch/squeue/sacct find it
#   bash scripts/slurm-local.sh stop      cancel its jobs, stop every daemon it started
# Everything lives under one folder, $MIGFW_SLURM_DIR (default /var/lib/migfw-slurm): etc/
# (slurm.conf, slurmdbd.conf, munge.key), state/, db/ (MariaDB's data), log/, run/ (pid
# files, sockets). The daemons listen on 127.0.0.1 only, on ports $MIGFW_SLURM_PORT (default
# 6917: slurmctld), +1 slurmd, +2 slurmdbd, +3 MariaDB - not Slurm's defaults, so a site's
# or Debian's own Slurm on this machine is never touched; no file under /etc is written.
#
# Why slurmdbd and MariaDB: Snakemake's Slurm executor reads job states with `sacct` (its
# default, and what every site with accounting uses); without slurmdbd, sacct only says that
# accounting storage is disabled. squeue would do with a long MinJobAge, but then the
# cluster would test a status path sites rarely use, and a finished job's record (state,
# elapsed, exit code) would vanish after MinJobAge. Accounting also holds an account (migfw)
# and a partition (local), so the profile's MIGFW_SLURM_ACCOUNT/MIGFW_SLURM_PARTITION are checked for real.
set -euo pipefail

dir=${MIGFW_SLURM_DIR:-/var/lib/migfw-slurm}
port=${MIGFW_SLURM_PORT:-6917}
cluster=migfw
account=migfw
partition=local
node=$(hostname -s)
etc=$dir/etc run=$dir/run log=$dir/log state=$dir/state db=$dir/db
export SLURM_CONF=$etc/slurm.conf
munge_socket=$run/munge.socket
daemons=(slurmd slurmctld slurmdbd mariadb munged) # stop order; start is the reverse

say() { echo "slurm-local: $*" >&2; }
die() { say "$*"; exit 1; }

pid_of() { # the recorded pid of a daemon if that process is alive
  local file=$run/$1.pid pid
  [ -s "$file" ] || return 1
  pid=$(tr -dc 0-9 <"$file")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

wait_for() { # wait_for SECONDS WHAT COMMAND...: retry until the command succeeds
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq $((seconds * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what did not come up within ${seconds}s (logs: $log)"
}

need() {
  local missing=()
  for cmd in munged mungekey mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd \
    sbatch sacctmgr; do
    command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] || missing+=("$cmd")
  done
  [ ${#missing[@]} -eq 0 ] ||
    die "missing ${missing[*]}: run bash scripts/install.sh --test (Debian: slurm-wlm slurmdbd munge mariadb-server)"
  [ "$(id -u)" -eq 0 ] || die "start needs root (the daemons run as root, with a private config)"
}

write_config() {
  mkdir -p "$etc" "$run" "$log" "$state/ctld" "$state/d" "$db"
  chmod 700 "$dir" "$etc"
  chmod 711 "$run" # munged wants its socket's folder searchable by everyone
  [ -s "$etc/munge.key" ] || mungekey --create --keyfile="$etc/munge.key" --force
  chmod 600 "$etc/munge.key"
  [ -s "$etc/db.pass" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -dc A-Za-z0-9 >"$etc/db.pass")
  local cpus mem
  cpus=$(nproc)
  mem=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024)) # MiB, 1 GiB for the OS
  cat >"$etc/slurm.conf" <<EOF
# Written by scripts/slurm-local.sh: a one-node cluster on this machine.
ClusterName=$cluster
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$munge_socket
CredType=cred/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$run/slurmctld.pid
SlurmdPidFile=$run/slurmd.pid
SlurmctldLogFile=$log/slurmctld.log
SlurmdLogFile=$log/slurmd.log
# No cgroups: processes are tracked by their parent pid, tasks are not bound.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((port + 2))
# For slurmdbd connections the munge socket is this key, not AuthInfo (slurm.conf(5)).
AccountingStoragePass=$munge_socket
AccountingStoreFlags=job_comment  # the executor's rule name per job, in sacct's Comment
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
# Jobs stay in slurmctld 5 min after they end (Slurm's default); sacct keeps them for good.
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$partition Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$etc/slurmdbd.conf" <<EOF
# Written by scripts/slurm-local.sh.
AuthType=auth/munge
AuthInfo=socket=$munge_socket
DbdHost=$node
DbdAddr=127.0.0.1
DbdPort=$((port + 2))
SlurmUser=root
PidFile=$run/slurmdbd.pid
LogFile=$log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((port + 3))
StorageUser=slurm
StoragePass=$(cat "$etc/db.pass")
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$etc/slurmdbd.conf"
}

start_mariadb() {
  if [ ! -d "$db/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$db" --user=root \
      --auth-root-authentication-method=socket >"$log/mariadb-install.log" 2>&1 ||
      die "mariadb-install-db failed (see $log/mariadb-install.log)"
  fi
  # innodb_lock_wait_timeout: what slurmdbd asks for (it warns below 900).
  (setsid mariadbd --no-defaults --user=root --datadir="$db" --socket="$run/mariadb.sock" \
    --port=$((port + 3)) --bind-address=127.0.0.1 --pid-file="$run/mariadb.pid" \
    --log-error="$log/mariadb.log" --skip-log-bin --innodb-buffer-pool-size=64M \
    --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 &)
  wait_for 60 MariaDB mariadb --no-defaults -S "$run/mariadb.sock" -u root -e 'select 1'
  mariadb --no-defaults -S "$run/mariadb.sock" -u root <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$(cat "$etc/db.pass")';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

link_config() {
  # Snakemake's jobstep executor drops SLURM_CONF from the environment of the srun it starts
  # inside each job; srun then looks in /etc/slurm and in /run/slurm/conf, where a
  # configless slurmd keeps its copy on a site's nodes. Link that to ours, unless taken.
  local current
  current=$(readlink /run/slurm/conf 2>/dev/null || true)
  if [ -e /etc/slurm/slurm.conf ]; then
    die "/etc/slurm/slurm.conf exists: job steps would read it instead of $SLURM_CONF"
  elif [ -e /run/slurm/conf ] && [ "$current" != "$etc" ]; then
    die "/run/slurm/conf belongs to another Slurm (-> ${current:-a folder}): job steps would read it"
  fi
  mkdir -p /run/slurm
  ln -sfn "$etc" /run/slurm/conf
}

start() {
  need
  if [ "$(status_quiet)" = all ]; then
    say "already running ($dir)"
    return 0
  fi
  [ "$(status_quiet)" = none ] || stop
  write_config
  munged --force --key-file="$etc/munge.key" --socket="$munge_socket" \
    --pid-file="$run/munged.pid" --log-file="$log/munged.log" --seed-file="$state/munge.seed"
  wait_for 10 munged test -S "$munge_socket"
  start_mariadb
  slurmdbd
  wait_for 60 slurmdbd sacctmgr -n list cluster
  sacctmgr -n list cluster format=cluster | grep -cw "$cluster" >/dev/null ||
    sacctmgr -i add cluster "$cluster" >/dev/null
  sacctmgr -n list account format=account | grep -cw "$account" >/dev/null ||
    sacctmgr -i add account "$account" Description="migfw tests" Organization=migfw >/dev/null
  sacctmgr -n -s list user root format=account | grep -cw "$account" >/dev/null ||
    sacctmgr -i add user root Account="$account" >/dev/null
  slurmctld -f "$SLURM_CONF"
  wait_for 30 slurmctld scontrol ping
  link_config
  slurmd -f "$SLURM_CONF" -N "$node"
  wait_for 60 "node $node" sh -c "sinfo -h -N -n '$node' -o %t | grep -qE '^(idle|mix|alloc)'"
  say "running: cluster $cluster, partition $partition, account $account, config $SLURM_CONF"
  say "use it:  eval \"\$(bash scripts/slurm-local.sh env)\""
}

status_quiet() { # all | none | some
  local up=0
  for d in "${daemons[@]}"; do pid_of "$d" >/dev/null && up=$((up + 1)); done
  if [ $up -eq ${#daemons[@]} ]; then echo all; elif [ $up -eq 0 ]; then echo none; else echo some; fi
}

status() {
  for d in "${daemons[@]}"; do
    if pid=$(pid_of "$d"); then echo "$d: running (pid $pid)"; else echo "$d: stopped"; fi
  done
  case $(status_quiet) in
    all) sinfo -N -o "%N %P %t %c %m" 2>/dev/null || true; return 0 ;;
    none) return 3 ;;
    *) return 1 ;;
  esac
}

stop() {
  if pid_of slurmctld >/dev/null; then
    # Cancel this cluster's jobs and let slurmd's step daemons end them first.
    local jobs
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      for _ in $(seq 100); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.2; done
    fi
  fi
  for d in "${daemons[@]}"; do
    local pid
    pid=$(pid_of "$d") || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$d (pid $pid) ignored SIGTERM for 30 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$run/$d.pid"
  done
  # A job step daemon outlives slurmd only if its job ignored the cancel: it still holds a
  # file in our spool folder, which names it as ours.
  local left=()
  for proc in /proc/[0-9]*; do
    [ "$(readlink "$proc/exe" 2>/dev/null)" = /usr/sbin/slurmstepd ] || continue
    if ls -l "$proc/fd" "$proc/cwd" 2>/dev/null | grep -c "$dir/" >/dev/null; then left+=("${proc#/proc/}"); fi
  done
  if [ ${#left[@]} -gt 0 ]; then
    say "killing leftover job step daemons: ${left[*]}"
    kill -KILL "${left[@]}" 2>/dev/null || true
  fi
  [ "$(readlink /run/slurm/conf 2>/dev/null)" = "$etc" ] && rm -f /run/slurm/conf
  say "stopped ($dir kept: logs, accounting database)"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$SLURM_CONF MIGFW_SLURM_ACCOUNT=$account MIGFW_SLURM_PARTITION=$partition" ;;
  *) echo "usage: bash scripts/slurm-local.sh start|stop|status|env" >&2; exit 2 ;;
esac
