//! Log records: one per decision, one per outcome; facility authpriv, ident `rshell`,
//! to syslog (/dev/log) or else the systemd journal. Untrusted text is escaped before it
//! is logged. Without a log sink the decision stands, and nothing is printed instead:
//! stderr belongs to the client, which gets only the one `rshell: denied:` line.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use sha2::Digest as _;

/// Longest command text put into a record.
pub const MAX_LOGGED_COMMAND: usize = 1024;

/// Appended by the escaper when it cuts text at its cap. A backslash followed by `.` is
/// never produced by an escape, so a cut cannot be mistaken for text ending in dots.
pub const TRUNCATED: &str = "\\...";

/// Escape text for a log record; at most `cap` bytes of escaped text, then [`TRUNCATED`].
/// See [`escape_bytes`] for the rules.
pub fn escape(text: &str, cap: usize) -> String {
    escape_bytes(text.as_bytes(), cap)
}

/// Escape raw bytes for a log record; at most `cap` bytes of escaped text, then
/// [`TRUNCATED`]. The form is unambiguous (two inputs never escape alike, up to the cap):
/// - `\` → `\\`, `"` → `\"`;
/// - ASCII controls (0x00–0x1f, 0x7f) and every byte of invalid UTF-8 → `\xNN`
///   (the two cannot collide: a control is < 0x80, an invalid byte ≥ 0x80);
/// - characters that are not printable or that reorder or hide text ([`hidden`])
///   → `\u{XXXX}`;
/// - everything else (printable ASCII, space, é, 日本) as is.
///
/// Escapes are never split by the cap.
pub fn escape_bytes(bytes: &[u8], cap: usize) -> String {
    escape_core(bytes, cap, Quoting::Record)
}

/// Escape text for a line a person reads on a terminal (a client's `rshell: denied:`
/// line, `rshell --test`): ASCII controls (ESC among them), invalid UTF-8 and the
/// characters [`hidden`] lists are escaped exactly as in a log record, so no byte can
/// move the cursor, recolour or reorder the line; `"` and `\` stay as they are, because
/// the line is not a quoted field and `\"` would only be noise. At most `cap` bytes of
/// escaped text, then [`TRUNCATED`].
pub fn escape_for_terminal(text: &str, cap: usize) -> String {
    escape_core(text.as_bytes(), cap, Quoting::Terminal)
}

/// Whether `"` and `\` are escaped: a record quotes its fields, a terminal line does not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Record,
    Terminal,
}

/// The one escaping core of [`escape_bytes`] and [`escape_for_terminal`].
fn escape_core(bytes: &[u8], cap: usize, quoting: Quoting) -> String {
    let record = quoting == Quoting::Record;
    let mut out = String::with_capacity(bytes.len().min(cap) + TRUNCATED.len());
    let mut piece = String::with_capacity(12);
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid().chars().map(Ok);
        let invalid = chunk.invalid().iter().map(|&b| Err(b));
        for item in valid.chain(invalid) {
            piece.clear();
            match item {
                Ok('\\') if record => piece.push_str("\\\\"),
                Ok('"') if record => piece.push_str("\\\""),
                Ok(c) if c.is_ascii_control() => {
                    let _ = write!(piece, "\\x{:02x}", c as u32);
                }
                Ok(c) if hidden(c) => {
                    let _ = write!(piece, "\\u{{{:04x}}}", c as u32);
                }
                Ok(c) => piece.push(c),
                Err(b) => {
                    let _ = write!(piece, "\\x{b:02x}");
                }
            }
            // `out.len() <= cap` always holds, so this cannot underflow.
            if piece.len() > cap - out.len() {
                out.push_str(TRUNCATED);
                return out;
            }
            out.push_str(&piece);
        }
    }
    out
}

