//! What the configured rsync binary supports, learned from the binary file itself.
//!
//! rshell forces two receiver/server options that only rsync 3.5.0 and newer know:
//! `--confine-root=DIR` (operator paths and per-directory filter merge files named by the
//! client over the protocol must resolve inside DIR) and `--drop-D` (the receiver creates
//! no device or special files). rsync 3.2.7 (Debian 12, Ubuntu) and 3.2.3 (RHEL 9) reject
//! both as unknown options, so rshell must know before it builds the argv.
//!
//! How: the binary is read (bounded, regular file only) and its NUL-terminated strings are
//! scanned. rsync's option table is a popt table whose `longName` members are C string
//! literals, so an rsync that accepts `--confine-root` carries the bytes `confine-root\0`
//! (the linker may merge it into the tail of a longer literal such as `--confine-root\0`,
//! hence the suffix match), and one that accepts `--drop-D` carries `drop-D\0` (or its
//! merged form `no-drop-D\0`). That the file is rsync at all is recognised by the format
//! string of `rsync --version` (`%s  version %s  protocol version %d%s`, unchanged since
//! rsync 2.6).
//!
//! Why not run `rsync --help`: that is one more exec per connection (rshell runs as the
//! account, once per connection) and its answer could only be cached in a file the account
//! cannot write, i.e. one root maintains. Reading ~600 KB from the page cache and three
//! memmem(3) searches cost a fraction of a millisecond, need no cache and no exec.
//!
//! Failing safe both ways:
//! - A file rshell cannot identify as rsync (a wrapper script, a compressed binary, an
//!   unreadable file) is *assumed current*: both options are forced. If that rsync is in
//!   fact older, it stops at option parsing ("unknown option") before it touches a file.
//! - Only a positively identified rsync that lacks the strings gets the reduced argv, and
//!   `decide` then refuses what neither the option nor Landlock can guard.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Larger files are not scanned (assumed current). rsync is ~0.6 MB dynamically and
/// ~2 MB statically linked.
pub const MAX_BINARY: u64 = 32 << 20;

/// The `--version` format string (rsync's print_rsync_version()).
const IDENTITY: &[u8] = b"%s  version %s  protocol version ";
const CONFINE_ROOT: &[u8] = b"confine-root";
const DROP_D: &[u8] = b"drop-D";

/// How the answer was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// The binary was read and recognised as rsync.
    Scanned,
    /// Not recognised (the reason says why): the options are forced as for a current rsync.
    Assumed(String),
}

/// The options of the configured rsync that rshell relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    pub confine_root: bool,
    pub drop_d: bool,
    pub basis: Basis,
}

impl Features {
    /// What a current rsync (3.5.0 or newer) has.
    pub fn current(why: impl Into<String>) -> Features {
        Features {
            confine_root: true,
            drop_d: true,
            basis: Basis::Assumed(why.into()),
        }
    }

    /// True for an rsync that was read and found to be older than 3.5.0.
    pub fn older(&self) -> bool {
        self.basis == Basis::Scanned && !(self.confine_root && self.drop_d)
    }
}

/// Scan the bytes of a binary. `None` if it is not recognisably rsync.
pub fn scan(bytes: &[u8]) -> Option<(bool, bool)> {
    // A C string literal ends at its NUL: `confine-root\0` is the option name (or the tail
    // of a longer literal the linker merged it into), never help text such as
    // `--confine-root=DIR  refuse ...`.
    let ends = |name: &[u8]| {
        let mut literal = name.to_vec();
        literal.push(0);
        crate::system::contains_bytes(bytes, &literal)
    };
    crate::system::contains_bytes(bytes, IDENTITY).then(|| (ends(CONFINE_ROOT), ends(DROP_D)))
}

/// The identity of a file's content as far as a cache needs it.
type Key = (u64, u64, u64, i64, i64, i64, i64);

