# shellcheck shell=bash
# shellcheck disable=SC2015,SC2016,SC2034,SC2153 # globals come from run.sh
# Helpers for tests/e2e/run.sh and load.sh: the private sshd, scenario bookkeeping, bounded command runners, tree
# manifests, canaries. Sourced, not executed. Every external command that talks to the
# network is wrapped in `timeout`; every loop is bounded.

PASSED=0
FAILED=0
FAILED_NAMES=()
WHY=""          # set by a failing check; printed by `scenario`
STEP=0          # counter for captured command outputs
LAST_RC=0
LAST_OUT=""
LAST_ERR=""
SYSLOG_AT=0

say() { printf '%s\n' "$*"; }
note() { printf '# %s\n' "$*"; }
die() { printf 'e2e: fatal: %s\n' "$*" >&2; exit 2; }

# scenario NAME FUNC [ARGS...]: run one scenario; FUNC returns non-zero and sets WHY on
# failure. Every scenario also fails when a secret shows up in anything it captured.
scenario() {
  local name=$1; shift
  WHY=""
  local first_step=$((STEP + 1)) rc=0
  "$@" || rc=$?
  if [ "$rc" -eq 0 ] && ! no_secret_in_steps "$first_step"; then rc=1; fi
  if [ "$rc" -eq 0 ]; then
    say "ok - $name"
    PASSED=$((PASSED + 1))
  else
    say "FAIL - $name: ${WHY:-exit status $rc}"
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("$name")
    if [ -n "$LAST_ERR" ] && [ -s "$LAST_ERR" ]; then
      note "last command: $(cat "${LAST_ERR%.err}.cmd" 2>/dev/null)"
      head -c 2000 "$LAST_ERR" | sed 's/^/#   stderr: /'
    fi
  fi
}

# why MSG: record the reason and fail.
why() { WHY="$*"; return 1; }

# runx CMD...: run a command with stdin from /dev/null and a 60 s bound, capturing stdout,
# stderr and status into numbered files (LAST_OUT, LAST_ERR, LAST_RC). Always returns 0.
runx() {
  STEP=$((STEP + 1))
  local base
  base=$(printf '%s/%04d' "$OUTDIR" "$STEP")
  LAST_OUT=$base.out LAST_ERR=$base.err
  printf '%q ' "$@" >"$base.cmd"
  LAST_RC=0
  timeout -k 5 60 "$@" </dev/null >"$LAST_OUT" 2>"$LAST_ERR" || LAST_RC=$?
  return 0
}

# first_line FILE: the first line of a file, for messages.
first_line() { head -n 1 "$1" 2>/dev/null | cut -c1-300; }

# ssh_opts KEYNAME: the ssh command line (one string, for rsync -e) using that client key.
ssh_cmd() {
  printf 'ssh -F /dev/null -p %s -i %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR -o IdentitiesOnly=yes -o ControlMaster=no -o ServerAliveInterval=5 -o ServerAliveCountMax=4' \
    "$PORT" "$KEYDIR/$1"
}

# rs KEYNAME RSYNC-ARGS...: rsync over the private sshd with that key (captured by runx).
rs() {
  local key=$1; shift
  runx rsync -e "$(ssh_cmd "$key")" "$@"
}

# rs_ok KEYNAME RSYNC-ARGS...: the transfer must succeed.
rs_ok() {
  rs "$@"
  [ "$LAST_RC" -eq 0 ] || why "rsync ${*:2} exited $LAST_RC: $(grep -m1 -v '^$' "$LAST_ERR" | cut -c1-300)"
}

# rs_denied KEYNAME RSYNC-ARGS...: the transfer must fail with rshell's refusal on stderr.
rs_denied() {
  rs "$@"
  [ "$LAST_RC" -ne 0 ] || why "rsync ${*:2} succeeded but should have been refused"
  grep -q '^rshell: denied: ' "$LAST_ERR" || why "rsync ${*:2} failed ($LAST_RC) without 'rshell: denied:' ($(first_line "$LAST_ERR"))"
}

# sshx KEYNAME USER [SSH-OPTS...] -- COMMAND-WORDS...: ssh with that key (captured by runx).
sshx() {
  local key=$1 user=$2; shift 2
  local opts=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  # shellcheck disable=SC2046
  runx $(ssh_cmd "$key") "${opts[@]}" "$user@127.0.0.1" "$@"
}

