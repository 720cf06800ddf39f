//! Accounts from a directory (LDAP/SSSD/winbind stand-in): a tiny NSS module
//! (`libnss_rshelltest.so.2`, built here with cc) serves uid 4242 "diruser" and the groups
//! 4242 "dirusers" and 4343 "dirgroup"; variants of it answer with a hostile name, a uid
//! that was not asked, a malformed line, or never answer.
//!
//! How the module is made visible without touching the system: glibc's NSS loads
//! `libnss_<service>.so.2` with dlopen(3), whose search (ld.so(8)) consults
//! /etc/ld.so.cache. The test builds its own cache with `ldconfig -X -C` (the system's
//! directories plus the test's module directory; -X: no links are made anywhere) and, in a
//! private mount namespace only (`unshare -m`), bind-mounts it over /etc/ld.so.cache and
//! its own nsswitch.conf (`passwd: files rshelltest`) over /etc/nsswitch.conf. Nothing is
//! created in a system library directory and nothing outside the namespace changes. The
//! chosen variant is bind-mounted onto the module's one name in the test's directory.
//!
//! rshell then runs as uid 4242 (setpriv --reuid/--regid/--groups) with `-c`, as sshd
//! would run it, with the test policy over /etc/rshell.toml and a datagram socket over
//! /dev/log. Needs root and cc (see `common::needs`).
mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::TempDir;
use rshell::system::identity::{self, KernelIds, Lookup, Source};

/// The tests share the /etc/rshell.toml and /dev/log mount targets: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const MODULE_C: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef NAME
#define NAME "diruser"
#endif
#ifndef ANSWER_UID
#define ANSWER_UID 4242
#endif
#ifndef GECOS
#define GECOS "Directory User"
#endif

/* Who loaded this module: one line "PID EXE" per call into it. */
static void mark(void) {
  char exe[256] = "?", line[320];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) exe[n] = 0;
  int fd = open(MARKER, O_WRONLY | O_CREAT | O_APPEND, 0666);
  if (fd < 0) return;
  int len = snprintf(line, sizeof line, "%d %s\n", (int)getpid(), exe);
  if (write(fd, line, len) < 0) {}
  close(fd);
}

static int put(char **dst, const char *src, char **buf, size_t *left) {
  size_t n = strlen(src) + 1;
  if (n > *left) return -1;
  memcpy(*buf, src, n);
  *dst = *buf;
  *buf += n;
  *left -= n;
  return 0;
}

static enum nss_status fill(struct passwd *pw, char *buf, size_t len, int *errnop) {
  mark();
#ifdef HANG
  /* A directory that never answers, with a helper process of its own. */
  fork();
  mark();
  for (;;) pause();
#endif
  if (put(&pw->pw_name, NAME, &buf, &len) || put(&pw->pw_passwd, "*", &buf, &len) ||
      put(&pw->pw_gecos, GECOS, &buf, &len) || put(&pw->pw_dir, HOME, &buf, &len) ||
      put(&pw->pw_shell, "/usr/bin/rshell", &buf, &len)) {
    *errnop = ERANGE;
    return NSS_STATUS_TRYAGAIN;
  }
  pw->pw_uid = ANSWER_UID;
  pw->pw_gid = 4242;
  return NSS_STATUS_SUCCESS;
}

enum nss_status _nss_rshelltest_getpwuid_r(uid_t uid, struct passwd *pw, char *buf,
                                           size_t len, int *errnop) {
  if (uid != 4242) return NSS_STATUS_NOTFOUND;
  return fill(pw, buf, len, errnop);
}

enum nss_status _nss_rshelltest_getpwnam_r(const char *name, struct passwd *pw, char *buf,
                                           size_t len, int *errnop) {
  if (strcmp(name, "diruser") != 0) return NSS_STATUS_NOTFOUND;
  return fill(pw, buf, len, errnop);
}