/// Non-ASCII characters that a log reader would not see as themselves, by Unicode 16.0
/// (UCD DerivedGeneralCategory.txt, DerivedCoreProperties.txt, PropList.txt):
/// general categories Cc (C1 controls), Cf (format: bidi embeddings/overrides/isolates,
/// zero-width characters, soft hyphen, BOM, tags), Zs other than U+0020, Zl, Zp, Co
/// (private use); the property Default_Ignorable_Code_Point (invisible fillers and
/// variation selectors, which hide text without being Cf); and the noncharacters.
/// Other unassigned code points (Cn) are not listed: that needs the full tables.
/// Sorted, inclusive, non-overlapping (checked by a test).
const HIDDEN: &[(u32, u32)] = &[
    (0x0080, 0x009f),    // Cc: C1 controls (0x85 NEL is a line break to some readers)
    (0x00a0, 0x00a0),    // Zs: no-break space
    (0x00ad, 0x00ad),    // Cf: soft hyphen
    (0x034f, 0x034f),    // Default_Ignorable: combining grapheme joiner
    (0x0600, 0x0605),    // Cf: Arabic number signs
    (0x061c, 0x061c),    // Cf: Arabic letter mark (bidi)
    (0x06dd, 0x06dd),    // Cf
    (0x070f, 0x070f),    // Cf
    (0x0890, 0x0891),    // Cf
    (0x08e2, 0x08e2),    // Cf
    (0x115f, 0x1160),    // Default_Ignorable: Hangul fillers
    (0x1680, 0x1680),    // Zs: Ogham space mark
    (0x17b4, 0x17b5),    // Default_Ignorable: Khmer inherent vowels
    (0x180b, 0x180f),    // Default_Ignorable: Mongolian selectors; Cf: U+180E
    (0x2000, 0x200f),    // Zs: en quad..hair space; Cf: ZWSP, ZWNJ, ZWJ, LRM, RLM
    (0x2028, 0x202f),    // Zl, Zp; Cf: LRE, RLE, PDF, LRO, RLO; Zs: narrow no-break space
    (0x205f, 0x206f),    // Zs: math space; Cf: word joiner.., LRI, RLI, FSI, PDI, ..
    (0x3000, 0x3000),    // Zs: ideographic space
    (0x3164, 0x3164),    // Default_Ignorable: Hangul filler
    (0xe000, 0xf8ff),    // Co
    (0xfdd0, 0xfdef),    // noncharacters
    (0xfe00, 0xfe0f),    // Default_Ignorable: variation selectors
    (0xfeff, 0xfeff),    // Cf: zero-width no-break space (BOM)
    (0xffa0, 0xffa0),    // Default_Ignorable: halfwidth Hangul filler
    (0xfff0, 0xfffb),    // Default_Ignorable (unassigned); Cf: interlinear annotation
    (0x110bd, 0x110bd),  // Cf
    (0x110cd, 0x110cd),  // Cf
    (0x13430, 0x1343f),  // Cf: Egyptian hieroglyph format controls
    (0x1bca0, 0x1bca3),  // Cf: shorthand format controls
    (0x1d173, 0x1d17a),  // Cf: musical format controls
    (0xe0000, 0xe0fff),  // Cf: tags; Default_Ignorable: variation selectors supplement
    (0xf0000, 0x10ffff), // Co: planes 15 and 16 (and their noncharacters)
];

/// Whether `c` is escaped as `\u{XXXX}`: see [`HIDDEN`]. ASCII is handled by the caller.
fn hidden(c: char) -> bool {
    let cp = c as u32;
    // U+nFFFE and U+nFFFF are noncharacters in every plane.
    if cp & 0xfffe == 0xfffe {
        return true;
    }
    let i = HIDDEN.partition_point(|&(_, last)| last < cp);
    HIDDEN.get(i).is_some_and(|&(first, _)| first <= cp)
}

/// The fields of a decision record.
#[derive(Debug, Clone, Default)]
pub struct Decision<'a> {
    pub allowed: bool,
    pub user: &'a str,
    pub uid: u32,
    pub client: Option<String>,
    pub key: Option<KeyId>,
    /// Whether the caller trusts `key` (see [`key_fingerprint`]): logged as `key=` if so,
    /// as `key_unverified=` otherwise.
    pub key_verified: bool,
    /// Raw section name; `line()` quotes and escapes it.
    pub section: String,
    pub mode: &'a str,
    /// Raw reason; `line()` escapes it (capped).
    pub reason: String,
    pub landlock: String,
    /// Already escaped and capped by the caller (`escape_bytes(.., MAX_LOGGED_COMMAND)`).
    pub command: String,
    /// The vetted paths, raw bytes (a name need not be UTF-8): `line()` escapes each and
    /// logs them in full, after the capped command, so a long option can never push a
    /// path out of the record.
    pub paths: Vec<Vec<u8>>,
}

