//! kube-apiserver's `--token-auth-file`: CSV records `token,user,uid[,"group1,group2"]`.
//!
//! Parsed as Go's `encoding/csv` reads it (quoted fields, `""` escapes, records of any length)
//! and checked as `tokenfile.NewCSV` does: at least three columns, empty tokens skipped, a
//! repeated token replaces the earlier one.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::auth::UserInfo;

/// A bearer token and the user it authenticates.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticToken {
    pub token: String,
    pub user: UserInfo,
}

// why: the token is a credential; logs and test failures show the user only.
impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticToken")
            .field("token", &"<redacted>")
            .field("user", &self.user)
            .finish()
    }
}

/// Why a token file was refused; messages follow kube-apiserver's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenFileError {
    #[error("reading token file '{path}': {message}")]
    Read { path: PathBuf, message: String },
    #[error("token file '{path}': parse error on line {line}, column {column}: {problem}")]
    Csv {
        path: PathBuf,
        line: usize,
        column: usize,
        problem: CsvProblem,
    },
    #[error(
        "token file '{path}' must have at least 3 columns (token, user name, user uid), found {found} (line {line})"
    )]
    TooFewColumns {
        path: PathBuf,
        found: usize,
        line: usize,
    },
}

/// A CSV syntax error, worded as Go's `encoding/csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvProblem {
    BareQuote,
    Quote,
}

impl fmt::Display for CsvProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CsvProblem::BareQuote => "bare \" in non-quoted-field",
            CsvProblem::Quote => "extraneous or missing \" in quoted-field",
        })
    }
}

/// Reads and parses the token file at `path`.
pub fn read(path: &Path) -> Result<Vec<StaticToken>, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|err| TokenFileError::Read {
        path: path.to_path_buf(),
        message: err.to_string(),
    })?;
    parse(&text, path)
}

