//! The one room for system calls: identity from the kernel and the passwd database,
//! the environment scrub, race-free opens beneath root, the root lock, spawn/wait and
//! execve. Every other module forbids `unsafe`; here each `unsafe` block says why it is
//! sound.

pub mod identity;
pub mod passwd;

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{self, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::unistd::{Gid, Uid};

/// getgroups(2): asked for the count first, then for exactly that many (nix's wrapper reads
/// /proc/sys/kernel/ngroups_max through sysconf first: three more system calls).
fn supplementary_groups() -> Result<Vec<u32>, Errno> {
    // SAFETY: with size 0 getgroups writes nothing and returns the number of groups.
    let count = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut groups = vec![0 as libc::gid_t; usize::try_from(count).map_err(|_| Errno::last())?];
    // SAFETY: `groups` has room for `count` entries, the size passed.
    let got = unsafe { libc::getgroups(count, groups.as_mut_ptr()) };
    // Only this process could change its groups between the two calls, and it does not.
    groups.truncate(usize::try_from(got).map_err(|_| Errno::last())?);
    Ok(groups)
}

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

/// The program's arguments, from the C `main`'s `argc` and `argv` (src/main.rs), as bytes.
/// Read here rather than through `std::env::args_os`, which on some C libraries (musl) is
/// only filled in by the Rust runtime's start-up that rshell does not run.
///
/// # Safety
/// `argv` must be the `argv` the C library passed to `main`: `argc` pointers to
/// NUL-terminated strings (followed by a null pointer), alive for the whole process.
pub unsafe fn c_args(argc: libc::c_int, argv: *const *const libc::c_char) -> Vec<OsString> {
    use std::os::unix::ffi::OsStringExt;
    let count = usize::try_from(argc).unwrap_or(0);
    let mut args = Vec::with_capacity(count);
    for i in 0..count {
        // SAFETY: the caller guarantees `argc` valid entries in `argv`; a null entry (never
        // passed by the kernel) ends the list early instead of being read.
        let arg = unsafe { *argv.add(i) };
        if arg.is_null() {
            break;
        }
        // SAFETY: as above: a NUL-terminated string that lives as long as the process.
        let bytes = unsafe { std::ffi::CStr::from_ptr(arg) }.to_bytes();
        args.push(OsString::from_vec(bytes.to_vec()));
    }
    args
}

/// What Rust's runtime start-up would have done for rshell, which starts from a C `main`
/// (src/main.rs): the runtime's other work — above all finding the main thread's stack
/// through `pthread_getattr_np`, which makes glibc read and parse /proc/self/maps — costs
/// about 0.1 ms of every connection (tests/bench/README.md).
///
/// - Descriptors 0, 1 and 2 that are closed are opened on /dev/null, so that no file rshell
///   opens later becomes its standard output or error (sshd never starts it so; a caller
///   that did must not get log lines or refusals written into a pinned file).
/// - SIGPIPE is ignored, as the Rust runtime does: a client that hung up makes a write fail
///   with EPIPE instead of killing rshell before it logged. The exec'd rsync inherits this
///   disposition, as it did when the runtime set it.
pub fn start_process() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only reads a descriptor flag; an unused number fails with EBADF.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        // Opened without O_CLOEXEC: it stands in for a standard descriptor, which rsync
        // inherits. open(2) returns the lowest free number, which is `fd` (every lower one
        // is open: checked in order).
        match fcntl::open("/dev/null", OFlag::O_RDWR, Mode::empty()) {
            Ok(null) if null.as_raw_fd() == fd => std::mem::forget(null),
            // Neither can happen with 0..fd open; without /dev/null, give up rather than run
            // with a standard descriptor that the next open would take.
            _ => std::process::exit(crate::EXIT_SYSTEM),
        }
    }
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// The only variables rshell reads, captured before the environment is cleared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshContext {
    pub connection: Option<String>,
    pub original_command: Option<OsString>,
    pub user_auth: Option<OsString>,
}

