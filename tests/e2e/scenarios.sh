# shellcheck shell=bash
# shellcheck disable=SC2015,SC2016,SC2088,SC2034 # names are data; ~ in messages is literal
# The scenarios, sourced by run.sh after setup. Globals: see run.sh. C = client dir.
C=$CLIENT
U_RW=rse2e_rw@$H U_RO=rse2e_ro@$H U_FC=rse2e_fc@$H U_DM=rse2e_dm@$H U_PE=rse2e_pe@$H

# ============================ smoke ========================================================

t_smoke() {
  sshx rw rse2e_rw -- id
  if [ "$LAST_RC" -eq 255 ] && [ ! -s "$LAST_ERR" ]; then
    why "rshell died without a word as a non-root login shell (killed by a signal? see the binary's report)"
    return 1
  fi
  assert_denied_output
}
scenario "rshell runs as the login shell of a non-root account (refuses 'id' with 77)" t_smoke

# ============================ works: read-write account ===================================

t_push_pull() { # NAME RSYNC-OPTS... : push src to NAME/, compare; pull it back, compare
  local name=$1; shift
  local flags=""
  case "$*" in *H*) flags+=H ;; esac
  case "$*" in *A*) flags+=A ;; esac
  case "$*" in *X*) flags+=X ;; esac
  rs_ok rw "$@" "$SRC/" "$U_RW:$name/" || return 1
  assert_same_tree "$SRC" "$RW/$name" "$flags" || { WHY="push: $WHY"; return 1; }
  rs_ok rw "$@" "$U_RW:$name/" "$C/pulled-$name/" || return 1
  assert_same_tree "$SRC" "$C/pulled-$name" "$flags" || { WHY="pull: $WHY"; return 1; }
}
scenario "push and pull -a (data, perms, mtimes, symlinks)" t_push_pull a -a
scenario "push and pull -aHAX (hard links, ACLs, xattrs)" t_push_pull hax -aHAX
scenario "push and pull -az" t_push_pull az -az
scenario "push and pull -a --protocol=29" t_push_pull p29 -a --protocol=29
scenario "push and pull -a --protocol=30" t_push_pull p30 -a --protocol=30
scenario "push with --rsync-path=$SERVER_RSYNC (the configured path, as BackupPC sends)" \
  t_push_pull rpath -a --rsync-path="$SERVER_RSYNC"

# What rshell gives the server's rsync: --drop-D and --confine-root only when that binary
# has them (rsync 3.5.0 and newer); an older one runs under Landlock without them.
t_forced_for_this_rsync() {
  local cmd="rsync --server -logDtpre.iLsfxCIvu . dest/" version argv
  version=$("$SERVER_RSYNC" --version | head -n 1)
  runx "$RSHELL" --test "$cmd" --user rse2e_rw --config "$CONF"
  [ "$LAST_RC" -eq 0 ] || why "rshell --test exited $LAST_RC: $(first_line "$LAST_ERR")" || return 1
  argv=$(grep -h '^argv' "$LAST_OUT" "$LAST_ERR" | head -n 1)
  case "$argv" in *"$SERVER_RSYNC --server"*) ;; *) why "argv does not run $SERVER_RSYNC: $argv"; return 1 ;; esac
  case "$version" in
    *"version 3.2."* | *"version 3.3."* | *"version 3.4."*)
      case "$argv" in *--drop-D* | *--confine-root*) why "forced options $version lacks: $argv"; return 1 ;; esac ;;
    *)
      case "$argv" in *--drop-D*--confine-root=*) ;; *) why "$version without --drop-D/--confine-root: $argv"; return 1 ;; esac ;;
  esac
}
scenario "the forced options match the server rsync ($("$SERVER_RSYNC" --version | head -n 1 | awk '{print $3}'))" t_forced_for_this_rsync

t_delete() {
  mkdir -p "$C/junk" && printf 'junk\n' >"$C/junk/junk.txt"
  rs_ok rw -a "$C/junk/" "$U_RW:del/" || return 1
  [ -f "$RW/del/junk.txt" ] || why "setup push did not arrive" || return 1
  rs_ok rw -a --delete "$SRC/" "$U_RW:del/" || return 1
  [ ! -e "$RW/del/junk.txt" ] || why "push --delete left junk.txt" || return 1
  assert_same_tree "$SRC" "$RW/del" || return 1
  mkdir -p "$C/pull-del" && printf 'junk\n' >"$C/pull-del/junk.txt"
  rs_ok rw -a --delete "$U_RW:del/" "$C/pull-del/" || return 1
  [ ! -e "$C/pull-del/junk.txt" ] || why "pull --delete left junk.txt" || return 1
  assert_same_tree "$SRC" "$C/pull-del"
}
scenario "push and pull --delete" t_delete

t_partial_inplace() {
  rs_ok rw -a "$SRC/" "$U_RW:inplace/" || return 1
  local ino
  ino=$(stat -c %i "$RW/inplace/big.bin")
  rm -rf "$C/ip" && cp -a "$SRC" "$C/ip"
  printf 'CHANGED-IN-THE-MIDDLE' | dd of="$C/ip/big.bin" bs=1 seek=1500000 conv=notrunc status=none
  touch -d '2020-02-02 02:02:02' "$C/ip/big.bin"
  rs_ok rw -a --partial --inplace --no-whole-file "$C/ip/" "$U_RW:inplace/" || return 1
  assert_same_tree "$C/ip" "$RW/inplace" || return 1
  [ "$(stat -c %i "$RW/inplace/big.bin")" = "$ino" ] || why "--inplace push replaced the inode" || return 1
  cp -a "$SRC" "$C/ip-pull"
  ino=$(stat -c %i "$C/ip-pull/big.bin")
  rs_ok rw -a --partial --inplace --no-whole-file "$U_RW:inplace/" "$C/ip-pull/" || return 1
  assert_same_tree "$C/ip" "$C/ip-pull" || return 1
  [ "$(stat -c %i "$C/ip-pull/big.bin")" = "$ino" ] || why "--inplace pull replaced the inode"
}
scenario "push and pull --partial --inplace (delta into the same inode)" t_partial_inplace

