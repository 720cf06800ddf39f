//! Kernel confinement of the exec'd rsync with Landlock (docs/ARCHITECTURE.md, "Confinement").
//!
//! Two halves, kept apart on purpose:
//! - [`Ruleset`] is pure data — what the rsync process may touch — built by
//!   [`Ruleset::for_transfer`] and printable by `rshell --test`. Building it reads nothing but
//!   the existence of a fixed list of system paths.
//! - [`prepare`] turns it into a Landlock ruleset with all its rules, and knows the status it
//!   will have once enforced; the ruleset is then enforced on the thread that execs rsync:
//!   this one ([`apply`], for an exec in place), or the child `system::spawn` starts, which
//!   makes the same two system calls (`no_new_privs`, `landlock_restrict_self`). The domain,
//!   and `no_new_privs`, survive the `execve`.
//!
//! Each path is looked up once per connection: on a kernel with Landlock, building the
//! ruleset opens every listed path `O_PATH` (the existence and identity check it needs
//! anyway) and keeps the descriptors; [`prepare`] makes the rules of exactly that ruleset
//! from them instead of opening the paths by name again.
//!
//! Rules this module keeps:
//! - No `unsafe`: the safe API of the `landlock` crate to create the ruleset and add its
//!   rules (and `nix::sys::stat::fstat`); the restricting calls are `system::restrict_self`.
//! - ABI ≥ 2 or nothing: ABI 1 cannot link or rename across directories, which
//!   `--link-dest`, `--backup-dir`, `--temp-dir` and `--delay-updates` need, so on such a
//!   kernel we restrict nothing rather than break transfers half-way.
//! - The access rights handled are exactly those the running kernel's ABI knows, up to
//!   [`NEWEST_VETTED_ABI`]; `require` means every one of them is enforced for every rule.
#![forbid(unsafe_code)]

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use landlock::{
    Access as _, AccessFs, BitFlags, CompatLevel, Compatible, LandlockStatus, PathBeneath,
    RestrictSelf, RulesetAttr, RulesetCreatedAttr, ABI,
};

use crate::policy::{Access, ConfineMode};

/// The newest Landlock ABI whose filesystem rights rshell has been tested with (on Linux 6.18,
/// kernel ABI 7). ABIs 5–8 handle the same filesystem rights; ABI 9 adds `ResolveUnix`
/// (connecting to named UNIX sockets), which glibc's NSS may use (nscd, systemd-userdb): to be
/// vetted before this is raised. A newer kernel is asked for these rights only.
const NEWEST_VETTED_ABI: ABI = ABI::V8;

/// Directories the dynamic loader finds rsync's libraries in (and the loader itself, and glibc's
/// NSS and gconv modules). A fixed list rather than parsing the ELF: on merged-/usr systems they
/// collapse to `/usr/lib` and `/usr/lib64` anyway. Those that don't exist are skipped.
const LIBRARY_DIRS: &[&str] = &[
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib32",
    "/lib",
    "/lib64",
    "/lib32",
];

/// Files and trees rsync reads besides its own binary and libraries: the loader's cache, user and
/// group names (`-o`/`-g` map ids by name), time zone for log lines, locale data, OpenSSL's
/// configuration (libcrypto reads it at start-up; it may select providers such as FIPS), and
/// `/dev/urandom` (rsync 3.5 reads it for temporary file names). Not all of /etc. Symlinks are
/// resolved: `locale.alias` and `openssl.cnf` live in /etc on Debian.
const SYSTEM_READ_PATHS: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/usr/lib/locale",
    "/usr/share/locale",
    "/usr/share/locale/locale.alias",
    "/usr/lib/ssl/openssl.cnf",
    "/dev/urandom",
];

/// Device files rsync may open for reading and writing (that file only).
const DEVICES: &[&str] = &["/dev/null"];