/// Capture the three sshd variables and clear everything else, before any NSS lookup
/// (`LD_*`, `HOME`, `USER`, locale variables from ~/.pam_environment must not steer anything).
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
    /// The account could not be established (identity.rs names the cause).
    #[error("{0}")]
    Identity(String),
    #[error("{0}: {1}")]
    Io(String, Errno),
    #[error("root {0} is busy: another writer holds its lock (gave up after {1} s)")]
    LockTimeout(PathBuf, u64),
    #[error("cannot run {0}: {1}")]
    Exec(String, Errno),
    #[error("{0}")]
    Confine(String),
}

/// The ids the kernel holds for this process: real uid and gid, supplementary groups.
pub fn kernel_ids() -> Result<crate::system::identity::KernelIds, SysError> {
    Ok(crate::system::identity::KernelIds {
        uid: Uid::current().as_raw(),
        gid: Gid::current().as_raw(),
        groups: supplementary_groups().map_err(|e| SysError::Io("getgroups".into(), e))?,
    })
}

/// The account of this process: uid, gid and groups from the kernel (never `$USER`), names
/// from /etc/passwd and /etc/group, else from a sealed `getent` child (identity.rs). When
/// getent had to run, an info record says so (`source=getent`); a failure names its cause
/// and source in the denial.
pub fn current_account() -> Result<Account, SysError> {
    let ids = kernel_ids()?;
    let resolved =
        crate::system::identity::of_process(&ids, &crate::system::identity::Lookup::system())
            .map_err(|e| SysError::Identity(e.to_string()))?;
    if resolved.used_getent() {
        crate::log::send(
            &format!(
                "identity uid={} user={} source={} group_source={} groups=\"{}\"",
                resolved.account.uid,
                crate::log::escape(&resolved.account.name, 64),
                resolved.source,
                resolved.group_source,
                crate::log::escape(&resolved.account.groups.join(","), 512)
            ),
            false,
        );
    }
    Ok(resolved.account)
}

/// Look an account up by name (`--test --user U`): /etc/passwd, else `getent passwd -- U`
/// in a sealed child (identity.rs).
pub fn account_by_name(name: &str) -> Result<Option<Account>, SysError> {
    crate::system::identity::by_name(name, &crate::system::identity::Lookup::system())
        .map(|r| r.map(|r| r.account))
        .map_err(|e| SysError::Identity(e.to_string()))
}

/// Whether `needle` occurs in `haystack`: glibc's memmem(3), which is vectorised; a
/// byte-by-byte search of a 600 KB binary costs milliseconds, this one well under one.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    // SAFETY: both pointers come from live slices and the lengths are theirs; memmem only
    // reads within them and returns a pointer into `haystack` or null.
    let found = unsafe {
        libc::memmem(
            haystack.as_ptr().cast(),
            haystack.len(),
            needle.as_ptr().cast(),
            needle.len(),
        )
    };
    !found.is_null()
}

