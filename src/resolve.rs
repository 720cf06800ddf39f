//! Client paths beneath root (design §3 "Paths"): map `/`, `~` and root's own absolute
//! spelling onto root, expand unquoted wildcards inside root as a shell would, and
//! check every result with the kernel's own resolution beneath an open root directory
//! (openat2 RESOLVE_BENEATH), so `..` and symlinks cannot lead out.
//!
//! Read-only file-system access only; the opened descriptors are dropped after checking
//! (the exec'd rsync is confined by Landlock, which closes the check-to-use window).
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;

use crate::command::Word;
use crate::sys;

/// Most names one wildcard word may expand to.
pub const MAX_EXPANSION: usize = 1000;

/// An opened root directory.
#[derive(Debug)]
pub struct Root {
    pub path: PathBuf,
    pub fd: OwnedFd,
}

impl Root {
    /// Open root; a missing root is a denial, never an implicit mkdir (design §3).
    pub fn open(path: &Path) -> Result<Root, String> {
        match sys::open_dir(path) {
            Ok(fd) => Ok(Root {
                path: path.to_path_buf(),
                fd,
            }),
            Err(Errno::ENOENT) => Err(format!("root {} does not exist", path.display())),
            Err(Errno::ENOTDIR) => Err(format!("root {} is not a directory", path.display())),
            Err(e) => Err(format!("root {}: {}", path.display(), e.desc())),
        }
    }
}

/// A path word after mapping: relative to root, wildcard positions shifted along.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub rel: String,
    pub active_glob: Vec<usize>,
    /// Root's own absolute spelling when the client used it (`/srv/backup/u/x`): rsync is
    /// then given that spelling, so `-R` sends the names the client asked for.
    pub root_spelling: Option<String>,
}

impl Mapped {
    /// The word rsync gets for one (expanded) relative path `rel`.
    pub fn exec_word(&self, rel: &str) -> String {
        match &self.root_spelling {
            Some(root) if rel == "." || rel == "./" => {
                format!("{root}{}", if rel.ends_with('/') { "/" } else { "" })
            }
            Some(root) => format!("{root}/{rel}"),
            // A name that starts with `-` (from `/-x` or a wildcard) stays a name.
            None if rel.starts_with('-') => format!("./{rel}"),
            None => rel.to_string(),
        }
    }
}

/// Map a client path onto root (design §3): `~`, `~/x` → root; `/x` → root/x, unless
/// the absolute path already begins with root's own path; `~user` is refused.
pub fn map_client_path(word: &Word, root: &Path) -> Result<Mapped, String> {
    let text = word.text.as_str();
    let mut root_spelling = None;
    let strip = if word.tilde {
        if text == "~" {
            1
        } else if text.starts_with("~/") {
            2
        } else {
            return Err(format!("{text:?}: `~user` paths are not allowed"));
        }
    } else if text.starts_with('/') {
        let root_str = root.to_str().unwrap_or("");
        match text.strip_prefix(root_str) {
            Some(rest) if root_str != "/" && (rest.is_empty() || rest.starts_with('/')) => {
                root_spelling = Some(root_str.to_string());
                root_str.len()
            }
            _ => 0,
        }
    } else {
        0
    };
    let mut rest = &text[strip..];
    let mut shift = strip;
    while let Some(r) = rest.strip_prefix('/') {
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
        "" if text.ends_with('/') => "./".to_string(),
        "" => ".".to_string(),
        _ => rest.to_string(),
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

/// Check that `rel` (relative to `base`, itself relative to root) stays beneath root.
/// The existing part is resolved by the kernel (RESOLVE_BENEATH); missing trailing
/// components may only be plain names, with `..` cancelling a missing name as rsync
/// will see it once it creates that directory (`--link-dest=../prev` into a new snapshot).
pub fn check_beneath(root: &Root, base: &Path, rel: &str) -> Result<(), String> {
    check_components(root, &base.join(rel), rel, 0)
}

fn check_components(root: &Root, full: &Path, shown: &str, depth: usize) -> Result<(), String> {
    let comps: Vec<Component> = full.components().collect();
    if comps
        .iter()
        .any(|c| matches!(c, Component::RootDir | Component::Prefix(_)))
    {
        return Err(format!("{shown:?} is absolute"));
    }
    let mut n = comps.len();
    loop {
        let prefix: PathBuf = comps[..n].iter().collect();
        match sys::open_beneath(&root.fd, &prefix) {
            Ok(_) => break,
            Err(Errno::ENOENT) if n > 0 => n -= 1,
            Err(Errno::EXDEV) => return Err(format!("{shown:?} leads outside root")),
            Err(Errno::ELOOP) => {
                return Err(format!(
                    "{shown:?} goes through a symlink that is not allowed"
                ))
            }
            Err(Errno::ENOTDIR) => {
                return Err(format!("{shown:?}: a component is not a directory"))
            }
            Err(Errno::EACCES) => return Err(format!("{shown:?}: permission denied")),
            Err(e) => return Err(format!("{shown:?}: {}", e.desc())),
        }
    }
    // The missing remainder, with `name/..` pairs cancelled.
    let mut rest: Vec<Component> = Vec::new();
    for c in &comps[n..] {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(rest.last(), Some(Component::Normal(_))) => {
                rest.pop();
            }
            other => rest.push(*other),
        }
    }
    let next: PathBuf = comps[..n].iter().chain(rest.iter()).collect();
    if next != full {
        // A cancelled `name/..` changes what exists (and `..` may climb above the existing
        // part): let the kernel resolve the shorter path again.
        if depth > 64 {
            return Err(format!("{shown:?}: too many `..`"));
        }
        return check_components(root, &next, shown, depth + 1);
    }
    if rest.iter().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("{shown:?}: `..` after a missing directory"));
    }
    Ok(())
}

