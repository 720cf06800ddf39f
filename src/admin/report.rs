//! The admin's views: `--test` prints the decision a real run would make, with the
//! section each setting came from and the exact exec plan; `--policy` prints the merged
//! policy. Never execs, never logs to syslog. Everything goes to stdout (these modes are
//! run by an admin at a terminal or in a script; no client can reach them).
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::json;

use crate::cli::KeyFlags;
use crate::command::quote;
use crate::log::{escape_bytes, escape_for_terminal};
use crate::policy::{self, Config, ConfigError, Policy};
use crate::system::{self, Account};
use crate::{evaluate, Evaluation, Failure, Form, Input, EXIT_CONFIG, EXIT_DENIED, EXIT_USAGE};

/// The words of `--secluded`: `\0`-separated, starting with `rsync`, optionally ending
/// with the empty terminator. Bytes, as a client sends them (a Latin-1 name's `\xe9`).
/// Returns the words after `rsync`, as `secluded::read_words` does (the tests spell
/// their secluded words the same way and read them with this function).
pub fn secluded_words(spelled: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut words: Vec<Vec<u8>> = Vec::new();
    let mut rest = spelled;
    while let Some(at) = rest.windows(2).position(|w| w == b"\\0") {
        words.push(rest[..at].to_vec());
        rest = &rest[at + 2..];
    }
    words.push(rest.to_vec());
    while words.last().is_some_and(|w| w.is_empty()) {
        words.pop();
    }
    if words.first().map(Vec::as_slice) != Some(&b"rsync"[..]) {
        return Err(
            "the words start with `rsync`, separated by \\0 (e.g. 'rsync\\0.\\0/\\0\\0')".into(),
        );
    }
    words.remove(0);
    Ok(words)
}

fn account_for(user: Option<&str>) -> Result<Account, String> {
    match user {
        Some(name) => match system::account_by_name(name) {
            Ok(Some(a)) => Ok(a),
            Ok(None) => Err(format!("no such user: {name}")),
            Err(e) => Err(e.to_string()),
        },
        None => system::current_account().map_err(|e| e.to_string()),
    }
}

/// A line for a person at a terminal: no control or invisible character of a file name,
/// path or command gets through raw (ESC sequences, bidi overrides).
/// A reader that stops early (`rshell --policy | head`) is not an error.
fn say(line: &str) {
    write_line(&escape_for_terminal(line, usize::MAX));
}