t_link_dest() {
  mkdir -p "$C/emptydir"
  rs_ok rw -a "$C/emptydir/" "$U_RW:snaps/" || return 1
  rs_ok rw -a "$SRC/" "$U_RW:snaps/prev/" || return 1
  rm -rf "$C/ld" && cp -a "$SRC" "$C/ld" && printf 'new\n' >>"$C/ld/plain.txt"
  rs_ok rw -a --link-dest=../prev "$C/ld/" "$U_RW:snaps/cur/" || return 1
  assert_same_tree "$C/ld" "$RW/snaps/cur" || return 1
  same_inode "$RW/snaps/prev/dir/sub/deep.txt" "$RW/snaps/cur/dir/sub/deep.txt" || return 1
  same_inode "$RW/snaps/prev/big.bin" "$RW/snaps/cur/big.bin" || return 1
  ! same_inode "$RW/snaps/prev/plain.txt" "$RW/snaps/cur/plain.txt" || why "changed file was hard-linked" || return 1
  WHY=""
}
scenario "push --link-dest=../prev snapshot (unchanged files share the inode)" t_link_dest

t_list_only() {
  rs_ok rw --list-only "$U_RW:a/" || return 1
  grep -q 'with space.txt' "$LAST_OUT" && grep -q 'plain.txt' "$LAST_OUT" ||
    why "listing lacks expected names: $(head -c 200 "$LAST_OUT" | tr '\n' ' ')"
}
scenario "--list-only" t_list_only

t_backup_dir() {
  rs_ok rw -a "$SRC/" "$U_RW:bk/" || return 1
  rm -rf "$C/bk" && cp -a "$SRC" "$C/bk" && printf 'version two\n' >"$C/bk/plain.txt"
  rs_ok rw -a --backup --backup-dir=old "$C/bk/" "$U_RW:bk/" || return 1
  cmp -s "$RW/bk/old/plain.txt" "$SRC/plain.txt" || why "old version not in bk/old/" || return 1
  cmp -s "$RW/bk/plain.txt" "$C/bk/plain.txt" || why "new version not in place"
}
scenario "push --backup --backup-dir=old" t_backup_dir

t_names() {
  local n i=0
  mkdir -p "$C/names"
  for n in 'sp ace' "quo'te" 'dq"uote' 'dol$HOME' 'semi;colon' 'amp&and' 'bq`id`' \
    'ünï cødé 名前' '-dash' 'paren(x)' 'tab	x' 'hash#x' 'lt<gt>' 'pipe|x' 'excl!x'; do
    i=$((i + 1))
    rs_ok rw -a "$C/small/" "$U_RW:$n/" || { WHY="[$n] $WHY"; return 1; }
    assert_same_tree "$C/small" "$RW/$n" || { WHY="[$n] push: $WHY"; return 1; }
    rs_ok rw -a "$U_RW:$n/" "$C/names/$i/" || { WHY="[$n] $WHY"; return 1; }
    assert_same_tree "$C/small" "$C/names/$i" || { WHY="[$n] pull: $WHY"; return 1; }
  done
}
scenario "remote names with space, quotes, \$, ;, &, backtick, unicode, leading dash, tab, #, <>, |, !" t_names

t_abs_inside() {
  rs_ok rw "$U_RW:/etc/passwd" "$C/abs-passwd" || return 1
  cmp -s "$C/abs-passwd" "$RW/etc/passwd" || why "host:/etc/passwd was not root/etc/passwd" || return 1
  rs_ok rw -a "$C/small/" "$U_RW:/absdest/" || return 1
  assert_same_tree "$C/small" "$RW/absdest" || return 1
  [ ! -e /absdest ] || why "/absdest created on the real file system" || return 1
  rs_ok rw -a "$U_RW:$RW/a/" "$C/abs-prefixed/" || return 1
  assert_same_tree "$SRC" "$C/abs-prefixed"
}
scenario "absolute paths mean the root (host:/etc/passwd is root/etc/passwd; root-prefixed paths work)" t_abs_inside

t_tilde() {
  rs_ok rw "$U_RW:~/who.txt" "$C/tilde-who" || return 1
  [ "$(cat "$C/tilde-who")" = rw ] || why "~/who.txt was not root/who.txt"
}
scenario "~/ means the root" t_tilde

# ============================ refused: read-write account =================================

t_interactive() {
  local before
  before=$(server_state); remember_listing
  sshx rw rse2e_rw -tt --
  [ "$LAST_RC" -ne 0 ] || why "interactive login exited 0" || return 1
  grep -q 'rshell' "$LAST_OUT" "$LAST_ERR" || why "no rshell message: $(first_line "$LAST_OUT")" || return 1
  unchanged_since "$before"
}
scenario "interactive login (ssh -tt, no command) refused" t_interactive

t_empty_command() {
  local before
  before=$(server_state); remember_listing; syslog_mark
  sshx rw rse2e_rw -- ''
  [ "$LAST_RC" -eq 77 ] || why "exit status $LAST_RC, want 77" || return 1
  grep -q '^rshell: denied: ' "$LAST_ERR" ||
    why "no refusal on stderr: $(first_line "$LAST_ERR")" || return 1
  # stdout may carry PAM's motd (pam_motd, printed by sshd), never anything of rshell's
  ! grep -q rshell "$LAST_OUT" || why "rshell wrote to stdout" || return 1
  unchanged_since "$before" || return 1
  syslog_since_mark_has "deny.*user=rse2e_rw"
}
scenario "empty command (shell session without a pty) refused" t_empty_command

BASE="rsync --server -logDtpre.iLsfxCIvu . inj/"
refuse_cmd() { expect_refused rw rse2e_rw "$1"; }
for c in 'id' 'sh -c id' '/bin/bash' '/bin/bash -i' 'cat /etc/shadow' 'rsync' 'true' \
  "/bin/sh /home/rse2e_rw/.ssh/rc" 'sudo rsync --server -logDtpre.iLsfxCIvu . x/' \
  'nice rsync --server -logDtpre.iLsfxCIvu . x/' '/tmp/rsync --server -logDtpre.iLsfxCIvu . x/' \
  "env LD_PRELOAD=/x rsync --server -logDtpre.iLsfxCIvu . x/" \
  "rsync --daemon --port=8873 --no-detach"; do
  scenario "command refused: '$c'" refuse_cmd "$c"
