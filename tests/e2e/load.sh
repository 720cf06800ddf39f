#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR disable=SC2015,SC2016 # A && B || die is intended; single quotes are data
# Load and faults ("under load and faults nothing is lost"): 50 concurrent rsync clients
# through a private sshd on 127.0.0.1, then one fault at a time, each with what must hold
# afterwards and, where rshell has a guard for it, a twin run that shows what breaks
# without that guard. Usage (root only):  tests/e2e/load.sh RSHELL_BINARY
#
# What it touches, all removed again by the EXIT trap (also after a failure):
#   accounts rsld_* (GECOS "rshell-load"; an existing account without it is never
#   touched), /srv/rshell-load, /usr/local/libexec/rshell-load, a temp dir. Nothing in /etc
#   or /dev: the private sshd runs in its own mount namespace over a copy of /etc (holding
#   the test policy as /etc/rshell.toml) and a small tmpfs /dev (device nodes plus
#   /dev/log, a symlink to our syslog collector), so the faults can replace the policy,
#   remove /dev/log or mount a tiny tmpfs on a root without a trace outside, and without
#   disturbing a tests/e2e/run.sh running at the same time (own accounts, port and lock).
# Knobs: LOAD_ROUNDS (transfers per client, default 3), LOAD_PAIRS (unloaded interleaved
# rshell-vs-/bin/sh pairs, default 40), LOAD_KEEP_LOGS=DIR (sshd log, syslog capture,
# every output), LOAD_ONLY=load|faults (one half; the lock-wait refusal runs with both).
# Output: `ok - NAME` / `FAIL - NAME: why` per scenario, `# ` notes with the measurements,
# then `load: N passed, M failed`; exit status 0 only if every scenario passed.
set -uo pipefail
umask 022
export LC_ALL=C.UTF-8
unset RSYNC_RSH RSYNC_PROTECT_ARGS RSYNC_OLD_ARGS RSYNC_CONNECT_PROG POSIXLY_CORRECT
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

[ $# -eq 1 ] || die "usage: $0 RSHELL_BINARY"
[ "$(id -u)" -eq 0 ] || die "must run as root (creates accounts, runs sshd, mounts in a namespace)"
BIN_SRC=$(readlink -f "$1")
[ -f "$BIN_SRC" ] && [ -x "$BIN_SRC" ] || die "not an executable: $1"
for tool in /usr/sbin/sshd ssh ssh-keygen rsync gcc unshare nsenter useradd userdel timeout \
  flock setsid mount mknod pgrep sha256sum; do
  command -v "$tool" >/dev/null || die "missing tool: $tool (packages: openssh-server openssh-client rsync gcc libc6-dev util-linux mount passwd procps)"
done

T0=$SECONDS
LD=/srv/rshell-load
LIBEXEC=/usr/local/libexec/rshell-load
RSHELL=$LIBEXEC/rshell
MARKER_GECOS=rshell-load
LOCKFILE=/run/rshell-load.lock
H=127.0.0.1
ROUNDS=${LOAD_ROUNDS:-3}
PAIRS=${LOAD_PAIRS:-40}
CLIENT=$LD/client
OUTDIR=$CLIENT/out
KEY=$CLIENT/key
GOT=$CLIENT/got
# The load: 5 rshell accounts, 50 client slots (l1..l4: 4 pushes + 6 pulls each; hot: 10
# pushes into one root, which the root lock serialises) and the same 50 slots against 5
# /bin/sh accounts. The faults get accounts of their own (policies differ).
RS_LOAD=(rsld_l1 rsld_l2 rsld_l3 rsld_l4 rsld_hot)
SH_LOAD=(rsld_s1 rsld_s2 rsld_s3 rsld_s4 rsld_shot)
FAULT_USERS=(rsld_lk rsld_f1 rsld_f2 rsld_f2t rsld_full rsld_f4 rsld_cf rsld_cf2 rsld_rb rsld_rb2 rsld_st rsld_st0)
ALL_USERS=("${RS_LOAD[@]}" "${SH_LOAD[@]}" "${FAULT_USERS[@]}")
CREATED_USERS=()
LIBEXEC_PARENT_CREATED=""
SSHD_PID=""
SYSLOGD_PID=""
BG_PIDS=()      # background process groups started here (setsid), killed on exit
WORK=""
SECRET="rshell-load-no-secret-$RANDOM$RANDOM"   # nothing secret is planted; lib.sh greps for it
SHADOW_NEEDLE=$(grep -m1 -E '^[^:]+:[^:*!]{8,}' /etc/shadow | cut -d: -f2)
[ -n "$SHADOW_NEEDLE" ] || SHADOW_NEEDLE=$SECRET

# ---- cleanup -----------------------------------------------------------------------------
kill_account_procs() { # every process still running as a test account (ids, never names)
  local u p
  for u in "${CREATED_USERS[@]}"; do
    for p in $(pgrep -u "$u" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  done
}
# kill_mine PID: end a background process started here, and its process group (setsid),
# only while it is still our child or grandchild: a PID that has ended may belong to
# someone else now.
kill_mine() {
  local pp
  pp=$(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ')
  [ -n "$pp" ] || return 0
  [ "$pp" = "$$" ] || [ "$(ps -o ppid= -p "$pp" 2>/dev/null | tr -d ' ')" = "$$" ] || return 0
  kill -9 -- "-$1" 2>/dev/null
  kill -9 "$1" 2>/dev/null
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "${LOAD_KEEP_LOGS:-}" ] && [ -n "$WORK" ]; then
    mkdir -p "$LOAD_KEEP_LOGS" && cp -a "$WORK/sshd.log" "$WORK/syslog.txt" "$WORK/results.txt" "$OUTDIR" "$LOAD_KEEP_LOGS/" 2>/dev/null
  fi
  local p
  for p in "${BG_PIDS[@]}"; do kill_mine "$p"; done
  if [ -n "$SSHD_PID" ] && kill -0 "$SSHD_PID" 2>/dev/null; then
    kill "$SSHD_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SSHD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SSHD_PID" 2>/dev/null
    wait "$SSHD_PID" 2>/dev/null
  fi
  kill_account_procs
  if [ -n "$SYSLOGD_PID" ]; then kill "$SYSLOGD_PID" 2>/dev/null; wait "$SYSLOGD_PID" 2>/dev/null; fi
  local u i
  for u in "${CREATED_USERS[@]}"; do
    if [ "$(getent passwd "$u" | cut -d: -f5)" = "$MARKER_GECOS" ]; then
      for i in 1 2 3 4 5; do # another run's useradd may hold /etc/passwd's lock a moment
        userdel -r "$u" >/dev/null 2>&1 && break
        kill_account_procs; sleep 1
      done
      getent passwd "$u" >/dev/null && echo "load: warning: could not remove account $u" >&2
      getent group "$u" >/dev/null && groupdel "$u" 2>/dev/null
    fi
  done
  [ -f "$LD/.rshell-load" ] && rm -rf --one-file-system "$LD"
  [ -f "$LIBEXEC/.rshell-load" ] && rm -rf "$LIBEXEC"
  [ -n "$LIBEXEC_PARENT_CREATED" ] && rmdir /usr/local/libexec 2>/dev/null
  [ -n "$WORK" ] && rm -rf "$WORK"
  exit "$rc"
}

exec 8>"$LOCKFILE"
flock -n 8 || die "another load run holds $LOCKFILE"
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- refuse to clobber anything that is not ours --------------------------------------------
reclaim_leftover_accounts "${ALL_USERS[@]}"
for d in "$LD" "$LIBEXEC"; do
  if [ -e "$d" ]; then
    [ -f "$d/.rshell-load" ] || die "$d exists and is not ours: not touching it"
    note "removing leftover $d"
    rm -rf --one-file-system "$d"
  fi
done

# ---- directories, binary, helpers --------------------------------------------------------
WORK=$(mktemp -d /tmp/rshell-load.XXXXXX)
chmod 0711 "$WORK" # the accounts reach the syslog sockets through it; nothing else
mkdir -p "$LD" && chmod 0755 "$LD" && : >"$LD/.rshell-load"
mkdir -p "$CLIENT" "$OUTDIR" "$GOT" && chmod 0700 "$CLIENT"
[ -d /usr/local/libexec ] || LIBEXEC_PARENT_CREATED=1
mkdir -p "$LIBEXEC" && : >"$LIBEXEC/.rshell-load" && chmod 0755 "$LIBEXEC"
install -m 0755 -o root -g root "$BIN_SRC" "$RSHELL"
# An rsync that is there but not executable (fault: rsync binary not executable).
install -m 0644 -o root -g root /usr/bin/rsync "$LIBEXEC/rsync-0644"

printf '%s\n' "$SYSLOG_C" >"$WORK/syslogd.c"
# A syslog daemon that stopped reading: binds the socket, fills its queue until the kernel
# says EAGAIN (net.unix.max_dgram_qlen), then never reads.
cat >"$WORK/stall.c" <<'EOF'
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc != 2) return 64;
  int s = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
  unlink(argv[1]);
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0) return 71;
  chmod(argv[1], 0666);
  int c = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  int n = 0;
  while (n < 100000 && sendto(c, "<38>fill", 8, 0, (struct sockaddr *)&a, sizeof a) == 8) n++;
  printf("queued %d datagrams, then: %s\n", n, strerror(errno));
  fflush(stdout);
  for (;;) pause();
}
EOF
# glibc's syslog(3): a blocking send on a datagram socket, no timeout (the twin of rshell's
# bounded send).
cat >"$WORK/sysl.c" <<'EOF'
#include <syslog.h>
int main(void) {
  openlog("rsld-twin", LOG_PID, LOG_AUTHPRIV);
  syslog(LOG_INFO, "a blocking syslog(3) send");
  return 0;
}
EOF
for c in syslogd stall sysl; do
  gcc -O2 -o "$WORK/$c" "$WORK/$c.c" || die "cannot build $c.c"
