//! The admin's views (design §2): `--test` prints the decision a real run would make,
//! with the section each setting came from and the exact exec plan; `--policy` prints
//! the merged policy. Never execs, never logs to syslog.
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::path::Path;

use serde_json::json;

use crate::cli::KeyFlags;
use crate::command::quote;
use crate::policy::{self, Config, ConfigError, Policy};
use crate::sys::{self, Account};
use crate::{evaluate, Evaluation, Failure, Form, Input, EXIT_CONFIG, EXIT_DENIED, EXIT_USAGE};

fn account_for(user: Option<&str>) -> Result<Account, String> {
    match user {
        Some(name) => match sys::account_by_name(name) {
            Ok(Some(a)) => Ok(a),
            Ok(None) => Err(format!("no such user: {name}")),
            Err(e) => Err(e.to_string()),
        },
        None => sys::current_account().map_err(|e| e.to_string()),
    }
}

/// `rshell --test CMD ...`: exit 0 allowed, 1 denied, 64 usage, 78 config.
pub fn test(
    command: &str,
    user: Option<&str>,
    from: Option<&str>,
    key: Option<&KeyFlags>,
    config: Option<&Path>,
    json: bool,
) -> i32 {
    let account = match account_for(user) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rshell: {e}");
            return EXIT_USAGE;
        }
    };
    let client: Option<IpAddr> = match from.map(str::parse) {
        None => None,
        Some(Ok(ip)) => Some(ip),
        Some(Err(_)) => {
            eprintln!(
                "rshell: --from needs an IP address, got {:?}",
                from.unwrap_or_default()
            );
            return EXIT_USAGE;
        }
    };
    if user.is_some() && sys::current_uid() == 0 && account.uid != 0 {
        if let Err(e) = sys::assume_fs_identity(&account) {
            eprintln!("rshell: cannot check paths as {}: {e}", account.name);
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
        command: command.as_bytes(),
    };
    let evaluation = evaluate(&input, crate::SecludedWords::Absent);
    let code = match &evaluation.outcome {
        Ok(_) | Err(Failure::Probe) => 0,
        Err(Failure::Denied(_)) => 1,
        Err(Failure::Config(_)) => EXIT_CONFIG,
    };
    if json {
        println!("{}", to_json(&input, &evaluation));
    } else {
        print!("{}", to_text(&input, &evaluation));
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

fn to_text(input: &Input, e: &Evaluation) -> String {
    let (verdict, reason) = verdict_and_reason(e);
    let mut out = String::new();
    out += &format!("verdict: {verdict}\n");
    out += &format!("reason: {reason}\n");
    out += &format!(
        "user: {} (uid {}, groups {})\n",
        input.account.name,
        input.account.uid,
        input.account.groups.join(",")
    );
    out += &format!(
        "client: {}\n",
        input.client.map_or("-".to_string(), |c| c.to_string())
    );
    out += &format!("form: {}\n", input.form.name());
    if let Some(p) = &e.policy {
        out += &format!("section: {}\n", p.section);
        out += "policy:\n";
        for (k, v, src) in p.rows() {
            out += &format!("  {k} = {v}  ({src})\n");
        }
    }
    if let Ok(plan) = &e.outcome {
        let argv: Vec<String> = plan.argv.iter().map(|a| quote(a)).collect();
        out += &format!("exec: {}\n", plan.program.display());
        out += &format!("argv: {}\n", argv.join(" "));
        let shown: Vec<String> = plan.shown_argv().iter().map(|a| quote(a)).collect();
        out += &format!("argv (pins as <path>): {}\n", shown.join(" "));
        let env: Vec<String> = plan
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", quote(v)))
            .collect();
        out += &format!("env: {}\n", env.join(" "));
        out += &format!(
            "cwd: {} (the opened root descriptor)\n",
            plan.root.path.display()
        );
        out += &format!("umask: {:04o}\n", plan.umask);
        out += &format!("lock: {}\n", lock_text(plan));
        for pin in &plan.pins {
            let when = match &pin.prepare {
                crate::resolve::Prepare::Nothing => String::new(),
                crate::resolve::Prepare::CreateDirs { names, .. } => {
                    format!(" (created at run time: {})", names.join("/"))
                }
                crate::resolve::Prepare::EmptyDir => {
                    " (missing: an empty unnamed directory at run time)".to_string()
                }
            };
            out += &format!("pin: {} = {}{when}\n", pin.word(""), quote(&pin.shown));
        }
        out += &format!(
            "outcome record: {}\n",
            if plan.log_outcome {
                "yes (fork and wait)"
            } else {
                "no (exec in place)"
            }
        );
        out += &format!(
            "confine: {} -> {}\n",
            plan.confine,
            crate::predicted_landlock(plan)
        );
        for rule in plan.ruleset.describe() {
            out += &format!("  {rule}\n");
        }
    }
    out
}

fn lock_text(plan: &crate::check::ExecPlan) -> String {
    let root = plan.locked.as_ref().map_or_else(
        || "the configured root".to_string(),
        |r| r.path.display().to_string(),
    );
    match plan.lock {
        Some(crate::sys::LockKind::Exclusive) => {
            format!("exclusive lock on {root} (taken before resolving)")
        }
        Some(crate::sys::LockKind::Shared) => {
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
    let plan = e.outcome.as_ref().ok().map(|plan| {
        json!({
            "program": plan.program,
            "argv": plan.argv,
            "shown_argv": plan.shown_argv(),
            "env": plan.env.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "cwd": plan.root.path,
            "pins": plan.pins.iter().map(|p| json!({"fd": p.word(""), "path": p.shown})).collect::<Vec<_>>(),
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
        "policy": policy,
        "plan": plan,
    })
}

/// `rshell --policy [--user U] [--config F]`.
pub fn policy(user: Option<&str>, config: Option<&Path>) -> i32 {
    let account = match account_for(user) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rshell: {e}");
            return EXIT_USAGE;
        }
    };
    let path = config.unwrap_or(Path::new(policy::DEFAULT_CONFIG));
    let policy: Policy = match Config::load(path)
        .and_then(|c| c.policy_for(&account.name, &account.groups))
    {
        Ok(p) => p,
        Err(e @ ConfigError::Missing(_)) => {
            eprintln!("rshell: {e} (login-shell requests are all denied; forced keys use the built-in defaults)");
            return EXIT_CONFIG;
        }
        Err(e) => {
            eprintln!("rshell: {e}");
            return EXIT_CONFIG;
        }
    };
    println!(
        "user: {} (uid {}, groups {})",
        account.name,
        account.uid,
        account.groups.join(",")
    );
    println!("config: {}", path.display());
    if !policy.configured {
        println!("note: no section applies to this user: login-shell requests are denied");
    }
    let root = policy::expand_root(&policy.settings.root, &account.name, &account.home);
    for (k, v, src) in policy.rows() {
        println!("{k} = {v}  ({src})");
    }
    println!("root expands to: {}", root.display());
    if policy.configured {
        0
    } else {
        EXIT_DENIED
    }
}
