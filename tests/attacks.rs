//! The attack catalogue (A1–A27) and every published bypass of the tools rshell replaces,
//! both listed in docs/bypasses.md, each as a named case that must be denied — next to the allowed twin
//! it tries to abuse. Runs the real decision code on a parsed policy.
mod common;

use common::{World, REFERENCE};
use rshell::Failure;
use rstest::rstest;

fn denied(world: &World, policy_text: &str, command: &str) -> String {
    let policy = world.policy(policy_text);
    match world.decide(&policy, command) {
        Err(Failure::Denied(reason)) => reason,
        other => panic!("expected a denial for {command:?}, got {other:?}"),
    }
}

fn allowed(world: &World, policy_text: &str, command: &str) -> Vec<String> {
    let policy = world.policy(policy_text);
    match world.decide(&policy, command) {
        Ok(plan) => plan.shown_argv(),
        other => panic!("expected {command:?} to be allowed, got {other:?}"),
    }
}

const PUSH: &str = "rsync --server -logDtpre.iLsfxCIvu . dest/";
const PULL: &str = "rsync --server --sender -logDtpre.iLsfxCIvu . data/";

#[rstest]
// A1 shell metacharacters, newlines, comments
#[case::a1_semicolon("rsync --server -logDtpre.iLsfxCIvu . dest/; id", "';'")]
#[case::a1_and("rsync --server -logDtpre.iLsfxCIvu . dest/ && id", "'&'")]
#[case::a1_or("rsync --server -logDtpre.iLsfxCIvu . dest/ || id", "'|'")]
#[case::a1_pipe("rsync --server -logDtpre.iLsfxCIvu . dest/ | sh", "'|'")]
#[case::a1_backticks("rsync --server -logDtpre.iLsfxCIvu . `id`", "'`'")]
#[case::a1_dollar_paren("rsync --server -logDtpre.iLsfxCIvu . $(id)", "'$'")]
#[case::a1_dollar_in_double_quotes("rsync --server -logDtpre.iLsfxCIvu . \"$HOME\"", "'$'")]
#[case::a1_redirect_out("rsync --server -logDtpre.iLsfxCIvu . dest/ >/tmp/x", "'>'")]
#[case::a1_redirect_in("rsync --server -logDtpre.iLsfxCIvu . dest/ </etc/passwd", "'<'")]
#[case::a1_background("rsync --server -logDtpre.iLsfxCIvu . dest/ &", "'&'")]
#[case::a1_variable("rsync --server -logDtpre.iLsfxCIvu . $HOME", "'$'")]
#[case::a1_newline("rsync --server -logDtpre.iLsfxCIvu . dest/\nid", "LF")]
#[case::a1_escaped_newline("rsync --server -logDtpre.iLsfxCIvu . de\\\nst/", "LF")]
#[case::a1_carriage_return("rsync --server -logDtpre.iLsfxCIvu . dest/\rid", "CR")]
#[case::a1_nul("rsync --server -logDtpre.iLsfxCIvu . dest/\0id", "NUL")]
#[case::a1_comment("rsync --server -logDtpre.iLsfxCIvu . dest/ #x", "'#'")]
#[case::a1_braces("rsync --server -logDtpre.iLsfxCIvu . { dest/ }", "'{'")]
#[case::a1_negation("rsync --server -logDtpre.iLsfxCIvu . ! dest/", "'!'")]
#[case::a1_tab("rsync --server -logDtpre.iLsfxCIvu .\tdest/", "TAB")]
#[case::a1_unbalanced_quote("rsync --server -logDtpre.iLsfxCIvu . 'dest", "unterminated")]
#[case::a1_double_space("rsync  --server -logDtpre.iLsfxCIvu . dest/", "extra blank")]
#[case::a1_empty_word(
    "rsync --server -logDtpre.iLsfxCIvu --temp-dir '' . dest/",
    "empty word"
)]
// A2 wrong program
#[case::a2_uploaded_rsync("/tmp/rsync --server -logDtpre.iLsfxCIvu . dest/", "only rsync")]
#[case::a2_relative_rsync("./rsync --server -logDtpre.iLsfxCIvu . dest/", "only rsync")]
#[case::a2_sudo("sudo rsync --server -logDtpre.iLsfxCIvu . dest/", "only rsync")]
#[case::a2_env("env X=Y rsync --server -logDtpre.iLsfxCIvu . dest/", "only rsync")]
#[case::a2_rsync2("rsync2 --server . dest/", "only rsync")]
#[case::a2_shell("sh -c id", "only rsync")]
#[case::a2_ssh_rc("/bin/sh /home/alice/.ssh/rc", "only rsync")]
#[case::a2_sftp_server("/usr/lib/openssh/sftp-server", "only rsync")]
#[case::a2_scp("scp -t dest/", "only rsync")]
#[case::a2_true_in_login_shell("true", "only rsync")]
// A3/A4 client mode, --server not first
#[case::a3_client_mode_e("rsync -e 'sh -c id' x:y z", "client mode")]
#[case::a3_local_copy("rsync /etc/shadow dest/", "client mode")]
#[case::a3_daemon_listen("rsync --daemon --config=/tmp/x --port=8873", "client mode")]
#[case::a4_option_before_server("rsync -r --server -logDtpre.iLsfxCIvu . dest/", "client mode")]
#[case::a4_caps_before_server("rsync -e.iLsfxCIvu --server . dest/", "client mode")]
#[case::x1_suffix_swallows_server(
    "rsync --suffix --server -e /home/u/x.sh h:a /tmp/b",
    "client mode"
)]
#[case::x1_temp_dir_swallows_server("rsync -T --server -e /home/u/x.sh h:a /tmp/b", "client mode")]
#[case::a4_abbreviated_server("rsync --serv --sender -logDtpre.iLsfxCIvu . data/", "client mode")]
// A5 daemon mode with a client config
#[case::a5_client_config("rsync --server --daemon --config=/home/alice/evil.conf .", "exactly")]
#[case::a5_dparam("rsync --server --daemon --dparam=pre-xfer\\ exec=/x .", "exactly")]
#[case::a5_daemon_not_third("rsync --server -logDtpre.iLsfxCIvu --daemon . dest/", "--daemon")]
#[case::a5_config_in_transfer("rsync --server -logDtpre.iLsfxCIvu --config=/x . dest/", "--config")]
#[case::a5_rsync_path_config(
    "rsync --config=/home/u/rsyncd.conf --server --daemon .",
    "client mode"
)]
// A6 secluded args
#[case::a6_bundle_s("rsync --server -slogDtpre.iLsfxCIvu", "-s")]
#[case::a6_bundle_s_later("rsync --server --sender -vslogDtpre.iLsfxCIvu", "-s")]
#[case::a6_secluded_long(
    "rsync --server --secluded-args -logDtpre.iLsfxCIvu . dest/",
    "secluded"
)]
#[case::a6_protect_args("rsync --server --protect-args . dest/", "secluded")]
// A7/A8 options after the dot, client `--`
#[case::a7_option_after_dot(
    "rsync --server -logDtpre.iLsfxCIvu . dest/ --log-file=/x",
    "starts with `-`"
)]
#[case::a7_pull_option_after_paths(
    "rsync --server --sender -logDtpre.iLsfxCIvu . data/ --log-file=/x",
    "starts with `-`"
)]
#[case::a8_double_dash("rsync --server -logDtpre.iLsfxCIvu -- . dest/", "`--`")]
#[case::a8_cve_2012_2251("rsync --server -e.x . -- --rsh=x", "starts with `-`")]
// A9 the dot slot
#[case::a9_dir_in_dot_slot("rsync --server --sender -r /etc shadow", "exactly `.`")]
#[case::a9_dot_dot("rsync --server --sender -logDtpre.iLsfxCIvu .. data/", "exactly `.`")]
#[case::a9_no_dot("rsync --server -logDtpre.iLsfxCIvu", "missing `.`")]
#[case::a9_no_path("rsync --server -logDtpre.iLsfxCIvu .", "no path")]
// A10 argument-taking letters inside bundles
#[case::a10_t_in_bundle("rsync --server -vlogT/etc . dest/", "-T")]
#[case::a10_t_next_word("rsync --server -rT /etc . dest/", "-T")]
#[case::a10_filter_letter("rsync --server -rf'merge /etc/shadow' . dest/", "-f")]
#[case::a10_e_takes_next_word("rsync --server --sender -logDtpre . DIR file", "capability")]
#[case::a10_e_command("rsync --server -e /home/u/x.sh . dest/", "capability")]
#[case::a10_e_not_last("rsync --server -e.iLs;x . dest/", "';'")]
#[case::a10_two_e("rsync --server -e.iLs -e.iLs . dest/", "capability")]
#[case::a10_m_letter("rsync --server -M--log-file=/x . dest/", "-M")]
#[case::a10_b_equals("rsync --server -B=1024 . dest/", "bad value")]
#[case::a10_unknown_letter("rsync --server -logDtpraze.iLsfxCIvu . dest/", "-a")]
#[case::a10_capital_p("rsync --server -Pe.iLsfxCIvu . dest/", "-P")]
// A11 value forms
#[case::a11_log_file_two_words(
    "rsync --server -logDtpre.iLsfxCIvu --log-file /x . dest/",
    "--log-file"
)]
#[case::a11_temp_dir_equals_outside(
    "rsync --server -logDtpre.iLsfxCIvu --temp-dir=../../x . dest/",
    "outside root"
)]
#[case::a11_flag_with_value(
    "rsync --server -logDtpre.iLsfxCIvu --delete=x . dest/",
    "takes no value"
)]
#[case::a11_missing_value("rsync --server -logDtpre.iLsfxCIvu --timeout", "needs a value")]
#[case::a11_bad_int("rsync --server -logDtpre.iLsfxCIvu --timeout=1x . dest/", "bad value")]
#[case::a11_log_format_free(
    "rsync --server -logDtpre.iLsfxCIvu --log-format=%n%L . dest/",
    "bad value"
)]
// A12 abbreviations and aliases
#[case::a12_log_f(
    "rsync --server -logDtpre.iLsfxCIvu --log-f=/x . dest/",
    "unknown option --log-f"
)]
#[case::a12_del_alias(
    "rsync --server -logDtpre.iLsfxCIvu --del . dest/",
    "unknown option --del"
)]
#[case::a12_out_format(
    "rsync --server -logDtpre.iLsfxCIvu --out-format=%n . dest/",
    "unknown option"
)]
#[case::a12_single_dash_long("rsync --server -log-file=/x . dest/", "-")]
// A13 --sender placement
#[case::a13_sender_late("rsync --server -logDtpre.iLsfxCIvu --sender . data/", "third word")]
#[case::a13_server_twice("rsync --server --server . dest/", "second word")]
// A14 log files
#[case::a14_log_file(
    "rsync --server -logDtpre.iLsfxCIvu --log-file=.bashrc . dest/",
    "--log-file"
)]
#[case::a14_log_file_format(
    "rsync --server -logDtpre.iLsfxCIvu --log-file-format=%n . dest/",
    "--log-file-format"
)]
// A15 files-from outside
#[case::a15_files_from_outside(
    "rsync --server --sender -logDtpRe.LsfxCIvu --files-from ../../etc/shadow . data/",
    "outside root"
)]
// A16 rule files
#[case::a16_exclude_from(
    "rsync --server -logDtpre.iLsfxCIvu --exclude-from=/etc/shadow . dest/",
    "rule files"
)]
#[case::a16_include_from(
    "rsync --server -logDtpre.iLsfxCIvu --include-from=/etc/shadow . dest/",
    "rule files"
)]
#[case::a16_filter(
    "rsync --server -logDtpre.iLsfxCIvu --filter=merge\\ /etc/shadow . dest/",
    "rule files"
)]
#[case::a16_capital_f("rsync --server -FlogDtpre.iLsfxCIvu . dest/", "-F")]
#[case::a16_confine_root_from_client(
    "rsync --server -logDtpre.iLsfxCIvu --confine-root=/ . dest/",
    "rshell itself"
)]
#[case::a16_debug_filter(
    "rsync --server --sender -logDtpre.iLsfxCIvu --debug=FILTER4 . data/",
    "--debug"
)]
// A17 path escapes
#[case::a17_dotdot_pull(
    "rsync --server --sender -logDtpre.iLsfxCIvu . ../../../../etc/passwd",
    "outside root"
)]
#[case::a17_dotdot_push(
    "rsync --server -logDtpre.iLsfxCIvu . ../../../../tmp/x",
    "outside root"
)]
#[case::a17_tilde_user(
    "rsync --server --sender -logDtpre.iLsfxCIvu . ~root/.ssh/id_rsa",
    "~user"
)]
#[case::a17_dotdot_missing_dir(
    "rsync --server -logDtpre.iLsfxCIvu . missing/../../../x",
    "`..` after a name that does not exist yet"
)]
// A18 auxiliary directories outside
#[case::a18_backup_dir(
    "rsync --server -blogDtpre.iLsfxCIvu --backup-dir ../../../../home/alice/.ssh . dest/",
    "outside root"
)]
#[case::a18_partial_dir_dotdot(
    "rsync --server -logDtpre.iLsfxCIvu --partial-dir ../x . dest/",
    "`..`"
)]
#[case::a18_link_dest(
    "rsync --server -logDtpre.iLsfxCIvu --link-dest=../../../etc . dest/",
    "outside root"
)]
#[case::a18_compare_dest(
    "rsync --server -logDtpre.iLsfxCIvu --compare-dest=../../../etc . dest/",
    "outside root"
)]
#[case::a18_copy_dest(
    "rsync --server -logDtpre.iLsfxCIvu --copy-dest=../../../etc . dest/",
    "outside root"
)]
#[case::a18_temp_dir(
    "rsync --server -logDtpre.iLsfxCIvu --temp-dir ../../../tmp . dest/",
    "outside root"
)]
#[case::a18_write_batch(
    "rsync --server -logDtpre.iLsfxCIvu --write-batch=/tmp/x . dest/",
    "--write-batch"
)]
#[case::a18_only_write_batch_path(
    "rsync --server -logDtpre.iLsfxCIvu --only-write-batch=/tmp/x . dest/",
    "bad value"
)]
// A19 symlink following
#[case::a19_copy_links("rsync --server --sender -LlogDtpre.iLsfxCIvu . data/", "-L")]
#[case::a19_copy_dirlinks("rsync --server --sender -klogDtpre.iLsfxCIvu . data/", "-k")]
#[case::a19_keep_dirlinks("rsync --server -KlogDtpre.iLsfxCIvu . dest/", "-K")]
#[case::a19_copy_links_long("rsync --server --sender --copy-links . data/", "--copy-links")]
#[case::a19_copy_unsafe(
    "rsync --server --sender -logDtpre.iLsfxCIvu --copy-unsafe-links . data/",
    "--copy-unsafe-links"
)]
#[case::a19_insecure(
    "rsync --server --sender -logDtpre.iLsfxCIvu --insecure-links . data/",
    "--insecure-links"
)]
#[case::a19_no_munge(
    "rsync --server -logDtpre.iLsfxCIvu --no-munge-links . dest/",
    "--no-munge-links"
)]
// A20 devices
#[case::a20_write_devices(
    "rsync --server -logDtpre.iLsfxCIvu --write-devices . dest/",
    "--write-devices"
)]
#[case::a20_copy_devices(
    "rsync --server --sender -logDtpre.iLsfxCIvu --copy-devices . data/",
    "--copy-devices"
)]
#[case::a20_no_drop_d(
    "rsync --server -logDtpre.iLsfxCIvu --no-drop-D . dest/",
    "--no-drop-D"
)]
// A21 privilege
#[case::a21_copy_as(
    "rsync --server -logDtpre.iLsfxCIvu --copy-as=root . dest/",
    "--copy-as"
)]
#[case::a21_trust_sender(
    "rsync --server --sender -logDtpre.iLsfxCIvu --trust-sender . data/",
    "--trust-sender"
)]
// A23 misc knobs
#[case::a23_protocol(
    "rsync --server -logDtpre.iLsfxCIvu --protocol=20 . dest/",
    "--protocol"
)]
#[case::a23_compress_threads(
    "rsync --server -logDtpre.iLsfxCIvu --compress-threads=100000 . dest/",
    "--compress-threads"
)]
#[case::a23_iconv_injection(
    "rsync --server -logDtpre.iLsfxCIvu --iconv=../../x . dest/",
    "bad value"
)]
#[case::a23_max_alloc_huge(
    "rsync --server -logDtpre.iLsfxCIvu --max-alloc=1000000g . dest/",
    "bad value"
)]
#[case::a23_stop_after(
    "rsync --server -logDtpre.iLsfxCIvu --stop-after=1 . dest/",
    "--stop-after"
)]
// A24/A3 client-only options that run programs
#[case::cve_2004_1161_rsh(
    "rsync --server -logDtpre.iLsfxCIvu --rsh=/home/u/x.sh . dest/",
    "--rsh"
)]
#[case::cve_2012_2252_rsh_two_words(
    "rsync --server -logDtpre.iLsfxCIvu --rsh /home/u/x.sh . dest/",
    "--rsh"
)]
#[case::rsync_path(
    "rsync --server -logDtpre.iLsfxCIvu --rsync-path=/x . dest/",
    "--rsync-path"
)]
#[case::remote_option(
    "rsync --server -logDtpre.iLsfxCIvu --remote-option=--log-file=/x . dest/",
    "--remote-option"
)]
#[case::scponly_6e("rsync -6e /home/u/x.sh h:a b", "client mode")]
#[case::scponly_ve("rsync -ve/home/u/x.sh h:a b", "client mode")]
#[case::cve_2004_1628_format_string("scp -f %n%n%n%n", "only rsync")]
#[case::cve_2004_0609_glob_outside("scp -f /etc/*", "only rsync")]
#[case::cve_2012_3478_var("rsync ${LC_X} h:a b", "'$'")]
#[case::lshell_2016_6902("echo && 'bash'", "'&'")]
#[case::lshell_151_function("echo () bash && echo", "'('")]
// A26/A27 globs, tildes and quoting
#[case::a27_quoted_option_glob(
    "rsync --server -logDtpre.iLsfxCIvu --usermap=*:root . dest/",
    "unquoted"
)]
#[case::a27_quotes_hide_semicolon("rsync --server -logDtpre.iLsfxCIvu . \"a\";id", "';'")]
fn attack_is_denied(#[case] command: &str, #[case] reason_fragment: &str) {
    let world = World::new("attack");
    let reason = denied(&world, REFERENCE, command);
    assert!(
        reason.contains(reason_fragment),
        "{command:?}: reason {reason:?} lacks {reason_fragment:?}"
    );
}

