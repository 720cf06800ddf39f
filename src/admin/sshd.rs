//! The deployment lint of `rshell --check`: read sshd's
//! effective settings for one account (`sshd -T -C user=…`) and name every setting that
//! lets that account past its login shell.
//!
//! A restricted shell only restricts what sshd hands to the shell. Forwarding (`ssh -N
//! -L/-R/-W`, agent, X11, tunnels) never starts the shell; `internal-sftp` is served inside
//! sshd; `~/.ssh/rc` and user environment files run or apply before the shell (OpenSSH runs
//! `~/.ssh/rc` through the login shell and applies `~/.ssh/environment` and PAM's
//! environment before it). Those are sshd's to close.
//!
//! Rules: `findings` is pure (text in, sentences out); `query` runs exactly one fixed
//! program with fixed arguments and an empty environment, and never a shell.
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The one program `query` runs.
pub const SSHD: &str = "/usr/sbin/sshd";

/// The settings sshd reports for one connection, from `sshd -T` output: lowercase
/// `key value…` lines; a key may repeat (`subsystem`, `hostkey`, `acceptenv`).
struct Settings<'a> {
    lines: Vec<(&'a str, &'a str)>,
}

impl<'a> Settings<'a> {
    fn parse(text: &'a str) -> Self {
        let lines = text
            .lines()
            .filter_map(|line| {
                let line = line.trim();
                let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                (!key.is_empty()).then_some((key, value.trim()))
            })
            .collect();
        Settings { lines }
    }

    /// Every value given for `key`, in order.
    fn all(&self, key: &str) -> impl Iterator<Item = &'a str> + '_ {
        let key = key.to_string();
        self.lines
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(&key))
            .map(|(_, v)| *v)
    }

    /// The value of `key`, or OpenSSH's documented default when sshd did not print it.
    fn get(&self, key: &str, default: &'a str) -> &'a str {
        self.all(key).next().unwrap_or(default)
    }
}

/// One authorized_keys line, as far as `--check` cares: what its options leave open
/// (sshd(8), AUTHORIZED_KEYS FILE FORMAT: `restrict` closes port, agent and X11
/// forwarding, the pty and ~/.ssh/rc; a later `port-forwarding` etc. reopens one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLine {
    /// 1-based line number in its file.
    pub line: usize,
    /// TCP and Unix-socket forwarding (`no-port-forwarding` closes both: sshd's
    /// serverloop checks `permit_port_forwarding_flag` for direct-tcpip and
    /// direct-streamlocal alike).
    pub port_forwarding: bool,
    pub agent_forwarding: bool,
    pub x11_forwarding: bool,
    pub user_rc: bool,
    /// The `command="…"` value, unescaped.
    pub command: Option<String>,
}

impl KeyLine {
    /// Whether the key's command is rshell (`command="/usr/bin/rshell -ro DIR"`).
    pub fn forces_rshell(&self) -> bool {
        self.command
            .as_deref()
            .and_then(|c| c.split_whitespace().next())
            .is_some_and(crate::cli::is_rshell)
    }
}

/// Whether a key leaves one thing open (a forwarding kind, ~/.ssh/rc).
type KeyOpens = fn(&KeyLine) -> bool;

/// Whether a word is a public key type (sshd's `sshkey_type_from_name` names), so that a
/// line starting with it has no options.
fn is_key_type(word: &str) -> bool {
    ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"]
        .iter()
        .any(|p| word.starts_with(p))
        && !word.contains(['=', '"', ','])
}

/// The keys of an authorized_keys file with their options. A line whose options sshd
/// would reject (an unterminated quote) is no key: sshd refuses it too.
pub fn authorized_keys(text: &str) -> Vec<KeyLine> {
    let mut keys = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or("");
        let mut key = KeyLine {
            line: i + 1,
            port_forwarding: true,
            agent_forwarding: true,
            x11_forwarding: true,
            user_rc: true,
            command: None,
        };
        if is_key_type(first) || parse_key_options(line, &mut key).is_some() {
            keys.push(key);
        }
    }
    keys
}