/// What the exec'd rsync may touch. Pure data: printable by `rshell --test`.
///
/// Each list holds paths that Landlock grants *beneath* (a directory and everything under it, or
/// the one file). Everything not listed is denied for the rights Landlock handles.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ruleset {
    /// Full file access needed by an rsync receiver or sender: read, write, create and remove
    /// files, directories and symlinks, link/rename across directories (ABI 2), truncate (ABI 3).
    pub read_write: Vec<PathBuf>,
    /// Read files and list directories.
    pub read_only: Vec<PathBuf>,
    /// Read and execute: the rsync binary, its libraries and the dynamic loader.
    pub read_exec: Vec<PathBuf>,
    /// Device files such as `/dev/null`: read and write (and truncate, device ioctls) of that file.
    pub devices: Vec<PathBuf>,
}

impl Ruleset {
    /// The ruleset for one transfer: `root` per `access`, the rsync binary `rsync`, the library
    /// directories, the few system files rsync reads, `/dev/null`, and `extra_read` (e.g. the
    /// daemon's rsyncd.conf) read-only.
    ///
    /// `WriteOnly` gets the same rights as `ReadWrite`: rsync's receiver reads the files it
    /// already has to compute deltas, so "no read" cannot be expressed here; write-only is
    /// enforced by the option vetting instead (`decide`).
    ///
    /// `root` must exist (the caller checked it). Other paths that don't exist on this system
    /// are left out; system paths are resolved (symlinks, `..`) and listed once, as Landlock
    /// sees them.
    pub fn for_transfer(
        root: &Path,
        access: Access,
        rsync: &Path,
        extra_read: &[PathBuf],
    ) -> Ruleset {
        // Descriptors only where a ruleset can be applied at all (one `stat` per path else).
        let keep = matches!(probe(), Ok(abi) if abi >= 2);
        let (ruleset, opened) = Ruleset::build(root, access, rsync, extra_read, keep);
        *PREPARED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Prepared {
            ruleset: ruleset.clone(),
            opened,
        });
        ruleset
    }

    /// [`Ruleset::for_transfer`], returning the descriptors it opened (if `keep`) instead of
    /// keeping them.
    fn build(
        root: &Path,
        access: Access,
        rsync: &Path,
        extra_read: &[PathBuf],
        keep: bool,
    ) -> (Ruleset, Vec<Opened>) {
        let mut ruleset = Ruleset::with_root(root, access);
        let mut seen = Vec::new();
        let mut opened = Vec::new();
        for (slot, path) in candidates(rsync, extra_read) {
            let list = ruleset.slot(slot);
            push_existing(list, &mut seen, keep.then_some(&mut opened), path);
        }
        (ruleset, opened)
    }

    /// A ruleset holding only the root's rule.
    fn with_root(root: &Path, access: Access) -> Ruleset {
        let mut ruleset = Ruleset {
            read_write: Vec::new(),
            read_only: Vec::new(),
            read_exec: Vec::new(),
            devices: Vec::new(),
        };
        match access {
            Access::ReadOnly => ruleset.read_only.push(root.to_path_buf()),
            Access::ReadWrite | Access::WriteOnly => ruleset.read_write.push(root.to_path_buf()),
        }
        ruleset
    }

    fn slot(&mut self, slot: Slot) -> &mut Vec<PathBuf> {
        match slot {
            Slot::ReadExec => &mut self.read_exec,
            Slot::ReadOnly => &mut self.read_only,
            Slot::Devices => &mut self.devices,
        }
    }

    /// One line per rule, e.g. `rw /srv/backup/amanda`, for `--test` output and syslog.
    pub fn describe(&self) -> Vec<String> {
        self.rules()
            .map(|(kind, path)| format!("{} {}", kind.label(), path.display()))
            .collect()
    }

    /// Every rule with its kind, in a stable order.
    fn rules(&self) -> impl Iterator<Item = (RuleKind, &PathBuf)> {
        let tag = |kind: RuleKind| move |path| (kind, path);
        self.read_write
            .iter()
            .map(tag(RuleKind::ReadWrite))
            .chain(self.read_only.iter().map(tag(RuleKind::ReadOnly)))
            .chain(self.read_exec.iter().map(tag(RuleKind::ReadExec)))
            .chain(self.devices.iter().map(tag(RuleKind::Device)))
    }

    /// The first path of `read_write`/`read_only` as given: the transfer root, the one path that
    /// must exist when the ruleset is applied.
    fn root(&self) -> Option<&PathBuf> {
        self.read_write.first().or(self.read_only.first())
    }
}

