#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR disable=SC2015,SC2016 # A && B || die is intended; single quotes are data
# End-to-end proof (issue 5): rshell as the login shell / forced command of real accounts
# behind a private sshd on 127.0.0.1, driven by the stock rsync, scp, sftp and rsnapshot
# clients. Usage (root only):  tests/e2e/run.sh RSHELL_BINARY
#
# What it touches, all removed again by the EXIT trap (also after a failure):
#   accounts rse2e_* (GECOS "rshell-e2e"; an existing account without it is never touched),
#   /srv/rshell-e2e, /etc/rshell-e2e, /usr/local/libexec/rshell-e2e, a temp dir, and an
#   empty /etc/rshell.toml placeholder only if none existed. The private sshd runs in its
#   own mount namespace where the test config is bind-mounted over /etc/rshell.toml; the
#   system sshd, /etc/ssh and port 22 are never touched.
# Output: one `ok - NAME` / `FAIL - NAME: why` line per scenario, then `e2e: N passed, M failed`;
# exit status 0 only if every scenario passed. Debugging knobs: E2E_KEEP_LOGS=DIR keeps the
# sshd log, the syslog capture and every command's stdout/stderr; E2E_HOLD=SECONDS keeps the
# set-up alive (sshd, accounts) before the scenarios run.
# Server rsync: /usr/bin/rsync, or with E2E_SERVER_RSYNC=VERSION (e.g. 3.2.7, Debian 12's
# bookworm/main) that version's .deb from the apt sources (`apt-get download`, after
# `apt-get update`), unpacked with dpkg-deb -x and installed root-owned under the libexec
# directory above; the policy's `rsync =` names it. The clients stay the machine's.
set -uo pipefail
umask 022
export LC_ALL=C.UTF-8
unset RSYNC_RSH RSYNC_PROTECT_ARGS RSYNC_OLD_ARGS RSYNC_RSH RSYNC_CONNECT_PROG POSIXLY_CORRECT
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