/// True if the path (relative to root) exists and is a directory beneath root.
pub fn is_dir_beneath(root: &Root, rel: &Path) -> bool {
    sys::open_beneath(&root.fd, rel)
        .ok()
        .and_then(|fd| sys::kind(&fd).ok())
        == Some(sys::Kind::Directory)
}

/// Expand unquoted wildcards beneath root as a shell would. No match: the word stays
/// literal (POSIX). Hidden names match only a literal leading `.`.
pub fn expand(root: &Root, mapped: &Mapped) -> Result<Vec<String>, String> {
    if mapped.active_glob.is_empty() {
        return Ok(vec![mapped.rel.clone()]);
    }
    // Split into components, remembering which characters of each are active.
    let mut comps: Vec<(String, Vec<bool>)> = vec![(String::new(), Vec::new())];
    for (i, c) in mapped.rel.char_indices() {
        if c == '/' {
            comps.push((String::new(), Vec::new()));
            continue;
        }
        let last = comps.last_mut().expect("never empty");
        for _ in 0..c.len_utf8() {
            last.1.push(mapped.active_glob.contains(&i));
        }
        last.0.push(c);
    }
    let trailing_slash = mapped.rel.ends_with('/');
    let mut results: Vec<PathBuf> = vec![PathBuf::new()];
    for (name, active) in comps.iter().filter(|(n, _)| !n.is_empty()) {
        if !active.iter().any(|a| *a) {
            results.iter_mut().for_each(|r| r.push(name));
            continue;
        }
        let mut next = Vec::new();
        for prefix in &results {
            let Ok(dir) = sys::open_beneath(
                &root.fd,
                if prefix.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    prefix
                },
            ) else {
                continue;
            };
            let Ok(mut names) = sys::list_dir(&dir) else {
                continue;
            };
            names.sort();
            for entry in names {
                if glob_match(name, active, &entry) {
                    next.push(prefix.join(&entry));
                    if next.len() > MAX_EXPANSION {
                        return Err(format!(
                            "{:?} matches more than {MAX_EXPANSION} names",
                            mapped.rel
                        ));
                    }
                }
            }
        }
        results = next;
        if results.is_empty() {
            return Ok(vec![mapped.rel.clone()]);
        }
    }
    results
        .into_iter()
        .map(|p| {
            let mut s = p
                .into_os_string()
                .into_string()
                .map_err(|_| "a matching name is not UTF-8".to_string())?;
            if trailing_slash {
                s.push('/');
            }
            Ok(s)
        })
        .collect()
}