done
for c in "$BASE; touch $TMP_PWN" "rsync --server -logDtpre.iLsfxCIvu . \$(touch $MARK/dollar)" \
  "rsync --server -logDtpre.iLsfxCIvu . \`touch $MARK/backtick\`" "$BASE && touch $MARK/and" \
  "$BASE || touch $MARK/or" "$BASE | touch $MARK/pipe" "$BASE"$'\n'"touch $MARK/newline" \
  "$BASE > $MARK/redirect" "$BASE & touch $MARK/amp" "$BASE # comment" \
  "rsync --server -logDtpre.iLsfxCIvu . \$HOME/"; do
  scenario "metacharacter injection refused: $(printf '%q' "$c")" refuse_cmd "$c"
done
scenario "client-mode rsync with -e refused" refuse_cmd "rsync -e 'sh -c \"touch $MARK/client-e\"' a:b c"
scenario "client-mode local copy refused" refuse_cmd "rsync /etc/shadow shadow-copy"
scenario "secluded form (-s) whose words never arrive on stdin refused" refuse_cmd "rsync --server -slogDtpre.iLsfxCIvu"
scenario "-s with paths on the command line (not rsync's secluded form) refused" refuse_cmd "rsync --server -slogDtpre.iLsfxCIvu . dest/"
scenario "--log-file refused" refuse_cmd "rsync --server -logDtpre.iLsfxCIvu --log-file=$E2E/outside/log . x/"
scenario "options after the dot refused" refuse_cmd "rsync --server -logDtpre.iLsfxCIvu . x/ --log-file=$RW/log"
scenario "a directory in the dot slot refused" refuse_cmd "rsync --server --sender -logDtpre.iLsfxCIvu $E2E/outside canary.txt"

t_rsync_refused() { expect_rsync_refused rw "$@"; }
scenario "rsync -M--log-file=... refused" t_rsync_refused -a "-M--log-file=$E2E/outside/log" "$C/small/" "$U_RW:m/"
scenario "rsync -M--log-file inside the root refused" t_rsync_refused -a "-M--log-file=mylog" "$C/small/" "$U_RW:m/"
scenario "pull ../../etc/passwd refused" t_rsync_refused "$U_RW:../../etc/passwd" "$C/esc1"
scenario "pull ../outside/canary.txt refused" t_rsync_refused "$U_RW:../outside/canary.txt" "$C/esc2"
scenario "pull pub/../../outside/canary.txt refused" t_rsync_refused "$U_RW:pub/../../outside/canary.txt" "$C/esc3"
scenario "push to ../outside/ refused" t_rsync_refused -a "$C/small/" "$U_RW:../outside/"
scenario "push --backup-dir=../../outside refused" t_rsync_refused -a --backup --backup-dir=../../outside "$C/small/" "$U_RW:bk2/"
scenario "push --link-dest outside the root refused" t_rsync_refused -a --link-dest=../../outside "$C/small/" "$U_RW:ld2/"
scenario "push --temp-dir=../../outside refused" t_rsync_refused -a --temp-dir=../../outside "$C/small/" "$U_RW:td/"
scenario "push --partial-dir=../../outside refused" t_rsync_refused -a --partial-dir=../../outside "$C/small/" "$U_RW:pd/"
scenario "pull --files-from of a server file outside the root refused" t_rsync_refused -a --files-from="$U_RW:../outside/canary.txt" "$U_RW:" "$C/ff/"
scenario "~user path refused" t_rsync_refused "$U_RW:~rse2e_ro/x" "$C/esc4"
scenario "--rsync-path='sudo rsync' refused" t_rsync_refused -a --rsync-path='sudo rsync' "$C/small/" "$U_RW:sudo/"
scenario "daemon over ssh refused for an account without daemon = true" t_rsync_refused -a "rse2e_rw@$H::mod/" "$C/dm-no/"

t_uploaded_symlinks() {
  rm -rf "$C/links" && mkdir -p "$C/links"
  ln -s /etc "$C/links/esc" && ln -s "$E2E/outside" "$C/links/esc2" && ln -s "$E2E/outside/canary.txt" "$C/links/esc3"
  rs_ok rw -a "$C/links/" "$U_RW:links/" || return 1
  [ "$(readlink "$RW/links/esc")" = /etc ] || why "symlink not stored byte-identical: $(readlink "$RW/links/esc")" || return 1
  local before
  before=$(server_state); remember_listing
  rs_denied rw "$U_RW:links/esc/passwd" "$C/sl1" || { WHY="pull esc/passwd: $WHY"; return 1; }
  rs_denied rw "$U_RW:links/esc2/canary.txt" "$C/sl2" || { WHY="pull esc2/canary.txt: $WHY"; return 1; }
  rs_denied rw -a "$C/small/" "$U_RW:links/esc2/" || { WHY="push into esc2/: $WHY"; return 1; }
  rs_denied rw -a "$C/small/" "$U_RW:links/esc2/newdir/" || { WHY="push into esc2/newdir/: $WHY"; return 1; }
  unchanged_since "$before" || return 1
  # Following links on the sender (-L, --copy-unsafe-links) must not bring outside data.
  rs rw -aL "$U_RW:links/" "$C/sl-L/"
  if grep -r -q -F "$OUTSIDE_TOKEN" "$C/sl-L" 2>/dev/null; then why "-L pull delivered outside data"; return 1; fi
  rs rw -a --copy-unsafe-links "$U_RW:links/" "$C/sl-cul/"
  if grep -r -q -F "$OUTSIDE_TOKEN" "$C/sl-cul" 2>/dev/null; then why "--copy-unsafe-links pull delivered outside data"; return 1; fi
  [ ! -e /etc/small ] && [ ! -e "$E2E/outside/a.txt" ] || why "wrote through a symlink"
}
scenario "uploaded symlinks (esc -> /etc) kept byte-identical but never followed out of the root" t_uploaded_symlinks