/// Apply the option field at the start of `line` to `key`; `None` if it is malformed.
/// Names are case-insensitive and a quoted value may hold `\"` (OpenSSH auth-options.c).
fn parse_key_options(line: &str, key: &mut KeyLine) -> Option<()> {
    let mut chars = line.chars().peekable();
    loop {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        let mut value = None;
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.next() != Some('"') {
                return None;
            }
            let mut v = String::new();
            loop {
                match chars.next()? {
                    '\\' if chars.peek() == Some(&'"') => {
                        chars.next();
                        v.push('"');
                    }
                    '"' => break,
                    c => v.push(c),
                }
            }
            value = Some(v);
        }
        match (name.to_ascii_lowercase().as_str(), value) {
            ("restrict", None) => {
                key.port_forwarding = false;
                key.agent_forwarding = false;
                key.x11_forwarding = false;
                key.user_rc = false;
            }
            ("no-port-forwarding", None) => key.port_forwarding = false,
            ("port-forwarding", None) => key.port_forwarding = true,
            ("no-agent-forwarding", None) => key.agent_forwarding = false,
            ("agent-forwarding", None) => key.agent_forwarding = true,
            ("no-x11-forwarding", None) => key.x11_forwarding = false,
            ("x11-forwarding", None) => key.x11_forwarding = true,
            ("no-user-rc", None) => key.user_rc = false,
            ("user-rc", None) => key.user_rc = true,
            ("command", Some(v)) => key.command = Some(v),
            _ => {}
        }
        match chars.next() {
            Some(',') => continue,
            // The options end at the first blank outside quotes; a key must follow.
            Some(c) if c.is_whitespace() => {
                let rest: String = chars.collect();
                return (!rest.trim().is_empty()).then_some(());
            }
            _ => return None,
        }
    }
}

/// The account's password as /etc/shadow says (for whether a password login exists
/// that no key option restricts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Password {
    /// `!…` or `*…`: no password login.
    Locked,
    /// An empty field: a login only with `PermitEmptyPasswords yes`.
    Empty,
    Set,
    /// Not readable here: counted as set.
    Unknown,
}

/// How an account can log in, beyond what sshd settings say: its keys (from the
/// AuthorizedKeysFile files sshd names) and whether a password works.
#[derive(Debug, Clone)]
pub struct Logins {
    /// `(file, key)` for every key read.
    pub keys: Vec<(String, KeyLine)>,
    /// Keys files sshd would read that were not read here (`PATH was not read: WHY`):
    /// their keys' options are unknown.
    pub unreadable: Vec<String>,
    pub password: Password,
}

impl Logins {
    /// Why the keys' options do not decide what this account can open, or `None` when
    /// every login goes through one of `keys`.
    fn unbound(&self, s: &Settings) -> Option<String> {
        if let Some(f) = self.unreadable.first() {
            return Some(f.clone());
        }
        let command = s.get("authorizedkeyscommand", "none");
        if !command.eq_ignore_ascii_case("none") {
            return Some(format!(
                "keys also come from AuthorizedKeysCommand {command}, which --check does not run"
            ));
        }
        let cas = s.get("trustedusercakeys", "none");
        if !cas.eq_ignore_ascii_case("none") {
            return Some(format!(
                "certificates signed by TrustedUserCAKeys {cas} carry their own permissions"
            ));
        }
        // AuthenticationMethods that name publickey in every list make every login a key
        // login, whatever else is enabled.
        let methods = s.get("authenticationmethods", "any");
        if !methods.eq_ignore_ascii_case("any")
            && methods
                .split_whitespace()
                .all(|list| list.split(',').any(|m| m == "publickey"))
        {
            return None;
        }
        let on = |key: &str, default: &str| s.get(key, default).eq_ignore_ascii_case("yes");
        let password = match self.password {
            Password::Locked => false,
            Password::Empty => on("permitemptypasswords", "no"),
            Password::Set | Password::Unknown => true,
        };
        if password
            && (on("passwordauthentication", "yes") || on("kbdinteractiveauthentication", "yes"))
        {
            return Some("password logins are possible, and key options do not bind them".into());
        }
        if on("hostbasedauthentication", "no") {
            return Some("host-based logins are enabled, and key options do not bind them".into());
        }
        if on("gssapiauthentication", "no") {
            return Some("GSSAPI logins are enabled, and key options do not bind them".into());
        }
        None
    }

