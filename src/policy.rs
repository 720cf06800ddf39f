//! The policy file (design §3): schema, loading with `file:line:col` errors, and the
//! key-by-key layering built-in ← `[defaults]` ← group ← user (← forced key).
//!
//! Rules: all or nothing (one error denies everything); unknown keys are errors; the
//! file must be owned by root and not group/world-writable, checked at every load.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::net::Cidr;

/// The default config path; no environment variable changes it (design §1).
pub const DEFAULT_CONFIG: &str = "/etc/rshell.toml";

/// Every key a section may hold (for docs tests and `--policy`).
pub const KEYS: &[&str] = &[
    "rsync",
    "root",
    "access",
    "delete",
    "overwrite",
    "munge_links",
    "fake_super",
    "confine",
    "confine_root",
    "lock",
    "log_outcome",
    "umask",
    "from",
    "daemon",
    "daemon_config",
    "dangerous_writable_home",
    "timeout",
];

/// What the user may do under root (design §3 `access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    ReadWrite,
    ReadOnly,
    WriteOnly,
}

/// Landlock mode (design §3 `confine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfineMode {
    Auto,
    Require,
    Off,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::ReadWrite => "read-write",
            Access::ReadOnly => "read-only",
            Access::WriteOnly => "write-only",
        })
    }
}

impl fmt::Display for ConfineMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfineMode::Auto => "auto",
            ConfineMode::Require => "require",
            ConfineMode::Off => "off",
        })
    }
}

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Source {
    BuiltIn,
    Defaults,
    Group(String),
    User(String),
    Key,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::BuiltIn => f.write_str("built-in"),
            Source::Defaults => f.write_str("[defaults]"),
            Source::Group(g) => write!(f, "[groups.{g}]"),
            Source::User(u) => write!(f, "[users.{u}]"),
            Source::Key => f.write_str("forced key"),
        }
    }
}

/// One layer of settings: a config section or the forced key's flags. `None` = not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    pub rsync: Option<String>,
    pub root: Option<String>,
    pub access: Option<Access>,
    pub delete: Option<bool>,
    pub overwrite: Option<bool>,
    pub munge_links: Option<bool>,
    pub fake_super: Option<bool>,
    pub confine: Option<ConfineMode>,
    pub confine_root: Option<bool>,
    pub lock: Option<bool>,
    pub log_outcome: Option<bool>,
    pub umask: Option<u32>,
    pub from: Option<Vec<Cidr>>,
    pub daemon: Option<bool>,
    pub daemon_config: Option<String>,
    pub dangerous_writable_home: Option<bool>,
    pub timeout: Option<u64>,
}

/// The effective settings for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub rsync: String,
    /// The root template (`~`, `%u` not yet expanded).
    pub root: String,
    pub access: Access,
    pub delete: bool,
    pub overwrite: bool,
    pub munge_links: bool,
    pub fake_super: bool,
    pub confine: ConfineMode,
    pub confine_root: bool,
    pub lock: bool,
    pub log_outcome: bool,
    pub umask: u32,
    pub from: Vec<Cidr>,
    pub daemon: bool,
    pub daemon_config: String,
    pub dangerous_writable_home: bool,
    /// Seconds without a byte moved before rshell ends the session (0: never).
    pub timeout: u64,
}

/// The default idle timeout: long enough for a slow disk on the client, short enough that
/// a stalled client does not keep the root lock all night.
pub const DEFAULT_TIMEOUT: u64 = 600;

