//! Property tests (issue 7, "no input can crash"; rshell never panics): random and
//! rsync-shaped command strings through the real pipeline (split → parse → decide) under
//! several policies, random TOML-ish text through the config loader, and random byte
//! streams through the secluded-args reader (then its words through parse and decide).
//!
//! Invariants checked on every allowed plan (rshell rebuilds the argv rsync runs with):
//! the configured rsync and `--server` come first; a transfer has exactly one `--`,
//! followed by `.`, and nothing after `--` starts with `-`; paths stay relative and
//! lexically beneath root and never through the root's `out` symlink (which leads to `/`);
//! a string with unquoted shell syntax or control characters is never allowed; the
//! policy's access, delete, overwrite and munge settings show in the plan.
//!
//! Case counts: 2,000 command cases per target and 1,000 config and secluded cases by
//! default, or `PROPTEST_CASES`. `cargo test --test fuzz -- --nocapture` prints the
//! executions. The `long_` targets (ignored by default) run `RSHELL_FUZZ_CASES` cases each,
//! in replayable seeded chunks; see "long runs" below for the command.
//! A failure found here becomes a named regression test at the end of this file.
mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{account, World};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use rshell::decide::ExecPlan;
use rshell::policy::{Config, ConfigError, Policy};
use rshell::{decide_command, Failure, Form, Input};

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(default_cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases: cases(default_cases),
        // Findings become named tests below, not files in the tree.
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

// ---- the world: policies and their expectations ---------------------------------------

/// One policy variant of the fuzz world and what it promises.
struct Variant {
    name: &'static str,
    config: &'static str,
    rsync: &'static str,
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "reference",
        config: "version = 1\n[defaults]\nroot = \"ROOT\"\n",
        rsync: "/usr/bin/rsync",
    },
    Variant {
        name: "read-only, munged, fake-super",
        config: "version = 1\n[defaults]\nroot = \"ROOT\"\naccess = \"read-only\"\nmunge_links = true\nfake_super = true\n",
        rsync: "/usr/bin/rsync",
    },
    Variant {
        name: "write-only, no delete, no overwrite",
        config: "version = 1\n[users.alice]\nroot = \"ROOT\"\naccess = \"write-only\"\ndelete = false\noverwrite = false\n",
        rsync: "/usr/bin/rsync",
    },
    Variant {
        name: "own rsync path, no confine-root, daemon on (no usable rsyncd.conf)",
        config: "version = 1\n[groups.backup]\nroot = \"ROOT\"\nrsync = \"/opt/rsync/bin/rsync\"\nconfine_root = false\ndaemon = true\n",
        rsync: "/opt/rsync/bin/rsync",
    },
];

/// The fuzz world: `World`'s root plus a symlink `out -> /` inside it.
struct Fuzz {
    world: World,
    policies: Vec<Policy>,
}

impl Fuzz {
    fn new(tag: &str) -> Fuzz {
        let world = World::new(tag);
        std::os::unix::fs::symlink("/", world.root.join("out")).unwrap();
        std::os::unix::fs::symlink("data", world.root.join("in")).unwrap();
        // A file an earlier upload could have left: wildcards may expand to it.
        std::fs::write(world.root.join("-x"), "").unwrap();
        let policies = VARIANTS.iter().map(|v| world.policy(v.config)).collect();
        Fuzz { world, policies }
    }

    fn decide(&self, variant: usize, form: Form, command: &[u8]) -> Result<ExecPlan, Failure> {
        let account = account(&self.world.home);
        let input = Input {
            form,
            key: None,
            config_path: Path::new("/etc/rshell.toml"),
            account: &account,
            client: Some("127.0.0.1".parse().unwrap()),
            command,
        };
        decide_command(&input, &self.policies[variant])
    }

    /// Run one case and check every invariant; `Err` names the broken one.
    fn check(&self, variant: usize, standalone: bool, command: &[u8]) -> Result<(), String> {
        let form = if standalone {
            Form::Standalone
        } else {
            Form::Login
        };
        let outcome = self.decide(variant, form, command);
        let plan = match outcome {
            Err(Failure::Probe) if standalone && command == b"true" => return Ok(()),
            Err(Failure::Probe) => return Err("Probe outside standalone `true`".into()),
            Err(Failure::Config(c)) => {
                return Err(format!("config failure from a parsed policy: {c}"))
            }
            Err(Failure::Denied(reason)) => {
                if reason.is_empty() {
                    return Err("denied with an empty reason".into());
                }
                return Ok(());
            }
            Ok(plan) => plan,
        };
        if standalone && command == b"true" {
            return Err("`true` in standalone mode did not probe".into());
        }
        if let Some(why) = shell_syntax(command) {
            return Err(format!("allowed although the string has {why}"));
        }
        self.check_plan(variant, &plan)
    }