/// Spawn `cmd` so that the child inherits no descriptor besides the 0–2 that `cmd` sets
/// up (a descriptor rshell got without close-on-exec from its parent included), and runs
/// in a process group of its own (so it can be ended with everything it forks).
pub fn spawn_sealed(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // SAFETY: the closure runs in the child between fork and execve, after the standard
    // descriptors are in place; it only makes system calls (close_range(2), fcntl(2)),
    // which are async-signal-safe and neither allocate nor take locks.
    unsafe {
        cmd.pre_exec(|| {
            let rc = libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if rc != 0 {
                // Kernels before 5.11: mark every possible descriptor.
                let max = libc::sysconf(libc::_SC_OPEN_MAX);
                let max = if max > 0 {
                    max.min(1 << 20) as i32
                } else {
                    1024
                };
                for fd in 3..max {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// The real uid.
pub fn current_uid() -> u32 {
    Uid::current().as_raw()
}

/// For `--test --user U` run as root: check paths with U's permissions by
/// taking U's file-system identity (fsuid/fsgid and groups) in this process, which never
/// execs anything afterwards.
pub fn assume_fs_identity(account: &Account) -> Result<(), SysError> {
    let all = crate::system::passwd::groups();
    let gids: Vec<Gid> = std::iter::once(account.gid)
        .chain(
            account
                .groups
                .iter()
                .filter_map(|name| crate::system::passwd::gid_of(name, &all)),
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
/// Opened for reading, not `O_PATH`, because the same descriptor carries the root lock
/// (flock(2) needs an open file description) and becomes rsync's working directory.
/// A root the account may only search (mode `--x`) is opened `O_PATH` instead; locking it
/// then fails with a clear error.
pub fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    match fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Err(Errno::EACCES) => fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ),
        other => other,
    }
}

/// Open the directory `rel` beneath `dir` (openat2 RESOLVE_BENEATH, like
/// [`open_beneath`]) for reading: a nested key's narrowed root, which is then locked,
/// resolved beneath and used as rsync's working directory by this one descriptor.
pub fn open_dir_beneath(dir: &OwnedFd, rel: &Path) -> Result<OwnedFd, Errno> {
    let pinned = open_beneath(dir, rel)?;
    if kind(&pinned)? != Kind::Directory {
        return Err(Errno::ENOTDIR);
    }
    // Re-open the pinned directory itself (not its name) for reading.
    fcntl::openat(
        pinned.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
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

/// How a session holds the root lock: writers exclusively, readers shared, so no writer
/// can change a name between rshell's check and rsync's use of it while anyone works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Shared,
    Exclusive,
}

/// Lock the opened root, waiting at most `timeout`. The lock belongs to the open file
/// description of `root`, so it is held for as long as rsync (which inherits the
/// descriptor) or any process it forks keeps it open.
pub fn lock(
    root: &OwnedFd,
    shown: &Path,
    kind: LockKind,
    timeout: Duration,
) -> Result<(), SysError> {
    let op = match kind {
        LockKind::Shared => libc::LOCK_SH,
        LockKind::Exclusive => libc::LOCK_EX,
    };
    let start = Instant::now();
    loop {
        // SAFETY: flock(2) on a descriptor we own and keep open; no memory is involved.
        let rc = unsafe { libc::flock(root.as_raw_fd(), op | libc::LOCK_NB) };
        let result = if rc == 0 { Ok(()) } else { Err(Errno::last()) };
        match result {
            Ok(()) => return Ok(()),
            Err(Errno::EWOULDBLOCK) | Err(Errno::EINTR) if start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(Errno::EWOULDBLOCK) => {
                return Err(SysError::LockTimeout(
                    shown.to_path_buf(),
                    timeout.as_secs(),
                ))
            }
            Err(e) => return Err(SysError::Io(format!("lock {}", shown.display()), e)),
        }
    }
}

/// Create the directories `names` one by one beneath `dir` (mode `mode`, masked by the
/// umask), never following a symlink, and return the last one opened. An existing
/// directory is used as it is; an existing non-directory or symlink is an error. Used for
/// receiver option directories (`--backup-dir`) so that rsync is handed a directory that
/// exists before the transfer could plant a symlink at its name.
pub fn create_dirs_beneath(dir: &OwnedFd, names: &[OsString], mode: u32) -> Result<OwnedFd, Errno> {
    let mut current = fcntl::openat(
        dir.as_fd(),
        ".",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for name in names {
        if name.is_empty() || name == "." || name == ".." || name.as_bytes().contains(&b'/') {
            return Err(Errno::EINVAL);
        }
        match nix::sys::stat::mkdirat(
            current.as_fd(),
            name.as_os_str(),
            Mode::from_bits_truncate(mode),
        ) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        current = fcntl::openat(
            current.as_fd(),
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
    }
    Ok(current)
}

/// An empty directory with no name: created beneath `dir`, opened, then removed while
/// the descriptor stays open. rsync reads basis files through it and finds none, exactly
/// as for a missing basis directory, but no transfer can ever put anything there.
pub fn empty_unnamed_dir(dir: &OwnedFd) -> Result<OwnedFd, Errno> {
    let name = format!(".rshell-empty-basis.{}", std::process::id());
    match nix::sys::stat::mkdirat(dir.as_fd(), name.as_str(), Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e),
    }
    let fd = fcntl::openat(
        dir.as_fd(),
        name.as_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    nix::unistd::unlinkat(
        dir.as_fd(),
        name.as_str(),
        nix::unistd::UnlinkatFlags::RemoveDir,
    )?;
    if !list_dir(&fd)?.is_empty() {
        return Err(Errno::ENOTEMPTY);
    }
    Ok(fd)
}

/// Put `fd` at descriptor number `target` (replacing what is there), for pins whose
/// number was reserved when the plan was made.
pub fn move_fd_to(fd: OwnedFd, target: RawFd) -> Result<(), Errno> {
    if fd.as_raw_fd() == target {
        std::mem::forget(fd);
        return Ok(());
    }
    // SAFETY: dup3 only manipulates this process's descriptor table; `target` is a number
    // the caller reserved and owns (its OwnedFd is never used again after this call).
    let rc = unsafe { libc::dup3(fd.as_raw_fd(), target, libc::O_CLOEXEC) };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// A second descriptor for the same open file (to reserve a descriptor number).
pub fn dup(fd: &OwnedFd) -> Result<OwnedFd, Errno> {
    fd.try_clone()
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)))
}

/// Forbid ptrace and core dumps of rshell (a same-uid process could otherwise attach and
/// steer the decision); the exec'd rsync gets the kernel's default again.
pub fn set_not_dumpable() {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) only changes a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Everything needed to turn this process into rsync.
pub struct ExecImage<'a> {
    pub program: &'a Path,
    /// Bytes, exactly as checked (`CString::new` refuses only a NUL, which none has).
    pub argv: &'a [OsString],
    pub env: &'a [(String, String)],
    pub cwd: &'a OwnedFd,
    pub umask: u32,
    /// Descriptors besides 0–2 that rsync keeps (the root lock, the pinned paths).
    pub keep: &'a [RawFd],
    /// Start a new process group (the spawned child), so that everything rsync forks can
    /// be ended together.
    pub new_process_group: bool,
}

fn cstring(s: &[u8]) -> Result<CString, Errno> {
    CString::new(s).map_err(|_| Errno::EINVAL)
}

/// Set the umask and working directory, close every other descriptor on exec, run
/// `confine` (Landlock, last, so nothing above is restricted by it) and execve.
/// Returns only on failure.
pub fn exec(image: &ExecImage, confine: impl FnOnce() -> Result<(), String>) -> SysError {
    let prepared = match prepare_exec(image) {
        Ok(prepared) => prepared,
        Err(e) => return e,
    };
    nix::sys::stat::umask(Mode::from_bits_truncate(image.umask));
    if let Err(e) = nix::unistd::fchdir(image.cwd.as_fd()) {
        return SysError::Io("chdir to root".into(), e);
    }
    if let Err(e) = set_descriptors_for_exec(image.keep) {
        return e;
    }
    if image.new_process_group {
        if let Err(e) =
            nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))
        {
            return SysError::Io("setpgid".into(), e);
        }
    }
    if let Err(why) = confine() {
        return SysError::Confine(why);
    }
    // SAFETY: `path` is a NUL-terminated string, `argv_ptrs` and `env_ptrs` are arrays of
    // pointers to the NUL-terminated strings of `_argv` and `_env`, each array ending with
    // a null pointer; `prepared` owns all of them and lives until execve returns (which it
    // does only on failure).
    unsafe {
        libc::execve(
            prepared.path.as_ptr(),
            prepared.argv_ptrs.as_ptr(),
            prepared.env_ptrs.as_ptr(),
        );
    }
    SysError::Exec(prepared.program, Errno::last())
}

/// An [`ExecImage`] with its program, arguments and environment converted for execve(2),
/// so that what runs between fork and exec ([`spawn`]'s child) only makes system calls.
pub struct PreparedExec<'a> {
    image: &'a ExecImage<'a>,
    program: String,
    path: CString,
    // Owners of the strings the pointer arrays point into.
    _argv: Vec<CString>,
    _env: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    env_ptrs: Vec<*const libc::c_char>,
}

/// Convert `image` for execve(2).
pub fn prepare_exec<'a>(image: &'a ExecImage<'a>) -> Result<PreparedExec<'a>, SysError> {
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
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(fail(e)),
    };
    let pointers = |strings: &[CString]| -> Vec<*const libc::c_char> {
        strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    Ok(PreparedExec {
        image,
        argv_ptrs: pointers(&argv),
        env_ptrs: pointers(&env),
        program,
        path,
        _argv: argv,
        _env: env,
    })
}

/// Close-on-exec on every descriptor of this process but `keep`, whose flag is cleared: what
/// the program exec'd in place inherits. ([`spawn`]'s child does the same in its own copy of
/// the descriptor table.)
fn set_descriptors_for_exec(keep: &[RawFd]) -> Result<(), SysError> {
    // SAFETY: close_range only changes descriptor flags of this process; with
    // CLOSE_RANGE_CLOEXEC nothing is closed, so no Rust object is left holding a dangling
    // descriptor.
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
    for fd in keep {
        // Without this rsync would run without the lock or its pinned paths: fail closed.
        set_cloexec(*fd, false).map_err(|e| SysError::Io(format!("keep descriptor {fd}"), e))?;
    }
    Ok(())
}

/// Whether close_range(2) can mark descriptors close-on-exec (Linux 5.11; 5.9 and 5.10 have
/// close_range without that flag). Asked with an empty range: nothing is changed.
fn close_range_marks_cloexec() -> bool {
    // SAFETY: close_range on the range [u32::MAX, u32::MAX], which holds no descriptor, with
    // CLOSE_RANGE_CLOEXEC: changes nothing, fails only where the call or flag is unknown.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            u32::MAX,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    rc == 0
}

/// The highest descriptor number this process has open, from /proc/self/fd (for kernels
/// without [`close_range_marks_cloexec`]).
fn highest_open_fd() -> RawFd {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .max()
                .unwrap_or(2)
        })
        // Without /proc: every number up to the descriptor limit.
        .unwrap_or_else(|_| {
            let mut limit = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            // SAFETY: getrlimit writes the one struct passed; on failure it stays 1024.
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
            RawFd::try_from(limit.rlim_cur).unwrap_or(RawFd::MAX)
        })
}