impl Default for Settings {
    /// The built-in defaults (design §3).
    fn default() -> Self {
        Settings {
            rsync: "/usr/bin/rsync".into(),
            root: "~/backup".into(),
            access: Access::ReadWrite,
            delete: true,
            overwrite: true,
            munge_links: false,
            fake_super: false,
            confine: ConfineMode::Auto,
            confine_root: true,
            lock: true,
            log_outcome: true,
            umask: 0o077,
            from: Vec::new(),
            daemon: false,
            daemon_config: String::new(),
            dangerous_writable_home: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// The effective policy: settings plus the section each key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub settings: Settings,
    pub sources: BTreeMap<&'static str, Source>,
    /// The most specific section that matched (or built-in).
    pub section: Source,
    /// Whether any config section (`[defaults]`, group, user) applied.
    pub configured: bool,
    /// A nested key's directory, relative to the configured root: opened beneath the
    /// configured root's descriptor, never by its own absolute name.
    pub subdir: Option<PathBuf>,
}

macro_rules! layer_keys {
    ($apply:ident) => {
        $apply!(rsync, "rsync");
        $apply!(root, "root");
        $apply!(access, "access");
        $apply!(delete, "delete");
        $apply!(overwrite, "overwrite");
        $apply!(munge_links, "munge_links");
        $apply!(fake_super, "fake_super");
        $apply!(confine, "confine");
        $apply!(confine_root, "confine_root");
        $apply!(lock, "lock");
        $apply!(log_outcome, "log_outcome");
        $apply!(umask, "umask");
        $apply!(from, "from");
        $apply!(daemon, "daemon");
        $apply!(daemon_config, "daemon_config");
        $apply!(dangerous_writable_home, "dangerous_writable_home");
        $apply!(timeout, "timeout");
    };
}

impl Policy {
    /// Built-in defaults only.
    pub fn builtin() -> Policy {
        let mut sources = BTreeMap::new();
        for key in KEYS {
            sources.insert(*key, Source::BuiltIn);
        }
        Policy {
            settings: Settings::default(),
            sources,
            section: Source::BuiltIn,
            configured: false,
            subdir: None,
        }
    }

    /// Apply one layer on top, key by key.
    pub fn apply(&mut self, layer: &Layer, source: &Source) {
        macro_rules! apply_key {
            ($field:ident, $name:literal) => {
                if let Some(v) = &layer.$field {
                    self.settings.$field = v.clone();
                    self.sources.insert($name, source.clone());
                }
            };
        }
        layer_keys!(apply_key);
        self.section = source.clone();
    }

    /// `(key, value, source)` rows for `--policy` and `--test`.
    pub fn rows(&self) -> Vec<(&'static str, String, String)> {
        let s = &self.settings;
        let from: Vec<String> = s.from.iter().map(|c| c.to_string()).collect();
        let values: [(&'static str, String); 17] = [
            ("rsync", s.rsync.clone()),
            ("root", s.root.clone()),
            ("access", s.access.to_string()),
            ("delete", s.delete.to_string()),
            ("overwrite", s.overwrite.to_string()),
            ("munge_links", s.munge_links.to_string()),
            ("fake_super", s.fake_super.to_string()),
            ("confine", s.confine.to_string()),
            ("confine_root", s.confine_root.to_string()),
            ("lock", s.lock.to_string()),
            ("log_outcome", s.log_outcome.to_string()),
            ("umask", format!("{:04o}", s.umask)),
            ("from", format!("[{}]", from.join(", "))),
            ("daemon", s.daemon.to_string()),
            ("daemon_config", s.daemon_config.clone()),
            (
                "dangerous_writable_home",
                s.dangerous_writable_home.to_string(),
            ),
            ("timeout", s.timeout.to_string()),
        ];
        values
            .into_iter()
            .map(|(k, v)| {
                let src = self
                    .sources
                    .get(k)
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                (k, v, src)
            })
            .collect()
    }
}

/// A loaded, validated configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub path: PathBuf,
    pub defaults: Option<Layer>,
    pub users: BTreeMap<String, Layer>,
    pub groups: BTreeMap<String, Layer>,
}

/// Why the configuration cannot be used. `Display` is the line the admin reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}: config file does not exist")]
    Missing(PathBuf),
    #[error("{0}: cannot read config file: {1}")]
    Unreadable(PathBuf, String),
    #[error("{0}: {1}")]
    Insecure(PathBuf, String),
    #[error("{path}:{line}:{col}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{path}: user {user} is in groups {first} and {second}, which both set `{key}`")]
    GroupConflict {
        path: PathBuf,
        user: String,
        key: &'static str,
        first: String,
        second: String,
    },
}

// ---- raw schema (serde) -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: Option<Spanned<i64>>,
    defaults: Option<RawSection>,
    #[serde(default)]
    users: BTreeMap<String, RawSection>,
    #[serde(default)]
    groups: BTreeMap<String, RawSection>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSection {
    rsync: Option<Spanned<String>>,
    root: Option<Spanned<String>>,
    access: Option<Spanned<Access>>,
    delete: Option<bool>,
    overwrite: Option<bool>,
    munge_links: Option<bool>,
    fake_super: Option<bool>,
    confine: Option<Spanned<ConfineMode>>,
    confine_root: Option<bool>,
    lock: Option<bool>,
    log_outcome: Option<bool>,
    umask: Option<Spanned<String>>,
    from: Option<Vec<Spanned<String>>>,
    daemon: Option<bool>,
    daemon_config: Option<Spanned<String>>,
    dangerous_writable_home: Option<bool>,
    timeout: Option<Spanned<i64>>,
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, offset: usize, message: impl Into<String>) -> ConfigError {
        let (line, col) = line_col(self.text, offset);
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }

    fn section(&self, raw: RawSection, name: &str) -> Result<Layer, ConfigError> {
        let spanned_abs = |v: Spanned<String>, key: &str| -> Result<String, ConfigError> {
            let s = v.get_ref();
            if !s.starts_with('/') || s.contains("/../") || s.ends_with("/..") || s.contains('\0') {
                return Err(self.err(
                    v.span().start,
                    format!("{name}: `{key}` must be an absolute path, got {s:?}"),
                ));
            }
            Ok(s.clone())
        };
        let rsync = raw.rsync.map(|v| spanned_abs(v, "rsync")).transpose()?;
        let root = match raw.root {
            Some(v) => {
                let s = v.get_ref();
                let ok_start = s.starts_with('/') || s == "~" || s.starts_with("~/");
                let bad = s.split('/').any(|c| c == "..") || s.contains('\0') || s.contains('*');
                if !ok_start || bad {
                    return Err(self.err(
                        v.span().start,
                        format!("{name}: `root` must be absolute or start with `~/` (no `..`), got {s:?}"),
                    ));
                }
                Some(s.clone())
            }
            None => None,
        };
        let umask = match raw.umask {
            Some(v) => match u32::from_str_radix(v.get_ref(), 8) {
                Ok(n) if n <= 0o777 && !v.get_ref().is_empty() => Some(n),
                _ => {
                    return Err(self.err(
                        v.span().start,
                        format!(
                            "{name}: `umask` must be an octal string like \"0077\", got {:?}",
                            v.get_ref()
                        ),
                    ))
                }
            },
            None => None,
        };
        let from = match raw.from {
            Some(list) => {
                let mut nets = Vec::new();
                for item in list {
                    let net = item
                        .get_ref()
                        .parse::<Cidr>()
                        .map_err(|e| self.err(item.span().start, format!("{name}: `from`: {e}")))?;
                    nets.push(net);
                }
                Some(nets)
            }
            None => None,
        };
        let daemon_config = match raw.daemon_config {
            Some(v) if v.get_ref().is_empty() => Some(String::new()),
            Some(v) => Some(spanned_abs(v, "daemon_config")?),
            None => None,
        };
        let timeout = match raw.timeout {
            Some(v) => match u64::try_from(*v.get_ref()) {
                Ok(n) if n <= 7 * 24 * 3600 => Some(n),
                _ => {
                    return Err(self.err(
                        v.span().start,
                        format!(
                            "{name}: `timeout` must be a number of seconds from 0 (never) to 604800, got {}",
                            v.get_ref()
                        ),
                    ))
                }
            },
            None => None,
        };
        Ok(Layer {
            rsync,
            root,
            access: raw.access.map(Spanned::into_inner),
            delete: raw.delete,
            overwrite: raw.overwrite,
            munge_links: raw.munge_links,
            fake_super: raw.fake_super,
            confine: raw.confine.map(Spanned::into_inner),
            confine_root: raw.confine_root,
            lock: raw.lock,
            log_outcome: raw.log_outcome,
            umask,
            from,
            daemon: raw.daemon,
            daemon_config,
            dangerous_writable_home: raw.dangerous_writable_home,
            timeout,
        })
    }
}