fn write_line(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// With an explicit `--config`, a dry run reads the files even when a real run would
/// refuse them (ownership, mode), so that a config can be tried before it is installed;
/// the lines that say so, each naming the file and the reason.
fn dry_run_config(config: Option<&Path>) -> Vec<String> {
    let Some(path) = config else {
        return Vec::new();
    };
    policy::dry_run_reads_untrusted(path);
    policy::trust_problems(path)
        .iter()
        .map(|e| {
            format!(
                "warning: a real run refuses {e}; this dry run evaluates it anyway (install it owned by root and writable only by root, e.g. `sudo install -m 644 FILE /etc/rshell.toml`)"
            )
        })
        .collect()
}

/// `section: [users.alice] (/etc/rshell.d/10-alice.toml)`: the section and its file.
fn section_line(p: &Policy) -> String {
    match p.origins.iter().find(|(s, _)| *s == p.section) {
        Some((s, file)) => format!("{s} ({})", file.display()),
        None => p.section.to_string(),
    }
}

/// `rshell --test CMD ...`: exit 0 allowed, 1 denied, 64 usage, 78 config.
#[allow(clippy::too_many_arguments)]
pub fn test(
    command: &[u8],
    user: Option<&str>,
    from: Option<&str>,
    key: Option<&KeyFlags>,
    config: Option<&Path>,
    json: bool,
    secluded: Option<&[u8]>,
) -> i32 {
    let refused = dry_run_config(config);
    if !json {
        for line in &refused {
            say(line);
        }
    }
    let account = match account_for(user) {
        Ok(a) => a,
        Err(e) => {
            say(&format!("rshell: {e}"));
            return EXIT_USAGE;
        }
    };
    let client: Option<IpAddr> = match from.map(str::parse) {
        None => None,
        Some(Ok(ip)) => Some(ip),
        Some(Err(_)) => {
            say(&format!(
                "rshell: --from needs an IP address, got {:?}",
                from.unwrap_or_default()
            ));
            return EXIT_USAGE;
        }
    };
    if user.is_some() && system::current_uid() == 0 && account.uid != 0 {
        if let Err(e) = system::assume_fs_identity(&account) {
            say(&format!(
                "rshell: cannot check paths as {}: {e}",
                account.name
            ));
            return crate::EXIT_SYSTEM;
        }
    }
    let form = if key.is_some() {
        Form::Standalone
    } else {
        Form::Login
    };
    let input = Input {
        form,
        key,
        config_path: config.unwrap_or(Path::new(policy::DEFAULT_CONFIG)),
        account: &account,
        client,
        command,
    };
    // `--secluded 'rsync\0.\0/\0\0'`: the words as the client writes them, `\0` for NUL;
    // the leading `rsync` and the empty terminator are what read_words also strips.
    let words: Option<Vec<Vec<u8>>> = match secluded.map(secluded_words) {
        None => None,
        Some(Ok(w)) => Some(w),
        Some(Err(e)) => {
            say(&format!("rshell: --secluded: {e}"));
            return EXIT_USAGE;
        }
    };
    let source = match &words {
        Some(w) => crate::SecludedWords::Given(w),
        None => crate::SecludedWords::Absent,
    };
    let evaluation = evaluate(&input, source);
    let code = match &evaluation.outcome {
        Ok(_) | Err(Failure::Probe) => 0,
        Err(Failure::Denied(_)) => 1,
        Err(Failure::Config(_)) => EXIT_CONFIG,
    };
    if json {
        let mut v = to_json(&input, &evaluation);
        v["refused_by_a_real_run"] = json!(refused);
        write_line(&v.to_string());
    } else {
        for line in to_text(&input, &evaluation) {
            say(&line);
        }
    }
    code
}

fn verdict_and_reason(e: &Evaluation) -> (&'static str, String) {
    match &e.outcome {
        Ok(plan) => ("allow", format!("vetted rsync {} request", plan.kind)),
        Err(Failure::Probe) => (
            "allow",
            "connectivity probe `true`: exit 0, nothing is run".into(),
        ),
        Err(Failure::Denied(r)) => ("deny", r.clone()),
        Err(Failure::Config(r)) => ("config-error", r.clone()),
    }
}

/// The text report, one line per entry; each is escaped for the terminal as a whole, so
/// a newline inside a file name cannot start a line of its own.
fn to_text(input: &Input, e: &Evaluation) -> Vec<String> {
    let (verdict, reason) = verdict_and_reason(e);
    let mut out = Vec::new();
    out.push(format!("verdict: {verdict}"));
    out.push(format!("reason: {reason}"));
    out.push(format!(
        "user: {} (uid {}, groups {})",
        input.account.name,
        input.account.uid,
        input.account.groups.join(",")
    ));
    out.push(format!(
        "client: {}",
        input.client.map_or("-".to_string(), |c| c.to_string())
    ));
    out.push(format!("form: {}", input.form.name()));
    if let Some(p) = &e.policy {
        out.push(format!("section: {}", section_line(p)));
        out.push("policy:".to_string());
        for (k, v, src) in p.rows() {
            out.push(format!("  {k} = {v}  ({src})"));
        }
    }
    if let Ok(plan) = &e.outcome {
        // Words that are not UTF-8 are shown in double quotes with the log's escaping
        // (`"caf\xe9.txt"`): every byte is there, none is converted.
        let argv: Vec<String> = plan.argv.iter().map(|a| quote(a.as_bytes())).collect();
        out.push(format!("exec: {}", plan.program.display()));
        out.push(format!("argv: {}", argv.join(" ")));
        let shown: Vec<String> = plan.shown_argv_bytes().iter().map(|a| quote(a)).collect();
        out.push(format!("argv (pins as <path>): {}", shown.join(" ")));
        let env: Vec<String> = plan
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", quote(v.as_bytes())))
            .collect();
        out.push(format!("env: {}", env.join(" ")));
        out.push(format!(
            "cwd: {} (the opened root descriptor)",
            plan.root.path.display()
        ));
        out.push(format!("umask: {:04o}", plan.umask));
        out.push(format!("lock: {}", lock_text(plan)));
        for pin in &plan.pins {
            let when = match &pin.prepare {
                crate::decide::resolve::Prepare::Nothing => String::new(),
                crate::decide::resolve::Prepare::CreateDirs { names, .. } => {
                    let names = crate::decide::resolve::suffix(names);
                    format!(
                        " (created at run time: {})",
                        crate::command::display(&names[1..])
                    )
                }
                crate::decide::resolve::Prepare::EmptyDir => {
                    " (missing: an empty unnamed directory at run time)".to_string()
                }
            };
            out.push(format!(
                "pin: {} = {}{when}",
                pin.fd_path(),
                quote(&pin.shown)
            ));
        }
        out.push(format!(
            "outcome record: {}",
            if plan.log_outcome {
                "yes (spawn and wait)"
            } else {
                "no (exec in place)"
            }
        ));
        out.push(format!(
            "confine: {} -> {}",
            plan.confine,
            crate::predicted_landlock(plan)
        ));
        for rule in plan.ruleset.describe() {
            out.push(format!("  {rule}"));
        }
    }
    out
}

fn lock_text(plan: &crate::decide::ExecPlan) -> String {
    let root = plan.locked.as_ref().map_or_else(
        || "the configured root".to_string(),
        |r| r.path.display().to_string(),
    );
    match plan.lock {
        Some(crate::system::LockKind::Exclusive) => {
            format!("exclusive lock on {root} (taken before resolving)")
        }
        Some(crate::system::LockKind::Shared) => {
            format!("shared lock on {root} (taken before resolving)")
        }
        None => "none (lock = false with munge_links = true)".to_string(),
    }
}

fn to_json(input: &Input, e: &Evaluation) -> serde_json::Value {
    let (verdict, reason) = verdict_and_reason(e);
    let policy = e.policy.as_ref().map(|p| {
        let mut map = serde_json::Map::new();
        for (k, v, src) in p.rows() {
            map.insert(k.to_string(), json!({ "value": v, "source": src }));
        }
        serde_json::Value::Object(map)
    });
    // Names are bytes; JSON strings are Unicode. Every word and path is given with the
    // log's escaping (`caf\xe9.txt`, `a\\b`, `\"`), which keeps every byte and reads
    // the same as the log record.
    let escaped = |words: &[Vec<u8>]| -> Vec<String> {
        words.iter().map(|w| escape_bytes(w, usize::MAX)).collect()
    };
    let plan = e.outcome.as_ref().ok().map(|plan| {
        let argv: Vec<Vec<u8>> = plan.argv.iter().map(|a| a.as_bytes().to_vec()).collect();
        json!({
            "program": plan.program,
            "argv": escaped(&argv),
            "shown_argv": escaped(&plan.shown_argv_bytes()),
            "paths": escaped(&plan.paths),
            "env": plan.env.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "cwd": plan.root.path,
            "pins": plan.pins.iter().map(|p| json!({"fd": p.fd_path(), "path": escape_bytes(&p.shown, usize::MAX)})).collect::<Vec<_>>(),
            "umask": format!("{:04o}", plan.umask),
            "lock": lock_text(plan),
            "log_outcome": plan.log_outcome,
            "confine": plan.confine,
            "landlock": crate::predicted_landlock(plan),
            "ruleset": plan.ruleset,
            "kind": plan.kind,
        })
    });
    json!({
        "verdict": verdict,
        "reason": reason,
        "user": input.account.name,
        "uid": input.account.uid,
        "groups": input.account.groups,
        "client": input.client.map(|c| c.to_string()),
        "form": input.form.name(),
        "section": e.policy.as_ref().map(|p| p.section.to_string()),
        "section_file": e.policy.as_ref().and_then(|p| {
            p.origins.iter().find(|(s, _)| *s == p.section).map(|(_, f)| f.clone())
        }),
        "policy": policy,
        "plan": plan,
    })
}

/// `rshell --policy [--user U] [--config F]`. A user with a `[users.U]` section but no
/// account yet (created after the policy is written) is shown too: without an account
/// the groups are unknown, and `~` in the root has no home to expand to.
pub fn policy(user: Option<&str>, config: Option<&Path>) -> i32 {
    for line in dry_run_config(config) {
        say(&line);
    }
    let path = config.unwrap_or(Path::new(policy::DEFAULT_CONFIG));
    let account = match user {
        Some(name) => match system::account_by_name(name) {
            Ok(a) => a,
            Err(e) => {
                say(&format!("rshell: {e}"));
                return EXIT_USAGE;
            }
        },
        None => match system::current_account() {
            Ok(a) => Some(a),
            Err(e) => {
                say(&format!("rshell: {e}"));
                return EXIT_USAGE;
            }
        },
    };
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e @ ConfigError::Missing(_)) => {
            say(&format!("rshell: {e} (login-shell requests are all denied; forced keys use the built-in defaults)"));
            return EXIT_CONFIG;
        }
        Err(e) => {
            say(&format!("rshell: {e}"));
            return EXIT_CONFIG;
        }
    };
    let (name, groups) = match &account {
        Some(a) => (a.name.as_str(), a.groups.as_slice()),
        None => {
            let name = user.unwrap_or_default();
            if !cfg.users.contains_key(name) {
                say(&format!(
                    "rshell: no such user: {name} (and no [users.{name}] section in {})",
                    path.display()
                ));
                return EXIT_USAGE;
            }
            (name, &[][..])
        }
    };
    let policy = match cfg.policy_for(name, groups) {
        Ok(p) => p,
        Err(e) => {
            say(&format!("rshell: {e}"));
            return EXIT_CONFIG;
        }
    };
    match &account {
        Some(a) => say(&format!(
            "user: {} (uid {}, groups {})",
            a.name,
            a.uid,
            a.groups.join(",")
        )),
        None => say(&format!(
            "user: {name} (no such account yet: its groups are unknown, so no [groups.*] section is applied below)"
        )),
    }
    let dropins = cfg.files.len() - 1;
    say(&format!(
        "config: {}{}",
        path.display(),
        if dropins > 0 {
            format!(
                " + {dropins} drop-in{} in {}",
                if dropins == 1 { "" } else { "s" },
                policy::dropin_dir(path).display()
            )
        } else {
            String::new()
        }
    ));
    if !policy.configured {
        say("note: no section applies to this user: login-shell requests are denied");
    }
    for (section, file) in &policy.origins {
        say(&format!("section: {section} ({})", file.display()));
    }
    for (k, v, src) in policy.rows() {
        say(&format!("{k} = {v}  ({src})"));
    }
    let template = &policy.settings.root;
    match &account {
        Some(a) => say(&format!(
            "root expands to: {}",
            policy::expand_root(template, &a.name, &a.home).display()
        )),
        None if template == "~" || template.starts_with("~/") => say(&format!(
            "root expands to: {} (unexpanded: `~` is the home directory of {name}, which has no account yet)",
            template.replace("%u", name)
        )),
        None => say(&format!(
            "root expands to: {}",
            policy::expand_root(template, name, Path::new("/")).display()
        )),
    }
    if policy.configured {
        0
    } else {
        EXIT_DENIED
    }
}