fn key(m: &std::fs::Metadata) -> Key {
    (
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

/// Read the binary at `path` (as execve(2) would find it: symlinks followed) if it is a
/// regular file of at most [`MAX_BINARY`] bytes.
fn read(path: &Path) -> Result<(Key, Vec<u8>), String> {
    // stat first: opening a FIFO or a device named here could block or have side effects.
    let before = std::fs::metadata(path).map_err(|e| format!("cannot stat it: {e}"))?;
    if !before.is_file() {
        return Err("not a regular file".into());
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat it: {e}"))?;
    if !meta.is_file() || meta.dev() != before.dev() || meta.ino() != before.ino() {
        return Err("changed while being opened".into());
    }
    if meta.size() > MAX_BINARY {
        return Err(format!("larger than {MAX_BINARY} bytes"));
    }
    let mut bytes = Vec::with_capacity(meta.size() as usize);
    (&mut file)
        .take(MAX_BINARY + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_BINARY {
        return Err(format!("larger than {MAX_BINARY} bytes"));
    }
    Ok((key(&meta), bytes))
}

/// Inspect the binary without the per-process cache.
pub fn inspect(path: &Path) -> (Option<Key>, Features) {
    match read(path) {
        Err(why) => (None, Features::current(why)),
        Ok((key, bytes)) => match scan(&bytes) {
            Some((confine_root, drop_d)) => (
                Some(key),
                Features {
                    confine_root,
                    drop_d,
                    basis: Basis::Scanned,
                },
            ),
            None => (
                Some(key),
                Features::current("not recognisably an rsync binary"),
            ),
        },
    }
}

static CACHE: Mutex<Option<HashMap<PathBuf, (Key, Features)>>> = Mutex::new(None);

/// The features of the rsync at `path`. Remembered per process, keyed by the file's
/// device, inode, size, mtime and ctime, so a long-running caller (`rshell --check`, the
/// tests) reads each binary once; rshell serving a connection reads it once anyway.
pub fn features(path: &Path) -> Features {
    let now = std::fs::metadata(path).ok().map(|m| key(&m));
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let map = cache.get_or_insert_with(HashMap::new);
    if let (Some(now), Some((k, f))) = (now, map.get(path)) {
        if *k == now {
            return f.clone();
        }
    }
    let (key, f) = inspect(path);
    if let Some(key) = key {
        map.insert(path.to_path_buf(), (key, f.clone()));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(strings: &[&str]) -> Vec<u8> {
        let mut out = vec![0x7f, b'E', b'L', b'F', 0];
        for s in strings {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        out
    }

    #[test]
    fn recognises_rsync_and_its_options_by_their_c_strings() {
        let v = "%s  version %s  protocol version %d%s";
        assert_eq!(scan(&bin(&[v, "delete-during"])), Some((false, false)));
        assert_eq!(
            scan(&bin(&[v, "confine-root", "no-drop-D"])),
            Some((true, true))
        );
        // Merged into the tail of a longer literal by the linker.
        assert_eq!(
            scan(&bin(&[v, "--confine-root", "drop-D"])),
            Some((true, true))
        );
        // Help text mentions the option but is no option name.
        assert_eq!(
            scan(&bin(&[
                v,
                "--confine-root=DIR  refuse operator paths",
                "--drop-D  x"
            ])),
            Some((false, false))
        );
        // A wrapper script that only names the options is not rsync.
        assert_eq!(
            scan(b"#!/bin/sh\nexec rsync --confine-root=/ --drop-D \"$@\"\n"),
            None
        );
        assert_eq!(scan(&[]), None);
    }

    #[test]
    fn unreadable_or_unrecognised_files_are_assumed_current() {
        for p in ["/nonexistent/rsync", "/dev/null", "/"] {
            let f = features(Path::new(p));
            assert!(f.confine_root && f.drop_d && !f.older(), "{p}: {f:?}");
            assert!(matches!(f.basis, Basis::Assumed(_)), "{p}: {f:?}");
        }
    }
}
