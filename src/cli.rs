//! How rshell was started: argv (and whether sshd set a forced command)
//! become a [`Mode`]. No file-system access, no environment reads here.
#![forbid(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
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
        /// The command as bytes: a client's command need not be UTF-8 (Latin-1 names).
        command: OsString,
        user: Option<String>,
        from: Option<String>,
        key: Option<KeyFlags>,
        config: Option<PathBuf>,
        json: bool,
        /// `--secluded WORDS`: the words a secluded-args client (`rsync -s`, BackupPC)
        /// writes on standard input, NUL bytes spelled `\0` (`rsync\0.\0/\0\0`); bytes,
        /// like the command.
        secluded: Option<OsString>,
    },
    Policy {
        user: Option<String>,
        config: Option<PathBuf>,
    },
    Check {
        config: Option<PathBuf>,
        strict: bool,
        /// `--sshd-config F`: the sshd configuration to check against (default: sshd's own).
        sshd_config: Option<PathBuf>,
        /// `--user U`: check only this account.
        user: Option<String>,
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
                    [--secluded 'rsync\\0WORD\\0...\\0\\0']
       rshell --policy [--user U] [--config F]
       rshell --check [--config F] [--strict] [--sshd-config F] [--user U]
       rshell --version | --help

The admin options may come in any order (`rshell --config F --test COMMAND`), also as
--user=U; their output goes to stdout. With an explicit --config, --test and
--policy also evaluate a file that a real run would refuse (not owned by root, or
writable by others) and say so on their first line; drop-ins are read from the
directory <stem>.d beside the file (/etc/rshell.d for /etc/rshell.toml).

Only `rsync --server ...` (and, where policy allows, `rsync --server --daemon .`) is ever run,
as the configured rsync binary, confined to the user's root. See rshell(1), rshell.toml(5).
";

/// Parse argv (including argv[0]). `forced` says whether SSH_ORIGINAL_COMMAND is set.
///
/// `-c` must come first, as sshd and login(1) pass it (`shell -c command`), and its
/// string never reaches the admin modes: a nested `rshell ...` in it is parsed as key
/// flags only. Any other argv that names an admin mode (`--test`, `--policy`,
/// `--check`, `--help`, `--version`) anywhere, outside an option's value, is that mode,
/// with its options in any order; the rest is a forced key's flags.
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
    if rest[0] == "-c" {
        if rest.len() != 2 {
            return Err(UsageError("-c takes exactly one command string".into()));
        }
        let command = rest[1].clone();
        if let Some(words) = nested_words(&command) {
            let key = parse_key_flags(&words?)?;
            if key.config.is_some() {
                return Err(UsageError(
                    "--config is not allowed in a nested rshell command".into(),
                ));
            }
            return Ok(Mode::Nested { key });
        }
        return Ok(Mode::LoginShell { command });
    }
    if names_admin_mode(&rest) {
        return admin(&rest);
    }
    Ok(Mode::Standalone {
        key: parse_key_flags(&strings(&rest)?)?,
    })
}

/// The admin modes; `--test` takes the command as its value.
const ADMIN_MODES: &[&str] = &["--test", "--policy", "--check"];
/// Admin options that take a value (`--name V` or `--name=V`).
const VALUE_OPTIONS: &[&str] = &[
    "--test",
    "--user",
    "--from",
    "--key",
    "--config",
    "--sshd-config",
];

/// Whether an admin mode is named outside an option's value.
fn names_admin_mode(words: &[&OsString]) -> bool {
    let mut i = 0;
    while i < words.len() {
        // An option name is UTF-8; its `=value` (`--test=CMD`) may be any bytes.
        let raw = words[i].as_bytes();
        let name = raw.split(|&b| b == b'=').next().unwrap_or_default();
        let name = std::str::from_utf8(name).unwrap_or_default();
        let w = words[i].to_str().unwrap_or_default();
        if ADMIN_MODES.contains(&name) || matches!(w, "--help" | "-h" | "--version" | "-V") {
            return true;
        }
        if VALUE_OPTIONS.contains(&w) {
            i += 1;
        }
        i += 1;
    }
    false
}

