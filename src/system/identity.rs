//! Who is asking: the account of the calling process, also when it lives in a directory
//! (LDAP through SSSD, winbind, systemd's dynamic users) rather than in /etc/passwd.
//!
//! - **Ids from the kernel.** sshd sets the real uid, gid and supplementary groups
//!   (setgroups/setresgid/setresuid, after initgroups(3)) before it runs the login shell;
//!   getuid(2), getgid(2) and getgroups(2) report them and the account cannot change them.
//! - **Names from files first.** The account name and home come from /etc/passwd, group
//!   names from /etc/group, both read as plain files.
//! - **Only unknown ids from NSS, and never inside rshell.** An id the files do not know is
//!   looked up by running `/usr/bin/getent` as a child: an empty environment (so no
//!   `LD_PRELOAD`/`LD_LIBRARY_PATH` a user set through ~/.pam_environment reaches the
//!   dynamic loader, ld.so(8)), working directory `/`, stdin and stderr on /dev/null, no
//!   inherited descriptor (close_range(2) with CLOSE_RANGE_CLOEXEC), `--` before the keys,
//!   its own process group, a deadline after which the whole group is killed and the child
//!   reaped, and a cap on what it may print. rshell itself never calls getpwuid(3): in a
//!   static glibc binary that still dlopen()s the modules nsswitch.conf(5) names, i.e.
//!   foreign code, into the process that makes the decision.
//! - **Strict answers.** getent prints struct passwd fields verbatim, joined by `:`
//!   (glibc's nss/getent.c), so a module can smuggle separators or newlines in: the answer
//!   must be exactly one line of seven fields whose uid and gid are the kernel's, with an
//!   absolute home and a name that cannot act as a path or an option. Anything else is a
//!   denial that names the cause.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::system::passwd::{self, Entry};
use crate::system::Account;

/// The getent of glibc (Debian, Ubuntu, RHEL: package libc-bin / glibc-common).
pub const GETENT: &str = "/usr/bin/getent";
/// How long one getent may take. A directory that has not answered by then is treated as
/// unavailable: the connection is refused with that reason instead of hanging.
pub const DEADLINE: Duration = Duration::from_secs(15);
/// At most this much output for one account (one line of seven fields).
pub const PASSWD_CAP: usize = 64 * 1024;
/// At most this much output for the groups of one account: group lines carry their member
/// lists, which can be long for a directory's large groups.
pub const GROUP_CAP: usize = 1024 * 1024;
/// Names longer than this are refused (Linux useradd allows 32, directories more).
pub const MAX_NAME: usize = 256;

/// Where an account's name and home came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// /etc/passwd (and /etc/group) read as files.
    Files,
    /// The system's NSS configuration, through a `getent` child.
    Getent,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Files => "files",
            Source::Getent => "getent",
        })
    }
}

/// The process's identity as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelIds {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (getgroups(2)).
    pub groups: Vec<u32>,
}

/// Where to look: the system's files and getent, or a test's.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub passwd: PathBuf,
    pub group: PathBuf,
    pub getent: PathBuf,
    pub deadline: Duration,
}

impl Lookup {
    /// The system's databases and getent, with the standard deadline.
    pub fn system() -> Lookup {
        Lookup {
            passwd: PathBuf::from(passwd::PASSWD),
            group: PathBuf::from(passwd::GROUP),
            getent: PathBuf::from(GETENT),
            deadline: DEADLINE,
        }
    }
}

/// An account and where its names came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub account: Account,
    /// Of the name and home.
    pub source: Source,
    /// `Getent` if any group name had to be asked of getent.
    pub group_source: Source,
}

impl Resolved {
    /// True if a getent child ran for this account.
    pub fn used_getent(&self) -> bool {
        self.source == Source::Getent || self.group_source == Source::Getent
    }
}

/// Why the account could not be established. The text names the cause and is safe to
/// print: every value that came from getent is shown escaped and cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdentityError(pub String);

/// A value from getent for a message: escaped (`{:?}`), at most 64 characters.
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(64).collect();
    if cut.len() < value.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}

