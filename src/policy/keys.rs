//! The policy keys, each defined once: name, type, built-in default, meaning, how a
//! config value is checked and how `--policy` shows it. [`Layer`], [`Settings`], their
//! defaults, [`KEYS`], the key-by-key layering and the `--policy` rows are all generated
//! from the one table below; both TOML readers set keys through [`Layer::set`].
//!
//! Adding a key is one entry in the table (and its documentation in rshell.toml(5) and
//! conf/rshell.toml, which tests/docs.rs checks against [`KEYS`]).
#![forbid(unsafe_code)]

use std::fmt;

use crate::policy::net::Cidr;
use crate::policy::read::{Ctx, Field, Item, Shown, Val};
use crate::policy::ConfigError;

/// Generates the per-key code from the table: one line of the table per key.
///
/// `key: Type = default, read checker, show shower;` with at least one doc line. The key's
/// name in the file is the field's name; `checker(&Item, &Field) -> Result<Type, _>` turns
/// a config value into the setting (or the `file:line:col` error) and
/// `shower(&Type) -> String` writes it for `--policy` and `--test`.
macro_rules! policy_keys {
    ($(
        $(#[doc = $doc:literal])+
        $key:ident: $ty:ty = $default:expr, read $read:path, show $show:path;
    )+) => {
        /// Every key a section may hold, in table order (the order `--policy` shows).
        pub const KEYS: &[&str] = &[$(stringify!($key)),+];

        /// One layer of settings: a config section or the forced key's flags. `None` = not set.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct Layer {
            $($(#[doc = $doc])+ pub $key: Option<$ty>,)+
            /// Where this section was defined; `None` for a forced key's flags.
            pub origin: Option<Origin>,
        }

        /// The effective settings for one request.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Settings {
            $($(#[doc = $doc])+ pub $key: $ty,)+
        }

        impl Default for Settings {
            /// The built-in defaults (rshell.toml(5) lists them).
            fn default() -> Self {
                Settings { $($key: $default,)+ }
            }
        }

        impl Settings {
            /// `(key, value)` for every key in [`KEYS`] order, as `--policy` shows them.
            pub fn shown(&self) -> [(&'static str, String); KEYS.len()] {
                [$((stringify!($key), $show(&self.$key)),)+]
            }
        }

        impl Layer {
            /// Set `key` from a config value, checked by the key's reader. A key this
            /// layer already holds is [`SetError::Duplicate`] (the readers only hand on a
            /// key once per section, so only the fast reader relies on it).
            pub(crate) fn set(
                &mut self,
                key: &str,
                value: &Item,
                ctx: &Ctx,
                section: Shown,
            ) -> Result<(), SetError> {
                match key {
                    $(stringify!($key) => {
                        if self.$key.is_some() {
                            return Err(SetError::Duplicate);
                        }
                        let field = Field { ctx, section, key: stringify!($key) };
                        self.$key = Some($read(value, &field).map_err(SetError::Invalid)?);
                    })+
                    _ => return Err(SetError::Unknown),
                }
                Ok(())
            }

            /// Copy every key this layer sets onto `settings`; `applied` hears each key.
            pub fn apply_to(&self, settings: &mut Settings, mut applied: impl FnMut(&'static str)) {
                $(if let Some(v) = &self.$key {
                    settings.$key = v.clone();
                    applied(stringify!($key));
                })+
            }

            /// The first key (in [`KEYS`] order) that both layers set, if any.
            pub fn common_key(&self, other: &Layer) -> Option<&'static str> {
                $(if self.$key.is_some() && other.$key.is_some() {
                    return Some(stringify!($key));
                })+
                None
            }
        }
    };
}

policy_keys! {
    /// The only program ever exec'd (an absolute path).
    rsync: String = "/usr/bin/rsync".into(), read absolute_path, show text;
    /// The root template (`~`, `%u` not yet expanded): the directory the user is confined to.
    root: String = "~/backup".into(), read root_template, show text;
    /// What the user may do under root.
    access: Access = Access::ReadWrite, read choice, show shown;
    /// false: no existing file or directory is ever removed.
    delete: bool = true, read boolean, show shown;
    /// false: no existing file is ever replaced or changed.
    overwrite: bool = true, read boolean, show shown;
    /// true: force `--munge-links`.
    munge_links: bool = false, read boolean, show shown;
    /// true: force `--fake-super` (ownership kept in xattrs as non-root).
    fake_super: bool = false, read boolean, show shown;
    /// Landlock: apply when the kernel can, require it, or never.
    confine: ConfineMode = ConfineMode::Auto, read choice, show shown;
    /// Append `--confine-root=<root>` where the installed rsync has it.
    confine_root: bool = true, read boolean, show shown;
    /// Writers hold an exclusive lock on root (rrsync's lock; `-no-lock`).
    lock: bool = true, read boolean, show shown;
    /// Wait for rsync and log exit status, duration and bytes.
    log_outcome: bool = true, read boolean, show shown;
    /// The umask rsync runs with (an octal string in the file).
    umask: u32 = 0o077, read octal_umask, show octal;
    /// Client networks allowed; empty = any.
    from: Vec<Cidr> = Vec::new(), read networks, show network_list;
    /// Allow `rsync --server --daemon .` ...
    daemon: bool = false, read boolean, show shown;
    /// ... with this administrator-owned rsyncd.conf (empty: none).
    daemon_config: String = String::new(), read absolute_path_or_empty, show text;
    /// Allow write access to a root that is or holds the home directory.
    dangerous_writable_home: bool = false, read boolean, show shown;
    /// Seconds without a byte moved before rshell ends the session (0: never).
    timeout: u64 = DEFAULT_TIMEOUT, read seconds, show shown;
    /// Refuse every request when no log sink (syslog, journal) takes the record.
    require_log: bool = false, read boolean, show shown;
}

/// The default idle timeout: long enough for a slow disk on the client, short enough that
/// a stalled client does not keep the root lock all night.
pub const DEFAULT_TIMEOUT: u64 = 600;

/// The longest idle timeout a config may set: a week.
const MAX_TIMEOUT: u64 = 7 * 24 * 3600;

/// Where a config section was defined: the file (an index into
/// [`Config::files`](crate::policy::Config::files)) and the byte offset of its name in
/// that file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub file: usize,
    pub offset: usize,
}

/// Why [`Layer::set`] did not set a key.
#[derive(Debug)]
pub(crate) enum SetError {
    /// Not a key of the table.
    Unknown,
    /// Already set in this layer.
    Duplicate,
    /// A bad value: the error the administrator reads.
    Invalid(ConfigError),
}

// ---- the values with a fixed set of spellings ----------------------------------------

/// A setting spelt as one of a few words in the file (`access`, `confine`).
pub(crate) trait Choice: Copy + PartialEq + 'static {
    /// Every spelling and its value, in the order the error message lists them.
    const SPELLINGS: &'static [(&'static str, Self)];

    /// How the file spells this value.
    fn spelling(self) -> &'static str {
        Self::SPELLINGS
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("?", |(s, _)| s)
    }
}

