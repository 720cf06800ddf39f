//! rsync's own parser is the ground truth: rshell's option model checked against the real
//! rsync binary. rsync's server reports option syntax errors before it reads a byte of
//! the protocol ("unknown option", "does not take an argument"), so the real parse can be
//! observed with standard input at EOF:
//! - every row of the option table: the spelling exists, a flag refuses a value, a valued
//!   option takes one (both `--opt=value` and `--opt value`), a bundle letter is a letter;
//! - every allowed corpus command: the argv rshell rebuilds parses without a syntax error
//!   (so the option words rsync sees are the ones rshell vetted, and the paths come after
//!   rshell's own `--`).
//!
//! The popt difference rshell guards against (`!#:+` in a value eats the next word) is
//! shown on the real binary too.
mod common;

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use common::{World, REFERENCE};
use rshell::rsync::{Class, Value, OPTIONS};

const RSYNC: &str = "/usr/bin/rsync";

fn usable() -> bool {
    common::needs("rsync", common::program(RSYNC))
}

/// What rsync's server says about `args` (its first line of complaint, if any). The
/// arguments are bytes, as rshell execs them (a Latin-1 name is not UTF-8).
fn server_parse<S: AsRef<OsStr>>(args: &[S]) -> String {
    let out = Command::new(RSYNC)
        .arg("--server")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_clear()
        .current_dir("/")
        .output()
        .expect("run rsync");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn syntax_error(stderr: &str) -> Option<&str> {
    stderr.lines().find(|l| {
        l.contains("unknown option")
            || l.contains("does not take an argument")
            || l.contains("missing argument")
            || l.contains("requires an argument")
    })
}

/// A value rsync accepts for an option of this kind.
fn sample(value: Value) -> &'static str {
    match value {
        Value::Flag => "",
        Value::Int | Value::Uint => "5",
        Value::Size(_) => "1k",
        Value::Charset => "utf8",
        Value::Choice(c) | Value::Literal(c) => c[0],
        Value::InfoWords => "name1",
        Value::Suffix => "~",
        Value::Map => "x",
        Value::SuffixList => "gz",
        Value::Path(_) => "sub",
    }
}

#[test]
fn every_row_of_the_option_table_parses_as_rsync_parses_it() {
    if !usable() {
        return;
    }
    let mut wrong = Vec::new();
    for row in OPTIONS {
        // Options rsync's server itself rejects outright are not parse questions.
        if matches!(
            row.long,
            "server" | "sender" | "daemon" | "version" | "help"
        ) {
            continue;
        }
        // `-F` has no long spelling; its row names it by the letter only.
        if row.long.len() == 1 {
            continue;
        }
        let long = format!("--{}", rshell::rsync::exec_spelling(row));
        match row.value {
            Value::Flag => {
                if let Some(e) = syntax_error(&server_parse(&[&long, "--", ".", "d/"])) {
                    wrong.push(format!("{long}: the table says flag, rsync says: {e}"));
                }
                let with_value = format!("{long}=x");
                if syntax_error(&server_parse(&[&with_value, "--", ".", "d/"])).is_none()
                    && !matches!(row.class, Class::Refused(_))
                {
                    wrong.push(format!(
                        "{with_value}: the table says flag, rsync took a value"
                    ));
                }
            }
            kind => {
                let v = sample(kind);
                let joined = format!("{long}={v}");
                if let Some(e) = syntax_error(&server_parse(&[&joined, "--", ".", "d/"])) {
                    wrong.push(format!("{joined}: the table says valued, rsync says: {e}"));
                }
                if let Some(e) = syntax_error(&server_parse(&[&long, v, "--", ".", "d/"])) {
                    wrong.push(format!("{long} {v}: two-word form refused by rsync: {e}"));
                }
            }
        }
        if let (Some(letter), Value::Flag) = (row.short, row.value) {
            let bundle = format!("-{letter}");
            if let Some(e) = syntax_error(&server_parse(&[&bundle, "--", ".", "d/"])) {
                wrong.push(format!("{bundle}: rsync says: {e}"));
            }
        }
    }
    // Spellings rshell must not know because popt does not (no abbreviations).
    for abbrev in ["--log-f=x", "--serv", "--sende", "--delete-b"] {
        assert!(
            syntax_error(&server_parse(&[abbrev, "--", ".", "d/"])).is_some(),
            "{abbrev}: rsync accepts it; the table must know it"
        );
        assert!(
            rshell::rsync::long_option(abbrev.trim_start_matches('-').split('=').next().unwrap())
                .is_none(),
            "{abbrev} is in the table but not in rsync"
        );
    }
    assert!(
        wrong.is_empty(),
        "{} rows differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn every_allowed_corpus_command_is_rebuilt_into_an_argv_rsync_parses() {
    if !usable() {
        return;
    }
    let world = World::new("differential");
    for d in ["tmp/stage", "dest/stage", "remote", "srv/data"] {
        std::fs::create_dir_all(world.root.join(d)).unwrap();
    }
    for f in ["remote/list.txt", "srv/list.txt", "srv/list0.txt"] {
        std::fs::write(world.root.join(f), "a.txt\n").unwrap();
    }
    let policy = world.policy(REFERENCE);
    let mut checked = 0;
    let mut wrong = Vec::new();
    for command in common::corpus() {
        let Ok(plan) = world.decide(&policy, &command) else {
            continue;
        };
        if let Some(e) = syntax_error(&server_parse(&plan.argv[2..])) {
            wrong.push(format!("{command}\n   argv {:?}\n   rsync: {e}", plan.argv));
        }
        checked += 1;
    }
    assert!(checked > 200, "only {checked} allowed corpus commands");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The reason rshell refuses `!#:+` in option values, shown on the real binary: popt
/// replaces it with the next positional word (even one after `--`) and removes that word.
/// `--timeout=5!#:+` is a valid number only when the word it swallows makes it one.
#[test]
fn popt_next_arg_syntax_swallows_the_next_word_in_the_real_rsync() {
    if !usable() {
        return;
    }
    // The word after `--` completes the value: "5" + "7" is a number, rsync accepts it...
    let swallowed = server_parse(&["--timeout=5!#:+", "--", "7", "d/"]);
    assert!(
        syntax_error(&swallowed).is_none() && !swallowed.contains("invalid numeric"),
        "{swallowed}"
    );
    // ...and "5" + "x" is not: the same value fails, so the next word really went into it.
    let bad = server_parse(&["--timeout=5!#:+", "--", "x", "d/"]);
    assert!(bad.contains("invalid numeric value"), "{bad}");
    // rshell refuses such values in every form, before rsync could see them.
    let world = World::new("differential-popt");
    let policy = world.policy(REFERENCE);
    for cmd in [
        "rsync --server -logDtpre.iLsfxCIvu --timeout=5!#:+ . dest/",
        "rsync --server -logDtpre.iLsfxCIvu --timeout 5!#:+ . dest/",
        "rsync --server -logDtpre.iLsfxCIvu --suffix=x!#:+ . dest/",
        "rsync --server -blogDtpre.iLsfxCIvu --backup-dir=a!#:+ . dest/",
        "rsync --server -logDtpre.iLsfxCIvu -B1024!#:+ . dest/",
    ] {
        assert!(world.decide(&policy, cmd).is_err(), "{cmd} was allowed");
    }
}
