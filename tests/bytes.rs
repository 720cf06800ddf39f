//! Names are bytes (issue 11): a client with Latin-1 file names sends `café` as
//! `caf\xe9` (one byte 0xE9), on the command line or as secluded words. Such a request is
//! split, parsed, resolved beneath the root and exec'd with exactly those bytes; every
//! check a UTF-8 name gets still applies (a Latin-1 name does not carry `..`, a symlink or
//! an option out of the root); messages show the bytes with the log's escaping
//! (`\xe9`), never a lossy conversion. Runs the real decision code on a parsed policy.
mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::{World, REFERENCE};
use rshell::decide::ExecPlan;
use rshell::Failure;
use rstest::rstest;

/// The request `command` (bytes, as sshd hands them over) under `policy`; with `stdin`,
/// a secluded-args request whose words are `stdin` (the words after `rsync`).
fn decide(world: &World, command: &[u8], stdin: Option<&[&[u8]]>) -> Result<ExecPlan, Failure> {
    let words: Option<Vec<Vec<u8>>> = stdin.map(|w| w.iter().map(|w| w.to_vec()).collect());
    world.decide_bytes(&world.policy(REFERENCE), command, words.as_deref())
}

/// A world whose root holds a Latin-1 directory `caf\xe9/` with a file `n\xff` in it, a
/// directory `d\xff/`, and a symlink `l\xe9 -> /`.
fn latin1_world(tag: &str) -> World {
    let world = World::new(tag);
    let at = |name: &[u8]| world.root.join(OsStr::from_bytes(name));
    std::fs::create_dir(at(b"caf\xe9")).unwrap();
    std::fs::write(at(b"caf\xe9/n\xff"), b"x").unwrap();
    std::fs::create_dir(at(b"d\xff")).unwrap();
    std::os::unix::fs::symlink("/", at(b"l\xe9")).unwrap();
    world
}

fn argv_bytes(plan: &ExecPlan) -> Vec<&[u8]> {
    plan.argv.iter().map(|a| a.as_bytes()).collect()
}

const PUSH: &[u8] = b"rsync --server -logDtpre.iLsfxCIvu";
const PULL: &[u8] = b"rsync --server --sender -logDtpre.iLsfxCIvu";

/// Allowed: the shown argv (pins as `<path>`, bytes) ends in `tail`, and the paths the log
/// record gets are the bytes the client named.
#[rstest]
#[case::push_into_latin1_dir(PUSH, b". caf\xe9/", b"<caf\xe9>/", b"caf\xe9")]
#[case::push_new_latin1_name(PUSH, b". d\xff/new\xe9", b"<d\xff>/new\xe9", b"d\xff/new\xe9")]
#[case::push_quoted(PUSH, b". 'caf\xe9/x y\xff'", b"<caf\xe9>/x y\xff", b"caf\xe9/x y\xff")]
#[case::push_escaped(PUSH, b". caf\\\xe9/x\\ y", b"<caf\xe9>/x y", b"caf\xe9/x y")]
#[case::pull_trailing_ff(PULL, b". caf\xe9/n\xff", b"<caf\xe9>/n\xff", b"caf\xe9/n\xff")]
#[case::pull_absolute(PULL, b". /caf\xe9/", b"<caf\xe9>/", b"caf\xe9")]
#[case::pull_wildcard(PULL, b". caf?/n*", b"<caf\xe9>/n\xff", b"caf\xe9/n\xff")]
fn latin1_names_are_exec_d_as_their_bytes(
    #[case] head: &[u8],
    #[case] rest: &[u8],
    #[case] tail: &[u8],
    #[case] logged: &[u8],
) {
    let world = latin1_world("bytes-allow");
    let command = [head, b" ", rest].concat();
    let plan = decide(&world, &command, None)
        .unwrap_or_else(|e| panic!("{:?} refused: {e:?}", command.escape_ascii().to_string()));
    let shown = plan.shown_argv_bytes();
    assert_eq!(shown.last().unwrap(), tail, "{:?}", plan.shown_argv());
    assert_eq!(plan.paths, [logged.to_vec()]);
    // The exec'd word is the pin plus the same bytes.
    let last = *argv_bytes(&plan).last().unwrap();
    assert!(last.starts_with(b"/proc/self/fd/"), "{last:?}");
    let after_pin = &tail[tail.iter().position(|&b| b == b'>').unwrap() + 1..];
    assert!(last.ends_with(after_pin), "{last:?}");
}