/// What the user may do under root (`access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    ReadWrite,
    ReadOnly,
    WriteOnly,
}

impl Choice for Access {
    const SPELLINGS: &'static [(&'static str, Self)] = &[
        ("read-write", Access::ReadWrite),
        ("read-only", Access::ReadOnly),
        ("write-only", Access::WriteOnly),
    ];
}

/// Landlock mode (`confine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfineMode {
    Auto,
    Require,
    Off,
}

impl Choice for ConfineMode {
    const SPELLINGS: &'static [(&'static str, Self)] = &[
        ("auto", ConfineMode::Auto),
        ("require", ConfineMode::Require),
        ("off", ConfineMode::Off),
    ];
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spelling())
    }
}

impl fmt::Display for ConfineMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spelling())
    }
}

// ---- readers: a config value to a setting, or the error -------------------------------

/// Any string.
fn string<'v>(v: &'v Item, f: &Field) -> Result<&'v str, ConfigError> {
    match &v.val {
        Val::Str(s) => Ok(s),
        other => Err(f.err(
            v.at,
            format!(
                "{}: `{}` must be a string, got {}",
                f.section,
                f.key,
                other.kind()
            ),
        )),
    }
}

fn boolean(v: &Item, f: &Field) -> Result<bool, ConfigError> {
    match v.val {
        Val::Bool(b) => Ok(b),
        ref other => Err(f.err(
            v.at,
            format!(
                "{}: `{}` must be true or false, got {}",
                f.section,
                f.key,
                other.kind()
            ),
        )),
    }
}