enum nss_status _nss_rshelltest_getgrgid_r(gid_t gid, struct group *gr, char *buf, size_t len,
                                           int *errnop) {
  const char *name = gid == 4242 ? "dirusers" : gid == 4343 ? "dirgroup" : NULL;
  if (!name) return NSS_STATUS_NOTFOUND;
  mark();
  uintptr_t at = ((uintptr_t)buf + sizeof(char *) - 1) & ~(uintptr_t)(sizeof(char *) - 1);
  size_t skip = at - (uintptr_t)buf;
  if (len < skip + sizeof(char *)) { *errnop = ERANGE; return NSS_STATUS_TRYAGAIN; }
  gr->gr_mem = (char **)at;
  gr->gr_mem[0] = NULL;
  buf += skip + sizeof(char *);
  len -= skip + sizeof(char *);
  if (put(&gr->gr_name, name, &buf, &len) || put(&gr->gr_passwd, "*", &buf, &len)) {
    *errnop = ERANGE;
    return NSS_STATUS_TRYAGAIN;
  }
  gr->gr_gid = gid;
  return NSS_STATUS_SUCCESS;
}

enum nss_status _nss_rshelltest_initgroups_dyn(const char *user, gid_t group, long *start,
                                               long *size, gid_t **groups, long limit,
                                               int *errnop) {
  if (strcmp(user, "diruser") != 0) return NSS_STATUS_NOTFOUND;
  if (*start == *size) {
    gid_t *more = realloc(*groups, 2 * *size * sizeof(gid_t));
    if (!more) { *errnop = ENOMEM; return NSS_STATUS_TRYAGAIN; }
    *groups = more;
    *size *= 2;
  }
  (*groups)[(*start)++] = 4343;
  return NSS_STATUS_SUCCESS;
}
"#;

/// A shared library whose constructor records which program loaded it.
const PRELOAD_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void loaded(void) {
  char exe[256] = "?", line[320];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) exe[n] = 0;
  int fd = open(MARKER, O_WRONLY | O_CREAT | O_APPEND, 0666);
  if (fd < 0) return;
  int len = snprintf(line, sizeof line, "%d %s\n", (int)getpid(), exe);
  if (write(fd, line, len) < 0) {}
  close(fd);
}
"#;

/// The module's variants: file name and the C definitions that make it.
const VARIANTS: &[(&str, &str)] = &[
    ("good", ""),
    ("hostile", "-DNAME=\"-s../x\""),
    ("mismatch", "-DANSWER_UID=0"),
    // glibc's getent turns ':' and '\n' inside a field into spaces, but passes other
    // control characters and relative homes through.
    ("malformed", "-DNAME=\"dir\\033user\""),
    ("relhome", "-DHOME=\"rel/home\""),
    ("hang", "-DHANG"),
];

struct Lab {
    _serial: MutexGuard<'static, ()>,
    dir: TempDir,
    root: PathBuf,
    config: PathBuf,
    nsswitch: PathBuf,
    cache: PathBuf,
    /// The one name ld.so.cache knows the module by; a variant is bind-mounted onto it.
    module: PathBuf,
    marks: PathBuf,
    record: PathBuf,
    log: UnixDatagram,
    log_path: PathBuf,
    placeholders: Vec<PathBuf>,
}

fn can_run() -> bool {
    common::needs(
        "root, to bind-mount nsswitch.conf, ld.so.cache and the test config",
        common::root(),
    ) && common::needs("a private mount namespace", common::mount_namespace())
        && common::needs(
            "cc, to build the NSS module",
            common::command("cc", &["--version"]),
        )
        && common::needs("setpriv (util-linux)", common::program("/usr/bin/setpriv"))
        && common::needs("getent (libc-bin)", common::program(identity::GETENT))
        && common::needs("ldconfig (libc-bin)", common::program("/sbin/ldconfig"))
}