[ $# -eq 1 ] || die "usage: $0 RSHELL_BINARY"
[ "$(id -u)" -eq 0 ] || die "must run as root (creates accounts and runs sshd)"
BIN_SRC=$(readlink -f "$1")
[ -f "$BIN_SRC" ] && [ -x "$BIN_SRC" ] || die "not an executable: $1"
for tool in /usr/sbin/sshd ssh ssh-keygen scp sftp rsync rsnapshot setfattr getfattr setfacl \
  getfacl gcc unshare useradd userdel timeout flock mount mountpoint; do
  command -v "$tool" >/dev/null || die "missing tool: $tool (packages: openssh-server openssh-client rsync rsnapshot attr acl gcc libc6-dev util-linux mount passwd e2fsprogs)"
done
[ -x /usr/lib/openssh/sftp-server ] || die "missing /usr/lib/openssh/sftp-server (openssh-sftp-server)"

T0=$SECONDS
E2E=/srv/rshell-e2e
ETCDIR=/etc/rshell-e2e
LIBEXEC=/usr/local/libexec/rshell-e2e
RSHELL=$LIBEXEC/rshell
CONF=$ETCDIR/rshell.toml
DCONF=$ETCDIR/rsyncd.conf
CLIENT=$E2E/client          # the client side (root-only): sources, received trees, keys
KEYDIR=$CLIENT/keys
OUTDIR=$CLIENT/out           # every captured stdout/stderr
MARK=$E2E/markers            # injected commands would create files here (world-writable)
CTLMARK=$E2E/ctl-markers     # the control account's markers (attack proven live)
TMP_PWN=/tmp/rshell-e2e-pwn
H=127.0.0.1
MARKER_GECOS=rshell-e2e
USERS=(rse2e_rw rse2e_ro rse2e_fc rse2e_dm rse2e_pe rse2e_ctl rse2e_hm rse2e_df)
HOMES=()
CREATED_USERS=()
SSHD_PID=""
PLACEHOLDER=""
LOOP_MOUNTED=""
LIBEXEC_PARENT_CREATED=""
SYSLOGD_PID=""
DEVLOG_PLACEHOLDER=""
LOCKFILE=/run/rshell-e2e.lock
WORK=""

# ---- cleanup -----------------------------------------------------------------------------
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "${E2E_KEEP_LOGS:-}" ] && [ -n "$WORK" ]; then
    mkdir -p "$E2E_KEEP_LOGS" && cp -a "$WORK/sshd.log" "$WORK/syslog.txt" "$OUTDIR" "$E2E_KEEP_LOGS/" 2>/dev/null
  fi
  if [ -n "$SSHD_PID" ] && kill -0 "$SSHD_PID" 2>/dev/null; then
    kill "$SSHD_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SSHD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SSHD_PID" 2>/dev/null
    wait "$SSHD_PID" 2>/dev/null
  fi
  if [ -n "$SYSLOGD_PID" ]; then kill "$SYSLOGD_PID" 2>/dev/null; wait "$SYSLOGD_PID" 2>/dev/null; fi
  if [ -n "$DEVLOG_PLACEHOLDER" ] && [ -f /dev/log ] && [ ! -s /dev/log ]; then rm -f /dev/log; fi
  local u
  for u in "${CREATED_USERS[@]}"; do
    if [ "$(getent passwd "$u" | cut -d: -f5)" = "$MARKER_GECOS" ]; then
      userdel -r "$u" >/dev/null 2>&1 || userdel -r -f "$u" >/dev/null 2>&1 || echo "e2e: warning: could not remove account $u" >&2
      getent group "$u" | grep -q . && groupdel "$u" 2>/dev/null
    fi
  done
  if [ -n "$LOOP_MOUNTED" ]; then umount "$E2E" 2>/dev/null || umount -l "$E2E"; fi
  [ -f "$E2E/.rshell-e2e" ] && rm -rf --one-file-system "$E2E"
  [ -d "$E2E" ] && rmdir "$E2E" 2>/dev/null
  [ -f "$ETCDIR/.rshell-e2e" ] && rm -rf "$ETCDIR"
  [ -f "$LIBEXEC/.rshell-e2e" ] && rm -rf "$LIBEXEC"
  [ -n "$LIBEXEC_PARENT_CREATED" ] && rmdir /usr/local/libexec 2>/dev/null
  # Our placeholder only, and only if it is still the empty file we made.
  if [ -n "$PLACEHOLDER" ] && [ -f /etc/rshell.toml ] && [ ! -s /etc/rshell.toml ]; then rm -f /etc/rshell.toml; fi
  [ -n "$WORK" ] && rm -rf "$WORK"
  rm -f "$TMP_PWN"
  exit "$rc"
}

exec 9>"$LOCKFILE"
flock -n 9 || die "another e2e run holds $LOCKFILE"
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- refuse to clobber anything that is not ours --------------------------------------------
reclaim_leftover_accounts "${USERS[@]}"
for d in "$E2E" "$ETCDIR" "$LIBEXEC"; do
  if [ -e "$d" ]; then
    [ -f "$d/.rshell-e2e" ] || die "$d exists and is not ours: not touching it"
    note "removing leftover $d"
    mountpoint -q "$d" && umount "$d"
    rm -rf --one-file-system "$d"
  fi
done

# ---- directories, binary, config placeholder ---------------------------------------------
WORK=$(mktemp -d /tmp/rshell-e2e.XXXXXX)
mkdir -p "$E2E" && chmod 0755 "$E2E"

# -X/-A need user xattrs and POSIX ACLs where the trees live (both ends are under $E2E).
fs_has_xattr_acl() {
  local f=$1/.xattr-probe
  : >"$f" && setfattr -n user.probe -v 1 "$f" 2>/dev/null && setfacl -m u:nobody:r "$f" 2>/dev/null
  local ok=$?
  rm -f "$f"
  return $ok
}
if ! fs_has_xattr_acl "$E2E"; then
  note "$(df --output=fstype "$E2E" | tail -n1 | tr -d ' ') under $E2E lacks user xattrs or ACLs: using a loop-mounted ext4 image"
  truncate -s 512M "$WORK/fs.img" && mkfs.ext4 -q -F "$WORK/fs.img" &&
    mount -o loop,user_xattr,acl "$WORK/fs.img" "$E2E" || die "could not loop-mount an ext4 image"
  LOOP_MOUNTED=1
  chmod 0755 "$E2E"
  fs_has_xattr_acl "$E2E" || die "no user xattrs/ACLs even on the ext4 image"
