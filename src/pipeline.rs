//! The pipeline: every step from the caller's argv to the decision, shared by a real
//! run and `--test`, then the log record and the hand-over to [`crate::exec`].
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::cli::{self, KeyFlags, Mode};
use crate::command::{self, secluded};
use crate::decide::resolve::Root;
use crate::decide::{self, ExecPlan, Request, Verdict};
use crate::exec::{execute, predicted_landlock};
use crate::policy::{self, net, Access, Config, ConfigError, Layer, Policy, Source};
use crate::system::{self, Account, SshContext};
use crate::{admin, log, rsync, Failure, Form};
use crate::{EXIT_CONFIG, EXIT_DENIED, EXIT_SYSTEM, EXIT_USAGE, LOCK_TIMEOUT};

/// Inputs shared by a real run and `--test`.
pub struct Input<'a> {
    pub form: Form,
    pub key: Option<&'a KeyFlags>,
    pub config_path: &'a Path,
    pub account: &'a Account,
    pub client: Option<IpAddr>,
    pub command: &'a [u8],
}

/// Where the words of a secluded-args request (`rsync --server -s...`) come from.
#[derive(Debug, Clone, Copy)]
pub enum SecludedWords<'a> {
    /// A real run: read from standard input one byte at a time, never past the
    /// terminating empty word (the protocol bytes that follow stay unread, for rsync).
    Stdin,
    /// `rshell --test --secluded` and tests: the words as the client would send them.
    Given(&'a [Vec<u8>]),
    /// None available: a secluded request is refused with a hint.
    Absent,
}

/// The result of the shared steps.
#[derive(Debug)]
pub struct Evaluation {
    pub policy: Option<Policy>,
    pub outcome: Result<ExecPlan, Failure>,
    /// The secluded words that were vetted, when the request used that form.
    pub secluded: Option<Vec<Vec<u8>>>,
}

/// Every step up to the decision, identical for a real run and `--test`.
pub fn evaluate(input: &Input, secluded: SecludedWords) -> Evaluation {
    evaluate_with(input, false, secluded)
}

/// [`evaluate`], taking the root lock before resolving when `take_lock` (a real run).
fn evaluate_with(input: &Input, take_lock: bool, secluded: SecludedWords) -> Evaluation {
    let policy = match load_policy(input) {
        Ok(p) => p,
        Err(f) => {
            return Evaluation {
                policy: None,
                outcome: Err(f),
                secluded: None,
            }
        }
    };
    let mut read = None;
    let outcome = decide_with(input, &policy, take_lock, secluded, &mut read);
    Evaluation {
        policy: Some(policy),
        outcome,
        secluded: read,
    }
}

fn load_policy(input: &Input) -> Result<Policy, Failure> {
    let explicit = input.key.and_then(|k| k.config.as_ref());
    let path = explicit.map(PathBuf::as_path).unwrap_or(input.config_path);
    let account = input.account;
    let mut policy = match Config::load_for(path, &account.name, &account.groups) {
        Ok(cfg) => cfg
            .policy_for(&account.name, &account.groups)
            .map_err(|e| Failure::Config(e.to_string()))?,
        // A standalone key runs on the built-in defaults when there is no config at all.
        Err(ConfigError::Missing(_)) if input.form == Form::Standalone && explicit.is_none() => {
            Policy::builtin()
        }
        Err(e) => return Err(Failure::Config(e.to_string())),
    };
    // Login shell and nested key need a configured policy; a standalone key is authoritative.
    if input.form != Form::Standalone && !policy.configured {
        let why = if input.form == Form::Nested {
            " (a nested rshell key may only narrow one)"
        } else {
            ""
        };
        return Err(Failure::Denied(format!(
            "no policy for user {} in {}{why}",
            account.name,
            path.display()
        )));
    }
    match (input.form, input.key) {
        (Form::Standalone, Some(key)) => policy.apply(&key_layer(key, &account.home), &Source::Key),
        (Form::Nested, Some(key)) => narrow(&mut policy, key, account).map_err(Failure::Denied)?,
        _ => {}
    }
    Ok(policy)
}

/// The steps after the policy is known: split, parse, open the root, decide. Public so
/// the policy tables in tests can run the real code on a parsed (not file-loaded) policy.
/// Takes no lock (`--test` and tests); a real run locks first (see [`serve`]).
pub fn decide_command(input: &Input, policy: &Policy) -> Result<ExecPlan, Failure> {
    decide_with(input, policy, false, SecludedWords::Absent, &mut None)
}

/// [`decide_command`] for a secluded-args request whose words are given.
pub fn decide_secluded(
    input: &Input,
    policy: &Policy,
    words: &[Vec<u8>],
) -> Result<ExecPlan, Failure> {
    decide_with(input, policy, false, SecludedWords::Given(words), &mut None)
}