# A refusal as the contract states it: exit 77, nothing on stdout, exactly one stderr
# line `rshell: denied: ...`.
assert_denied_output() {
  # ACCEPT_RC (default 77) may widen this to e.g. "77 64" for usage errors in client words.
  [[ " ${ACCEPT_RC:-77} " == *" $LAST_RC "* ]] ||
    why "exit status $LAST_RC, want ${ACCEPT_RC:-77} ($(first_line "$LAST_ERR"))" || return 1
  [ ! -s "$LAST_OUT" ] || why "stdout not empty: $(first_line "$LAST_OUT")" || return 1
  local n
  n=$(wc -l <"$LAST_ERR")
  [ "$n" -eq 1 ] || why "stderr has $n lines, want 1: $(tr '\n' '|' <"$LAST_ERR" | cut -c1-300)" || return 1
  grep -q '^rshell: denied: ' "$LAST_ERR" || why "stderr is not 'rshell: denied: ...': $(first_line "$LAST_ERR")"
}

# ---- canaries: nothing may change when a request is refused ---------------------------

# server_state: a digest of every server-side file (names, types, modes, sizes, mtimes,
# inodes, owners; contents of small files), the homes of the test accounts, the marker
# directory and the fixed /tmp marker.
server_state() {
  {
    find "$E2E" "${HOMES[@]}" -path "$CLIENT" -prune -o \
      -printf '%p|%y|%m|%s|%T@|%i|%U|%l\n' 2>/dev/null | sort
    find "$E2E" "${HOMES[@]}" -path "$CLIENT" -prune -o -type f -size -256k -print0 2>/dev/null |
      sort -z | xargs -0 -r sha256sum
    ls -la "$TMP_PWN" 2>&1
  } | sha256sum | cut -d' ' -f1
}

# markers_clean: no marker file from an injected command exists.
markers_clean() {
  local found
  found=$(find "$MARK" -mindepth 1 -print 2>/dev/null | head -n 5 | tr '\n' ' ')
  [ -z "$found" ] || why "marker(s) created: $found" || return 1
  [ ! -e "$TMP_PWN" ] || why "marker created: $TMP_PWN"
}

# unchanged_since STATE: server state and markers as before.
unchanged_since() {
  markers_clean || return 1
  local now
  now=$(server_state)
  [ "$now" = "$1" ] || why "server-side files changed (${WHY:-digest differs}); see: $(changed_hint)"
}

SNAPSHOT_LIST=""
remember_listing() { SNAPSHOT_LIST=$(find "$E2E" "${HOMES[@]}" -path "$CLIENT" -prune -o -printf '%p|%y|%m|%s|%T@\n' 2>/dev/null | sort); }
changed_hint() {
  diff <(printf '%s\n' "$SNAPSHOT_LIST") \
    <(find "$E2E" "${HOMES[@]}" -path "$CLIENT" -prune -o -printf '%p|%y|%m|%s|%T@\n' 2>/dev/null | sort) |
    grep '^[<>]' | head -n 4 | tr '\n' ' '
}

# expect_refused KEYNAME USER COMMAND-STRING: sent as the ssh command; must be refused by
# the contract's rules (exit 77, one stderr line, a syslog record) and change nothing.
expect_refused() {
  local key=$1 user=$2 cmd=$3 before
  before=$(server_state); remember_listing; syslog_mark
  sshx "$key" "$user" -- "$cmd"
  assert_denied_output || return 1
  unchanged_since "$before" || return 1
  syslog_since_mark_has "deny.*(user=$user|uid=$(id -u "$user"))"
}

# expect_rsync_refused KEYNAME RSYNC-ARGS...: an rsync client request refused by rshell,
# nothing changed.
expect_rsync_refused() {
  local before
  before=$(server_state); remember_listing
  rs_denied "$@" || return 1
  unchanged_since "$before"
}

# ---- secrets ---------------------------------------------------------------------------