#[test]
fn a17_uploaded_symlink_out_of_root_is_refused_but_an_inside_one_works() {
    let world = World::new("symlink");
    std::os::unix::fs::symlink("/etc", world.root.join("esc")).unwrap();
    std::os::unix::fs::symlink("data", world.root.join("inside")).unwrap();
    std::os::unix::fs::symlink("../../..", world.root.join("data/up")).unwrap();
    assert!(denied(
        &world,
        REFERENCE,
        "rsync --server --sender -logDtpre.iLsfxCIvu . esc/passwd"
    )
    .contains("outside root"));
    assert!(denied(
        &world,
        REFERENCE,
        "rsync --server -logDtpre.iLsfxCIvu . esc/sub/"
    )
    .contains("outside root"));
    assert!(denied(
        &world,
        REFERENCE,
        "rsync --server -logDtpre.iLsfxCIvu --link-dest=../esc . dest/"
    )
    .contains("outside root"));
    // The same through a destination that does not exist yet (`new/..` cancels lexically,
    // then the kernel resolves what remains).
    assert!(denied(
        &world,
        REFERENCE,
        "rsync --server -logDtpre.iLsfxCIvu --link-dest=../esc . newsnap/"
    )
    .contains("outside root"));
    assert!(denied(
        &world,
        REFERENCE,
        "rsync --server -logDtpre.iLsfxCIvu --link-dest=../../esc . a/b/"
    )
    .contains("outside root"));
    assert!(denied(
        &world,
        REFERENCE,
        "rsync --server -logDtpre.iLsfxCIvu --backup-dir=../data/up/x . dest/"
    )
    .contains("outside root"));
    assert!(denied(
        &world,
        REFERENCE,
        "rsync --server --sender -logDtpRe.LsfxCIvu --files-from=esc/shadow . data/"
    )
    .contains("outside root"));
    // The twin: a symlink that stays inside root is followed by the kernel, beneath root.
    allowed(
        &world,
        REFERENCE,
        "rsync --server --sender -logDtpre.iLsfxCIvu . inside/a.txt",
    );
    // Absolute paths are anchored at root: /etc/passwd means ROOT/etc/passwd.
    let argv = allowed(
        &world,
        REFERENCE,
        "rsync --server --sender -logDtpre.iLsfxCIvu . /etc/passwd",
    );
    assert_eq!(argv.last().unwrap(), "<.>/etc/passwd");
    // Root's own spelling is kept (rsnapshot with -R expects those names), still checked.
    let root = world.root.display().to_string();
    let argv = allowed(
        &world,
        REFERENCE,
        &format!("rsync --server --sender -logDtprRe.iLsfxCIvu --numeric-ids . {root}/data/"),
    );
    assert_eq!(argv.last().unwrap(), &format!("{root}/data/"));
    assert!(denied(
        &world,
        REFERENCE,
        &format!("rsync --server --sender -logDtprRe.iLsfxCIvu . {root}/../../etc/")
    )
    .contains("outside root"));
    assert!(denied(
        &world,
        REFERENCE,
        &format!("rsync --server --sender -logDtpre.iLsfxCIvu . {root}/esc/passwd")
    )
    .contains("outside root"));
}

