//! Which files make the policy and how they are read: the main file (`/etc/rshell.toml`
//! or `--config F`), then the drop-ins `<stem>.d/*.toml` in byte order of their names;
//! every file and the drop-in directory trusted only when root alone can change them
//! (checked at every load), except in the dry runs `--test`/`--policy` of an explicit
//! `--config`, which read anyway and say so.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::policy::trust::TrustedDir;
use crate::policy::{check_trusted, read_trusted_file, Config, ConfigError};

/// The drop-in directory of a main config file: its sibling `<stem>.d`
/// (`/etc/rshell.d` for `/etc/rshell.toml`, `/srv/cfg/test.d` for `/srv/cfg/test.toml`).
pub fn dropin_dir(path: &Path) -> PathBuf {
    let mut name = path.file_stem().unwrap_or(path.as_os_str()).to_os_string();
    name.push(".d");
    path.with_file_name(name)
}

/// Whether a directory entry is a drop-in: `*.toml`, not a dotfile. Editor and package
/// manager leftovers (`x.toml~`, `x.toml.dpkg-dist`, `x.toml.rpmnew`, `.x.toml.swp`,
/// `#x.toml#`, `.#x.toml`) do not end in `.toml` or start with a dot, so they are never
/// read — the rule systemd applies to `*.conf` drop-ins.
fn is_dropin_name(name: &[u8]) -> bool {
    name.len() > ".toml".len() && name.ends_with(b".toml") && !name.starts_with(b".")
}

/// Whether the dry run (`--test`/`--policy` with an explicit `--config`) may read the
/// files of this main config although a real run would refuse them (see
/// [`dry_run_reads_untrusted`]).
static DRY_RUN_CONFIG: OnceLock<PathBuf> = OnceLock::new();

/// For `rshell --test` and `rshell --policy` only, which execute nothing: let
/// [`Config::load`] of exactly `path` (and its drop-ins) read files that fail the
/// ownership and mode checks, so that an ordinary user can try a config from a clone of
/// the repository. Only [`ConfigError::Insecure`] is waived; a missing, unreadable or
/// invalid file is still an error. A real run never calls this: the process that serves
/// a client never enters the admin modes, so for it every load stays strict.
pub fn dry_run_reads_untrusted(path: &Path) {
    let _ = DRY_RUN_CONFIG.set(path.to_path_buf());
}

fn dry_run(path: &Path) -> bool {
    DRY_RUN_CONFIG.get().is_some_and(|p| p == path)
}

/// Read one config file with the trusted-file checks; a dry run reads an insecure file
/// anyway and relies on the caller to say that a real run refuses it.
fn read_config_file(path: &Path, dry: bool) -> Result<String, ConfigError> {
    match read_trusted_file(path) {
        Err(ConfigError::Insecure(..)) if dry => std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Unreadable(path.to_path_buf(), e.to_string())),
        other => other,
    }
}

