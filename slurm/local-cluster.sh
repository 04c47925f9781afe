#!/usr/bin/env bash
# A real SLURM cluster on this machine (munged + slurmctld + one slurmd per node), for tests and users.
#
#   slurm/local-cluster.sh start    install slurm-wlm/munge if missing, start the daemons, wait for the node
#   slurm/local-cluster.sh start --nodes N      (or --nodes=N; N from 1 to 99, default 1)
#                                   N nodes, each slurmd in a network namespace of its own (node1..nodeN)
#                                   with its own address on a private bridge; `srun -N2` puts a task on each
#   slurm/local-cluster.sh stop     stop this cluster's daemons (by pid file and by command line), the steps of
#                                   jobs still running, and remove its namespaces, veths and bridge
#   slurm/local-cluster.sh status   which daemons run; sinfo/squeue when up
#   slurm/local-cluster.sh env      print `export SLURM_CONF=...`  (eval "$(slurm/local-cluster.sh env)")
#
# Any other argument (a bare number, --nodes twice, a bad value, anything after stop/status/env) is refused,
# exit 2, before anything is installed or started. `start` refuses ports already in use (naming the port, its
# knob and, when ss can tell, the process holding it) and a --nodes other than that of the cluster running in
# the same dir. A start that fails after it began stops the whole cluster of that dir and removes its network
# (what `stop` does), then repeats why it failed; the logs stay in $DIR/log.
#
# Everything lives under ${HARNESS_SLURM_DIR:-/tmp/harness-slurm}; nothing under /etc is touched.
# Other knobs: HARNESS_SLURM_CTLD_PORT (6817), HARNESS_SLURM_SLURMD_PORT (6818), HARNESS_SLURM_CPUS (16),
# HARNESS_SLURM_CRED_EXPIRE (5), HARNESS_SLURM_TIMEOUT (seconds to wait for the node to become idle, 30).
# Needs root (slurmd launches jobs as the submitting user). See DEVELOPERS.md, "Running SLURM here".
#
# Several nodes: each slurmd runs under `nsenter --net=NS unshare --mount --uts`: its own network namespace (a
# veth into a bridge in this namespace, where slurmctld listens), its own host name (nodeK) and a private
# bind mount of $DIR/nodes/hosts over /etc/hosts, so that every node name and the controller resolve to
# their bridge addresses there (jobs inherit all three). The namespaces, bridge and addresses (10.X.Y.0/24,
# from a hash of $DIR) are made by `start` and removed by `stop`; nothing leaves the machine.
set -euo pipefail

export PATH="/usr/sbin:/sbin:$PATH"

DIR="${HARNESS_SLURM_DIR:-/tmp/harness-slurm}"
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
CONF="$DIR/slurm.conf"
MUNGE_DIR="$DIR/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"
MUNGE_KEY="$MUNGE_DIR/munge.key"
MUNGE_PID="$MUNGE_DIR/munged.pid"
MUNGE_LOG="$DIR/log/munged.log"
MUNGE_SEED="$MUNGE_DIR/munged.seed"
CTLD_PID="$DIR/run/slurmctld.pid"
SLURMD_PID="$DIR/run/slurmd.pid"
CTLD_LOG="$DIR/log/slurmctld.log"
SLURMD_LOG="$DIR/log/slurmd.log"
CTLD_PORT="${HARNESS_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${HARNESS_SLURM_SLURMD_PORT:-6818}"
NCPUS="${HARNESS_SLURM_CPUS:-16}"
CRED_EXPIRE="${HARNESS_SLURM_CRED_EXPIRE:-5}"
TIMEOUT="${HARNESS_SLURM_TIMEOUT:-30}"
NODES_FILE="$DIR/run/nodes"  # how many nodes this cluster was started with (stop and status read it)
ID="$(printf '%s' "$DIR" | md5sum | cut -c1-4)"  # names this cluster's namespaces and bridge
BRIDGE="hs${ID}br"
SUBNET="10.$((100 + 0x${ID:0:2} % 100)).$((0x${ID:2:2}))"
NODES=1

USAGE="usage: local-cluster.sh start [--nodes N] | stop | status | env"
FAILED=""  # why the start failed (die), repeated once its cleanup is done
STOP_FAILED=0  # a process that outlived SIGKILL during stop

log() { echo "local-cluster: $*" >&2; }
die() { FAILED="$*"; log "error: $*"; exit 1; }
usage_error() { log "error: $* ($USAGE)"; exit 2; }