done
chmod 0755 "$WORK/sysl"

# ---- accounts ------------------------------------------------------------------------------
root_of() { printf '%s/%s' "$LD" "${1#rsld_}"; }
add_user() { # NAME SHELL
  local i
  for i in 1 2 3 4 5; do # tests/e2e/run.sh may be adding its accounts right now (passwd lock)
    useradd -m -c "$MARKER_GECOS" -s "$2" -U "$1" 2>"$WORK/useradd.err" && break
    sleep 1
  done
  getent passwd "$1" >/dev/null || die "useradd $1 failed: $(cat "$WORK/useradd.err")"
  CREATED_USERS+=("$1")
  usermod -p '*' "$1" 2>/dev/null || { sleep 1; usermod -p '*' "$1"; }
  install -d -m 0700 -o "$1" -g "$1" "/home/$1/.ssh"
  install -m 0600 -o "$1" -g "$1" "$KEY.pub" "/home/$1/.ssh/authorized_keys"
  install -d -m 0755 -o "$1" -g "$1" "$(root_of "$1")"
}
ssh-keygen -q -t ed25519 -N '' -C rshell-load -f "$KEY" || die "ssh-keygen failed"
for u in "${RS_LOAD[@]}" "${FAULT_USERS[@]}"; do add_user "$u" "$RSHELL"; done
for u in "${SH_LOAD[@]}"; do add_user "$u" /bin/sh; done

# ---- fixtures ------------------------------------------------------------------------------
# tree: 12 small files (1-48 KiB) in 3 directories, for the load.
make_tree() {
  local d=$1 i
  mkdir -p "$d/a" "$d/b/c"
  for i in 1 2 3 4; do
    head -c $((i * 4096)) /dev/urandom >"$d/a/f$i"
    head -c $((i * 8192 + 17)) /dev/urandom >"$d/b/g$i"
    head -c $((i * 12288 + 5)) /dev/urandom >"$d/b/c/h$i"
  done
}
# digest DIR: one hash over every regular file's relative name and content.
digest() { (cd "$1" 2>/dev/null && find . -type f -printf '%P\0' | sort -z | xargs -0 -r sha256sum) | sha256sum | cut -c1-16; }
sha() { sha256sum <"$1" 2>/dev/null | cut -c1-16; }
make_tree "$CLIENT/tree"
TREE_DIGEST=$(digest "$CLIENT/tree")
mkdir -p "$CLIENT/small" "$CLIENT/big" "$CLIENT/five"
printf 'small %s\n' "$RANDOM" >"$CLIENT/small/x.txt"
head -c 524288 /dev/urandom >"$CLIENT/big/a.bin"
head -c 3145728 /dev/urandom >"$CLIENT/big/b.bin"
head -c 5242880 /dev/urandom >"$CLIENT/five/big5.bin"
head -c 3145728 /dev/urandom >"$WORK/old-b.bin"   # what the server holds as b.bin before a push
SMALL_DIGEST=$(digest "$CLIENT/small")
BIG_DIGEST=$(digest "$CLIENT/big")

# ---- load slots: "SLOT ACCOUNT-INDEX KIND" -------------------------------------------------
SLOTS=()
slot=0
for a in 0 1 2 3; do
  for k in push push push push pull pull pull pull pull pull; do SLOTS+=("$slot $a $k"); slot=$((slot + 1)); done
done
for _ in 1 2 3 4 5 6 7 8 9 10; do SLOTS+=("$slot 4 push"); slot=$((slot + 1)); done
# Pull sources on the server, one per pull and round (so every connection's command, and
# hence its allow record, is unique), for both the rshell and the /bin/sh accounts.
for s in "${SLOTS[@]}"; do
  read -r n a k <<<"$s"
  [ "$k" = pull ] || continue
  for ((r = 1; r <= ROUNDS; r++)); do
    for u in "${RS_LOAD[$a]}" "${SH_LOAD[$a]}"; do
      cp -a "$CLIENT/tree" "$(root_of "$u")/pull-$n-$r"
    done
  done
done
for u in "${RS_LOAD[@]}" "${SH_LOAD[@]}"; do chown -R "$u:$u" "$(root_of "$u")"; done
R_F1=$(root_of rsld_f1)
mkdir -p "$R_F1/pullsrc" && head -c 4194304 /dev/urandom >"$R_F1/pullsrc/big.bin" && chown -R rsld_f1: "$R_F1"
PULLSRC_DIGEST=$(digest "$R_F1/pullsrc")

# ---- policy (a copy of /etc, bind-mounted over /etc in sshd's namespace) ---------------------
write_policy() { # FILE: the standard policy
  {
    printf '# rshell load/fault test policy\nversion = 1\n\n[defaults]\nrsync = "/usr/bin/rsync"\nroot = "~/backup"\n'
    local u
    for u in "${RS_LOAD[@]}" rsld_lk rsld_f1 rsld_f2 rsld_full rsld_f4 rsld_cf rsld_cf2; do
      printf '\n[users.%s]\nroot = "%s"\n' "$u" "$(root_of "$u")"
    done
    printf '\n# twin: no outcome record and no idle timeout, so rshell execs rsync without forking\n'
    printf '[users.rsld_f2t]\nroot = "%s"\nlog_outcome = false\ntimeout = 0\n' "$(root_of rsld_f2t)"
    printf '\n[users.rsld_rb]\nroot = "%s"\nrsync = "%s/no-such-rsync"\n' "$(root_of rsld_rb)" "$LIBEXEC"
    printf '\n[users.rsld_rb2]\nroot = "%s"\nrsync = "%s/rsync-0644"\n' "$(root_of rsld_rb2)" "$LIBEXEC"
    printf '\n[users.rsld_st]\nroot = "%s"\ntimeout = 3\n' "$(root_of rsld_st)"
    printf '\n# twin: no idle timeout\n[users.rsld_st0]\nroot = "%s"\ntimeout = 0\n' "$(root_of rsld_st0)"
  } >"$1"
}
ETC=$WORK/etc
cp -a /etc "$ETC" || die "cannot copy /etc"
chown root:root "$ETC" && chmod 0755 "$ETC"
rm -f "$ETC/rshell.toml"
write_policy "$WORK/policy-v1.toml"
# replace_policy FILE: atomically, as an administrator's editor or package manager would
# (write a new file, rename it over the old one).
replace_policy() {
  install -m 0644 -o root -g root "$1" "$ETC/.rshell.toml.new" && mv -f "$ETC/.rshell.toml.new" "$ETC/rshell.toml"
}
replace_policy "$WORK/policy-v1.toml"

# ---- syslog collector and private sshd ----------------------------------------------------------
SYSLOG=$WORK/syslog.txt
: >"$SYSLOG"
"$WORK/syslogd" "$WORK/devlog" "$SYSLOG" &
SYSLOGD_PID=$!
for _ in $(seq 50); do [ -S "$WORK/devlog" ] && break; sleep 0.1; done
[ -S "$WORK/devlog" ] || die "syslog collector did not start"
mkdir -p /run/sshd && chmod 0755 /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$WORK/hostkey" || die "host key"
cat >"$WORK/ns-init.sh" <<'EOF'
#!/bin/sh
# Runs inside `unshare -m --propagation private`: our /etc copy, a tmpfs /dev with the
# device nodes sshd, rshell and rsync use, /dev/log -> the collector; then sshd itself.
set -e
W=$1
mount --bind "$W/etc" /etc
mount -t tmpfs -o mode=0755,size=1m rsld-dev /dev
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/full c 1 7
mknod -m 666 /dev/random c 1 8
mknod -m 666 /dev/urandom c 1 9
mknod -m 666 /dev/tty c 5 0
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
ln -s "$W/devlog" /dev/log
exec /usr/sbin/sshd -D -f "$W/sshd_config" -E "$W/sshd.log"
EOF
configure_sshd() { write_sshd_config "$1" 'rsld_*' 200 10 60; }
launch_sshd() { unshare -m --propagation private /bin/sh "$WORK/ns-init.sh" "$WORK" & }
start_private_sshd configure_sshd launch_sshd
note "private sshd pid $SSHD_PID on 127.0.0.1:$PORT; rshell under test: $BIN_SRC"
# in_ns CMD...: run a command in sshd's mount namespace (the accounts' view).
in_ns() { nsenter -t "$SSHD_PID" -m -- "$@"; }
# KexAlgorithms: OpenSSH 9.x's default sntrup761x25519 costs about 0.3 s of CPU per side and
# connection on this class of machine, which would drown what is measured here (rshell vs
# /bin/sh behind the same sshd); curve25519 costs a few ms. Both account kinds use it.
ssh_for() { # PORT
  printf 'ssh -F /dev/null -p %s -i %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=30 -o LogLevel=ERROR -o IdentitiesOnly=yes -o ControlMaster=no -o ServerAliveInterval=5 -o ServerAliveCountMax=6 -o KexAlgorithms=curve25519-sha256' "$1" "$KEY"
}
SSH=$(ssh_for "$PORT")
note "setup took $((SECONDS - T0)) s"
if [ -n "${LOAD_HOLD:-}" ]; then # debugging: keep the set-up alive for LOAD_HOLD seconds
  note "holding for $LOAD_HOLD s: PORT=$PORT KEY=$KEY SSHD_PID=$SSHD_PID WORK=$WORK"
  for _ in $(seq "$LOAD_HOLD"); do sleep 1; done
