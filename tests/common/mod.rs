//! Shared fixtures for the table tests: a throw-away root, a synthetic account and the
//! real decision code run on a parsed policy (no ownership checks, no passwd); and
//! [`needs`], the one way a test says what its environment must provide. The real-rsync
//! suites share [`site`]: a throw-away root, outside and client, and a fake ssh.
#![allow(dead_code)]

pub mod site;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rshell::decide::ExecPlan;
use rshell::policy::{Config, Policy};
use rshell::system::Account;
use rshell::{decide_command, decide_secluded, Failure, Form, Input};

/// The secluded words as a corpus line spells them (`rsync\0.\0dest/\0\0`): the words
/// after the leading `rsync` (as `secluded::read_words` returns them), terminator dropped;
/// read by the same function as `rshell --test --secluded`.
pub fn secluded_words(spelled: &str) -> Vec<Vec<u8>> {
    rshell::admin::report::secluded_words(spelled.as_bytes()).expect("words start with rsync")
}

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

    /// A fresh root-owned 0755 directory directly under `/`, for files rshell must trust
    /// (the policy, a daemon_config): every directory above a trusted file must be root's
    /// alone, and the system temp dir is world-writable. Needs root; removed on drop.
    pub fn trusted(tag: &str) -> TempDir {
        use std::os::unix::fs::PermissionsExt;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = PathBuf::from(format!("/rshell-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(p)
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

    /// A world holding what the corpus commands name and rsync needs to exist: temp dirs
    /// (rsync refuses a missing one), server-side file lists, and the Latin-1 lines'
    /// names (a directory `caf\xe9/` holding `n\xff`). For tests/corpus.rs and the bench.
    pub fn with_corpus_fixtures(tag: &str) -> World {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let world = World::new(tag);
        for d in ["tmp/stage", "dest/stage", "remote", "srv/data"] {
            std::fs::create_dir_all(world.root.join(d)).unwrap();
        }
        for f in ["remote/list.txt", "srv/list.txt", "srv/list0.txt"] {
            std::fs::write(world.root.join(f), "a.txt\n").unwrap();
        }
        let latin1 = world.root.join(OsStr::from_bytes(b"caf\xe9"));
        std::fs::create_dir(&latin1).unwrap();
        std::fs::write(latin1.join(OsStr::from_bytes(b"n\xff")), "x").unwrap();
        world
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
        self.with_input(command, client, |input| decide_command(input, policy))
    }

    /// A secluded-args request: the command line plus the words from standard input.
    pub fn decide_secluded(
        &self,
        policy: &Policy,
        command: &str,
        words: &[Vec<u8>],
    ) -> Result<ExecPlan, Failure> {
        self.decide_bytes(policy, command.as_bytes(), Some(words))
    }

    /// The request `command` as sshd hands it over (bytes); with `words`, a secluded-args
    /// request whose words come from standard input.
    pub fn decide_bytes(
        &self,
        policy: &Policy,
        command: &[u8],
        words: Option<&[Vec<u8>]>,
    ) -> Result<ExecPlan, Failure> {
        self.with_input(command, None, |input| match words {
            Some(words) => decide_secluded(input, policy, words),
            None => decide_command(input, policy),
        })
    }

    fn with_input<T>(
        &self,
        command: impl AsRef<[u8]>,
        client: Option<&str>,
        f: impl FnOnce(&Input) -> T,
    ) -> T {
        let account = account(&self.home);
        let input = Input {
            form: Form::Login,
            key: None,
            config_path: Path::new("/etc/rshell.toml"),
            account: &account,
            client: client.map(|c| c.parse().unwrap()),
            command: command.as_ref(),
        };
        f(&input)
    }
}

/// The reference policy of the corpus table.
pub const REFERENCE: &str = "version = 1\n[defaults]\nroot = \"ROOT\"\n";

/// The corpus strings (the command column of tests/corpus-verdicts.tsv).
pub fn corpus() -> Vec<String> {
    let text = include_str!("../corpus-verdicts.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let rest = l.split_once('\t').expect("verdict<TAB>command").1;
            // A secluded line carries its stdin words in a third column.
            rest.split('\t').next().unwrap_or(rest).to_string()
        })
        .collect()
}

/// The binary under test: `RSHELL_TEST_BIN` (tests/run-all.sh points it at the static
/// release build, so the mode tests run exactly what ships), else cargo's own build.
pub fn binary() -> String {
    std::env::var("RSHELL_TEST_BIN")
        .ok()
        .filter(|bin| !bin.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_rshell").to_string())
}

/// What a test needs from the machine (root, a Landlock kernel, a program...) and whether it
/// is here: `here` is `Err(why not)` when it is missing. A test that cannot do its job must
/// not count as passed, so a missing need fails the test, naming it. Only with
/// `RSHELL_ALLOW_SKIP=1` (a developer's partial run; CI and tests/run-all.sh never set it)
/// does it print `skipped: <why>` and return false, and the test returns.
pub fn needs(what: &str, here: Result<(), String>) -> bool {
    let Err(why) = here else {
        return true;
    };
    if std::env::var_os("RSHELL_ALLOW_SKIP").is_some_and(|v| v == "1") {
        // Straight to the terminal: the test harness captures print! output of passing tests.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "skipped: needs {what}: {why}");
        return false;
    }
    panic!(
        "this test needs {what}: {why}. Run it where that holds (CI runs everything as root \
         on a Landlock kernel with the packages .ci/run installs), or set RSHELL_ALLOW_SKIP=1 \
         to skip it visibly."
    );
}

/// Running as root.
pub fn root() -> Result<(), String> {
    match rshell::system::current_uid() {
        0 => Ok(()),
        uid => Err(format!("running as uid {uid}")),
    }
}

/// An executable at `path`.
pub fn program(path: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err(format!("{path} is not an executable file")),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

/// A program found on `PATH` that runs (`NAME ARGS` exits 0, or at least starts).
pub fn command(name: &str, args: &[&str]) -> Result<(), String> {
    match std::process::Command::new(name)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("`{name}` cannot run: {e}")),
    }
}

/// `unshare -m` works (root and a kernel with mount namespaces).
pub fn mount_namespace() -> Result<(), String> {
    match std::process::Command::new("unshare")
        .args(["-m", "true"])
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("`unshare -m true` failed ({s})")),
        Err(e) => Err(format!("`unshare` cannot run: {e}")),
    }
}