fn read_file(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The account of a process with these kernel ids.
pub fn of_process(ids: &KernelIds, how: &Lookup) -> Result<Resolved, IdentityError> {
    let files = passwd::parse_passwd(&read_file(&how.passwd));
    let (entry, source) = match files.into_iter().find(|e| e.uid == ids.uid) {
        Some(e) => (e, Source::Files),
        None => (passwd_by_uid(ids, how)?, Source::Getent),
    };
    let mut gids = vec![ids.gid];
    gids.extend(ids.groups.iter().copied());
    let (groups, group_source) = group_names(&gids, how)?;
    Ok(Resolved {
        account: Account {
            name: entry.name,
            uid: ids.uid,
            gid: ids.gid,
            home: entry.home,
            groups,
        },
        source,
        group_source,
    })
}

/// An account by name (`--test --user U`, `--policy --user U`, `--check`): /etc/passwd,
/// else `getent passwd -- NAME`. Groups: for a files account its /etc/group memberships;
/// for a directory account what sshd's initgroups(3) would set (`getent initgroups`).
/// `Ok(None)`: no such account anywhere.
pub fn by_name(name: &str, how: &Lookup) -> Result<Option<Resolved>, IdentityError> {
    let files = passwd::parse_passwd(&read_file(&how.passwd));
    if let Some(e) = files.into_iter().find(|e| e.name == name) {
        let all = passwd::parse_group(&read_file(&how.group));
        let groups = passwd::group_names(&e, &all);
        return Ok(Some(Resolved {
            account: Account {
                name: e.name,
                uid: e.uid,
                gid: e.gid,
                home: e.home,
                groups,
            },
            source: Source::Files,
            group_source: Source::Files,
        }));
    }
    check_name(name).map_err(|why| IdentityError(format!("user {}: {why}", shown(name))))?;
    let what = format!("getent passwd {}", shown(name));
    let out = run(how, "passwd", &[name.to_string()], PASSWD_CAP)?;
    let Some(stdout) = found(&what, &out, 1)? else {
        return Ok(None);
    };
    let entry = parse_passwd_answer(&what, &stdout)?;
    if entry.name != name {
        return Err(IdentityError(format!(
            "{what} answered the account {}",
            shown(&entry.name)
        )));
    }
    let what = format!("getent initgroups {}", shown(name));
    let out = run(how, "initgroups", &[name.to_string()], GROUP_CAP)?;
    let mut gids = vec![entry.gid];
    if let Some(stdout) = found(&what, &out, 1)? {
        gids.extend(parse_initgroups(&what, name, &stdout)?);
    }
    let (groups, _) = group_names(&gids, how)?;
    Ok(Some(Resolved {
        account: Account {
            name: entry.name,
            uid: entry.uid,
            gid: entry.gid,
            home: entry.home,
            groups,
        },
        source: Source::Getent,
        group_source: Source::Getent,
    }))
}

fn passwd_by_uid(ids: &KernelIds, how: &Lookup) -> Result<Entry, IdentityError> {
    let what = format!("getent passwd {}", ids.uid);
    let out = run(how, "passwd", &[ids.uid.to_string()], PASSWD_CAP)?;
    let Some(stdout) = found(&what, &out, 1)? else {
        return Err(IdentityError(format!(
            "uid {} is neither in {} nor in the system's account databases ({what}: not found)",
            ids.uid,
            how.passwd.display()
        )));
    };
    let entry = parse_passwd_answer(&what, &stdout)?;
    if entry.uid != ids.uid {
        return Err(IdentityError(format!(
            "{what} answered uid {}, not the process's uid {}",
            entry.uid, ids.uid
        )));
    }
    if entry.gid != ids.gid {
        return Err(IdentityError(format!(
            "{what} answered gid {}, not the process's gid {}",
            entry.gid, ids.gid
        )));
    }
    Ok(entry)
}

/// Names for `gids` (duplicates dropped, order kept): /etc/group first, the rest in one
/// `getent group -- GID...`. A gid without a name is a denial: a `[groups.G]` section
/// that narrows the policy must not fall away because a directory did not answer.
fn group_names(gids: &[u32], how: &Lookup) -> Result<(Vec<String>, Source), IdentityError> {
    let mut seen = BTreeSet::new();
    let gids: Vec<u32> = gids.iter().copied().filter(|g| seen.insert(*g)).collect();
    let files = passwd::parse_group(&read_file(&how.group));
    let mut names: Vec<Option<String>> = gids
        .iter()
        .map(|g| files.iter().find(|e| e.gid == *g).map(|e| e.name.clone()))
        .collect();
    let missing: Vec<u32> = gids
        .iter()
        .zip(&names)
        .filter(|(_, n)| n.is_none())
        .map(|(g, _)| *g)
        .collect();
    let mut source = Source::Files;
    if !missing.is_empty() {
        source = Source::Getent;
        let keys: Vec<String> = missing.iter().map(u32::to_string).collect();
        let what = format!("getent group {}", keys.join(" "));
        let out = run(how, "group", &keys, GROUP_CAP)?;
        if let Some(stdout) = found(&what, &out, missing.len())? {
            for (gid, name) in parse_group_answer(&what, &stdout, &missing)? {
                if let Some(at) = gids.iter().position(|g| *g == gid) {
                    names[at] = Some(name);
                }
            }
        }
        if let Some(at) = names.iter().position(Option::is_none) {
            return Err(IdentityError(format!(
                "gid {} (one of the process's groups) has no name in {} nor in the system's group databases ({what}: not found)",
                gids[at],
                how.group.display()
            )));
        }
    }
    Ok((names.into_iter().flatten().collect(), source))
}

/// What one getent run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// getent's exit status: 0 all keys found, 2 some not found (glibc's getent(1)).
    pub code: i32,
    pub stdout: Vec<u8>,
    pub elapsed: Duration,
}