/// Path-valued options take bytes too, and are pinned like any other.
#[test]
fn latin1_option_paths_are_resolved_and_pinned() {
    let world = latin1_world("bytes-options");
    let plan = decide(
        &world,
        b"rsync --server -blogDtpre.iLsfxCIvu --backup-dir=old\xe9 --partial-dir=.p\xff --link-dest=../d\xff . caf\xe9/",
        None,
    )
    .unwrap();
    let shown = plan.shown_argv_bytes();
    let has = |w: &[u8]| shown.iter().any(|s| s == w);
    let text = plan.shown_argv();
    assert!(has(b"--backup-dir=<caf\xe9/old\xe9>"), "{text:?}");
    assert!(has(b"--partial-dir=.p\xff"), "{text:?}");
    // Relative to the destination, as rsync takes it; pinned where the kernel found it.
    assert!(has(b"--link-dest=<caf\xe9/../d\xff>"), "{text:?}");
}

/// The attack twins: a Latin-1 name next to `..`, a symlink out or a leading `-` is
/// refused exactly as a UTF-8 name is, and the reason shows the bytes escaped.
#[rstest]
#[case::dotdot_after_existing(
    PUSH,
    b". caf\xe9/../../x/",
    "\"caf\\xe9/../../x/\" leads outside root"
)]
#[case::dotdot_after_missing(
    PUSH,
    b". n\xe9u/../../x/",
    "`..` after a name that does not exist yet"
)]
#[case::dotdot_pull(PULL, b". caf\xe9/../../etc/passwd", "leads outside root")]
#[case::dotdot_quoted(PULL, b". 'caf\xe9/../../etc/'", "leads outside root")]
#[case::symlink_out(
    PULL,
    b". l\xe9/etc/passwd",
    "\"l\\xe9/etc/passwd\" leads outside root"
)]
#[case::symlink_out_push(PUSH, b". l\xe9/tmp/", "leads outside root")]
#[case::backup_dir_out(
    PUSH,
    b"--backup-dir=../../\xe9 . caf\xe9/",
    "--backup-dir: \"../../\\xe9\" leads outside root"
)]
#[case::link_dest_out(PUSH, b"--link-dest=../l\xe9/etc . caf\xe9/", "leads outside root")]
#[case::partial_dir_not_plain(PUSH, b"--partial-dir=\xe9/.. . caf\xe9/", "must be one plain name")]
#[case::tilde_user(
    PULL,
    b". ~r\xe9ot/.ssh",
    "\"~r\\xe9ot/.ssh\": `~user` paths are not allowed"
)]
#[case::dash_path(PULL, b". -\xe9", "path \"-\\xe9\" starts with `-`")]
#[case::shell_syntax(PULL, b". caf\xe9;id", "unquoted ';'")]
#[case::control(PULL, b". caf\xe9\x1b[2J", "control character U+001B")]
#[case::non_utf8_suffix(
    PUSH,
    b"--suffix=\xe9 . caf\xe9/",
    "the value of --suffix is not valid UTF-8"
)]
#[case::non_utf8_option_name(PUSH, b"--d\xe9lete . caf\xe9/", "unknown option --d\\xe9lete")]
#[case::non_utf8_program(b"rsync\xe9 --server", b". caf\xe9/", "not \"rsync\\xe9\"")]
fn latin1_escape_attempts_are_refused(
    #[case] head: &[u8],
    #[case] rest: &[u8],
    #[case] reason: &str,
) {
    let world = latin1_world("bytes-deny");
    let command = [head, b" ", rest].concat();
    match decide(&world, &command, None) {
        Err(Failure::Denied(why)) => assert!(why.contains(reason), "{why:?} lacks {reason:?}"),
        other => panic!(
            "{:?} was not refused: {other:?}",
            command.escape_ascii().to_string()
        ),
    }
}