    /// The invariants of an allowed plan, whatever the words came from.
    fn check_plan(&self, variant: usize, plan: &ExecPlan) -> Result<(), String> {
        let v = &VARIANTS[variant];
        // The exact bytes rsync gets (a Latin-1 name is not UTF-8).
        let argv: Vec<&[u8]> = plan.argv.iter().map(|a| a.as_bytes()).collect();
        let argv = &argv;
        if argv.first().copied() != Some(v.rsync.as_bytes()) || plan.program != Path::new(v.rsync) {
            return Err(format!(
                "argv/program does not start with the configured rsync {}",
                v.rsync
            ));
        }
        if argv.get(1).copied() != Some(b"--server") {
            return Err("argv[1] is not --server".into());
        }
        if plan.root.path != self.world.root {
            return Err(format!("cwd {} is not root", plan.root.path.display()));
        }
        if argv.iter().any(|a| a.contains(&0)) {
            return Err("NUL in argv".into());
        }
        if plan.kind == "daemon" {
            // Variant 3 enables the daemon but its daemon_config is unusable: never allowed.
            return Err(format!(
                "daemon allowed without a trusted daemon_config: {argv:?}"
            ));
        }
        let dashes: Vec<usize> = argv
            .iter()
            .enumerate()
            .filter(|(_, a)| **a == b"--")
            .map(|(i, _)| i)
            .collect();
        if dashes.len() != 1 {
            return Err(format!("{} `--` words in {argv:?}", dashes.len()));
        }
        let dd = dashes[0];
        if argv.get(dd + 1).copied() != Some(b".") {
            return Err("`--` is not followed by `.`".into());
        }
        if argv.iter().position(|a| *a == b".") != Some(dd + 1) {
            return Err("a `.` word before `--`".into());
        }
        // Pinned paths (`/proc/self/fd/N`) are checked as the root-relative path the pin
        // stands for; every `/proc/self/fd/` word must be one of this plan's pins.
        let shown = plan.shown_argv();
        if shown.iter().any(|a| a.contains("/proc/self/fd/")) {
            return Err(format!("an unpinned /proc/self/fd path in {argv:?}"));
        }
        let unpinned: Vec<String> = shown[dd + 2..]
            .iter()
            .map(
                |p| match p.strip_prefix('<').and_then(|r| r.split_once('>')) {
                    // `<>` is the root itself: `<>/dest` is root-relative `dest` (F4).
                    Some(("", rest)) => rest.trim_start_matches('/').to_string(),
                    Some((pin, rest)) => format!("{pin}{rest}"),
                    None => p.clone(),
                },
            )
            .collect();
        let paths = &unpinned;
        if paths.is_empty() {
            return Err("no path after `.`".into());
        }
        // The words rsync reads (a pinned `/proc/self/fd/N/-x` is fine; a bare `-x` is not).
        if let Some(w) = argv[dd + 2..].iter().find(|w| w.starts_with(b"-")) {
            return Err(format!("path {w:?} after `--` starts with `-`"));
        }
        for p in paths {
            // Absolute only in root's own spelling (a client may name a path either relative
            // to root or with root's full path in front; both mean the same file).
            let p = match p.strip_prefix(self.world.root.to_str().unwrap_or("")) {
                Some(rest) if p.starts_with('/') && (rest.is_empty() || rest.starts_with('/')) => {
                    rest.trim_start_matches('/')
                }
                _ => p.as_str(),
            };
            if p.starts_with('/') {
                return Err(format!("path {p:?} is absolute: {shown:?} (argv {argv:?})"));
            }
            if let Some(why) = lexically_outside(p) {
                return Err(format!("path {p:?} {why}"));
            }
        }
        // Option values are checked as the paths their pins stand for (root-relative).
        let options = &shown[2..dd];
        let sender = options.iter().any(|o| o == "--sender");
        if sender != (plan.kind == "pull") {
            return Err("--sender and the plan kind disagree".into());
        }
        for o in options {
            if !o.starts_with('-') {
                return Err(format!("option word {o:?} does not start with `-`"));
            }
            if let Some((long, value)) = o.strip_prefix("--").and_then(|l| l.split_once('=')) {
                let is_path = rshell::rsync::long_option(long)
                    .is_some_and(|spec| matches!(spec.value, rshell::rsync::Value::Path(_)));
                let pinned_inside = value
                    .strip_prefix('<')
                    .and_then(|v| v.strip_suffix('>'))
                    .is_some_and(|rel| lexically_outside(rel).is_none());
                if is_path
                    && !pinned_inside
                    && value.starts_with('/')
                    && !Path::new(value).starts_with(&self.world.root)
                {
                    return Err(format!("absolute option value outside root: {o:?}"));
                }
            }
        }
        let has = |w: &str| options.iter().any(|o| o == w);
        // What deletes on the server: a receiver's --delete*/--force, a sender's --remove-*.
        let deleting = options.iter().any(|o| {
            if sender {
                o.starts_with("--remove-")
            } else {
                o.starts_with("--delete") || o == "--force"
            }
        });
        match variant {
            1 => {
                if !sender {
                    return Err("read-only policy allowed an upload".into());
                }
                if deleting {
                    return Err("read-only policy allowed a deletion".into());
                }
                if !has("--munge-links") || !has("--fake-super") {
                    return Err("forced --munge-links/--fake-super missing".into());
                }
            }
            2 => {
                if sender {
                    return Err("write-only policy allowed a download".into());
                }
                if deleting {
                    return Err("delete = false allowed a deletion".into());
                }
                if !has("--ignore-existing") {
                    return Err("overwrite = false without --ignore-existing".into());
                }
            }
            _ => {}
        }
        let confine_root = format!("--confine-root={}", self.world.root.display());
        if (variant != 3) != has(&confine_root) {
            return Err("--confine-root does not follow the policy".into());
        }
        if !sender && !has("--drop-D") {
            return Err("an upload without the forced --drop-D".into());
        }
        Ok(())
    }
}

/// An independent oracle: does `command` hold a character a shell would act on (outside
/// quotes), or a control character anywhere? Stricter than a shell is fine here.
fn shell_syntax(command: &[u8]) -> Option<String> {
    // Only ASCII is shell syntax: a byte that is not valid UTF-8 (a Latin-1 name's `é`) is
    // a name byte, so the oracle reads it as U+FFFD, which is special to nothing.
    let text: String = command
        .utf8_chunks()
        .flat_map(|c| {
            c.valid()
                .chars()
                .chain(c.invalid().iter().map(|_| char::REPLACEMENT_CHARACTER))
        })
        .collect();
    let text = text.as_str();
    #[derive(PartialEq)]
    enum Q {
        None,
        Single,
        Double,
    }
    let mut q = Q::None;
    let mut chars = text.chars();
    // POSIX: `#` starts a comment only where a word starts; `!`, `{`, `}` are reserved
    // only as whole words.
    for word in text.split(' ') {
        if matches!(word, "!" | "{" | "}") {
            return Some(format!("the reserved word {word:?}"));
        }
    }
    let mut word_start = true;
    while let Some(c) = chars.next() {
        let at_start = word_start;
        word_start = c == ' ' && q == Q::None;
        if c.is_control() && c != '\t' {
            return Some(format!("control character U+{:04X}", c as u32));
        }
        match q {
            Q::None => match c {
                '\\' => {
                    if let Some(e) = chars.next() {
                        // An escaped TAB is a TAB in the word, as quoted it would be (F6).
                        if e.is_control() && e != '\t' {
                            return Some("an escaped control character".into());
                        }
                    }
                }
                '\'' => q = Q::Single,
                '"' => q = Q::Double,
                '\t' => return Some("an unquoted TAB".into()),
                ';' | '&' | '|' | '<' | '>' | '(' | ')' | '$' | '`' => {
                    return Some(format!("an unquoted {c:?}"))
                }
                '#' if at_start => return Some("a comment".into()),
                _ => {}
            },
            Q::Single => {
                if c == '\'' {
                    q = Q::None
                }
            }
            Q::Double => match c {
                '"' => q = Q::None,
                '$' | '`' => return Some(format!("{c:?} inside double quotes")),
                '\\' => {
                    chars.next();
                }
                _ => {}
            },
        }
    }
    if q != Q::None {
        return Some("an unbalanced quote".into());
    }
    None
}

/// A relative path that climbs above root or enters the `out` symlink, read lexically
/// (the fuzz root holds no other way out).
fn lexically_outside(path: &str) -> Option<&'static str> {
    let mut stack: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Some("climbs above root");
                }
            }
            name => {
                if stack.is_empty() && name == "out" {
                    return Some("goes through the `out -> /` symlink");
                }
                stack.push(name);
            }
        }
    }
    None
}

// ---- strategies ------------------------------------------------------------------------

const CORPUS: &str = include_str!("corpus-verdicts.tsv");

/// Paths of 1 to `max - 1` components, with or without a leading and a trailing `/`.
fn slash_path(
    component: impl Strategy<Value = &'static str>,
    max: usize,
) -> impl Strategy<Value = String> {
    (
        prop::collection::vec(component, 1..max),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(c, lead, trail)| {
            format!(
                "{}{}{}",
                if lead { "/" } else { "" },
                c.join("/"),
                if trail { "/" } else { "" }
            )
        })
}