impl Decision<'_> {
    /// The one-line record. Every client-influenced field is escaped; free text is
    /// quoted; `paths=` comes last as `"a" "b"` (or `-` when there are none).
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} user={} uid={} from={} {}={} mode={} section=\"{}\" {} reason=\"{}\" command=\"{}\" paths=",
            if self.allowed { "allow" } else { "deny" },
            escape(self.user, 64),
            self.uid,
            self.client.as_deref().unwrap_or("-"),
            match (&self.key, self.key_verified) {
                (Some(_), false) => "key_unverified",
                _ => "key",
            },
            self.key.as_ref().map_or("-", |k| k.fingerprint.as_str()),
            self.mode,
            escape(&self.section, 128),
            self.landlock,
            escape(&self.reason, 512),
            self.command,
        );
        if self.paths.is_empty() {
            line.push('-');
        }
        for (i, path) in self.paths.iter().enumerate() {
            if i > 0 {
                line.push(' ');
            }
            let _ = write!(line, "\"{}\"", escape_bytes(path, usize::MAX));
        }
        line
    }
}

/// Where a record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// The syslog socket, /dev/log.
    Syslog,
    /// The systemd journal's native socket.
    Journal,
    /// Nowhere: no sink accepted it in time.
    None,
}

const SYSLOG_SOCKET: &str = "/dev/log";
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// How long one send may wait for a logger whose queue is full.
const SEND_TIMEOUT: Duration = Duration::from_millis(200);
/// LOG_AUTHPRIV (syslog.h): records name users and keys, so not the world-readable facility.
const FACILITY_AUTHPRIV: u32 = 10;
const SEVERITY_WARNING: u32 = 4;
const SEVERITY_INFO: u32 = 6;

/// Send one record (authpriv, ident `rshell`; warning for refusals, info otherwise) to
/// /dev/log, else to the journal. Never fatal, never blocks longer than a short timeout
/// per sink, never prints the record: the caller decides what to do with [`Sink::None`].
pub fn send(line: &str, warning: bool) -> Sink {
    // One socket for every record of this process (the decision, then the outcome): it is
    // unbound and unconnected, each record names its sink. Close-on-exec, so rsync never
    // holds it.
    static SOCKET: Mutex<Option<UnixDatagram>> = Mutex::new(None);
    let mut socket = SOCKET.lock().unwrap_or_else(|e| e.into_inner());
    if socket.is_none() {
        *socket = datagram_socket(SEND_TIMEOUT).ok();
    }
    let Some(socket) = socket.as_ref() else {
        return Sink::None;
    };
    send_with(
        socket,
        Path::new(SYSLOG_SOCKET),
        Path::new(JOURNAL_SOCKET),
        line,
        warning,
    )
}

#[cfg(test)]
fn send_via(syslog: &Path, journal: &Path, line: &str, warning: bool, timeout: Duration) -> Sink {
    match datagram_socket(timeout) {
        Ok(socket) => send_with(&socket, syslog, journal, line, warning),
        Err(_) => Sink::None,
    }
}

fn send_with(
    socket: &UnixDatagram,
    syslog: &Path,
    journal: &Path,
    line: &str,
    warning: bool,
) -> Sink {
    let severity = if warning {
        SEVERITY_WARNING
    } else {
        SEVERITY_INFO
    };
    let record = syslog_datagram(line, severity, std::process::id());
    if send_datagram(socket, syslog, record.as_bytes()).is_ok() {
        return Sink::Syslog;
    }
    if send_datagram(socket, journal, &journal_datagram(line, severity)).is_ok() {
        return Sink::Journal;
    }
    Sink::None
}