fn decide_with(
    input: &Input,
    policy: &Policy,
    take_lock: bool,
    secluded: SecludedWords,
    read: &mut Option<Vec<Vec<u8>>>,
) -> Result<ExecPlan, Failure> {
    if input.form == Form::Standalone && input.command == b"true" {
        return Err(Failure::Probe);
    }
    let denied = |e: String| Failure::Denied(e);
    let words = command::split(input.command).map_err(|e| Failure::Denied(e.to_string()))?;
    let words = match secluded_form(&words)? {
        false => words,
        true => {
            let list = match secluded {
                SecludedWords::Stdin => {
                    secluded::read_words(std::io::stdin().as_fd(), &secluded::Limits::DEFAULT)
                        .map_err(|e| Failure::Denied(e.to_string()))?
                }
                SecludedWords::Given(w) => w.to_vec(),
                SecludedWords::Absent => return Err(Failure::Denied(
                    "this is rsync's secluded-args form (-s): its words follow on standard input (rshell --test takes them with --secluded)".into(),
                )),
            };
            let vetted =
                secluded::to_words(&words, &list).map_err(|e| Failure::Denied(e.to_string()))?;
            *read = Some(list);
            vetted
        }
    };
    let invocation =
        rsync::parse(&words, &policy.settings.rsync).map_err(|e| Failure::Denied(e.to_string()))?;
    let s = &policy.settings;
    decide::check_from(s, input.client).map_err(denied)?;
    if invocation == rsync::Invocation::Daemon && s.daemon && !s.daemon_config.is_empty() {
        // In daemon mode rsync obeys only rsyncd.conf: a narrower access, delete = false or
        // overwrite = false must be stated by every module itself, or the policy is broken.
        let wanted = admin::lint::daemon_requirements(s);
        if wanted.any() {
            crate::rsync::daemon::verify_file(Path::new(&s.daemon_config), &wanted)
                .map_err(|errs| Failure::Config(errs.join("; ")))?;
        }
    }
    // The configured root is opened once; the lock is taken on it before anything beneath
    // it is resolved, and held (by rsync, which inherits the descriptor) until rsync exits.
    let configured = Root::open(&policy::expand_root(
        &s.root,
        &input.account.name,
        &input.account.home,
    ))
    .map_err(denied)?;
    // A direction the policy refuses outright needs no disk and must not wait for the lock.
    if let rsync::Invocation::Transfer(t) = &invocation {
        decide::check_direction(s, t.sender).map_err(denied)?;
    }
    let lock = decide::lock_kind(&invocation, s);
    if take_lock {
        if let Some(kind) = lock {
            system::lock(&configured.fd, &configured.path, kind, LOCK_TIMEOUT)
                .map_err(|e| Failure::Denied(e.to_string()))?;
        }
    }
    let root = match &policy.subdir {
        Some(rel) => configured.beneath(rel).map_err(denied)?,
        None => configured.clone(),
    };
    let request = Request {
        account: input.account,
        client: input.client,
        invocation: &invocation,
        policy,
        root: &root,
        landlock_enforced: landlock_will_enforce(s.confine),
    };
    match decide::decide(&request) {
        Verdict::Allow(mut plan) => {
            plan.locked = lock.map(|_| configured);
            Ok(*plan)
        }
        Verdict::Deny(reason) => Err(Failure::Denied(reason)),
    }
}

/// Whether the command line is rsync's secluded-args form: `rsync --server [--sender]
/// -s<flags>e<caps>` and nothing after the bundle (the client then sends every other word
/// on standard input). `--iconv` in that form is refused: the words would arrive in the
/// client's charset. Any other use of `-s` is left to the option table, which refuses it.
fn secluded_form(words: &[command::Word]) -> Result<bool, Failure> {
    let texts: Vec<&[u8]> = words.iter().map(|w| w.text.as_slice()).collect();
    let at = if texts.get(2) == Some(&&b"--sender"[..]) {
        3
    } else {
        2
    };
    if texts.get(1) != Some(&&b"--server"[..])
        || !words
            .get(at)
            .and_then(command::Word::utf8)
            .is_some_and(secluded::is_secluded_bundle)
    {
        return Ok(false);
    }
    match &texts[at + 1..] {
        [] => Ok(true),
        [iconv] if iconv.starts_with(b"--iconv") => Err(Failure::Denied(
            "--iconv is refused with secluded arguments (the words would arrive in the client's charset)".into(),
        )),
        _ => Ok(false),
    }
}