/// Interpret getent's status: `Some(stdout)` when something was found, `None` for "not
/// found" (exit 2 and no output when all `keys` keys are missing).
fn found(what: &str, out: &Output, keys: usize) -> Result<Option<Vec<u8>>, IdentityError> {
    match out.code {
        0 => Ok(Some(out.stdout.clone())),
        2 if out.stdout.is_empty() => Ok(None),
        2 if keys > 1 => Ok(Some(out.stdout.clone())),
        2 => Err(IdentityError(format!(
            "{what}: exit status 2 (not found) with output"
        ))),
        c => Err(IdentityError(format!("{what}: exit status {c}"))),
    }
}

/// Run `getent DB -- KEY...` as a sealed child: empty environment, cwd `/`, stdin and
/// stderr on /dev/null, no inherited descriptor, its own process group; killed (the whole
/// group) and reaped at `how.deadline`, or when it prints more than `cap` bytes.
pub fn run(how: &Lookup, db: &str, keys: &[String], cap: usize) -> Result<Output, IdentityError> {
    let key = |k: &String| {
        if parse_id(k).is_some() {
            k.clone()
        } else {
            shown(k)
        }
    };
    let what = format!(
        "getent {db} {}",
        keys.iter().map(key).collect::<Vec<_>>().join(" ")
    );
    let late = format!("no answer within {} s (killed)", how.deadline.as_secs_f64());
    let fail = |why: String| IdentityError(format!("{what}: {why}"));
    let start = Instant::now();
    let deadline = start + how.deadline;
    let mut cmd = Command::new(&how.getent);
    cmd.arg(db)
        .arg("--")
        .args(keys)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = crate::system::spawn_sealed(&mut cmd)
        .map_err(|e| fail(format!("cannot run {}: {e}", how.getent.display())))?;
    let pid = Pid::from_raw(child.id() as i32);
    // Kill everything in the child's process group, then reap the child: killpg(2) while
    // the leader is at worst a zombie, so its pid (the group id) cannot have been reused.
    let end = |child: &mut std::process::Child| {
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    };
    let Some(mut stdout) = child.stdout.take() else {
        end(&mut child);
        return Err(fail("no pipe".into()));
    };
    let collected = collect(&mut stdout, deadline, cap, &late);
    drop(stdout);
    let out = match collected {
        Ok(out) => out,
        Err(why) => {
            end(&mut child);
            return Err(fail(why));
        }
    };
    // Output is complete (EOF); wait for the exit, still within the deadline.
    let mut pause = Duration::from_micros(50);
    loop {
        match super::has_exited(pid) {
            Ok(false) => {}
            Ok(true) => break,
            Err(e) => {
                end(&mut child);
                return Err(fail(format!("waitid: {e}")));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            end(&mut child);
            return Err(fail(late));
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
    // Whatever the child left in its group (an NSS module's helper) goes with it.
    let _ = killpg(pid, Signal::SIGKILL);
    let status = child.wait().map_err(|e| fail(format!("wait: {e}")))?;
    let code = match status.code() {
        Some(c) => c,
        None => return Err(fail(format!("ended by {status}"))),
    };
    Ok(Output {
        code,
        stdout: out,
        elapsed: start.elapsed(),
    })
}

/// Read the pipe to EOF, at most `cap` bytes, until `deadline`.
fn collect(
    pipe: &mut std::process::ChildStdout,
    deadline: Instant,
    cap: usize,
    late: &str,
) -> Result<Vec<u8>, String> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    fcntl(pipe.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| format!("pipe: {e}"))?;
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late.to_string());
        }
        let ms = i32::try_from(left.as_millis().clamp(1, 60_000)).unwrap_or(60_000);
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        match pipe.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > cap {
                    return Err(format!("printed more than {cap} bytes (killed)"));
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// The text of a getent answer: UTF-8, complete lines, no other control characters.
fn lines<'a>(what: &str, out: &'a [u8]) -> Result<Vec<&'a str>, IdentityError> {
    let text = std::str::from_utf8(out)
        .map_err(|_| IdentityError(format!("{what}: the answer is not UTF-8")))?;
    let body = text
        .strip_suffix('\n')
        .ok_or_else(|| IdentityError(format!("{what}: the answer is not a complete line")))?;
    let lines: Vec<&str> = body.split('\n').collect();
    for line in &lines {
        if line.chars().any(char::is_control) {
            return Err(IdentityError(format!(
                "{what}: the answer holds a control character: {}",
                shown(line)
            )));
        }
    }
    Ok(lines)
}