/// Kernels before 5.11 lack close_range: mark what /proc lists.
fn mark_cloexec_fallback() {
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let fds: Vec<RawFd> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect();
        for fd in fds {
            // A descriptor that vanished meanwhile (EBADF) needs no flag.
            let _ = set_cloexec(fd, true);
        }
    }
}

/// Set or clear FD_CLOEXEC on a raw descriptor number.
fn set_cloexec(fd: RawFd, on: bool) -> Result<(), Errno> {
    let flag = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: F_SETFD only changes a flag of the descriptor table entry; an invalid
    // number fails with EBADF, which is reported.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, flag) };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Where a child of [`spawn`] stopped short of running rsync, or where [`restrict_self`]
/// failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildStep {
    Chdir,
    Descriptors,
    ProcessGroup,
    NoNewPrivs,
    Landlock,
    Exec,
}

impl ChildStep {
    fn from_code(code: u8) -> Option<ChildStep> {
        [
            ChildStep::Chdir,
            ChildStep::Descriptors,
            ChildStep::ProcessGroup,
            ChildStep::NoNewPrivs,
            ChildStep::Landlock,
            ChildStep::Exec,
        ]
        .into_iter()
        .find(|s| *s as u8 + 1 == code)
    }
}

/// Set `no_new_privs` and enforce the Landlock ruleset whose descriptor is `ruleset` on the
/// calling thread (landlock_restrict_self(2)); both are inherited across execve. Only two
/// system calls, no allocation: [`spawn`]'s child makes the same two.
pub fn restrict_self(ruleset: BorrowedFd) -> Result<(), (ChildStep, Errno)> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) and landlock_restrict_self take integers only and
    // change nothing but this thread's credentials.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err((ChildStep::NoNewPrivs, Errno::last()));
        }
        if libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) != 0 {
            return Err((ChildStep::Landlock, Errno::last()));
        }
    }
    Ok(())
}