#[test]
fn allowed_commands_are_rebuilt_with_forced_options_last_and_our_own_double_dash() {
    let world = World::new("rebuild");
    let root = world.root.display().to_string();
    let argv = allowed(&world, REFERENCE, PUSH);
    assert_eq!(
        argv,
        vec![
            "/usr/bin/rsync",
            "--server",
            "-logDtpre.iLsfxCIvu",
            "--drop-D",
            &format!("--confine-root={root}"),
            "--",
            ".",
            // The checked destination directory itself (/proc/self/fd/N), never its name.
            "<dest>/"
        ]
    );
    let argv = allowed(&world, REFERENCE, PULL);
    assert_eq!(argv[..3], ["/usr/bin/rsync", "--server", "--sender"]);
    assert!(
        !argv.contains(&"--drop-D".to_string()),
        "a sender needs no --drop-D"
    );
    // Two-word values become canonical `--opt=value`; absolute ones are anchored at root
    // and handed over pinned (`<old>` is /proc/self/fd/N of root's `old`).
    let argv = allowed(
        &world,
        REFERENCE,
        "rsync --server -blogDtpre.iLsfxCIvu --backup-dir /old . dest/",
    );
    assert!(argv.contains(&"--backup-dir=<old>".to_string()), "{argv:?}");
    let argv = allowed(
        &world,
        REFERENCE,
        "rsync --server -logDtpre.iLsfxCIvu --link-dest ../prev . snap/new/",
    );
    // `..` cancels the new destination rsync creates: the basis is root's snap/prev, pinned.
    assert!(
        argv.contains(&"--link-dest=<snap/prev>".to_string()),
        "{argv:?}"
    );
    // BackupPC's long spellings are accepted and kept canonical.
    allowed(&world, REFERENCE, "/usr/bin/rsync --server --numeric-ids --perms --owner --group -D --links --hard-links --times --block-size=2048 --recursive . dest/");
    // The configured path is accepted as the program word, another path is not.
    denied(&world, REFERENCE, "/usr/local/bin/rsync --server . dest/");
    // rssh's famous refusal: rsync 3's capability string must work.
    allowed(&world, REFERENCE, "rsync --server -logDtpre.iLsfx . dest/");
    allowed(&world, REFERENCE, "rsync --server -e.LsfxCIvu . dest/");
    allowed(
        &world,
        REFERENCE,
        "rsync --server -vlogDtpre31.14iLsfxCIvu . dest/",
    );
    allowed(
        &world,
        REFERENCE,
        "rsync --server -logDtpr -B8192 -@-1 . dest/",
    );
}