/// A decimal id as getent prints it (`%lu`): digits only, no sign, no leading zero.
fn parse_id(field: &str) -> Option<u32> {
    let digits = !field.is_empty() && field.bytes().all(|b| b.is_ascii_digit());
    if !digits || (field.len() > 1 && field.starts_with('0')) {
        return None;
    }
    field.parse().ok()
}

/// A name rshell may use: in the log, in USER/LOGNAME for rsync, in `%u` of a root path
/// and as a policy section. Not a path (`/`, `.`, `..`), not an option (leading `-`), no
/// control characters, no `:`, at most [`MAX_NAME`] bytes.
pub fn check_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        "is empty"
    } else if name.len() > MAX_NAME {
        "is too long"
    } else if name.starts_with('-') {
        "starts with '-'"
    } else if name.contains('/') {
        "contains '/'"
    } else if name == "." || name == ".." {
        "is a path component"
    } else if name.contains(':') {
        "contains ':'"
    } else if name.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(format!("the name {} {why}", shown(name)))
}

/// A home rshell may use: absolute, no `.` or `..` component, no control characters.
fn check_home(home: &str) -> Result<(), String> {
    if !home.starts_with('/') {
        return Err(format!("the home {} is not absolute", shown(home)));
    }
    if home.split('/').any(|c| c == "." || c == "..") {
        return Err(format!(
            "the home {} has a '.' or '..' component",
            shown(home)
        ));
    }
    if home.chars().any(char::is_control) {
        return Err(format!(
            "the home {} contains a control character",
            shown(home)
        ));
    }
    Ok(())
}

/// One passwd line from getent: exactly one line, seven fields, numeric ids, a usable name
/// and an absolute home.
pub fn parse_passwd_answer(what: &str, out: &[u8]) -> Result<Entry, IdentityError> {
    let lines = lines(what, out)?;
    let [line] = lines.as_slice() else {
        return Err(IdentityError(format!(
            "{what}: {} lines instead of one",
            lines.len()
        )));
    };
    let bad = |why: String| IdentityError(format!("{what}: {why}"));
    let f: Vec<&str> = line.split(':').collect();
    if f.len() != 7 {
        return Err(bad(format!(
            "{} fields instead of 7 in {}",
            f.len(),
            shown(line)
        )));
    }
    check_name(f[0]).map_err(bad)?;
    let uid = parse_id(f[2]).ok_or_else(|| bad(format!("uid {} is not a number", shown(f[2]))))?;
    let gid = parse_id(f[3]).ok_or_else(|| bad(format!("gid {} is not a number", shown(f[3]))))?;
    check_home(f[5]).map_err(bad)?;
    Ok(Entry {
        name: f[0].to_string(),
        uid,
        gid,
        home: PathBuf::from(f[5]),
        shell: f[6].to_string(),
    })
}

/// Group lines from getent for the gids `asked`: four fields each, every gid one of those
/// asked and none twice.
pub fn parse_group_answer(
    what: &str,
    out: &[u8],
    asked: &[u32],
) -> Result<Vec<(u32, String)>, IdentityError> {
    let bad = |why: String| IdentityError(format!("{what}: {why}"));
    let mut answers: Vec<(u32, String)> = Vec::new();
    for line in lines(what, out)? {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 4 {
            return Err(bad(format!(
                "{} fields instead of 4 in {}",
                f.len(),
                shown(line)
            )));
        }
        check_name(f[0]).map_err(bad)?;
        let gid =
            parse_id(f[2]).ok_or_else(|| bad(format!("gid {} is not a number", shown(f[2]))))?;
        if !asked.contains(&gid) {
            return Err(bad(format!("answered gid {gid}, which was not asked")));
        }
        if answers.iter().any(|(g, _)| *g == gid) {
            return Err(bad(format!("answered gid {gid} twice")));
        }
        answers.push((gid, f[0].to_string()));
    }
    Ok(answers)
}

