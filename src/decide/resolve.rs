//! Client paths beneath root: map `/`, `~` and root's own absolute spelling onto root,
//! expand unquoted wildcards inside root as a shell would, and resolve every result with
//! the kernel's own resolution beneath the opened root directory (openat2
//! RESOLVE_BENEATH), so `..` and symlinks cannot lead out.
//!
//! What rsync uses must be exactly what was checked: [`locate`] returns the deepest
//! existing component as an open descriptor, and the decision hands rsync that descriptor
//! (`/proc/self/fd/N`, inherited across exec: the kernel's magic link reaches the pinned
//! inode whatever happens to the names afterwards) plus the names that do not exist yet.
//! Missing names may only be plain names; `..` may cancel only a name that rsync itself
//! will create as a directory (the destination), never a name the transfer could create
//! as a symlink first.
//!
//! Paths are bytes from the client's word to rsync's argv (`OsStr::from_bytes`): a name
//! that is not UTF-8 (Latin-1) is resolved, pinned and passed on exactly as sent, and
//! shown with the log's escaping (`caf\xe9`), never converted.
//!
//! Read-only file-system access only; creating directories for pins happens at exec time.
#![forbid(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;

use crate::command::{show_quoted, Word};
use crate::system;

/// Most names one wildcard word may expand to.
pub const MAX_EXPANSION: usize = 1000;

/// An opened root directory.
#[derive(Debug, Clone)]
pub struct Root {
    /// The administrator's spelling (for messages, `--confine-root`, Landlock's display).
    pub path: PathBuf,
    /// The directory itself, opened once: every resolution starts here, rsync's working
    /// directory is set from it, the lock is taken on it, Landlock's rule is built from it.
    pub fd: Arc<OwnedFd>,
}

impl PartialEq for Root {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.fd.as_raw_fd() == other.fd.as_raw_fd()
    }
}
impl Eq for Root {}

impl Root {
    /// Open root; a missing root is a denial, never an implicit mkdir.
    pub fn open(path: &Path) -> Result<Root, String> {
        match system::open_dir(path) {
            Ok(fd) => Ok(Root {
                path: path.to_path_buf(),
                fd: Arc::new(fd),
            }),
            Err(Errno::ENOENT) => Err(format!("root {} does not exist", path.display())),
            Err(Errno::ENOTDIR) => Err(format!("root {} is not a directory", path.display())),
            Err(e) => Err(format!("root {}: {}", path.display(), e.desc())),
        }
    }

    /// A directory beneath this root, opened through this root's descriptor (a nested
    /// key's narrowed root): never re-resolved by its absolute name.
    pub fn beneath(&self, rel: &Path) -> Result<Root, String> {
        let path = self.path.join(rel);
        match system::open_dir_beneath(&self.fd, rel) {
            Ok(fd) => Ok(Root {
                path,
                fd: Arc::new(fd),
            }),
            Err(Errno::ENOENT) => Err(format!("directory {} does not exist", path.display())),
            Err(Errno::EXDEV) | Err(Errno::ELOOP) => Err(format!(
                "directory {} leads outside the configured root",
                path.display()
            )),
            Err(e) => Err(format!("directory {}: {}", path.display(), e.desc())),
        }
    }
}

/// A path word after mapping: relative to root, wildcard positions shifted along.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub rel: Vec<u8>,
    pub active_glob: Vec<usize>,
    /// Root's own absolute spelling when the client used it (`/srv/backup/u/x`): rsync is
    /// then given that spelling, so `-R` sends the names the client asked for.
    pub root_spelling: Option<Vec<u8>>,
}

impl Mapped {
    /// The word rsync gets for one (expanded) relative path `rel`.
    pub fn exec_word(&self, rel: &[u8]) -> Vec<u8> {
        match &self.root_spelling {
            Some(root) if rel == b"." || rel == b"./" => {
                let slash: &[u8] = if rel.ends_with(b"/") { b"/" } else { b"" };
                [root.as_slice(), slash].concat()
            }
            Some(root) => [root.as_slice(), b"/", rel].concat(),
            // A name that starts with `-` (from `/-x` or a wildcard) stays a name.
            None if rel.starts_with(b"-") => [&b"./"[..], rel].concat(),
            None => rel.to_vec(),
        }
    }
}

