//! The label selector grammar: a lexer and a recursive-descent parser with the behaviour of
//! Kubernetes' `labels.Parse`, including its corner cases:
//!
//! - `in` and `notin` are operators only right after a key; elsewhere they are plain words, so
//!   `in in (notin)` is a valid selector.
//! - `k in ()` is not an error: it is the set holding the empty value, as are the empty slots in
//!   `k in (a,,b)` and `k in (a,)`.
//! - `k=` and `k!=` compare with the empty value.
//! - A NUL byte ends the selector when it starts a token and separates tokens otherwise (the Go
//!   lexer reads NUL as its end-of-input marker).
//! - Values are a set: duplicates collapse and the order is sorted.
//!
//! Each error names the token it stopped at and that token's byte offset.

use std::collections::BTreeMap;

use super::error::{SelectorError, SelectorKind, quote};
use super::label::{LabelOperator, LabelRequirement, validate_key, validate_value};

/// Token classes of the label grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    End,
    OpenPar,
    ClosePar,
    Comma,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    In,
    NotIn,
    Word,
}

/// One token: its class, its text and the byte offset where it starts.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    tok: Tok,
    text: &'a str,
    pos: usize,
}

impl Token<'_> {
    /// The token as named in error messages.
    fn describe(&self) -> String {
        match self.tok {
            Tok::End => "end of string".to_owned(),
            _ => quote(self.text),
        }
    }
}

/// Blanks between tokens: space, tab, CR, LF.
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Bytes that start an operator or punctuation token.
fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits `s` into tokens, always ending with one [`Tok::End`]. Never fails: any run of bytes
/// that is neither blank nor special is a word (validation comes later).
fn lex(s: &str) -> Vec<Token<'_>> {
    let b = s.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    loop {
        while pos < b.len() && is_blank(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() || b[pos] == 0 {
            tokens.push(Token {
                tok: Tok::End,
                text: "",
                pos,
            });
            return tokens;
        }
        let start = pos;
        let tok = if is_special(b[pos]) {
            let two = matches!(b.get(pos..pos + 2), Some(b"==" | b"!="));
            pos += if two { 2 } else { 1 };
            match &b[start..pos] {
                b"(" => Tok::OpenPar,
                b")" => Tok::ClosePar,
                b"," => Tok::Comma,
                b"!" => Tok::Bang,
                b"=" => Tok::Equals,
                b"==" => Tok::DoubleEquals,
                b"!=" => Tok::NotEquals,
                b">" => Tok::GreaterThan,
                _ => Tok::LessThan,
            }
        } else {
            while pos < b.len() && b[pos] != 0 && !is_blank(b[pos]) && !is_special(b[pos]) {
                pos += 1;
            }
            match &s[start..pos] {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Word,
            }
        };
        tokens.push(Token {
            tok,
            text: &s[start..pos],
            pos: start,
        });
        // A NUL right after a token is swallowed as a separator.
        if b.get(pos) == Some(&0) {
            pos += 1;
        }
    }
}

/// Parser state over the token list.
struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token<'a>>,
    next: usize,
}

/// Values of one requirement, as a sorted set, each with the offset of its first occurrence.
type Values<'a> = BTreeMap<&'a str, usize>;

/// Parses `input` into requirements in input order (the caller sorts them).
pub(super) fn parse(input: &str) -> Result<Vec<LabelRequirement>, SelectorError> {
    let mut p = Parser {
        input,
        tokens: lex(input),
        next: 0,
    };
    let mut requirements = Vec::new();
    loop {
        let t = p.peek_value();
        match t.tok {
            Tok::Word | Tok::Bang => {
                requirements.push(p.requirement()?);
                let t = p.take_value();
                match t.tok {
                    Tok::End => return Ok(requirements),
                    Tok::Comma => {
                        let t = p.peek_value();
                        if !matches!(t.tok, Tok::Word | Tok::Bang) {
                            return Err(p.error(&t, "expected a key or '!' after ','"));
                        }
                    }
                    _ => return Err(p.error(&t, "expected ',' or end of string")),
                }
            }
            Tok::End => return Ok(requirements),
            _ => return Err(p.error(&t, "expected a key, '!' or end of string")),
        }
    }
}