t_uploaded_daemon_conf() {
  mkdir -p "$C/evilconf"
  cat >"$C/evilconf/evil.conf" <<EOF
use chroot = no
[evil]
  path = /
  pre-xfer exec = /usr/bin/touch $MARK/daemon-conf
EOF
  cp "$C/evilconf/evil.conf" "$C/evilconf/rsyncd.conf"
  rs_ok rw -a "$C/evilconf/" "$U_RW:" || return 1
  [ -f "$RW/evil.conf" ] || why "upload did not arrive" || return 1
  expect_refused rw rse2e_rw "rsync --server --daemon --config=$RW/evil.conf ." || return 1
  expect_refused rw rse2e_rw "rsync --server --daemon --config=evil.conf ." || return 1
  expect_refused rw rse2e_rw "rsync --server --daemon ." || return 1
  expect_rsync_refused rw --rsync-path="rsync --config=$RW/evil.conf" "rse2e_rw@$H::evil/" "$C/evild/"
}
scenario "uploaded rsyncd.conf with pre-xfer exec never used (--daemon --config=<upload>)" t_uploaded_daemon_conf

t_scp_legacy() {
  local before
  before=$(server_state); remember_listing
  # shellcheck disable=SC2046
  runx scp -O -F /dev/null -P "$PORT" -i "$KEYDIR/rw" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR "$C/small/a.txt" "$U_RW:scp-dest"
  [ "$LAST_RC" -ne 0 ] || why "scp -O succeeded" || return 1
  grep -q 'rshell: denied' "$LAST_ERR" || why "no rshell refusal: $(first_line "$LAST_ERR")" || return 1
  runx scp -O -F /dev/null -P "$PORT" -i "$KEYDIR/rw" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR "$U_RW:canary/inside.txt" "$C/scp-got"
  [ "$LAST_RC" -ne 0 ] && [ ! -e "$C/scp-got" ] || why "scp -O download succeeded" || return 1
  unchanged_since "$before"
}
scenario "scp -O (legacy scp -t/-f) refused" t_scp_legacy

t_sftp() {
  local before
  before=$(server_state); remember_listing
  printf 'put %s sftp-dest\nget canary/inside.txt %s\n' "$C/small/a.txt" "$C/sftp-got" >"$C/sftp-batch"
  runx scp -F /dev/null -P "$PORT" -i "$KEYDIR/rw" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR "$C/small/a.txt" "$U_RW:scp-dest"
  [ "$LAST_RC" -ne 0 ] || why "scp (sftp protocol) succeeded" || return 1
  runx sftp -b "$C/sftp-batch" -F /dev/null -P "$PORT" -i "$KEYDIR/rw" -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR "$U_RW"
  [ "$LAST_RC" -ne 0 ] && [ ! -e "$C/sftp-got" ] || why "sftp succeeded" || return 1
  unchanged_since "$before"
}
scenario "sftp and scp (sftp-server subsystem through the login shell) refused" t_sftp

t_shadow() {
  expect_refused rw rse2e_rw "cat /etc/shadow" || return 1
  rs rw "$U_RW:/etc/shadow" "$C/shadow1"
  [ "$LAST_RC" -ne 0 ] && [ ! -e "$C/shadow1" ] || why "pull host:/etc/shadow returned a file" || return 1
  expect_rsync_refused rw "$U_RW:../../../../../etc/shadow" "$C/shadow2" || return 1
  # an absolute path means the root: this names root/srv/rshell-e2e/secret/..., absent
  rs rw "$U_RW:$E2E/secret/root-only.txt" "$C/secret1"
  [ "$LAST_RC" -ne 0 ] && [ ! -e "$C/secret1" ] || why "pull of the root-only file returned a file" || return 1
  expect_rsync_refused rw "$U_RW:../secret/root-only.txt" "$C/secret2" || return 1
  rs ro "$U_RO:/etc/shadow" "$C/shadow3"
  [ ! -e "$C/shadow3" ] || why "ro pull host:/etc/shadow returned a file"
}
scenario "a stolen key cannot read /etc/shadow or a root-only file" t_shadow

# ============================ read-only account ===========================================

t_ro_pull() {
  rs_ok ro -aHAX "$U_RO:data/" "$C/ro-pull/" || return 1
  assert_same_tree "$SRC" "$C/ro-pull" HAX
}
scenario "read-only account: pull -aHAX works" t_ro_pull
t_ro_refused() { expect_rsync_refused ro "$@"; }
scenario "read-only account: push refused" t_ro_refused -a "$C/small/" "$U_RO:data/"
scenario "read-only account: push of a single new file refused" t_ro_refused "$C/small/a.txt" "$U_RO:new.txt"
scenario "read-only account: pull --remove-source-files refused" t_ro_refused -a --remove-source-files "$U_RO:data/plain.txt" "$C/ro-rsf"

t_relative() {
  rs_ok ro -aR "$U_RO:/snapsrc/" "$C/rel-root/" || { WHY="-R /snapsrc/: $WHY"; return 1; }
  assert_same_tree "$RO/snapsrc" "$C/rel-root/snapsrc" || return 1
  rs_ok ro -aR "$U_RO:$RO/snapsrc/" "$C/rel-abs/" || { WHY="-R $RO/snapsrc/: $WHY"; return 1; }
  assert_same_tree "$RO/snapsrc" "$C/rel-abs/$RO/snapsrc"
}
scenario "pull -R (--relative) with /path and with the root-prefixed absolute path (rsnapshot style)" t_relative

# ============================ rsnapshot ===================================================

