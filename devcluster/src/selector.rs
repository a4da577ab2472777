//! Label and field selectors, as accepted by list and watch.
//!
//! Parsing follows `k8s.io/apimachinery/pkg/labels` and `pkg/fields`, including their error
//! wording, so clients see the messages a real API server would send.

mod field;
mod validation;

use std::collections::BTreeSet;

use serde_json::Value;

use validation::{validate_label_key, validate_label_value};

/// A parsed `labelSelector`: every requirement must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// A parsed `fieldSelector`: every term must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

/// Why a selector could not be parsed; answered 400 BadRequest with this message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// One label requirement, e.g. `tier in (web,api)`.
#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    operator: Operator,
    values: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One field term, e.g. `involvedObject.name!=web`.
#[derive(Debug, Clone, PartialEq)]
struct FieldTerm {
    field: String,
    value: String,
    negated: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Identifier(String),
    DoesNotExist,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    In,
    NotIn,
    OpenPar,
    ClosedPar,
    Comma,
    EndOfString,
}

impl Token {
    /// The literal the Go lexer reports in error messages.
    fn literal(&self) -> &str {
        match self {
            Token::Identifier(s) => s,
            Token::DoesNotExist => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::GreaterThan => ">",
            Token::LessThan => "<",
            Token::In => "in",
            Token::NotIn => "notin",
            Token::OpenPar => "(",
            Token::ClosedPar => ")",
            Token::Comma => ",",
            Token::EndOfString => "",
        }
    }

    /// In value position `in` and `notin` are plain identifiers.
    fn into_value(self) -> Token {
        match self {
            Token::In => Token::Identifier("in".into()),
            Token::NotIn => Token::Identifier("notin".into()),
            other => other,
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | '>' | '<' | '(' | ')' | ',')
}

fn lex(s: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if is_special(c) {
            let mut op = String::new();
            while let Some(&c) = chars.peek() {
                let mut candidate = op.clone();
                candidate.push(c);
                if !is_special(c) || !matches!(candidate.as_str(), "!" | "!=" | "=" | "==") {
                    if op.is_empty() {
                        op.push(c);
                        chars.next();
                    }
                    break;
                }
                op = candidate;
                chars.next();
            }
            tokens.push(match op.as_str() {
                "!" => Token::DoesNotExist,
                "!=" => Token::NotEquals,
                "=" => Token::Equals,
                "==" => Token::DoubleEquals,
                ">" => Token::GreaterThan,
                "<" => Token::LessThan,
                "(" => Token::OpenPar,
                ")" => Token::ClosedPar,
                _ => Token::Comma,
            });
        } else {
            let mut ident = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || is_special(c) {
                    break;
                }
                ident.push(c);
                chars.next();
            }
            tokens.push(match ident.as_str() {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier(ident),
            });
        }
    }
    tokens.push(Token::EndOfString);
    tokens
}

/// A cursor over lexed tokens, mirroring the Go parser's `lookahead`/`consume`.
struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

impl Parser {
    fn lookahead(&self) -> Token {
        self.tokens
            .get(self.position)
            .cloned()
            .unwrap_or(Token::EndOfString)
    }

