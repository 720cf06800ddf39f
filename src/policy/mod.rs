//! The policy: `/etc/rshell.toml` and its drop-ins in `/etc/rshell.d/*.toml`, and the
//! key-by-key layering built-in ← `[defaults]` ← group ← user (← forced key) that gives
//! one connection its [`Policy`].
//!
//! Rules: all or nothing (one error in any file denies everything); unknown keys are
//! errors; every file, and the drop-in directory, must be owned by root and not
//! writable by group or others, checked at every load.
//!
//! One job per file: `keys` (the keys, defined once in one table), `files` (which files,
//! trusted), `read` (a file's text to sections), `merge` (the files' sections to one
//! [`Config`]), this file (the layering), `trust` (trusted files), `net` (`from`).
#![forbid(unsafe_code)]

mod files;
mod keys;
mod merge;
pub mod net;
mod read;
pub mod trust;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use files::{dropin_dir, dry_run_reads_untrusted, trust_problems};
pub use keys::{Access, ConfineMode, Layer, Origin, Settings, DEFAULT_TIMEOUT, KEYS};

/// The default config path; no environment variable changes it (an account could set
/// one through ~/.ssh/environment or ~/.pam_environment).
pub const DEFAULT_CONFIG: &str = "/etc/rshell.toml";

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
    /// The config sections that applied, lowest first, each with the file it was read from.
    pub origins: Vec<(Source, PathBuf)>,
}

impl Policy {
    /// Built-in defaults only.
    pub fn builtin() -> Policy {
        Policy {
            settings: Settings::default(),
            sources: KEYS.iter().map(|key| (*key, Source::BuiltIn)).collect(),
            section: Source::BuiltIn,
            configured: false,
            subdir: None,
            origins: Vec::new(),
        }
    }

    /// Apply one layer on top, key by key.
    pub fn apply(&mut self, layer: &Layer, source: &Source) {
        let sources = &mut self.sources;
        layer.apply_to(&mut self.settings, |key| {
            sources.insert(key, source.clone());
        });
        self.section = source.clone();
    }

