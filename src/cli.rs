//! How rshell was started (design §2): argv (and whether sshd set a forced command)
//! become a [`Mode`]. No file-system access, no environment reads here.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::PathBuf;

use crate::policy::Access;

/// The flags of a forced key, rrsync-compatible (`-ro -wo -no-del -no-overwrite -munge
/// -no-lock [--config F] [DIR]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFlags {
    pub access: Option<Access>,
    pub no_delete: bool,
    pub no_overwrite: bool,
    pub munge: bool,
    pub no_lock: bool,
    pub config: Option<PathBuf>,
    pub dir: Option<String>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Interactive login (`-rshell`, or no arguments and no forced command).
    Interactive,
    /// `rshell -c CMD` as a login shell.
    LoginShell {
        command: OsString,
    },
    /// `rshell -c 'rshell FLAGS DIR'`: may only narrow the configured policy.
    Nested {
        key: KeyFlags,
    },
    /// `command="rshell FLAGS DIR"` under another login shell: the key is authoritative.
    Standalone {
        key: KeyFlags,
    },
    Test {
        command: String,
        user: Option<String>,
        from: Option<String>,
        key: Option<KeyFlags>,
        config: Option<PathBuf>,
        json: bool,
    },
    Policy {
        user: Option<String>,
        config: Option<PathBuf>,
    },
    Check {
        config: Option<PathBuf>,
        strict: bool,
    },
    Version,
    Help,
}

/// A usage error; `Display` is the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Every flag rshell knows, for `--help` and the man page test.
pub const HELP: &str = "\
usage: rshell -c COMMAND                 (login shell: run a vetted rsync server command)
       rshell [--config F] [-ro|-wo] [-no-del] [-no-overwrite] [-munge] [-no-lock] [DIR]
                                         (ssh forced command; the command is in SSH_ORIGINAL_COMMAND)
       rshell --test COMMAND [--user U] [--from ADDR] [--key 'FLAGS DIR'] [--config F] [--json]
       rshell --policy [--user U] [--config F]
       rshell --check [--config F] [--strict]
       rshell --version | --help

Only `rsync --server ...` (and, where policy allows, `rsync --server --daemon .`) is ever run,
as the configured rsync binary, confined to the user's root. See rshell(1), rshell.toml(5).
";

/// Parse argv (including argv[0]). `forced` says whether SSH_ORIGINAL_COMMAND is set.
pub fn parse(args: &[OsString], forced: bool) -> Result<Mode, UsageError> {
    let argv0_login = args
        .first()
        .and_then(|a| a.to_str())
        .is_some_and(|a| a.starts_with('-'));
    let rest: Vec<&OsString> = args.iter().skip(1).collect();
    if rest.is_empty() {
        return Ok(if forced && !argv0_login {
            Mode::Standalone {
                key: KeyFlags::default(),
            }
        } else {
            Mode::Interactive
        });
    }
    let first = rest[0].to_str().unwrap_or("");
    match first {
        "-c" => {
            if rest.len() != 2 {
                return Err(UsageError("-c takes exactly one command string".into()));
            }
            let command = rest[1].clone();
            if let Some(words) = nested_words(&command) {
                let key = parse_key_flags(&words)?;
                if key.config.is_some() {
                    return Err(UsageError(
                        "--config is not allowed in a nested rshell command".into(),
                    ));
                }
                return Ok(Mode::Nested { key });
            }
            Ok(Mode::LoginShell { command })
        }
        "--test" | "--policy" | "--check" => admin(first, &strings(&rest[1..])?),
        "--version" | "-V" if rest.len() == 1 => Ok(Mode::Version),
        "--help" | "-h" if rest.len() == 1 => Ok(Mode::Help),
        _ => Ok(Mode::Standalone {
            key: parse_key_flags(&strings(&rest)?)?,
        }),
    }
}

fn strings(args: &[&OsString]) -> Result<Vec<String>, UsageError> {
    args.iter()
        .map(|a| {
            a.to_str()
                .map(str::to_string)
                .ok_or_else(|| UsageError("arguments must be UTF-8".into()))
        })
        .collect()
}

/// If the command string is itself an rshell invocation (`rshell ...` or a path ending
/// in `/rshell`), its words after the program.
fn nested_words(command: &OsString) -> Option<Vec<String>> {
    let words = crate::command::split(command.as_encoded_bytes()).ok()?;
    let program = &words.first()?.text;
    if is_rshell(program) {
        Some(words[1..].iter().map(|w| w.text.clone()).collect())
    } else {
        None
    }
}

/// Is this program name or path rshell itself (a nested key, or a login shell in passwd)?
pub fn is_rshell(program: &str) -> bool {
    program == "rshell" || program.ends_with("/rshell")
}