fi
: >"$E2E/.rshell-e2e"
mkdir -p "$CLIENT" "$KEYDIR" "$OUTDIR" && chmod 0700 "$CLIENT"
mkdir -p "$MARK" "$CTLMARK" && chmod 1777 "$MARK" "$CTLMARK"

[ -d /usr/local/libexec ] || LIBEXEC_PARENT_CREATED=1
mkdir -p "$LIBEXEC" && : >"$LIBEXEC/.rshell-e2e" && chmod 0755 "$LIBEXEC"
install -m 0755 -o root -g root "$BIN_SRC" "$RSHELL"
mkdir -p "$ETCDIR" && : >"$ETCDIR/.rshell-e2e" && chmod 0755 "$ETCDIR"

# ---- the server's rsync ----------------------------------------------------------------------
SERVER_RSYNC=/usr/bin/rsync
if [ -n "${E2E_SERVER_RSYNC:-}" ]; then
  got=$("$HERE/../old-rsync.sh" "$E2E_SERVER_RSYNC" "$LIBEXEC/rsync" 2>&1) || die "$got"
  note "server rsync: $got"
  SERVER_RSYNC=$LIBEXEC/rsync
fi

if [ ! -e /etc/rshell.toml ]; then
  : >/etc/rshell.toml && chmod 0644 /etc/rshell.toml && PLACEHOLDER=1
  note "created an empty /etc/rshell.toml as bind-mount target (removed afterwards)"
fi

# ---- accounts ------------------------------------------------------------------------------
add_user() { # NAME SHELL
  useradd -m -c "$MARKER_GECOS" -s "$2" -U "$1" || die "useradd $1 failed"
  CREATED_USERS+=("$1")
  usermod -p '*' "$1"
  HOMES+=("/home/$1")
  install -d -m 0700 -o "$1" -g "$1" "/home/$1/.ssh"
}
add_key() { # KEYNAME USER [OPTIONS]
  ssh-keygen -q -t ed25519 -N '' -C "e2e-$1" -f "$KEYDIR/$1" || die "ssh-keygen failed"
  local line
  line=$(cat "$KEYDIR/$1.pub")
  [ -n "${3:-}" ] && line="$3 $line"
  printf '%s\n' "$line" >>"/home/$2/.ssh/authorized_keys"
  chown "$2:$2" "/home/$2/.ssh/authorized_keys" && chmod 0600 "/home/$2/.ssh/authorized_keys"
}
add_user rse2e_rw "$RSHELL"
add_user rse2e_ro "$RSHELL"
add_user rse2e_fc /bin/bash
add_user rse2e_dm "$RSHELL"
add_user rse2e_pe "$RSHELL"
add_user rse2e_ctl /bin/bash
add_user rse2e_hm "$RSHELL"
add_user rse2e_df "$RSHELL"
add_key rw rse2e_rw
add_key rwnest rse2e_rw "command=\"$RSHELL -ro $E2E/rw/pub\",restrict"
add_key ro rse2e_ro
add_key fc rse2e_fc "command=\"$RSHELL -wo $E2E/fc\",restrict"
add_key fcrel rse2e_fc "command=\"$RSHELL -ro pub\",restrict"   # rrsync: relative DIR = below the home
add_key dm rse2e_dm
add_key pe rse2e_pe
add_key ctl rse2e_ctl
add_key hm rse2e_hm
add_key df rse2e_df

# ---- fixtures ------------------------------------------------------------------------------
SECRET="rshell-e2e-SECRET-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
OUTSIDE_TOKEN="rshell-e2e-outside-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SHADOW_NEEDLE=$(grep -m1 -E '^[^:]+:[^:*!]{8,}' /etc/shadow | cut -d: -f2)
[ -n "$SHADOW_NEEDLE" ] || SHADOW_NEEDLE=$(head -n1 /etc/shadow)