/// Shell pattern matching of one name: `*`, `?`, `[...]` where active; everything else
/// literal. A leading `.` in the name must be matched literally.
fn glob_match(pattern: &str, active: &[bool], name: &OsString) -> bool {
    let name = name.as_bytes();
    let pat = pattern.as_bytes();
    let literal_dot = pat.first() == Some(&b'.') && active.first() == Some(&false);
    if name.first() == Some(&b'.') && !literal_dot {
        return false;
    }
    match_from(pat, active, name)
}

fn match_from(pat: &[u8], active: &[bool], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() && active[p] && pat[p] == b'*' {
            star = Some((p, n));
            p += 1;
            continue;
        }
        // (pattern bytes, name bytes) consumed by one step.
        let step = if p < pat.len() && active[p] && pat[p] == b'?' {
            Some((1, utf8_len(name[n])))
        } else if p < pat.len() && active[p] && pat[p] == b'[' {
            match_class(&pat[p..], name[n]).map(|len| (len, 1))
        } else if p < pat.len() && pat[p] == name[n] {
            Some((1, 1))
        } else {
            None
        };
        match step {
            Some((plen, nlen)) => {
                p += plen;
                n += nlen;
            }
            None => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    while p < pat.len() && active[p] && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// Length of the UTF-8 sequence that starts with `lead` (1 for a stray byte), so `?`
/// matches one character as a shell in a UTF-8 locale would.
fn utf8_len(lead: u8) -> usize {
    match lead {
        0xf0..=0xf7 => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

/// Match `[...]` at the start of `pat` against `c`; returns the class length on a match.
/// An unterminated `[` matches itself literally.
fn match_class(pat: &[u8], c: u8) -> Option<usize> {
    let mut i = 1;
    let negate = matches!(pat.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pat.len() && (pat[i] != b']' || first) {
        first = false;
        if i + 2 < pat.len() && pat[i + 1] == b'-' && pat[i + 2] != b']' {
            if pat[i] <= c && c <= pat[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if pat[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    if i >= pat.len() {
        return (c == b'[').then_some(1);
    }
    (matched != negate).then_some(i + 1)
}

/// Reject `..` anywhere (for `--partial-dir`, which rsync applies in every directory).
pub fn plain_relative(rel: &str) -> Result<(), String> {
    if Path::new(rel)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(format!("{rel:?} must not contain `..`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str, glob: &[usize], tilde: bool) -> Word {
        Word {
            text: text.into(),
            position: 1,
            active_glob: glob.to_vec(),
            tilde,
        }
    }

    #[test]
    fn mapping_follows_design_paths() {
        let root = Path::new("/srv/backup/amanda");
        let m = |w: Word| map_client_path(&w, root).map(|m| m.rel);
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
        assert_eq!(own.rel, "./snap/");
        assert_eq!(own.exec_word(&own.rel), "/srv/backup/amanda/./snap/");
        let own = map_client_path(&word("/srv/backup/amanda/", &[], false), root).unwrap();
        assert_eq!(own.exec_word(&own.rel), "/srv/backup/amanda/");
        let dash = map_client_path(&word("/-x", &[], false), root).unwrap();
        assert_eq!(dash.exec_word(&dash.rel), "./-x");
        let g = map_client_path(&word("/a*", &[2], false), root).unwrap();
        assert_eq!((g.rel.as_str(), g.active_glob), ("a*", vec![1]));
    }

    #[test]
    fn glob_matching_is_shell_like() {
        let all = |p: &str| vec![true; p.len()];
        let m = |p: &str, n: &str| glob_match(p, &all(p), &OsString::from(n));
        assert!(m("*.txt", "a.txt"));
        assert!(!m("*.txt", ".hidden.txt"));
        assert!(m("a?c", "abc"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[!a-c]x", "bx"));
        assert!(m("*", "x"));
        assert!(!m("a*b", "ac"));
        assert!(
            m("caf?", "caf\u{e9}"),
            "`?` matches one character, not one byte"
        );
        assert!(!m("caf??", "caf\u{e9}"));
        // Escaped wildcards are literal.
        assert!(glob_match("a*", &[false, false], &OsString::from("a*")));
        assert!(!glob_match("a*", &[false, false], &OsString::from("ab")));
    }

    #[test]
    fn partial_dir_must_be_plain() {
        assert!(plain_relative(".rsync-partial").is_ok());
        assert!(plain_relative("../x").is_err());
    }
}
