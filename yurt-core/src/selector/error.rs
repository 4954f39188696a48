//! [`SelectorError`]: why a label or field selector was refused.
//!
//! kube-apiserver answers a malformed selector with `400 Bad Request`; the hub must do the same
//! offline, and a person reading the Status message must be able to find the mistake. So every
//! error names the offending token and, when the selector came from a string, the byte offset at
//! which that token starts.

use std::fmt;

/// Longest piece of caller input echoed back in an error message; longer inputs and tokens are
/// cut (on a character boundary) and marked with `...`, so a megabyte query string does not
/// become a megabyte `Status` body.
const ECHO_LIMIT: usize = 256;

/// Which selector grammar produced a [`SelectorError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectorKind {
    /// A label selector (`labelSelector=`, `metav1.LabelSelector`).
    Label,
    /// A field selector (`fieldSelector=`).
    Field,
}

impl fmt::Display for SelectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SelectorKind::Label => "label",
            SelectorKind::Field => "field",
        })
    }
}

/// A selector that cannot be parsed or converted.
///
/// The message has the shape
/// `invalid label selector "a in (b": expected ',' or ')' after "b", found end of string at byte 7`:
/// the input, what was expected, the offending token and its byte offset. Errors from a structured
/// `metav1.LabelSelector` carry a field path (`matchExpressions[0].operator: ...`) instead of an
/// offset. Callers answer any of them with a `BadRequest` Status, as kube-apiserver does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[error("invalid {kind} selector{}: {reason}{}", echo_input(.input), at_byte(.position))]
pub struct SelectorError {
    kind: SelectorKind,
    input: Option<String>,
    token: String,
    position: Option<usize>,
    reason: String,
}

impl SelectorError {
    /// An error in the selector string `input`; `token` starts at byte `position`.
    pub(crate) fn at(
        kind: SelectorKind,
        input: &str,
        token: &str,
        position: usize,
        reason: String,
    ) -> SelectorError {
        SelectorError {
            kind,
            input: Some(input.to_owned()),
            token: token.to_owned(),
            position: Some(position),
            reason,
        }
    }

    /// An error in a structured selector; `reason` starts with the field path.
    #[cfg(feature = "crd")]
    pub(crate) fn structured(kind: SelectorKind, token: &str, reason: String) -> SelectorError {
        SelectorError {
            kind,
            input: None,
            token: token.to_owned(),
            position: None,
            reason,
        }
    }

    /// Which grammar refused the input.
    pub fn kind(&self) -> SelectorKind {
        self.kind
    }

    /// The selector string as given, or `None` for a structured `metav1.LabelSelector`.
    pub fn input(&self) -> Option<&str> {
        self.input.as_deref()
    }

    /// The offending token (a key, a value, an operator, a whole field-selector term, or `""`
    /// for an unexpected end of string).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Byte offset of [`token`](Self::token) in [`input`](Self::input); `None` for structured
    /// selectors.
    pub fn position(&self) -> Option<usize> {
        self.position
    }
}

/// ` "<input>"` for string selectors, nothing for structured ones.
fn echo_input(input: &Option<String>) -> String {
    match input {
        Some(input) => format!(" {:?}", clip(input)),
        None => String::new(),
    }
}

/// ` at byte N` when the error has an offset.
fn at_byte(position: &Option<usize>) -> String {
    match position {
        Some(position) => format!(" at byte {position}"),
        None => String::new(),
    }
}

/// `s` cut to [`ECHO_LIMIT`] bytes on a character boundary, `...` appended when cut.
pub(crate) fn clip(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= ECHO_LIMIT {
        return s.into();
    }
    let mut end = ECHO_LIMIT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end]).into()
}

/// `token` as a quoted string for messages (clipped, Rust-escaped).
pub(crate) fn quote(token: &str) -> String {
    format!("{:?}", clip(token))
}