# pid from a pid file if that process is alive (and is a munged/slurm daemon), else fail
alive_pid() {
    local f="$1" pid comm
    [[ -s "$f" ]] || return 1
    pid="$(tr -dc '0-9' <"$f")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    [[ "$comm" == munged* || "$comm" == slurm* ]] || return 1  # a stale pid file, its pid reused
    echo "$pid"
}

tails() {
    local f
    for f in "$MUNGE_LOG" "$CTLD_LOG" "$DIR"/log/slurmd*.log; do
        [[ -f "$f" ]] || continue
        echo "----- last lines of $f -----" >&2
        tail -n 25 "$f" >&2 || true
    done
}

install_if_missing() {
    local packages="slurm-wlm munge"
    ((NODES == 1)) || command -v ip >/dev/null || packages="$packages iproute2"  # namespaces, veth, bridge
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null && [[ "$packages" == "slurm-wlm munge" ]]; then
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || die "slurm-wlm/munge are not installed and installing them needs root"
    log "installing slurm-wlm and munge with apt-get (once)"
    export DEBIAN_FRONTEND=noninteractive
    # A stale package list cannot find the packages: update first, then install.
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends $packages >&2
    command -v slurmctld >/dev/null && command -v munged >/dev/null || die "apt-get did not install slurmctld/munged"
}

node_lines() {  # the NodeName lines: this host on 127.0.0.1, or node1..N on the bridge
    local k
    if ((NODES == 1)); then
        echo "NodeName=$(hostname -s) NodeAddr=127.0.0.1 CPUs=${NCPUS} RealMemory=1024 State=UNKNOWN"
        return
    fi
    for ((k = 1; k <= NODES; k++)); do
        echo "NodeName=node$k NodeAddr=${SUBNET}.$((10 + k)) NodeHostname=node$k CPUs=${NCPUS} RealMemory=1024 State=UNKNOWN"
    done
}

