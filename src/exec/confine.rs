//! Kernel confinement of the exec'd rsync with Landlock (docs/ARCHITECTURE.md, "Confinement").
//!
//! Two halves, kept apart on purpose:
//! - [`Ruleset`] is pure data — what the rsync process may touch — built by
//!   [`Ruleset::for_transfer`] and printable by `rshell --test`. Building it reads nothing but
//!   the existence of a fixed list of system paths.
//! - [`apply`] turns it into a Landlock domain on the *current thread* (the forked child that
//!   is about to `execve` rsync). The domain, and `no_new_privs`, survive the `execve`.
//!
//! Rules this module keeps:
//! - No `unsafe`: only the safe API of the `landlock` crate (and `nix::sys::stat::fstat`).
//! - ABI ≥ 2 or nothing: ABI 1 cannot link or rename across directories, which
//!   `--link-dest`, `--backup-dir`, `--temp-dir` and `--delay-updates` need, so on such a
//!   kernel we restrict nothing rather than break transfers half-way.
//! - The access rights handled are exactly those the running kernel's ABI knows, up to
//!   [`NEWEST_VETTED_ABI`]; `require` means every one of them is enforced for every rule.
#![forbid(unsafe_code)]

use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use landlock::{
    Access as _, AccessFs, BitFlags, CompatLevel, Compatible, LandlockStatus, PathBeneath,
    RestrictSelf, RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI,
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
        let mut seen = Vec::new();
        push_existing(&mut ruleset.read_exec, &mut seen, rsync);
        for dir in LIBRARY_DIRS {
            push_existing(&mut ruleset.read_exec, &mut seen, Path::new(dir));
        }
        for path in SYSTEM_READ_PATHS {
            push_existing(&mut ruleset.read_only, &mut seen, Path::new(path));
        }
        for path in extra_read {
            push_existing(&mut ruleset.read_only, &mut seen, path);
        }
        for device in DEVICES {
            push_existing(&mut ruleset.devices, &mut seen, Path::new(device));
        }
        ruleset
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

/// Adds `path` unless it doesn't exist or the same file is already listed. One `stat`
/// (which follows symlinks, as the rule's open will) instead of resolving every component:
/// on merged-/usr systems `/lib` and `/usr/lib` are the same directory and listed once.
fn push_existing(list: &mut Vec<PathBuf>, seen: &mut Vec<(u64, u64)>, path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let id = (meta.dev(), meta.ino());
    if !seen.contains(&id) {
        seen.push(id);
        list.push(path.to_path_buf());
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
    let abi = match plan(mode, probe()) {
        Plan::Skip(status) => return Ok(status),
        Plan::Refuse(reason) => return Err(ConfineError::Required(reason)),
        Plan::Enforce { abi } => abi,
    };
    let level = match mode {
        ConfineMode::Require => CompatLevel::HardRequirement,
        _ => CompatLevel::BestEffort,
    };
    let status = restrict(ruleset, landlock_abi(abi), level, root)?;
    if !status.no_new_privs {
        return Err(ConfineError::Failed(
            "no_new_privs could not be set".to_string(),
        ));
    }
    match (status.ruleset, mode) {
        (RulesetStatus::FullyEnforced, _) => Ok(Status::Enforced { abi }),
        (RulesetStatus::PartiallyEnforced, ConfineMode::Require) => Err(ConfineError::Failed(
            "ruleset only partly enforced".to_string(),
        )),
        (RulesetStatus::PartiallyEnforced, _) => Ok(Status::Partial { abi }),
        (RulesetStatus::NotEnforced, ConfineMode::Require) => Err(ConfineError::Required(
            "the kernel did not enforce the ruleset".to_string(),
        )),
        (RulesetStatus::NotEnforced, _) => Ok(Status::NotEnforced {
            reason: "the kernel did not enforce the ruleset".to_string(),
        }),
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

fn restrict(
    ruleset: &Ruleset,
    abi: ABI,
    level: CompatLevel,
    root_fd: BorrowedFd,
) -> Result<landlock::RestrictionStatus, ConfineError> {
    let failed = |e: landlock::RulesetError| ConfineError::Failed(e.to_string());
    let mut created = landlock::Ruleset::default()
        .set_compatibility(level)
        .handle_access(AccessFs::from_all(abi))
        .map_err(failed)?
        .create()
        .map_err(failed)?;
    let root = ruleset.root();
    for (kind, path) in ruleset.rules() {
        let rule = if Some(path) == root {
            // The root rule is built from the descriptor every check used, never by name.
            let fd = root_fd
                .try_clone_to_owned()
                .map_err(|e| ConfineError::Failed(format!("root descriptor: {e}")))?;
            PathBeneath::new(fd, kind.rights(abi))
        } else {
            let Some(rule) = path_rule(path, kind.rights(abi))? else {
                continue;
            };
            rule
        };
        created = created.add_rule(rule).map_err(failed)?;
    }
    created.restrict_self().map_err(failed)
}

/// The rule for `path`: `rights` narrowed to those valid on a file when it isn't a directory
/// (the kernel rejects directory rights on files), judged on the opened descriptor itself.
/// A path other than the root that has vanished since the ruleset was built is skipped.
fn path_rule(
    path: &Path,
    rights: BitFlags<AccessFs>,
) -> Result<Option<PathBeneath<OwnedFd>>, ConfineError> {
    let fd = match nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(ConfineError::Failed(format!("{}: {e}", path.display()))),
    };
    let stat = nix::sys::stat::fstat(&fd)
        .map_err(|e| ConfineError::Failed(format!("stat {}: {e}", path.display())))?;
    let is_dir = stat.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let rights = if is_dir { rights } else { rights & FILE_RIGHTS };
    Ok(Some(PathBeneath::new(fd, rights)))
}

/// Rights that apply to a file itself; the others concern a directory's entries.
const FILE_RIGHTS: BitFlags<AccessFs> = landlock::make_bitflags!(AccessFs::{
    ReadFile | WriteFile | Execute | Truncate | IoctlDev
});