/// Adds `path` unless it doesn't exist or the same file is already listed: on merged-/usr
/// systems `/lib` and `/usr/lib` are the same directory and listed once. With `opened`, the
/// path is opened `O_PATH` (following symlinks, as a `stat` would and as the rule's open
/// did) and judged on that descriptor, which is kept in `opened` for [`apply`]; where that
/// open fails for another reason than the path's absence (too many descriptors, say), and
/// without `opened`, one `stat` decides as it always did (the rule's path is then opened by
/// name when the ruleset is applied).
/// Which list of a [`Ruleset`] a system path's rule goes to.
#[derive(Debug, Clone, Copy)]
enum Slot {
    ReadExec,
    ReadOnly,
    Devices,
}

/// The system paths rsync may use besides the root, in rule order: the binary and the
/// library directories (read and execute), the system files it reads and the extra read
/// paths (read), the devices. The one list of them; missing paths, and paths whose inode
/// an earlier one already covers, get no rule of their own.
fn candidates<'a>(
    rsync: &'a Path,
    extra_read: &'a [PathBuf],
) -> impl Iterator<Item = (Slot, &'a Path)> {
    std::iter::once((Slot::ReadExec, rsync))
        .chain(LIBRARY_DIRS.iter().map(|d| (Slot::ReadExec, Path::new(*d))))
        .chain(
            SYSTEM_READ_PATHS
                .iter()
                .map(|p| (Slot::ReadOnly, Path::new(*p))),
        )
        .chain(extra_read.iter().map(|p| (Slot::ReadOnly, p.as_path())))
        .chain(DEVICES.iter().map(|d| (Slot::Devices, Path::new(*d))))
}

fn push_existing(
    list: &mut Vec<PathBuf>,
    seen: &mut Vec<(u64, u64)>,
    opened: Option<&mut Vec<Opened>>,
    path: &Path,
) {
    let by_stat = || {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| ((m.dev(), m.ino()), None))
    };
    let found = match opened.is_some().then(|| open_path(path)) {
        Some(Ok((fd, stat))) => Some((
            (stat.st_dev, stat.st_ino),
            Some((fd, stat.st_mode & libc::S_IFMT == libc::S_IFDIR)),
        )),
        Some(Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR)) => None,
        Some(Err(_)) | None => by_stat(),
    };
    let Some((id, fd)) = found else {
        return;
    };
    if !seen.contains(&id) {
        seen.push(id);
        list.push(path.to_path_buf());
        if let (Some(opened), Some((fd, is_dir))) = (opened, fd) {
            opened.push(Opened {
                path: path.to_path_buf(),
                fd,
                is_dir,
            });
        }
    }
}

/// `path` opened `O_PATH` (symlinks followed), and what it is.
fn open_path(path: &Path) -> Result<(OwnedFd, nix::sys::stat::FileStat), nix::errno::Errno> {
    let fd = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let stat = nix::sys::stat::fstat(&fd)?;
    Ok((fd, stat))
}

/// A path of a ruleset as [`Ruleset::for_transfer`] opened it.
#[derive(Debug)]
struct Opened {
    path: PathBuf,
    fd: OwnedFd,
    is_dir: bool,
}

/// The descriptors the last [`Ruleset::for_transfer`] of this process opened, with the
/// ruleset it built. [`prepare`] takes them when it is given that same ruleset (a real run
/// prepares it right after the decision), and opens each
/// path by name otherwise, as it always did. Close-on-exec: rsync never inherits them.
#[derive(Debug)]
struct Prepared {
    ruleset: Ruleset,
    opened: Vec<Opened>,
}