/// Whether Landlock will be enforced for this mode on this kernel (the same table the
/// child applies).
pub fn landlock_will_enforce(mode: policy::ConfineMode) -> bool {
    matches!(
        crate::exec::confine::plan(mode, crate::exec::confine::probe()),
        crate::exec::confine::Plan::Enforce { .. }
    )
}

/// A standalone key's flags as a policy layer (authoritative, rrsync semantics:
/// a relative DIR is relative to the home directory).
fn key_layer(key: &KeyFlags, home: &Path) -> Layer {
    Layer {
        root: key
            .dir
            .as_ref()
            .map(|d| key_dir(d, home).display().to_string()),
        access: key.access,
        delete: key.no_delete.then_some(false),
        overwrite: key.no_overwrite.then_some(false),
        munge_links: key.munge.then_some(true),
        lock: key.no_lock.then_some(false),
        ..Layer::default()
    }
}

fn key_dir(dir: &str, home: &Path) -> PathBuf {
    policy::normalize(&if dir.starts_with('/') {
        PathBuf::from(dir)
    } else {
        home.join(dir)
    })
}

/// A nested key may only narrow the configured policy. Its DIR is expanded (`%u`, `~`)
/// first and must then lie, by its spelling, beneath the configured root; it is opened
/// later beneath the configured root's descriptor (RESOLVE_BENEATH), so no symlink along
/// it can lead out and it is never re-resolved by name.
fn narrow(policy: &mut Policy, key: &KeyFlags, account: &Account) -> Result<(), String> {
    let mut layer = Layer::default();
    if let Some(dir) = &key.dir {
        let configured = policy::expand_root(&policy.settings.root, &account.name, &account.home);
        let wanted = policy::expand_root(
            &key_dir(dir, &account.home).display().to_string(),
            &account.name,
            &account.home,
        );
        let outside = || {
            format!(
                "the key's directory {} is not inside the configured root {}",
                wanted.display(),
                configured.display()
            )
        };
        if dir.split('/').any(|c| c == "..") {
            return Err(outside());
        }
        let rel = wanted.strip_prefix(&configured).map_err(|_| outside())?;
        policy.subdir = (!rel.as_os_str().is_empty()).then(|| rel.to_path_buf());
    }
    if let Some(wanted) = key.access {
        let now = policy.settings.access;
        layer.access = Some(match (now, wanted) {
            (Access::ReadWrite, w) => w,
            (a, w) if a == w => a,
            _ => {
                return Err(format!(
                    "the key asks for {wanted} but this account is {now}: nothing is left"
                ))
            }
        });
    }
    if key.no_delete {
        layer.delete = Some(false);
    }
    if key.no_overwrite {
        layer.overwrite = Some(false);
    }
    if key.munge {
        layer.munge_links = Some(true);
    }
    policy.apply(&layer, &Source::Key);
    Ok(())
}