fn corpus_strings() -> Vec<String> {
    CORPUS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split_once('\t').unwrap().1.to_string())
        .collect()
}

/// Words seen in the corpus, every option spelling of the table, and hostile pieces.
fn fragments() -> Vec<String> {
    let mut f: Vec<String> = corpus_strings()
        .iter()
        .flat_map(|c| c.split(' ').map(str::to_string).collect::<Vec<_>>())
        .collect();
    for spec in rshell::rsync::OPTIONS {
        f.push(format!("--{}", spec.long));
        f.push(format!("--{}=", spec.long));
        f.push(format!("--{}=../x", spec.long));
        f.push(format!("--{}=/etc", spec.long));
        f.push(format!("--{}=out/x", spec.long));
        f.push(format!("--{}=-", spec.long));
        if let Some(c) = spec.short {
            f.push(format!("-{c}"));
        }
    }
    for piece in [
        "rsync",
        "--server",
        "--sender",
        "--daemon",
        ".",
        "..",
        "../",
        "/",
        "~",
        "~/",
        "~root",
        "\\~",
        "*",
        "?",
        "[",
        "]",
        "[!a]",
        "[a-z]",
        "\\*",
        "'",
        "\"",
        "\\",
        "\\ ",
        "' '",
        "\"\"",
        "''",
        ";",
        "&",
        "&&",
        "|",
        "||",
        "<",
        ">",
        ">>",
        "$(id)",
        "${IFS}",
        "$HOME",
        "`id`",
        "(",
        ")",
        "{",
        "}",
        "!",
        "#",
        "\t",
        "\n",
        "\r",
        "\0",
        "\u{7f}",
        "\u{85}",
        "\u{2028}",
        "\u{202e}",
        "é",
        "日本",
        "\u{1F600}",
        "--",
        "-",
        "-e",
        "-e.iLsfxCIvu",
        "-logDtpre.iLsfxCIvu",
        "out",
        "out/",
        "out/etc",
        "in",
        "in/../..",
        "dest",
        "dest/",
        "data/*",
        "data/../..",
        "./-x",
        "-x",
        "/etc/passwd",
        "snap/prev",
        "src\\ dir",
        "'src dir'",
        "\"src dir\"",
        "true",
        "/usr/bin/rsync",
        "/opt/rsync/bin/rsync",
        "--files-from=-",
        "--from0",
        "--link-dest=../prev",
        "--partial-dir=.p",
        "--backup-dir=../b",
        "--temp-dir=/tmp",
        "--compare-dest=/",
        "--copy-dest=out",
        "-@",
        "-B",
        "-@1",
        "-B1024",
        "--log-file=/tmp/x",
        "--config=/x",
        "--rsh=sh",
        "-M--config=/x",
        "--remote-option=x",
        "--secluded-args",
        "-s",
        "--protect-args",
        "--munge-links",
        "--no-munge-links",
        "--ignore-existing",
        "--drop-D",
        "--confine-root=/",
        "--no-r",
        "--no-",
    ] {
        f.push(piece.to_string());
    }
    f
}

/// Joining pieces: mostly one space, sometimes nothing, two spaces or a tab.
fn joiner() -> impl Strategy<Value = &'static str> {
    prop_oneof![12 => Just(" "), 2 => Just(""), 1 => Just("  "), 1 => Just("\t"), 1 => Just("="), 1 => Just("/")]
}

fn rsyncish() -> impl Strategy<Value = String> {
    let frags = fragments();
    let corpus = corpus_strings();
    let piece = prop::sample::select(frags);
    let prefix = prop_oneof![
        4 => Just("rsync --server ".to_string()),
        2 => Just("rsync --server --sender ".to_string()),
        1 => Just("/usr/bin/rsync --server ".to_string()),
        1 => Just("/opt/rsync/bin/rsync --server ".to_string()),
        1 => Just(String::new()),
    ];
    let built = (prefix, prop::collection::vec((piece, joiner()), 0..14)).prop_map(|(p, parts)| {
        let mut s = p;
        for (w, j) in parts {
            s.push_str(&w);
            s.push_str(j);
        }
        s.trim_end_matches(' ').to_string()
    });
    // A genuine corpus string with one word replaced or one piece spliced in.
    let mutated = (
        prop::sample::select(corpus),
        prop::sample::select(fragments()),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(c, f, at, replace)| {
            let mut words: Vec<String> = c.split(' ').map(str::to_string).collect();
            let i = at.index(words.len());
            if replace {
                words[i] = f;
            } else {
                words.insert(i, f);
            }
            words.join(" ")
        });
    // A genuine corpus string whose last word (the path) is replaced by a hostile path.
    let component = prop::sample::select(vec![
        "dest",
        "data",
        "sub",
        "a.txt",
        "snap",
        "prev",
        "src dir",
        "src\\ dir",
        "'src dir'",
        "..",
        ".",
        "",
        "out",
        "in",
        "*",
        "?",
        "[a-z]*",
        "d*",
        "o*",
        "[!x]*",
        "~",
        "\\~",
        "-x",
        "'-'",
        "\"..\"",
        "é",
        "new",
    ]);
    let path = slash_path(component, 6);
    let repathed = (
        prop::sample::select(corpus_strings()),
        prop::collection::vec(path, 1..3),
    )
        .prop_map(|(c, paths)| {
            let head = c.rsplit_once(' ').map_or(c.as_str(), |(h, _)| h);
            format!("{head} {}", paths.join(" "))
        });
    prop_oneof![3 => built, 3 => mutated, 3 => repathed, 1 => "[ -~]{0,80}", 1 => "\\PC{0,40}"]
}

/// The command strategies: arbitrary bytes (alone or behind a genuine prefix, so the parser
/// sees them) and rsync-shaped strings.
fn arbitrary_command_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(any::<u8>(), 0..120).prop_map(|tail| [
            b"rsync --server ".as_slice(),
            &tail
        ]
        .concat()),
    ]
}

/// One command case: split → parse → decide under one policy variant, in the login or
/// the standalone form, with every invariant of [`Fuzz::check`].
fn command_case(
    fuzz: &Fuzz,
    allowed: &AtomicUsize,
    (command, variant, standalone): (Vec<u8>, usize, bool),
) -> Result<(), TestCaseError> {
    if fuzz.decide(variant, Form::Login, &command).is_ok() {
        allowed.fetch_add(1, Ordering::Relaxed);
    }
    fuzz.check(variant, standalone, &command).map_err(|why| {
        TestCaseError::fail(format!(
            "policy {:?}: {why}\n  command: {:?}",
            VARIANTS[variant].name,
            String::from_utf8_lossy(&command)
        ))
    })
}