/// `getent initgroups NAME`: the name (padded) and the gids initgroups(3) would add.
fn parse_initgroups(what: &str, name: &str, out: &[u8]) -> Result<Vec<u32>, IdentityError> {
    let lines = lines(what, out)?;
    let [line] = lines.as_slice() else {
        return Err(IdentityError(format!(
            "{what}: {} lines instead of one",
            lines.len()
        )));
    };
    let mut words = line.split_whitespace();
    if words.next() != Some(name) {
        return Err(IdentityError(format!(
            "{what}: the answer is not about {}",
            shown(name)
        )));
    }
    words
        .map(|w| {
            parse_id(w)
                .ok_or_else(|| IdentityError(format!("{what}: gid {} is not a number", shown(w))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: &str = "getent passwd 4242";

    #[test]
    fn a_passwd_answer_is_one_line_of_seven_fields_with_a_usable_name_and_home() {
        let e = parse_passwd_answer(
            W,
            b"diruser:*:4242:4242:Dir User:/home/diruser:/usr/bin/rshell\n",
        )
        .unwrap();
        assert_eq!((e.name.as_str(), e.uid, e.gid), ("diruser", 4242, 4242));
        assert_eq!(e.home, PathBuf::from("/home/diruser"));
        for (bad, why) in [
            (
                &b"diruser:*:4242:4242::/home/d:/bin/sh"[..],
                "complete line",
            ),
            (
                b"a:*:4242:4242::/h:/bin/sh\nb:*:4242:4242::/h:/bin/sh\n",
                "2 lines",
            ),
            (b"\n", "1 fields"),
            (b"diruser:*:4242:4242:x:y:/home/d:/bin/sh\n", "8 fields"),
            (b"-s../x:*:4242:4242::/home/d:/bin/sh\n", "starts with '-'"),
            (b"a/b:*:4242:4242::/home/d:/bin/sh\n", "contains '/'"),
            (b"..:*:4242:4242::/home/d:/bin/sh\n", "path component"),
            (
                b"a\x1bb:*:4242:4242::/home/d:/bin/sh\n",
                "control character",
            ),
            (b"d:*:+4242:4242::/home/d:/bin/sh\n", "not a number"),
            (b"d:*:04242:4242::/home/d:/bin/sh\n", "not a number"),
            (b"d:*:99999999999:4242::/home/d:/bin/sh\n", "not a number"),
            (b"d:*:4242:4242::home/d:/bin/sh\n", "not absolute"),
            (b"d:*:4242:4242::/home/../etc:/bin/sh\n", "'..'"),
            (b"d\xff:*:4242:4242::/home/d:/bin/sh\n", "not UTF-8"),
        ] {
            let e = parse_passwd_answer(W, bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(!e.contains('\x1b'), "{e}");
        }
    }

    #[test]
    fn group_answers_must_be_about_the_gids_asked() {
        let w = "getent group 10 20";
        assert_eq!(
            parse_group_answer(w, b"ten:x:10:a,b\ntwenty:*:20:\n", &[10, 20]).unwrap(),
            [(10, "ten".to_string()), (20, "twenty".to_string())]
        );
        for (bad, why) in [
            (&b"zero:x:0:\n"[..], "not asked"),
            (b"ten:x:10:\nten2:x:10:\n", "twice"),
            (b"ten:x:10\n", "3 fields"),
            (b"-ten:x:10:\n", "starts with '-'"),
        ] {
            let e = parse_group_answer(w, bad, &[10, 20])
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert_eq!(
            parse_initgroups("w", "diruser", b"diruser               4343 27\n").unwrap(),
            [4343, 27]
        );
        assert!(parse_initgroups("w", "diruser", b"other 1\n").is_err());
    }

    #[test]
    fn messages_show_hostile_values_escaped_and_cut() {
        let long = "x".repeat(1000);
        let s = shown(&long);
        assert!(s.len() < 80 && s.ends_with("..."), "{s}");
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
    }
}