/// Map a client path onto root (as Debian's rrsync does): `~`, `~/x` → root; `/x` → root/x, unless
/// the absolute path already begins with root's own path; `~user` is refused.
pub fn map_client_path(word: &Word, root: &Path) -> Result<Mapped, String> {
    let text = word.text.as_slice();
    let mut root_spelling = None;
    let strip = if word.tilde {
        if text == b"~" {
            1
        } else if text.starts_with(b"~/") {
            2
        } else {
            return Err(format!(
                "{}: `~user` paths are not allowed",
                show_quoted(text)
            ));
        }
    } else if text.starts_with(b"/") {
        let root_bytes = root.as_os_str().as_bytes();
        match text.strip_prefix(root_bytes) {
            Some(rest)
                if root_bytes != b"/"
                    && !root_bytes.is_empty()
                    && (rest.is_empty() || rest.starts_with(b"/")) =>
            {
                root_spelling = Some(root_bytes.to_vec());
                root_bytes.len()
            }
            _ => 0,
        }
    } else {
        0
    };
    let mut rest = &text[strip..];
    let mut shift = strip;
    while let Some(r) = rest.strip_prefix(b"/") {
        rest = r;
        shift += 1;
    }
    let active_glob = word
        .active_glob
        .iter()
        .filter(|&&i| i >= shift)
        .map(|&i| i - shift)
        .collect();
    let rel = match rest {
        b"" if text.ends_with(b"/") => b"./".to_vec(),
        b"" => b".".to_vec(),
        _ => rest.to_vec(),
    };
    let active_glob = if rest.is_empty() {
        Vec::new()
    } else {
        active_glob
    };
    Ok(Mapped {
        rel,
        active_glob,
        root_spelling,
    })
}

/// Where a path lies beneath root, as the kernel resolves it now.
#[derive(Debug)]
pub struct Located {
    /// The deepest existing component, opened (`O_PATH`, pinned).
    pub existing: OwnedFd,
    /// Its root-relative spelling as checked (for messages and `--test`).
    pub existing_rel: PathBuf,
    /// What it is.
    pub kind: system::Kind,
    /// The plain names after it that do not exist yet.
    pub missing: Vec<OsString>,
}

impl Located {
    /// The root-relative spelling of the whole path, for `--test` and logs: its bytes,
    /// which every sink escapes (never a lossy conversion).
    pub fn shown(&self) -> Vec<u8> {
        let mut p = self.existing_rel.clone();
        p.extend(&self.missing);
        let s = p.into_os_string().into_vec();
        if s.is_empty() {
            b".".to_vec()
        } else {
            s
        }
    }
}

/// Resolve `rel`, taken relative to `base` (itself root-relative), beneath root.
///
/// The last `created` components of `base` do not exist yet and rsync will create them as
/// real directories (a new destination): a `..` right after one of them cancels it, as it
/// will for rsync once the directory exists (`--link-dest=../prev` into a new snapshot).
/// Any other `..` after a missing name is refused: the transfer itself could create that
/// name as a symlink first. The existing part is resolved by the kernel and pinned.
pub fn locate(root: &Root, base: &Path, created: usize, rel: &[u8]) -> Result<Located, String> {
    let shown = show_quoted(rel);
    let rel = Path::new(OsStr::from_bytes(rel));
    if rel.is_absolute() {
        return Err(format!("{shown} is absolute"));
    }
    let base_len = base.components().count();
    let creatable_from = base_len.saturating_sub(created);
    // Components tagged with whether rsync itself creates them as directories.
    let mut comps: Vec<(Component, bool)> = base
        .components()
        .enumerate()
        .map(|(i, c)| (c, i >= creatable_from))
        .chain(rel.components().map(|c| (c, false)))
        .filter(|(c, _)| !matches!(c, Component::CurDir))
        .collect();
    for _round in 0..64 {
        // The longest existing prefix.
        let mut n = comps.len();
        let existing = loop {
            let prefix: PathBuf = comps[..n].iter().map(|(c, _)| c).collect();
            match system::open_beneath(&root.fd, &prefix) {
                Ok(fd) => break (fd, prefix),
                Err(Errno::ENOENT) if n > 0 => n -= 1,
                Err(e) => return Err(resolve_error(&shown, e)),
            }
        };
        // The missing remainder: `created/..` pairs cancel; any other `..` is refused.
        let mut rest: Vec<(Component, bool)> = Vec::new();
        let mut cancelled = false;
        for &(c, creatable) in &comps[n..] {
            match c {
                Component::ParentDir => match rest.last() {
                    Some((Component::Normal(_), true)) => {
                        rest.pop();
                        cancelled = true;
                    }
                    _ => {
                        return Err(format!(
                            "{shown}: `..` after a name that does not exist yet (the transfer could create it as a symlink)"
                        ))
                    }
                },
                other => rest.push((other, creatable)),
            }
        }
        if cancelled {
            // `..` may now climb into the existing part: let the kernel resolve again.
            comps = comps[..n].iter().copied().chain(rest).collect();
            continue;
        }
        let kind = system::kind(&existing.0).map_err(|e| resolve_error(&shown, e))?;
        let mut missing = Vec::new();
        for (c, _) in &rest {
            let Component::Normal(name) = c else {
                return Err(format!("{shown}: not a plain name"));
            };
            missing.push(name.to_os_string());
        }
        if !missing.is_empty() && kind != system::Kind::Directory {
            return Err(format!("{shown}: a component is not a directory"));
        }
        return Ok(Located {
            existing: existing.0,
            existing_rel: existing.1,
            kind,
            missing,
        });
    }
    Err(format!("{shown}: too many `..`"))
}