/// Secluded words (`rsync -s`: NUL-terminated bytes on standard input) are names too.
#[test]
fn latin1_secluded_words_are_names_and_get_the_same_vetting() {
    let world = latin1_world("bytes-secluded");
    let line = b"rsync --server -slogDtpre.iLsfxCIvu";
    let plan = decide(&world, line, Some(&[b".", b"caf\xe9/"])).unwrap();
    assert_eq!(plan.shown_argv_bytes().last().unwrap(), b"<caf\xe9>/");
    assert!(!argv_bytes(&plan).contains(&&b"-slogDtpre.iLsfxCIvu"[..]));
    let pull = b"rsync --server --sender -slogDtpre.iLsfxCIvu";
    let plan = decide(&world, pull, Some(&[b".", b"caf\xe9/n\xff"])).unwrap();
    assert_eq!(plan.shown_argv_bytes().last().unwrap(), b"<caf\xe9>/n\xff");
    // A space is part of a secluded name; a wildcard after `.` expands beneath root.
    let plan = decide(&world, pull, Some(&[b".", b"caf\xe9/n*"])).unwrap();
    assert_eq!(plan.paths, [b"caf\xe9/n\xff".to_vec()]);
    for (words, reason) in [
        (
            &[&b"."[..], b"caf\xe9/../../etc/"][..],
            "leads outside root",
        ),
        (&[b".", b"l\xe9/etc/passwd"], "leads outside root"),
        (
            &[b"--backup-dir=../../\xe9", b".", b"caf\xe9/"],
            "leads outside root",
        ),
        (
            &[b"--suffix=\xe9", b".", b"caf\xe9/"],
            "--suffix is not valid UTF-8",
        ),
        (&[b".", b"caf\xe9\n"], "control character U+000A"),
    ] {
        match decide(&world, line, Some(words)) {
            Err(Failure::Denied(why)) => assert!(why.contains(reason), "{why:?} lacks {reason:?}"),
            other => panic!("{words:?} was not refused: {other:?}"),
        }
    }
}

/// What `--test` and the log show: the shown argv as text escapes what is not UTF-8, the
/// log record escapes each path (`\xe9`); nothing is replaced by U+FFFD anywhere.
#[test]
fn latin1_names_are_shown_escaped_and_never_lossy() {
    let world = latin1_world("bytes-shown");
    let plan = decide(
        &world,
        b"rsync --server --sender -logDtpre.iLsfxCIvu . caf\xe9/n\xff",
        None,
    )
    .unwrap();
    let shown = plan.shown_argv();
    assert_eq!(shown.last().unwrap(), "<caf\\xe9>/n\\xff");
    assert!(!shown.iter().any(|w| w.contains('\u{fffd}')), "{shown:?}");
    let record = rshell::log::Decision {
        allowed: true,
        paths: plan.paths.clone(),
        command: rshell::log::escape_bytes(b"rsync . caf\xe9/n\xff", 1024),
        ..Default::default()
    };
    let line = record.line();
    assert!(line.ends_with(" paths=\"caf\\xe9/n\\xff\""), "{line}");
    assert!(
        line.contains("command=\"rsync . caf\\xe9/n\\xff\""),
        "{line}"
    );
    // The client's refusal line is escaped for a terminal: the reason carries `\xe9` as
    // text already, so no raw byte reaches the client's terminal.
    let Err(Failure::Denied(why)) = decide(&world, b"rsync --server . caf\xe9/../../x/", None)
    else {
        panic!("allowed");
    };
    assert!(why.is_ascii(), "{why:?}");
    assert_eq!(rshell::log::escape_for_terminal(&why, 1024), why);
}