/// The kernel's own answer to "which Landlock ABI?", asked with the raw syscall
/// (`landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`), so it does not
/// depend on the code under test. `Err(errno)`: ENOSYS when the kernel is built without
/// Landlock, EOPNOTSUPP when it is built in but not enabled at boot.
pub fn kernel_landlock_abi() -> Result<u32, i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer, size 0 and only the VERSION flag the kernel
    // reads no memory and creates nothing; it returns the ABI version or fails with errno.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r as u32)
    }
}

/// The kernel's active LSMs (`/sys/kernel/security/lsm`). Where securityfs is not mounted,
/// root mounts it in a private mount namespace to read the list.
pub fn active_lsms() -> Result<Vec<String>, String> {
    let parse = |text: &str| text.trim().split(',').map(str::to_string).collect();
    if let Ok(text) = std::fs::read_to_string("/sys/kernel/security/lsm") {
        return Ok(parse(&text));
    }
    let out = std::process::Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            "mount -t securityfs securityfs /sys/kernel/security && cat /sys/kernel/security/lsm",
        ])
        .output()
        .map_err(|e| format!("`unshare` cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "/sys/kernel/security/lsm is unreadable and mounting securityfs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

/// A kernel on which rshell's Landlock rulesets are enforced (ABI 2 or newer).
pub fn landlock() -> Result<(), String> {
    match kernel_landlock_abi() {
        Ok(abi) if abi >= 2 => Ok(()),
        Ok(abi) => Err(format!(
            "the kernel's Landlock ABI is {abi}; rshell enforces from ABI 2"
        )),
        Err(errno) => Err(format!(
            "the kernel has no Landlock ({})",
            std::io::Error::from_raw_os_error(errno)
        )),
    }
}

/// Makes the system calls numbered `calls` fail with `errno` in this thread and what it
/// execs (seccomp, with `no_new_privs`), as on a kernel that lacks them: e.g. Landlock's
/// 444–446 (the same numbers on every architecture), or close_range before Linux 5.11.
/// For a child process of a test (re-executed test binary), never the harness itself.
pub fn fail_system_calls(calls: &[u32], errno: u32) {
    const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let stmt = |code, k| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    // Load seccomp_data.nr; each listed number jumps to the last statement (the errno).
    let mut filter = vec![stmt(BPF_LD_W_ABS, 0)];
    for (i, nr) in calls.iter().enumerate() {
        filter.push(libc::sock_filter {
            code: BPF_JEQ_K,
            jt: u8::try_from(calls.len() - i).expect("a short list"),
            jf: 0,
            k: *nr,
        });
    }
    filter.push(stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW));
    filter.push(stmt(BPF_RET_K, libc::SECCOMP_RET_ERRNO | errno));
    let program = libc::sock_fprog {
        len: u16::try_from(filter.len()).expect("a short filter"),
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls; `program` points to `filter`, both alive across the call, and
    // the kernel copies the filter before returning.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const libc::sock_fprog
            ),
            0,
            "seccomp: {}",
            std::io::Error::last_os_error()
        );
    }
}