static PREPARED: Mutex<Option<Prepared>> = Mutex::new(None);

/// The kept descriptors for `ruleset`, if the last one built is that ruleset.
fn take_prepared(ruleset: &Ruleset) -> Vec<Opened> {
    let mut prepared = PREPARED.lock().unwrap_or_else(|e| e.into_inner());
    match prepared.take() {
        Some(p) if p.ruleset == *ruleset => p.opened,
        _ => Vec::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuleKind {
    ReadWrite,
    ReadOnly,
    ReadExec,
    Device,
}

impl RuleKind {
    fn label(self) -> &'static str {
        match self {
            RuleKind::ReadWrite => "rw",
            RuleKind::ReadOnly => "ro",
            RuleKind::ReadExec => "rx",
            RuleKind::Device => "dev",
        }
    }

    /// The rights of this kind of rule among those the ruleset handles at `abi`.
    fn rights(self, abi: ABI) -> BitFlags<AccessFs> {
        let handled = AccessFs::from_all(abi);
        let wanted = match self {
            RuleKind::ReadWrite => handled,
            RuleKind::ReadOnly => AccessFs::ReadFile | AccessFs::ReadDir,
            RuleKind::ReadExec => AccessFs::ReadFile | AccessFs::ReadDir | AccessFs::Execute,
            RuleKind::Device => {
                AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev
            }
        };
        wanted & handled
    }
}

/// What the kernel gave us.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Status {
    /// Every rule is enforced with every filesystem right of Landlock ABI `abi` (the kernel's
    /// ABI, capped at the newest one rshell has vetted).
    Enforced { abi: u32 },
    /// A Landlock domain is in force, but some requested right or rule was dropped (auto only).
    Partial { abi: u32 },
    /// Nothing was restricted (auto only), and why.
    NotEnforced { reason: String },
    /// `confine = "off"`: not attempted.
    Off,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Enforced { abi } => write!(f, "landlock=enforced(abi {abi})"),
            Status::Partial { abi } => write!(f, "landlock=partial(abi {abi})"),
            Status::NotEnforced { reason } => write!(f, "landlock=unavailable({reason})"),
            Status::Off => write!(f, "landlock=off"),
        }
    }
}

/// Why the confinement was refused or failed. `Display` is the sentence for the log.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// `confine = "require"` and the kernel can't enforce the whole ruleset. Nothing was applied.
    #[error("landlock required but {0}")]
    Required(String),
    /// Building or applying the ruleset failed on a kernel that supports Landlock. The thread
    /// may be partly restricted (`no_new_privs`): don't exec.
    #[error("landlock: {0}")]
    Failed(String),
}

/// What [`apply`] will do for `mode` on a kernel whose Landlock probe gave `kernel`
/// (see [`probe`]). Pure, so the decision can be tested for kernels we don't run on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Plan {
    /// Restrict nothing and report this status.
    Skip(Status),
    /// Restrict nothing and refuse the transfer with this message (for [`ConfineError::Required`]).
    Refuse(String),
    /// Build the ruleset with every filesystem right of this Landlock ABI.
    Enforce { abi: u32 },
}

/// The decision table: `off` restricts nothing; ABI ≥ 2 is enforced (capped at the newest
/// vetted ABI); below that `auto` runs unconfined and says why, `require` refuses.
pub fn plan(mode: ConfineMode, kernel: Result<u32, String>) -> Plan {
    let unavailable = match (mode, kernel) {
        (ConfineMode::Off, _) => return Plan::Skip(Status::Off),
        (_, Ok(abi)) if abi >= 2 => {
            return Plan::Enforce {
                abi: abi.min(NEWEST_VETTED_ABI as u32),
            }
        }
        (_, Ok(_)) => "kernel landlock ABI < 2".to_string(),
        (_, Err(reason)) => reason,
    };
    match mode {
        ConfineMode::Require => Plan::Refuse(unavailable),
        _ => Plan::Skip(Status::NotEnforced {
            reason: unavailable,
        }),
    }
}

