//! The one room for system calls (design §5): identity from the passwd database,
//! the environment scrub, race-free opens beneath root, the root lock, fork/wait and
//! execve. Every other module forbids `unsafe`; here each `unsafe` block says why it is
//! sound.

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{self, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::unistd::{Gid, Uid};

/// The calling account, from `getuid()` and the passwd/group databases only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// Group names, primary first.
    pub groups: Vec<String>,
}

/// The only variables rshell reads, captured before the environment is cleared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshContext {
    pub connection: Option<String>,
    pub original_command: Option<OsString>,
    pub user_auth: Option<OsString>,
}

/// Capture the three sshd variables and clear everything else, before any NSS lookup
/// (design §1: `LD_*`, `HOME`, `USER`, locale variables must not steer anything).
pub fn scrub_environment() -> SshContext {
    let ctx = SshContext {
        connection: std::env::var("SSH_CONNECTION").ok(),
        original_command: std::env::var_os("SSH_ORIGINAL_COMMAND"),
        user_auth: std::env::var_os("SSH_USER_AUTH"),
    };
    let names: Vec<OsString> = std::env::vars_os().map(|(k, _)| k).collect();
    for name in names {
        // Single-threaded at this point (called first thing in main), so mutating the
        // environment cannot race with a reader.
        std::env::remove_var(name);
    }
    ctx
}

/// Why a system step failed.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("uid {0} has no passwd entry")]
    NoSuchUid(u32),
    #[error("{0}: {1}")]
    Io(String, Errno),
    #[error("root {0} is busy: another writer holds its lock (gave up after {1} s)")]
    LockTimeout(PathBuf, u64),
    #[error("cannot run {0}: {1}")]
    Exec(String, Errno),
    #[error("{0}")]
    Confine(String),
}

fn account_from(entry: crate::passwd::Entry) -> Account {
    let groups = crate::passwd::group_names(&entry, &crate::passwd::groups());
    Account {
        name: entry.name,
        uid: entry.uid,
        gid: entry.gid,
        home: entry.home,
        groups,
    }
}

/// The account of the real uid (never `$USER`), from /etc/passwd (see passwd.rs for why
/// not NSS).
pub fn current_account() -> Result<Account, SysError> {
    let uid = Uid::current().as_raw();
    crate::passwd::by_uid(uid)
        .map(account_from)
        .ok_or(SysError::NoSuchUid(uid))
}

/// Look an account up by name (`--test --user U`).
pub fn account_by_name(name: &str) -> Result<Option<Account>, SysError> {
    Ok(crate::passwd::by_name(name).map(account_from))
}

/// The real uid.
pub fn current_uid() -> u32 {
    Uid::current().as_raw()
}

/// For `--test --user U` run as root: check paths with U's permissions (design §2) by
/// taking U's file-system identity (fsuid/fsgid and groups) in this process, which never
/// execs anything afterwards.
pub fn assume_fs_identity(account: &Account) -> Result<(), SysError> {
    let all = crate::passwd::groups();
    let gids: Vec<Gid> = std::iter::once(account.gid)
        .chain(
            account
                .groups
                .iter()
                .filter_map(|name| crate::passwd::gid_of(name, &all)),
        )
        .map(Gid::from_raw)
        .collect();
    nix::unistd::setgroups(&gids).map_err(|e| SysError::Io("setgroups".into(), e))?;
    // setfsgid/setfsuid return the previous id and cannot report failure directly; read back.
    nix::unistd::setfsgid(Gid::from_raw(account.gid));
    nix::unistd::setfsuid(Uid::from_raw(account.uid));
    if nix::unistd::setfsuid(Uid::from_raw(u32::MAX)).as_raw() != account.uid {
        return Err(SysError::Io("setfsuid".into(), Errno::EPERM));
    }
    Ok(())
}

/// What an opened path turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File,
    Other,
}

/// Open a directory the administrator named (root): follows the admin's own symlinks.
pub fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Open `rel` beneath `dir` without ever leaving it: `..` and symlinks are resolved by
/// the kernel and may not escape (openat2 RESOLVE_BENEATH); absolute symlinks and
/// /proc magic links are refused. Falls back to a component walk that refuses every
/// symlink when the kernel has no openat2.
pub fn open_beneath(dir: &OwnedFd, rel: &Path) -> Result<OwnedFd, Errno> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match fcntl::openat2(dir.as_fd(), rel, how) {
        Err(Errno::ENOSYS) => open_beneath_walk(dir, rel),
        other => other,
    }
}