fn cc(args: &[&str], source: &Path, out: &Path, defines: &[String]) {
    let mut cmd = Command::new("cc");
    cmd.args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(out)
        .args(args)
        .args(defines)
        .arg(source);
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "cc {}: {}",
        out.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Lab {
    fn new() -> Lab {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = TempDir::new("identity");
        let d = dir.path().to_path_buf();
        chmod(&d, 0o755);
        let root = d.join("root");
        let home = d.join("diruser-home");
        let marks = d.join("marks");
        let nssdir = d.join("nss");
        for p in [
            &root,
            &home,
            &marks,
            &nssdir,
            &d.join("variants"),
            &d.join("evil"),
        ] {
            std::fs::create_dir_all(p).unwrap();
        }
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(root.join("data/a.txt"), "a").unwrap();
        chmod(&marks, 0o1777);
        std::os::unix::fs::chown(&root, Some(4242), Some(4242)).unwrap();

        // The module's variants, one directory-free name for ld.so.cache, and an "evil"
        // build for LD_LIBRARY_PATH that records itself and answers another home.
        let src = d.join("module.c");
        std::fs::write(&src, MODULE_C).unwrap();
        let soname = "-Wl,-soname,libnss_rshelltest.so.2";
        let marker = |name: &str| format!("-DMARKER=\"{}\"", marks.join(name).display());
        let home_def = |h: &Path| format!("-DHOME=\"{}\"", h.display());
        for (name, def) in VARIANTS {
            let mut defines = vec![marker("module")];
            if !def.starts_with("-DHOME=") {
                defines.push(home_def(&home));
            }
            if !def.is_empty() {
                defines.push(def.to_string());
            }
            cc(
                &[soname],
                &src,
                &d.join("variants").join(format!("{name}.so")),
                &defines,
            );
        }
        cc(
            &[soname],
            &src,
            &d.join("evil/libnss_rshelltest.so.2"),
            &[marker("evil"), home_def(Path::new("/tmp/evil-home"))],
        );
        let preload_src = d.join("preload.c");
        std::fs::write(&preload_src, PRELOAD_C).unwrap();
        cc(
            &[],
            &preload_src,
            &d.join("preload.so"),
            &[marker("preload")],
        );
        let module = nssdir.join("libnss_rshelltest.so.2");
        std::fs::copy(d.join("variants/good.so"), &module).unwrap();

        let conf = d.join("ld.so.conf");
        std::fs::write(
            &conf,
            format!("include /etc/ld.so.conf.d/*.conf\n{}\n", nssdir.display()),
        )
        .unwrap();
        let cache = d.join("ld.so.cache");
        let o = Command::new("/sbin/ldconfig")
            .arg("-X")
            .arg("-C")
            .arg(&cache)
            .arg("-f")
            .arg(&conf)
            .output()
            .unwrap();
        assert!(o.status.success(), "ldconfig: {o:?}");
        let nsswitch = d.join("nsswitch.conf");
        std::fs::write(
            &nsswitch,
            "passwd: files rshelltest\ngroup: files rshelltest\nshadow: files\n",
        )
        .unwrap();

        let fake = d.join("fake-rsync");
        let record = root.join("record.txt");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\n{{ for a in \"$@\"; do echo \"ARG $a\"; done; env | sed 's/^/ENV /'; id -u | sed 's/^/UID /'; }} > {}\n",
                record.display()
            ),
        )
        .unwrap();
        chmod(&fake, 0o755);
        let config = d.join("rshell.toml");
        std::fs::write(
            &config,
            format!(
                "version = 1\n[groups.dirgroup]\naccess = \"read-only\"\n[users.diruser]\nrsync = \"{}\"\nroot = \"{}\"\nconfine = \"off\"\n",
                fake.display(),
                root.display()
            ),
        )
        .unwrap();
        chmod(&config, 0o644);
        let log_path = d.join("log");
        let log = UnixDatagram::bind(&log_path).unwrap();
        chmod(&log_path, 0o666);
        log.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut placeholders = Vec::new();
        for target in ["/etc/rshell.toml", "/dev/log"] {
            if std::fs::symlink_metadata(target).is_err() {
                std::fs::write(target, "").unwrap();
                placeholders.push(PathBuf::from(target));
            }
        }
        Lab {
            _serial: serial,
            dir,
            root,
            config,
            nsswitch,
            cache,
            module,
            marks,
            record,
            log,
            log_path,
            placeholders,
        }
    }

    fn variant(&self, name: &str) -> PathBuf {
        self.dir.path().join("variants").join(format!("{name}.so"))
    }

    /// The mounts that make the module `variant` the system's `rshelltest` NSS service
    /// (none: the system as it is), then `exec "$@"`.
    fn namespace_script(&self, variant: Option<&str>) -> String {
        let mut s = format!(
            "/bin/mount --bind {} /etc/rshell.toml && /bin/mount --bind {} /dev/log && ",
            self.config.display(),
            self.log_path.display()
        );
        if let Some(v) = variant {
            s += &format!(
                "/bin/mount --bind {} /etc/nsswitch.conf && /bin/mount --bind {} /etc/ld.so.cache && /bin/mount --bind {} {} && ",
                self.nsswitch.display(),
                self.cache.display(),
                self.variant(v).display(),
                self.module.display()
            );
        }
        s + "exec \"$@\""
    }

    /// Run `argv` in the namespace (as root), with an empty environment.
    fn run_in_namespace(&self, variant: Option<&str>, argv: &[&str]) -> Output {
        let _ = std::fs::remove_file(&self.record);
        Command::new("/usr/bin/unshare")
            .args(["-m", "--propagation", "private", "/bin/sh", "-c"])
            .arg(self.namespace_script(variant))
            .arg("sh")
            .args(argv)
            .env_clear()
            .output()
            .unwrap()
    }

    /// Run `program args` as uid 4242, gid 4242, groups 4343 in the namespace, with
    /// exactly the environment `env`.
    fn run_as_diruser(
        &self,
        variant: Option<&str>,
        env: &[(&str, &str)],
        program: &str,
        args: &[&str],
    ) -> Output {
        let mut argv: Vec<String> = [
            "/usr/bin/setpriv",
            "--reuid",
            "4242",
            "--regid",
            "4242",
            "--groups",
            "4343",
            "/usr/bin/env",
            "-i",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        argv.push(program.to_string());
        argv.extend(args.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.run_in_namespace(variant, &argv)
    }

    /// rshell as sshd runs it for diruser: `rshell -c COMMAND`.
    fn rshell(&self, variant: Option<&str>, command: &str) -> Output {
        self.run_as_diruser(
            variant,
            &[("SSH_CONNECTION", "127.0.0.1 40000 127.0.0.1 22")],
            &common::binary(),
            &["-c", command],
        )
    }

    fn records(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = self.log.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
        out
    }

    /// Lines "PID EXE" the module (or the preload library, or the evil module) wrote.
    fn marks(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.marks.join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Empty the marker files; they exist with mode 0666, so whichever uid loads the
    /// module (setpriv as root, getent as 4242) can append.
    fn clear_marks(&self) {
        for name in ["module", "preload", "evil"] {
            let path = self.marks.join(name);
            std::fs::write(&path, "").unwrap();
            chmod(&path, 0o666);
        }
    }

    /// A getent that runs in the namespace with `variant`, for the library-level tests
    /// (their process is not in the namespace). unshare and sh exec in place, so the
    /// getent that rshell's deadline ends has the pid rshell started.
    fn getent_wrapper(&self, variant: &str) -> PathBuf {
        let path = self.dir.path().join(format!("getent-{variant}"));
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nexec /usr/bin/unshare -m --propagation private /bin/sh -c '/bin/mount --bind {} /etc/nsswitch.conf && /bin/mount --bind {} /etc/ld.so.cache && /bin/mount --bind {} {} && exec /usr/bin/getent \"$@\"' sh \"$@\"\n",
                self.nsswitch.display(),
                self.cache.display(),
                self.variant(variant).display(),
                self.module.display()
            ),
        )
        .unwrap();
        chmod(&path, 0o755);
        path
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in &self.placeholders {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

const PULL: &str = "rsync --server --sender -logDtpre.iLsfxCIvu . data/a.txt";
const PUSH: &str = "rsync --server -logDtpre.iLsfxCIvu . data/";

#[test]
fn a_directory_account_gets_its_policy_through_getent_and_no_nss_code_runs_in_rshell() {
    if !can_run() {
        return;
    }
    let lab = Lab::new();

    // Control: without the directory, uid 4242 is nobody and rshell says so.
    let out = lab.rshell(None, PULL);
    assert_eq!(out.status.code(), Some(71), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("uid 4242 is neither in /etc/passwd nor in the system's account databases (getent passwd 4242: not found)"),
        "{}",
        stderr(&out)
    );
    lab.records();

    // With it: the [users.diruser] section applies, and [groups.dirgroup] (gid 4343, a
    // supplementary group named only by the directory) makes it read-only.
    lab.clear_marks();
    let out = lab.rshell(Some("good"), PULL);
    assert!(out.status.success(), "{}", stderr(&out));
    let rec = std::fs::read_to_string(&lab.record).expect("the fake rsync ran");
    assert!(rec.contains("ENV USER=diruser"), "{rec}");
    assert!(rec.contains("UID 4242"), "{rec}");
    assert!(
        rec.contains(&format!("ARG --confine-root={}", lab.root.display())),
        "{rec}"
    );
    let logs = lab.records();
    assert!(
        logs.iter().any(|l| l.contains(
            "identity uid=4242 user=diruser source=getent group_source=getent groups=\"dirusers,dirgroup\""
        )),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("allow user=diruser uid=4242 from=127.0.0.1")),
        "{logs:?}"
    );
    let out = lab.rshell(Some("good"), PUSH);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("this account is read-only"),
        "{}",
        stderr(&out)
    );
    // The module ran in getent, never in rshell (setpriv, which started rshell, looked
    // the uid up itself).
    let marks = lab.marks("module");
    assert!(
        marks.iter().any(|l| l.ends_with(" /usr/bin/getent")),
        "the NSS module never ran in getent: {marks:?}"
    );
    let rshell = std::fs::canonicalize(common::binary()).unwrap();
    assert!(
        !marks
            .iter()
            .any(|l| l.ends_with(&format!(" {}", rshell.display()))),
        "NSS module code ran inside rshell: {marks:?}"
    );

    // `--test --user` and `--policy --user` (an administrator's, as root) look the
    // account up by name: getent passwd, getent initgroups, getent group.
    let bin = common::binary();
    let out = lab.run_in_namespace(Some("good"), &[&bin, "--policy", "--user", "diruser"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("read-only"), "{text}");
    assert!(text.contains("dirgroup"), "{text}");
    let out = lab.run_in_namespace(Some("good"), &[&bin, "--test", PUSH, "--user", "diruser"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("read-only"), "{text}");
}

#[test]
fn ld_preload_and_ld_library_path_never_reach_the_getent_child() {
    if !can_run() {
        return;
    }
    let lab = Lab::new();
    let preload = lab.dir.path().join("preload.so").display().to_string();
    let evil = lab.dir.path().join("evil").display().to_string();
    let hostile = [
        ("LD_PRELOAD", preload.as_str()),
        ("LD_LIBRARY_PATH", evil.as_str()),
    ];

    // Control: the same environment given to getent itself loads both.
    lab.clear_marks();
    let out = lab.run_as_diruser(
        Some("good"),
        &hostile,
        "/usr/bin/getent",
        &["passwd", "4242"],
    );
    let answer = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        answer.contains(":/tmp/evil-home:"),
        "{answer} {}",
        stderr(&out)
    );
    assert!(
        lab.marks("preload")
            .iter()
            .any(|l| l.ends_with(" /usr/bin/getent")),
        "{:?}",
        lab.marks("preload")
    );
    assert!(!lab.marks("evil").is_empty());

    // rshell with that environment: its getent child gets none of it.
    lab.clear_marks();
    let mut env = hostile.to_vec();
    env.push(("SSH_CONNECTION", "127.0.0.1 40000 127.0.0.1 22"));
    let out = lab.run_as_diruser(Some("good"), &env, &common::binary(), &["-c", PULL]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !lab.marks("preload")
            .iter()
            .any(|l| l.ends_with(" /usr/bin/getent")),
        "LD_PRELOAD reached getent: {:?}",
        lab.marks("preload")
    );
    assert!(
        lab.marks("evil").is_empty(),
        "LD_LIBRARY_PATH reached getent: {:?}",
        lab.marks("evil")
    );
    assert!(
        lab.marks("module")
            .iter()
            .any(|l| l.ends_with(" /usr/bin/getent")),
        "the real module answered: {:?}",
        lab.marks("module")
    );
}

#[test]
fn hostile_mismatched_and_malformed_answers_are_denied_naming_the_cause() {
    if !can_run() {
        return;
    }
    let lab = Lab::new();
    for (variant, cause) in [
        ("hostile", "getent passwd 4242: the name \"-s../x\" starts with '-'"),
        (
            "mismatch",
            "getent passwd 4242 answered uid 0, not the process's uid 4242",
        ),
        (
            "malformed",
            "getent passwd 4242: the answer holds a control character: \"dir\\u{1b}user:*:4242:4242:",
        ),
        (
            "relhome",
            "getent passwd 4242: the home \"rel/home\" is not absolute",
        ),
    ] {
        let out = lab.rshell(Some(variant), PULL);
        assert_eq!(out.status.code(), Some(71), "{variant}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with("rshell: denied: "), "{variant}: {err}");
        assert!(err.contains(cause), "{variant}: {err}");
        assert!(!lab.record.exists(), "{variant}: rsync ran");
        let logs = lab.records();
        assert!(
            logs.iter()
                .any(|l| l.contains("deny uid=4242") && l.contains("getent passwd 4242")),
            "{variant}: {logs:?}"
        );
    }
}

/// Whether `pid` is still a live process (a zombie that init has not reaped yet is not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn a_directory_that_never_answers_is_a_denial_at_the_deadline_with_no_process_left() {
    if !can_run() {
        return;
    }
    let lab = Lab::new();
    lab.clear_marks();
    let how = Lookup {
        getent: lab.getent_wrapper("hang"),
        deadline: Duration::from_secs(1),
        ..Lookup::system()
    };
    let ids = KernelIds {
        uid: 4242,
        gid: 4242,
        groups: vec![],
    };
    let start = Instant::now();
    let err = identity::of_process(&ids, &how).unwrap_err().to_string();
    let took = start.elapsed();
    assert!(
        err.contains("getent passwd 4242: no answer within"),
        "{err}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let pids: Vec<i32> = lab
        .marks("module")
        .iter()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        pids.len() >= 3,
        "the module and its helper never ran: {pids:?}"
    );
    let gone = Instant::now();
    while pids.iter().any(|p| alive(*p)) && gone.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<&i32> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(
        left.is_empty(),
        "still running after the deadline: {left:?}"
    );
}

#[test]
fn output_over_the_cap_and_a_missing_getent_are_denials() {
    if !can_run() {
        return;
    }
    let lab = Lab::new();
    let chatty = lab.dir.path().join("chatty");
    std::fs::write(
        &chatty,
        "#!/bin/sh\nexec /usr/bin/yes diruser:x:4242:4242::/h:/bin/sh\n",
    )
    .unwrap();
    chmod(&chatty, 0o755);
    let ids = KernelIds {
        uid: 4242,
        gid: 4242,
        groups: vec![],
    };
    let how = Lookup {
        getent: chatty,
        ..Lookup::system()
    };
    let err = identity::of_process(&ids, &how).unwrap_err().to_string();
    assert!(
        err.contains("printed more than 65536 bytes (killed)"),
        "{err}"
    );
    let how = Lookup {
        getent: lab.dir.path().join("no-such-getent"),
        ..Lookup::system()
    };
    let err = identity::of_process(&ids, &how).unwrap_err().to_string();
    assert!(err.contains("cannot run"), "{err}");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The cost of establishing the account: a local one (files only) and a directory one
/// (two getent children: passwd, group), median of 200 lookups each. The lookups run in a
/// thread of their own that enters a private mount namespace (unshare(CLONE_NEWNS) acts
/// on the calling thread), so its getent children see the test module without the cost of
/// setting the namespace up per call. A benchmark, not a timed test: it asserts what was
/// looked up, prints the medians and their ratio, and runs on request
/// (`cargo test --test identity -- --ignored identity_lookup_cost`).
#[test]
#[ignore = "benchmark: run with --ignored"]
fn identity_lookup_cost_local_and_directory() {
    if !can_run() {
        return;
    }
    let lab = Lab::new();
    let mounts = [
        (lab.nsswitch.clone(), PathBuf::from("/etc/nsswitch.conf")),
        (lab.cache.clone(), PathBuf::from("/etc/ld.so.cache")),
        (lab.variant("good"), lab.module.clone()),
    ];
    let (local, directory) = std::thread::spawn(move || {
        enter_namespace_with(&mounts);
        let how = Lookup::system();
        let local_ids = KernelIds {
            uid: 0,
            gid: 0,
            groups: vec![0],
        };
        let dir_ids = KernelIds {
            uid: 4242,
            gid: 4242,
            groups: vec![4343],
        };
        let r = identity::of_process(&dir_ids, &how).unwrap();
        assert_eq!(r.source, Source::Getent);
        assert_eq!(r.account.groups, ["dirusers", "dirgroup"]);
        let time = |ids: &KernelIds| -> Vec<Duration> {
            (0..200)
                .map(|_| {
                    let t = Instant::now();
                    identity::of_process(ids, &how).unwrap();
                    t.elapsed()
                })
                .collect()
        };
        (median(time(&local_ids)), median(time(&dir_ids)))
    })
    .join()
    .unwrap();
    eprintln!(
        "identity lookup, median of 200: local account (files) {local:?}, directory account (getent passwd + getent group) {directory:?}, ratio {:.1}",
        directory.as_secs_f64() / local.as_secs_f64()
    );
}

/// unshare(CLONE_NEWNS) for the calling thread, make its mounts private, bind `mounts`.
fn enter_namespace_with(mounts: &[(PathBuf, PathBuf)]) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: unshare and mount take only integers and NUL-terminated strings that live
    // across the calls; they change this thread's mount namespace, nothing in memory.
    unsafe {
        assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare");
        let root = c(Path::new("/"));
        assert_eq!(
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null()
            ),
            0,
            "mount --make-rprivate /"
        );
        for (from, to) in mounts {
            let (f, t) = (c(from), c(to));
            assert_eq!(
                libc::mount(
                    f.as_ptr(),
                    t.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null()
                ),
                0,
                "bind {} {}",
                from.display(),
                to.display()
            );
        }
    }
}

/// What the getent child gets: `DB -- KEY`, cwd `/`, stdin and stderr on /dev/null, no
/// variable but what sh sets itself, and no descriptor rshell holds without close-on-exec
/// (fd 123 here, opened by this test without O_CLOEXEC).
#[test]
fn the_getent_child_gets_no_descriptor_no_environment_and_dash_dash_before_the_key() {
    if !can_run() {
        return;
    }
    let lab = Lab::new();
    let seen = lab.dir.path().join("seen");
    let probe = lab.dir.path().join("probe-getent");
    std::fs::write(
        &probe,
        format!(
            "#!/bin/sh\n[ \"$1\" = group ] && exec echo 'dirusers:x:4242:'\n{{ echo \"ARGS $*\"; if [ -e /proc/self/fd/123 ]; then echo 'FD123 open'; else echo 'FD123 closed'; fi; echo \"STDIN $(readlink /proc/self/fd/0)\"; echo \"STDERR $(readlink /proc/self/fd/2)\"; echo \"CWD $(pwd)\"; env | sed 's/^/ENV /'; }} > {}\necho 'diruser:x:4242:4242::/home/d:/bin/sh'\n",
            seen.display()
        ),
    )
    .unwrap();
    chmod(&probe, 0o755);
    let file = std::fs::File::open("/etc/hostname")
        .or_else(|_| std::fs::File::open("/etc/passwd"))
        .unwrap();
    // SAFETY: dup2 onto a descriptor number this test owns from here until the close
    // below; the result is checked.
    let fd = unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), 123) };
    assert_eq!(fd, 123);
    let how = Lookup {
        getent: probe,
        ..Lookup::system()
    };
    let ids = KernelIds {
        uid: 4242,
        gid: 4242,
        groups: vec![],
    };
    let got = identity::of_process(&ids, &how);
    let seen_sealed = std::fs::read_to_string(&seen).unwrap_or_default();
    // Control: a plain spawn (std's Command) hands the descriptor down.
    let control = Command::new(&how.getent)
        .args(["passwd", "--", "4242"])
        .env_clear()
        .output()
        .unwrap();
    assert!(control.status.success());
    let seen_plain = std::fs::read_to_string(&seen).unwrap_or_default();
    // SAFETY: closes the descriptor this test put at 123 above.
    unsafe { libc::close(123) };
    assert!(seen_plain.contains("FD123 open"), "{seen_plain}");
    let seen = seen_sealed;
    let r = got.unwrap();
    assert_eq!(r.account.name, "diruser");
    assert_eq!(r.source, Source::Getent);
    assert!(seen.contains("ARGS passwd -- 4242\n"), "{seen}");
    assert!(seen.contains("FD123 closed"), "{seen}");
    assert!(seen.contains("STDIN /dev/null"), "{seen}");
    assert!(seen.contains("STDERR /dev/null"), "{seen}");
    assert!(seen.contains("CWD /\n"), "{seen}");
    let env: Vec<&str> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .filter(|v| !v.starts_with("PWD="))
        .collect();
    assert!(env.is_empty(), "{env:?}");
}
