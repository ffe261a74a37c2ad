//! Error fingerprints: an error's text with what differs from one task to
//! the next (ids, hashes, numbers, timestamps) masked, so that failures of
//! one cause fall into one group.

use sha2::{Digest, Sha256};

/// The most characters of an error a pattern keeps.
const MAX_PATTERN_CHARS: usize = 300;

/// The error's pattern: UUIDs become `<id>`, timestamps `<time>`, hex
/// strings of 8 or more characters with a digit `<hex>`, other runs of
/// digits `<n>`; whitespace runs become one space.
pub fn error_pattern(error: &str) -> String {
    // What lies past the kept part cannot change it: read a bounded prefix.
    let chars: Vec<char> = error.trim().chars().take(MAX_PATTERN_CHARS * 4).collect();
    let mut out = String::with_capacity(MAX_PATTERN_CHARS);
    let mut i = 0;
    while i < chars.len() && out.len() < MAX_PATTERN_CHARS * 4 {
        let c = chars[i];
        if c.is_whitespace() {
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            out.push(' ');
            continue;
        }
        if !c.is_ascii_alphanumeric() {
            out.push(c);
            i += 1;
            continue;
        }
        if let Some(len) = uuid_at(&chars[i..]) {
            out.push_str("<id>");
            i += len;
            continue;
        }
        if let Some(len) = timestamp_at(&chars[i..]) {
            out.push_str("<time>");
            i += len;
            continue;
        }
        // A word: letters, digits and underscores.
        let end = i + chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
            .count();
        let word = &chars[i..end];
        let hexy = word.iter().all(char::is_ascii_hexdigit);
        if word.len() >= 8 && hexy && word.iter().any(char::is_ascii_digit) {
            out.push_str("<hex>");
        } else {
            mask_digits(word, &mut out);
        }
        i = end;
    }
    match out.char_indices().nth(MAX_PATTERN_CHARS) {
        Some((cut, _)) => out[..cut].to_string(),
        None => out,
    }
}

/// A short, stable name of an error's pattern (16 hex digits), for URLs
/// and requests.
pub fn error_fingerprint(error: &str) -> String {
    let digest = Sha256::digest(error_pattern(error).as_bytes());
    hex::encode(&digest[..8])
}

/// `word` with each run of digits (and a decimal part) as `<n>`.
fn mask_digits(word: &[char], out: &mut String) {
    let mut i = 0;
    while i < word.len() {
        if word[i].is_ascii_digit() {
            while i < word.len() && word[i].is_ascii_digit() {
                i += 1;
            }
            out.push_str("<n>");
        } else {
            out.push(word[i]);
            i += 1;
        }
    }
}

/// The length of a UUID (8-4-4-4-12 hex digits) at the start of `s`.
fn uuid_at(s: &[char]) -> Option<usize> {
    let groups = [8, 4, 4, 4, 12];
    let mut at = 0;
    for (n, len) in groups.iter().enumerate() {
        if n > 0 {
            (s.get(at) == Some(&'-')).then_some(())?;
            at += 1;
        }
        let hex = s.get(at..at + len)?;
        hex.iter().all(char::is_ascii_hexdigit).then_some(())?;
        at += len;
    }
    let ends = s.get(at).is_none_or(|c| !c.is_ascii_alphanumeric());
    ends.then_some(at)
}

/// The length of a date (`2026-12-05`), with an optional time
/// (`T12:00`, `:30`, `.123`, `Z` or an offset), at the start of `s`.
fn timestamp_at(s: &[char]) -> Option<usize> {
    let shape = |at: usize, pattern: &str| {
        pattern
            .chars()
            .enumerate()
            .all(|(k, p)| match (p, s.get(at + k)) {
                ('9', Some(c)) => c.is_ascii_digit(),
                (p, Some(c)) => *c == p,
                (_, None) => false,
            })
    };
    if !shape(0, "9999-99-99") {
        return None;
    }
    let mut at = 10;
    if matches!(s.get(at), Some('T' | ' ')) && shape(at + 1, "99:99") {
        at += 6;
        if shape(at, ":99") {
            at += 3;
        }
        if s.get(at) == Some(&'.') {
            at += 1 + s[at + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
        }
        if s.get(at) == Some(&'Z') {
            at += 1;
        } else if matches!(s.get(at), Some('+' | '-')) && shape(at + 1, "99:99") {
            at += 6;
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_differs_between_tasks_is_masked() {
        assert_eq!(
            error_pattern("task 0193a4b2-7c1d-7e2f-9a3b-4c5d6e7f8a9b timed out after 30.5 s"),
            "task <id> timed out after <n>.<n> s"
        );
        assert_eq!(
            error_pattern("at 2026-12-05T02:03:48.123Z: HTTP 503 from host-12"),
            "at <time>: HTTP <n> from host-<n>"
        );
        assert_eq!(
            error_pattern("commit deadbeef42 not\n\n found on 2026-12-05"),
            "commit <hex> not found on <time>"
        );
        assert_eq!(error_pattern("  failed on purpose "), "failed on purpose");
        // Words that only look hex-ish keep their letters.
        assert_eq!(error_pattern("cafe decade"), "cafe decade");
    }

    #[test]
    fn one_cause_is_one_fingerprint() {
        let a = error_fingerprint("connection to 10.0.0.7:5432 refused (attempt 3)");
        let b = error_fingerprint("connection to 10.0.0.12:5432 refused (attempt 1)");
        assert_eq!(a, b);
        assert_eq!(a.len(), 16);
        assert_ne!(a, error_fingerprint("connection reset"));
    }

    #[test]
    fn hostile_errors_stay_bounded() {
        let long = "x".repeat(100_000) + &"1-".repeat(50_000);
        assert_eq!(error_pattern(&long).chars().count(), MAX_PATTERN_CHARS);
        assert_eq!(error_pattern(""), "");
        assert_eq!(error_pattern("2026-12-05T"), "<time>T");
    }
}