/// Probe without restricting (for `rshell --check`, `--test`): the Landlock ABI the kernel
/// supports, or why none.
pub fn probe() -> Result<u32, String> {
    // Asked once per process: the decision, the log record and the child all need it.
    static KERNEL: std::sync::OnceLock<Result<u32, String>> = std::sync::OnceLock::new();
    KERNEL.get_or_init(probe_kernel).clone()
}

fn probe_kernel() -> Result<u32, String> {
    // A RestrictSelf with no flags requested and no_new_privs off makes no restricting syscall;
    // building it asks the kernel for its Landlock version, which the status carries back.
    let status = RestrictSelf::default()
        .no_new_privs(false)
        .apply()
        .map_err(|e| format!("probe failed: {e}"))?;
    match status.landlock {
        LandlockStatus::Available {
            kernel_abi: Some(abi),
            ..
        } => u32::try_from(abi).map_err(|_| format!("kernel reported landlock ABI {abi}")),
        LandlockStatus::Available { effective_abi, .. } => Ok(effective_abi as u32),
        LandlockStatus::NotEnabled => Err("landlock not enabled at boot (lsm=)".to_string()),
        LandlockStatus::NotImplemented => Err("kernel built without landlock".to_string()),
        // The crate may learn new states; treat them as "can't tell".
        #[allow(unreachable_patterns)]
        other => Err(format!("landlock status {other:?}")),
    }
}

/// Apply `ruleset` to the current thread (the child that is about to `execve` rsync), and set
/// `no_new_privs`. Both are inherited across `execve`.
///
/// - `Off`: `Ok(Status::Off)`, nothing touched.
/// - `Auto`: the best the kernel allows at ABI ≥ 2; below that nothing is applied and the status
///   says why (`NotEnforced`).
/// - `Require`: `Err` unless every rule is enforced with every right of the kernel's ABI ≥ 2.
///
/// On `Err(ConfineError::Failed)` the caller must not exec rsync.
pub fn apply(
    ruleset: &Ruleset,
    mode: ConfineMode,
    root: BorrowedFd,
) -> Result<Status, ConfineError> {
    prepare(ruleset, mode, root)?.restrict_self()
}

/// [`apply`] in two halves: `prepare` does everything but the restriction (decides what the
/// kernel allows, creates the Landlock ruleset and adds every rule) and leaves the current
/// thread untouched; [`Ready::restrict_self`] then sets `no_new_privs` and restricts the
/// calling thread, or the spawned child does the same two system calls with
/// [`Ready::ruleset_fd`] (`system::spawn`).
///
/// The status is known here, before anything is restricted: the ruleset is first created
/// as a hard requirement (every right of `abi` handled, every rule whole); only if the
/// kernel refuses that does `auto` create it again best-effort, which the crate can only
/// enforce in part.
pub fn prepare(
    ruleset: &Ruleset,
    mode: ConfineMode,
    root: BorrowedFd,
) -> Result<Ready, ConfineError> {
    let abi = match plan(mode, probe()) {
        Plan::Skip(status) => return Ok(Ready(Step::Skip(status))),
        Plan::Refuse(reason) => return Err(ConfineError::Required(reason)),
        Plan::Enforce { abi } => abi,
    };
    let whole = create(
        ruleset,
        landlock_abi(abi),
        CompatLevel::HardRequirement,
        root,
    );
    let (created, fds, status) = match (whole, mode) {
        (Ok((created, fds)), _) => (created, fds, Status::Enforced { abi }),
        (Err(e), ConfineMode::Require) => return Err(e),
        (Err(_), _) => {
            let (created, fds) = create(ruleset, landlock_abi(abi), CompatLevel::BestEffort, root)?;
            (created, fds, Status::Partial { abi })
        }
    };
    let Some(fd) = Option::<OwnedFd>::from(created) else {
        // The crate found nothing it could enforce (no ruleset descriptor).
        let why = "the kernel did not enforce the ruleset".to_string();
        return match mode {
            ConfineMode::Require => Err(ConfineError::Required(why)),
            _ => Ok(Ready(Step::Skip(Status::NotEnforced { reason: why }))),
        };
    };
    Ok(Ready(Step::Restrict {
        fd,
        status,
        rule_fds: fds,
    }))
}

