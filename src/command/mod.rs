//! Splits a command string into words the way a POSIX shell would — and refuses
//! everything a shell would *do* rather than merely quote (a stock rsync client escapes every such character itself).
//!
//! Rules (no syscalls here, no allocation beyond the words):
//! - blanks separate words; backslash, single and double quotes are removed as `sh` would;
//! - unquoted operators and expansions (`; & | < > ( )`, `$` and backtick outside single
//!   quotes, `#` where a word starts, `!` `{` `}` as whole words) are refused, never
//!   interpreted; inside a word `# ! { }` are literal, as in a POSIX shell;
//! - NUL, CR and LF anywhere, unescaped TAB, empty words, doubled or edge blanks,
//!   unbalanced quotes and absurd lengths are refused;
//! - we remember which glob characters and which leading `~` were *unquoted*, because
//!   only those have a meaning (see resolve.rs): `\*` and `\~` are literal names.
#![forbid(unsafe_code)]

pub mod glob;
pub mod secluded;

use std::fmt;

/// Longest command string accepted (a real rsync command line is a few hundred bytes).
pub const MAX_COMMAND_LEN: usize = 16 * 1024;
/// Most words accepted.
pub const MAX_WORDS: usize = 512;
/// Longest single word (PATH_MAX).
pub const MAX_WORD_LEN: usize = 4096;

/// One word after quote removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The text after quote removal.
    pub text: String,
    /// 1-based byte position of the word in the command string (for messages).
    pub position: usize,
    /// Byte offsets into `text` of `*`, `?` and `[` that were not quoted or escaped:
    /// a shell would treat them as a pattern.
    pub active_glob: Vec<usize>,
    /// The word starts with an unquoted `~` (a shell would do tilde expansion).
    pub tilde: bool,
}

/// Why a command string cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("empty command")]
    Empty,
    #[error("command longer than {MAX_COMMAND_LEN} bytes")]
    TooLong,
    #[error("more than {MAX_WORDS} words")]
    TooManyWords,
    #[error("word at position {0} is longer than {MAX_WORD_LEN} bytes")]
    WordTooLong(usize),
    #[error("command is not valid UTF-8")]
    NotUtf8,
    #[error("{name} at position {1} is not allowed", name = CharName(*.0))]
    Forbidden(char, usize),
    #[error("unquoted {name} at position {1}: shell syntax is not allowed", name = CharName(*.0))]
    ShellSyntax(char, usize),
    #[error("{name} inside double quotes at position {1}: expansions are not allowed", name = CharName(*.0))]
    Expansion(char, usize),
    #[error("unterminated {kind} quote starting at position {1}", kind = if *.0 == '\'' { "single" } else { "double" })]
    Unbalanced(char, usize),
    #[error("trailing backslash at position {0}")]
    TrailingBackslash(usize),
    #[error("empty word at position {0}")]
    EmptyWord(usize),
    #[error("extra blank at position {0}")]
    ExtraBlank(usize),
}

/// Prints a character for a message: printable ones quoted, control characters by name.
struct CharName(char);

impl fmt::Display for CharName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            '\0' => f.write_str("NUL"),
            '\n' => f.write_str("LF (newline)"),
            '\r' => f.write_str("CR"),
            '\t' => f.write_str("TAB"),
            c if c.is_control() => write!(f, "control character U+{:04X}", c as u32),
            c => write!(f, "'{c}'"),
        }
    }
}

/// Characters a shell treats as operators or expansions wherever they stand unquoted.
fn is_shell_special(c: char) -> bool {
    matches!(c, ';' | '&' | '|' | '<' | '>' | '(' | ')' | '$' | '`')
}

/// Words a POSIX shell treats as reserved when they stand alone (`!` negates a pipeline,
/// `{` `}` group commands); inside a word these characters are literal (`x{1}`, `excl!x`:
/// POSIX sh has no brace expansion and `sh -c` no history expansion).
fn is_reserved_word(text: &str) -> bool {
    matches!(text, "!" | "{" | "}")
}

/// Characters refused anywhere, quoted or not.
fn is_forbidden(c: char) -> bool {
    c == '\0' || c == '\n' || c == '\r' || (c.is_control() && c != '\t')
}