    /// `(key, value, source)` rows for `--policy` and `--test`.
    pub fn rows(&self) -> Vec<(&'static str, String, String)> {
        self.settings
            .shown()
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

/// A loaded, validated configuration: the main file and its drop-ins, merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The main file (`/etc/rshell.toml`, or `--config F`).
    pub path: PathBuf,
    /// Every file read, in merge order: the main file, then its drop-ins by name.
    pub files: Vec<PathBuf>,
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

impl Config {
    /// The file a config section of the policy was read from (`None` for built-in and key).
    pub fn file_of(&self, source: &Source) -> Option<&Path> {
        let layer = match source {
            Source::Defaults => self.defaults.as_ref(),
            Source::Group(g) => self.groups.get(g),
            Source::User(u) => self.users.get(u),
            Source::BuiltIn | Source::Key => None,
        }?;
        self.files.get(layer.origin?.file).map(PathBuf::as_path)
    }

    /// The effective policy for `user` in `groups` (primary first), key by key.
    pub fn policy_for(&self, user: &str, groups: &[String]) -> Result<Policy, ConfigError> {
        let mut policy = Policy::builtin();
        let apply = |policy: &mut Policy, layer: &Layer, source: Source| {
            policy.apply(layer, &source);
            policy.configured = true;
            if let Some(file) = self.file_of(&source) {
                policy.origins.push((source, file.to_path_buf()));
            }
        };
        if let Some(d) = &self.defaults {
            apply(&mut policy, d, Source::Defaults);
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
                if let Some(key) = l1.common_key(l2) {
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
            apply(&mut policy, layer, Source::Group(g.clone()));
        }
        if let Some(u) = self.users.get(user) {
            apply(&mut policy, u, Source::User(user.to_string()));
        }
        Ok(policy)
    }
}

// The trusted-file checks live in `trust`; callers keep using the two functions below.

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

    fn merge(files: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse_files(files)
    }

    #[test]
    fn drop_ins_merge_after_the_main_file_and_each_section_names_its_file() {
        let cfg = merge(&[
            (
                "/etc/rshell.toml",
                "version = 1\n[defaults]\nroot = \"/srv/%u\"\n",
            ),
            (
                "/etc/rshell.d/10-g.toml",
                "version = 1\n[groups.backup]\naccess = \"write-only\"\n",
            ),
            (
                "/etc/rshell.d/20-u.toml",
                "version = 1\n[users.alice]\ndelete = false\n",
            ),
        ])
        .unwrap();
        let p = cfg.policy_for("alice", &["backup".into()]).unwrap();
        assert_eq!(
            (
                p.settings.root.as_str(),
                p.settings.access,
                p.settings.delete
            ),
            ("/srv/%u", Access::WriteOnly, false)
        );
        let files: Vec<(String, &str)> = p
            .origins
            .iter()
            .map(|(s, f)| (s.to_string(), f.to_str().unwrap()))
            .collect();
        assert_eq!(
            files,
            [
                ("[defaults]".to_string(), "/etc/rshell.toml"),
                ("[groups.backup]".to_string(), "/etc/rshell.d/10-g.toml"),
                ("[users.alice]".to_string(), "/etc/rshell.d/20-u.toml"),
            ]
        );
        assert_eq!(
            cfg.file_of(&Source::User("alice".into())),
            Some(Path::new("/etc/rshell.d/20-u.toml"))
        );
        assert_eq!(cfg.file_of(&Source::Key), None);
    }

    #[rstest]
    #[case::user_in_two_files(
        "[users.a]\nlock = false\n",
        "\n[users.a]\nlock = true\n",
        "/etc/rshell.d/2.toml:3:8: [users.a] is already defined at /etc/rshell.d/1.toml:2:8"
    )]
    #[case::group_in_two_files(
        "[groups.g]\n",
        "[groups.g]\n",
        "/etc/rshell.d/2.toml:2:9: [groups.g] is already defined at /etc/rshell.d/1.toml:2:9"
    )]
    #[case::defaults_in_two_files(
        "[defaults]\n",
        "[defaults]\n",
        "/etc/rshell.d/2.toml:2:2: [defaults] is already defined at /etc/rshell.d/1.toml:2:2"
    )]
    fn a_section_may_be_defined_in_one_file_only(
        #[case] first: &str,
        #[case] second: &str,
        #[case] error: &str,
    ) {
        let first = format!("version = 1\n{first}");
        let second = format!("version = 1\n{second}");
        let err = merge(&[
            ("/etc/rshell.toml", "version = 1\n"),
            ("/etc/rshell.d/1.toml", &first),
            ("/etc/rshell.d/2.toml", &second),
        ])
        .unwrap_err();
        assert!(err.to_string().starts_with(error), "{err}");
    }

    #[test]
    fn every_drop_in_needs_its_version_and_any_error_fails_the_whole() {
        let main = ("/etc/rshell.toml", "version = 1\n[users.a]\n");
        let err = merge(&[main, ("/etc/rshell.d/x.toml", "[users.b]\n")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/rshell.d/x.toml:1:1: `version = 1` is missing"
        );
        // A bad value in a section that concerns someone else still fails everything.
        let err = merge(&[
            main,
            (
                "/etc/rshell.d/x.toml",
                "version = 1\n[users.other]\numask = \"8\"\n",
            ),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/etc/rshell.d/x.toml:3:9: [users.other]: `umask`"),
            "{err}"
        );
        // The same section twice in one file (the canonical reader leaves it to the merge).
        let err = parse("version = 1\n[users.a]\n[users.a]\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("[users.a] is already defined at /etc/rshell.toml:2:8"),
            "{err}"
        );
    }

    #[test]
    fn a_misspelt_key_gets_a_suggestion() {
        let err = parse("version = 1\n[users.a]\nacess = \"read-only\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/rshell.toml:3:1: unknown field `acess` in [users.a] (did you mean `access`?); rshell.toml(5) lists the keys"
        );
    }
}