#[test]
fn forced_options_cannot_be_undone_by_the_client() {
    let world = World::new("forced");
    let p = "version = 1\n[defaults]\nroot = \"ROOT\"\nmunge_links = true\nfake_super = true\noverwrite = false\n";
    let argv = allowed(
        &world,
        p,
        "rsync --server -logDtpre.iLsfxCIvu --munge-links . dest/",
    );
    let dd = argv.iter().position(|a| a == "--").unwrap();
    for forced in [
        "--munge-links",
        "--fake-super",
        "--drop-D",
        "--ignore-existing",
    ] {
        let at = argv
            .iter()
            .position(|a| a == forced)
            .unwrap_or_else(|| panic!("{forced} in {argv:?}"));
        assert!(at < dd);
        assert_eq!(argv.iter().filter(|a| *a == forced).count(), 1, "{argv:?}");
    }
    denied(
        &world,
        p,
        "rsync --server -logDtpre.iLsfxCIvu --no-munge-links . dest/",
    );
}

#[test]
fn globs_expand_inside_root_and_escaped_ones_stay_literal() {
    let world = World::new("glob");
    std::fs::write(world.root.join("data/b.txt"), "b").unwrap();
    std::fs::write(world.root.join("data/.hidden.txt"), "h").unwrap();
    let argv = allowed(
        &world,
        REFERENCE,
        "rsync --server --sender -logDtpre.iLsfxCIvu . data/*.txt",
    );
    let dd = argv.iter().position(|a| a == ".").unwrap();
    // Each source is its pinned directory plus the name (`<data>` = /proc/self/fd/N).
    assert_eq!(argv[dd + 1..], ["<data>/a.txt", "<data>/b.txt"]);
    let argv = allowed(
        &world,
        REFERENCE,
        "rsync --server --sender -logDtpre.iLsfxCIvu . data/\\*.txt",
    );
    assert_eq!(argv.last().unwrap(), "<data>/*.txt");
    let argv = allowed(
        &world,
        REFERENCE,
        "rsync --server --sender -logDtpre.iLsfxCIvu . nomatch*",
    );
    assert_eq!(argv.last().unwrap(), "<.>/nomatch*");
    // A pattern cannot reach outside: `..` is resolved beneath root after expansion.
    denied(
        &world,
        REFERENCE,
        "rsync --server --sender -logDtpre.iLsfxCIvu . ../../../e*/passwd",
    );
    // A push pattern that expands to two names is refused (one destination only).
    denied(
        &world,
        REFERENCE,
        "rsync --server -logDtpre.iLsfxCIvu . data/*.txt",
    );
}