impl<'a> Parser<'a> {
    /// The next token, not consumed, as the key/operator position sees it.
    fn peek(&self) -> Token<'a> {
        self.tokens[self.next]
    }

    /// The next token, not consumed, where a key or value is expected (`in`/`notin` are words).
    fn peek_value(&self) -> Token<'a> {
        as_word(self.peek())
    }

    /// Consumes the next token (never past the end marker).
    fn take(&mut self) -> Token<'a> {
        let t = self.peek();
        if self.next + 1 < self.tokens.len() {
            self.next += 1;
        }
        t
    }

    /// Consumes the next token where a key or value is expected.
    fn take_value(&mut self) -> Token<'a> {
        as_word(self.take())
    }

    /// "`expected`, found <token>" at the token's offset.
    fn error(&self, found: &Token<'_>, expected: &str) -> SelectorError {
        self.error_at(
            found.text,
            found.pos,
            format!("{expected}, found {}", found.describe()),
        )
    }

    fn error_at(&self, token: &str, pos: usize, reason: String) -> SelectorError {
        SelectorError::at(SelectorKind::Label, self.input, token, pos, reason)
    }

    /// `[!] KEY [ <operator> <values> ]`
    fn requirement(&mut self) -> Result<LabelRequirement, SelectorError> {
        let mut t = self.take_value();
        let negated = t.tok == Tok::Bang;
        if negated {
            t = self.take_value();
        }
        if t.tok != Tok::Word {
            let expected = if negated {
                "expected a key after '!'"
            } else {
                "expected a key"
            };
            return Err(self.error(&t, expected));
        }
        let key = t;
        if let Err(why) = validate_key(key.text) {
            return Err(self.error_at(
                key.text,
                key.pos,
                format!("invalid key {}: {why}", quote(key.text)),
            ));
        }
        let unary = if negated {
            Some(LabelOperator::DoesNotExist)
        } else if matches!(self.peek_value().tok, Tok::End | Tok::Comma) {
            Some(LabelOperator::Exists)
        } else {
            None
        };
        if let Some(operator) = unary {
            return Ok(LabelRequirement {
                key: key.text.to_owned(),
                operator,
                values: Vec::new(),
            });
        }

        let op = self.take();
        let operator = match op.tok {
            Tok::In => LabelOperator::In,
            Tok::NotIn => LabelOperator::NotIn,
            Tok::Equals => LabelOperator::Equals,
            Tok::DoubleEquals => LabelOperator::DoubleEquals,
            Tok::NotEquals => LabelOperator::NotEquals,
            Tok::GreaterThan => LabelOperator::GreaterThan,
            Tok::LessThan => LabelOperator::LessThan,
            _ => {
                return Err(self.error(
                    &op,
                    &format!(
                        "expected an operator (in, notin, =, ==, !=, > or <) after key {}",
                        quote(key.text)
                    ),
                ));
            }
        };
        let values = match operator {
            LabelOperator::In | LabelOperator::NotIn => self.set_values(&op)?,
            _ => self.exact_value(&op)?,
        };
        self.check_values(key.text, operator, &op, &values)?;
        Ok(LabelRequirement {
            key: key.text.to_owned(),
            operator,
            values: values.into_keys().map(str::to_owned).collect(),
        })
    }

    /// `( VALUE, ... )` after `in`/`notin`.
    fn set_values(&mut self, op: &Token<'_>) -> Result<Values<'a>, SelectorError> {
        let t = self.take_value();
        if t.tok != Tok::OpenPar {
            return Err(self.error(&t, &format!("expected '(' after {}", quote(op.text))));
        }
        let t = self.peek_value();
        match t.tok {
            Tok::Word | Tok::Comma => {
                let values = self.value_list()?;
                let t = self.take_value();
                if t.tok != Tok::ClosePar {
                    return Err(self.error(&t, "expected ')'"));
                }
                Ok(values)
            }
            Tok::ClosePar => {
                // `()` is the set holding the empty value.
                self.take();
                Ok(Values::from([("", t.pos)]))
            }
            _ => Err(self.error(&t, "expected a value, ',' or ')'")),
        }
    }

    /// Comma-separated, possibly empty values, up to (not including) `)`.
    fn value_list(&mut self) -> Result<Values<'a>, SelectorError> {
        let mut values = Values::new();
        loop {
            let t = self.take_value();
            match t.tok {
                Tok::Word => {
                    values.entry(t.text).or_insert(t.pos);
                    let next = self.peek_value();
                    match next.tok {
                        Tok::Comma => {}
                        Tok::ClosePar => return Ok(values),
                        _ => {
                            return Err(self.error(
                                &next,
                                &format!("expected ',' or ')' after {}", quote(t.text)),
                            ));
                        }
                    }
                }
                Tok::Comma => {
                    // An empty slot before, between or after commas is the empty value.
                    let next = self.peek_value();
                    if values.is_empty() || matches!(next.tok, Tok::Comma | Tok::ClosePar) {
                        values.entry("").or_insert(t.pos);
                    }
                    if next.tok == Tok::ClosePar {
                        return Ok(values);
                    }
                }
                _ => return Err(self.error(&t, "expected a value, ',' or ')'")),
            }
        }
    }

    /// The single value after `=`, `==`, `!=`, `>` or `<`; absent means the empty value.
    fn exact_value(&mut self, op: &Token<'_>) -> Result<Values<'a>, SelectorError> {
        let t = self.peek_value();
        if matches!(t.tok, Tok::End | Tok::Comma) {
            return Ok(Values::from([("", t.pos)]));
        }
        let t = self.take_value();
        if t.tok != Tok::Word {
            return Err(self.error(&t, &format!("expected a value after {}", quote(op.text))));
        }
        Ok(Values::from([(t.text, t.pos)]))
    }

    /// `NewRequirement`'s checks on values: integers for `>`/`<`, then label-value syntax.
    fn check_values(
        &self,
        key: &str,
        operator: LabelOperator,
        op: &Token<'_>,
        values: &Values<'_>,
    ) -> Result<(), SelectorError> {
        if matches!(
            operator,
            LabelOperator::GreaterThan | LabelOperator::LessThan
        ) {
            for (value, &pos) in values {
                if value.parse::<i64>().is_err() {
                    let found = if value.is_empty() {
                        "no value".to_owned()
                    } else {
                        quote(value)
                    };
                    return Err(self.error_at(
                        value,
                        pos,
                        format!(
                            "expected a 64-bit integer after {}, found {found}",
                            quote(op.text)
                        ),
                    ));
                }
            }
        }
        for (value, &pos) in values {
            if let Err(why) = validate_value(value) {
                return Err(self.error_at(
                    value,
                    pos,
                    format!(
                        "invalid value {} for key {}: {why}",
                        quote(value),
                        quote(key)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `in`/`notin` read as words where a key or value is expected.
fn as_word(t: Token<'_>) -> Token<'_> {
    match t.tok {
        Tok::In | Tok::NotIn => Token {
            tok: Tok::Word,
            ..t
        },
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<(Tok, &str, usize)> {
        lex(s).into_iter().map(|t| (t.tok, t.text, t.pos)).collect()
    }

    #[test]
    fn lexer_takes_longest_operator() {
        assert_eq!(
            kinds("a!==b"),
            [
                (Tok::Word, "a", 0),
                (Tok::NotEquals, "!=", 1),
                (Tok::Equals, "=", 3),
                (Tok::Word, "b", 4),
                (Tok::End, "", 5)
            ]
        );
        assert_eq!(
            kinds(" x =!(").iter().map(|k| k.0).collect::<Vec<_>>(),
            [Tok::Word, Tok::Equals, Tok::Bang, Tok::OpenPar, Tok::End]
        );
    }

    #[test]
    fn lexer_treats_nul_like_go() {
        // NUL after a token separates; NUL at a token start ends the input.
        assert_eq!(
            kinds("a\0b"),
            [(Tok::Word, "a", 0), (Tok::Word, "b", 2), (Tok::End, "", 3)]
        );
        assert_eq!(kinds("a \0b"), [(Tok::Word, "a", 0), (Tok::End, "", 2)]);
        assert_eq!(
            kinds("in\0notin"),
            [
                (Tok::In, "in", 0),
                (Tok::NotIn, "notin", 3),
                (Tok::End, "", 8)
            ]
        );
    }

    #[test]
    fn values_are_a_sorted_set() {
        let reqs = parse("k in (b,a,,b)").unwrap();
        assert_eq!(reqs[0].values, ["", "a", "b"]);
    }
}