fi
# run NAME FUNC [ARGS...]: a scenario, unless LOAD_SCENARIOS (an ERE) leaves it out.
run() {
  if [ -n "${LOAD_SCENARIOS:-}" ] && ! [[ $1 =~ $LOAD_SCENARIOS ]]; then return 0; fi
  scenario "$@"
}

# ---- helpers for the scenarios ----------------------------------------------------------------
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# rsx RSYNC-ARGS...: rsync over the private sshd, captured by runx (60 s bound).
rsx() { runx rsync -e "$SSH" "$@"; }
rsx_ok() {
  rsx "$@"
  [ "$LAST_RC" -eq 0 ] || why "rsync ${*:(-2)} exited $LAST_RC: $(grep -m1 -v '^$' "$LAST_ERR" | cut -c1-300)"
}
# sshc USER COMMAND: the command through ssh (its exit status is the remote one).
sshc() { local u=$1; shift; runx $SSH "$u@$H" "$@"; }   # shellcheck disable=SC2086
# start_client NAME RSYNC-ARGS...: a background rsync client in its own session (so its
# ssh child can be found and ended with it); CPID is rsync's PID and process group. A
# subshell waits for it and writes "STATUS END_MS" to NAME.rc (and, as it is not killed
# itself, bash prints no job notice when a test kills the client).
declare -A BG_NAME=()
start_client() { local name=$1; shift; start_bg "$name" rsync -e "$SSH" "$@"; }
# start_bg NAME CMD...: the same for any command.
start_bg() {
  local name=$1 i; shift
  rm -f "$OUTDIR/$name.pid" "$OUTDIR/$name.rc"
  (
    setsid "$@" </dev/null >"$OUTDIR/$name.out" 2>"$OUTDIR/$name.err" &
    echo "$!" >"$OUTDIR/$name.pid"
    wait "$!"
    echo "$? $(now_ms)" >"$OUTDIR/$name.rc"
  ) 2>/dev/null &
  BG_PIDS+=("$!")
  for ((i = 0; i < 100; i++)); do [ -s "$OUTDIR/$name.pid" ] && break; sleep 0.02; done
  CPID=$(cat "$OUTDIR/$name.pid")
  BG_PIDS+=("$CPID")
  BG_NAME[$CPID]=$name
}
# finish PID SECS: wait at most SECS for a client of start_client to end; sets BG_RC (its
# exit status) and BG_END (when it ended, ms), or returns 1.
finish() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    if [ -s "$OUTDIR/${BG_NAME[$1]}.rc" ]; then
      read -r BG_RC BG_END <"$OUTDIR/${BG_NAME[$1]}.rc"
      return 0
    fi
    sleep 0.1
  done
  return 1
}
# Processes are looked at without zombies: a zombie has closed its files (the lock too), and
# PID 1 of this machine reaps orphans late, so pgrep alone would count the dead.
# rsync_pids USER: the live rsync processes of USER.
rsync_pids() { ps -o pid=,stat=,comm= -u "$1" 2>/dev/null | awk '$2 !~ /^Z/ && $3 == "rsync" { print $1 }'; }
nprocs() { rsync_pids "$1" | wc -l; }
# alive PID: running, not a zombie
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]; }
# wait_procs USER N SECS: at least N rsync processes of USER are running.
wait_procs() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do [ "$(nprocs "$1")" -ge "$2" ] && return 0; sleep 0.1; done
  return 1
}
# main_rsync USER: the server's first rsync (generator or sender), whose parent is not rsync.
parent_comm() { ps -o comm= -p "$(ps -o ppid= -p "$1" | tr -d ' ')" 2>/dev/null; }
main_rsync() {
  local p pp
  for p in $(rsync_pids "$1"); do
    pp=$(ps -o ppid= -p "$p" | tr -d ' ')
    [ "$(ps -o comm= -p "$pp")" = rsync ] || { echo "$p"; return; }
  done
}
lock_free() { in_ns flock -n -x "$(root_of "$1")" true; }
# server_gone USER SECS: no rshell/rsync of USER is left and its root lock is free; sets GONE_MS.
server_gone() {
  local t0 i
  t0=$(now_ms)
  for ((i = 0; i < $2 * 20; i++)); do
    if [ "$(live_procs "$1" | grep -c -E ' (rshell|rsync)$')" -eq 0 ] && lock_free "$1"; then
      GONE_MS=$(($(now_ms) - t0)); return 0
    fi
    sleep 0.05
  done
  return 1
}
# live_procs USERS: "PID COMM" of every process of those accounts (comma-separated) but zombies.
live_procs() { ps -o pid=,stat=,comm= -u "$1" 2>/dev/null | awk '$2 !~ /^Z/ { print $1, $3 }'; }
mark() { syslog_mark; }
since() { tail -n +"$((SYSLOG_AT + 1))" "$SYSLOG"; }
count_since() { since | grep -c -E -- "$1"; }
# wait_records PATTERN N SECS: at least N records matching since the mark.
wait_records() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do [ "$(count_since "$1")" -ge "$2" ] && return 0; sleep 0.1; done
  return 1
}
# one_outcome USER: exactly one allow and one outcome record of USER since the mark;
# OUTCOME is that outcome record's status (exit=N or signal=N, plus idle_timeout=N).
one_outcome() {
  wait_records "rshell\[[0-9]+\]: outcome user=$1 " 1 5 || why "no outcome record for $1" || return 1
  sleep 0.3 # a duplicate would follow at once
  local na no
  na=$(count_since "rshell\[[0-9]+\]: allow user=$1 ")
  no=$(count_since "rshell\[[0-9]+\]: outcome user=$1 ")
  [ "$na" -eq 1 ] && [ "$no" -eq 1 ] || why "$1: $na allow and $no outcome records, want 1 and 1" || return 1
  OUTCOME=$(since | grep -E "rshell\[[0-9]+\]: outcome user=$1 " | grep -o -E '(exit|signal)=[0-9]+( .*idle_timeout=[0-9]+)?' | sed -E 's/ read_bytes=[0-9]+ written_bytes=[0-9]+| io=unknown//')
}
# fresh_dst USER DIR: DIR beneath the root holds the old b.bin (owned by the account).
fresh_dst() {
  local r
  r=$(root_of "$1")
  rm -rf "${r:?}/$2" && mkdir -p "$r/$2" && cp "$WORK/old-b.bin" "$r/$2/b.bin" && chown -R "$1:" "$r/$2"
}
OLD_B=$(sha "$WORK/old-b.bin")
NEW_B=$(sha "$CLIENT/big/b.bin")
temps() { find "$1" -maxdepth 1 -name '.*.*' -printf '%f ' 2>/dev/null; }