/// Run the command target over a strategy of byte strings; returns the executions.
fn run_commands(tag: &str, strategy: impl Strategy<Value = Vec<u8>>, default_cases: u32) -> usize {
    let fuzz = Fuzz::new(tag);
    let executions = AtomicUsize::new(0);
    let allowed = AtomicUsize::new(0);
    let mut runner = runner(default_cases);
    let result = runner.run(&(strategy, 0..VARIANTS.len(), any::<bool>()), |case| {
        executions.fetch_add(1, Ordering::Relaxed);
        command_case(&fuzz, &allowed, case)
    });
    let n = executions.load(Ordering::Relaxed);
    println!(
        "fuzz {tag}: {n} executions, {} allowed under the login form",
        allowed.load(Ordering::Relaxed),
    );
    if let Err(e) = result {
        panic!("{tag}: {e}");
    }
    n
}

// ---- targets ----------------------------------------------------------------------------

#[test]
fn arbitrary_bytes_never_panic_and_never_allow_garbage() {
    run_commands("bytes", arbitrary_command_bytes(), 2000);
}

#[test]
fn rsyncish_strings_never_panic_and_plans_keep_their_shape() {
    run_commands("rsyncish", rsyncish().prop_map(String::into_bytes), 2000);
}

/// rsync-shaped strings from a Latin-1 client: `é` sent as the single byte 0xE9, `日本`
/// as 0xFF, so names (and hostile pieces next to them) are not UTF-8.
fn latin1ish() -> impl Strategy<Value = Vec<u8>> {
    rsyncish().prop_map(|s| {
        let utf8 = s.as_bytes();
        let mut out = Vec::with_capacity(utf8.len());
        let mut i = 0;
        while i < utf8.len() {
            let rest = &utf8[i..];
            if rest.starts_with("\u{e9}".as_bytes()) {
                out.push(0xe9);
                i += 2;
            } else if rest.starts_with("\u{65e5}\u{672c}".as_bytes()) {
                out.push(0xff);
                i += 6;
            } else {
                out.push(rest[0]);
                i += 1;
            }
        }
        out
    })
}

#[test]
fn latin1_strings_never_panic_and_plans_keep_their_shape() {
    run_commands("latin1", latin1ish(), 1000);
}

/// TOML-ish text: real keys, sections and values in random order, plus noise.
fn tomlish() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("version = 1".to_string()),
        Just("version = 2".to_string()),
        Just("version = \"1\"".to_string()),
        Just("[defaults]".to_string()),
        Just("[users.alice]".to_string()),
        Just("[groups.backup]".to_string()),
        Just("[groups.alice]".to_string()),
        Just("[users]".to_string()),
        Just("[[users.alice]]".to_string()),
        Just("[users.\"a.b\"]".to_string()),
        Just("[groups.\"\"]".to_string()),
        Just("[unknown]".to_string()),
        (
            prop::sample::select(
                rshell::policy::KEYS
                    .iter()
                    .copied()
                    .chain(["bogus", "users", "defaults"])
                    .collect::<Vec<&str>>(),
            ),
            prop::sample::select(vec![
                "true",
                "false",
                "1",
                "-1",
                "0o77",
                "1e400",
                "\"/usr/bin/rsync\"",
                "\"~/backup\"",
                "\"~\"",
                "\"/srv/%u\"",
                "\"relative\"",
                "\"/a/../b\"",
                "\"/a*\"",
                "\"\"",
                "\"read-only\"",
                "\"write-only\"",
                "\"read-write\"",
                "\"auto\"",
                "\"require\"",
                "\"off\"",
                "\"0077\"",
                "\"999\"",
                "\"0x1\"",
                "\"7777\"",
                "[]",
                "[\"10.0.0.0/8\"]",
                "[\"::1/128\", \"192.168.1.1\"]",
                "[\"10.0.0.0/33\"]",
                "[\"x\"]",
                "[1]",
                "{}",
                "{ a = 1 }",
                "\"\\u0000\"",
                "'''\nmulti\n'''",
                "\"é\"",
                "\"\\uD800\"",
                "[\"1.2.3.4/0\"]",
            ]),
        )
            .prop_map(|(k, v)| format!("{k} = {v}")),
        "[ -~]{0,30}",
        "\\PC{0,20}",
    ];
    let header = prop_oneof![3 => Just("version = 1\n"), 1 => Just("")];
    (header, prop::collection::vec(line, 0..16))
        .prop_map(|(h, lines)| format!("{h}{}", lines.join("\n")))
}

/// The config texts: TOML-ish text, or any printable text.
fn config_texts() -> impl Strategy<Value = String> {
    prop_oneof![3 => tomlish(), 1 => ".{0,200}"]
}

/// One config case: `Config::parse` + `policy_for` for three accounts. A valid file yields
/// a policy (or the group-conflict sentence); an invalid one a `path:line:col: message`
/// error whose line lies inside the text.
fn config_case(text: &str, valid: &AtomicUsize) -> Result<(), TestCaseError> {
    let path = Path::new("/etc/rshell.toml");
    match Config::parse(path, text) {
        Ok(cfg) => {
            valid.fetch_add(1, Ordering::Relaxed);
            check_policies(&cfg)
        }
        Err(e) => check_invalid(&e, "/etc/rshell.toml", text),
    }
}

fn check_policies(cfg: &Config) -> Result<(), TestCaseError> {
    for (user, groups) in [
        ("alice", vec!["alice", "backup"]),
        ("bob", vec![]),
        ("", vec!["", "backup"]),
    ] {
        let groups: Vec<String> = groups.into_iter().map(str::to_string).collect();
        match cfg.policy_for(user, &groups) {
            Ok(p) => {
                let _ = p.rows();
            }
            Err(e @ ConfigError::GroupConflict { .. }) => {
                let shown = e.to_string();
                let path = cfg.path.display().to_string();
                prop_assert!(
                    shown.starts_with(&format!("{path}: user "))
                        && shown.contains(" which both set `"),
                    "group conflict renders oddly: {shown}"
                );
            }
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "policy_for: unexpected error {e:?}"
                )))
            }
        }
    }
    Ok(())
}

fn check_invalid(e: &ConfigError, path: &str, text: &str) -> Result<(), TestCaseError> {
    let shown = e.to_string();
    let ConfigError::Invalid { line, col, .. } = e else {
        return Err(TestCaseError::fail(format!(
            "parse gave a non-positional error: {shown}"
        )));
    };
    let rest = shown.strip_prefix(&format!("{path}:")).unwrap_or("");
    let mut parts = rest.splitn(3, ':');
    let (l, c) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    prop_assert!(
        l.parse::<usize>().is_ok()
            && c.parse::<usize>().is_ok()
            && parts.next().is_some_and(|m| m.len() > 1),
        "error does not render as path:line:col: message: {shown:?}"
    );
    prop_assert!(*line >= 1 && *col >= 1, "position is 1-based: {shown:?}");
    prop_assert!(
        *line <= text.split('\n').count(),
        "line {line} beyond the text ({shown:?})"
    );
    Ok(())
}