/// Split `command` into words as a POSIX shell would, refusing what a shell would do.
pub fn split(command: &[u8]) -> Result<Vec<Word>, SplitError> {
    if command.len() > MAX_COMMAND_LEN {
        return Err(SplitError::TooLong);
    }
    if let Some(i) = command.iter().position(|&b| b == 0) {
        return Err(SplitError::Forbidden('\0', i + 1));
    }
    let text = std::str::from_utf8(command).map_err(|_| SplitError::NotUtf8)?;
    if text.is_empty() {
        return Err(SplitError::Empty);
    }

    let mut words: Vec<Word> = Vec::new();
    let mut current: Option<Word> = None;
    let mut chars = text.char_indices().peekable();
    let mut previous_was_blank = true; // a leading blank is an extra blank
                                       // Whether the word being built has seen a quote yet (`''~x` is no tilde expansion).
    let mut quoted = false;

    while let Some((i, c)) = chars.next() {
        let pos = i + 1;
        if is_forbidden(c) {
            return Err(SplitError::Forbidden(c, pos));
        }
        if c == ' ' {
            if previous_was_blank {
                return Err(SplitError::ExtraBlank(pos));
            }
            previous_was_blank = true;
            if let Some(w) = current.take() {
                refuse_reserved(&w, quoted)?;
                push_word(&mut words, w)?;
            }
            quoted = false;
            continue;
        }
        previous_was_blank = false;
        if c == '\t' {
            return Err(SplitError::ShellSyntax('\t', pos));
        }
        let word = current.get_or_insert_with(|| Word {
            text: String::new(),
            position: pos,
            active_glob: Vec::new(),
            tilde: false,
        });
        match c {
            '\\' => match chars.next() {
                Some((j, e)) => {
                    if is_forbidden(e) {
                        return Err(SplitError::Forbidden(e, j + 1));
                    }
                    word.text.push(e);
                }
                None => return Err(SplitError::TrailingBackslash(pos)),
            },
            '\'' => {
                let mut closed = false;
                for (j, q) in chars.by_ref() {
                    if is_forbidden(q) {
                        return Err(SplitError::Forbidden(q, j + 1));
                    }
                    if q == '\'' {
                        closed = true;
                        break;
                    }
                    word.text.push(q);
                }
                if !closed {
                    return Err(SplitError::Unbalanced('\'', pos));
                }
                quoted = true;
            }
            '"' => {
                let mut closed = false;
                while let Some((j, q)) = chars.next() {
                    if is_forbidden(q) {
                        return Err(SplitError::Forbidden(q, j + 1));
                    }
                    match q {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '$' | '`' => return Err(SplitError::Expansion(q, j + 1)),
                        '\\' => match chars.peek().copied() {
                            // Inside double quotes a backslash escapes only these (POSIX).
                            Some((_, e @ ('$' | '`' | '"' | '\\'))) => {
                                chars.next();
                                word.text.push(e);
                            }
                            Some((k, e)) if is_forbidden(e) => {
                                return Err(SplitError::Forbidden(e, k + 1));
                            }
                            _ => word.text.push('\\'),
                        },
                        other => word.text.push(other),
                    }
                }
                if !closed {
                    return Err(SplitError::Unbalanced('"', pos));
                }
                quoted = true;
            }
            c if is_shell_special(c) => return Err(SplitError::ShellSyntax(c, pos)),
            // `#` starts a comment only where a word starts (`notes#1.txt` is a name).
            '#' if word.text.is_empty() && !quoted => return Err(SplitError::ShellSyntax(c, pos)),
            '*' | '?' | '[' => {
                word.active_glob.push(word.text.len());
                word.text.push(c);
            }
            '~' if word.text.is_empty() && !quoted => {
                word.tilde = true;
                word.text.push(c);
            }
            c => word.text.push(c),
        }
        if word.text.len() > MAX_WORD_LEN {
            return Err(SplitError::WordTooLong(word.position));
        }
    }
    if previous_was_blank && !words.is_empty() {
        return Err(SplitError::ExtraBlank(text.len()));
    }
    if let Some(w) = current.take() {
        refuse_reserved(&w, quoted)?;
        push_word(&mut words, w)?;
    }
    if words.is_empty() {
        return Err(SplitError::Empty);
    }
    Ok(words)
}

fn refuse_reserved(w: &Word, quoted: bool) -> Result<(), SplitError> {
    if !quoted && is_reserved_word(&w.text) {
        let c = w.text.chars().next().unwrap_or('!');
        return Err(SplitError::ShellSyntax(c, w.position));
    }
    Ok(())
}

fn push_word(words: &mut Vec<Word>, w: Word) -> Result<(), SplitError> {
    if w.text.is_empty() {
        return Err(SplitError::EmptyWord(w.position));
    }
    if words.len() >= MAX_WORDS {
        return Err(SplitError::TooManyWords);
    }
    words.push(w);
    Ok(())
}