# no_secret_in_steps FIRST: none of the outputs captured since step FIRST (nor the client
# tree) shows the root-only canary or a line of /etc/shadow.
no_secret_in_steps() {
  local first=$1 i f
  for ((i = first; i <= STEP; i++)); do
    for f in "$(printf '%s/%04d' "$OUTDIR" "$i")".{out,err}; do
      [ -f "$f" ] || continue
      if grep -a -q -F -e "$SECRET" -e "$SHADOW_NEEDLE" "$f"; then
        WHY="secret leaked into $(basename "$f")"; return 1
      fi
    done
  done
  return 0
}

# ---- trees -----------------------------------------------------------------------------

# prefix STR: copy stdin to stdout with STR before each line (no sed: names are data).
prefix() { local l; while IFS= read -r l; do printf '%s%s\n' "$1" "$l"; done; }

# manifest DIR [FLAGS]: one line per entry below DIR (not DIR itself): name, type, mode,
# size, mtime (seconds; not for symlinks), link target; FLAGS may contain H (hard-link
# groups), X (user.* xattrs), A (ACLs, including default ACLs).
manifest() {
  local dir=$1 flags=${2:-}
  (
    cd "$dir" || exit 1
    find . -mindepth 1 -print0 | sort -z | while IFS= read -r -d '' p; do
      if [ -L "$p" ]; then
        printf '%s|link|%s\n' "$p" "$(readlink -- "$p")"
      elif [ -d "$p" ]; then
        printf '%s|%s\n' "$p" "$(stat -c 'dir|%a|%Y' -- "$p")"
      else
        printf '%s|%s\n' "$p" "$(stat -c '%F|%a|%s|%Y' -- "$p")"
      fi
      if [[ $flags == *X* ]] && [ ! -L "$p" ]; then
        getfattr -h -d -m '^user\.' -e hex -- "$p" 2>/dev/null | grep -v -e '^# file:' -e '^$' | prefix "$p|x "
      fi
      if [[ $flags == *A* ]] && [ ! -L "$p" ]; then
        getfacl -c -p -- "$p" 2>/dev/null | grep -v '^$' | prefix "$p|a "
      fi
    done
    if [[ $flags == *H* ]]; then
      find . -mindepth 1 -type f -links +1 -printf '%i %p\n' | sort -k1,1 -k2 |
        awk '{i=$1; sub(/^[^ ]+ /, ""); g[i] = n[i]++ ? g[i] "," $0 : $0} END {for (i in g) print "hardlinks " g[i]}' | sort
    fi
  )
}

# assert_same_tree A B [FLAGS]: same contents (diff -r, symlinks not followed) and the same
# manifest.
assert_same_tree() {
  local a=$1 b=$2 flags=${3:-}
  [ -d "$a" ] || why "no directory $a" || return 1
  [ -d "$b" ] || why "no directory $b" || return 1
  local d
  if ! d=$(diff -r --no-dereference -- "$a" "$b" 2>&1); then
    why "contents differ: $(printf '%s' "$d" | head -n 3 | tr '\n' ' ' | cut -c1-300)"
    return 1
  fi
  if ! d=$(diff <(manifest "$a" "$flags") <(manifest "$b" "$flags")); then
    why "metadata differs ($flags): $(printf '%s' "$d" | grep '^[<>]' | head -n 4 | tr '\n' ' ' | cut -c1-400)"
    return 1
  fi
}

# same_inode A B
same_inode() {
  [ "$(stat -c %d:%i -- "$1")" = "$(stat -c %d:%i -- "$2")" ] || why "$1 and $2 are not the same inode"
}

# A minimal syslog collector: receives datagrams on a Unix socket, appends one line each.
# shellcheck disable=SC2016
SYSLOG_C='#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc != 3) return 64;
  int s = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
  unlink(argv[1]);
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0) return 71;
  chmod(argv[1], 0666);
  FILE *f = fopen(argv[2], "a");
  if (!f) return 73;
  static char buf[65536];
  for (;;) {
    ssize_t n = recv(s, buf, sizeof buf - 1, 0);
    if (n < 0) { if (errno == EINTR) continue; return 74; }
    for (ssize_t i = 0; i < n; i++) if (buf[i] == 10 || buf[i] == 0) buf[i] = 32;
    buf[n] = 0;
    fprintf(f, "%s\n", buf);
    fflush(f);
  }
}'