#[test]
fn config_text_never_panics_and_errors_name_a_position() {
    let executions = AtomicUsize::new(0);
    let valid = AtomicUsize::new(0);
    let mut runner = runner(1000);
    let result = runner.run(&config_texts(), |text| {
        executions.fetch_add(1, Ordering::Relaxed);
        config_case(&text, &valid)
    });
    println!(
        "fuzz config: {} executions, {} parsed as valid configs",
        executions.load(Ordering::Relaxed),
        valid.load(Ordering::Relaxed),
    );
    if let Err(e) = result {
        panic!("config: {e}");
    }
}

// ---- long runs (ignored by default) --------------------------------------------------------
//
//   RSHELL_FUZZ_CASES=5000000 nice cargo test --release --test fuzz -j1 -- \
//       --include-ignored long_ --test-threads=1 --nocapture
//
// Each `long_` target runs RSHELL_FUZZ_CASES cases (default 100,000) in chunks of 100,000,
// each chunk a fresh runner with a fixed seed derived from RSHELL_FUZZ_SEED (default: the
// clock) and printed, so a failing chunk replays with RSHELL_FUZZ_SEED=<seed>
// RSHELL_FUZZ_FROM_CHUNK=<chunk>. Progress and the rate are printed after every chunk.

const LONG_CHUNK: u64 = 100_000;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// Run `case` over `strategy` for RSHELL_FUZZ_CASES cases; returns the cases run.
fn run_long<S: Strategy>(
    tag: &str,
    strategy: &S,
    case: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> u64 {
    use proptest::test_runner::RngSeed;
    let total = env_u64("RSHELL_FUZZ_CASES").unwrap_or(100_000);
    let base = env_u64("RSHELL_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let first = env_u64("RSHELL_FUZZ_FROM_CHUNK").unwrap_or(0);
    let chunks = total.div_ceil(LONG_CHUNK);
    println!("long {tag}: {total} cases in {chunks} chunks, RSHELL_FUZZ_SEED={base}");
    let start = std::time::Instant::now();
    let mut done = 0u64;
    for chunk in first..chunks {
        let n = LONG_CHUNK.min(total - chunk * LONG_CHUNK);
        let seed = base ^ chunk.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut runner = TestRunner::new(RunnerConfig {
            cases: n as u32,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(seed),
            ..RunnerConfig::default()
        });
        if let Err(e) = runner.run(strategy, &case) {
            panic!(
                "long {tag}: chunk {chunk} failed (replay: RSHELL_FUZZ_SEED={base} \
                 RSHELL_FUZZ_FROM_CHUNK={chunk}): {e}"
            );
        }
        done += n;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "long {tag}: {done}/{total} cases, {secs:.0} s, {:.0} cases/s",
            done as f64 / secs.max(1e-9)
        );
    }
    done
}

#[test]
#[ignore = "long run: RSHELL_FUZZ_CASES=N cargo test --release --test fuzz -- --include-ignored long_"]
fn long_command_bytes() {
    let fuzz = Fuzz::new("long-bytes");
    let allowed = AtomicUsize::new(0);
    let strategy = (arbitrary_command_bytes(), 0..VARIANTS.len(), any::<bool>());
    let n = run_long("command bytes", &strategy, |c| {
        command_case(&fuzz, &allowed, c)
    });
    println!(
        "long command bytes: {n} cases, {} allowed under the login form",
        allowed.load(Ordering::Relaxed)
    );
}

#[test]
#[ignore = "long run: RSHELL_FUZZ_CASES=N cargo test --release --test fuzz -- --include-ignored long_"]
fn long_command_rsyncish() {
    let fuzz = Fuzz::new("long-rsyncish");
    let allowed = AtomicUsize::new(0);
    let strategy = (
        rsyncish().prop_map(String::into_bytes),
        0..VARIANTS.len(),
        any::<bool>(),
    );
    let n = run_long("command rsyncish", &strategy, |c| {
        command_case(&fuzz, &allowed, c)
    });
    println!(
        "long command rsyncish: {n} cases, {} allowed under the login form",
        allowed.load(Ordering::Relaxed)
    );
}

#[test]
#[ignore = "long run: RSHELL_FUZZ_CASES=N cargo test --release --test fuzz -- --include-ignored long_"]
fn long_config_text() {
    let valid = AtomicUsize::new(0);
    let n = run_long("config text", &config_texts(), |text| {
        config_case(&text, &valid)
    });
    println!(
        "long config text: {n} cases, {} valid",
        valid.load(Ordering::Relaxed)
    );
}

/// Bytes for a config file: TOML-ish text as it is, or with invalid UTF-8, NULs, a BOM or
/// CRLF spliced in, or arbitrary bytes.
fn config_file_bytes() -> impl Strategy<Value = Vec<u8>> {
    let splice = prop::sample::select(vec![
        b"\xff".to_vec(),
        b"\xc3".to_vec(),
        b"\xed\xa0\x80".to_vec(),
        b"\0".to_vec(),
        b"\xef\xbb\xbf".to_vec(),
        b"\r\n".to_vec(),
        b"\r".to_vec(),
        b"\n[defaults]\n".to_vec(),
    ]);
    prop_oneof![
        4 => tomlish().prop_map(String::into_bytes),
        3 => (tomlish(), splice, any::<prop::sample::Index>()).prop_map(|(t, piece, at)| {
            let mut b = t.into_bytes();
            let i = at.index(b.len() + 1);
            b.splice(i..i, piece);
            b
        }),
        1 => prop::collection::vec(any::<u8>(), 0..300),
    ]
}

/// The loader itself (`Config::load`: the ownership and mode checks, the read, the
/// parse) on a real file per case, root-owned in a root-owned 0755 directory, with its
/// mode drawn from safe and unsafe ones and sometimes a symlink in its place.
#[test]
#[ignore = "long run: RSHELL_FUZZ_CASES=N cargo test --release --test fuzz -- --include-ignored long_"]
fn long_config_load() {
    use std::os::unix::fs::PermissionsExt;
    if !common::needs(
        "root (the loader trusts only root-owned files)",
        common::root(),
    ) {
        return;
    }
    let dir = common::TempDir::new("long-load");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("rshell.toml");
    let link = dir.path().join("link.toml");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let shown = path.display().to_string();
    let valid = AtomicUsize::new(0);
    let modes = prop::sample::select(vec![0o644, 0o600, 0o400, 0o664, 0o646, 0o000]);
    let strategy = (config_file_bytes(), modes, 0..20u8);
    let n = run_long("config load", &strategy, |(bytes, mode, via)| {
        std::fs::write(&path, &bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let through_link = via == 0;
        let got = Config::load(if through_link { &link } else { &path });
        let text = std::str::from_utf8(&bytes);
        match got {
            Err(ConfigError::Insecure(_, why)) => {
                prop_assert!(
                    through_link || mode & 0o022 != 0,
                    "a safe file refused as insecure: {why}"
                );
                Ok(())
            }
            _ if through_link => Err(TestCaseError::fail("a symlink was not refused")),
            _ if mode & 0o022 != 0 => Err(TestCaseError::fail(format!(
                "a mode {mode:04o} file was not refused"
            ))),
            Err(ConfigError::Unreadable(_, why)) => {
                prop_assert!(text.is_err(), "valid UTF-8 unreadable: {why}");
                Ok(())
            }
            Ok(cfg) => {
                valid.fetch_add(1, Ordering::Relaxed);
                let text = text.map_err(|_| TestCaseError::fail("invalid UTF-8 loaded"))?;
                prop_assert!(
                    Config::parse(&path, text).is_ok(),
                    "load and parse disagree"
                );
                check_policies(&cfg)
            }
            Err(e @ ConfigError::Invalid { .. }) => {
                let text = text.map_err(|_| TestCaseError::fail("invalid UTF-8 parsed"))?;
                check_invalid(&e, &shown, text)
            }
            Err(e) => Err(TestCaseError::fail(format!("unexpected error {e:?}"))),
        }
    });
    println!(
        "long config load: {n} cases, {} valid",
        valid.load(Ordering::Relaxed)
    );
}

// ---- the secluded-args reader ---------------------------------------------------------------

/// A stream on rshell's standard input after `rsync --server -s…`: mostly `rsync` NUL, words
/// (corpus pieces, raw bytes, `.`, an early empty word) each NUL-terminated, maybe the
/// terminating empty word, then protocol bytes; else a cut-off `rsync\0` or arbitrary bytes.
fn secluded_stream() -> impl Strategy<Value = Vec<u8>> {
    let word = prop_oneof![
        4 => prop::sample::select(fragments()).prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..12),
        1 => Just(b".".to_vec()),
        1 => Just(Vec::new()),
    ];
    let tail = prop::collection::vec(any::<u8>(), 0..8);
    // What a real client sends: a few options, `.`, then paths (hostile ones included).
    let option = prop::sample::select(vec![
        "--numeric-ids",
        "--delete",
        "--timeout=600",
        "-x",
        "--partial",
        "--link-dest=../prev",
        "--backup-dir=old",
        "--files-from=-",
        "--from0",
        "-M--log-file=x",
    ]);
    let component = prop::sample::select(vec![
        "dest", "data", "sub", "a.txt", "snap", "prev", "src dir", "..", ".", "", "out", "in", "*",
        "?", "[a-z]*", "d*", "o*", "~", "-x", "é", "new", "a b", "'q'",
    ]);
    let path = slash_path(component, 5);
    let realistic = (
        prop::collection::vec(option, 0..3),
        prop::collection::vec(path, 1..3),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(opts, paths, tail)| {
            let mut s = b"rsync\0".to_vec();
            for w in opts
                .iter()
                .map(|o| o.to_string())
                .chain([".".to_string()])
                .chain(paths)
            {
                s.extend(w.as_bytes());
                s.push(0);
            }
            s.push(0);
            s.extend(tail);
            s
        });
    prop_oneof![
        4 => realistic,
        6 => (prop::collection::vec(word, 0..10), any::<bool>(), tail).prop_map(
            |(words, terminated, tail)| {
                let mut s = b"rsync\0".to_vec();
                for w in words {
                    s.extend(w);
                    s.push(0);
                }
                if terminated {
                    s.push(0);
                }
                s.extend(tail);
                s
            }
        ),
        1 => (0..7usize, prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(k, rest)| [&b"rsync\0"[..k], &rest].concat()),
        1 => prop::collection::vec(any::<u8>(), 0..300),
    ]
}

/// What [`rshell::command::secluded::read_words`] must do with `stream`, and how many bytes it may
/// consume doing it (never one past the terminating empty word or the refused byte).
#[derive(Debug, PartialEq)]
enum Expect {
    Words(Vec<Vec<u8>>),
    NotRsync,
    WordTooLong,
    TooManyWords,
    TooLarge,
    Eof,
    Timeout,
}

fn secluded_model(
    stream: &[u8],
    l: &rshell::command::secluded::Limits,
    open: bool,
) -> (Expect, usize) {
    let (mut words, mut cur): (Vec<Vec<u8>>, Vec<u8>) = (Vec::new(), Vec::new());
    for pos in 0.. {
        if pos >= l.max_total {
            return (Expect::TooLarge, pos);
        }
        let Some(&b) = stream.get(pos) else {
            return (if open { Expect::Timeout } else { Expect::Eof }, pos);
        };
        if pos < 6 {
            if b != b"rsync\0"[pos] {
                return (Expect::NotRsync, pos + 1);
            }
        } else if b == 0 {
            if cur.is_empty() {
                return (Expect::Words(words), pos + 1);
            }
            words.push(std::mem::take(&mut cur));
        } else if cur.is_empty() && words.len() >= l.max_words {
            return (Expect::TooManyWords, pos + 1);
        } else if cur.len() >= l.max_word {
            return (Expect::WordTooLong, pos + 1);
        } else {
            cur.push(b);
        }
    }
    unreachable!()
}

type SecludedInput = (Vec<u8>, (usize, usize, usize), bool, String, usize);

fn secluded_inputs() -> impl Strategy<Value = SecludedInput> {
    let limits = prop_oneof![
        1 => Just((4095, 1000, 256 * 1024)),
        1 => (0..24usize, 0..10usize, 0..160usize),
    ];
    let valid_line = prop::sample::select(vec![
        "rsync --server -slogDtpre.iLsfxCIvu",
        "rsync --server --sender -slogDtpre.iLsfxCIvu",
        "/usr/bin/rsync --server --sender -slHogDtprcxe.iLsfxC",
        "rsync --server -se.iLsfxCIvu",
    ])
    .prop_map(str::to_string);
    let any_line = (
        prop::sample::select(vec![
            "rsync --server ",
            "rsync --server --sender ",
            "/usr/bin/rsync --server ",
            "rsync ",
            "rsync --server --daemon ",
        ]),
        prop::sample::select(vec![
            "-slogDtpre.iLsfxCIvu",
            "-logDtpre.iLsfxCIvu",
            "-se.iLsfxCIvu",
            "-s",
            "-Bs",
            "-slHogDtprcxe.iLsfxC",
            "-e.s",
            "-vvsx",
            "--secluded-args",
        ]),
        prop::sample::select(vec!["", " --iconv=utf8", " x", " ."]),
    )
        .prop_map(|(a, b, c)| format!("{a}{b}{c}"));
    let line = prop_oneof![3 => valid_line, 1 => any_line];
    (
        secluded_stream(),
        limits,
        prop::bool::weighted(0.03),
        line,
        0..VARIANTS.len(),
    )
}

/// One stream through a pipe into `read_words` (bytes written up front; the write end
/// closed, or held open to hit the deadline), checked against [`secluded_model`] including
/// what is left unread; then `to_words` on a client command line, `rsync::parse` and the
/// policy decision, with the plan invariants of [`Fuzz::check_plan`].
fn secluded_case(
    fuzz: &Fuzz,
    root: &rshell::decide::resolve::Root,
    allowed: &AtomicUsize,
    (stream, (max_word, max_words, max_total), open, line, variant): SecludedInput,
) -> Result<(), TestCaseError> {
    use rshell::command::secluded::{read_words, to_words, Limits, SecludedError, POSITION_BASE};
    use std::os::fd::AsFd;
    let limits = Limits {
        max_word,
        max_words,
        max_total,
        deadline: std::time::Duration::from_millis(if open { 2 } else { 30_000 }),
    };
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut rest = stream.as_slice();
    while !rest.is_empty() {
        let n = nix::unistd::write(&w, rest).unwrap();
        rest = &rest[n..];
    }
    // Closed before reading unless the case holds it open (then the deadline must end it).
    let w = if open {
        Some(w)
    } else {
        drop(w);
        None
    };
    let got = read_words(r.as_fd(), &limits);
    drop(w);
    let mut left = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match nix::unistd::read(&r, &mut buf).unwrap() {
            0 => break,
            n => left.extend_from_slice(&buf[..n]),
        }
    }
    let (want, consumed) = secluded_model(&stream, &limits, open);
    let kind = match &got {
        Ok(words) => Expect::Words(words.clone()),
        Err(SecludedError::NotRsync) => Expect::NotRsync,
        Err(SecludedError::WordTooLong { .. }) => Expect::WordTooLong,
        Err(SecludedError::TooManyWords { .. }) => Expect::TooManyWords,
        Err(SecludedError::TooLarge { .. }) => Expect::TooLarge,
        Err(SecludedError::Eof { .. }) => Expect::Eof,
        Err(SecludedError::Timeout(_)) => Expect::Timeout,
        Err(e) => return Err(TestCaseError::fail(format!("read_words: unexpected {e}"))),
    };
    if open && kind == Expect::Timeout {
        // The deadline covers the whole list, data waiting or not: on a busy machine it may
        // pass before the model's verdict is reached, or before every waiting byte of a
        // list that times out anyway was read. Then nothing past the model's stop was read.
        prop_assert!(
            left.len() >= stream.len() - consumed && stream.ends_with(&left),
            "timed out after reading past the model's stop"
        );
        return Ok(());
    }
    prop_assert_eq!(
        &kind,
        &want,
        "stream {:?}, limits {:?}, open {}",
        String::from_utf8_lossy(&stream),
        (max_word, max_words, max_total),
        open
    );
    prop_assert_eq!(
        left.as_slice(),
        &stream[consumed..],
        "read_words consumed the wrong number of bytes"
    );
    if let Err(e) = &got {
        prop_assert!(!e.to_string().contains('\n'), "a multi-line message: {e}");
    }
    let Ok(secluded) = got else { return Ok(()) };
    let words = rshell::command::split(line.as_bytes())
        .map_err(|e| TestCaseError::fail(format!("the test's command line: {e}")))?;
    let Ok(all) = to_words(&words, &secluded) else {
        return Ok(());
    };
    let tail = &all[all.len() - secluded.len()..];
    let mut after_dot = false;
    for (i, (word, raw)) in tail.iter().zip(&secluded).enumerate() {
        prop_assert_eq!(word.text.as_slice(), raw.as_slice());
        prop_assert_eq!(word.position, POSITION_BASE + i);
        prop_assert!(!word.tilde, "a secluded word with tilde expansion");
        prop_assert!(
            !word
                .text
                .utf8_chunks()
                .flat_map(|c| c.valid().chars())
                .any(|c| c.is_control() && c != '\t'),
            "a control character passed: {:?}",
            word.text
        );
        prop_assert!(
            after_dot || word.active_glob.is_empty(),
            "an active wildcard before the first `.`: {:?}",
            word.text
        );
        after_dot |= word.text == b".";
    }
    prop_assert!(
        !all[..all.len() - secluded.len()].iter().any(|w| w
            .utf8()
            .is_some_and(rshell::command::secluded::is_secluded_bundle)),
        "the rebuilt command line still carries `s`"
    );
    let policy = &fuzz.policies[variant];
    let Ok(invocation) = rshell::rsync::parse(&all, &policy.settings.rsync) else {
        return Ok(());
    };
    let account = account(&fuzz.world.home);
    let request = rshell::decide::Request {
        account: &account,
        client: Some("127.0.0.1".parse().unwrap()),
        invocation: &invocation,
        policy,
        root,
        landlock_enforced: rshell::landlock_will_enforce(policy.settings.confine),
    };
    match rshell::decide::decide(&request) {
        rshell::decide::Verdict::Deny(reason) => {
            prop_assert!(!reason.is_empty(), "denied with an empty reason");
            Ok(())
        }
        rshell::decide::Verdict::Allow(plan) => {
            allowed.fetch_add(1, Ordering::Relaxed);
            fuzz.check_plan(variant, &plan).map_err(|why| {
                TestCaseError::fail(format!(
                    "policy {:?}: {why}\n  line: {line:?}\n  secluded: {:?}",
                    VARIANTS[variant].name,
                    secluded
                        .iter()
                        .map(|w| String::from_utf8_lossy(w))
                        .collect::<Vec<_>>()
                ))
            })
        }
    }
}