/// `rsync`: an absolute path without `..`.
fn absolute_path(v: &Item, f: &Field) -> Result<String, ConfigError> {
    let s = string(v, f)?;
    if !s.starts_with('/') || path_flaw(s, false) {
        return Err(f.err(
            v.at,
            format!(
                "{}: `{}` must be an absolute path, got {s:?}",
                f.section, f.key
            ),
        ));
    }
    Ok(s.to_string())
}

/// Whether a path has a `..` component, a NUL or (`star`) a `*`: one pass over its bytes
/// (this runs for every section's `root`).
fn path_flaw(s: &str, star: bool) -> bool {
    // The dots of the current component so far; `None` once it has anything else.
    let mut dots = Some(0u8);
    for &b in s.as_bytes() {
        match b {
            0 => return true,
            b'*' if star => return true,
            b'/' if dots == Some(2) => return true,
            b'/' => dots = Some(0),
            b'.' => dots = dots.map(|d| d.saturating_add(1)),
            _ => dots = None,
        }
    }
    dots == Some(2)
}

/// `daemon_config`: empty (none) or an absolute path without `..`.
fn absolute_path_or_empty(v: &Item, f: &Field) -> Result<String, ConfigError> {
    match string(v, f)? {
        "" => Ok(String::new()),
        _ => absolute_path(v, f),
    }
}

/// `root`: absolute or beneath the home (`~`, `~/...`), no `..`, no wildcard.
fn root_template(v: &Item, f: &Field) -> Result<String, ConfigError> {
    let s = string(v, f)?;
    let ok_start = s.starts_with('/') || s == "~" || s.starts_with("~/");
    let bad = path_flaw(s, true);
    if !ok_start || bad {
        return Err(f.err(
            v.at,
            format!(
                "{}: `{}` must be absolute or start with `~/` (no `..`), got {s:?}",
                f.section, f.key
            ),
        ));
    }
    Ok(s.to_string())
}

/// `access`, `confine`: one of the value's spellings.
fn choice<T: Choice>(v: &Item, f: &Field) -> Result<T, ConfigError> {
    let s = string(v, f)?;
    if let Some((_, value)) = T::SPELLINGS.iter().find(|(name, _)| *name == s) {
        return Ok(*value);
    }
    let expected: Vec<String> = T::SPELLINGS
        .iter()
        .map(|(name, _)| format!("`{name}`"))
        .collect();
    Err(f.err(
        v.at,
        format!(
            "{}: unknown variant `{s}` for `{}`, expected one of {}",
            f.section,
            f.key,
            expected.join(", ")
        ),
    ))
}

/// `umask`: an octal string of at most 0777.
fn octal_umask(v: &Item, f: &Field) -> Result<u32, ConfigError> {
    let s = string(v, f)?;
    let octal = !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(s, 8) {
        Ok(n) if octal && n <= 0o777 => Ok(n),
        _ => Err(f.err(
            v.at,
            format!(
                "{}: `{}` must be an octal string like \"0077\", got {s:?}",
                f.section, f.key
            ),
        )),
    }
}

/// `from`: an array of networks (`10.0.0.0/8`, `2001:db8::/32`, a single address).
fn networks(v: &Item, f: &Field) -> Result<Vec<Cidr>, ConfigError> {
    let Val::Array(list) = &v.val else {
        return Err(f.err(
            v.at,
            format!(
                "{}: `{}` must be an array of networks, got {}",
                f.section,
                f.key,
                v.val.kind()
            ),
        ));
    };
    list.iter()
        .map(|item| {
            string(item, f)?
                .parse::<Cidr>()
                .map_err(|e| f.err(item.at, format!("{}: `{}`: {e}", f.section, f.key)))
        })
        .collect()
}