fn strings(args: &[&OsString]) -> Result<Vec<String>, UsageError> {
    args.iter().map(|a| utf8(a)).collect()
}

/// One argument as text: key flags, directories and admin option values must be UTF-8
/// (only a client command, `--test`'s and `--secluded`'s values, is bytes).
fn utf8(arg: &OsStr) -> Result<String, UsageError> {
    arg.to_str()
        .map(str::to_string)
        .ok_or_else(|| UsageError("arguments must be UTF-8".into()))
}

/// If the command string is itself an rshell invocation (`rshell ...` or a path ending
/// in `/rshell`), its words after the program (which must be UTF-8 key flags).
fn nested_words(command: &OsString) -> Option<Result<Vec<String>, UsageError>> {
    let words = crate::command::split(command.as_bytes()).ok()?;
    let program = words.first()?.utf8()?;
    if !is_rshell(program) {
        return None;
    }
    Some(
        words[1..]
            .iter()
            .map(|w| utf8(OsStr::from_bytes(&w.text)))
            .collect(),
    )
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

/// The admin options, gathered in any order.
#[derive(Default)]
struct AdminArgs {
    mode: Option<&'static str>,
    command: Option<OsString>,
    user: Option<String>,
    from: Option<String>,
    key: Option<KeyFlags>,
    config: Option<PathBuf>,
    sshd_config: Option<PathBuf>,
    secluded: Option<OsString>,
    json: bool,
    strict: bool,
}

fn admin(words: &[&OsString]) -> Result<Mode, UsageError> {
    let mut a = AdminArgs::default();
    let mut i = 0;
    while i < words.len() {
        let raw = words[i].as_bytes();
        i += 1;
        // `--name=value` as well as `--name value`; the name is UTF-8, the value bytes.
        let split = raw.iter().position(|&b| b == b'=').and_then(|at| {
            let n = std::str::from_utf8(&raw[..at]).ok()?;
            (n.starts_with("--") && VALUE_OPTIONS.contains(&n)).then(|| (n, &raw[at + 1..]))
        });
        let (name, inline) = match split {
            Some((n, v)) => (n, Some(v)),
            None => match std::str::from_utf8(raw) {
                Ok(word) => (word, None),
                Err(_) => {
                    return Err(UsageError(format!(
                        "unknown argument {}",
                        crate::command::show(raw)
                    )))
                }
            },
        };
        let mut value = || -> Result<OsString, UsageError> {
            if let Some(v) = inline {
                return Ok(OsStr::from_bytes(v).to_os_string());
            }
            let v = words
                .get(i)
                .ok_or_else(|| UsageError(format!("{name} needs a value")))?;
            // `--key` values are flags themselves (`--key '-ro DIR'`).
            if v.as_bytes().starts_with(b"-") && name != "--key" {
                return Err(UsageError(format!(
                    "{name} needs a value, got the option {}",
                    crate::command::show(v.as_bytes())
                )));
            }
            i += 1;
            Ok(OsString::from(*v))
        };
        fn once<T>(slot: &mut Option<T>, v: T, name: &str) -> Result<(), UsageError> {
            if slot.is_some() {
                return Err(UsageError(format!("{name} is given twice")));
            }
            *slot = Some(v);
            Ok(())
        }
        match name {
            "--help" | "-h" => return Ok(Mode::Help),
            "--version" | "-V" => return Ok(Mode::Version),
            "--test" | "--policy" | "--check" => {
                if let Some(other) = a.mode.filter(|m| *m != name) {
                    return Err(UsageError(format!(
                        "{other} and {name} exclude each other: one admin mode at a time"
                    )));
                }
                a.mode = ADMIN_MODES.iter().copied().find(|m| *m == name);
                if name == "--test" {
                    let command = value()?;
                    once(&mut a.command, command, name)?;
                }
            }
            "--user" => {
                let v = utf8(&value()?)?;
                once(&mut a.user, v, name)?
            }
            "--from" => {
                let v = utf8(&value()?)?;
                once(&mut a.from, v, name)?
            }
            "--config" => {
                let v = utf8(&value()?)?;
                once(&mut a.config, PathBuf::from(v), name)?
            }
            "--sshd-config" => {
                let v = utf8(&value()?)?;
                once(&mut a.sshd_config, PathBuf::from(v), name)?
            }
            "--secluded" => {
                let v = value()?;
                once(&mut a.secluded, v, name)?
            }
            "--key" => {
                let text = value()?;
                let words = crate::command::split(text.as_bytes())
                    .map_err(|e| UsageError(format!("--key: {e}")))?;
                let words = words
                    .iter()
                    .map(|w| utf8(OsStr::from_bytes(&w.text)))
                    .collect::<Result<Vec<String>, _>>()?;
                once(&mut a.key, parse_key_flags(&words)?, name)?;
            }
            "--json" => a.json = true,
            "--strict" => a.strict = true,
            _ => return Err(UsageError(format!("unknown argument {name}"))),
        }
    }
    let mode = a
        .mode
        .ok_or_else(|| UsageError("name an admin mode: --test, --policy or --check".into()))?;
    // Each option belongs to some modes; one given to another mode is a mistake worth a word.
    let misplaced = [
        ("--from", a.from.is_some(), "--test"),
        ("--key", a.key.is_some(), "--test"),
        ("--json", a.json, "--test"),
        ("--secluded", a.secluded.is_some(), "--test"),
        ("--strict", a.strict, "--check"),
        ("--sshd-config", a.sshd_config.is_some(), "--check"),
    ];
    for (option, given, belongs) in misplaced {
        if given && mode != belongs {
            return Err(UsageError(format!(
                "{option} is an option of {belongs}, not of {mode}"
            )));
        }
    }
    Ok(match mode {
        "--test" => Mode::Test {
            command: a.command.unwrap_or_default(),
            user: a.user,
            from: a.from,
            key: a.key,
            config: a.config,
            json: a.json,
            secluded: a.secluded,
        },
        "--policy" => Mode::Policy {
            user: a.user,
            config: a.config,
        },
        _ => Mode::Check {
            config: a.config,
            strict: a.strict,
            sshd_config: a.sshd_config,
            user: a.user,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::path::Path;

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
        assert!(parse(&args(&["rshell", "--check", "--json"]), false).is_err());
        assert!(parse(&args(&["rshell", "--test"]), false).is_err());
    }

    /// A client's command is bytes (a Latin-1 client's names): `-c` and `--test` keep them;
    /// key flags and admin option values stay text.
    #[test]
    fn commands_are_bytes_and_flags_are_text() {
        use std::os::unix::ffi::OsStringExt;
        let bytes = |b: &[u8]| OsString::from_vec(b.to_vec());
        let command = bytes(b"rsync --server . caf\xe9/");
        let m = parse(&[bytes(b"rshell"), bytes(b"-c"), command.clone()], false).unwrap();
        assert_eq!(
            m,
            Mode::LoginShell {
                command: command.clone()
            }
        );
        let m = parse(
            &[
                bytes(b"rshell"),
                bytes(b"--test"),
                command.clone(),
                bytes(b"--secluded"),
                bytes(b"rsync\\0.\\0\xff\\0"),
            ],
            false,
        )
        .unwrap();
        assert!(
            matches!(&m, Mode::Test { command: c, secluded: Some(s), .. } if *c == command && s.as_bytes() == b"rsync\\0.\\0\xff\\0"),
            "{m:?}"
        );
        let m = parse(&[bytes(b"rshell"), bytes(b"--test=rsync \xe9")], false).unwrap();
        assert!(
            matches!(&m, Mode::Test { command: c, .. } if c.as_bytes() == b"rsync \xe9"),
            "{m:?}"
        );
        for argv in [
            &[&b"rshell"[..], b"--test", b"x", b"--user", b"b\xe9b"][..],
            &[b"rshell", b"--test", b"x", b"--config=/etc/r\xe9.toml"],
            &[b"rshell", b"-ro", b"d\xe9"],
            &[b"rshell", b"-c", b"rshell -ro d\xe9"],
        ] {
            let argv: Vec<OsString> = argv.iter().map(|a| bytes(a)).collect();
            let e = parse(&argv, true).unwrap_err();
            assert_eq!(e.to_string(), "arguments must be UTF-8", "{argv:?}");
        }
        let e = parse(
            &[
                bytes(b"rshell"),
                bytes(b"--test"),
                bytes(b"x"),
                bytes(b"--j\xe9son"),
            ],
            false,
        );
        assert_eq!(e.unwrap_err().to_string(), "unknown argument --j\\xe9son");
    }

    #[test]
    fn admin_options_come_in_any_order() {
        let want = Mode::Test {
            command: "rsync --server . x".into(),
            user: Some("u".into()),
            from: Some("10.0.0.1".into()),
            key: Some(KeyFlags {
                access: Some(Access::ReadOnly),
                dir: Some("/srv".into()),
                ..Default::default()
            }),
            config: Some("/etc/f.toml".into()),
            json: true,
            secluded: None,
        };
        for argv in [
            &[
                "rshell",
                "--test",
                "rsync --server . x",
                "--user",
                "u",
                "--config",
                "/etc/f.toml",
                "--from",
                "10.0.0.1",
                "--key",
                "-ro /srv",
                "--json",
            ][..],
            &[
                "rshell",
                "--config",
                "/etc/f.toml",
                "--json",
                "--key",
                "-ro /srv",
                "--test",
                "rsync --server . x",
                "--from",
                "10.0.0.1",
                "--user",
                "u",
            ],
            &[
                "rshell",
                "--config=/etc/f.toml",
                "--user=u",
                "--test=rsync --server . x",
                "--from=10.0.0.1",
                "--key=-ro /srv",
                "--json",
            ],
        ] {
            assert_eq!(parse(&args(argv), false).unwrap(), want, "{argv:?}");
        }
        let policy = Mode::Policy {
            user: Some("u".into()),
            config: Some("/f".into()),
        };
        assert_eq!(
            parse(
                &args(&["rshell", "--user", "u", "--config", "/f", "--policy"]),
                false
            )
            .unwrap(),
            policy
        );
        let check = Mode::Check {
            config: Some("/f".into()),
            strict: true,
            sshd_config: Some("/etc/ssh/sshd_config".into()),
            user: Some("u".into()),
        };
        assert_eq!(
            parse(
                &args(&[
                    "rshell",
                    "--strict",
                    "--sshd-config",
                    "/etc/ssh/sshd_config",
                    "--config",
                    "/f",
                    "--user",
                    "u",
                    "--check"
                ]),
                false
            )
            .unwrap(),
            check
        );
        assert_eq!(
            parse(&args(&["rshell", "--config", "/f", "--help"]), false).unwrap(),
            Mode::Help
        );
        assert_eq!(
            parse(&args(&["rshell", "-V"]), false).unwrap(),
            Mode::Version
        );
    }

    #[test]
    fn admin_usage_mistakes_are_named() {
        for (argv, needle) in [
            (
                &["rshell", "--test", "x", "--policy"][..],
                "exclude each other",
            ),
            (
                &["rshell", "--policy", "--json"],
                "--json is an option of --test",
            ),
            (
                &["rshell", "--test", "x", "--strict"],
                "--strict is an option of --check",
            ),
            (
                &["rshell", "--test", "x", "--user", "a", "--user", "b"],
                "given twice",
            ),
            (
                &["rshell", "--test", "--user", "u"],
                "--test needs a value, got the option --user",
            ),
            (
                &["rshell", "--policy", "--bogus"],
                "unknown argument --bogus",
            ),
            (
                &["rshell", "--user", "u", "--config", "/f"],
                "unknown flag --user",
            ),
        ] {
            let e = parse(&args(argv), false).unwrap_err().to_string();
            assert!(e.contains(needle), "{argv:?}: {e}");
        }
        // A forced key's own flags still parse when no admin mode is named.
        assert!(matches!(
            parse(&args(&["rshell", "--config", "/f", "-ro", "/srv"]), true).unwrap(),
            Mode::Standalone { key } if key.config.as_deref() == Some(Path::new("/f"))
        ));
    }
}