#[test]
fn secluded_streams_are_read_exactly_and_never_panic() {
    let fuzz = Fuzz::new("secluded");
    let root = rshell::decide::resolve::Root::open(&fuzz.world.root).unwrap();
    let allowed = AtomicUsize::new(0);
    let executions = AtomicUsize::new(0);
    let mut runner = runner(1000);
    let result = runner.run(&secluded_inputs(), |case| {
        executions.fetch_add(1, Ordering::Relaxed);
        secluded_case(&fuzz, &root, &allowed, case)
    });
    println!(
        "fuzz secluded: {} executions, {} allowed",
        executions.load(Ordering::Relaxed),
        allowed.load(Ordering::Relaxed)
    );
    if let Err(e) = result {
        panic!("secluded: {e}");
    }
}

#[test]
#[ignore = "long run: RSHELL_FUZZ_CASES=N cargo test --release --test fuzz -- --include-ignored long_"]
fn long_secluded() {
    let fuzz = Fuzz::new("long-secluded");
    let root = rshell::decide::resolve::Root::open(&fuzz.world.root).unwrap();
    let allowed = AtomicUsize::new(0);
    let n = run_long("secluded", &secluded_inputs(), |case| {
        secluded_case(&fuzz, &root, &allowed, case)
    });
    println!(
        "long secluded: {n} cases, {} allowed",
        allowed.load(Ordering::Relaxed)
    );
}