/// The entry point: argv and the captured sshd variables (the environment is already
/// clear). Returns the exit code; on success it does not return (rsync runs instead).
pub fn run(args: Vec<OsString>, ctx: SshContext) -> i32 {
    // No same-uid process may ptrace rshell while it decides.
    system::set_not_dumpable();
    let mode = match cli::parse(&args, ctx.original_command.is_some()) {
        Ok(m) => m,
        Err(e) => {
            // One line, and a record: the words may come from the client (nested form).
            let line = format!("rshell: denied: {e} (usage: see rshell --help)");
            eprintln!("{}", log::escape(&line, 1024));
            let argv: Vec<String> = args
                .iter()
                .map(|a| log::escape_bytes(a.as_encoded_bytes(), 256))
                .collect();
            log::send(
                &format!(
                    "deny uid={} reason=\"usage: {}\" argv=\"{}\"",
                    system::current_uid(),
                    log::escape(&e.to_string(), 256),
                    argv.join(" ")
                ),
                true,
            );
            // `-c STRING` comes from the client (nested form): a refusal, not a usage error.
            let from_client = args.get(1).is_some_and(|a| a == "-c");
            return if from_client { EXIT_DENIED } else { EXIT_USAGE };
        }
    };
    match mode {
        Mode::Help => {
            // Admin modes print to stdout (`rshell --help | less`). No client reaches them:
            // the nested form (`-c 'rshell ...'`) takes key flags only.
            print!("{}", cli::HELP);
            0
        }
        Mode::Version => {
            println!("rshell {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Mode::Test {
            command,
            user,
            from,
            key,
            config,
            json,
            secluded,
        } => admin::report::test(
            command.as_bytes(),
            user.as_deref(),
            from.as_deref(),
            key.as_ref(),
            config.as_deref(),
            json,
            secluded.as_ref().map(|s| s.as_bytes()),
        ),
        Mode::Policy { user, config } => admin::report::policy(user.as_deref(), config.as_deref()),
        // `--sshd-config` and `--user` are parsed (see cli::Mode::Check) for admin::lint::check.
        Mode::Check {
            config,
            strict,
            sshd_config,
            user,
        } => admin::lint::check_with(&admin::lint::CheckOptions {
            config,
            strict,
            sshd_config,
            user,
            pam_dir: None,
        }),
        Mode::Interactive => serve(Form::Login, None, None, &ctx),
        Mode::LoginShell { command } => serve(Form::Login, None, Some(command), &ctx),
        Mode::Nested { key } => serve(Form::Nested, Some(&key), ctx.original_command.clone(), &ctx),
        Mode::Standalone { key } => serve(
            Form::Standalone,
            Some(&key),
            ctx.original_command.clone(),
            &ctx,
        ),
    }
}

/// Serve one ssh request: decide, log, and exec rsync — or refuse.
fn serve(form: Form, key: Option<&KeyFlags>, command: Option<OsString>, ctx: &SshContext) -> i32 {
    let account = match system::current_account() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rshell: denied: {e}");
            log::send(
                &format!(
                    "deny uid={} reason=\"{}\"",
                    system::current_uid(),
                    log::escape(&e.to_string(), 256)
                ),
                true,
            );
            return EXIT_SYSTEM;
        }
    };
    let client = net::client_from_ssh_connection(ctx.connection.as_deref());
    let key_fp = ctx
        .user_auth
        .as_ref()
        .and_then(|p| log::key_fingerprint(Path::new(p)));
    let command_bytes = command.as_ref().map(|c| c.as_encoded_bytes().to_vec());
    let mut record = log::Decision {
        user: &account.name,
        uid: account.uid,
        client: client.map(|c| c.to_string()),
        // Labelled unverified: rshell cannot tell sshd's SSH_USER_AUTH from one set
        // through ~/.pam_environment (see `rshell --check` on ExposeAuthInfo).
        key: key_fp,
        mode: form.name(),
        section: "-".into(),
        landlock: "landlock=-".into(),
        command: command_bytes
            .as_deref()
            .map(|c| log::escape_bytes(c, log::MAX_LOGGED_COMMAND))
            .unwrap_or_else(|| "(none)".into()),
        ..Default::default()
    };
    let Some(command_bytes) = command_bytes else {
        let reason = match form {
            Form::Login => {
                "this account is for rsync transfers only; interactive logins are not available"
            }
            _ => "no client command (SSH_ORIGINAL_COMMAND is not set): this key is for rsync only",
        };
        return refuse(&mut record, reason, EXIT_DENIED);
    };
    let input = Input {
        form,
        key,
        config_path: Path::new(policy::DEFAULT_CONFIG),
        account: &account,
        client,
        command: &command_bytes,
    };
    let evaluation = evaluate_with(&input, true, SecludedWords::Stdin);
    if let Some(words) = &evaluation.secluded {
        // Log the vetted words like a command: the command line alone says little.
        let shown: Vec<String> = words.iter().map(|w| log::escape_bytes(w, 4096)).collect();
        record.command = format!("{} [secluded] {}", record.command, shown.join(" "));
    }
    if let Some(p) = &evaluation.policy {
        record.section = p.section.to_string();
    }
    match evaluation.outcome {
        Err(Failure::Probe) => {
            record.allowed = true;
            record.reason = "connectivity probe `true`".into();
            log::send(&record.line(), false);
            0
        }
        Err(Failure::Denied(reason)) => refuse(&mut record, &reason, EXIT_DENIED),
        Err(Failure::Config(reason)) => refuse(
            &mut record,
            &format!("configuration error: {reason}"),
            EXIT_CONFIG,
        ),
        Ok(plan) => {
            record.allowed = true;
            record.reason = plan.kind.into();
            record.landlock = predicted_landlock(&plan);
            // The vetted paths in full (the command above is capped).
            record.paths = plan.paths.clone();
            let require_log = evaluation
                .policy
                .as_ref()
                .is_some_and(|p| p.settings.require_log);
            if log::send(&record.line(), false) == log::Sink::None && require_log {
                // The record went nowhere: with require_log nothing runs unrecorded.
                eprintln!(
                    "rshell: denied: no log sink takes the record (require_log = true); ask the administrator"
                );
                return EXIT_SYSTEM;
            }
            execute(&plan, &record)
        }
    }
}

fn refuse(record: &mut log::Decision, reason: &str, code: i32) -> i32 {
    record.allowed = false;
    record.reason = reason.to_string();
    log::send(&record.line(), true);
    // The client reads this line on a terminal: controls and invisible characters are
    // escaped, quotes are not (`\"` would only be noise outside a quoted log field).
    eprintln!("rshell: denied: {}", log::escape_for_terminal(reason, 1024));
    code
}