impl Config {
    /// Read and validate the file, including its ownership and mode.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_trusted_file(path)?;
        Config::parse(path, &text)
    }

    /// Validate text as if it came from `path` (no file-system access).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let ctx = Ctx { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let message = e.message().trim();
            ctx.err(
                offset,
                if message.is_empty() {
                    "invalid TOML"
                } else {
                    message
                },
            )
        })?;
        match raw.version {
            None => return Err(ctx.err(0, "`version = 1` is missing")),
            Some(v) if *v.get_ref() != 1 => {
                return Err(ctx.err(
                    v.span().start,
                    format!(
                        "unsupported version {} (this rshell reads version 1)",
                        v.get_ref()
                    ),
                ))
            }
            Some(_) => {}
        }
        let defaults = raw
            .defaults
            .map(|s| ctx.section(s, "[defaults]"))
            .transpose()?;
        let mut users = BTreeMap::new();
        for (name, section) in raw.users {
            let layer = ctx.section(section, &format!("[users.{name}]"))?;
            users.insert(name, layer);
        }
        let mut groups = BTreeMap::new();
        for (name, section) in raw.groups {
            let layer = ctx.section(section, &format!("[groups.{name}]"))?;
            groups.insert(name, layer);
        }
        Ok(Config {
            path: path.to_path_buf(),
            defaults,
            users,
            groups,
        })
    }

    /// The effective policy for `user` in `groups` (primary first), key by key.
    pub fn policy_for(&self, user: &str, groups: &[String]) -> Result<Policy, ConfigError> {
        let mut policy = Policy::builtin();
        if let Some(d) = &self.defaults {
            policy.apply(d, &Source::Defaults);
            policy.configured = true;
        }
        let matched: Vec<(&String, &Layer)> = groups
            .iter()
            .filter_map(|g| self.groups.get_key_value(g))
            .collect();
        // Two configured groups that set the same key: ambiguous, a config error.
        for (i, (g1, l1)) in matched.iter().enumerate() {
            for (g2, l2) in &matched[i + 1..] {
                if g1 == g2 {
                    continue;
                }
                if let Some(key) = common_key(l1, l2) {
                    return Err(ConfigError::GroupConflict {
                        path: self.path.clone(),
                        user: user.to_string(),
                        key,
                        first: g1.to_string(),
                        second: g2.to_string(),
                    });
                }
            }
        }
        let mut seen = Vec::new();
        for (g, layer) in matched {
            if seen.contains(&g) {
                continue;
            }
            seen.push(g);
            policy.apply(layer, &Source::Group(g.clone()));
            policy.configured = true;
        }
        if let Some(u) = self.users.get(user) {
            policy.apply(u, &Source::User(user.to_string()));
            policy.configured = true;
        }
        Ok(policy)
    }
}

/// The first key both layers set, if any.
fn common_key(a: &Layer, b: &Layer) -> Option<&'static str> {
    macro_rules! both {
        ($field:ident, $name:literal) => {
            if a.$field.is_some() && b.$field.is_some() {
                return Some($name);
            }
        };
    }
    layer_keys!(both);
    None
}

/// The trusted-file checks live in `trust` (declared here so that no other module's
/// declarations change; callers keep using the two functions below).
use crate::trust;

/// Read a file that must be owned by root and not writable by group or others, in
/// directories only root can change (the config, a key's `--config`, `daemon_config`):
/// opened once, checked and read on that descriptor (see [`trust::open_trusted`]).
pub fn read_trusted_file(path: &Path) -> Result<String, ConfigError> {
    trust::read_trusted(path)
}

/// The checks of [`read_trusted_file`] without reading: for a file another program reads
/// by name (rsync's `--config=` of `daemon_config`), which is safe once every directory
/// up to `/` is root's alone.
pub fn check_trusted(path: &Path) -> Result<(), ConfigError> {
    trust::open_trusted(path).map(drop)
}

/// Expand a root template for a user: `~` is the home from passwd, `%u` the user name.
pub fn expand_root(template: &str, user: &str, home: &Path) -> PathBuf {
    let with_user = template.replace("%u", user);
    let expanded = if with_user == "~" {
        home.to_path_buf()
    } else if let Some(rest) = with_user.strip_prefix("~/") {
        home.join(rest)
    } else {
        PathBuf::from(with_user)
    };
    normalize(&expanded)
}