#[test]
fn given_read_only_then_pull_works_and_push_delete_remove_are_denied() {
    let world = World::new("ro");
    let p = "version = 1\n[defaults]\nroot = \"ROOT\"\naccess = \"read-only\"\n";
    allowed(&world, p, PULL);
    assert!(denied(&world, p, PUSH).contains("read-only"));
    assert!(denied(
        &world,
        p,
        "rsync --server --sender -logDtpre.iLsfxCIvu --remove-source-files . data/"
    )
    .contains("deletion"));
    // A13: --sender later in the line cannot turn a push into a read, nor vice versa.
    denied(
        &world,
        p,
        "rsync --server -logDtpre.iLsfxCIvu --sender . data/",
    );
}

#[test]
fn given_write_only_then_push_works_and_pull_and_server_file_lists_are_denied() {
    let world = World::new("wo");
    let p = "version = 1\n[defaults]\nroot = \"ROOT\"\naccess = \"write-only\"\n";
    allowed(&world, p, PUSH);
    assert!(denied(&world, p, PULL).contains("write-only"));
    assert!(denied(
        &world,
        p,
        "rsync --server -logDtpRe.LsfxCIvu --files-from data/a.txt . dest/"
    )
    .contains("write-only"));
    allowed(
        &world,
        p,
        "rsync --server -logDtpRe.LsfxCIvu --files-from=- --from0 . dest/",
    );
}