/// Quote a word for display (logs, `--test`): the shell-safe form of `text`.
pub fn quote(text: &str) -> String {
    match shlex::try_quote(text) {
        Ok(q) => q.into_owned(),
        Err(_) => crate::log::escape(text, usize::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn texts(s: &str) -> Vec<String> {
        split(s.as_bytes())
            .unwrap()
            .into_iter()
            .map(|w| w.text)
            .collect()
    }

    #[rstest]
    #[case("rsync --server . dest/", &["rsync", "--server", ".", "dest/"])]
    #[case("a\\ b c", &["a b", "c"])]
    #[case("'a b' \"c d\"", &["a b", "c d"])]
    #[case("it\\'s\\ \\\"q\\\"/", &["it's \"q\"/"])]
    #[case("\"a\\\\b\\$c\\`d\\\"e\\x\"", &["a\\b$c`d\"e\\x"])]
    #[case("'$(id);`x`|&'", &["$(id);`x`|&"])]
    #[case("we\\$ird\\;\\&\\|\\`name\\`\\(x\\)\\<y\\>\\{z\\}\\#\\!\\\\q", &["we$ird;&|`name`(x)<y>{z}#!\\q"])]
    #[case("a'b'\"c\"d", &["abcd"])]
    #[case("caf\u{e9} \u{1f600}", &["caf\u{e9}", "\u{1f600}"])]
    #[case("a\\\tb", &["a\tb"])]
    fn posix_quote_removal(#[case] input: &str, #[case] expected: &[&str]) {
        assert_eq!(texts(input), expected);
    }

    #[rstest]
    #[case("x ;", SplitError::ShellSyntax(';', 3))]
    #[case("x $y", SplitError::ShellSyntax('$', 3))]
    #[case("x \"$y\"", SplitError::Expansion('$', 4))]
    #[case("x \"`y`\"", SplitError::Expansion('`', 4))]
    #[case("x\ny", SplitError::Forbidden('\n', 2))]
    #[case("x '\n'", SplitError::Forbidden('\n', 4))]
    #[case("x\\\ny", SplitError::Forbidden('\n', 3))]
    #[case("x\ty", SplitError::ShellSyntax('\t', 2))]
    #[case("x 'y", SplitError::Unbalanced('\'', 3))]
    #[case("x \"y", SplitError::Unbalanced('"', 3))]
    #[case("x\\", SplitError::TrailingBackslash(2))]
    #[case("x ''", SplitError::EmptyWord(3))]
    #[case(" x", SplitError::ExtraBlank(1))]
    #[case("x  y", SplitError::ExtraBlank(3))]
    #[case("x ", SplitError::ExtraBlank(2))]
    #[case("", SplitError::Empty)]
    #[case("x \u{7f}", SplitError::Forbidden('\u{7f}', 3))]
    fn refusals_name_the_character_and_position(#[case] input: &str, #[case] expected: SplitError) {
        assert_eq!(split(input.as_bytes()), Err(expected));
    }

    #[test]
    fn absurd_lengths_and_bad_encodings_are_refused() {
        assert_eq!(
            split(&vec![b'a'; MAX_COMMAND_LEN + 1]),
            Err(SplitError::TooLong)
        );
        assert_eq!(split(&[b'a', 0, b'b']), Err(SplitError::Forbidden('\0', 2)));
        assert_eq!(split(b"a \xff"), Err(SplitError::NotUtf8));
        let many = vec!["x"; MAX_WORDS + 1].join(" ");
        assert_eq!(split(many.as_bytes()), Err(SplitError::TooManyWords));
        assert!(matches!(
            split("x".repeat(MAX_WORD_LEN + 1).as_bytes()),
            Err(SplitError::WordTooLong(1))
        ));
    }

    #[test]
    fn only_unquoted_globs_and_tildes_are_active() {
        let w = &split(b"a*b 'c*' d\\* [x] ~ ~/y \\~ ''~z \"~\"").unwrap();
        assert_eq!(w[0].active_glob, vec![1]);
        assert!(w[1].active_glob.is_empty());
        assert!(w[2].active_glob.is_empty());
        assert_eq!(w[3].active_glob, vec![0]);
        assert!(w[4].tilde && w[5].tilde);
        assert!(!w[6].tilde && !w[7].tilde && !w[8].tilde);
        assert_eq!(w[7].text, "~z");
    }

    #[test]
    fn the_error_message_is_readable() {
        let e = split(b"rsync --server . x; id").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unquoted ';' at position 19: shell syntax is not allowed"
        );
        let e = split(b"rsync\n").unwrap_err();
        assert_eq!(e.to_string(), "LF (newline) at position 6 is not allowed");
    }
}