/// RFC 3164 style, as glibc syslog(3) sends it but without the timestamp: the receiver
/// stamps local-socket messages itself (rsyslog imuxsock ignores a sent timestamp by
/// default; journald and busybox syslogd accept the form without one).
fn syslog_datagram(line: &str, severity: u32, pid: u32) -> String {
    format!(
        "<{}>rshell[{pid}]: {line}",
        FACILITY_AUTHPRIV * 8 + severity
    )
}

/// The journal's native protocol (systemd.journal-fields(7), "Native Journal Protocol"):
/// `FIELD=value\n` per field; a value holding a newline is sent as `FIELD\n`, its length
/// as 64-bit little endian, the value, `\n`.
fn journal_datagram(line: &str, severity: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + 80);
    let priority = severity.to_string();
    let facility = FACILITY_AUTHPRIV.to_string();
    for (field, value) in [
        ("MESSAGE", line),
        ("SYSLOG_IDENTIFIER", "rshell"),
        ("PRIORITY", &priority),
        ("SYSLOG_FACILITY", &facility),
    ] {
        out.extend_from_slice(field.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

/// An unbound datagram socket whose sends wait at most `timeout`. A blocking send to a
/// unix datagram socket whose reader has stopped waits for room in its queue
/// (net.unix.max_dgram_qlen, kernel unix_dgram_sendmsg) — forever, as the `syslog` crate
/// and glibc syslog(3) would; the send timeout (SO_SNDTIMEO) bounds that wait. No stream
/// fallback: connecting to a stalled stream listener could block too.
fn datagram_socket(timeout: Duration) -> std::io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.set_write_timeout(Some(timeout))?;
    Ok(socket)
}

/// One datagram to the socket at `path`, through `socket` (see [`datagram_socket`]).
fn send_datagram(socket: &UnixDatagram, path: &Path, message: &[u8]) -> std::io::Result<()> {
    let sent = socket.send_to(message, path)?;
    if sent == message.len() {
        Ok(())
    } else {
        Err(std::io::ErrorKind::WriteZero.into())
    }
}

/// A key named by the `SSH_USER_AUTH` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyId {
    /// `SHA256:<unpadded base64>`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// Largest `SSH_USER_AUTH` file read; sshd writes one line per authentication method.
const MAX_AUTH_INFO: u64 = 64 * 1024;

/// The key from sshd's `SSH_USER_AUTH` file (`ExposeAuthInfo yes`; lines like
/// `publickey ssh-ed25519 AAAA...`, OpenSSH auth2.c). The variable reaches us through the
/// environment, which the client can set (pam_env reads ~/.pam_environment), so the file
/// may be anything the user can name: it is read only if it is a small regular file, and
/// whether to trust the result is the caller's decision (`Decision::key_verified`).
pub fn key_fingerprint(auth_info_file: &Path) -> Option<KeyId> {
    let text = read_small_regular_file(auth_info_file, MAX_AUTH_INFO)?;
    let text = std::str::from_utf8(&text).ok()?;
    let line = text.lines().find(|l| l.starts_with("publickey "))?;
    let blob_b64 = line.split(' ').nth(2)?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(blob_b64)
        .ok()?;
    let digest = sha2::Sha256::digest(&blob);
    Some(KeyId {
        fingerprint: format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        ),
    })
}

/// The contents of `path` if it is a regular file of at most `max` bytes; never blocks on
/// a FIFO or device, never follows a final symlink, never reads more than `max + 1` bytes.
fn read_small_regular_file(path: &Path, max: u64) -> Option<Vec<u8>> {
    // lstat first: opening a device can act on it (a tape rewinds on close, a watchdog
    // arms), even with O_NONBLOCK; only a regular file is opened at all.
    let before = std::fs::symlink_metadata(path).ok()?;
    if !before.file_type().is_file() {
        return None;
    }
    // O_NOFOLLOW: a symlink swapped in after the lstat fails with ELOOP. O_NONBLOCK: a
    // FIFO swapped in opens without waiting for a writer (fifo(7)) and is refused below.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    // fstat the file we actually opened: still a regular file, and the one we lstat'ed.
    let opened = file.metadata().ok()?;
    if !opened.file_type().is_file() || (opened.dev(), opened.ino()) != (before.dev(), before.ino())
    {
        return None;
    }
    let mut data = Vec::new();
    file.take(max + 1).read_to_end(&mut data).ok()?;
    (data.len() as u64 <= max).then_some(data)
}

