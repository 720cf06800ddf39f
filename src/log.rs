//! Syslog records (design §4): one per decision, one per outcome; facility authpriv,
//! ident `rshell`. Untrusted text is escaped and length-capped before it is logged.
//! If syslog is unavailable the decision stands; stderr still explains.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

/// Longest command text put into a record.
pub const MAX_LOGGED_COMMAND: usize = 1024;

/// Escape control characters, quotes and backslashes; cap the length.
pub fn escape(text: &str, cap: usize) -> String {
    let mut out = String::with_capacity(text.len().min(cap) + 8);
    for c in text.chars() {
        if out.len() >= cap {
            out.push_str("...");
            break;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Escape raw bytes: invalid UTF-8 becomes `\xNN`.
pub fn escape_bytes(bytes: &[u8], cap: usize) -> String {
    let mut text = String::new();
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(text, "\u{1}{b:02x}");
        }
    }
    // Re-escape; the \u{1} marker becomes "\x01" + hex, shown as \x?? below.
    escape(&text, cap).replace("\\x01", "\\x")
}

/// The fields of a decision record.
#[derive(Debug, Clone, Default)]
pub struct Decision<'a> {
    pub allowed: bool,
    pub user: &'a str,
    pub uid: u32,
    pub client: Option<String>,
    pub key: Option<String>,
    pub section: String,
    pub mode: &'a str,
    pub reason: String,
    pub landlock: String,
    pub command: String,
}

impl Decision<'_> {
    /// The one-line record.
    pub fn line(&self) -> String {
        format!(
            "{} user={} uid={} from={} key={} mode={} section={} {} reason=\"{}\" command=\"{}\"",
            if self.allowed { "allow" } else { "deny" },
            escape(self.user, 64),
            self.uid,
            self.client.as_deref().unwrap_or("-"),
            self.key.as_deref().unwrap_or("-"),
            self.mode,
            escape(&self.section, 128),
            self.landlock,
            escape(&self.reason, 512),
            self.command,
        )
    }
}

/// Send one record to syslog (authpriv, ident rshell). Failures are reported on stderr
/// once, never fatal.
pub fn send(line: &str, warning: bool) {
    let formatter = syslog::Formatter3164 {
        facility: syslog::Facility::LOG_AUTHPRIV,
        hostname: None,
        process: "rshell".into(),
        pid: std::process::id(),
    };
    let result = syslog::unix(formatter).and_then(|mut w| {
        if warning {
            w.warning(line)
        } else {
            w.info(line)
        }
    });
    // A refusal already explains itself in its one stderr line; only allowed sessions
    // mention that their record could not be written.
    if let (Err(e), false) = (result, warning) {
        eprintln!("rshell: note: syslog unavailable ({e}); not logged: {line}");
    }
}

/// The key fingerprint from sshd's `SSH_USER_AUTH` file (`ExposeAuthInfo yes`):
/// lines like `publickey ssh-ed25519 AAAA...`; we log `SHA256:<base64>` as ssh-keygen does.
pub fn key_fingerprint(auth_info_file: &std::path::Path) -> Option<String> {
    // The file is created by sshd, owned by the user; read at most a few KiB.
    let text = std::fs::read_to_string(auth_info_file).ok()?;
    if text.len() > 64 * 1024 {
        return None;
    }
    let line = text.lines().find(|l| l.starts_with("publickey "))?;
    let blob_b64 = line.split(' ').nth(2)?;
    use base64::Engine as _;
    use sha2::Digest as _;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(blob_b64)
        .ok()?;
    let digest = sha2::Sha256::digest(&blob);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_quotes_are_escaped() {
        assert_eq!(escape("a\nb\"c\\", 100), "a\\x0ab\\\"c\\\\");
        assert_eq!(
            escape(&"x".repeat(50), 10),
            format!("{}...", "x".repeat(10))
        );
        assert_eq!(escape_bytes(b"ok\xffz", 100), "ok\\xffz");
    }

    #[test]
    fn a_decision_is_one_line() {
        let d = Decision {
            allowed: false,
            user: "alice",
            uid: 1000,
            client: Some("127.0.0.1".into()),
            section: "[users.alice]".into(),
            mode: "login",
            reason: "bad\nthing".into(),
            landlock: "landlock=off".into(),
            command: escape("rsync;\nid", 100),
            ..Default::default()
        };
        let line = d.line();
        assert!(!line.contains('\n'));
        assert!(
            line.starts_with("deny user=alice uid=1000 from=127.0.0.1"),
            "{line}"
        );
        assert!(line.contains("command=\"rsync;\\x0aid\""), "{line}");
    }
}
