//! The real-rsync site shared by the suites that run real transfers (effects, findings,
//! real_rsync, paths): a throw-away directory holding `root/`, `outside/`, `client/`, the
//! case's `rshell.toml` and a fake ssh. The rsync client runs in `client/` with
//! `-e <fake ssh>`; the fake ssh plays ssh + sshd and runs the built rshell as the account's
//! login shell (`rshell -c CMD`) in a private mount namespace where an overlay over /etc
//! holds the case's rshell.toml, so the machine's /etc is never touched (no placeholder
//! /etc/rshell.toml either). Needs root, `unshare -m` and overlayfs: see [`usable`].

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::TempDir;

/// The fake ssh. `$1` is the host, the rest are the remote command's words, joined with
/// spaces as ssh joins them. What it does is steered by the environment the rsync client
/// passes down (set by the test with [`Site::command`]):
/// - `FAKE_SSH`: `login` (default) runs `rshell -c CMD` as a login shell; `nested` runs
///   `rshell -c "$NESTED_KEY"` with SSH_ORIGINAL_COMMAND=CMD; `plain` runs no rshell at all:
///   `sh -c "exec CMD"` in `$PLAIN_CWD`, under `flock -x $PLAIN_LOCK` when that is set.
/// - `GATE`: hold the client's bytes back until the file `$GATE` exists.
/// - `REWRITE_FROM`/`REWRITE_TO`: one sed substitution on CMD (a modified client).
/// - `SERVER_COMMAND`: run this command string instead of the client's (a modified client
///   that sends exactly this string).
/// - `SERVER_WORDS`: a file of secluded-args words (`rsync\0...\0\0`): the client's own
///   words are read off standard input one byte at a time (never past their terminator)
///   and these are sent in their place.
/// - `SERVER_AS`: a user name; the server side (rshell, or plain rsync) runs as that user,
///   with its groups (strace's `-u` when tracing, else setpriv).
/// - `SERVER_TRACE`: a file; the server side runs under `strace -f -y` writing there: every
///   system call that names a path or makes, moves or closes a descriptor, and process
///   creation and exec (not the data moved by read/write).
/// - `NO_SYSLOG`: `1` puts /dev/null over /dev/log in the namespace (where there is one), so
///   the machine's log never sees the test's records.
/// - `NO_JOURNAL`: `1` hides systemd's journal socket directory (an empty tmpfs over
///   /run/systemd/journal, where there is one): with `PRIVATE_DEV` too, no log sink is left.
/// - `PRIVATE_DEV`: a directory mounted over /dev in the namespace, with /dev/null,
///   /dev/zero and /dev/urandom bound into it (and whatever else the test put there).
const FAKE_SSH: &str = r#"#!/bin/sh
shift
cmd="$*"
if [ -n "$REWRITE_FROM" ]; then
  cmd=$(printf '%s\n' "$cmd" | /bin/sed "s|$REWRITE_FROM|$REWRITE_TO|")
fi
if [ -n "$SERVER_COMMAND" ]; then
  cmd="$SERVER_COMMAND"
fi
# The prefix every server side runs under (after `env -i`): strace, and the user change.
wrap=""
if [ -n "$SERVER_TRACE" ]; then
  calls=open,openat,openat2,creat,stat,lstat,newfstatat,statx,access,faccessat,faccessat2
  calls=$calls,readlink,readlinkat,mkdir,mkdirat,rmdir,unlink,unlinkat,rename,renameat,renameat2
  calls=$calls,link,linkat,symlink,symlinkat,chmod,/^fchmodat,chown,lchown,fchownat,utime,utimes
  calls=$calls,futimesat,utimensat,truncate,chdir,fchdir,chroot,execve,execveat,mknod,mknodat
  calls=$calls,getxattr,lgetxattr,setxattr,lsetxattr,listxattr,llistxattr,removexattr,lremovexattr
  calls=$calls,fgetxattr,fsetxattr,flistxattr,fremovexattr,statfs,getcwd,close,close_range,dup
  calls=$calls,dup2,dup3,fcntl,fchmod,fchown,ftruncate,fallocate,getdents64,pipe2,socketpair
  calls=$calls,clone,clone3,fork,vfork,exit_group,name_to_handle_at,open_by_handle_at,pidfd_open
  calls=$calls,inotify_add_watch,mount,umount2,pivot_root,fanotify_mark
  wrap="/usr/bin/strace -f --seccomp-bpf -y -xx -qq -s 65535 -e trace=$calls -o $SERVER_TRACE"
  if [ -n "$SERVER_AS" ]; then
    wrap="$wrap -u $SERVER_AS"
  fi