#[rstest]
#[case("--delete")]
#[case("--delete-before")]
#[case("--delete-during")]
#[case("--delete-delay")]
#[case("--delete-after")]
#[case("--delete-excluded")]
#[case("--delete-missing-args")]
#[case("--force")]
fn given_no_delete_then_every_deleting_option_is_denied(#[case] option: &str) {
    let world = World::new("nodel");
    let p = "version = 1\n[defaults]\nroot = \"ROOT\"\ndelete = false\n";
    allowed(&world, p, PUSH);
    let cmd = format!("rsync --server -logDtpre.iLsfxCIvu {option} . dest/");
    assert!(denied(&world, p, &cmd).contains("deletion"));
    allowed(&world, REFERENCE, &cmd);
    // On a pull the server is the sender: the client deletes on its own side.
    allowed(
        &world,
        p,
        &format!("rsync --server --sender -logDtpre.iLsfxCIvu {option} . data/"),
    );
}

/// `--remove-source-files` deletes on the sending side: refused on a pull (the server's
/// files), harmless on a push (the client's own).
#[rstest]
#[case("--remove-source-files")]
#[case("--remove-sent-files")]
fn given_no_delete_then_removing_the_servers_sources_is_denied(#[case] option: &str) {
    let world = World::new("nodel-src");
    let p = "version = 1\n[defaults]\nroot = \"ROOT\"\ndelete = false\n";
    let pull = format!("rsync --server --sender -logDtpre.iLsfxCIvu {option} . data/");
    assert!(denied(&world, p, &pull).contains("deletion"));
    allowed(&world, REFERENCE, &pull);
    allowed(
        &world,
        p,
        &format!("rsync --server -logDtpre.iLsfxCIvu {option} . dest/"),
    );
}

#[test]
fn given_from_rules_then_only_listed_networks_get_in() {
    let world = World::new("from");
    let policy = world.policy(
        "version = 1\n[defaults]\nroot = \"ROOT\"\nfrom = [\"10.0.0.0/8\", \"127.0.0.1\"]\n",
    );
    assert!(world.decide_from(&policy, PUSH, Some("10.2.3.4")).is_ok());
    assert!(world.decide_from(&policy, PUSH, Some("127.0.0.1")).is_ok());
    assert!(
        matches!(world.decide_from(&policy, PUSH, Some("192.0.2.1")), Err(Failure::Denied(r)) if r.contains("192.0.2.1"))
    );
    assert!(
        matches!(world.decide_from(&policy, PUSH, None), Err(Failure::Denied(r)) if r.contains("SSH_CONNECTION"))
    );
}