/// `shown` is the path already quoted and escaped ([`show_quoted`]).
fn resolve_error(shown: &str, e: Errno) -> String {
    match e {
        Errno::EXDEV => format!("{shown} leads outside root"),
        Errno::ELOOP => format!("{shown} goes through a symlink that is not allowed"),
        Errno::ENOTDIR => format!("{shown}: a component is not a directory"),
        Errno::EACCES => format!("{shown}: permission denied"),
        e => format!("{shown}: {}", e.desc()),
    }
}

/// A descriptor rsync inherits and is named in its argv as `/proc/self/fd/N`.
#[derive(Debug, Clone)]
pub struct Pin {
    pub fd: Arc<OwnedFd>,
    /// What it stands for, root-relative, as bytes (for `--test` and logs, escaped there).
    pub shown: Vec<u8>,
    /// Work to do at exec time (never in `--test`).
    pub prepare: Prepare,
}

impl PartialEq for Pin {
    fn eq(&self, other: &Self) -> bool {
        self.fd.as_raw_fd() == other.fd.as_raw_fd() && self.shown == other.shown
    }
}
impl Eq for Pin {}

/// What must happen to a pin right before exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepare {
    /// Nothing: the descriptor already holds what rsync gets.
    Nothing,
    /// `fd` holds the existing parent; create `names` beneath it as directories with
    /// `mode`, then put the last one at `fd`'s number.
    CreateDirs { names: Vec<OsString>, mode: u32 },
    /// Put an empty unnamed directory (made beneath root) at `fd`'s number: a missing
    /// basis directory rsync may only read.
    EmptyDir,
}

impl Pin {
    pub fn new(fd: OwnedFd, shown: impl Into<Vec<u8>>, prepare: Prepare) -> Pin {
        Pin {
            fd: Arc::new(fd),
            shown: shown.into(),
            prepare,
        }
    }

    /// The path rsync is given for this pin: `/proc/self/fd/N`.
    pub fn fd_path(&self) -> String {
        format!("/proc/self/fd/{}", self.fd.as_raw_fd())
    }

    /// The path rsync is given for this pin, followed by `suffix` (`""`, `"/"`, `"/name"`).
    pub fn word(&self, suffix: &[u8]) -> Vec<u8> {
        [self.fd_path().as_bytes(), suffix].concat()
    }
}

/// Join names as a relative suffix: `["a", "b"]` → `"/a/b"`.
pub fn suffix(names: &[OsString]) -> Vec<u8> {
    names
        .iter()
        .flat_map(|n| [&b"/"[..], n.as_bytes()])
        .flatten()
        .copied()
        .collect()
}

/// Expand unquoted wildcards beneath root as a shell would (no match: the word stays
/// literal), within the request's work budget (see `command::glob`).
pub fn expand(
    root: &Root,
    mapped: &Mapped,
    budget: &mut crate::command::glob::Budget,
) -> Result<Vec<Vec<u8>>, String> {
    crate::command::glob::expand(&root.fd, &mapped.rel, &mapped.active_glob, budget)
        .map_err(|e| e.to_string())
}