/// Lexical clean-up: drop `.` components, empty components and a trailing slash.
pub fn normalize(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/rshell.toml"), text)
    }

    #[test]
    fn given_the_design_example_then_it_parses() {
        let cfg = parse(
            r#"version = 1
[defaults]
rsync = "/usr/bin/rsync"
root = "~/backup"
access = "read-write"
delete = true
overwrite = true
munge_links = false
fake_super = false
confine = "auto"
confine_root = true
lock = true
log_outcome = true
umask = "0077"
from = []
daemon = false
daemon_config = ""
dangerous_writable_home = false

[users.amanda]
root = "/srv/backup/amanda"
access = "write-only"

[groups.backup]
root = "/srv/backup/%u"
"#,
        )
        .unwrap();
        let p = cfg.policy_for("amanda", &["backup".into()]).unwrap();
        assert_eq!(p.settings.root, "/srv/backup/amanda");
        assert_eq!(p.settings.access, Access::WriteOnly);
        assert_eq!(p.sources["root"], Source::User("amanda".into()));
        assert_eq!(p.sources["umask"], Source::Defaults);
        let q = cfg
            .policy_for("bob", &["staff".into(), "backup".into()])
            .unwrap();
        assert_eq!(q.settings.root, "/srv/backup/%u");
        assert_eq!(q.sources["root"], Source::Group("backup".into()));
    }

    #[rstest]
    #[case(
        "version = 1\n[defaults]\nroott = \"/x\"\n",
        3,
        "unknown field `roott`"
    )]
    #[case(
        "version = 1\n[defaults]\naccess = \"everything\"\n",
        3,
        "unknown variant"
    )]
    #[case("version = 1\n[defaults]\numask = \"999\"\n", 3, "umask")]
    #[case("version = 1\n[defaults]\nrsync = \"rsync\"\n", 3, "absolute")]
    #[case("version = 1\n[defaults]\nroot = \"backup\"\n", 3, "root")]
    #[case("version = 1\n[defaults]\nroot = \"/srv/../etc\"\n", 3, "root")]
    #[case("version = 1\n[users.x]\nfrom = [\"10.0.0.1/8\"]\n", 3, "host bits")]
    #[case("version = 2\n", 1, "unsupported version")]
    #[case("[defaults]\n", 1, "version = 1")]
    #[case("version = 1\n[defaults\n", 2, "")]
    #[case("version = 1\nfrobnicate = 1\n", 2, "unknown field")]
    #[case("version = 1\n[defaults]\ndelete = \"no\"\n", 3, "")]
    fn given_a_bad_config_then_the_error_names_file_line_and_message(
        #[case] text: &str,
        #[case] line: usize,
        #[case] needle: &str,
    ) {
        let err = parse(text).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("/etc/rshell.toml:{line}:")),
            "{shown}"
        );
        assert!(shown.contains(needle), "{shown}");
    }

    #[test]
    fn given_two_groups_setting_one_key_then_it_is_a_config_error() {
        let cfg =
            parse("version = 1\n[groups.a]\nroot = \"/a\"\n[groups.b]\nroot = \"/b\"\n").unwrap();
        let err = cfg.policy_for("u", &["a".into(), "b".into()]).unwrap_err();
        assert!(
            matches!(err, ConfigError::GroupConflict { key: "root", .. }),
            "{err}"
        );
        // Different keys layer fine.
        let cfg =
            parse("version = 1\n[groups.a]\nroot = \"/a\"\n[groups.b]\naccess = \"read-only\"\n")
                .unwrap();
        let p = cfg.policy_for("u", &["a".into(), "b".into()]).unwrap();
        assert_eq!(
            (p.settings.root.as_str(), p.settings.access),
            ("/a", Access::ReadOnly)
        );
    }

    #[test]
    fn given_user_and_group_then_user_wins_key_by_key() {
        let cfg = parse(
            "version = 1\n[defaults]\numask = \"0022\"\n[groups.g]\nroot = \"/g\"\naccess = \"read-only\"\n[users.u]\naccess = \"read-write\"\n",
        )
        .unwrap();
        let p = cfg.policy_for("u", &["g".into()]).unwrap();
        assert_eq!(p.settings.root, "/g");
        assert_eq!(p.settings.access, Access::ReadWrite);
        assert_eq!(p.settings.umask, 0o022);
        assert!(p.configured);
        let nobody = parse("version = 1\n[users.u]\n")
            .unwrap()
            .policy_for("other", &[])
            .unwrap();
        assert!(!nobody.configured);
    }

    #[test]
    fn root_templates_expand_from_passwd_values() {
        let home = Path::new("/home/amanda");
        assert_eq!(
            expand_root("~/backup", "amanda", home),
            PathBuf::from("/home/amanda/backup")
        );
        assert_eq!(
            expand_root("~", "amanda", home),
            PathBuf::from("/home/amanda")
        );
        assert_eq!(
            expand_root("/srv/%u/", "amanda", home),
            PathBuf::from("/srv/amanda")
        );
    }

    #[test]
    fn line_col_is_one_based() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 0), (1, 1));
    }
}