/// Parses token-file `text`; `path` only names the file in errors and warnings.
pub fn parse(text: &str, path: &Path) -> Result<Vec<StaticToken>, TokenFileError> {
    let records = csv_records(text).map_err(|(line, column, problem)| TokenFileError::Csv {
        path: path.to_path_buf(),
        line,
        column,
        problem,
    })?;
    let mut tokens: Vec<StaticToken> = Vec::new();
    for (record_number, (line, fields)) in records.into_iter().enumerate() {
        if fields.len() < 3 {
            return Err(TokenFileError::TooFewColumns {
                path: path.to_path_buf(),
                found: fields.len(),
                line,
            });
        }
        let mut fields = fields.into_iter();
        let (token, username, uid) = match (fields.next(), fields.next(), fields.next()) {
            (Some(token), Some(username), Some(uid)) => (token, username, uid),
            _ => continue,
        };
        if token.is_empty() {
            tracing::warn!(path = %path.display(), record = record_number + 1, "empty token in token file");
            continue;
        }
        let groups = fields
            .next()
            .map(|groups| {
                groups
                    .split(',')
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let user = UserInfo {
            username,
            uid,
            groups,
            ..UserInfo::default()
        };
        if let Some(earlier) = tokens.iter_mut().find(|t| t.token == token) {
            tracing::warn!(path = %path.display(), record = record_number + 1, "duplicate token in token file");
            earlier.user = user;
        } else {
            tokens.push(StaticToken { token, user });
        }
    }
    Ok(tokens)
}

type Record = (usize, Vec<String>);

/// Splits `text` into records of fields, with the line each record starts on; blank lines are
/// skipped. Errors carry the 1-based line and column.
fn csv_records(text: &str) -> Result<Vec<Record>, (usize, usize, CsvProblem)> {
    let mut records = Vec::new();
    let mut lines = text.split('\n').enumerate().peekable();
    while let Some((index, raw)) = lines.next() {
        let start_line = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut chars: Vec<char> = line.chars().collect();
        let mut line_number = start_line;
        let mut at = 0;
        loop {
            if chars.get(at) == Some(&'"') {
                // A quoted field: runs to the closing quote, across lines if need be.
                at += 1;
                loop {
                    match chars.get(at) {
                        Some('"') if chars.get(at + 1) == Some(&'"') => {
                            field.push('"');
                            at += 2;
                        }
                        Some('"') => {
                            at += 1;
                            break;
                        }
                        Some(c) => {
                            field.push(*c);
                            at += 1;
                        }
                        None => match lines.next() {
                            Some((next_index, next)) => {
                                field.push('\n');
                                line_number = next_index + 1;
                                chars = next.strip_suffix('\r').unwrap_or(next).chars().collect();
                                at = 0;
                            }
                            None => return Err((line_number, at + 1, CsvProblem::Quote)),
                        },
                    }
                }
                match chars.get(at) {
                    None => {
                        fields.push(std::mem::take(&mut field));
                        break;
                    }
                    Some(',') => {
                        fields.push(std::mem::take(&mut field));
                        at += 1;
                    }
                    Some(_) => return Err((line_number, at + 1, CsvProblem::Quote)),
                }
            } else {
                match chars[at..].iter().position(|c| *c == ',' || *c == '"') {
                    Some(offset) if chars[at + offset] == '"' => {
                        return Err((line_number, at + offset + 1, CsvProblem::BareQuote))
                    }
                    Some(offset) => {
                        fields.push(chars[at..at + offset].iter().collect());
                        at += offset + 1;
                    }
                    None => {
                        fields.push(chars[at..].iter().collect());
                        break;
                    }
                }
            }
        }
        records.push((start_line, fields));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Vec<(String, String, String, Vec<String>)> {
        parse(text, Path::new("tokens.csv"))
            .expect("parses")
            .into_iter()
            .map(|t| (t.token, t.user.username, t.user.uid, t.user.groups))
            .collect()
    }

    fn entry(
        token: &str,
        user: &str,
        uid: &str,
        groups: &[&str],
    ) -> (String, String, String, Vec<String>) {
        (
            token.into(),
            user.into(),
            uid.into(),
            groups.iter().map(|g| g.to_string()).collect(),
        )
    }

    #[test]
    fn quoted_group_list_becomes_several_groups() {
        assert_eq!(
            parsed("t1,alice,u1,\"team-a,team-b\"\nt2,bob,u2,viewers\nt3,carol,u3\n"),
            vec![
                entry("t1", "alice", "u1", &["team-a", "team-b"]),
                entry("t2", "bob", "u2", &["viewers"]),
                entry("t3", "carol", "u3", &[]),
            ]
        );
    }

    #[test]
    fn quotes_escape_commas_quotes_and_newlines() {
        assert_eq!(
            parsed("\"to,ken\",\"say \"\"hi\"\"\",u1\r\n\n\"multi\nline\",dave,u4\n"),
            vec![
                entry("to,ken", "say \"hi\"", "u1", &[]),
                entry("multi\nline", "dave", "u4", &[]),
            ]
        );
    }

    #[test]
    fn empty_tokens_are_skipped_and_repeated_tokens_replace_earlier_ones() {
        assert_eq!(
            parsed(",nobody,u0\nt1,alice,u1\nt1,alice2,u2,g\n"),
            vec![entry("t1", "alice2", "u2", &["g"])]
        );
    }

    #[test]
    fn a_record_with_two_columns_is_refused_with_kube_apiservers_message() {
        let err = parse("t1,alice,u1\nt2,bob\n", Path::new("/etc/tokens.csv")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token file '/etc/tokens.csv' must have at least 3 columns (token, user name, user uid), found 2 (line 2)"
        );
    }

    #[test]
    fn a_bare_quote_is_refused_with_its_line_and_column() {
        let err = parse("t1,alice,u1\nt2,bo\"b,u2\n", Path::new("tokens.csv")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token file 'tokens.csv': parse error on line 2, column 6: bare \" in non-quoted-field"
        );
    }

    #[test]
    fn an_unterminated_quote_is_refused() {
        let err = parse("t1,alice,u1,\"g1,g2\n", Path::new("tokens.csv")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token file 'tokens.csv': parse error on line 2, column 1: extraneous or missing \" in quoted-field"
        );
    }

    #[test]
    fn text_after_a_closing_quote_is_refused() {
        let err = parse("\"t1\"x,alice,u1\n", Path::new("tokens.csv")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token file 'tokens.csv': parse error on line 1, column 5: extraneous or missing \" in quoted-field"
        );
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let err = read(Path::new("/nonexistent/tokens.csv")).unwrap_err();
        assert!(
            matches!(&err, TokenFileError::Read { path, .. } if path == Path::new("/nonexistent/tokens.csv")),
            "{err}"
        );
    }
}