/// A ruleset [`prepare`]d for the current kernel, to be applied with [`Ready::restrict_self`]
/// or by a spawned child.
#[derive(Debug)]
#[must_use]
pub struct Ready(Step);

#[derive(Debug)]
enum Step {
    /// Nothing to restrict: the status to report.
    Skip(Status),
    /// The Landlock ruleset's descriptor with all its rules, the status once it is enforced,
    /// and the descriptors the rules were made from: the kernel needs them no more, but they
    /// are not closed one by one on the way to exec (after a spawn, the parent drops them
    /// while rsync starts; before an exec in place, the exec closes them). Close-on-exec:
    /// rsync never holds them.
    Restrict {
        fd: OwnedFd,
        status: Status,
        rule_fds: Vec<OwnedFd>,
    },
}

impl Ready {
    /// The ruleset descriptor to enforce, or None when nothing is to be restricted.
    pub fn ruleset_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.0 {
            Step::Skip(_) => None,
            Step::Restrict { fd, .. } => Some(fd.as_fd()),
        }
    }

    /// The status once [`Ready::ruleset_fd`] is enforced (or, when there is none, the reason).
    pub fn status(&self) -> &Status {
        match &self.0 {
            Step::Skip(status) | Step::Restrict { status, .. } => status,
        }
    }

    /// Set `no_new_privs` and restrict the current thread with the prepared ruleset; the
    /// status and errors are those of [`apply`]. Meant for the thread that execs next: the
    /// descriptors are left to that exec to close (they are close-on-exec).
    pub fn restrict_self(self) -> Result<Status, ConfineError> {
        match self.0 {
            Step::Skip(status) => Ok(status),
            Step::Restrict {
                fd,
                status,
                rule_fds,
            } => {
                crate::system::restrict_self(fd.as_fd()).map_err(|(step, e)| failed(step, e))?;
                // Not closed one by one: the exec that follows closes them all at once
                // (close-on-exec), as it closes the ruleset's own descriptor.
                for owned in rule_fds.into_iter().chain([fd]) {
                    let _ = std::os::fd::IntoRawFd::into_raw_fd(owned);
                }
                Ok(status)
            }
        }
    }
}

/// The error for a failed restricting step (in this thread or a spawned child).
pub fn failed(step: crate::system::ChildStep, errno: nix::errno::Errno) -> ConfineError {
    match step {
        crate::system::ChildStep::NoNewPrivs => {
            ConfineError::Failed(format!("no_new_privs could not be set: {}", errno.desc()))
        }
        _ => ConfineError::Failed(format!("landlock_restrict_self: {}", errno.desc())),
    }
}

/// The crate's ABI for a kernel ABI number that [`plan`] accepted (2..=NEWEST_VETTED_ABI).
fn landlock_abi(abi: u32) -> ABI {
    match abi {
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        6 => ABI::V6,
        7 => ABI::V7,
        _ => NEWEST_VETTED_ABI,
    }
}

/// The Landlock ruleset handling every right of `abi`, with every rule of `ruleset` added;
/// and the descriptors of the rules besides the root's.
fn create(
    ruleset: &Ruleset,
    abi: ABI,
    level: CompatLevel,
    root_fd: BorrowedFd,
) -> Result<(landlock::RulesetCreated, Vec<OwnedFd>), ConfineError> {
    let failed = |e: landlock::RulesetError| ConfineError::Failed(e.to_string());
    let mut created = landlock::Ruleset::default()
        .set_compatibility(level)
        .handle_access(AccessFs::from_all(abi))
        .map_err(failed)?
        .create()
        .map_err(failed)?;
    let rules = rules(ruleset, abi, root_fd, take_prepared(ruleset))?;
    for (fd, rights) in &rules {
        created = created
            .add_rule(PathBeneath::new(fd.as_fd(), *rights))
            .map_err(failed)?;
    }
    let fds = rules
        .into_iter()
        .filter_map(|(fd, _)| match fd {
            RuleFd::Path(fd) => Some(fd),
            RuleFd::Root(_) => None,
        })
        .collect();
    Ok((created, fds))
}