/// The conservative fallback: one component at a time with O_NOFOLLOW; `..` refused.
fn open_beneath_walk(dir: &OwnedFd, rel: &Path) -> Result<OwnedFd, Errno> {
    let mut current = fcntl::openat(
        dir.as_fd(),
        ".",
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for comp in rel.components() {
        match comp {
            std::path::Component::Normal(name) => {
                let next = fcntl::openat(
                    current.as_fd(),
                    name,
                    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                if fstat(next.as_fd())?.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits() {
                    return Err(Errno::ELOOP);
                }
                current = next;
            }
            std::path::Component::CurDir => {}
            _ => return Err(Errno::EXDEV),
        }
    }
    Ok(current)
}

/// The type of an opened file.
pub fn kind(fd: &OwnedFd) -> Result<Kind, Errno> {
    let mode = fstat(fd.as_fd())?.st_mode & SFlag::S_IFMT.bits();
    Ok(if mode == SFlag::S_IFDIR.bits() {
        Kind::Directory
    } else if mode == SFlag::S_IFREG.bits() {
        Kind::File
    } else {
        Kind::Other
    })
}

/// The names in an opened directory (for glob expansion beneath root).
pub fn list_dir(dir: &OwnedFd) -> Result<Vec<OsString>, Errno> {
    let fd = fcntl::openat(
        dir.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(std::ffi::OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

/// Take an exclusive lock on root, waiting at most `timeout` (design §3a Locking).
/// The returned descriptor keeps the lock; rsync inherits it.
pub fn lock_root(root: &Path, timeout: Duration) -> Result<OwnedFd, SysError> {
    let fd = fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SysError::Io(root.display().to_string(), e))?;
    let start = Instant::now();
    loop {
        // SAFETY: flock(2) on a descriptor we own and keep open; no memory is involved.
        let rc = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        let result = if rc == 0 { Ok(()) } else { Err(Errno::last()) };
        match result {
            Ok(()) => return Ok(fd),
            Err(Errno::EWOULDBLOCK) | Err(Errno::EINTR) if start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(Errno::EWOULDBLOCK) => {
                return Err(SysError::LockTimeout(root.to_path_buf(), timeout.as_secs()))
            }
            Err(e) => return Err(SysError::Io(format!("lock {}", root.display()), e)),
        }
    }
}

/// Everything needed to turn this process into rsync.
pub struct ExecImage<'a> {
    pub program: &'a Path,
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: &'a OwnedFd,
    pub umask: u32,
    /// Descriptors besides 0–2 that rsync keeps (the root lock).
    pub keep: &'a [RawFd],
}

fn cstring(s: &[u8]) -> Result<CString, Errno> {
    CString::new(s).map_err(|_| Errno::EINVAL)
}

/// Set the umask and working directory, close every other descriptor on exec, run
/// `confine` (Landlock, last, so nothing above is restricted by it) and execve.
/// Returns only on failure.
pub fn exec(image: &ExecImage, confine: impl FnOnce() -> Result<(), String>) -> SysError {
    let program = image.program.display().to_string();
    let fail = |e: Errno| SysError::Exec(program.clone(), e);
    let argv: Result<Vec<CString>, Errno> =
        image.argv.iter().map(|a| cstring(a.as_bytes())).collect();
    let env: Result<Vec<CString>, Errno> = image
        .env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
        .collect();
    let (argv, env, path) = match (argv, env, cstring(image.program.as_os_str().as_bytes())) {
        (Ok(a), Ok(e), Ok(p)) => (a, e, p),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return fail(e),
    };
    nix::sys::stat::umask(Mode::from_bits_truncate(image.umask));
    if let Err(e) = nix::unistd::fchdir(image.cwd.as_fd()) {
        return SysError::Io("chdir to root".into(), e);
    }
    // SAFETY: close_range only changes descriptor flags of this process; with
    // CLOSE_RANGE_CLOEXEC nothing is closed before execve, so no Rust object is left
    // holding a dangling descriptor if exec fails.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        mark_cloexec_fallback();
    }
    for fd in image.keep {
        set_cloexec(*fd, false);
    }
    if let Err(why) = confine() {
        return SysError::Confine(why);
    }
    match nix::unistd::execve(&path, &argv, &env) {
        Err(e) => fail(e),
        Ok(never) => match never {},
    }
}

/// Kernels before 5.11 lack close_range: mark what /proc lists.
fn mark_cloexec_fallback() {
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let fds: Vec<RawFd> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect();
        for fd in fds {
            set_cloexec(fd, true);
        }
    }
}

/// Set or clear FD_CLOEXEC on a raw descriptor number.
fn set_cloexec(fd: RawFd, on: bool) {
    let flag = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: F_SETFD only changes a flag of the descriptor table entry; an invalid
    // number fails with EBADF, which we ignore.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, flag);
    }
}

/// The result of fork.
pub enum Forked {
    Child,
    Parent(i32),
}

/// Fork the process (for the outcome record, design §3a).
pub fn fork() -> Result<Forked, SysError> {
    // SAFETY: rshell is single-threaded (it never spawns threads), so the child may
    // run arbitrary code until it execs.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => Ok(Forked::Child),
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Forked::Parent(child.as_raw())),
        Err(e) => Err(SysError::Io("fork".into(), e)),
    }
}

/// In the parent after fork: point stdin and stdout at /dev/null, so that only rsync
/// holds the session's protocol channel.
pub fn release_session_stdio() {
    if let Ok(null) = fcntl::open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()) {
        for target in [0, 1] {
            // SAFETY: dup2 onto 0/1 replaces the process's own standard descriptors;
            // no Rust object owns 0 or 1 here.
            unsafe {
                libc::dup2(null.as_raw_fd(), target);
            }
        }
    }
}

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
}

/// Wait for `pid` to end, read its I/O counters before reaping it, then reap.
/// Returns how it ended and `(read_bytes, write_bytes)` from /proc (None if unavailable).
pub fn wait_with_io(
    pid: i32,
    io_file: Option<std::fs::File>,
) -> Result<(ExitKind, Option<(u64, u64)>), SysError> {
    use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
    let pid = nix::unistd::Pid::from_raw(pid);
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(SysError::Io("waitid".into(), e)),
        }
    }
    let io = io_file.and_then(read_proc_io);
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok((ExitKind::Code(code), io)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok((ExitKind::Signal(sig as i32), io)),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(SysError::Io("waitpid".into(), e)),
        }
    }
}

fn read_proc_io(mut file: std::fs::File) -> Option<(u64, u64)> {
    use std::io::Read;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((field("rchar:")?, field("wchar:")?))
}