# ================================ load ===========================================================
RESULTS=$WORK/results.txt
: >"$RESULTS"
# worker PHASE SLOT ACCOUNT KIND PREFIX: ROUNDS transfers, each line:
# phase slot account kind name rc start_ns end_ns
worker() {
  local phase=$1 n=$2 u=$3 k=$4 prefix=$5 r name rc t0 t1 o
  for ((r = 1; r <= ROUNDS; r++)); do
    name=$k-$n-$r
    o=$OUTDIR/$phase-$name
    t0=$(date +%s%N)
    if [ "$k" = push ]; then
      timeout -k 5 100 rsync -a -e "$SSH" "$CLIENT/tree/" "$u@$H:$prefix$name/" </dev/null >"$o.out" 2>"$o.err"
    else
      timeout -k 5 100 rsync -a -e "$SSH" "$u@$H:$prefix$name/" "$GOT/$phase/$u/$name/" </dev/null >"$o.out" 2>"$o.err"
    fi
    rc=$?
    t1=$(date +%s%N)
    printf '%s %s %s %s %s %s %s %s\n' "$phase" "$n" "$u" "$k" "$name" "$rc" "$t0" "$t1" >>"$RESULTS"
  done
}
# run_phase PHASE: the 50 slots at once against the rshell (rs) or /bin/sh (sh) accounts.
run_phase() {
  local phase=$1 pids=() s n a k u prefix
  for s in "${SLOTS[@]}"; do
    read -r n a k <<<"$s"
    if [ "$phase" = rs ]; then u=${RS_LOAD[$a]} prefix=""; else u=${SH_LOAD[$a]} prefix="$(root_of "$u")/"; fi
    mkdir -p "$GOT/$phase/$u"
    worker "$phase" "$n" "$u" "$k" "$prefix" &
    pids+=($!)
  done
  local p
  for p in "${pids[@]}"; do wait "$p"; done
}
# pct P: the P-th percentile (nearest rank) of the numbers on stdin.
pct() { sort -n | awk -v p="$1" '{ a[NR] = $1 } END { if (NR == 0) { print "nan"; exit } i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1; print a[i] }'; }
# phase_stats PHASE [ACCOUNT-ERE [KIND-ERE]]: "n wall_s conn_per_s p50_ms p99_ms"
phase_stats() {
  local sel
  sel=$(awk -v ph="$1" -v re="${2:-.}" -v k="${3:-.}" '$1 == ph && $3 ~ re && $4 ~ k' "$RESULTS")
  local n first last p50 p99
  n=$(printf '%s\n' "$sel" | grep -c .)
  first=$(printf '%s\n' "$sel" | awk '{ print $7 }' | sort -n | head -n1)
  last=$(printf '%s\n' "$sel" | awk '{ print $8 }' | sort -n | tail -n1)
  p50=$(printf '%s\n' "$sel" | awk '{ print int(($8 - $7) / 1000000) }' | pct 50)
  p99=$(printf '%s\n' "$sel" | awk '{ print int(($8 - $7) / 1000000) }' | pct 99)
  awk -v n="$n" -v f="$first" -v l="$last" -v a="$p50" -v b="$p99" \
    'BEGIN { w = (l - f) / 1e9; printf "%d %.1f %.1f %d %d\n", n, w, (w > 0 ? n / w : 0), a, b }'
}

# The lock-wait refusal runs beside the load: a holder that never lets go (flock(1) on the
# root, as any other locker would), and a writer that must give up after 60 s with a clear
# refusal. Checked after the load.
LK_NAME="a writer facing a root locked for good is refused after the 60 s wait, with a deny record"
LK_ROOT=$(root_of rsld_lk)
if [ -z "${LOAD_SCENARIOS:-}" ] || [[ $LK_NAME =~ $LOAD_SCENARIOS ]]; then
  start_bg lkholder flock -x "$LK_ROOT" sleep 100
  LK_HOLDER=$CPID
  for _ in $(seq 50); do in_ns flock -n -x "$LK_ROOT" true || break; sleep 0.1; done
  mark; LK_MARK=$SYSLOG_AT
  LK_T0=$(now_ms)
  start_client lockwait -a "$CLIENT/small/" "rsld_lk@$H:dst/"
  LK_PID=$CPID
fi