/// The descriptor a rule is made from: the root's (borrowed: the one every check used, also
/// rsync's working directory), or a path's.
#[derive(Debug)]
enum RuleFd<'a> {
    Root(BorrowedFd<'a>),
    Path(OwnedFd),
}

impl AsFd for RuleFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            RuleFd::Root(fd) => fd.as_fd(),
            RuleFd::Path(fd) => fd.as_fd(),
        }
    }
}

/// Every rule of `ruleset` at `abi` as a descriptor and its rights, in [`Ruleset::rules`]
/// order: the root from `root_fd`, every other path from its descriptor in `prepared` (what
/// [`Ruleset::for_transfer`] opened for this ruleset), or else opened by name now.
fn rules<'a>(
    ruleset: &Ruleset,
    abi: ABI,
    root_fd: BorrowedFd<'a>,
    mut prepared: Vec<Opened>,
) -> Result<Vec<(RuleFd<'a>, BitFlags<AccessFs>)>, ConfineError> {
    let root = ruleset.root();
    let mut out = Vec::new();
    for (kind, path) in ruleset.rules() {
        if Some(path) == root {
            // The root rule is built from the descriptor every check used, never by name.
            out.push((RuleFd::Root(root_fd), kind.rights(abi)));
            continue;
        }
        let opened = match prepared.iter().position(|o| o.path == *path) {
            Some(at) => prepared.swap_remove(at),
            None => match path_opened(path)? {
                Some(o) => o,
                None => continue,
            },
        };
        out.push((
            RuleFd::Path(opened.fd),
            narrowed(kind.rights(abi), opened.is_dir),
        ));
    }
    Ok(out)
}

/// `rights` narrowed to those valid on a file when it isn't a directory (the kernel rejects
/// directory rights on files), judged on the opened descriptor itself.
fn narrowed(rights: BitFlags<AccessFs>, is_dir: bool) -> BitFlags<AccessFs> {
    if is_dir {
        rights
    } else {
        rights & FILE_RIGHTS
    }
}

/// `path` opened by name now. A path other than the root that has vanished since the ruleset
/// was built is skipped.
fn path_opened(path: &Path) -> Result<Option<Opened>, ConfineError> {
    match open_path(path) {
        Ok((fd, stat)) => Ok(Some(Opened {
            path: path.to_path_buf(),
            fd,
            is_dir: stat.st_mode & libc::S_IFMT == libc::S_IFDIR,
        })),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(ConfineError::Failed(format!("{}: {e}", path.display()))),
    }
}