elif [ -n "$SERVER_AS" ]; then
  wrap="/usr/bin/setpriv --reuid=$SERVER_AS --regid=$(/usr/bin/id -g "$SERVER_AS") --init-groups"
fi
export WRAP="$wrap"
serve() {
  case "${FAKE_SSH:-login}" in
  plain)
    cd "$PLAIN_CWD" || exit 1
    if [ -n "$PLAIN_LOCK" ]; then
      exec /usr/bin/flock -x "$PLAIN_LOCK" $WRAP /bin/sh -c "exec $cmd"
    fi
    exec $WRAP /bin/sh -c "exec $cmd"
    ;;
  *)
    exec /usr/bin/unshare -m --propagation private /bin/sh -c '
      set -e
      t="$3/ov.$$"
      /bin/mkdir -m 755 -p "$t/up" "$t/work"
      /bin/cp "$0" "$t/up/rshell.toml"
      /bin/mount -t overlay overlay -o "lowerdir=/etc,upperdir=$t/up,workdir=$t/work" /etc
      if [ "$NO_SYSLOG" = 1 ] && [ -S /dev/log ]; then
        /bin/mount --bind /dev/null /dev/log
      fi
      if [ "$NO_JOURNAL" = 1 ] && [ -d /run/systemd/journal ]; then
        /bin/mount -t tmpfs -o size=16k rshell-no-journal /run/systemd/journal
      fi
      if [ -n "$PRIVATE_DEV" ]; then
        for d in null zero urandom; do /bin/mount --bind "/dev/$d" "$PRIVATE_DEV/$d"; done
        /bin/mount --rbind "$PRIVATE_DEV" /dev
      fi
      if [ "$FAKE_SSH" = nested ]; then
        exec /usr/bin/env -i SSH_CONNECTION="127.0.0.1 1 127.0.0.1 22" SSH_ORIGINAL_COMMAND="$1" $WRAP "$2" -c "$NESTED_KEY"
      fi
      exec /usr/bin/env -i SSH_CONNECTION="127.0.0.1 1 127.0.0.1 22" $WRAP "$2" -c "$1"' "@CONFIG@" "$cmd" "@BIN@" "@NS@"
    ;;
  esac
}
# Read the client's secluded words off standard input up to and including the empty word
# that ends them (bash's read takes one byte at a time from a pipe or socket: never more).
skip_words() {
  /bin/bash -c 'while IFS= read -r -d "" w; do [ -n "$w" ] || exit 0; done; exit 1'
}
# Serve with standard input replaced by a fifo that FEED (a shell function) fills: whatever
# it writes first, then the client's own stream (descriptor 3).
serve_through() { # FIFO-BASE FEED
  fifo="$1.$$.fifo"
  /usr/bin/mkfifo "$fifo"
  exec 3<&0
  { "$2"; exec /bin/cat <&3; } >"$fifo" &
  feeder=$!
  exec 3<&-
  (serve) <"$fifo"
  rc=$?
  kill "$feeder" 2>/dev/null
  rm -f "$fifo"
  exit "$rc"
}
stored_words() { /bin/cat "$SERVER_WORDS"; }
await_gate() { while [ ! -e "$GATE" ]; do /bin/sleep 0.05; done; }
if [ -n "$SERVER_WORDS" ]; then
  skip_words || { echo "fake-ssh: the client sent no secluded words" >&2; exit 70; }
  serve_through "$SERVER_WORDS" stored_words
fi
if [ -n "$GATE" ]; then
  serve_through "$GATE" await_gate
fi
serve
"#;

/// What the sites need from the machine; false (after a visible `skipped:` line) only with
/// `RSHELL_ALLOW_SKIP=1`, otherwise a missing need fails the test (see [`super::needs`]).
pub fn usable() -> bool {
    super::needs("root, to mount the test config over /etc", super::root())
        && super::needs("a private mount namespace", super::mount_namespace())
        && super::needs("rsync", super::program("/usr/bin/rsync"))
        && super::needs("overlayfs in a mount namespace", overlay())
}