# A source tree with everything -a/-H/-A/-X carry and names that need quoting.
make_tree() {
  local d=$1
  mkdir -p "$d/dir/sub" "$d/empty-dir"
  printf 'hello\n' >"$d/plain.txt"
  printf '#!/bin/sh\necho hi\n' >"$d/exec.sh" && chmod 0755 "$d/exec.sh"
  printf 'private\n' >"$d/private" && chmod 0600 "$d/private"
  printf 'ro\n' >"$d/readonly.txt" && chmod 0444 "$d/readonly.txt"
  : >"$d/empty"
  head -c 3145728 /dev/urandom >"$d/big.bin"
  printf 'deep\n' >"$d/dir/sub/deep.txt" && chmod 0640 "$d/dir/sub/deep.txt"
  ln -s ../plain.txt "$d/dir/link-rel"
  ln -s /etc/hostname "$d/abs-link"
  ln -s nowhere/at/all "$d/dangling"
  printf 'linked\n' >"$d/hard1" && ln "$d/hard1" "$d/dir/hard2" && ln "$d/hard1" "$d/hard3"
  local n
  for n in 'with space.txt' "quote'single" 'quote"double' 'dollar$HOME' 'semi;colon' \
    'amp&and' 'back`tick`' 'paren(x)' 'ünïcødé 名前.txt' '-leading-dash' 'back\slash' 'tilde~x'; do
    printf 'name: %s\n' "$n" >"$d/$n"
  done
  setfattr -n user.e2e -v "value one" "$d/plain.txt"
  setfattr -n user.bin -v 0x00ff10 "$d/big.bin"
  setfattr -n user.dir -v d "$d/dir"
  setfacl -m u:nobody:r,g:nogroup:r "$d/plain.txt"
  setfacl -m u:nobody:rwx "$d/dir/sub"
  setfacl -d -m u:nobody:rx "$d/dir"
  touch -h -d '2001-02-03 04:05:06' "$d/plain.txt" "$d/dir/link-rel" "$d/hard1"
  touch -d '1999-12-31 23:59:59' "$d/dir/sub/deep.txt" "$d/readonly.txt"
  touch -d '2010-01-01 00:00:00' "$d/dir/sub" "$d/dir" "$d/empty-dir"
}
SRC=$CLIENT/src
make_tree "$SRC"
mkdir -p "$CLIENT/small/inner" && printf 'small\n' >"$CLIENT/small/a.txt" && printf 'inner\n' >"$CLIENT/small/inner/b.txt"

# Server side. Roots are owned by their accounts; none contains a home.
RW=$E2E/rw RO=$E2E/ro FC=$E2E/fc DM=$E2E/dm PE=$E2E/pe
mkdir -p "$RW/canary" "$RW/pub" "$RW/etc" "$E2E/outside" "$E2E/secret" "$RO" "$FC" "$DM/mod" "$PE"
printf 'inside canary %s\n' "$OUTSIDE_TOKEN" >"$RW/canary/inside.txt"
printf 'fake passwd inside the root\n' >"$RW/etc/passwd"
printf 'rw\n' >"$RW/who.txt"
printf 'public\n' >"$RW/pub/readme.txt"
cp -a "$SRC" "$RW/pub/tree"
printf '%s\n' "$OUTSIDE_TOKEN" >"$E2E/outside/canary.txt"
printf '%s\n' "$SECRET" >"$E2E/secret/root-only.txt"
chmod 0700 "$E2E/secret" && chmod 0600 "$E2E/secret/root-only.txt"
chown -R rse2e_rw:rse2e_rw "$RW" "$E2E/outside"   # outside is writable by rw: only rshell stops it
cp -a "$SRC" "$RO/data"
mkdir -p "$RO/snapsrc/sub" && printf 'snap\n' >"$RO/snapsrc/snapmark.txt" &&
  printf 'stays\n' >"$RO/snapsrc/sub/stable.txt" && head -c 100000 /dev/urandom >"$RO/snapsrc/sub/blob"
chown -R rse2e_ro:rse2e_ro "$RO"
chown -R rse2e_fc:rse2e_fc "$FC"
mkdir -p /home/rse2e_fc/pub && cp -a "$SRC" /home/rse2e_fc/pub/tree && chown -R rse2e_fc: /home/rse2e_fc/pub
cp -a "$SRC/." "$DM/mod/"
chown -R rse2e_dm:rse2e_dm "$DM"
printf 'pe\n' >"$PE/who.txt"
chown -R rse2e_pe:rse2e_pe "$PE"
chmod 0755 "$RW" "$RO" "$FC" "$DM" "$PE"