/// With the real rsync, through the built binary as an rrsync-style forced command (the
/// client's command in `SSH_ORIGINAL_COMMAND`, as sshd sets it; a small `-e` script stands
/// in for ssh): a push into `d\xe9st/` and pulls of `d\xe9st/n\xff` land the very bytes on
/// disk, plain and with `-s`; the `..` twin is refused.
#[test]
fn latin1_names_travel_through_the_real_rsync_byte_for_byte() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;
    if !common::needs("root, to own the test config", common::root())
        || !common::needs("rsync", common::program("/usr/bin/rsync"))
    {
        return;
    }
    let dir = common::TempDir::trusted("bytes-rsync");
    let root = dir.path().join("root");
    let src = dir.path().join("src");
    let back = dir.path().join("back");
    for d in [&root, &src, &back] {
        std::fs::create_dir(d).unwrap();
    }
    let config = dir.path().join("rshell.toml");
    std::fs::write(
        &config,
        format!("version = 1\n[defaults]\nroot = \"{}\"\n", root.display()),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    // What sshd does with a forced command: the client's words joined by spaces (rsync's
    // client has escaped them for a shell) in SSH_ORIGINAL_COMMAND, and a clean start.
    let ssh = dir.path().join("fake-ssh");
    std::fs::write(
        &ssh,
        format!(
            "#!/bin/sh\nshift\nexec env -i SSH_ORIGINAL_COMMAND=\"$*\" {} --config {} {}\n",
            common::binary(),
            config.display(),
            root.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let at = |base: &Path, name: &[u8]| base.join(OsStr::from_bytes(name));
    std::fs::write(at(&src, b"caf\xe9.txt"), b"e9\n").unwrap();
    std::fs::write(at(&src, b"n\xff"), b"ff\n").unwrap();
    let remote = |path: &[u8]| OsStr::from_bytes(&[&b"host:"[..], path].concat()).to_os_string();
    let rsync = |secluded: bool, args: &[&OsStr]| {
        let out = Command::new("/usr/bin/rsync")
            .args(if secluded { &["-a", "-s"][..] } else { &["-a"] })
            .arg("-e")
            .arg(&ssh)
            .args(args)
            .env_remove("RSYNC_PROTECT_ARGS")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let src_slash = OsStr::from_bytes(&[src.as_os_str().as_bytes(), b"/"].concat()).to_os_string();
    for (secluded, dest) in [(false, &b"d\xe9st"[..]), (true, b"s\xe9c")] {
        let target = remote(&[dest, b"/"].concat());
        let (code, err) = rsync(secluded, &[&src_slash, &target]);
        assert_eq!(code, Some(0), "push (-s: {secluded}): {err}");
        assert_eq!(
            std::fs::read(at(&at(&root, dest), b"caf\xe9.txt")).unwrap(),
            b"e9\n"
        );
        assert_eq!(
            std::fs::read(at(&at(&root, dest), b"n\xff")).unwrap(),
            b"ff\n"
        );
        // A pull that names the Latin-1 file on the command line.
        let _ = std::fs::remove_file(at(&back, b"n\xff"));
        let pulled = remote(&[dest, b"/n\xff"].concat());
        let (code, err) = rsync(secluded, &[&pulled, back.as_os_str()]);
        assert_eq!(code, Some(0), "pull (-s: {secluded}): {err}");
        assert_eq!(std::fs::read(at(&back, b"n\xff")).unwrap(), b"ff\n");
        // The twin: the same name carrying `..` out of the root.
        let escape = remote(&[dest, b"/../../rshell.toml"].concat());
        let (code, err) = rsync(secluded, &[&escape, back.as_os_str()]);
        assert_ne!(code, Some(0), "the escape was served: {err}");
        assert!(
            err.contains("rshell: denied: ") && err.contains("leads outside root"),
            "{err}"
        );
        assert!(!back.join("rshell.toml").exists());
    }
}