t_rsnapshot() {
  local conf=$C/rsnapshot.conf snap=$C/snapshots
  {
    printf 'config_version\t1.2\n'
    printf 'snapshot_root\t%s/\n' "$snap"
    printf 'no_create_root\t0\n'
    printf 'cmd_cp\t/bin/cp\ncmd_rm\t/bin/rm\ncmd_rsync\t/usr/bin/rsync\ncmd_ssh\t/usr/bin/ssh\n'
    printf 'ssh_args\t-F /dev/null -p %s -i %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR\n' "$PORT" "$KEYDIR/ro"
    printf 'retain\talpha\t3\n'
    printf 'verbose\t1\nloglevel\t2\n'
    printf 'lockfile\t%s/rsnapshot.pid\n' "$C"
    printf 'sync_first\t1\nlink_dest\t1\n'
    # rrsync's spelling: a leading / means the root (see the -R scenario for $RO/snapsrc/)
    printf 'backup\trse2e_ro@%s:/snapsrc/\tro/\n' "$H"
  } >"$conf"
  runx rsnapshot -c "$conf" configtest
  [ "$LAST_RC" -eq 0 ] || why "configtest: $(first_line "$LAST_OUT") $(first_line "$LAST_ERR")" || return 1
  local i
  for i in 1 2; do
    runx rsnapshot -c "$conf" sync
    [ "$LAST_RC" -eq 0 ] || why "rsnapshot sync #$i exited $LAST_RC: $(grep -m1 -i -e denied -e error "$LAST_ERR" "$LAST_OUT")" || return 1
    runx rsnapshot -c "$conf" alpha
    [ "$LAST_RC" -eq 0 ] || why "rsnapshot alpha #$i exited $LAST_RC" || return 1
    [ "$i" -eq 1 ] && printf 'changed\n' >"$RO/snapsrc/snapmark.txt" && touch -d '2021-01-01' "$RO/snapsrc/snapmark.txt"
  done
  local m0 m1
  m0=$(find "$snap/alpha.0" -name snapmark.txt -print -quit)
  m1=$(find "$snap/alpha.1" -name snapmark.txt -print -quit)
  [ -n "$m0" ] && [ -n "$m1" ] || why "snapshots lack snapmark.txt" || return 1
  assert_same_tree "$RO/snapsrc" "$(dirname "$m0")" || { WHY="alpha.0: $WHY"; return 1; }
  [ "$(cat "$m0")" = changed ] && [ "$(cat "$m1")" = snap ] || why "snapshot contents wrong" || return 1
  same_inode "$(dirname "$m0")/sub/blob" "$(dirname "$m1")/sub/blob" || return 1
  ! same_inode "$m0" "$m1" || why "changed file shares the inode" || return 1
  WHY=""
}
scenario "rsnapshot: two sync+alpha runs, unchanged files hard-linked between snapshots" t_rsnapshot

# ============================ daemon over ssh =============================================

t_daemon() {
  rs_ok dm "rse2e_dm@$H::" || return 1
  grep -q '^mod' "$LAST_OUT" || why "module list lacks mod: $(first_line "$LAST_OUT")" || return 1
  rs_ok dm -a "rse2e_dm@$H::mod/" "$C/dm-pull/" || return 1
  assert_same_tree "$SRC" "$C/dm-pull" || return 1
  rs_ok dm -a "$C/small/" "rse2e_dm@$H::mod/up/" || return 1
  assert_same_tree "$C/small" "$DM/mod/up"
}
scenario "daemon over ssh with the admin's rsyncd.conf: list, pull, push" t_daemon

t_daemon_attacks() {
  cat >"/home/rse2e_dm/rsyncd.conf" <<EOF
use chroot = no
[evil]
  path = /
  pre-xfer exec = /usr/bin/touch $MARK/dm-home
EOF
  chown rse2e_dm: /home/rse2e_dm/rsyncd.conf
  cp /home/rse2e_dm/rsyncd.conf "$DM/evil.conf" && chown rse2e_dm: "$DM/evil.conf"
  local before
  before=$(server_state); remember_listing
  rs dm -a "rse2e_dm@$H::evil/etc/hostname" "$C/dm-evil"
  [ "$LAST_RC" -ne 0 ] && [ ! -e "$C/dm-evil" ] || why "module from ~/rsyncd.conf served" || return 1
  unchanged_since "$before" || return 1
  expect_refused dm rse2e_dm "rsync --server --daemon --config=$DM/evil.conf ." || return 1
  expect_refused dm rse2e_dm "rsync --server --daemon -M'pre-xfer exec=/usr/bin/touch $MARK/dparam' ." || return 1
  expect_refused dm rse2e_dm "rsync --server --daemon --dparam=pre-xfer\\ exec=/usr/bin/touch\\ $MARK/dparam2 ." || return 1
  expect_rsync_refused dm --rsync-path="rsync --config=$DM/evil.conf" "rse2e_dm@$H::evil/" "$C/dm-evil2/"
}
scenario "daemon over ssh: ~/rsyncd.conf, --config=<upload>, -M/--dparam never used" t_daemon_attacks

# ============================ forced commands ============================================

t_forced_standalone() {
  rs_ok fc -a "$SRC/" "$U_FC:dest/" || return 1
  assert_same_tree "$SRC" "$FC/dest" || return 1
  sshx fc rse2e_fc -- true
  [ "$LAST_RC" -eq 0 ] || why "rrsync probe 'true' exited $LAST_RC" || return 1
  expect_refused fc rse2e_fc "id" || return 1
  expect_rsync_refused fc -a "$U_FC:dest/" "$C/fc-pull/" || { WHY="pull from -wo: $WHY"; return 1; }
  expect_rsync_refused fc -a "$C/small/" "$U_FC:../rw/" || { WHY="push outside DIR: $WHY"; return 1; }
}
scenario "standalone forced key (command=\"rshell -wo DIR\", login shell bash): push works, pull/escape/commands refused" t_forced_standalone

t_forced_relative() {
  rs_ok fcrel -aHAX "$U_FC:tree/" "$C/fcrel-pull/" || return 1
  assert_same_tree "$SRC" "$C/fcrel-pull" HAX || return 1
  expect_rsync_refused fcrel -a "$C/small/" "$U_FC:up/" || { WHY="push with -ro: $WHY"; return 1; }
  expect_rsync_refused fcrel "$U_FC:../.profile" "$C/fcrel-esc" || { WHY="escape to the home: $WHY"; return 1; }
}
scenario "standalone forced key with a relative DIR (command=\"rshell -ro pub\" = ~/pub, as rrsync)" t_forced_relative