// ---- regressions found by the targets above (one named test per finding) ----------------

/// F1: a lone carriage return (a file saved with old Mac line endings, or a stray CR)
/// gave `/etc/rshell.toml:1:1: ` — a position and no message at all.
#[test]
fn given_a_lone_carriage_return_then_the_config_error_says_what_is_wrong() {
    for text in ["\r", "version = 1\r", "version = 1\n[defaults]\r"] {
        let e = Config::parse(Path::new("/etc/rshell.toml"), text).expect_err("not valid TOML");
        let ConfigError::Invalid { message, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(
            !message.trim().is_empty(),
            "{text:?} gave an error with no message: {e}"
        );
    }
}

/// F2: `/-x` (root's `-x`) was allowed and became the word `-x` after `--` in the argv.
/// rsync will not read it as an option there, but rshell's own rule is that no path word
/// it hands rsync starts with `-` (the parser refuses `-x` itself): it is handed over
/// beneath the pinned root, `/proc/self/fd/N/-x`.
#[test]
fn given_a_path_that_maps_to_a_dash_name_then_no_argv_word_after_the_double_dash_starts_with_a_dash(
) {
    let fuzz = Fuzz::new("f2");
    for command in [
        "rsync --server -logDtpre.iLsfxCIvu . /-x",
        "rsync --server -logDtpre.iLsfxCIvu . ~/-x",
        // A wildcard that matches only the root's `-x`.
        "rsync --server --sender -logDtpre.iLsfxCIvu . ?x",
    ] {
        let plan = fuzz
            .decide(0, Form::Login, command.as_bytes())
            .unwrap_or_else(|e| panic!("{command}: {e:?}"));
        let shown = plan.shown_argv();
        let dd = shown.iter().position(|a| a == "--").expect("a `--`");
        assert_eq!(shown[dd + 1..], [".", "<.>/-x"], "{command}");
        assert!(
            plan.argv[dd + 2].as_bytes().starts_with(b"/proc/self/fd/"),
            "{command}"
        );
    }
}

/// F3: `é/../out` (a missing name, `..`, then the root's symlink `out -> /`) was allowed,
/// for pushes and pulls, under every policy: `resolve::check_components` cancels
/// `missing/..` and accepts the remainder `out` without asking the kernel, although it
/// exists and leads out of root. rsync fails on the missing name today, but a second
/// connection that creates it between check and use (pulls take no lock), or an option
/// rsync creates directories for, would make it resolve. Landlock (`confine`) and
/// `--confine-root` are the remaining guards.
#[test]
fn given_a_missing_name_then_dotdot_then_a_symlink_out_then_the_path_is_refused() {
    let fuzz = Fuzz::new("f3");
    for command in [
        "rsync --server -logDtpre.iLsfxCIvu . é/../out",
        "rsync --server -logDtpre.iLsfxCIvu . zz/../out/",
        "rsync --server --sender -logDtpre.iLsfxCIvu . zz/../out/etc/passwd",
        "rsync --server -logDtpre.iLsfxCIvu --backup-dir=zz/../../out/bk . dest/",
    ] {
        for variant in [0, 1, 2] {
            let got = fuzz.decide(variant, Form::Login, command.as_bytes());
            assert!(
                got.is_err(),
                "{command} under {:?} was allowed: {got:?}",
                VARIANTS[variant].name
            );
        }
    }
}

/// F4 (long run, an oracle finding): `./dest` in a pull is handed to rsync as the root's
/// pin followed by the name, `/proc/self/fd/N/dest`, shown as `<.>/dest` (the root's pin is
/// shown as `.`). An older oracle read the root pin's empty name plus `/dest` as the
/// absolute path `/dest`; rshell was right, and the oracle maps `<.>/x` to `./x`.
#[test]
fn given_a_dot_slash_path_then_it_is_the_roots_pin_plus_the_name() {
    let fuzz = Fuzz::new("f4");
    let plan = fuzz
        .decide(
            0,
            Form::Login,
            b"rsync --server --sender -logDtpre.iLsfxCIvu . ./dest",
        )
        .expect("allowed");
    let shown = plan.shown_argv();
    let dd = plan.argv.iter().position(|a| a == "--").expect("a `--`");
    assert_eq!(shown[dd + 1..], [".", "<.>/dest"]);
    assert!(
        plan.argv[dd + 2].as_bytes().starts_with(b"/proc/self/fd/"),
        "{:?}",
        plan.argv
    );
    assert_eq!(fuzz.check_plan(0, &plan), Ok(()));
}

/// F5 (long run, secluded target, an oracle finding): the secluded words `.` `./-x` in a
/// pull become `/proc/self/fd/N/-x`, which rsync cannot take for an option; the oracle
/// checked the `-` rule on the unpinned spelling `-x`. It now checks the words rsync reads.
#[test]
fn given_secluded_dot_slash_dash_x_then_rsync_gets_a_pinned_path_not_an_option() {
    use rshell::command::secluded::to_words;
    let fuzz = Fuzz::new("f5");
    let root = rshell::decide::resolve::Root::open(&fuzz.world.root).unwrap();
    let line = rshell::command::split(b"rsync --server --sender -slogDtpre.iLsfxCIvu").unwrap();
    let words = to_words(&line, &[b".".to_vec(), b"./-x".to_vec()]).unwrap();
    let policy = &fuzz.policies[0];
    let invocation = rshell::rsync::parse(&words, &policy.settings.rsync).unwrap();
    let account = account(&fuzz.world.home);
    let request = rshell::decide::Request {
        account: &account,
        client: None,
        invocation: &invocation,
        policy,
        root: &root,
        landlock_enforced: false,
    };
    let rshell::decide::Verdict::Allow(plan) = rshell::decide::decide(&request) else {
        panic!("./-x in the root was refused")
    };
    let dd = plan.argv.iter().position(|a| a == "--").expect("a `--`");
    assert!(
        plan.argv[dd + 2..]
            .iter()
            .all(|w| !w.as_bytes().starts_with(b"-")),
        "{:?}",
        plan.argv
    );
    assert_eq!(fuzz.check_plan(0, &plan), Ok(()));
}

/// F6 (long run, an oracle finding): `rsync --server . data/file\<TAB>` was allowed, and the
/// oracle called the escaped TAB shell syntax. A backslash-escaped TAB is a TAB in the name,
/// exactly as `'file<TAB>'` is, and rsync's client sends a TAB in a file name that way (its
/// safe_arg() backslash-escapes SHELL_CHARS, TAB among them); the splitter accepts both
/// spellings by design (command.rs tests). The oracle now agrees; an unquoted TAB (a word
/// separator for a shell) is still refused.
#[test]
fn given_an_escaped_tab_then_it_is_part_of_the_name_like_a_quoted_one() {
    let fuzz = Fuzz::new("f6");
    std::fs::write(fuzz.world.root.join("data/file\t"), "").unwrap();
    for command in [
        "rsync --server --sender -logDtpre.iLsfxCIvu . data/file\\\t",
        "rsync --server --sender -logDtpre.iLsfxCIvu . 'data/file\t'",
    ] {
        let plan = fuzz
            .decide(0, Form::Login, command.as_bytes())
            .unwrap_or_else(|e| panic!("{command:?}: {e:?}"));
        assert!(
            plan.shown_argv()
                .iter()
                .any(|w| w.ends_with("file\t") || w.contains("file\t>")),
            "{command:?}: {:?}",
            plan.shown_argv()
        );
        assert_eq!(fuzz.check(0, false, command.as_bytes()), Ok(()));
    }
    assert!(fuzz
        .decide(
            0,
            Form::Login,
            b"rsync --server --sender -logDtpre.iLsfxCIvu . data/file\t"
        )
        .is_err());
}