    /// `None` if every login of this account has `open` false; else why not.
    fn leaves_open(
        &self,
        s: &Settings,
        open: impl Fn(&KeyLine) -> bool,
        option: &str,
    ) -> Option<String> {
        if let Some(why) = self.unbound(s) {
            return Some(why);
        }
        self.keys.iter().find(|(_, k)| open(k)).map(|(file, k)| {
            format!(
                "the key on line {} of {file} says neither `restrict` nor `{option}`",
                k.line
            )
        })
    }
}

/// One warning per sshd setting that undoes rshell for `user`, given `sshd -T` output
/// for that user (see [`query`]). Empty when the deployment is sound.
pub fn findings(user: &str, sshd_t_output: &str) -> Vec<String> {
    findings_with(user, sshd_t_output, None)
}

/// [`findings`], where `logins` (when known) lets key options close what sshd leaves
/// open: a switch every key closes (`restrict`, `no-port-forwarding`…) is not reported.
pub fn findings_with(user: &str, sshd_t_output: &str, logins: Option<&Logins>) -> Vec<String> {
    let s = Settings::parse(sshd_t_output);
    if s.lines.is_empty() {
        return vec![format!(
            "sshd settings for {user}: `sshd -T` printed nothing, so forwarding, PermitUserRC and the sftp subsystem could not be checked"
        )];
    }
    let mut out = Vec::new();
    let because = |open: KeyOpens, option: &str| -> Option<String> {
        match logins {
            None => Some(String::new()),
            Some(l) => l
                .leaves_open(&s, open, option)
                .map(|why| format!("; {why}")),
        }
    };

    // Forwarding needs no shell: `ssh -N` opens channels and never runs rshell.
    // `DisableForwarding yes` overrides the individual switches below.
    if !s.get("disableforwarding", "no").eq_ignore_ascii_case("yes") {
        let forwarding: [(&str, &str, &str, KeyOpens, &str); 4] = [
            (
                "allowtcpforwarding",
                "yes",
                "TCP port forwarding (ssh -L/-R/-D/-W)",
                |k: &KeyLine| k.port_forwarding,
                "no-port-forwarding",
            ),
            (
                "allowstreamlocalforwarding",
                "yes",
                "Unix-socket forwarding",
                |k: &KeyLine| k.port_forwarding,
                "no-port-forwarding",
            ),
            (
                "x11forwarding",
                "no",
                "X11 forwarding",
                |k: &KeyLine| k.x11_forwarding,
                "no-X11-forwarding",
            ),
            (
                "allowagentforwarding",
                "yes",
                "agent forwarding",
                |k: &KeyLine| k.agent_forwarding,
                "no-agent-forwarding",
            ),
        ];
        for (key, default, what, open, option) in forwarding {
            let value = s.get(key, default);
            if value.eq_ignore_ascii_case("no") {
                continue;
            }
            if let Some(why) = because(open, option) {
                out.push(format!(
                    "sshd allows {what} for {user} ({key} {value}): it needs no shell, so rshell never sees it; set `DisableForwarding yes` for this user (or the `restrict` key option){why}"
                ));
            }
        }
    }
    // Tunnels are outside DisableForwarding (sshd_config(5) lists X11, agent, TCP and
    // StreamLocal; serverloop's server_request_tun checks only PermitTunnel) and no key
    // option refuses them (`tunnel="n"` only picks the device).
    let tunnel = s.get("permittunnel", "no");
    if !tunnel.eq_ignore_ascii_case("no") {
        out.push(format!(
            "sshd allows tun/tap tunnels (ssh -w) for {user} (permittunnel {tunnel}): they need no shell, so rshell never sees them, and neither DisableForwarding nor `restrict` stops them; set `PermitTunnel no`"
        ));
    }

    // sshd runs `<login shell> -c '/bin/sh ~/.ssh/rc'` first: harmless under
    // rshell as login shell (refused), fatal under any other shell with a forced key.
    let rc = s.get("permituserrc", "yes");
    if !rc.eq_ignore_ascii_case("no") {
        if let Some(why) = because(|k| k.user_rc, "no-user-rc") {
            out.push(format!(
                "sshd lets {user} run ~/.ssh/rc (permituserrc {rc}): a forced rshell key under another login shell runs that file first; set `PermitUserRC no` (or the `restrict` key option){why}"
            ));
        }
    }

    // ~/.ssh/environment can set LD_PRELOAD, PATH, HOME for the shell and what it runs
    // (sshd's session.c reads it only then). Only allowed globally in sshd_config, not in
    // a Match block.
    let env = s.get("permituserenvironment", "no");
    if !env.eq_ignore_ascii_case("no") {
        out.push(format!(
            "sshd reads {user}'s ~/.ssh/environment (permituserenvironment {env}): user-chosen variables reach the login shell; set `PermitUserEnvironment no` (a global setting)"
        ));
    }

    // Without ExposeAuthInfo sshd sets no SSH_USER_AUTH, so the log cannot name the key;
    // and with PAM's user_readenv a user's ~/.pam_environment can set one that names a
    // file of their choosing. With it, sshd sets SSH_USER_AUTH after the PAM environment
    // (session.c do_setup_env), overriding any such value.
    let expose = s.get("exposeauthinfo", "no");
    if !expose.eq_ignore_ascii_case("yes") {
        out.push(format!(
            "sshd does not tell rshell which key {user} logged in with (exposeauthinfo {expose}): the log cannot name the key, and an SSH_USER_AUTH set through ~/.pam_environment would be taken for it; set `ExposeAuthInfo yes`"
        ));
    }

    // internal-sftp is served inside sshd: the login shell never runs.
    for value in s.all("subsystem") {
        let mut words = value.split_whitespace();
        let name = words.next().unwrap_or("");
        if words.next() == Some("internal-sftp") {
            out.push(format!(
                "sshd serves the `{name}` subsystem to {user} with internal-sftp (subsystem {value}): files are read and written inside sshd without running rshell; use the external /usr/lib/openssh/sftp-server (which rshell refuses) or no sftp subsystem for this user"
            ));
        }
    }
    let force = s.get("forcecommand", "none");
    if force.split_whitespace().next() == Some("internal-sftp") {
        out.push(format!(
            "sshd forces internal-sftp for {user} (forcecommand {force}): the login shell never runs; this account is an sftp account, not an rshell account"
        ));
    }
    out
}