/// The inverse of [`escape_bytes`] for uncapped text: the bytes a field of a record, or
/// a word of `--test --json`, stands for (for scripts and the tests). `None` for text
/// that no escaping produces.
pub fn unescape(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next()? {
            '\\' => out.push(b'\\'),
            '"' => out.push(b'"'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).ok()?);
            }
            'u' => {
                if chars.next()? != '{' {
                    return None;
                }
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let c = char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?;
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_quotes_are_escaped() {
        assert_eq!(escape("a\nb\"c\\", 100), "a\\x0ab\\\"c\\\\");
        assert_eq!(escape("\u{1b}[31m\t\u{7f}", 100), "\\x1b[31m\\x09\\x7f");
        assert_eq!(escape_bytes(b"ok\xffz", 100), "ok\\xffz");
    }

    #[test]
    fn a_control_byte_and_an_invalid_byte_never_look_alike() {
        // The old marker trick logged both as `\xff`.
        let control_then_ff = escape_bytes(b"\x01ff", 100);
        let invalid = escape_bytes(b"\xff", 100);
        assert_eq!(control_then_ff, "\\x01ff");
        assert_eq!(invalid, "\\xff");
        assert_ne!(control_then_ff, invalid);
    }

    #[test]
    fn text_reordering_and_invisible_characters_are_escaped() {
        assert_eq!(escape("a\u{202e}b", 100), "a\\u{202e}b");
        assert_eq!(escape("a\u{2028}b\u{2029}", 100), "a\\u{2028}b\\u{2029}");
        assert_eq!(escape("\u{2066}x\u{2069}", 100), "\\u{2066}x\\u{2069}");
        assert_eq!(
            escape("\u{200b}\u{feff}\u{ad}", 100),
            "\\u{200b}\\u{feff}\\u{00ad}"
        );
        assert_eq!(
            escape("\u{85}\u{a0}\u{3000}", 100),
            "\\u{0085}\\u{00a0}\\u{3000}"
        );
        assert_eq!(escape("\u{e0041}\u{f0000}", 100), "\\u{e0041}\\u{f0000}");
        assert_eq!(escape("\u{1fffe}\u{fdd0}", 100), "\\u{1fffe}\\u{fdd0}");
    }

    #[test]
    fn printable_unicode_is_kept() {
        assert_eq!(escape("café 日本 ü ∑ 🙂", 100), "café 日本 ü ∑ 🙂");
        assert_eq!(escape("/srv/backup/a b", 100), "/srv/backup/a b");
    }

    #[test]
    fn the_hidden_table_is_sorted_and_disjoint() {
        for pair in HIDDEN.windows(2) {
            assert!(pair[0].0 <= pair[0].1 && pair[0].1 < pair[1].0, "{pair:x?}");
        }
        assert!(HIDDEN.iter().all(|&(_, last)| last <= 0x10ffff));
        for cp in [
            0x9f, 0x200f, 0x202a, 0x2064, 0x206f, 0xfeff, 0x1343f, 0xe0001,
        ] {
            assert!(hidden(char::from_u32(cp).unwrap()), "{cp:x}");
        }
        for c in ['é', '日', '\u{2010}', '\u{2030}', '\u{fffd}', '\u{1f642}'] {
            assert!(!hidden(c), "{c:?}");
        }
    }

    #[test]
    fn the_cap_counts_output_bytes_and_never_splits_an_escape() {
        let cut = escape(&"x".repeat(50), 10);
        assert_eq!(cut, format!("{}{TRUNCATED}", "x".repeat(10)));
        assert_eq!(escape("xxxxxxxxxx", 10), "xxxxxxxxxx");
        assert_eq!(escape("a\n", 3), format!("a{TRUNCATED}"));
        assert_eq!(escape("é", 1), TRUNCATED);
        assert_eq!(escape("", 0), "");
        // A cut is not text that ends in dots.
        assert_ne!(escape("abcdef", 3), escape("abc...", 100));
    }

    #[test]
    fn escaping_is_injective_on_every_string_of_up_to_two_bytes() {
        let mut seen = std::collections::HashMap::new();
        let mut inputs = vec![vec![]];
        inputs.extend((0..=255u8).map(|a| vec![a]));
        inputs.extend((0..=255u8).flat_map(|a| (0..=255u8).map(move |b| vec![a, b])));
        for input in inputs {
            let escaped = escape_bytes(&input, usize::MAX);
            assert_eq!(unescape(&escaped).as_deref(), Some(&input[..]), "{escaped}");
            if let Some(other) = seen.insert(escaped.clone(), input.clone()) {
                panic!("{other:x?} and {input:x?} both escape to {escaped}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn escaping_round_trips_and_is_one_printable_line(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..24),
            text in "\\PC{0,8}|[\u{0}-\u{ff}\u{2000}-\u{2070}\u{feff}\u{e0000}-\u{e0080}]{0,8}",
        ) {
            for input in [bytes, text.into_bytes()] {
                let escaped = escape_bytes(&input, usize::MAX);
                proptest::prop_assert_eq!(unescape(&escaped), Some(input));
                proptest::prop_assert!(escaped
                    .chars()
                    .all(|c| (c.is_ascii() && !c.is_ascii_control()) || (!c.is_ascii() && !hidden(c))));
            }
        }
    }

    #[test]
    fn a_terminal_line_escapes_controls_and_hidden_characters_but_not_quotes() {
        let reason = "option \"--log-file=/x\" in C:\\dir \u{1b}[31mred\u{202e}txt\r";
        assert_eq!(
            escape_for_terminal(reason, 1024),
            "option \"--log-file=/x\" in C:\\dir \\x1b[31mred\\u{202e}txt\\x0d"
        );
        // The same core as a record: only quoting differs.
        assert_eq!(
            escape(reason, 1024),
            "option \\\"--log-file=/x\\\" in C:\\\\dir \\x1b[31mred\\u{202e}txt\\x0d"
        );
        assert_eq!(
            escape_for_terminal("\u{1b}\u{1b}", 5),
            format!("\\x1b{TRUNCATED}")
        );
    }

    #[test]
    fn a_decision_is_one_line() {
        let d = Decision {
            allowed: false,
            user: "alice",
            uid: 1000,
            client: Some("127.0.0.1".into()),
            section: "forced key".into(),
            mode: "login",
            reason: "bad\nthing".into(),
            landlock: "landlock=off".into(),
            command: escape("rsync;\nid", 100),
            ..Default::default()
        };
        let line = d.line();
        assert!(!line.contains('\n'));
        assert_eq!(
            line,
            "deny user=alice uid=1000 from=127.0.0.1 key=- mode=login section=\"forced key\" \
             landlock=off reason=\"bad\\x0athing\" command=\"rsync;\\x0aid\" paths=-"
        );
    }

    #[test]
    fn paths_are_logged_in_full_after_a_capped_command() {
        let long_option = format!("--exclude={}", "x".repeat(4000));
        let command = format!("rsync --server {long_option} . /srv/backup/alice/dest");
        let d = Decision {
            allowed: true,
            section: "users.alice\"x".into(),
            command: escape(&command, MAX_LOGGED_COMMAND),
            paths: vec![
                "/srv/backup/alice/dest".into(),
                "/srv/a \"b\"\n\u{202e}c".into(),
                b"/srv/caf\xe9 \xff".to_vec(),
            ],
            ..Default::default()
        };
        let line = d.line();
        assert!(!line.contains('\n'));
        assert!(line.contains(&format!("{TRUNCATED}\" paths=")), "{line}");
        assert!(
            line.ends_with(
                " paths=\"/srv/backup/alice/dest\" \"/srv/a \\\"b\\\"\\x0a\\u{202e}c\" \"/srv/caf\\xe9 \\xff\""
            ),
            "{line}"
        );
        assert!(line.contains(" section=\"users.alice\\\"x\" "), "{line}");
    }

    /// A fresh directory for one test, removed on drop.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!(
                "rshell-log-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    // Generated once with `ssh-keygen -t ed25519` / `-t ecdsa`; the fingerprints are what
    // `ssh-keygen -lf` printed for them.
    const ED25519: &str = "ssh-ed25519 \
        AAAAC3NzaC1lZDI1NTE5AAAAILZrA6cJD/GY2z24bbQsyrhyVWHQFg/LU8b4fVa3mHjz";
    const ED25519_FP: &str = "SHA256:K2gYa0LB8CdQYsCXJo2HkD9alprB4qXmdATe/q25fYY";
    const ECDSA: &str = "ecdsa-sha2-nistp256 \
        AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBM3rONxtQkkH8iFiUVWkXonbFmZhAhxfP\
        EGnZjSjZsOx9EMyYRdqMmVZBQTKFE1fvvW2UFDDf1sMxbdmoE7peU=";
    const ECDSA_FP: &str = "SHA256:+aJFsRUOsQjiYrirZJzgadLrqQ/c7EHUqlQTOmQX8k8";

    /// `key_fingerprint` on another thread: a hang fails the test instead of stalling it.
    fn fingerprint_within(path: &Path, limit: std::time::Duration) -> Option<KeyId> {
        let path = path.to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(key_fingerprint(&path));
        });
        rx.recv_timeout(limit)
            .expect("key_fingerprint must not block")
    }

    const QUICK: std::time::Duration = std::time::Duration::from_secs(5);

    #[test]
    fn the_fingerprint_is_the_one_ssh_keygen_prints() {
        let dir = Scratch::new("fp");
        let auth = dir.0.join("auth");
        for (key, fp) in [(ED25519, ED25519_FP), (ECDSA, ECDSA_FP)] {
            std::fs::write(&auth, format!("password\npublickey {key}\n")).unwrap();
            let got = fingerprint_within(&auth, QUICK);
            assert_eq!(got.map(|k| k.fingerprint).as_deref(), Some(fp));
        }
        std::fs::write(&auth, "keyboard-interactive\n").unwrap();
        assert_eq!(fingerprint_within(&auth, QUICK), None);
        std::fs::write(&auth, "publickey ssh-ed25519 not*base64\n").unwrap();
        assert_eq!(fingerprint_within(&auth, QUICK), None);
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = Scratch::new("fifo");
        let fifo = dir.0.join("auth");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(fingerprint_within(&fifo, QUICK), None);
    }

    #[test]
    fn a_symlink_is_refused() {
        let dir = Scratch::new("link");
        let target = dir.0.join("auth");
        std::fs::write(&target, format!("publickey {ED25519}\n")).unwrap();
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(fingerprint_within(&target, QUICK).is_some());
        assert_eq!(fingerprint_within(&link, QUICK), None);
    }

    #[test]
    fn devices_are_refused_without_reading() {
        assert_eq!(fingerprint_within(Path::new("/dev/zero"), QUICK), None);
        assert_eq!(fingerprint_within(Path::new("/dev/null"), QUICK), None);
        assert_eq!(
            fingerprint_within(Path::new("/nonexistent/auth"), QUICK),
            None
        );
    }

    #[test]
    fn an_oversized_file_is_refused() {
        let dir = Scratch::new("big");
        let auth = dir.0.join("auth");
        let first = format!("publickey {ED25519}\n");
        let mut text = first.clone();
        text.push_str(&"x".repeat(MAX_AUTH_INFO as usize - first.len()));
        std::fs::write(&auth, &text).unwrap();
        assert!(
            fingerprint_within(&auth, QUICK).is_some(),
            "64 KiB is allowed"
        );
        text.push('x');
        std::fs::write(&auth, &text).unwrap();
        assert_eq!(fingerprint_within(&auth, QUICK), None);
        std::fs::write(&auth, first + &"x".repeat(70 * 1024)).unwrap();
        assert_eq!(fingerprint_within(&auth, QUICK), None);
    }

    #[test]
    fn an_unverified_key_is_labelled_so() {
        let key = KeyId {
            fingerprint: ED25519_FP.into(),
        };
        let mut d = Decision {
            key: Some(key),
            ..Default::default()
        };
        assert!(d.line().contains(&format!(" key_unverified={ED25519_FP} ")));
        d.key_verified = true;
        assert!(d.line().contains(&format!(" key={ED25519_FP} ")));
        d.key = None;
        assert!(d.line().contains(" key=- "));
    }

    fn receiver(path: &Path) -> UnixDatagram {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        socket
    }

    fn received(socket: &UnixDatagram) -> Vec<u8> {
        let mut buf = vec![0; 65536];
        let n = socket.recv(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    const SHORT: Duration = Duration::from_millis(20);

    #[test]
    fn a_record_goes_to_syslog_in_rfc3164_form() {
        let dir = Scratch::new("syslog");
        let (syslog, journal) = (dir.0.join("log"), dir.0.join("journal"));
        let reader = receiver(&syslog);
        let pid = std::process::id();
        assert_eq!(
            send_via(&syslog, &journal, "allow x", false, SHORT),
            Sink::Syslog
        );
        assert_eq!(
            received(&reader),
            format!("<86>rshell[{pid}]: allow x").into_bytes()
        );
        assert_eq!(
            send_via(&syslog, &journal, "deny y", true, SHORT),
            Sink::Syslog
        );
        assert_eq!(
            received(&reader),
            format!("<84>rshell[{pid}]: deny y").into_bytes()
        );
    }

    #[test]
    fn without_syslog_a_record_goes_to_the_journal_in_its_native_form() {
        let dir = Scratch::new("journal");
        let (syslog, journal) = (dir.0.join("log"), dir.0.join("journal"));
        let reader = receiver(&journal);
        assert_eq!(
            send_via(&syslog, &journal, "deny y", true, SHORT),
            Sink::Journal
        );
        assert_eq!(
            received(&reader),
            b"MESSAGE=deny y\nSYSLOG_IDENTIFIER=rshell\nPRIORITY=4\nSYSLOG_FACILITY=10\n"
        );
        // /dev/log that is not a socket (a file here) counts as missing.
        std::fs::write(&syslog, "").unwrap();
        assert_eq!(
            send_via(&syslog, &journal, "allow", false, SHORT),
            Sink::Journal
        );
        assert!(received(&reader).starts_with(b"MESSAGE=allow\n"));
    }

    #[test]
    fn a_journal_value_with_a_newline_is_sent_length_prefixed() {
        let datagram = journal_datagram("a\nb", 6);
        let mut expected = b"MESSAGE\n".to_vec();
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected
            .extend_from_slice(b"a\nb\nSYSLOG_IDENTIFIER=rshell\nPRIORITY=6\nSYSLOG_FACILITY=10\n");
        assert_eq!(datagram, expected);
    }

    #[test]
    fn with_no_sink_the_record_goes_nowhere() {
        let dir = Scratch::new("nosink");
        let (syslog, journal) = (dir.0.join("log"), dir.0.join("journal"));
        assert_eq!(
            send_via(&syslog, &journal, "allow", false, SHORT),
            Sink::None
        );
    }

    #[test]
    fn a_logger_that_stops_reading_cannot_stall_rshell() {
        let dir = Scratch::new("stall");
        let (syslog, journal) = (dir.0.join("log"), dir.0.join("journal"));
        let _never_read = receiver(&syslog);
        // Fill the reader's queue; once full, each send gives up after the timeout.
        let mut refused = 0;
        for _ in 0..5000 {
            let started = std::time::Instant::now();
            let sink = send_via(&syslog, &journal, "allow", false, SHORT);
            assert!(started.elapsed() < Duration::from_secs(2));
            if sink == Sink::None {
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
        }
        assert_eq!(refused, 3, "the queue never filled");
        // A stalled syslog still leaves the journal.
        let reader = receiver(&journal);
        assert_eq!(
            send_via(&syslog, &journal, "allow", false, SHORT),
            Sink::Journal
        );
        assert!(received(&reader).starts_with(b"MESSAGE=allow\n"));
    }
}