/// `timeout`: whole seconds, 0 (never) to a week.
fn seconds(v: &Item, f: &Field) -> Result<u64, ConfigError> {
    let n = match v.val {
        Val::Int(n) => n,
        ref other => {
            return Err(f.err(
                v.at,
                format!(
                    "{}: `{}` must be an integer, got {}",
                    f.section,
                    f.key,
                    other.kind()
                ),
            ))
        }
    };
    match n.map(u64::try_from) {
        Some(Ok(n)) if n <= MAX_TIMEOUT => Ok(n),
        _ => {
            let got = n.map_or("a number out of range".into(), |n| n.to_string());
            Err(f.err(
                v.at,
                format!(
                    "{}: `{}` must be a number of seconds from 0 (never) to {MAX_TIMEOUT}, got {got}",
                    f.section, f.key
                ),
            ))
        }
    }
}

// ---- showers: a setting as `--policy` prints it ---------------------------------------

fn text(s: &str) -> String {
    s.to_string()
}

fn shown<T: fmt::Display>(v: &T) -> String {
    v.to_string()
}

fn octal(mask: &u32) -> String {
    format!("{mask:04o}")
}

fn network_list(nets: &[Cidr]) -> String {
    let nets: Vec<String> = nets.iter().map(Cidr::to_string).collect();
    format!("[{}]", nets.join(", "))
}

/// The closest known key to a misspelt one (at most two edits away), for the message.
pub(crate) fn suggestion(key: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let next = (prev + usize::from(ca != *cb))
                    .min(row[j] + 1)
                    .min(row[j + 1] + 1);
                prev = row[j + 1];
                row[j + 1] = next;
            }
        }
        row[b.len()]
    }
    KEYS.iter()
        .map(|k| (distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_every_key_a_default_a_row_and_a_layer_field() {
        let rows = Settings::default().shown();
        let names: Vec<&str> = rows.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, KEYS);
        assert_eq!(rows[0], ("rsync", "/usr/bin/rsync".to_string()));
        assert_eq!(rows[11], ("umask", "0077".to_string()));
        assert_eq!(rows[12], ("from", "[]".to_string()));
        // A layer that sets every key overrides every key.
        let mut all = Settings::default();
        let mut layer = Layer::default();
        let mut applied = Vec::new();
        layer.apply_to(&mut all, |k| applied.push(k));
        assert!(applied.is_empty());
        layer.timeout = Some(5);
        layer.access = Some(Access::ReadOnly);
        layer.apply_to(&mut all, |k| applied.push(k));
        assert_eq!(applied, ["access", "timeout"]);
        assert_eq!((all.timeout, all.access), (5, Access::ReadOnly));
        let other = Layer {
            timeout: Some(1),
            ..Layer::default()
        };
        assert_eq!(layer.common_key(&other), Some("timeout"));
        assert_eq!(other.common_key(&Layer::default()), None);
    }

    #[test]
    fn a_path_flaw_is_a_dot_dot_component_a_nul_or_a_star() {
        for (path, dotdot) in [
            ("/a/../b", true),
            ("/a/..", true),
            ("..", true),
            ("../a", true),
            ("/a/...", false),
            ("/a/.b/..c", false),
            ("/a//b/", false),
            ("~/x", false),
        ] {
            let split = path.split('/').any(|c| c == "..");
            assert_eq!((path_flaw(path, false), split), (dotdot, dotdot), "{path}");
        }
        assert!(path_flaw("/a\0b", false));
        assert!(path_flaw("/a*", true) && !path_flaw("/a*", false));
    }

    #[test]
    fn choices_are_spelt_as_in_the_file() {
        assert_eq!(Access::WriteOnly.to_string(), "write-only");
        assert_eq!(ConfineMode::Require.to_string(), "require");
    }
}