/// One plain name (for a relative `--partial-dir`, which rsync applies in every
/// directory of the transfer and itself refuses to follow when it is not a directory).
pub fn plain_name(rel: &[u8]) -> Result<(), String> {
    if rel.is_empty() || rel == b"." || rel == b".." || rel.contains(&b'/') {
        return Err(format!(
            "{} must be one plain name, without `/` or `..` (or start with `/` for one directory beneath root)",
            show_quoted(rel)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str, glob: &[usize], tilde: bool) -> Word {
        Word {
            text: text.as_bytes().to_vec(),
            position: 1,
            active_glob: glob.to_vec(),
            tilde,
        }
    }

    #[test]
    fn mapping_follows_design_paths() {
        let root = Path::new("/srv/backup/amanda");
        let m = |w: Word| map_client_path(&w, root).map(|m| String::from_utf8(m.rel).unwrap());
        assert_eq!(m(word("dest/", &[], false)).unwrap(), "dest/");
        assert_eq!(m(word("/etc/passwd", &[], false)).unwrap(), "etc/passwd");
        assert_eq!(m(word("/srv/backup/amanda/x", &[], false)).unwrap(), "x");
        assert_eq!(
            m(word("/srv/backup/amandax", &[], false)).unwrap(),
            "srv/backup/amandax"
        );
        assert_eq!(m(word("/", &[], false)).unwrap(), "./");
        assert_eq!(m(word("~", &[], true)).unwrap(), ".");
        assert_eq!(m(word("~/x", &[], true)).unwrap(), "x");
        assert_eq!(m(word("~", &[], false)).unwrap(), "~");
        assert!(m(word("~root/.ssh", &[], true)).is_err());
        // Root's own spelling is kept for rsync (so -R sends the names asked for).
        let own = map_client_path(&word("/srv/backup/amanda/./snap/", &[], false), root).unwrap();
        assert_eq!(own.rel, b"./snap/");
        assert_eq!(own.exec_word(&own.rel), b"/srv/backup/amanda/./snap/");
        let own = map_client_path(&word("/srv/backup/amanda/", &[], false), root).unwrap();
        assert_eq!(own.exec_word(&own.rel), b"/srv/backup/amanda/");
        let dash = map_client_path(&word("/-x", &[], false), root).unwrap();
        assert_eq!(dash.exec_word(&dash.rel), b"./-x");
        let g = map_client_path(&word("/a*", &[2], false), root).unwrap();
        assert_eq!((g.rel.as_slice(), g.active_glob), (&b"a*"[..], vec![1]));
    }

    fn bytes_word(text: &[u8], tilde: bool) -> Word {
        Word {
            text: text.to_vec(),
            position: 1,
            active_glob: Vec::new(),
            tilde,
        }
    }

    #[test]
    fn latin1_paths_map_as_bytes() {
        let root = Path::new("/srv/backup/amanda");
        let m = |t: &[u8], tilde| map_client_path(&bytes_word(t, tilde), root);
        assert_eq!(m(b"/caf\xe9/", false).unwrap().rel, b"caf\xe9/");
        assert_eq!(m(b"~/d\xff", true).unwrap().rel, b"d\xff");
        let own = m(b"/srv/backup/amanda/\xe9", false).unwrap();
        assert_eq!(own.exec_word(&own.rel), b"/srv/backup/amanda/\xe9");
        let e = m(b"~r\xe9ot", true).unwrap_err();
        assert_eq!(e, "\"~r\\xe9ot\": `~user` paths are not allowed");
        // A root whose own name is not UTF-8 is matched by its bytes too.
        let latin = Path::new(OsStr::from_bytes(b"/srv/b\xe4ck"));
        let own = map_client_path(&bytes_word(b"/srv/b\xe4ck/x", false), latin).unwrap();
        assert_eq!(own.rel, b"x");
        assert_eq!(own.root_spelling.as_deref(), Some(&b"/srv/b\xe4ck"[..]));
    }

    #[test]
    fn suffixes_and_pins_keep_every_byte() {
        let names = [OsString::from_vec(b"a\xe9".to_vec()), OsString::from("b")];
        assert_eq!(suffix(&names), b"/a\xe9/b");
    }

    #[test]
    fn partial_dir_must_be_plain() {
        assert!(plain_name(b".rsync-partial").is_ok());
        assert!(plain_name(b".partial-\xe9").is_ok());
        assert!(plain_name(b"../x").is_err());
        assert!(plain_name(b"a/b").is_err());
        assert!(plain_name(b"..").is_err());
    }
}