t_load_rshell() {
  local t0=$SECONDS
  mark
  run_phase rs
  local bad=0 line phase n u k name rc t0n t1n pid
  local fails=() nodata=() norec=()
  while read -r phase n u k name rc t0n t1n; do
    [ "$phase" = rs ] || continue
    if [ "$rc" -ne 0 ]; then
      if grep -q 'rshell: denied: .*lock' "$OUTDIR/rs-$name.err"; then
        note "$u $name: refused after the lock wait (allowed outcome): $(head -n1 "$OUTDIR/rs-$name.err")"
        continue
      fi
      fails+=("$u/$name:rc=$rc:$(head -c 200 "$OUTDIR/rs-$name.err" | tr '\n' ' ')"); continue
    fi
    if [ "$k" = push ]; then
      [ "$(digest "$(root_of "$u")/$name")" = "$TREE_DIGEST" ] || nodata+=("$u/$name")
    else
      [ "$(digest "$GOT/rs/$u/$name")" = "$TREE_DIGEST" ] || nodata+=("$u/$name")
    fi
    # its allow record (the command names this transfer's directory) and, by the same
    # rshell PID, exactly one outcome record with exit=0
    local allow
    allow=$(since | grep -E "rshell\[[0-9]+\]: allow user=$u .*command=\"[^\"]* \\. $name/\"")
    if [ "$(printf '%s\n' "$allow" | grep -c .)" -ne 1 ]; then norec+=("$u/$name:allow×$(printf '%s\n' "$allow" | grep -c .)"); continue; fi
    pid=$(printf '%s\n' "$allow" | sed -E 's/^.*rshell\[([0-9]+)\]: allow .*/\1/')
    if [ "$(since | grep -c -E "rshell\[$pid\]: outcome user=$u .* exit=0 ")" -ne 1 ]; then
      norec+=("$u/$name:outcome($(since | grep -E "rshell\[$pid\]: outcome" | grep -o -E '(exit|signal)=[0-9]+' | tr '\n' ','))")
    fi
  done <"$RESULTS"
  local total allows outcomes users_re
  users_re="($(IFS='|'; echo "${RS_LOAD[*]}"))"
  total=$(awk '$1 == "rs"' "$RESULTS" | wc -l)
  allows=$(count_since "rshell\[[0-9]+\]: allow user=$users_re ")
  outcomes=$(count_since "rshell\[[0-9]+\]: outcome user=$users_re ")
  read -r RS_N RS_WALL RS_CPS RS_P50 RS_P99 <<<"$(phase_stats rs)"
  read -r _ _ _ RS_P50_NH RS_P99_NH <<<"$(phase_stats rs 'rsld_l[0-9]')"
  read -r _ _ _ RS_P50_PU RS_P99_PU <<<"$(phase_stats rs . pull)"
  note "load average after the rshell phase: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores, shared)"
  note "rshell load: $RS_N transfers by 50 concurrent clients in $RS_WALL s = $RS_CPS connections/s; latency p50 $RS_P50 ms, p99 $RS_P99 ms (without the hot root: p50 $RS_P50_NH ms, p99 $RS_P99_NH ms); records: $allows allow, $outcomes outcome"
  [ ${#fails[@]} -eq 0 ] || why "${#fails[@]} transfers failed: ${fails[*]:0:3}" || return 1
  [ ${#nodata[@]} -eq 0 ] || why "${#nodata[@]} transfers with wrong data: ${nodata[*]:0:5}" || return 1
  [ ${#norec[@]} -eq 0 ] || why "${#norec[@]} transfers without their records: ${norec[*]:0:5}" || return 1
  [ "$total" -eq $((${#SLOTS[@]} * ROUNDS)) ] || why "$total results, want $((${#SLOTS[@]} * ROUNDS))" || return 1
  [ "$allows" -eq "$total" ] && [ "$outcomes" -eq "$total" ] ||
    why "$allows allow and $outcomes outcome records for $total transfers" || return 1
  [ $((SECONDS - t0)) -le 120 ] || why "the load took $((SECONDS - t0)) s (> 120 s)"
}

t_load_sh() {
  run_phase sh
  local phase n u k name rc t0n t1n fails=() nodata=()
  while read -r phase n u k name rc t0n t1n; do
    [ "$phase" = sh ] || continue
    [ "$rc" -eq 0 ] || { fails+=("$u/$name:rc=$rc"); continue; }
    if [ "$k" = push ]; then
      [ "$(digest "$(root_of "$u")/$name")" = "$TREE_DIGEST" ] || nodata+=("$u/$name")
    else
      [ "$(digest "$GOT/sh/$u/$name")" = "$TREE_DIGEST" ] || nodata+=("$u/$name")
    fi
  done <"$RESULTS"
  read -r SH_N SH_WALL SH_CPS SH_P50 SH_P99 <<<"$(phase_stats sh)"
  read -r _ _ _ SH_P50_NH SH_P99_NH <<<"$(phase_stats sh 'rsld_s[0-9]')"
  read -r _ _ _ SH_P50_PU SH_P99_PU <<<"$(phase_stats sh . pull)"
  note "load average after the /bin/sh phase: $(cut -d' ' -f1-3 /proc/loadavg)"
  note "/bin/sh load: $SH_N transfers by 50 concurrent clients in $SH_WALL s = $SH_CPS connections/s; latency p50 $SH_P50 ms, p99 $SH_P99 ms (without the hot root: p50 $SH_P50_NH ms, p99 $SH_P99_NH ms)"
  note "added by rshell under load: p50 $((RS_P50 - SH_P50)) ms, p99 $((RS_P99 - SH_P99)) ms (all slots, incl. writers queueing for the hot root's lock); without the hot root: p50 $((RS_P50_NH - SH_P50_NH)) ms, p99 $((RS_P99_NH - SH_P99_NH)) ms; pulls only (shared lock, but they wait for a root's writer): p50 $((RS_P50_PU - SH_P50_PU)) ms, p99 $((RS_P99_PU - SH_P99_PU)) ms"
  [ ${#fails[@]} -eq 0 ] || why "${#fails[@]} /bin/sh transfers failed: ${fails[*]:0:3}" || return 1
  [ ${#nodata[@]} -eq 0 ] || why "${#nodata[@]} /bin/sh transfers with wrong data: ${nodata[*]:0:5}"
}

t_pairs() {
  # Unloaded: interleaved no-change pushes of the same tree, rshell account vs /bin/sh account.
  local i u t0 t1 rs=() sh=()
  rsx_ok -a "$CLIENT/tree/" "rsld_l1@$H:pairs/" || return 1
  rsx_ok -a "$CLIENT/tree/" "rsld_s1@$H:$(root_of rsld_s1)/pairs/" || return 1
  for ((i = 0; i < PAIRS; i++)); do
    for u in $([ $((i % 2)) -eq 0 ] && echo "rsld_l1 rsld_s1" || echo "rsld_s1 rsld_l1"); do
      local dst=pairs/
      [ "$u" = rsld_s1 ] && dst="$(root_of rsld_s1)/pairs/"
      t0=$(date +%s%N)
      rsync -a -e "$SSH" "$CLIENT/tree/" "$u@$H:$dst" </dev/null >/dev/null 2>"$OUTDIR/pairs.err" ||
        { why "pair run $i as $u failed: $(head -c 200 "$OUTDIR/pairs.err")"; return 1; }
      t1=$(date +%s%N)
      if [ "$u" = rsld_l1 ]; then rs+=($(((t1 - t0) / 1000))); else sh+=($(((t1 - t0) / 1000))); fi
    done
  done
  local r50 r99 s50 s99
  r50=$(printf '%s\n' "${rs[@]}" | pct 50); r99=$(printf '%s\n' "${rs[@]}" | pct 99)
  s50=$(printf '%s\n' "${sh[@]}" | pct 50); s99=$(printf '%s\n' "${sh[@]}" | pct 99)
  PAIR_LINE=$(awk -v a="$r50" -v b="$r99" -v c="$s50" -v d="$s99" -v n="$PAIRS" 'BEGIN {
    printf "unloaded, %d interleaved pairs of a no-change push: rshell p50 %.1f ms p99 %.1f ms; /bin/sh p50 %.1f ms p99 %.1f ms; added p50 %+.1f ms, p99 %+.1f ms", n, a/1000, b/1000, c/1000, d/1000, (a-c)/1000, (b-d)/1000 }')
  note "$PAIR_LINE"
}

if [ "${LOAD_ONLY:-}" != faults ]; then
  run "load: 50 concurrent clients x $ROUNDS (5 rshell accounts, 10 writers on one root, mixed push/pull): every transfer verified, allow + outcome record each" t_load_rshell
  run "load: the same 50 clients against /bin/sh accounts (the baseline)" t_load_sh
  run "latency: interleaved unloaded pairs, rshell vs /bin/sh" t_pairs
fi

# ================================ faults =========================================================

# -- client killed mid-push ------------------------------------------------------------------
t_client_killed_push() { # [--inplace]: the twin without rsync's temp-file-and-rename
  local u=rsld_f1 r
  r=$(root_of rsld_f1)
  fresh_dst "$u" dst
  mark
  start_client f1push -a "$@" --bwlimit=512 "$CLIENT/big/" "$u@$H:dst/"
  wait_procs "$u" 2 15 || why "the server's rsync did not start" || return 1
  sleep 2 # a.bin (512 KiB) is done after about 1 s, b.bin (3 MiB) needs 6 s more
  kill -9 "$CPID"
  finish "$CPID" 10 || why "the killed client did not end" || return 1
  server_gone "$u" 20 || why "the server side lives on 20 s after the client was killed" || return 1
  local b
  b=$(sha "$r/dst/b.bin")
  if [ "${1:-}" = --inplace ]; then
    [ "$b" != "$OLD_B" ] && [ "$b" != "$NEW_B" ] ||
      why "twin: b.bin is complete (old or new) although --inplace was killed mid-file" || return 1
    note "twin (--inplace, no temp file): b.bin under its final name is now a mix of old and new ($(stat -c %s "$r/dst/b.bin") bytes, digest $b; old $OLD_B, new $NEW_B)"
    return 0
  fi
  [ "$b" = "$OLD_B" ] || why "b.bin under its final name is not the old file (digest $b)" || return 1
  [ ! -e "$r/dst/a.bin" ] || [ "$(sha "$r/dst/a.bin")" = "$(sha "$CLIENT/big/a.bin")" ] ||
    why "a.bin under its final name is incomplete" || return 1
  one_outcome "$u" || return 1
  [[ $OUTCOME == exit=* && $OUTCOME != exit=0* && $OUTCOME != *idle* ]] || why "outcome $OUTCOME, want a non-zero exit" || return 1
  note "client killed mid-push: server side gone and lock free $GONE_MS ms after; outcome $OUTCOME; b.bin intact (old); a.bin $([ -e "$r/dst/a.bin" ] && echo complete || echo absent); temp files left: $(temps "$r/dst")-"
  rsx_ok -a "$CLIENT/small/" "$u@$H:after/" || return 1
  [ "$(digest "$r/after")" = "$SMALL_DIGEST" ] || why "the next push's data differs"
}

# -- client killed mid-pull ------------------------------------------------------------------
t_client_killed_pull() {
  local u=rsld_f1 d=$GOT/f1pull$1
  rm -rf "$d" && mkdir -p "$d"
  mark
  start_client "f1pull$1" -a "${@:2}" --bwlimit=512 "$u@$H:pullsrc/" "$d/"
  wait_procs "$u" 1 15 || why "the server's rsync did not start" || return 1
  sleep 2
  kill -9 "$CPID"
  finish "$CPID" 10 || why "the killed client did not end" || return 1
  server_gone "$u" 20 || why "the server side lives on 20 s after the client was killed" || return 1
  if [ "${2:-}" = --inplace ]; then
    [ -e "$d/big.bin" ] && [ "$(stat -c %s "$d/big.bin")" -lt 4194304 ] ||
      why "twin: no partial big.bin under its final name" || return 1
    note "twin (--inplace pull): the client's big.bin holds $(stat -c %s "$d/big.bin") of 4194304 bytes under its final name"
    return 0
  fi
  [ ! -e "$d/big.bin" ] || why "a partial big.bin under its final name on the client" || return 1
  one_outcome "$u" || return 1
  [[ $OUTCOME != exit=0* && $OUTCOME != *idle* ]] || why "outcome $OUTCOME, want a failure" || return 1
  note "client killed mid-pull: server side gone and lock free $GONE_MS ms after; outcome $OUTCOME; the client's temp file: $(temps "$d")-"
  rsx_ok -a "$u@$H:pullsrc/" "$GOT/f1pull-after/" || return 1
  [ "$(digest "$GOT/f1pull-after")" = "$PULLSRC_DIGEST" ] || why "the next pull's data differs"
}

# -- the server's rsync killed by a signal ------------------------------------------------------
# t_server_killed [stuck]: push, then SIGKILL the server's main rsync (the generator, which
# rshell forked and waits for). With `stuck`, its forked receiver is stopped first, as one
# hanging in a write to a slow file system would be: it will not notice the EOF that sshd
# gives it once the session's command has exited, so only a kill of the whole process
# group ends it.
t_server_killed() {
  local u=rsld_f2 r main others
  r=$(root_of $u)
  fresh_dst "$u" dst
  mark
  start_client f2push -a --bwlimit=512 "$CLIENT/big/" "$u@$H:dst/"
  wait_procs "$u" 2 15 || why "the server's rsync (generator + receiver) did not start" || return 1
  sleep 1
  main=$(main_rsync "$u")
  others=$(rsync_pids "$u" | grep -v -x "$main" | tr '\n' ' ')
  [ -n "$main" ] && [ -n "$others" ] || why "no main rsync + forked receiver to kill" || return 1
  [ "$(parent_comm "$main")" = rshell ] || why "the main rsync's parent is $(parent_comm "$main"), not rshell" || return 1
  # shellcheck disable=SC2086
  [ "${1:-}" = stuck ] && kill -STOP $others
  local t0 i ms=""
  t0=$(now_ms)
  kill -9 "$main"
  for ((i = 0; i < 100; i++)); do lock_free "$u" && { ms=$(($(now_ms) - t0)); break; }; sleep 0.05; done
  [ -n "$ms" ] || why "the lock is still held 5 s after the main rsync was killed" || return 1
  [ "$ms" -le 3000 ] || why "the lock was released only after $ms ms" || return 1
  finish "$CPID" 20 || why "the client did not end" || return 1
  local p
  for p in $others; do ! alive "$p" || why "the forked receiver $p lives on" || return 1; done
  one_outcome "$u" || return 1
  [[ $OUTCOME == signal=9* ]] || why "outcome $OUTCOME, want signal=9" || return 1
  [ "$(sha "$r/dst/b.bin")" = "$OLD_B" ] || why "b.bin under its final name is not the old file" || return 1
  note "server rsync SIGKILLed${1:+ (receiver stopped first)}: lock free after $ms ms, receiver ended, outcome $OUTCOME, client exit $BG_RC; temp files left by the killed receiver: $(temps "$r/dst")-"
  local t1
  t1=$(now_ms)
  rsx_ok -a "$CLIENT/small/" "$u@$H:after/" || return 1
  note "the next writer finished $(($(now_ms) - t1)) ms after it started"
  [ "$(digest "$r/after")" = "$SMALL_DIGEST" ] || why "the next push's data differs"
}

# twin: log_outcome = false and timeout = 0, so rshell execs rsync in place and nobody
# kills the process group when the main rsync dies. First the plain kill: the receiver
# still ends, because sshd closes the session's stdin once the command's process has
# exited and the receiver reads EOF. Then the stuck receiver: it keeps the lock, and a
# second writer waits.
t_server_killed_twin() {
  local u=rsld_f2t main others t0 i ms=""
  fresh_dst "$u" dst
  start_client f2tplain -a --bwlimit=512 "$CLIENT/big/" "$u@$H:dst/"
  wait_procs "$u" 2 15 || why "the server's rsync did not start" || return 1
  sleep 1
  main=$(main_rsync "$u")
  t0=$(now_ms)
  kill -9 "$main"
  for ((i = 0; i < 200; i++)); do lock_free "$u" && { ms=$(($(now_ms) - t0)); break; }; sleep 0.05; done
  finish "$CPID" 20
  [ -n "$ms" ] || why "twin, plain kill: the orphaned receiver kept the lock for 10 s" || return 1
  note "twin, plain kill: without the group kill the orphaned receiver still let go $ms ms later (sshd closed the session's stdin: EOF)"
  fresh_dst "$u" dst
  start_client f2tpush -a --bwlimit=512 "$CLIENT/big/" "$u@$H:dst/"
  local holder=$CPID
  wait_procs "$u" 2 15 || why "the server's rsync did not start" || return 1
  sleep 1
  main=$(main_rsync "$u")
  others=$(rsync_pids "$u" | grep -v -x "$main" | tr '\n' ' ')
  [ -n "$main" ] && [ -n "$others" ] || why "no main rsync + forked receiver" || return 1
  [ "$(parent_comm "$main")" != rshell ] || why "twin: rshell forked although log_outcome = false and timeout = 0" || return 1
  # shellcheck disable=SC2086
  kill -STOP $others
  kill -9 "$main"
  start_client f2twaiter -a "$CLIENT/small/" "$u@$H:after/"
  local waiter=$CPID
  sleep 5
  local p stuck=""
  for p in $others; do alive "$p" && stuck+="$p "; done
  [ -n "$stuck" ] && ! lock_free "$u" && kill -0 "$waiter" 2>/dev/null ||
    why "twin: the lock was released without the process-group kill (receiver alive: ${stuck:-none})" || return 1
  note "twin, stuck receiver: 5 s after the main rsync's SIGKILL the orphaned receiver ($stuck) still holds the lock and the next writer still waits"
  # shellcheck disable=SC2086
  kill -9 $stuck # our bound: end it ourselves; the waiter gets the lock
  kill_mine "$holder"
  finish "$holder" 10
  finish "$waiter" 30 || why "twin: the waiter did not finish after the cleanup" || return 1
  [ "$BG_RC" -eq 0 ] || why "twin: the waiter failed ($BG_RC) after the cleanup"
}

# -- the lock holder killed while a second writer waits ----------------------------------------
t_holder_killed() {
  local u=rsld_f2 r holder waiter
  r=$(root_of $u)
  fresh_dst "$u" dstA
  rm -rf "$r/dstB"
  mark
  start_client f6holder -a --bwlimit=512 "$CLIENT/big/" "$u@$H:dstA/"
  holder=$CPID
  wait_procs "$u" 2 15 || why "the holder's rsync did not start" || return 1
  start_client f6waiter -a "$CLIENT/small/" "$u@$H:dstB/"
  waiter=$CPID
  sleep 2
  kill -0 "$waiter" 2>/dev/null || why "the second writer did not wait for the lock" || return 1
  [ "$(count_since "allow user=$u .*dstB/")" -eq 0 ] || why "the second writer was allowed while the first held the lock" || return 1
  local pids t0
  pids=$(rsync_pids "$u" | tr '\n' ' ')
  t0=$(now_ms)
  # shellcheck disable=SC2086
  kill -9 $pids
  finish "$waiter" 20 || why "the waiting writer did not finish within 20 s of the holder's death" || return 1
  local ms=$(($(now_ms) - t0))
  [ "$BG_RC" -eq 0 ] || why "the waiting writer failed ($BG_RC): $(head -c 200 "$OUTDIR/f6waiter.err")" || return 1
  [ "$ms" -le 5000 ] || why "the waiting writer needed $ms ms after the holder's death" || return 1
  [ "$(digest "$r/dstB")" = "$SMALL_DIGEST" ] || why "the waiter's data differs" || return 1
  finish "$holder" 20
  wait_records "outcome user=$u " 2 5 || why "not two outcome records" || return 1
  local st
  st=$(since | grep -E "outcome user=$u " | grep -o -E '(exit|signal)=[0-9]+' | sort | tr '\n' ' ')
  [ "$st" = "exit=0 signal=9 " ] || why "outcomes: $st, want the holder's signal=9 and the waiter's exit=0" || return 1
  [ "$(count_since "allow user=$u ")" -eq 2 ] || why "not two allow records" || return 1
  [ "$(sha "$r/dstA/b.bin")" = "$OLD_B" ] || why "the holder's b.bin under its final name is not the old file"
  note "lock holder (rsync $pids) SIGKILLed: the waiting writer got in and finished $ms ms later; outcomes $st"
}

# -- the root's file system is full -------------------------------------------------------------
t_fs_full() {
  local u=rsld_full r
  r=$(root_of $u)
  in_ns mount -t tmpfs -o "size=2m,mode=0755,uid=$(id -u $u),gid=$(id -g $u)" rsld-full "$r" ||
    why "cannot mount a tmpfs at $r in the namespace" || return 1
  mark
  rsx -a "$CLIENT/five/" "$u@$H:dst/"
  [ "$LAST_RC" -ne 0 ] || why "a 5 MiB push into 2 MiB succeeded" || return 1
  grep -q 'No space left on device' "$LAST_ERR" || why "no ENOSPC from rsync: $(first_line "$LAST_ERR")" || return 1
  ! grep -q '^rshell' "$LAST_ERR" || why "rshell printed: $(grep -m1 '^rshell' "$LAST_ERR")" || return 1
  local client_rc=$LAST_RC
  one_outcome "$u" || return 1
  [[ $OUTCOME == exit=* && $OUTCOME != exit=0* ]] || why "outcome $OUTCOME, want rsync's error exit" || return 1
  lock_free "$u" || why "lock held after the failed push" || return 1
  in_ns test ! -e "$r/dst/big5.bin" || why "big5.bin exists under its final name" || return 1
  local used
  used=$(in_ns df -k --output=used "$r" | tail -n1 | tr -d ' ')
  note "root's file system full: client exit $client_rc with rsync's '$(grep -m1 -o 'write failed.*No space left on device (28)\|No space left on device[^"]*' "$LAST_ERR" | head -n1)'; outcome $OUTCOME; lock free; no big5.bin; ${used} KiB used afterwards"
  rsx_ok -a "$CLIENT/small/" "$u@$H:after/" || return 1
  [ "$(in_ns cat "$r/after/x.txt")" = "$(cat "$CLIENT/small/x.txt")" ] || why "the next push's data differs" || return 1
  # twin: --inplace writes under the final name: the failure leaves a truncated file there.
  rsx -a --inplace "$CLIENT/five/" "$u@$H:dst/"
  local size
  size=$(in_ns stat -c %s "$r/dst/big5.bin" 2>/dev/null)
  [ -n "$size" ] && [ "$size" -lt 5242880 ] || why "twin: --inplace left no partial big5.bin (size ${size:-none})" || return 1
  note "twin (--inplace): a $size-byte big5.bin of 5242880 is left under its final name"
}

# -- /dev/log missing ---------------------------------------------------------------------------
t_devlog_missing() {
  local u=rsld_f4 r lines t0 ms
  r=$(root_of $u)
  in_ns rm -f /dev/log && ! in_ns test -e /dev/log || why "cannot remove /dev/log in the namespace" || return 1
  lines=$(wc -l <"$SYSLOG")
  t0=$(now_ms)
  rsx_ok -a "$CLIENT/small/" "$u@$H:nolog/" || return 1
  ms=$(($(now_ms) - t0))
  [ ! -s "$LAST_ERR" ] || why "the client's stderr is not empty: $(first_line "$LAST_ERR")" || return 1
  [ "$(digest "$r/nolog")" = "$SMALL_DIGEST" ] || why "data differs" || return 1
  sshc "$u" id
  [ "$LAST_RC" -eq 77 ] && [ "$(wc -l <"$LAST_ERR")" -eq 1 ] && grep -q '^rshell: denied: ' "$LAST_ERR" ||
    why "a refusal without /dev/log: exit $LAST_RC, stderr $(tr '\n' '|' <"$LAST_ERR" | cut -c1-200)" || return 1
  [ "$(wc -l <"$SYSLOG")" -eq "$lines" ] || why "records arrived although /dev/log was missing" || return 1
  note "/dev/log missing: push exit 0 in $ms ms, empty stderr; a refusal prints only its one line"
  in_ns ln -s "$WORK/devlog" /dev/log
}

# -- a syslog reader that stopped reading -------------------------------------------------------
# sshd's PAM stack logs through glibc's syslog(3) too (pam_unix's "session opened"), whose
# send blocks while the reader's queue is full, so with UsePAM yes the login hangs in sshd
# before rshell runs (shown below). rshell is checked behind a second sshd in the same
# namespace with UsePAM no, where it is the only process of the session that logs.
t_devlog_stalled() {
  local u=rsld_f4 r i t0 ms times="" p2="" sshd2 ssh2
  r=$(root_of $u)
  for _ in 1 2 3 4 5; do
    p2=$((20000 + RANDOM % 40000))
    port_open "$p2" || break
  done
  sed -e 's/^UsePAM yes/UsePAM no/' -e "s/^Port .*/Port $p2/" -e "s#^PidFile .*#PidFile $WORK/sshd2.pid#" \
    "$WORK/sshd_config" >"$WORK/sshd2_config"
  (exec nsenter -t "$SSHD_PID" -m -- /usr/sbin/sshd -D -f "$WORK/sshd2_config" -E "$WORK/sshd2.log") &
  sshd2=$!
  BG_PIDS+=("$sshd2")
  for _ in $(seq 50); do port_open "$p2" && break; sleep 0.1; done
  port_open "$p2" || why "the second sshd did not start" || return 1
  ssh2=$(ssh_for "$p2")
  (exec setsid "$WORK/stall" "$WORK/stall.sock" >"$WORK/stall.out") &
  local stall=$!
  BG_PIDS+=("$stall")
  for _ in $(seq 50); do grep -q queued "$WORK/stall.out" 2>/dev/null && break; sleep 0.1; done
  grep -q queued "$WORK/stall.out" || why "the stalled reader did not start" || return 1
  in_ns rm -f /dev/log && in_ns ln -s "$WORK/stall.sock" /dev/log || return 1
  for i in 1 2 3; do
    t0=$(now_ms)
    runx rsync -e "$ssh2" -a "$CLIENT/small/" "$u@$H:stalled-$i/"
    ms=$(($(now_ms) - t0)); times+="$ms "
    [ "$LAST_RC" -eq 0 ] || why "push $i exited $LAST_RC: $(first_line "$LAST_ERR")" || break
    [ ! -s "$LAST_ERR" ] || why "push $i printed: $(first_line "$LAST_ERR")" || break
    [ "$ms" -le 5000 ] || why "a push took $ms ms with a stalled syslog reader" || break
    [ "$(digest "$r/stalled-$i")" = "$SMALL_DIGEST" ] || why "data differs" || break
  done
  t0=$(now_ms)
  # shellcheck disable=SC2086
  runx $ssh2 "$u@$H" id
  local deny_rc=$LAST_RC deny_ms=$(($(now_ms) - t0)) deny_lines
  deny_lines=$(wc -l <"$LAST_ERR")
  # twin: glibc's syslog(3), a blocking send without a timeout, against the same socket
  local trc=0
  in_ns timeout 5 "$WORK/sysl" || trc=$?
  # and the PAM sshd: the login itself does not get through
  # shellcheck disable=SC2086
  runx timeout 5 $SSH "$u@$H" id
  local pam_rc=$LAST_RC
  in_ns rm -f /dev/log && in_ns ln -s "$WORK/devlog" /dev/log
  kill "$stall" "$sshd2" 2>/dev/null
  [ -z "$WHY" ] || return 1
  [ "$deny_rc" -eq 77 ] && [ "$deny_lines" -eq 1 ] && [ "$deny_ms" -le 5000 ] ||
    why "a refusal: exit $deny_rc, $deny_lines stderr lines, $deny_ms ms" || return 1
  [ "$trc" -eq 124 ] || why "twin: syslog(3) did not hang against the stalled reader (exit $trc)" || return 1
  note "stalled syslog reader ($(cat "$WORK/stall.out")): 3 pushes took $times ms, a refusal $deny_ms ms (each record waits at most rshell's 200 ms send timeout)"
  note "twin: glibc syslog(3) was still blocked after 5 s (timeout exit 124); the same login through the PAM sshd: exit $pam_rc after 5 s ($([ "$pam_rc" -eq 124 ] && echo 'hung in sshd' || echo 'did not hang'))"
}

# -- /etc/rshell.toml replaced while transfers run ---------------------------------------------
# The long transfers run on rsld_cf2; new connections are made on rsld_cf, whose root they
# do not share (a new connection to a root a writer holds would first wait for its lock).
t_config_replaced() {
  local ra rb a d
  ra=$(root_of rsld_cf) rb=$(root_of rsld_cf2)
  rm -rf "$rb/dstA" "$rb/dstD" "$rb/late"
  mkdir -p "$ra/pub" && cp "$CLIENT/small/x.txt" "$ra/pub/" && chown -R rsld_cf: "$ra"
  # v2: both accounts become read-only
  sed -e '/^\[users.rsld_cf\]$/a access = "read-only"' -e '/^\[users.rsld_cf2\]$/a access = "read-only"' \
    "$WORK/policy-v1.toml" >"$WORK/policy-v2.toml"
  [ "$(grep -c 'read-only' "$WORK/policy-v2.toml")" -eq 2 ] || why "could not write v2" || return 1
  mark
  start_client cfA -a --bwlimit=700 "$CLIENT/big/" "rsld_cf2@$H:dstA/"
  a=$CPID
  wait_procs rsld_cf2 2 15 || why "transfer A did not start" || return 1
  replace_policy "$WORK/policy-v2.toml"
  local t0 ms
  t0=$(now_ms)
  rsx -a "$CLIENT/small/" "rsld_cf@$H:new/"
  [ "$LAST_RC" -ne 0 ] && grep -q 'rshell: denied: .*read-only' "$LAST_ERR" ||
    why "a new push under the read-only v2 was not refused: rc $LAST_RC $(first_line "$LAST_ERR")" || return 1
  rsx_ok -a "rsld_cf@$H:pub/" "$GOT/cf-pub/" || return 1
  ms=$(($(now_ms) - t0))
  # A push to A's own root under v2: refused too, but only once A lets go of the lock
  # (rshell takes the root lock before it checks the request against the policy).
  local late0
  late0=$(now_ms)
  start_client cflate -a "$CLIENT/small/" "rsld_cf2@$H:late/"
  local latepid=$CPID
  kill -0 "$a" 2>/dev/null || why "A ended before the checks under v2 were done (make it slower)" || return 1
  finish "$a" 40 || why "A did not finish" || return 1
  [ "$BG_RC" -eq 0 ] || why "A (started under v1) failed: $BG_RC $(head -c 200 "$OUTDIR/cfA.err")" || return 1
  local a_end
  a_end=$(now_ms)
  [ "$(digest "$rb/dstA")" = "$BIG_DIGEST" ] || why "A's data differs" || return 1
  finish "$latepid" 20 || why "the late push did not end" || return 1
  local late_end
  late_end=$(now_ms)
  [ "$BG_RC" -ne 0 ] && grep -q 'rshell: denied: .*read-only' "$OUTDIR/cflate.err" && [ ! -e "$rb/late" ] ||
    why "the push to A's root under v2 was not refused: $BG_RC $(head -c 200 "$OUTDIR/cflate.err")" || return 1
  count_since 'outcome user=rsld_cf2 .*exit=0 ' | grep -q -x 1 || why "no exit=0 outcome for A" || return 1
  note "policy replaced while A ran: A finished under v1 (exit 0, data verified); new connections on another root used v2 at once (push refused as read-only, pull allowed: $ms ms for both); a push to A's own root waited for A's lock: refused as read-only $((late_end - late0)) ms after it connected, $((late_end - a_end)) ms after A ended"
  # a broken file while D runs
  mark
  replace_policy "$WORK/policy-v1.toml"
  start_client cfD -a --bwlimit=700 "$CLIENT/big/" "rsld_cf2@$H:dstD/"
  d=$CPID
  wait_procs rsld_cf2 2 15 || why "transfer D did not start" || return 1
  printf 'version = 1\n[users.rsld_cf2\nroot = \n' >"$WORK/policy-broken.toml"
  replace_policy "$WORK/policy-broken.toml"
  sshc rsld_cf rsync --server -logDtpre.iLsfxCIvu . x/
  local brc=$LAST_RC berr blines
  berr=$(first_line "$LAST_ERR")
  blines=$(wc -l <"$LAST_ERR")
  kill -0 "$d" 2>/dev/null || why "D ended before the broken-file check (make it slower)" || return 1
  finish "$d" 40 || why "D did not finish" || return 1
  replace_policy "$WORK/policy-v1.toml"
  [ "$brc" -eq 78 ] && [ "$blines" -eq 1 ] && [[ $berr == "rshell: denied: configuration error"* ]] ||
    why "a new connection under a broken file: exit $brc, $blines lines, '$berr' (want 78, configuration error)" || return 1
  count_since 'deny user=rsld_cf .*configuration error' | grep -q -x 1 || why "no deny record naming the configuration error" || return 1
  [ "$BG_RC" -eq 0 ] || why "D (started before the broken file) failed: $BG_RC" || return 1
  [ "$(digest "$rb/dstD")" = "$BIG_DIGEST" ] || why "D's data differs" || return 1
  count_since 'outcome user=rsld_cf2 .*exit=0 ' | grep -q -x 1 || why "no exit=0 outcome for D" || return 1
  rsx_ok -a "$CLIENT/small/" "rsld_cf@$H:back/" || { WHY="after restoring v1: $WHY"; return 1; }
  note "broken policy while D ran: D finished (exit 0, data verified); a new connection got exit 78 '$(cut -c1-110 <<<"$berr")'; v1 restored: pushes work again"
}

# -- rsync missing or not executable -------------------------------------------------------------
t_rsync_unusable() { # USER WHAT
  local u=$1 t0 ms
  mark
  t0=$(now_ms)
  sshc "$u" rsync --server -logDtpre.iLsfxCIvu . x/
  ms=$(($(now_ms) - t0))
  [ "$ms" -le 5000 ] || why "took $ms ms" || return 1
  [[ " 71 77 78 " == *" $LAST_RC "* ]] || why "exit $LAST_RC, want 71/77/78" || return 1
  [ "$(wc -l <"$LAST_ERR")" -eq 1 ] && grep -q '^rshell: ' "$LAST_ERR" ||
    why "stderr is not one rshell line: $(tr '\n' '|' <"$LAST_ERR" | cut -c1-200)" || return 1
  [ ! -s "$LAST_OUT" ] || why "stdout not empty" || return 1
  wait_records "(deny|outcome) user=$u " 1 5 || why "no deny or outcome record" || return 1
  local rec
  rec=$(since | grep -E "(deny|outcome) user=$u " | head -n1 | grep -o -E '(deny|outcome) user=[^ ]+|reason="[^"]{0,100}|(exit|signal)=[0-9]+' | tr '\n' ' ')
  [ "$(count_since "allow user=$u ")" -eq "$(count_since "outcome user=$u ")" ] || why "an allow record without its outcome" || return 1
  local code=$LAST_RC line
  line=$(first_line "$LAST_ERR")
  rsx -a "$CLIENT/small/" "$u@$H:x/"
  [ "$LAST_RC" -ne 0 ] && grep -q '^rshell: ' "$LAST_ERR" || why "the rsync client did not show rshell's line: $(first_line "$LAST_ERR")" || return 1
  note "rsync $2: exit $code in $ms ms, '$line'; record: $rec"
}
t_rsync_missing() { t_rsync_unusable rsld_rb "missing"; }
t_rsync_0644() { t_rsync_unusable rsld_rb2 "mode 0644"; }

# -- a stalled client ------------------------------------------------------------------------------
t_stalled_client() {
  local u=rsld_st r t0 ms
  r=$(root_of $u)
  fresh_dst "$u" dst
  mark
  start_client stpush -a --bwlimit=512 "$CLIENT/big/" "$u@$H:dst/"
  wait_procs "$u" 2 15 || why "the server's rsync did not start" || return 1
  sleep 1
  kill -STOP "$CPID"
  t0=$(now_ms)
  server_gone "$u" 15 || { kill -9 "$CPID"; why "the session still runs 15 s after the client stopped"; return 1; }
  ms=$(($(now_ms) - t0))
  kill -9 "$CPID"; finish "$CPID" 10
  [ "$ms" -le 6000 ] || why "the stalled session ended after $ms ms (timeout = 3)" || return 1
  one_outcome "$u" || return 1
  [[ $OUTCOME == *idle_timeout=3 ]] || why "outcome $OUTCOME, want idle_timeout=3" || return 1
  [ "$(sha "$r/dst/b.bin")" = "$OLD_B" ] || why "b.bin under its final name is not the old file" || return 1
  note "stalled client (SIGSTOP), timeout = 3: session ended and lock free $ms ms after the stop; outcome $OUTCOME; temp files left: $(temps "$r/dst")-"
  rsx_ok -a "$CLIENT/small/" "$u@$H:after/" || return 1
  [ "$(digest "$r/after")" = "$SMALL_DIGEST" ] || why "the next push's data differs"
}
t_stalled_client_twin() { # timeout = 0: the stalled session keeps the lock
  local u=rsld_st0
  fresh_dst "$u" dst
  mark
  start_client st0push -a --bwlimit=512 "$CLIENT/big/" "$u@$H:dst/"
  wait_procs "$u" 2 15 || why "the server's rsync did not start" || return 1
  sleep 1
  kill -STOP "$CPID"
  sleep 8
  local held=""
  lock_free "$u" || held=1
  local n
  n=$(nprocs "$u")
  kill -9 "$CPID"; finish "$CPID" 10 # our bound: end the stalled client ourselves
  [ -n "$held" ] && [ "$n" -ge 1 ] || why "twin: the session ended without the idle timeout" || return 1
  server_gone "$u" 15 || why "twin: the session lives on after its client was killed" || return 1
  one_outcome "$u" || return 1
  [[ $OUTCOME != *idle* ]] || why "twin: an idle timeout with timeout = 0" || return 1
  note "twin (timeout = 0): 8 s after the stop the session ($n rsync) still held the lock; killing the client ended it ($OUTCOME)"
}

# -- the lock-wait refusal (started before the load) ----------------------------------------------
t_lock_wait_refused() {
  local left
  left=$((75 - ($(now_ms) - LK_T0) / 1000))
  [ "$left" -gt 0 ] || left=1
  finish "$LK_PID" "$left" || why "the waiting writer neither finished nor was refused within 75 s" || return 1
  kill_mine "$LK_HOLDER"
  local ms=$((BG_END - LK_T0))
  [ "$BG_RC" -ne 0 ] || why "the writer succeeded although the root stayed locked" || return 1
  grep -q '^rshell: denied: root .* is busy: another writer holds its lock (gave up after 60 s)' "$OUTDIR/lockwait.err" ||
    why "no clear refusal: $(head -c 200 "$OUTDIR/lockwait.err")" || return 1
  [ "$ms" -ge 59000 ] && [ "$ms" -le 70000 ] || why "refused after $ms ms (want 60 s)" || return 1
  SYSLOG_AT=$LK_MARK
  [ "$(count_since 'deny user=rsld_lk .*is busy')" -eq 1 ] || why "no deny record for the lock wait" || return 1
  note "a writer facing a root locked for good: refused after $ms ms with '$(head -n1 "$OUTDIR/lockwait.err" | cut -c1-140)'"
}

if [ "${LOAD_ONLY:-}" != load ]; then
  run "client SIGKILLed mid-push: old file intact, server side ends, lock free, one outcome, next push works" t_client_killed_push
  run "twin: client SIGKILLed mid --inplace push leaves a partial file under its final name" t_client_killed_push --inplace
  run "client SIGKILLed mid-pull: no partial file under its final name, server side ends, one outcome, next pull works" t_client_killed_pull ""
  run "twin: client SIGKILLed mid --inplace pull leaves a partial file under its final name" t_client_killed_pull -twin --inplace
  run "server rsync SIGKILLed: outcome signal=9, forked receiver ended, lock free within 3 s, next writer works" t_server_killed
  run "server rsync SIGKILLed while its receiver is stuck: the group kill ends it, lock free within 3 s" t_server_killed stuck
  run "twin: without the fork (log_outcome = false, timeout = 0) a stuck receiver keeps the lock and the next writer waits" t_server_killed_twin
  run "lock holder killed while a second writer waits: the waiter gets in and finishes" t_holder_killed
  run "root's file system full (2 MiB tmpfs, 5 MiB push): rsync's ENOSPC, no file under its final name, lock free, outcome, next push works" t_fs_full
  run "/dev/log missing: transfers work, nothing on the client's stderr but rsync's own" t_devlog_missing
  run "syslog reader that stopped reading: transfers and refusals finish within seconds (twin: syslog(3) hangs)" t_devlog_stalled
  run "/etc/rshell.toml replaced while transfers run: running ones unaffected, new ones use the new file, a broken file refuses new ones with 78" t_config_replaced
  run "rsync missing (rsync = a path that does not exist): clear refusal, record, no hang" t_rsync_missing
  run "rsync not executable (mode 0644): clear refusal, record, no hang" t_rsync_0644
  run "stalled client (SIGSTOP) with timeout = 3: session ends within ~5 s, lock free, outcome idle_timeout" t_stalled_client
  run "twin: timeout = 0 keeps a stalled session and its lock" t_stalled_client_twin
fi
run "$LK_NAME" t_lock_wait_refused

t_nothing_left() {
  local i left=""
  for ((i = 0; i < 100; i++)); do
    left=$(live_procs "$(IFS=,; echo "${ALL_USERS[*]}")")
    [ -z "$left" ] && return 0
    sleep 0.1
  done
  why "processes of the test accounts left: $(printf '%s' "$left" | tr '\n' ';' | cut -c1-300)"
}
run "no process of any test account is left (pgrep -u)" t_nothing_left

# ---- summary --------------------------------------------------------------------------------
note "runtime $((SECONDS - T0)) s"
if [ "$FAILED" -ne 0 ]; then
  note "failed: ${FAILED_NAMES[*]}"
  note "last lines of the private sshd's log:"
  tail -n 20 "$WORK/sshd.log" | sed 's/^/#   sshd: /'
fi
say "load: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