#[test]
fn given_daemon_off_or_unconfigured_then_daemon_requests_are_denied() {
    let world = World::new("daemon");
    assert!(denied(&world, REFERENCE, "rsync --server --daemon .").contains("not enabled"));
    let p = "version = 1\n[defaults]\nroot = \"ROOT\"\ndaemon = true\n";
    assert!(denied(&world, p, "rsync --server --daemon .").contains("daemon_config"));
    // A daemon_config the user could write is refused.
    let conf = world.root.join("rsyncd.conf");
    std::fs::write(&conf, "[m]\npath = /\n").unwrap();
    let p = format!(
        "version = 1\n[defaults]\nroot = \"ROOT\"\ndaemon = true\ndaemon_config = \"{}\"\n",
        conf.display()
    );
    std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    assert!(denied(&world, &p, "rsync --server --daemon .").contains("daemon_config"));
}

#[test]
fn given_a_trusted_daemon_config_then_rshell_forces_it() {
    let world = World::new("daemon-ok");
    if !common::needs("root, to own the daemon config", common::root()) {
        return;
    }
    // Every directory above a trusted file must be root's alone: not under /tmp.
    let trusted = common::TempDir::trusted("daemon-ok");
    let confdir = trusted.path().to_path_buf();
    let conf = confdir.join("rsyncd.conf");
    std::fs::write(&conf, "[m]\npath = ROOT\n").unwrap();
    std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let p = format!(
        "version = 1\n[defaults]\nroot = \"ROOT\"\ndaemon = true\ndaemon_config = \"{}\"\n",
        conf.display()
    );
    let argv = allowed(&world, &p, "rsync --server --daemon .");
    assert_eq!(
        argv,
        vec![
            "/usr/bin/rsync".to_string(),
            "--server".into(),
            "--daemon".into(),
            format!("--config={}", conf.display()),
            ".".into()
        ]
    );
    denied(&world, &p, "rsync --server --daemon --config=/x .");
}

#[test]
fn given_a_writable_root_holding_the_home_then_writes_are_refused() {
    let world = World::new("home");
    let p = "version = 1\n[defaults]\nroot = \"HOME\"\n";
    std::fs::create_dir_all(world.home.join("dest")).unwrap();
    assert!(denied(&world, p, PUSH).contains("home directory"));
    // Reading is unaffected.
    std::fs::create_dir_all(world.home.join("data")).unwrap();
    allowed(&world, p, PULL);
    let p = "version = 1\n[defaults]\nroot = \"HOME\"\ndangerous_writable_home = true\n";
    allowed(&world, p, PUSH);
}

#[test]
fn given_a_missing_root_then_the_denial_says_so() {
    let world = World::new("noroot");
    let p = "version = 1\n[defaults]\nroot = \"ROOT/missing\"\n";
    assert!(denied(&world, p, PUSH).contains("does not exist"));
    assert!(
        !world.root.join("missing").exists(),
        "never an implicit mkdir"
    );
}

#[test]
fn group_and_user_sections_layer_key_by_key() {
    let world = World::new("groups");
    let p = "version = 1\n[defaults]\naccess = \"read-only\"\n[groups.backup]\nroot = \"ROOT\"\n[users.alice]\naccess = \"write-only\"\n";
    let policy = world.policy(p);
    assert_eq!(policy.sources["root"].to_string(), "[groups.backup]");
    assert_eq!(policy.sources["access"].to_string(), "[users.alice]");
    assert!(world.decide(&policy, PUSH).is_ok());
    assert!(world.decide(&policy, PULL).is_err());
}

// Secluded arguments (`rsync -s`, BackupPC 4, LuckyBackup): the words on standard input get
// exactly the vetting of command-line words; `-s` is dropped from the argv rsync gets.

fn secluded(
    world: &World,
    config: &str,
    command: &str,
    words: &str,
) -> Result<Vec<String>, String> {
    let policy = world.policy(config);
    match world.decide_secluded(&policy, command, &common::secluded_words(words)) {
        Ok(plan) => Ok(plan.shown_argv()),
        Err(Failure::Denied(reason)) => Err(reason),
        Err(other) => Err(format!("{other:?}")),
    }
}

#[test]
fn given_backuppc_defaults_then_full_incremental_and_restore_are_allowed() {
    let world = World::new("bpc");
    // Full and incremental backups pull the whole root with BackupPC 4's defaults.
    for bundle in ["-slHogDtprcxe.iLsfxC", "-slHogDtprxe.iLsfxC"] {
        let argv = secluded(
            &world,
            REFERENCE,
            &format!("/usr/bin/rsync --server --sender {bundle}"),
            r"rsync\0--timeout=72000\0--numeric-ids\0.\0/\0\0",
        )
        .unwrap();
        assert_eq!(argv[2], "--sender");
        let flags = argv[3].split('e').next().unwrap();
        assert!(!flags.contains('s'), "no -s for rsync: {argv:?}");
        assert!(argv.contains(&"--timeout=72000".to_string()), "{argv:?}");
        // The root itself, pinned (`<.>` is /proc/self/fd/N of the root descriptor).
        assert_eq!(argv.last().unwrap(), "<.>/", "{argv:?}");
    }
    // The restore: --super is dropped for a non-root account (rsync could only fail at it).
    let argv = secluded(
        &world,
        REFERENCE,
        "/usr/bin/rsync --server -slHogDtprRe.iLsfxC",
        r"rsync\0--log-format=%i\0--delete\0--super\0--stats\0--partial\0--numeric-ids\0.\0dest/\0\0",
    )
    .unwrap();
    assert!(!argv.iter().any(|a| a == "--super"), "{argv:?}");
    assert!(argv.contains(&"--delete".to_string()), "{argv:?}");
    assert_eq!(argv.last().unwrap(), "<dest>/", "{argv:?}");
}