write_conf() {
    local host ctld_addr=127.0.0.1 slurmd_files=""
    host="$(hostname -s)"
    if ((NODES > 1)); then ctld_addr="${SUBNET}.1"; slurmd_files="-%n"; fi
    cat >"$CONF" <<EOF
# Generated by slurm/local-cluster.sh -- edits are overwritten on the next start.
ClusterName=harness
SlurmctldHost=${host}(${ctld_addr})
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# socket= reaches the private munged (daemons and client commands alike read it from here);
# cred_expire is also how long a requeued job waits before it may start again (minimum 5).
AuthInfo=socket=${MUNGE_SOCKET},cred_expire=${CRED_EXPIRE}
StateSaveLocation=${DIR}/state
SlurmdSpoolDir=${DIR}/spool/slurmd${slurmd_files}
SlurmctldPidFile=${CTLD_PID}
SlurmdPidFile=${DIR}/run/slurmd${slurmd_files}.pid
SlurmctldLogFile=${CTLD_LOG}
SlurmdLogFile=${DIR}/log/slurmd${slurmd_files}.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups, no systemd: track processes by parent pid, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=${DIR}/log/jobcomp.txt
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=1
JobRequeue=1
ReturnToService=2
# finished jobs stay visible to scontrol show job for 10 minutes (there is no sacct database)
MinJobAge=600
KillWait=2
InactiveLimit=0
Waittime=0
SlurmctldTimeout=10
SlurmdTimeout=10
MessageTimeout=10
# the node may declare more CPUs than the machine has
SlurmdParameters=config_overrides
$(node_lines)
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

make_dirs() {
    # munged refuses group/other-writable directories on the way to its key and socket, and wants
    # execute-for-all on every directory above the socket (mktemp -d makes 0700: "Socket is inaccessible")
    mkdir -p "$DIR"
    chmod 755 "$DIR"
    mkdir -p "$DIR/state" "$DIR/spool/slurmd" "$DIR/log" "$DIR/run" "$MUNGE_DIR"
    chmod 755 "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run"
    chmod 711 "$MUNGE_DIR"
    if [[ ! -s "$MUNGE_KEY" ]]; then
        (umask 077; dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none)
    fi
    chmod 400 "$MUNGE_KEY"
}

wait_for() {  # wait_for SECONDS COMMAND...: true once COMMAND succeeds
    local deadline=$((SECONDS + $1)); shift
    while ((SECONDS < deadline)); do
        "$@" && return 0
        sleep 0.2
    done
    return 1
}

start_munged() {
    if alive_pid "$MUNGE_PID" >/dev/null; then return 0; fi
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" "$MUNGE_PID"
    munged --socket="$MUNGE_SOCKET" --key-file="$MUNGE_KEY" --pid-file="$MUNGE_PID" \
        --log-file="$MUNGE_LOG" --seed-file="$MUNGE_SEED" \
        || { tails; die "munged did not start"; }
    wait_for 10 test -S "$MUNGE_SOCKET" || { tails; die "munged made no socket at $MUNGE_SOCKET"; }
    munge -n --socket="$MUNGE_SOCKET" | unmunge --socket="$MUNGE_SOCKET" >/dev/null \
        || { tails; die "munge round trip failed"; }
}

start_daemon() {  # start_daemon NAME PIDFILE
    local name="$1" pidf="$2"
    if alive_pid "$pidf" >/dev/null; then return 0; fi
    rm -f "$pidf"
    "$name" -f "$CONF" || { tails; die "$name did not start"; }
    wait_for 10 alive_pid "$pidf" >/dev/null || { tails; die "$name wrote no live pid to $pidf"; }
}

node_idle() {  # every node idle
    local states
    states="$(SLURM_CONF="$CONF" sinfo -h -N -o '%t' 2>/dev/null | sort -u | tr '\n' ' ')" || return 1
    [[ "$states" == "idle " ]] && (($(SLURM_CONF="$CONF" sinfo -h -N -o '%N' | wc -l) == NODES))
}

slurmd_pidfiles() {
    local k
    if ((NODES == 1)); then echo "$SLURMD_PID"; return; fi
    for ((k = 1; k <= NODES; k++)); do echo "$DIR/run/slurmd-node$k.pid"; done
}

netns_of() { echo "hs${ID}n$1"; }

make_network() {  # a bridge here (the controller's side) and a namespace per node, each on a veth into it
    local k ns
    ip link show "$BRIDGE" >/dev/null 2>&1 || {
        ip link add "$BRIDGE" type bridge
        ip addr add "${SUBNET}.1/24" dev "$BRIDGE"
    }
    ip link set "$BRIDGE" up
    mkdir -p "$DIR/nodes"
    {
        echo "127.0.0.1 localhost"
        echo "${SUBNET}.1 $(hostname -s)"
        for ((k = 1; k <= NODES; k++)); do echo "${SUBNET}.$((10 + k)) node$k"; done
    } >"$DIR/nodes/hosts"
    for ((k = 1; k <= NODES; k++)); do
        ns="$(netns_of "$k")"
        [[ -e "/run/netns/$ns" ]] && continue
        ip netns add "$ns"
        ip link add "hs${ID}v$k" type veth peer name eth0 netns "$ns"
        ip link set "hs${ID}v$k" master "$BRIDGE" up
        ip -n "$ns" addr add "${SUBNET}.$((10 + k))/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        ip -n "$ns" route add default via "${SUBNET}.1"
    done
}

our_netns() {  # this cluster's namespaces, however many nodes it was started with: hs<id>n*
    local p
    for p in /run/netns/"hs${ID}n"*; do [[ -e "$p" ]] && echo "${p##*/}"; done
    return 0
}

our_links() {  # this cluster's veths (hs<id>v*) and bridge (hs<id>br) in this namespace
    ip -o link show 2>/dev/null | awk -F': ' -v v="hs${ID}v" -v br="$BRIDGE" \
        '{ name = $2; sub(/@.*/, "", name); if (index(name, v) == 1 || name == br) print name }'
}

remove_network() {  # every process left in the namespaces (a job's slurmstepd), the veths, namespaces, bridge
    local ns pids link
    command -v ip >/dev/null || return 0
    for ns in $(our_netns); do
        pids="$(ip netns pids "$ns" 2>/dev/null || true)"
        if [[ -n "$pids" ]]; then
            kill -KILL $pids 2>/dev/null || true
            wait_for 5 eval "[[ -z \"\$(ip netns pids $ns 2>/dev/null)\" ]]" \
                || { log "processes left in $ns: $(ip netns pids "$ns")"; STOP_FAILED=1; }
        fi
    done
    # the veths first: deleting a namespace takes its end of a veth (and so the pair) away only later, and
    # asynchronously; deleting the veth here is immediate
    for link in $(our_links); do [[ "$link" == "$BRIDGE" ]] || ip link del "$link" 2>/dev/null || true; done
    for ns in $(our_netns); do ip netns del "$ns" 2>/dev/null || { log "could not delete namespace $ns"; STOP_FAILED=1; }; done
    ip link del "$BRIDGE" 2>/dev/null || true
}

start_nodes() {
    local k pidf
    if ((NODES == 1)); then start_daemon slurmd "$SLURMD_PID"; return; fi
    make_network
    for ((k = 1; k <= NODES; k++)); do
        pidf="$DIR/run/slurmd-node$k.pid"
        alive_pid "$pidf" >/dev/null && continue
        rm -f "$pidf"
        mkdir -p "$DIR/spool/slurmd-node$k"
        # its own network, host name and /etc/hosts (a private bind mount): what the jobs it starts see too.
        # nsenter rather than `ip netns exec`, which mounts a fresh /sys without the cgroup file systems
        # slurmd initializes against (slurmd then fails: "No filesystem mounted on /sys/fs/cgroup").
        nsenter --net="/run/netns/$(netns_of "$k")" unshare --mount --uts --propagation private \
            sh -c 'hostname "$1" && mount --bind "$2" /etc/hosts && exec slurmd -f "$3" -N "$1"' \
            slurmd "node$k" "$DIR/nodes/hosts" "$CONF" || { tails; die "slurmd of node$k did not start"; }
        wait_for 10 alive_pid "$pidf" >/dev/null || { tails; die "slurmd of node$k wrote no live pid to $pidf"; }
    done
}

# slurmctld runs its first scheduling pass ~3 s after it starts; jobs submitted before then just wait
scheduler_ran() {
    local cycles
    cycles="$(SLURM_CONF="$CONF" sdiag 2>/dev/null \
        | awk '/^Main schedule statistics/{m=1} m && /Total cycles:/{print $3; exit}')"
    [[ -n "$cycles" && "$cycles" -gt 0 ]]
}

all_running() {
    local pidf
    alive_pid "$MUNGE_PID" >/dev/null && alive_pid "$CTLD_PID" >/dev/null || return 1
    for pidf in $(slurmd_pidfiles); do alive_pid "$pidf" >/dev/null || return 1; done
}

port_holder() {  # port_holder PORT: true if something listens on PORT here; prints who, when ss can tell
    local port="$1" lines
    if command -v ss >/dev/null && lines="$(ss -ltnp "sport = :$port" 2>/dev/null)"; then
        lines="$(printf '%s\n' "$lines" | tail -n +2)"  # the header
        [[ -n "$lines" ]] || return 1
        printf '%s\n' "$lines" | grep -o '"[^"]*",pid=[0-9]*' | sed -E 's/^"(.*)",pid=([0-9]+)$/\1 (pid \2)/' \
            | sort -u | paste -sd, - | sed 's/,/, /g' || true
        return 0
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null  # no ss: something accepts connections there
}

check_port() {  # check_port PORT KNOB WHAT: die unless PORT is a port number nothing listens on here
    local port="$1" knob="$2" what="$3" holder
    if holder="$(port_holder "$port")"; then
        die "port $port ($what, $knob) is already in use${holder:+ by $holder}; set $knob to a free port"
    fi
}

check_ports() {
    # slurmctld binds HARNESS_SLURM_CTLD_PORT on every address of this namespace. A single node's slurmd binds
    # HARNESS_SLURM_SLURMD_PORT here too; with several nodes each slurmd binds it inside a namespace of its own,
    # made fresh by this start, where nothing else can hold it. Ports held by this cluster's own live daemons
    # (a start that completes a half-running cluster) are theirs.
    local item port
    for item in "HARNESS_SLURM_CTLD_PORT:$CTLD_PORT" "HARNESS_SLURM_SLURMD_PORT:$SLURMD_PORT"; do
        port="${item#*:}"
        if ! [[ "$port" =~ ^[1-9][0-9]{0,4}$ ]] || ((port > 65535)); then
            die "${item%%:*} must be a port number from 1 to 65535, got '$port'"
        fi
    done
    alive_pid "$CTLD_PID" >/dev/null || check_port "$CTLD_PORT" HARNESS_SLURM_CTLD_PORT "the slurmctld port"
    if ((NODES == 1)); then
        ((CTLD_PORT != SLURMD_PORT)) \
            || die "HARNESS_SLURM_CTLD_PORT and HARNESS_SLURM_SLURMD_PORT are both $CTLD_PORT; one node needs two ports"
        alive_pid "$SLURMD_PID" >/dev/null || check_port "$SLURMD_PORT" HARNESS_SLURM_SLURMD_PORT "the slurmd port"
    fi
}

slurm_running() {  # slurmctld or any slurmd of this dir alive
    local pidf
    alive_pid "$CTLD_PID" >/dev/null && return 0
    for pidf in "$DIR"/run/slurmd*.pid; do alive_pid "$pidf" >/dev/null && return 0; done
    return 1
}

start_failed() {  # the EXIT trap while start runs: stop whatever this cluster has running, remove its network
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    ((rc != 0)) || rc=1
    log "start failed; stopping this cluster's daemons and removing its network"
    teardown
    local left="nothing left running"
    ((STOP_FAILED == 0)) || left="some of it is left, see above"
    log "error: start failed${FAILED:+: $FAILED} ($left; logs in $DIR/log)"
    exit "$rc"
}

cmd_start() {
    local running
    if [[ -s "$NODES_FILE" ]] && slurm_running; then
        running="$(cat "$NODES_FILE")"
        [[ "$running" == "$NODES" ]] \
            || die "a cluster of $running node(s) runs in $DIR; stop it before starting one of $NODES"
    fi
    if all_running; then
        log "already running (state dir $DIR)"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || die "the local cluster runs its daemons as root; run start as root"
    ((${#MUNGE_SOCKET} < 100)) || die "munge socket path too long for a unix socket: $MUNGE_SOCKET"
    check_ports
    install_if_missing
    local t0
    t0="$(date +%s.%N)"
    # from here on a failure (a die, a command failing under set -e, a signal) stops what was started
    trap start_failed EXIT
    trap 'FAILED="interrupted (SIGINT)"; exit 130' INT
    trap 'FAILED="terminated (SIGTERM)"; exit 143' TERM
    trap 'FAILED="hung up (SIGHUP)"; exit 129' HUP
    make_dirs
    echo "$NODES" >"$NODES_FILE"
    if ! alive_pid "$CTLD_PID" >/dev/null; then write_conf; fi
    export SLURM_CONF="$CONF"
    start_munged
    start_daemon slurmctld "$CTLD_PID"
    start_nodes
    if ! wait_for "$TIMEOUT" node_idle; then
        SLURM_CONF="$CONF" sinfo -N -l >&2 || true
        tails
        die "node not idle after ${TIMEOUT}s"
    fi
    wait_for "$TIMEOUT" scheduler_ran || { tails; die "slurmctld ran no scheduling pass in ${TIMEOUT}s"; }
    trap - EXIT INT TERM HUP
    log "ready in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s (state dir $DIR)"
    echo "export SLURM_CONF=$CONF"
}

by_cmdline() {  # by_cmdline ARG NAME...: live NAME processes with ARG as one of their arguments
    local pid comm name
    for pid in $(for name in "${@:2}"; do pgrep -x "$name"; done || true); do
        comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || continue
        [[ "$comm" == munged* || "$comm" == slurm* ]] || continue
        # grep -z reads the NUL-separated arguments themselves (no pipe for pipefail)
        if grep -qzxF -- "$1" "/proc/$pid/cmdline" 2>/dev/null; then echo "$pid"; fi
    done
    return 0
}

stop_daemons() {  # stop_daemons NAME:PIDFILE|NAME:pid=PID...  SIGTERM all of them together, wait for all to exit
    local item name pidf pid pids=() names=() pidfs=()
    for item in "$@"; do
        name="${item%%:*}" pidf="${item#*:}"
        if [[ "$pidf" == pid=* ]]; then
            pid="${pidf#pid=}" pidf=""
            [[ " ${pids[*]} " == *" $pid "* ]] && continue  # already found by its pid file
            kill -0 "$pid" 2>/dev/null || continue
        elif ! pid="$(alive_pid "$pidf")"; then
            rm -f "$pidf"
            continue
        fi
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid") names+=("$name") pidfs+=("$pidf")
    done
    local i left deadline=$((SECONDS + 15))  # one deadline for all: those ignoring SIGTERM get SIGKILL together
    for i in "${!pids[@]}"; do
        pid="${pids[$i]}" name="${names[$i]}" pidf="${pidfs[$i]}"
        left=$((deadline - SECONDS))
        ((left > 0)) || left=1
        if ! wait_for "$left" eval "! kill -0 $pid 2>/dev/null"; then
            log "$name ($pid) ignored SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            if ! wait_for 5 eval "! kill -0 $pid 2>/dev/null"; then
                log "error: $name ($pid) did not exit"
                STOP_FAILED=1
                continue
            fi
        fi
        [[ -z "$pidf" ]] || rm -f "$pidf"
        log "stopped $name ($pid)"
    done
}

tree() {  # a process and all its descendants
    local child
    echo "$1"
    for child in $(pgrep -P "$1" || true); do tree "$child"; done
}

stray_steps() {  # this cluster's slurmstepds (they outlive slurmd: found by the conf they were given) and their jobs
    local pid
    # grep -z reads the NUL-separated environment itself: no pipe for pipefail to fail on, and the loop
    # ends true whatever the last process was (the caller runs under set -e)
    for pid in $(pgrep -x slurmstepd || true); do
        if grep -qzx "SLURM_CONF=$CONF" "/proc/$pid/environ" 2>/dev/null; then tree "$pid"; fi
    done
}

teardown() {  # stop and remove everything of this cluster, whatever run/nodes says (stop, and a failed start)
    local items=() pidf pid pids
    # every slurmd pid file (one node: slurmd.pid; several: slurmd-nodeK.pid), then daemons given this
    # cluster's conf that have no live pid file (a start killed before they wrote one, a pid file removed)
    for pidf in "$DIR"/run/slurmd*.pid; do [[ -e "$pidf" ]] && items+=("slurmd:$pidf"); done
    items+=("slurmctld:$CTLD_PID")
    for pid in $(by_cmdline "$CONF" slurmd slurmctld); do items+=("$(cat "/proc/$pid/comm" 2>/dev/null || echo slurm):pid=$pid"); done
    # slurm daemons first (their shutdown may still talk through munge), then munged
    stop_daemons "${items[@]}"
    pids="$(stray_steps)"
    if [[ -n "$pids" ]]; then
        kill -KILL $pids 2>/dev/null || true
        log "stopped the steps of running jobs: $(echo $pids)"
    fi
    items=("munged:$MUNGE_PID")
    for pid in $(by_cmdline "--socket=$MUNGE_SOCKET" munged); do items+=("munged:pid=$pid"); done
    stop_daemons "${items[@]}"
    remove_network
}

cmd_stop() {
    teardown
    ((STOP_FAILED == 0)) || die "some of this cluster's processes or namespaces are left (see above)"
}

cmd_status() {
    local name pidf pid up=1
    [[ -s "$NODES_FILE" ]] && NODES="$(cat "$NODES_FILE")"
    for pidf in "$MUNGE_PID" "$CTLD_PID" $(slurmd_pidfiles); do
        name="$(basename "$pidf" .pid)"
        if pid="$(alive_pid "$pidf")"; then
            echo "$name: running (pid $pid)"
        else
            echo "$name: stopped"
            up=0
        fi
    done
    echo "state dir: $DIR"
    if ((up)); then
        export SLURM_CONF="$CONF"
        sinfo || true
        squeue || true
    else
        return 3
    fi
}

parse_args() {  # sets CMD and NODES; refuses anything else before anything is installed or started
    local value seen=0
    CMD="${1:-}"
    (($# == 0)) || shift
    case "$CMD" in
        start)
            while (($#)); do
                case "$1" in
                    --nodes=*) value="${1#--nodes=}"; shift ;;
                    --nodes)
                        (($# >= 2)) || usage_error "--nodes needs a number of nodes"
                        value="$2"; shift 2 ;;
                    *) usage_error "start: unknown argument '$1'" ;;
                esac
                ((seen == 0)) || usage_error "--nodes given more than once"
                seen=1
                [[ "$value" =~ ^[1-9][0-9]?$ ]] || usage_error "--nodes takes a number of nodes from 1 to 99, got '$value'"
                NODES="$value"
            done
            ;;
        stop | status | env) (($# == 0)) || usage_error "$CMD takes no arguments, got '$*'" ;;
        -h | --help | help) (($# == 0)) || usage_error "$CMD takes no arguments"; echo "$USAGE"; exit 0 ;;
        "") usage_error "no command" ;;
        *) usage_error "unknown command '$CMD'" ;;
    esac
}

parse_args "$@"
case "$CMD" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
esac