# syslog_mark: remember where the syslog capture ends now.
syslog_mark() { SYSLOG_AT=$(wc -l <"$SYSLOG"); }
# syslog_since_mark_has PATTERN: a record after the mark matches (grep -E).
syslog_since_mark_has() {
  local i
  for i in $(seq 20); do # the record may trail the connection's end a little
    tail -n +"$((SYSLOG_AT + 1))" "$SYSLOG" | grep -q -E -- "$1" && return 0
    sleep 0.1
  done
  why "no syslog record matching /$1/ (got: $(tail -n +"$((SYSLOG_AT + 1))" "$SYSLOG" | head -n 2 | cut -c1-200 | tr '\n' ' '))"
}

# ---- the private sshd (run.sh and load.sh) ------------------------------------------------------
# port_open PORT: something accepts connections on 127.0.0.1:PORT (bash's /dev/tcp).
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' sh "$1" 2>/dev/null; }

# write_sshd_config PORT ALLOW MAX_STARTUPS MAX_SESSIONS GRACE: $WORK/sshd_config for a
# private sshd on 127.0.0.1:PORT that lets only the ALLOW accounts in, by key only.
write_sshd_config() {
  cat >"$WORK/sshd_config" <<EOF
Port $1
ListenAddress 127.0.0.1
HostKey $WORK/hostkey
PidFile $WORK/sshd.pid
UsePAM yes
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $2
AuthorizedKeysFile .ssh/authorized_keys
Subsystem sftp /usr/lib/openssh/sftp-server
PermitUserRC no
DisableForwarding yes
PermitTunnel no
PermitUserEnvironment no
StrictModes no
PrintMotd no
PrintLastLog no
MaxStartups $3
MaxSessions $4
LoginGraceTime $5
LogLevel VERBOSE
EOF
  # OpenSSH 9.8+ would penalise the killed and refused connections the suites make on purpose.
  printf 'PerSourcePenalties no\n' >>"$WORK/sshd_config"
  /usr/sbin/sshd -t -f "$WORK/sshd_config" 2>/dev/null || sed -i '/^PerSourcePenalties/d' "$WORK/sshd_config"
  /usr/sbin/sshd -t -f "$WORK/sshd_config" || die "sshd -t rejected the test config"
}

# start_private_sshd CONFIGURE LAUNCH: on up to five random free ports, CONFIGURE PORT writes
# the config and LAUNCH starts sshd in the background in its own mount namespace, exec'ing in
# place so that $! is sshd itself; waits for the port and the PidFile. Sets PORT, SSHD_PID.
start_private_sshd() {
  local configure=$1 launch=$2 p
  for _ in 1 2 3 4 5; do
    p=$((20000 + RANDOM % 40000))
    port_open "$p" && continue
    PORT=$p
    "$configure" "$p"
    : >"$WORK/sshd.log"
    rm -f "$WORK/sshd.pid"
    "$launch"
    SSHD_PID=$!
    for _ in $(seq 100); do
      kill -0 "$SSHD_PID" 2>/dev/null || break
      if port_open "$PORT" && [ -s "$WORK/sshd.pid" ]; then
        [ "$(cat "$WORK/sshd.pid")" = "$SSHD_PID" ] || note "PidFile says $(cat "$WORK/sshd.pid"), started $SSHD_PID"
        return 0
      fi
      sleep 0.1
    done
    kill "$SSHD_PID" 2>/dev/null; wait "$SSHD_PID" 2>/dev/null; SSHD_PID=""
  done
  cat "$WORK/sshd.log" >&2
  die "private sshd did not start"
}

# reclaim_leftover_accounts USER...: remove test accounts a crashed earlier run left behind
# (their processes too); refuse to touch an account that exists without our GECOS marker.
reclaim_leftover_accounts() {
  local u p
  for u in "$@"; do
    getent passwd "$u" >/dev/null || continue
    [ "$(getent passwd "$u" | cut -d: -f5)" = "$MARKER_GECOS" ] ||
      die "account $u exists and is not a test account (GECOS is not $MARKER_GECOS): not touching it"
    note "removing leftover test account $u"
    for p in $(pgrep -u "$u"); do kill -9 "$p" 2>/dev/null; done
    userdel -r "$u" >/dev/null 2>&1 || userdel -r -f "$u" >/dev/null 2>&1
  done
}