/// The drop-in directory must be a real directory owned by root and writable by nobody
/// else: whoever can add a file to it writes policy (as sudo requires of its
/// `@includedir`).
fn check_dropin_dir(dir: &Path, meta: &std::fs::Metadata) -> Result<(), ConfigError> {
    let insecure = |why: String| Err(ConfigError::Insecure(dir.to_path_buf(), why));
    if !meta.file_type().is_dir() {
        return insecure(
            "the drop-in directory must be a directory (not a symlink or anything else)".into(),
        );
    }
    if meta.uid() != 0 {
        return insecure(format!(
            "the drop-in directory must be owned by root (owner uid is {})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return insecure(format!(
            "the drop-in directory must not be group- or world-writable (mode {:04o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// The status of the drop-in directory `dir`, `None` when there is none.
fn dropin_dir_status(dir: &Path) -> Result<Option<std::fs::Metadata>, ConfigError> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::Unreadable(dir.to_path_buf(), e.to_string())),
    }
}

/// The drop-in names among `names`, in merge order (byte order, like `LC_ALL=C ls`).
fn merge_order(names: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut names: Vec<OsString> = names
        .into_iter()
        .filter(|n| is_dropin_name(n.as_bytes()))
        .collect();
    names.sort();
    names
}

/// The drop-ins of the main config `path` by name, in merge order, for a dry run: a
/// missing directory means none; an insecure one is pushed to `waived` and read anyway
/// (unless it is not a directory at all).
fn dropin_files(path: &Path, waived: &mut Vec<ConfigError>) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = dropin_dir(path);
    let Some(meta) = dropin_dir_status(&dir)? else {
        return Ok(Vec::new());
    };
    if let Err(e) = check_dropin_dir(&dir, &meta) {
        if !meta.file_type().is_dir() {
            return Err(e);
        }
        waived.push(e);
    }
    let unreadable = |e: std::io::Error| ConfigError::Unreadable(dir.clone(), e.to_string());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(unreadable)? {
        names.push(entry.map_err(unreadable)?.file_name());
    }
    Ok(merge_order(names)
        .into_iter()
        .map(|n| dir.join(n))
        .collect())
}

/// The drop-ins of the main config `path` with their text, in merge order, for a real
/// run: the directory is checked by name (for the message), then opened as a
/// [`TrustedDir`] and each drop-in read beneath its descriptor.
fn read_dropins(path: &Path) -> Result<Vec<(PathBuf, String)>, ConfigError> {
    let dir = dropin_dir(path);
    let Some(meta) = dropin_dir_status(&dir)? else {
        return Ok(Vec::new());
    };
    check_dropin_dir(&dir, &meta)?;
    // Something that disappears now was there a moment ago: never "missing", which
    // would let a standalone key run on the built-in defaults.
    let vanished = |e| match e {
        ConfigError::Missing(p) => {
            ConfigError::Unreadable(p, "it vanished while the policy was being read".into())
        }
        e => e,
    };
    let trusted = TrustedDir::open(&dir).map_err(vanished)?;
    merge_order(trusted.names()?)
        .iter()
        .map(|name| trusted.read(name).map_err(vanished))
        .collect()
}

/// Why a real run would refuse the files of the main config `path` (ownership and mode of
/// the file, its drop-in directory and each drop-in): what a dry run states first.
pub fn trust_problems(path: &Path) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    if let Err(e @ ConfigError::Insecure(..)) = check_trusted(path) {
        problems.push(e);
    }
    if let Ok(files) = dropin_files(path, &mut problems) {
        for f in files {
            if let Err(e @ ConfigError::Insecure(..)) = check_trusted(&f) {
                problems.push(e);
            }
        }
    }
    problems
}

impl Config {
    /// Read and validate the main file and its drop-ins (see [`dropin_dir`]), including
    /// the ownership and mode of each file and of the drop-in directory. All or nothing:
    /// any error in any file is an error of the whole configuration.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::parse_files(&read_files(path)?)
    }

    /// [`Config::load`] for one connection: the same files, checks and errors, keeping
    /// only the sections `user` in `groups` needs (see [`Config::parse_files_for`]).
    pub fn load_for(path: &Path, user: &str, groups: &[String]) -> Result<Config, ConfigError> {
        Config::parse_files_for(&read_files(path)?, user, groups)
    }
}

/// The main file `path` and its drop-ins, each read with the trust checks (waived only in
/// a dry run), in merge order.
fn read_files(path: &Path) -> Result<Vec<(PathBuf, String)>, ConfigError> {
    let dry = dry_run(path);
    let mut files = vec![(path.to_path_buf(), read_config_file(path, dry)?)];
    if !dry {
        files.extend(read_dropins(path)?);
        return Ok(files);
    }
    for file in dropin_files(path, &mut Vec::new())? {
        let text = read_config_file(&file, dry)?;
        files.push((file, text));
    }
    Ok(files)
}