    fn consume(&mut self) -> Token {
        let token = self.lookahead();
        if self.position < self.tokens.len() {
            self.position += 1;
        }
        token
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            match self.lookahead().into_value() {
                Token::Identifier(_) | Token::DoesNotExist => {
                    let requirement = self.parse_requirement().map_err(|e| {
                        SelectorError(format!("unable to parse requirement: {}", e.0))
                    })?;
                    requirements.push(requirement);
                    match self.consume() {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let next = self.lookahead().into_value();
                            if !matches!(next, Token::Identifier(_) | Token::DoesNotExist) {
                                return Err(err(format!(
                                    "found '{}', expected: identifier after ','",
                                    next.literal()
                                )));
                            }
                        }
                        other => {
                            return Err(err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                other.literal()
                            )))
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                other => {
                    return Err(err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        other.literal()
                    )))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let mut token = self.consume().into_value();
        let negated = token == Token::DoesNotExist;
        if negated {
            token = self.consume().into_value();
        }
        let Token::Identifier(key) = token else {
            return Err(err(format!(
                "found '{}', expected: identifier",
                token.literal()
            )));
        };
        validate_label_key(&key)?;
        let unary = matches!(self.lookahead(), Token::EndOfString | Token::Comma);
        if negated || unary {
            let operator = if negated {
                Operator::DoesNotExist
            } else {
                Operator::Exists
            };
            return Ok(Requirement {
                key,
                operator,
                values: BTreeSet::new(),
            });
        }
        let operator = match self.consume() {
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Equals | Token::DoubleEquals => Operator::Equals,
            Token::NotEquals => Operator::NotEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            other => {
                return Err(err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    other.literal()
                )))
            }
        };
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        for value in &values {
            validate_label_value(&key, value)?;
        }
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            let value = values.iter().next().map(String::as_str).unwrap_or("");
            if value.parse::<i64>().is_err() {
                return Err(err(format!(
                    "{key}: Invalid value: \"{value}\": for 'Gt', 'Lt' operators, the value must be an integer"
                )));
            }
        }
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    fn parse_values(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let open = self.consume().into_value();
        if open != Token::OpenPar {
            return Err(err(format!("found '{}' expected: '('", open.literal())));
        }
        match self.lookahead().into_value() {
            Token::Identifier(_) | Token::Comma => {
                let values = self.parse_identifier_list()?;
                let close = self.consume();
                if close != Token::ClosedPar {
                    return Err(err(format!("found '{}', expected: ')'", close.literal())));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume();
                Ok(BTreeSet::from([String::new()]))
            }
            other => Err(err(format!(
                "found '{}', expected: ',', ')' or identifier",
                other.literal()
            ))),
        }
    }

    fn parse_identifier_list(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let mut values = BTreeSet::new();
        loop {
            match self.consume().into_value() {
                Token::Identifier(value) => {
                    values.insert(value);
                    match self.lookahead().into_value() {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        other => {
                            return Err(err(format!(
                                "found '{}', expected: ',' or ')'",
                                other.literal()
                            )))
                        }
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    match self.lookahead().into_value() {
                        Token::ClosedPar => {
                            values.insert(String::new());
                            return Ok(values);
                        }
                        Token::Comma => {
                            self.consume();
                            values.insert(String::new());
                        }
                        _ => {}
                    }
                }
                other => {
                    return Err(err(format!(
                        "found '{}', expected: ',', or identifier",
                        other.literal()
                    )))
                }
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        if matches!(self.lookahead(), Token::EndOfString | Token::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        match self.consume().into_value() {
            Token::Identifier(value) => Ok(BTreeSet::from([value])),
            other => Err(err(format!(
                "found '{}', expected: identifier",
                other.literal()
            ))),
        }
    }
}

fn err(message: String) -> SelectorError {
    SelectorError(message)
}

impl LabelSelector {
    /// Parses `=`, `==`, `!=`, `in`, `notin`, `key` and `!key` requirements, comma-separated.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut parser = Parser {
            tokens: lex(s),
            position: 0,
        };
        let mut requirements = parser.parse()?;
        // why: the real parser sorts requirements by key, which fixes the order of error checks
        // only, but keeping it makes `Debug` output stable for equal selectors.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// Whether the selector has no requirements (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether the object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        self.requirements.iter().all(|requirement| {
            let value = labels
                .and_then(|labels| labels.get(&requirement.key))
                .and_then(Value::as_str);
            requirement.matches(value)
        })
    }
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match self.operator {
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => {
                !value.is_some_and(|v| self.values.contains(v))
            }
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), Some(bound)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values
                        .iter()
                        .next()
                        .and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}