t_forced_nested() {
  rs_ok rwnest -a "$U_RW:tree/" "$C/nest-pull/" || return 1
  assert_same_tree "$SRC" "$C/nest-pull" || return 1
  expect_rsync_refused rwnest -a "$C/small/" "$U_RW:up/" || { WHY="push with -ro key: $WHY"; return 1; }
  expect_rsync_refused rwnest "$U_RW:../canary/inside.txt" "$C/nest-esc" || { WHY="escape from key DIR: $WHY"; return 1; }
  expect_refused rwnest rse2e_rw "id"
}
scenario "nested forced key (login shell rshell + command=\"rshell -ro DIR\"): pull in DIR only" t_forced_nested

t_nested_widen() {
  expect_refused rw rse2e_rw "$RSHELL -wo /" || return 1
  expect_refused rw rse2e_rw "$RSHELL $E2E/outside" || return 1
  # a usage error in client-sent words: 64 (usage) is as good as 77 here, one denied line
  ACCEPT_RC="77 64" expect_refused rw rse2e_rw "rshell --config /tmp/evil.toml" || return 1
  ACCEPT_RC="77 64" expect_refused rw rse2e_rw "$RSHELL -ro --bogus-flag" || return 1
  expect_refused ro rse2e_ro "rshell -wo $RO" || return 1
  ACCEPT_RC="77 64" expect_refused rw rse2e_rw "$RSHELL --test id"
}
scenario "client-sent rshell words may only narrow (DIR outside root, --config, -wo on read-only)" t_nested_widen

# ============================ environment attacks ========================================

EVIL_C='#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void evil(void) {
  char p[512], exe[256] = "?";
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) exe[n] = 0;
  snprintf(p, sizeof p, "%s/ldpreload.%d", MARKDIR, (int)getpid());
  int fd = open(p, O_WRONLY | O_CREAT, 0644);
  if (fd >= 0) { write(fd, exe, sizeof exe); close(fd); }
}'

plant_env_attack() { # USER MARKDIR
  local u=$1 h=/home/$1 md=$2
  printf '%s\n' "$EVIL_C" >"$WORK/evil.c"
  gcc -shared -fPIC -DMARKDIR="\"$md\"" -o "$h/evil.so" "$WORK/evil.c" || return 1
  mkdir -p "$h/bin"
  printf '#!/bin/sh\ntouch %s/path-rsync\nexec /usr/bin/rsync "$@"\n' "$md" >"$h/bin/rsync"
  printf '#!/bin/sh\ntouch %s/popt-exec\n' "$md" >"$h/x.sh"
  chmod 0755 "$h/bin/rsync" "$h/x.sh" "$h/evil.so"
  cat >"$h/.pam_environment" <<EOF
LD_PRELOAD DEFAULT=$h/evil.so
USER DEFAULT=rse2e_rw
LOGNAME DEFAULT=rse2e_rw
HOME DEFAULT=/home/rse2e_rw
PATH DEFAULT=$h/bin:/usr/bin:/bin
EOF
  printf 'rsync exec --server %s/x.sh\n' "$h" >"$h/.popt"
  chown -R "$u:$u" "$h"
}

t_env_control() {
  plant_env_attack rse2e_ctl "$CTLMARK" || why "could not build the attack" || return 1
  sshx ctl rse2e_ctl -- 'echo "$USER|$HOME|$LD_PRELOAD"'
  [ "$LAST_RC" -eq 0 ] || why "control login failed ($LAST_RC): $(first_line "$LAST_ERR")" || return 1
  [ "$(cat "$LAST_OUT")" = "rse2e_rw|/home/rse2e_rw|/home/rse2e_ctl/evil.so" ] ||
    why "pam_env did not apply ~/.pam_environment: $(first_line "$LAST_OUT")" || return 1
  ls "$CTLMARK"/ldpreload.* >/dev/null 2>&1 || why "LD_PRELOAD constructor did not run in bash"
}
scenario "control: pam_env applies ~/.pam_environment (LD_PRELOAD, USER, HOME) to a dynamic login shell" t_env_control

t_env_attack() {
  plant_env_attack rse2e_pe "$MARK" || why "could not build the attack" || return 1
  # The rw account's home gets a .popt too, for an rsync that would trust HOME.
  printf 'rsync exec --server /home/rse2e_pe/x.sh\n' >/home/rse2e_rw/.popt && chown rse2e_rw: /home/rse2e_rw/.popt
  rs_ok pe -a "$C/small/" "$U_PE:landed/" || return 1
  assert_same_tree "$C/small" "$PE/landed" || return 1
  [ ! -e "$RW/landed" ] || why "push landed in the account named by USER/HOME" || return 1
  rs_ok pe "$U_PE:who.txt" "$C/pe-who" || return 1
  [ "$(cat "$C/pe-who")" = pe ] || why "pull served another account's root" || return 1
  rs_ok pe --list-only "$U_PE:" || return 1
  expect_refused pe rse2e_pe "id" || return 1
  expect_rsync_refused pe "$U_PE:../rw/who.txt" "$C/pe-esc" || return 1
  markers_clean || return 1
  rm -f /home/rse2e_rw/.popt
}
scenario "~/.pam_environment (LD_PRELOAD, USER/HOME of another account, PATH) and ~/.popt exec: no code runs, own policy holds" t_env_attack

# ============================ policy shapes ===============================================

t_home_root() {
  expect_rsync_refused hm -a "$C/small/" "rse2e_hm@$H:up/" || { WHY="push into a root holding the home: $WHY"; return 1; }
  expect_rsync_refused hm "$C/small/a.txt" "rse2e_hm@$H:.ssh/authorized_keys" || { WHY="overwrite authorized_keys: $WHY"; return 1; }
  rs_ok hm "rse2e_hm@$H:.profile" "$C/hm-profile" || { WHY="pull from the home: $WHY"; return 1; }
  cmp -s "$C/hm-profile" /home/rse2e_hm/.profile || why "pulled .profile differs"
}
scenario "root holding the home: pushes refused (dangerous_writable_home), pulls work" t_home_root