/// The fake ssh puts the config into /etc with an overlay: a bind mount would need an
/// existing /etc/rshell.toml, and a placeholder there is shared with everything else on the
/// machine.
pub fn overlay() -> Result<(), String> {
    let dir = TempDir::new("overlay-probe");
    for d in ["lower", "up", "work", "mnt"] {
        std::fs::create_dir(dir.path().join(d)).map_err(|e| e.to_string())?;
    }
    let p = |d: &str| dir.path().join(d).display().to_string();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "mount", "-t", "overlay"])
        .arg("overlay")
        .arg("-o")
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            p("lower"),
            p("up"),
            p("work")
        ))
        .arg(p("mnt"))
        .output()
        .map_err(|e| format!("`unshare` cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

pub struct Site {
    pub dir: TempDir,
    pub root: PathBuf,
    pub outside: PathBuf,
    pub client: PathBuf,
    pub wrapper: PathBuf,
    pub config: PathBuf,
    /// The account whose section the config holds (`[users.NAME]`).
    pub user: String,
}

impl Site {
    /// A site for the account `root`: `root/`, `outside/` and `client/` (each mode 0755,
    /// empty), the fake ssh, and a config `[users.root]` with `root = <root>` and `extra`.
    pub fn new(tag: &str, extra: &str) -> Site {
        Site::for_user(tag, "root", extra)
    }

    /// The same for another account (the test then runs the server side as that user with
    /// `SERVER_AS`, and gives it what it must own).
    pub fn for_user(tag: &str, user: &str, extra: &str) -> Site {
        let dir = TempDir::new(tag);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let base = dir.path().to_path_buf();
        let root = base.join("root");
        let outside = base.join("outside");
        let client = base.join("client");
        for d in [&root, &outside, &client, &base.join("ns")] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let config = base.join("rshell.toml");
        let wrapper = base.join("fake-ssh");
        std::fs::write(
            &wrapper,
            FAKE_SSH
                .replace("@CONFIG@", config.to_str().unwrap())
                .replace("@BIN@", &super::binary())
                .replace("@NS@", base.join("ns").to_str().unwrap()),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let site = Site {
            dir,
            root,
            outside,
            client,
            wrapper,
            config,
            user: user.to_string(),
        };
        site.configure(extra);
        site
    }

    /// Rewrite the config: `[users.USER]`, `root = <root>`, then `extra`.
    pub fn configure(&self, extra: &str) {
        std::fs::write(
            &self.config,
            format!(
                "version = 1\n[users.{}]\nroot = \"{}\"\n{extra}",
                self.user,
                self.root.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&self.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// The site directory (root, outside, client, config, fake ssh and its scratch `ns/`).
    pub fn base(&self) -> &Path {
        self.dir.path()
    }

    /// The rsync client in the client dir with `-e <fake ssh>`, `args` and the fake ssh's
    /// knobs in `env`; stdin empty, stdout and stderr captured.
    pub fn command(&self, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut cmd = Command::new("/usr/bin/rsync");
        cmd.arg("-e")
            .arg(&self.wrapper)
            .args(args)
            .current_dir(&self.client)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Run the rsync client to completion.
    pub fn rsync(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        self.command(env, args).output().unwrap()
    }

    /// Run the fake ssh directly with a server command string (no client): for requests
    /// rshell refuses before rsync starts.
    pub fn server(&self, env: &[(&str, &str)], command: &str) -> Output {
        let mut cmd = Command::new(&self.wrapper);
        cmd.arg("x")
            .arg(command)
            .current_dir(&self.client)
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // Whatever this site's sessions left running (a stopped client's server, say):
        // only processes working beneath this site's own directory, by pid.
        for p in procs_under(self.dir.path()) {
            kill(p.pid, libc::SIGKILL);
        }
    }
}

/// kill(2) of one process a test started (by its pid).
pub fn kill(pid: i32, signal: i32) -> i32 {
    // SAFETY: kill(2) takes two integers and touches no memory of this process.
    unsafe { libc::kill(pid, signal) }
}

/// A process working beneath some directory.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub exe: PathBuf,
}

/// Every live process whose working directory lies beneath `dir` (zombies have none).
pub fn procs_under(dir: &Path) -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
            continue;
        };
        if !cwd.starts_with(dir) {
            continue;
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let after = s[s.rfind(')')? + 1..].to_string();
                after.split_whitespace().nth(1)?.parse().ok()
            })
            .unwrap_or(0);
        out.push(Proc { pid, ppid, exe });
    }
    out
}