/// Rights that apply to a file itself; the others concern a directory's entries.
const FILE_RIGHTS: BitFlags<AccessFs> = landlock::make_bitflags!(AccessFs::{
    ReadFile | WriteFile | Execute | Truncate | IoctlDev
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The same candidates identified by name, as before the descriptors were kept: one
    /// `stat` per path (the oracle for the open-once identification).
    fn by_stat(root: &Path, access: Access, rsync: &Path, extra_read: &[PathBuf]) -> Ruleset {
        use std::os::unix::fs::MetadataExt;
        let mut ruleset = Ruleset::with_root(root, access);
        let mut seen = Vec::new();
        for (slot, path) in candidates(rsync, extra_read) {
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            let id = (meta.dev(), meta.ino());
            if !seen.contains(&id) {
                seen.push(id);
                ruleset.slot(slot).push(path.to_path_buf());
            }
        }
        ruleset
    }

    /// What each rule grants, on which file: (device, inode, rights).
    fn granted(rules: &[(RuleFd, BitFlags<AccessFs>)]) -> Vec<(u64, u64, BitFlags<AccessFs>)> {
        rules
            .iter()
            .map(|(fd, rights)| {
                let st = nix::sys::stat::fstat(fd.as_fd()).unwrap();
                (st.st_dev, st.st_ino, *rights)
            })
            .collect()
    }

    fn inputs() -> Vec<(Access, &'static str, Vec<PathBuf>)> {
        let mut out = Vec::new();
        for access in [Access::ReadWrite, Access::ReadOnly, Access::WriteOnly] {
            for rsync in [
                "/usr/bin/rsync",
                "/bin/true",
                "/nonexistent/rsync",
                "/usr/lib",
            ] {
                for extra in [
                    vec![],
                    vec![
                        PathBuf::from("/etc/hostname"),
                        PathBuf::from("/nonexistent/x"),
                    ],
                    // Already listed under another name: listed once.
                    vec![PathBuf::from("/lib/../etc/passwd")],
                ] {
                    out.push((access, rsync, extra));
                }
            }
        }
        out
    }

    #[test]
    fn the_ruleset_built_from_descriptors_is_the_one_built_by_stat() {
        let root = std::env::temp_dir();
        for (access, rsync, extra) in inputs() {
            let (built, opened) = Ruleset::build(&root, access, Path::new(rsync), &extra, true);
            assert_eq!(built, by_stat(&root, access, Path::new(rsync), &extra));
            let (unkept, none) = Ruleset::build(&root, access, Path::new(rsync), &extra, false);
            assert_eq!((&unkept, none.len()), (&built, 0));
            assert_eq!(
                Ruleset::for_transfer(&root, access, Path::new(rsync), &extra),
                built
            );
            // One descriptor per listed path besides the root, for that path.
            let mut listed: Vec<&PathBuf> = built.rules().map(|(_, p)| p).skip(1).collect();
            let mut kept: Vec<&PathBuf> = opened.iter().map(|o| &o.path).collect();
            listed.sort();
            kept.sort();
            assert_eq!(kept, listed, "{rsync} {extra:?}");
        }
    }

    #[test]
    fn the_rules_from_kept_descriptors_are_the_rules_opened_by_name() {
        let root = std::env::temp_dir();
        let root_fd = nix::fcntl::open(
            &root,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        for abi in [
            ABI::V2,
            ABI::V3,
            ABI::V4,
            ABI::V5,
            ABI::V6,
            ABI::V7,
            ABI::V8,
        ] {
            for (access, rsync, extra) in inputs() {
                let (ruleset, opened) =
                    Ruleset::build(&root, access, Path::new(rsync), &extra, true);
                let kept = rules(&ruleset, abi, root_fd.as_fd(), opened).unwrap();
                let by_name = rules(&ruleset, abi, root_fd.as_fd(), Vec::new()).unwrap();
                assert_eq!(
                    granted(&kept),
                    granted(&by_name),
                    "{abi:?} {rsync} {extra:?}"
                );
                assert_eq!(kept.len(), ruleset.rules().count());
            }
        }
    }

    #[test]
    fn kept_descriptors_serve_only_the_ruleset_they_were_opened_for() {
        let root = std::env::temp_dir();
        let rs = Ruleset::for_transfer(&root, Access::ReadOnly, Path::new("/bin/true"), &[]);
        let mut other = rs.clone();
        other.read_only.pop();
        // Another thread may have built a ruleset meanwhile: then nothing is kept for either.
        assert!(take_prepared(&other).is_empty());
        assert!(take_prepared(&rs).is_empty(), "taken (or replaced) once");
        let rs = Ruleset::for_transfer(&root, Access::ReadOnly, Path::new("/bin/true"), &[]);
        let kept = take_prepared(&rs);
        assert!(kept.is_empty() || kept.len() == rs.rules().count() - 1);
    }
}