/// The value of `key` in `sshd -T` output (the first, if repeated).
pub fn setting(sshd_t_output: &str, key: &str) -> Option<String> {
    Settings::parse(sshd_t_output)
        .all(key)
        .next()
        .map(str::to_string)
}

/// The local ends sshd listens on (`listenaddress ADDR:PORT` lines of `sshd -T`), for
/// the `laddr=`/`lport=` of a query: sshd -T refuses to evaluate a `Match LocalPort` or
/// `LocalAddress` block without them. `None` is a wildcard address (0.0.0.0 or ::), with
/// the family it listens on.
pub fn listeners(sshd_t_output: &str) -> Vec<(Option<IpAddr>, bool, u16)> {
    let mut out = Vec::new();
    for value in Settings::parse(sshd_t_output).all("listenaddress") {
        let endpoint = value.split_whitespace().next().unwrap_or("");
        let Ok(sa) = endpoint.parse::<std::net::SocketAddr>() else {
            continue;
        };
        let ip = sa.ip();
        let entry = (
            (!ip.is_unspecified()).then_some(ip),
            ip.is_ipv6(),
            sa.port(),
        );
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

/// The AuthorizedKeysFile paths sshd reads for an account (`authorizedkeysfile` of
/// `sshd -T`; `none` is no file): tokens `%h` `%u` `%U` `%%` expanded, relative paths
/// taken from the home directory (OpenSSH auth.c expand_authorized_keys). A path with an
/// unknown token is an `Err` saying so (no key logs in through it: sshd fails too).
pub fn authorized_keys_files(
    sshd_t_output: &str,
    user: &str,
    uid: u32,
    home: &Path,
) -> Vec<Result<PathBuf, String>> {
    let s = Settings::parse(sshd_t_output);
    let value = s.get(
        "authorizedkeysfile",
        ".ssh/authorized_keys .ssh/authorized_keys2",
    );
    if value.eq_ignore_ascii_case("none") {
        return Vec::new();
    }
    value
        .split_whitespace()
        .map(|template| {
            let mut path = String::new();
            let mut chars = template.chars();
            while let Some(c) = chars.next() {
                if c != '%' {
                    path.push(c);
                    continue;
                }
                match chars.next() {
                    Some('%') => path.push('%'),
                    Some('h') => path.push_str(&home.to_string_lossy()),
                    Some('u') => path.push_str(user),
                    Some('U') => path.push_str(&uid.to_string()),
                    other => {
                        return Err(format!(
                            "{template} was not read: unknown token %{} (sshd's percent_expand fails on it too)",
                            other.map(String::from).unwrap_or_default()
                        ))
                    }
                }
            }
            let path = PathBuf::from(path);
            Ok(if path.is_absolute() {
                path
            } else {
                home.join(path)
            })
        })
        .collect()
}

/// `sshd -T` output for `user` connecting from localhost, or the reason it is not
/// available (not root, sshd missing, no `/run/sshd`, no host keys, bad config…).
pub fn query(user: &str) -> Result<String, String> {
    query_with(user, IpAddr::from([127, 0, 0, 1]), None, None)
}

/// `sshd -T` output for `user` connecting from `addr` to `local` (address and port;
/// `None`: 127.0.0.1 port 22), evaluating `config` (`-f`; `None`: sshd's own). Runs
/// exactly `/usr/sbin/sshd -T [-f CONFIG] -C user=U,host=H,addr=A,laddr=L,lport=P`:
/// nothing is contacted, sshd only evaluates its Match blocks for these values.
pub fn query_with(
    user: &str,
    addr: IpAddr,
    local: Option<(IpAddr, u16)>,
    config: Option<&Path>,
) -> Result<String, String> {
    // The name goes into one comma-separated `-C` spec: a `,` or `=` would add criteria.
    if user.is_empty()
        || user.starts_with('-')
        || user
            .chars()
            .any(|c| c == ',' || c == '=' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("cannot ask sshd about user name {user:?}"));
    }
    let (laddr, lport) = local.unwrap_or((IpAddr::from([127, 0, 0, 1]), 22));
    // `host` is the name sshd would resolve the client to; with UseDNS no (the default)
    // that is the address itself.
    let host = if addr.is_loopback() {
        "localhost".to_string()
    } else {
        addr.to_string()
    };
    let mut command = Command::new(SSHD);
    command.arg("-T");
    if let Some(config) = config {
        command.arg("-f").arg(config);
    }
    let output = command
        .arg("-C")
        .arg(format!(
            "user={user},host={host},addr={addr},laddr={laddr},lport={lport}"
        ))
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {SSHD} -T: {e}"))?;
    if !output.status.success() {
        let why = String::from_utf8_lossy(&output.stderr);
        let why = why.trim();
        return Err(format!(
            "{SSHD} -T failed ({}){}{}",
            output.status,
            if why.is_empty() { "" } else { ": " },
            why
        ));
    }
    String::from_utf8(output.stdout).map_err(|_| format!("{SSHD} -T printed non-UTF-8 output"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real output of `sshd -T -C user=root,host=localhost,addr=127.0.0.1` on a stock
    /// Debian 12 server (OpenSSH 9.2p1, unmodified /etc/ssh/sshd_config).
    const DEBIAN12: &str = include_str!("../../tests/data/sshd-T-debian12.txt");

    /// `sample` with the line of each `key` replaced by `key value`.
    fn with(sample: &str, changes: &[(&str, &str)]) -> String {
        let mut text = sample.to_string();
        for (key, value) in changes {
            let prefix = format!("{key} ");
            let mut found = false;
            text = text
                .lines()
                .map(|line| {
                    if line.starts_with(&prefix) && !found {
                        found = true;
                        format!("{key} {value}")
                    } else {
                        line.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            assert!(found, "sample has no {key} line");
        }
        text
    }

    /// The documented `Match Group rshell-users` block, as sshd -T reports it.
    fn hardened() -> String {
        with(
            DEBIAN12,
            &[
                ("disableforwarding", "yes"),
                ("permituserrc", "no"),
                ("permittunnel", "no"),
                ("exposeauthinfo", "yes"),
            ],
        )
    }

    fn mentions(found: &[String], key: &str) -> bool {
        found.iter().any(|f| f.contains(&format!("({key} ")))
    }

    #[test]
    fn given_stock_debian_sshd_then_forwarding_and_user_rc_are_reported() {
        let found = findings("amanda", DEBIAN12);
        for key in [
            "allowtcpforwarding",
            "allowstreamlocalforwarding",
            "x11forwarding",
            "allowagentforwarding",
            "permituserrc",
            "exposeauthinfo",
        ] {
            assert!(mentions(&found, key), "{key} missing from {found:#?}");
        }
        // Debian's defaults that are already safe are not reported.
        assert!(!mentions(&found, "permittunnel"));
        assert!(!mentions(&found, "permituserenvironment"));
        assert!(
            !mentions(&found, "subsystem"),
            "external sftp-server is fine"
        );
        assert_eq!(found.len(), 6, "{found:#?}");
        assert!(found.iter().all(|f| f.contains("amanda")));
    }

    #[test]
    fn given_the_documented_match_block_then_nothing_is_reported() {
        assert_eq!(findings("amanda", &hardened()), Vec::<String>::new());
    }

    #[test]
    fn given_disable_forwarding_then_individual_switches_do_not_matter_but_tunnels_do() {
        // sshd -T keeps printing `allowtcpforwarding yes` under DisableForwarding yes.
        let text = with(
            &hardened(),
            &[("x11forwarding", "yes"), ("allowagentforwarding", "yes")],
        );
        assert!(findings("u", &text).is_empty());
        // DisableForwarding does not cover tun/tap (server_request_tun checks only
        // PermitTunnel).
        let found = findings("u", &with(&hardened(), &[("permittunnel", "yes")]));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("(permittunnel yes)"), "{found:#?}");
    }

    #[test]
    fn given_forwarding_not_disabled_then_each_open_switch_is_one_finding() {
        let closed = with(
            &hardened(),
            &[
                ("disableforwarding", "no"),
                ("allowtcpforwarding", "no"),
                ("allowstreamlocalforwarding", "no"),
                ("x11forwarding", "no"),
                ("allowagentforwarding", "no"),
                ("permittunnel", "no"),
            ],
        );
        assert!(
            findings("u", &closed).is_empty(),
            "all switches off is sound"
        );
        for (key, value) in [
            ("allowtcpforwarding", "local"),
            ("allowtcpforwarding", "remote"),
            ("allowstreamlocalforwarding", "all"),
            ("x11forwarding", "yes"),
            ("allowagentforwarding", "yes"),
            ("permittunnel", "point-to-point"),
            ("permittunnel", "ethernet"),
            ("permittunnel", "yes"),
        ] {
            let found = findings("u", &with(&closed, &[(key, value)]));
            assert_eq!(found.len(), 1, "{key} {value}: {found:#?}");
            assert!(found[0].contains(&format!("({key} {value})")), "{found:#?}");
        }
    }

    #[test]
    fn given_user_environment_then_it_is_reported() {
        for value in ["yes", "LANG,LC_*"] {
            let found = findings("u", &with(&hardened(), &[("permituserenvironment", value)]));
            assert_eq!(found.len(), 1, "{found:#?}");
            assert!(found[0].contains("PermitUserEnvironment no"));
        }
    }

    #[test]
    fn given_internal_sftp_subsystem_then_it_is_reported_in_every_spelling() {
        for value in [
            "sftp internal-sftp",
            "sftp internal-sftp -l INFO -f AUTHPRIV",
            "files internal-sftp -d /srv",
        ] {
            let found = findings("u", &with(&hardened(), &[("subsystem", value)]));
            assert_eq!(found.len(), 1, "{value}: {found:#?}");
            assert!(found[0].contains("internal-sftp"));
        }
        // An external sftp-server goes through the login shell, which refuses it.
        let external = with(
            &hardened(),
            &[("subsystem", "sftp /usr/lib/openssh/sftp-server")],
        );
        assert!(findings("u", &external).is_empty());
    }

    #[test]
    fn given_forced_internal_sftp_then_it_is_reported() {
        let text = with(&hardened(), &[("forcecommand", "internal-sftp -R")]);
        let found = findings("u", &text);
        assert_eq!(found.len(), 1, "{found:#?}");
        let other = with(
            &hardened(),
            &[("forcecommand", "/usr/bin/rshell -ro /srv/x")],
        );
        assert!(findings("u", &other).is_empty());
    }

    #[test]
    fn given_no_output_then_the_check_says_it_could_not_run() {
        let found = findings("u", "");
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("could not be checked"));
    }

    #[test]
    fn given_missing_keys_then_openssh_defaults_apply() {
        // An sshd that prints only some keys: unprinted ones take OpenSSH's defaults
        // (forwarding allowed, user rc allowed, no user environment, X11 off).
        let found = findings("u", "port 22\npermittunnel no\nexposeauthinfo yes\n");
        for key in [
            "allowtcpforwarding",
            "allowstreamlocalforwarding",
            "allowagentforwarding",
            "permituserrc",
        ] {
            assert!(mentions(&found, key), "{key}: {found:#?}");
        }
        assert_eq!(found.len(), 4, "{found:#?}");
    }

    #[test]
    fn given_a_user_name_that_would_add_match_criteria_then_query_refuses() {
        for bad in ["", "a,addr=10.0.0.1", "a=b", "-f/tmp/x", "a b", "a\nb"] {
            let err = query(bad).unwrap_err();
            assert!(err.contains("cannot ask sshd"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn query_returns_settings_or_a_reason() {
        // Depends on the machine (root, host keys, /run/sshd): either outcome is valid,
        // but success must look like sshd -T output and failure must say why.
        match query("root") {
            Ok(text) => assert!(
                text.lines().any(|l| l.starts_with("permituserrc ")),
                "{text}"
            ),
            Err(why) => assert!(why.contains(SSHD), "{why}"),
        }
    }

    fn logins(keys: &str, password: Password) -> Logins {
        Logins {
            keys: authorized_keys(keys)
                .into_iter()
                .map(|k| ("/home/u/.ssh/authorized_keys".to_string(), k))
                .collect(),
            unreadable: Vec::new(),
            password,
        }
    }

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDx u@h";

    #[test]
    fn authorized_keys_options_are_parsed_like_sshd() {
        let text = format!(
            "# comment\n\n{KEY}\nrestrict,command=\"rshell -ro /a,b \\\"c\\\"\" {KEY}\nRESTRICT,Port-Forwarding {KEY}\nno-agent-forwarding,no-X11-forwarding,from=\"10.0.0.0/8\" {KEY}\ncommand=\"unterminated {KEY}\nno-pty\n  no-user-rc {KEY}\n"
        );
        let keys = authorized_keys(&text);
        assert_eq!(keys.len(), 5, "{keys:#?}");
        let open = |k: &KeyLine| {
            (
                k.port_forwarding,
                k.agent_forwarding,
                k.x11_forwarding,
                k.user_rc,
            )
        };
        assert_eq!(keys[0].line, 3);
        assert_eq!(open(&keys[0]), (true, true, true, true));
        assert_eq!(keys[0].command, None);
        assert_eq!(open(&keys[1]), (false, false, false, false));
        assert_eq!(keys[1].command.as_deref(), Some("rshell -ro /a,b \"c\""));
        assert!(keys[1].forces_rshell());
        assert_eq!(
            open(&keys[2]),
            (true, false, false, false),
            "restrict, then reopened"
        );
        assert_eq!(open(&keys[3]), (true, false, false, true));
        // The unterminated quote and the options without a key are no keys (sshd skips
        // them); the indented line is one.
        assert_eq!(keys[4].line, 9);
        assert_eq!(open(&keys[4]), (true, true, true, false));
        assert!(!keys[0].forces_rshell());
        let other = authorized_keys(&format!(
            "command=\"/usr/local/bin/rshell\" {KEY}\ncommand=\"/bin/rshellx\" {KEY}\n"
        ));
        assert!(other[0].forces_rshell());
        assert!(!other[1].forces_rshell());
    }

    #[test]
    fn given_keys_that_restrict_then_forwarding_is_not_reported() {
        let stock = with(DEBIAN12, &[("exposeauthinfo", "yes")]);
        // Debian's PasswordAuthentication yes matters only with a usable password.
        let restricted = logins(
            &format!("command=\"rshell\",restrict {KEY}\n"),
            Password::Locked,
        );
        assert_eq!(
            findings_with("u", &stock, Some(&restricted)),
            Vec::<String>::new()
        );
        let with_password = Logins {
            password: Password::Set,
            ..restricted.clone()
        };
        let found = findings_with("u", &stock, Some(&with_password));
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(
            found
                .iter()
                .all(|f| f
                    .ends_with("; password logins are possible, and key options do not bind them")),
            "{found:#?}"
        );
        // ... unless every login must include a key.
        let keys_only = with(&stock, &[("authenticationmethods", "publickey,password")]);
        assert!(findings_with("u", &keys_only, Some(&with_password)).is_empty());
        // An empty password counts only with PermitEmptyPasswords.
        let empty = Logins {
            password: Password::Empty,
            ..restricted.clone()
        };
        assert!(findings_with("u", &stock, Some(&empty)).is_empty());
        // Keys from a command, and files that were not read, are unknown.
        let command = with(&stock, &[("authorizedkeyscommand", "/usr/bin/keys %u")]);
        let found = findings_with("u", &command, Some(&restricted));
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(found[0].contains("AuthorizedKeysCommand /usr/bin/keys %u"));
        let unread = Logins {
            unreadable: vec!["/x was not read: it is a symbolic link (not followed)".into()],
            ..restricted.clone()
        };
        assert_eq!(findings_with("u", &stock, Some(&unread)).len(), 5);
        // One open key is enough, and is named.
        let mixed = logins(
            &format!("restrict {KEY}\nno-port-forwarding,no-user-rc {KEY}\n"),
            Password::Locked,
        );
        let found = findings_with("u", &stock, Some(&mixed));
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[1].contains("(allowagentforwarding yes)"));
        assert!(found[1].ends_with("; the key on line 2 of /home/u/.ssh/authorized_keys says neither `restrict` nor `no-agent-forwarding`"), "{found:#?}");
        assert!(found[0].contains("(x11forwarding yes)"));
    }

    #[test]
    fn authorized_keys_files_expand_like_sshd() {
        let home = Path::new("/home/u");
        let files = |value: &str| {
            authorized_keys_files(&format!("authorizedkeysfile {value}\n"), "u", 1001, home)
        };
        assert_eq!(
            authorized_keys_files("", "u", 1001, home),
            vec![
                Ok(PathBuf::from("/home/u/.ssh/authorized_keys")),
                Ok(PathBuf::from("/home/u/.ssh/authorized_keys2"))
            ]
        );
        assert_eq!(
            files("/etc/ssh/keys/%u %h/k %U.keys 100%% /k/%%u"),
            vec![
                Ok(PathBuf::from("/etc/ssh/keys/u")),
                Ok(PathBuf::from("/home/u/k")),
                Ok(PathBuf::from("/home/u/1001.keys")),
                Ok(PathBuf::from("/home/u/100%")),
                Ok(PathBuf::from("/k/%u")),
            ]
        );
        assert!(files("none").is_empty());
        assert!(files("/k/%x")
            .remove(0)
            .unwrap_err()
            .contains("unknown token %x"));
    }

    #[test]
    fn listeners_come_from_listenaddress_lines() {
        let found = listeners(DEBIAN12);
        assert_eq!(found, vec![(None, true, 22), (None, false, 22)]);
        let found = listeners("listenaddress 192.0.2.7:2222\nlistenaddress [::1]:22 rdomain x\n");
        assert_eq!(
            found,
            vec![
                (Some("192.0.2.7".parse().unwrap()), false, 2222),
                (Some("::1".parse().unwrap()), true, 22)
            ]
        );
    }
}
