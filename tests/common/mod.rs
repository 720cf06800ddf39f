//! Shared fixtures for the table tests: a throw-away root, a synthetic account and the
//! real decision code run on a parsed policy (no ownership checks, no passwd).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rshell::check::ExecPlan;
use rshell::policy::{Config, Policy};
use rshell::sys::Account;
use rshell::{decide_command, Failure, Form, Input};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("rshell-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn account(home: &Path) -> Account {
    Account {
        name: "alice".into(),
        uid: 1000,
        gid: 1000,
        home: home.to_path_buf(),
        groups: vec!["alice".into(), "backup".into()],
    }
}

/// A world with a root (`<tmp>/root`, holding `dest/`, `data/a.txt`, `snap/prev/`),
/// a home outside it, and a config text whose `ROOT` placeholder is the root.
pub struct World {
    pub dir: TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
}

impl World {
    pub fn new(tag: &str) -> World {
        let dir = TempDir::new(tag);
        let root = dir.path().join("root");
        let home = dir.path().join("home/alice");
        for d in ["dest", "data/sub", "snap/prev", "src dir"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("data/a.txt"), "a").unwrap();
        std::fs::create_dir_all(&home).unwrap();
        World { dir, root, home }
    }

    pub fn policy(&self, config: &str) -> Policy {
        let text = config
            .replace("ROOT", self.root.to_str().unwrap())
            .replace("HOME", self.home.to_str().unwrap());
        let cfg = Config::parse(Path::new("/etc/rshell.toml"), &text).expect("test config parses");
        cfg.policy_for("alice", &["alice".into(), "backup".into()])
            .unwrap()
    }

    pub fn decide(&self, policy: &Policy, command: &str) -> Result<ExecPlan, Failure> {
        self.decide_from(policy, command, None)
    }

    pub fn decide_from(
        &self,
        policy: &Policy,
        command: &str,
        client: Option<&str>,
    ) -> Result<ExecPlan, Failure> {
        let account = account(&self.home);
        let input = Input {
            form: Form::Login,
            key: None,
            config_path: Path::new("/etc/rshell.toml"),
            account: &account,
            client: client.map(|c| c.parse().unwrap()),
            command: command.as_bytes(),
        };
        decide_command(&input, policy)
    }
}

/// The reference policy of the corpus table.
pub const REFERENCE: &str = "version = 1\n[defaults]\nroot = \"ROOT\"\n";

/// The corpus strings (non-comment lines of shared/corpus).
pub fn corpus() -> Vec<String> {
    let text = include_str!("../corpus-verdicts.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            l.split_once('\t')
                .expect("verdict<TAB>command")
                .1
                .to_string()
        })
        .collect()
}

/// The binary under test: `RSHELL_TEST_BIN` (tests/run-all.sh points it at the static
/// release build, so the mode tests run exactly what ships), else cargo's own build.
pub fn binary() -> String {
    std::env::var("RSHELL_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_rshell").to_string())
}