/// Twin of the restore above: for an account with uid 0 rsync is super-user anyway, and
/// `--super` is kept (the table's `SuperUser` class decides, not the option's name).
#[test]
fn super_is_kept_for_uid_0_and_use_qsort_is_handed_on_as_qsort() {
    let world = World::new("bpc-root");
    let policy = world.policy(REFERENCE);
    let mut account = common::account(&world.home);
    account.uid = 0;
    let words = common::secluded_words(r"rsync\0--super\0--use-qsort\0--numeric-ids\0.\0dest/\0\0");
    let input = rshell::Input {
        form: rshell::Form::Login,
        key: None,
        config_path: std::path::Path::new("/etc/rshell.toml"),
        account: &account,
        client: None,
        command: b"/usr/bin/rsync --server -slHogDtprRe.iLsfxC",
    };
    let argv = rshell::decide_secluded(&input, &policy, &words)
        .unwrap()
        .shown_argv();
    assert!(argv.iter().any(|a| a == "--super"), "{argv:?}");
    // rsync's server knows only `--qsort` (its client sends `--use-qsort`).
    assert!(argv.iter().any(|a| a == "--qsort"), "{argv:?}");
    assert!(!argv.iter().any(|a| a == "--use-qsort"), "{argv:?}");
}

#[rstest]
#[case::log_file_hidden(r"rsync\0--log-file=/tmp/x\0.\0dest/\0\0", "--log-file")]
#[case::outside_path(r"rsync\0.\0../../etc/\0\0", "outside root")]
#[case::sender_hidden(r"rsync\0--sender\0.\0data/\0\0", "--sender")]
#[case::copy_links_hidden(r"rsync\0-L\0.\0dest/\0\0", "-L")]
#[case::files_from_outside(r"rsync\0--files-from=/../../etc/passwd\0.\0dest/\0\0", "outside root")]
#[case::popt_next_arg(r"rsync\0--backup-dir=bk!#:+\0.\0dest/\0\0", "!#:+")]
#[case::glob_outside(r"rsync\0.\0../*\0\0", "outside root")]
#[case::double_dash(r"rsync\0--\0.\0dest/\0\0", "--")]
fn secluded_words_get_the_same_vetting(#[case] words: &str, #[case] reason: &str) {
    let world = World::new("secluded-attack");
    let got = secluded(
        &world,
        REFERENCE,
        "rsync --server -slogDtpre.iLsfxCIvu",
        words,
    );
    let err = got.expect_err("refused");
    assert!(err.contains(reason), "{words}: {err}");
}

#[test]
fn secluded_form_only_as_rsync_sends_it() {
    let world = World::new("secluded-form");
    // -s with words on the command line is not the secluded form: refused by the table.
    assert!(denied(
        &world,
        REFERENCE,
        "rsync --server -slogDtpre.iLsfxCIvu . dest/"
    )
    .contains("secluded"));
    // The secluded command line without its words (no standard input given): refused.
    assert!(
        denied(&world, REFERENCE, "rsync --server -slogDtpre.iLsfxCIvu")
            .contains("secluded-args form")
    );
    // --iconv with -s: refused before anything is read.
    assert!(denied(
        &world,
        REFERENCE,
        "rsync --server -slogDtpre.iLsfxCIvu --iconv=latin1"
    )
    .contains("--iconv"));
    // A write-only account: a secluded pull is refused like any pull.
    let wo = "version = 1\n[defaults]\nroot = \"ROOT\"\naccess = \"write-only\"\n";
    let err = secluded(
        &world,
        wo,
        "rsync --server --sender -slogDtpre.iLsfxCIvu",
        r"rsync\0.\0data/\0\0",
    )
    .expect_err("refused");
    assert!(err.contains("write-only"), "{err}");
}

/// Names that pre-3.2.4 clients (and `--old-args`) send unescaped: a POSIX shell takes
/// `#`, `!`, `{`, `}` inside a word literally (no brace or history expansion in `sh -c`).
#[rstest]
#[case("dest/notes#1.txt", "notes#1.txt")]
#[case("dest/x{1}", "x{1}")]
#[case("dest/excl!x", "excl!x")]
#[case("dest/{a,b}", "{a,b}")]
#[case("dest/!x", "!x")]
fn given_old_args_names_then_hash_bang_and_braces_inside_a_word_are_literal(
    #[case] path: &str,
    #[case] leaf: &str,
) {
    let world = World::new("literal");
    let argv = allowed(
        &world,
        REFERENCE,
        &format!("rsync --server --sender -logDtpre.iLsfxCIvu . {path}"),
    );
    assert_eq!(argv.last().unwrap(), &format!("<dest>/{leaf}"), "{argv:?}");
}