/// What [`spawn`]'s child reads and writes: plain data in the parent's memory, which the
/// child shares (CLONE_VM).
#[repr(C)]
struct ChildArgs {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    env: *const *const libc::c_char,
    umask: libc::mode_t,
    /// The working directory's descriptor.
    cwd: libc::c_int,
    /// The descriptors the program keeps (all others are marked close-on-exec).
    keep: *const libc::c_int,
    keep_len: usize,
    /// -1 where close_range marks close-on-exec; else the highest open descriptor, up to
    /// which the child marks every number one by one.
    mark_up_to: libc::c_int,
    /// The Landlock ruleset's descriptor, or -1.
    ruleset: libc::c_int,
    new_process_group: bool,
    /// The signal mask to restore just before execve.
    mask: libc::sigset_t,
    /// Written by the child: 0, or 1 + the [`ChildStep`] that failed, and its errno.
    failed: u8,
    errno: libc::c_int,
}

/// The child of [`spawn`]. It runs on its own stack in the parent's memory (CLONE_VM) while
/// the parent waits (CLONE_VFORK), so it makes raw system calls only: no allocation, no lock,
/// no Rust code that could touch the parent's data; the only memory it writes besides its
/// stack is `failed` and `errno` of its `ChildArgs`. (libc's `syscall` sets errno, which is
/// the suspended parent thread's errno: nothing reads it before the parent's next failing
/// call sets it again.)
extern "C" fn spawned_child(arg: *mut libc::c_void) -> libc::c_int {
    let args = arg.cast::<ChildArgs>();
    let fail = |step: ChildStep| -> ! {
        // SAFETY: `args` points to the parent's live ChildArgs (the parent is suspended in
        // clone until this child execs or exits); errno is read from its thread location.
        unsafe {
            (*args).errno = *libc::__errno_location();
            (*args).failed = step as u8 + 1;
            libc::_exit(127)
        }
    };
    // SAFETY: each call takes integers or pointers into the parent's `ChildArgs` and
    // `PreparedExec`, both alive and unchanged while the parent waits; see the function's
    // comment for why only system calls are made here.
    unsafe {
        libc::syscall(libc::SYS_umask, (*args).umask);
        if libc::syscall(libc::SYS_fchdir, (*args).cwd) != 0 {
            fail(ChildStep::Chdir);
        }
        if (*args).mark_up_to < 0 {
            let (from, to, flag) = (3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
            if libc::syscall(libc::SYS_close_range, from, to, flag) != 0 {
                fail(ChildStep::Descriptors);
            }
        } else {
            for fd in 3..=(*args).mark_up_to {
                // EBADF (a number not in use) needs no flag.
                libc::syscall(libc::SYS_fcntl, fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        for i in 0..(*args).keep_len {
            // Without this rsync would run without the lock or its pinned paths: fail closed.
            if libc::syscall(libc::SYS_fcntl, *(*args).keep.add(i), libc::F_SETFD, 0) != 0 {
                fail(ChildStep::Descriptors);
            }
        }
        if (*args).new_process_group && libc::syscall(libc::SYS_setpgid, 0, 0) != 0 {
            fail(ChildStep::ProcessGroup);
        }
        if (*args).ruleset >= 0 {
            if libc::syscall(libc::SYS_prctl, libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                fail(ChildStep::NoNewPrivs);
            }
            if libc::syscall(libc::SYS_landlock_restrict_self, (*args).ruleset, 0u32) != 0 {
                fail(ChildStep::Landlock);
            }
        }
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            std::ptr::addr_of!((*args).mask),
            std::ptr::null_mut::<libc::sigset_t>(),
            std::mem::size_of::<libc::c_ulong>(),
        );
        libc::syscall(libc::SYS_execve, (*args).path, (*args).argv, (*args).env);
    }
    fail(ChildStep::Exec)
}

/// Why [`spawn`] did not start rsync.
#[derive(Debug)]
pub enum SpawnError {
    /// clone itself failed.
    Setup(SysError),
    /// The child failed at this step with this errno, before or in execve.
    Child(ChildStep, Errno),
}

/// Start `prepared` as a child process, as posix_spawn(3) does: clone(2) with CLONE_VM |
/// CLONE_VFORK, so the child shares this process's memory (no page tables copied, no page
/// copied on write) and this process waits until the child has exec'd or failed. The
/// child sets the umask and working directory, marks every descriptor but `image.keep`
/// close-on-exec (in its own copy of the descriptor table), starts a process group of its
/// own (if the image says so), sets `no_new_privs`, enforces `ruleset` (Landlock) if given,
/// and execs. Returns the child's pid once it runs the program. This process is left as it
/// was.
///
/// Sound in any process, threaded or not: the child makes raw system calls only. A caller
/// that installs signal handlers must know that one may run in the child just before its
/// execve (see the mask below); rshell installs none.
pub fn spawn(prepared: &PreparedExec, ruleset: Option<BorrowedFd>) -> Result<i32, SpawnError> {
    let mark_up_to = if close_range_marks_cloexec() {
        -1
    } else {
        highest_open_fd()
    };
    // Signals stay blocked from here until the child's last step before execve, so no signal
    // handler runs in the child while it works on this process's memory. Between restoring
    // the caller's mask and execve one could (posix_spawn resets every handled signal in the
    // child against that, one system call per signal); rshell installs no handler (SIGPIPE is
    // ignored, not handled), so none does.
    // SAFETY: sigfillset and pthread_sigmask write only the local sigset_t values passed.
    let (mut all, mut old): (libc::sigset_t, libc::sigset_t) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: as above.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let mut args = ChildArgs {
        path: prepared.path.as_ptr(),
        argv: prepared.argv_ptrs.as_ptr(),
        env: prepared.env_ptrs.as_ptr(),
        umask: prepared.image.umask,
        cwd: prepared.image.cwd.as_raw_fd(),
        keep: prepared.image.keep.as_ptr(),
        keep_len: prepared.image.keep.len(),
        mark_up_to,
        ruleset: ruleset.map_or(-1, |fd| fd.as_raw_fd()),
        new_process_group: prepared.image.new_process_group,
        mask: old,
        failed: 0,
        errno: 0,
    };
    // The child's stack: ample for a few system calls, 16-byte aligned at its top.
    let mut stack = vec![0u128; 2048];
    // SAFETY: the stack lies in `stack`, which outlives the child's use of it (the parent
    // resumes only after the child exec'd or exited); `args` lives until then too and is
    // read after clone returns. CLONE_VFORK suspends this thread until then, so nothing here
    // runs concurrently with the child on this thread's data.
    let pid = unsafe {
        libc::clone(
            spawned_child,
            stack.as_mut_ptr().add(stack.len()).cast::<libc::c_void>(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::addr_of_mut!(args).cast::<libc::c_void>(),
        )
    };
    let clone_errno = Errno::last();
    // SAFETY: restores the mask saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
    drop(stack);
    if pid < 0 {
        return Err(SpawnError::Setup(SysError::Io("clone".into(), clone_errno)));
    }
    // SAFETY: the child has exec'd or exited; reading what it wrote into `args`.
    let (failed, errno) = unsafe {
        (
            std::ptr::read_volatile(std::ptr::addr_of!(args.failed)),
            std::ptr::read_volatile(std::ptr::addr_of!(args.errno)),
        )
    };
    match ChildStep::from_code(failed) {
        None => Ok(pid),
        Some(step) => {
            // Reap the failed child (it has exited with 127), so no zombie is left.
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            Err(SpawnError::Child(step, Errno::from_raw(errno)))
        }
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

/// How a waited-for session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub kind: ExitKind,
    /// `(rchar, wchar)` of the rsync process (None if unavailable).
    pub io: Option<(u64, u64)>,
    /// Ended by rshell because no byte moved for the idle timeout.
    pub idle_killed: bool,
}

/// Wait for `pid` (the leader of its own process group) to end. While it runs, end the
/// whole group if neither it nor its children read or wrote a byte for `idle` (a stalled
/// client would otherwise hold the root lock forever: rsync's server has no timeout of its
/// own that survives a stopped client). Read its I/O counters before reaping it, then
/// reap, and end whatever else is left in its process group (a forked receiver that
/// would keep the lock).
pub fn wait_with_io(
    pid: i32,
    io_file: Option<std::fs::File>,
    idle: Option<Duration>,
) -> Result<Ended, SysError> {
    use nix::sys::wait::{waitpid, WaitStatus};
    let child = nix::unistd::Pid::from_raw(pid);
    let exited = pidfd_open(pid);
    let mut last_io = None;
    let mut last_change = Instant::now();
    let mut idle_killed = false;
    let tick = Duration::from_millis(500);
    loop {
        if has_exited(child).map_err(|e| SysError::Io("waitid".into(), e))? {
            break;
        }
        if wait_readable(exited.as_ref(), tick) {
            // It exited (the pidfd is readable): reap it, no idle check needed.
            continue;
        }
        let Some(limit) = idle else { continue };
        let now_io = group_io(pid);
        if now_io != last_io {
            last_io = now_io;
            last_change = Instant::now();
        } else if last_change.elapsed() >= limit && !idle_killed {
            idle_killed = true;
            kill_group(pid, nix::sys::signal::Signal::SIGTERM);
            last_change = Instant::now() - limit + Duration::from_secs(2);
        } else if idle_killed && last_change.elapsed() >= limit {
            kill_group(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    let io = io_file.and_then(read_proc_io);
    let kind = loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => break ExitKind::Code(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => break ExitKind::Signal(sig as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(SysError::Io("waitpid".into(), e)),
        }
    };
    // rsync's receiver forks; if the leader died by a signal its child may live on with
    // the lock. The group is ours alone (the child called setpgid), so end all of it.
    kill_group(pid, nix::sys::signal::Signal::SIGKILL);
    Ok(Ended {
        kind,
        io,
        idle_killed,
    })
}

fn kill_group(pgid: i32, signal: nix::sys::signal::Signal) {
    // ESRCH (nobody left) is the normal case after a clean exit.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal);
}

/// A descriptor that becomes readable when `pid` exits (Linux 5.3+), so the wait wakes at
/// once instead of at the next tick.
/// Whether the child `pid` has exited, without reaping it (`WNOWAIT`: the caller reaps it
/// and reads its status once), retrying on EINTR.
pub fn has_exited(pid: nix::unistd::Pid) -> Result<bool, Errno> {
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    loop {
        match waitid(
            Id::Pid(pid),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG,
        ) {
            Ok(WaitStatus::StillAlive) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1; the
    // returned descriptor is owned by nothing else, so wrapping it in OwnedFd is sound.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if rc < 0 {
        return None;
    }
    let fd = RawFd::try_from(rc).ok()?;
    // SAFETY: see above: a fresh descriptor returned by the kernel to us alone.
    Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Wait until `fd` (a pidfd) is readable or `timeout` passed; true if it is readable.
/// Without a pidfd, sleep a short while and say false.
fn wait_readable(fd: Option<&OwnedFd>, timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    match fd {
        Some(fd) => {
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            let ms = PollTimeout::try_from(timeout.as_millis().min(60_000) as i32)
                .unwrap_or(PollTimeout::NONE);
            matches!(poll(&mut fds, ms), Ok(n) if n > 0)
        }
        None => {
            std::thread::sleep(timeout.min(Duration::from_millis(100)));
            false
        }
    }
}

/// Open `/proc/PID/io` of a child that [`spawn`] started, while it lives (a zombie's /proc
/// files belong to root). This uid may open it only once the child's execve has made the new
/// image dumpable again — rshell is not dumpable, and neither is the child until then — which
/// is a little after `spawn` returns: the CLONE_VFORK parent resumes when the child releases
/// the old memory, before execve sets the new image's dumpability. So a refusal is retried
/// while the child lives, for up to 50 ms (a set-id rsync, never dumpable, gives up then;
/// a program that exits within microseconds of its exec is a zombie before it can be
/// opened: both are logged as `io=unknown`).
pub fn open_proc_io(pid: i32) -> Option<std::fs::File> {
    let path = format!("/proc/{pid}/io");
    let deadline = Instant::now() + Duration::from_millis(50);
    loop {
        match std::fs::File::open(&path) {
            Ok(file) => return Some(file),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                let gone = has_exited(nix::unistd::Pid::from_raw(pid)).unwrap_or(true);
                if gone || Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_micros(20));
            }
            Err(_) => return None,
        }
    }
}

/// rchar + wchar of `pid` and its direct children (rsync's receiver is a child of the
/// generator): any byte moved by any of them counts as activity.
fn group_io(pid: i32) -> Option<u64> {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let mut total = 0u64;
    let mut any = false;
    for p in std::iter::once(pid.to_string()).chain(children.split_whitespace().map(str::to_string))
    {
        if let Some((r, w)) = std::fs::File::open(format!("/proc/{p}/io"))
            .ok()
            .and_then(read_proc_io)
        {
            total = total.wrapping_add(r).wrapping_add(w);
            any = true;
        }
    }
    any.then_some(total)
}

fn read_proc_io(file: std::fs::File) -> Option<(u64, u64)> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 4096];
    let n = file.read_at(&mut buf, 0).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((field("rchar:")?, field("wchar:")?))
}