t_defaults_root() {
  expect_rsync_refused df -a "$C/small/" "rse2e_df@$H:up/" || { WHY="push with a missing root: $WHY"; return 1; }
  [ ! -e /home/rse2e_df/backup ] || why "rshell created the missing root" || return 1
  grep -q -i -e 'not exist' -e 'missing' -e 'no such' "$LAST_ERR" || why "refusal does not say the root is missing: $(first_line "$LAST_ERR")" || return 1
  install -d -m 0755 -o rse2e_df -g rse2e_df /home/rse2e_df/backup
  rs_ok df -a "$C/small/" "rse2e_df@$H:up/" || return 1
  assert_same_tree "$C/small" /home/rse2e_df/backup/up
}
scenario "[defaults] root = ~/backup: missing root refused without mkdir, then used once created" t_defaults_root

t_logging() {
  syslog_mark
  rs_ok rw -a "$C/small/" "$U_RW:logged/" || return 1
  syslog_since_mark_has 'rshell\[[0-9]+\]: allow user=rse2e_rw uid=[0-9]+ from=127\.0\.0\.1 .*command="rsync --server ' || return 1
  syslog_since_mark_has 'rshell\[[0-9]+\]: outcome user=rse2e_rw .*landlock=enforced\(abi [0-9]+\) .*exit=0' || return 1
  syslog_since_mark_has 'rshell\[[0-9]+\]: outcome user=rse2e_rw .*exit=0.* read_bytes=[0-9]+ written_bytes=[0-9]+' ||
    { WHY="outcome record lacks byte counts: $(grep 'outcome user=rse2e_rw' "$SYSLOG" | tail -n 1 | cut -c1-200)"; return 1; }
}
scenario "syslog: an allow record and an outcome record (exit status, bytes) per transfer" t_logging

# ============================ secluded arguments (rsync -s, BackupPC 4) ====================

t_secluded() {
  local n i=0
  rs_ok rw -s -a "$C/small/" "$U_RW:sec/" || return 1
  mkdir -p "$C/snames"
  for n in 'sp ace' 'ünï cødé 名前' '-dash' 'hash#x' 'brace{1}' 'star*x'; do
    i=$((i + 1))
    rs_ok rw -s -a "$C/small/" "$U_RW:sec/$n/" || { WHY="[$n] push: $WHY"; return 1; }
    assert_same_tree "$C/small" "$RW/sec/$n" || { WHY="[$n] push: $WHY"; return 1; }
    rs_ok rw -s -a "$U_RW:sec/$n/" "$C/snames/$i/" || { WHY="[$n] pull: $WHY"; return 1; }
    assert_same_tree "$C/small" "$C/snames/$i" || { WHY="[$n] pull: $WHY"; return 1; }
  done
  # RSYNC_PROTECT_ARGS=1 is the same form; a wildcard in a secluded path expands beneath root.
  RSYNC_PROTECT_ARGS=1 rs_ok rw -a "$U_RW:sec/sp*/" "$C/sglob/" || return 1
  assert_same_tree "$C/small" "$C/sglob"
}
scenario "rsync -s push and pull (space, unicode, leading dash, #, {}, *), RSYNC_PROTECT_ARGS=1, wildcard" t_secluded

t_secluded_attacks() {
  syslog_mark
  # Options hidden in the secluded words get the same refusals as on the command line.
  expect_rsync_refused rw -s -a -M--log-file=/tmp/rshell-e2e-secluded.log "$C/small/" "$U_RW:sec2/" || return 1
  [ ! -e /tmp/rshell-e2e-secluded.log ] || why "the hidden --log-file was written" || return 1
  expect_rsync_refused rw -s -a "$U_RW:/../../etc/" "$C/sec-etc/" || return 1
  expect_rsync_refused rw -s -a -M--sender "$C/small/" "$U_RW:sec3/" || return 1
  expect_rsync_refused rw -s -a --iconv=utf8,latin1 "$C/small/" "$U_RW:sec4/" || return 1
  # The vetted words are logged like a command.
  syslog_since_mark_has 'deny user=rse2e_rw .*\[secluded\] .*--log-file'
}
scenario "rsync -s: hidden options, paths outside root and --iconv refused; words logged" t_secluded_attacks

# ============================ Latin-1 names (bytes that are not UTF-8) =====================

# A client on an ISO-8859-1 machine sends its names as they are: `café` as `caf` + 0xE9, `nÿ`
# as `n` + 0xFF. rshell passes those bytes through (split, check, exec) and logs them escaped.
t_latin1() {
  local e9 ff dir secl i=0 got
  e9=$(printf 'caf\351.txt') ff=$(printf 'n\377')
  rm -rf "$C/latin1" && mkdir -p "$C/latin1/src"
  printf 'e9\n' >"$C/latin1/src/$e9" && printf 'ff\n' >"$C/latin1/src/$ff"
  for secl in "" -s; do
    i=$((i + 1))
    dir=$(printf 'l\351tin%s' "$i")
    syslog_mark
    # shellcheck disable=SC2086 # $secl is one option or none
    rs_ok rw -a $secl "$C/latin1/src/" "$U_RW:$dir/" || { WHY="push ${secl:-plain}: $WHY"; return 1; }
    got=$(cat "$RW/$dir/$e9" "$RW/$dir/$ff" 2>/dev/null | tr '\n' ' ')
    [ "$got" = "e9 ff " ] ||
      why "push ${secl:-plain}: the names are not on disk byte for byte: $(ls "$RW" "$RW/$dir" 2>&1 | od -An -c | tr -s ' \n' ' ' | cut -c1-200)" || return 1
    assert_same_tree "$C/latin1/src" "$RW/$dir" || { WHY="push ${secl:-plain}: $WHY"; return 1; }
    # The log record escapes the bytes (`l\xe9tin1`) and holds none of them raw.
    syslog_since_mark_has 'allow user=rse2e_rw .*paths="l\\xe9tin'"$i"'"' || return 1
    ! tail -n +"$((SYSLOG_AT + 1))" "$SYSLOG" | LC_ALL=C grep -q "$(printf '[\351\377]')" ||
      why "a raw Latin-1 byte in the syslog record" || return 1
    # shellcheck disable=SC2086
    rs_ok rw -a $secl "$U_RW:$dir/$ff" "$C/latin1/one$i" || { WHY="pull of $dir/n<ff> ${secl:-plain}: $WHY"; return 1; }
    cmp -s "$C/latin1/one$i" "$C/latin1/src/$ff" || why "pull ${secl:-plain}: n<ff> differs" || return 1
    # shellcheck disable=SC2086
    rs_ok rw -a $secl "$U_RW:$dir/" "$C/latin1/tree$i/" || { WHY="pull ${secl:-plain}: $WHY"; return 1; }
    assert_same_tree "$C/latin1/src" "$C/latin1/tree$i" || { WHY="pull ${secl:-plain}: $WHY"; return 1; }
    # The attack twin: the Latin-1 name does not carry `..` out of the root; the client's
    # refusal line shows the name escaped.
    # shellcheck disable=SC2086
    rs_denied rw -a $secl "$U_RW:$dir/../../outside/canary.txt" "$C/latin1/esc$i" || { WHY="escape ${secl:-plain}: $WHY"; return 1; }
    [ ! -e "$C/latin1/esc$i" ] || why "escape ${secl:-plain}: the canary was served" || return 1
    grep -q -F "l\\xe9tin$i/../../outside" "$LAST_ERR" ||
      why "escape ${secl:-plain}: the refusal does not show the escaped name: $(first_line "$LAST_ERR")" || return 1
  done
}
scenario "Latin-1 names (0xE9, a trailing 0xFF): push and pull byte for byte, plain and -s; logged escaped; .. twin refused" t_latin1