# ---- policy --------------------------------------------------------------------------------
cat >"$CONF" <<EOF
# rshell end-to-end test policy (bind-mounted over /etc/rshell.toml in sshd's namespace)
version = 1

[defaults]
rsync = "$SERVER_RSYNC"
root = "~/backup"

[users.rse2e_rw]
root = "$RW"

[users.rse2e_ro]
root = "$RO"
access = "read-only"

[users.rse2e_dm]
root = "$DM"
daemon = true
daemon_config = "$DCONF"

[users.rse2e_pe]
root = "$PE"

# root = the home: writing is refused (it would reach ~/.ssh and start-up files), reading works
[users.rse2e_hm]
root = "~"

# rse2e_df has no section: [defaults] applies (root ~/backup, created by the test later)
EOF
cat >"$DCONF" <<EOF
# admin-owned rsyncd.conf for daemon over ssh (rse2e_dm)
use chroot = no
munge symlinks = no
[mod]
  path = $DM/mod
  read only = no
  comment = e2e module
EOF
chown root:root "$CONF" "$DCONF" && chmod 0644 "$CONF" "$DCONF"

# ---- private sshd ---------------------------------------------------------------------------
mkdir -p /run/sshd && chmod 0755 /run/sshd

# A syslog stand-in: a datagram socket bind-mounted over /dev/log in sshd's namespace
# (rshell logs to syslog, never to the client). /dev/log gets an empty placeholder as mount target only if it is missing.
printf '%s\n' "$SYSLOG_C" >"$WORK/syslogd.c"
gcc -O2 -o "$WORK/syslogd" "$WORK/syslogd.c" || die "cannot build the syslog collector"
SYSLOG=$WORK/syslog.txt
: >"$SYSLOG"
"$WORK/syslogd" "$WORK/devlog" "$SYSLOG" &
SYSLOGD_PID=$!
for _ in $(seq 50); do [ -S "$WORK/devlog" ] && break; sleep 0.1; done
[ -S "$WORK/devlog" ] || die "syslog collector did not start"
if [ ! -e /dev/log ] && [ ! -L /dev/log ]; then
  : >/dev/log && DEVLOG_PLACEHOLDER=1
  note "created an empty /dev/log as bind-mount target (removed afterwards)"
fi
ssh-keygen -q -t ed25519 -N '' -f "$WORK/hostkey" || die "host key"
configure_sshd() { write_sshd_config "$1" 'rse2e_*' 64 16 30; }
# Inside the namespace only: the test policy at /etc/rshell.toml and our syslog collector
# at /dev/log.
launch_sshd() {
  unshare -m --propagation private /bin/sh -c \
    'mount --bind "$1" /etc/rshell.toml && mount --bind "$4" /dev/log &&
     exec /usr/sbin/sshd -D -f "$2" -E "$3"' \
    sh "$CONF" "$WORK/sshd_config" "$WORK/sshd.log" "$WORK/devlog" &
}
start_private_sshd configure_sshd launch_sshd
note "private sshd pid $SSHD_PID on 127.0.0.1:$PORT; rshell under test: $BIN_SRC ($(stat -c %s "$BIN_SRC") bytes)"
note "setup took $((SECONDS - T0)) s"

if [ -n "${E2E_HOLD:-}" ]; then # debugging: keep the setup alive for E2E_HOLD seconds
  note "holding for $E2E_HOLD s: PORT=$PORT KEYDIR=$KEYDIR"
  for _ in $(seq "$E2E_HOLD"); do sleep 1; done
fi
# shellcheck source=scenarios.sh
. "$HERE/scenarios.sh"

# ---- summary --------------------------------------------------------------------------------
note "runtime $((SECONDS - T0)) s"
if [ "$FAILED" -ne 0 ]; then
  note "failed: ${FAILED_NAMES[*]}"
  note "last lines of the private sshd's log:"
  tail -n 30 "$WORK/sshd.log" | sed 's/^/#   sshd: /'
fi
say "e2e: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