/// Parse forced-key flags (rrsync's shape).
pub fn parse_key_flags(words: &[String]) -> Result<KeyFlags, UsageError> {
    let mut key = KeyFlags::default();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        i += 1;
        match w {
            "-ro" | "-wo" => {
                let access = if w == "-ro" {
                    Access::ReadOnly
                } else {
                    Access::WriteOnly
                };
                if key.access.is_some_and(|a| a != access) {
                    return Err(UsageError("-ro and -wo exclude each other".into()));
                }
                key.access = Some(access);
            }
            "-no-del" => key.no_delete = true,
            "-no-overwrite" => key.no_overwrite = true,
            "-munge" => key.munge = true,
            "-no-lock" => key.no_lock = true,
            "--config" => {
                let f = words
                    .get(i)
                    .ok_or_else(|| UsageError("--config needs a file".into()))?;
                i += 1;
                key.config = Some(PathBuf::from(f));
            }
            _ if w.starts_with("--config=") => {
                key.config = Some(PathBuf::from(&w["--config=".len()..]))
            }
            _ if w.starts_with('-') => return Err(UsageError(format!("unknown flag {w}"))),
            _ => {
                if key.dir.is_some() {
                    return Err(UsageError(format!(
                        "only one directory may be given (got another: {w})"
                    )));
                }
                key.dir = Some(w.to_string());
            }
        }
    }
    Ok(key)
}

fn admin(verb: &str, args: &[String]) -> Result<Mode, UsageError> {
    let mut command = None;
    let (mut user, mut from, mut key, mut config) = (None, None, None, None);
    let (mut json, mut strict) = (false, false);
    let mut i = 0;
    let value = |i: &mut usize, name: &str| -> Result<String, UsageError> {
        let v = args
            .get(*i)
            .cloned()
            .ok_or_else(|| UsageError(format!("{name} needs a value")))?;
        *i += 1;
        Ok(v)
    };
    if verb == "--test" {
        command = Some(value(&mut i, "--test")?);
    }
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        match (verb, a) {
            ("--test" | "--policy", "--user") => user = Some(value(&mut i, a)?),
            ("--test", "--from") => from = Some(value(&mut i, a)?),
            ("--test", "--key") => {
                let text = value(&mut i, a)?;
                let words = crate::command::split(text.as_bytes())
                    .map_err(|e| UsageError(format!("--key: {e}")))?;
                let words: Vec<String> = words.into_iter().map(|w| w.text).collect();
                key = Some(parse_key_flags(&words)?);
            }
            ("--test", "--json") => json = true,
            ("--check", "--strict") => strict = true,
            (_, "--config") => config = Some(PathBuf::from(value(&mut i, a)?)),
            _ => return Err(UsageError(format!("unknown argument {a} for {verb}"))),
        }
    }
    Ok(match verb {
        "--test" => Mode::Test {
            command: command.unwrap_or_default(),
            user,
            from,
            key,
            config,
            json,
        },
        "--policy" => Mode::Policy { user, config },
        _ => Mode::Check { config, strict },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[rstest]
    #[case(&["-rshell"], false, Mode::Interactive)]
    #[case(&["rshell"], false, Mode::Interactive)]
    #[case(&["-rshell"], true, Mode::Interactive)]
    #[case(&["rshell"], true, Mode::Standalone { key: KeyFlags::default() })]
    #[case(&["rshell", "-c", "rsync --server . x"], false, Mode::LoginShell { command: "rsync --server . x".into() })]
    #[case(&["rshell", "--version"], false, Mode::Version)]
    fn modes(#[case] argv: &[&str], #[case] forced: bool, #[case] expected: Mode) {
        assert_eq!(parse(&args(argv), forced).unwrap(), expected);
    }

    #[test]
    fn rrsync_key_lines_parse() {
        let m = parse(&args(&["rshell", "-ro", "-no-del", "backups"]), true).unwrap();
        assert_eq!(
            m,
            Mode::Standalone {
                key: KeyFlags {
                    access: Some(Access::ReadOnly),
                    no_delete: true,
                    dir: Some("backups".into()),
                    ..Default::default()
                }
            }
        );
        assert!(parse(&args(&["rshell", "-ro", "-wo", "x"]), true).is_err());
        assert!(parse(&args(&["rshell", "-bogus", "x"]), true).is_err());
        assert!(parse(&args(&["rshell", "a", "b"]), true).is_err());
    }

    #[test]
    fn nested_form_is_recognised_and_may_not_name_a_config() {
        let m = parse(&args(&["rshell", "-c", "rshell -wo /srv/x"]), true).unwrap();
        assert!(matches!(m, Mode::Nested { key } if key.access == Some(Access::WriteOnly)));
        let m = parse(&args(&["rshell", "-c", "/usr/bin/rshell -ro"]), true).unwrap();
        assert!(matches!(m, Mode::Nested { .. }));
        assert!(parse(
            &args(&["rshell", "-c", "rshell --config /tmp/x.toml"]),
            true
        )
        .is_err());
        assert!(parse(&args(&["rshell", "-c", "rshell --test x"]), true).is_err());
    }

    #[test]
    fn admin_modes() {
        let m = parse(
            &args(&[
                "rshell",
                "--test",
                "rsync --server . x",
                "--user",
                "bob",
                "--json",
            ]),
            false,
        )
        .unwrap();
        assert!(matches!(m, Mode::Test { user: Some(u), json: true, .. } if u == "bob"));
        assert!(parse(&args(&["rshell", "--check", "--user", "x"]), false).is_err());
        assert!(parse(&args(&["rshell", "--test"]), false).is_err());
    }
}