t_backuppc() {
  local bpc=/usr/libexec/backuppc-rsync/rsync_bpc pool=$C/bpc-pool
  [ -x "$bpc" ] || { why "rsync_bpc (Debian package backuppc-rsync) is not installed"; return 1; }
  rm -rf "$pool" && mkdir -p "$pool/pool" "$pool/cpool" "$pool/pc/e2e"
  rs_ok rw -a "$SRC/" "$U_RW:bpc/" || return 1
  # BackupPC 4's defaults (Debian 12 config.pl RsyncArgs / RsyncRestoreArgs; -s included).
  local common=(--bpc-top-dir "$pool" --bpc-host-name e2e --bpc-share-name /bpc
    --bpc-attrib-new --bpc-log-level 0 -e "$(ssh_cmd rw)" --super --recursive --protect-args
    --numeric-ids --perms --owner --group -D --times --links --hard-links --delete --partial
    '--log-format=log: %o %i %B %8U,%8G %9l %f%L' --stats)
  runx "$bpc" "${common[@]}" --bpc-bkup-num 0 --bpc-bkup-comp 0 --bpc-bkup-prevnum -1 \
    --bpc-bkup-prevcomp -1 --bpc-bkup-inode0 1 --delete-excluded --one-file-system --checksum \
    --timeout=72000 "rse2e_rw@$H:/bpc/" /
  [ "$LAST_RC" -eq 0 ] || why "full backup exited $LAST_RC: $(grep -m1 -v '^$' "$LAST_ERR" | cut -c1-300)" || return 1
  grep -q '^Done: 0 errors' "$LAST_OUT" "$LAST_ERR" || why "full backup reported errors: $(grep -h '^Done' "$LAST_OUT" "$LAST_ERR" | head -n 1)" || return 1
  printf 'changed for the incremental\n' >>"$RW/bpc/plain.txt"
  runx "$bpc" "${common[@]}" --bpc-bkup-num 1 --bpc-bkup-comp 0 --bpc-bkup-prevnum 0 \
    --bpc-bkup-prevcomp 0 --bpc-bkup-inode0 1000 --delete-excluded --one-file-system \
    --timeout=72000 "rse2e_rw@$H:/bpc/" /
  [ "$LAST_RC" -eq 0 ] || why "incremental exited $LAST_RC: $(grep -m1 -v '^$' "$LAST_ERR" | cut -c1-300)" || return 1
  grep -q '^Done: 0 errors' "$LAST_OUT" "$LAST_ERR" || why "incremental reported errors: $(grep -h '^Done' "$LAST_OUT" "$LAST_ERR" | head -n 1)" || return 1
  [ -d "$pool/pc/e2e/1" ] || why "no backup 1 in the BackupPC pool" || return 1
  # Restore backup 1 into the account (BackupPC sends it with -R and secluded words).
  runx "$bpc" "${common[@]}" --bpc-bkup-num 1 --bpc-bkup-comp 0 --bpc-bkup-merge 1/0/4 \
    --relative /./ "rse2e_rw@$H:/bpc-restore/"
  [ "$LAST_RC" -eq 0 ] || why "restore exited $LAST_RC: $(grep -m1 -v '^$' "$LAST_ERR" | cut -c1-300)" || return 1
  assert_same_tree "$RW/bpc" "$RW/bpc-restore"
}
scenario "BackupPC 4's rsync_bpc: full and incremental backup into a pool, and a restore, with its default (secluded) arguments" t_backuppc

# ============================ global checks ==============================================

t_no_leak_anywhere() {
  if grep -r -a -l -F -e "$SECRET" -e "$SHADOW_NEEDLE" "$C" "$WORK/sshd.log" 2>/dev/null | head -n 3 | grep -q .; then
    why "secret found in: $(grep -r -a -l -F -e "$SECRET" -e "$SHADOW_NEEDLE" "$C" | head -n 3 | tr '\n' ' ')"
    return 1
  fi
  markers_clean || return 1
  cmp -s "$E2E/outside/canary.txt" <(printf '%s\n' "$OUTSIDE_TOKEN") || why "outside canary changed" || return 1
  [ "$(find "$E2E/outside" -mindepth 1 -printf '%P ')" = "canary.txt " ] || why "files appeared outside the root: $(find "$E2E/outside" -mindepth 1 -printf '%P ')" || return 1
  [ "$(cat "$E2E/secret/root-only.txt")" = "$SECRET" ] || why "root-only canary changed"
}
scenario "no secret in any output or received file; canaries outside the root untouched" t_no_leak_anywhere
