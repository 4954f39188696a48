//! Field selectors: [`FieldSelector`], its [`FieldRequirement`]s and their [`FieldOperator`]s,
//! with the grammar of Kubernetes' `fields.ParseSelector` and matching against object JSON.
//!
//! Grammar, as Kubernetes has it: the selector is split on commas not preceded by a backslash;
//! each non-empty term is split at the first `!=`, `==` or `=`; the left side is the field,
//! taken verbatim (no trimming, no escapes), and the right side is the value, in which `\\`,
//! `\,` and `\=` are escapes and any other backslash, or a bare `=` or `,`, is an error. Terms
//! are processed in sorted order, and a term whose field and value are both empty (`=`) is
//! dropped, so `","` and `"="` select everything.
//!
//! The apiserver matches a field selector against a per-resource table of "selectable fields";
//! it knows no such table for arbitrary JSON, so this module reads the dotted path in the object
//! instead, which gives the same answer for the fields Kubernetes offers (see
//! [`FieldSelector::matches`]).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use super::error::{SelectorError, SelectorKind, quote};

/// How a [`FieldRequirement`] compares its field with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldOperator {
    /// `field=value`.
    Equals,
    /// `field==value`. Accepted on input but, as in Kubernetes (whose parser turns it into an
    /// equality term), [`FieldSelector::parse`] records it as [`Equals`](Self::Equals).
    DoubleEquals,
    /// `field!=value`.
    NotEquals,
}

impl FieldOperator {
    /// The operator's spelling in a selector string.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldOperator::Equals => "=",
            FieldOperator::DoubleEquals => "==",
            FieldOperator::NotEquals => "!=",
        }
    }
}

/// One condition of a [`FieldSelector`]: `field` (a dotted path such as `spec.nodeName`),
/// `operator` and the unescaped `value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    /// The field, e.g. `metadata.name`, exactly as written in the selector.
    pub field: String,
    /// Equality or inequality.
    pub operator: FieldOperator,
    /// The value to compare with, escapes already removed.
    pub value: String,
}

/// `field=value` / `field!=value` with the value escaped as Kubernetes' `EscapeValue` does.
impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.field, self.operator.as_str())?;
        for c in self.value.chars() {
            if matches!(c, '\\' | ',' | '=') {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// A parsed field selector: the AND of its [`FieldRequirement`]s.
///
/// ```
/// use serde_json::json;
/// use yurt_core::selector::FieldSelector;
///
/// let sel = FieldSelector::parse("status.phase!=Succeeded,spec.nodeName=node1").unwrap();
/// assert_eq!(sel.to_string(), "spec.nodeName=node1,status.phase!=Succeeded");
/// assert_eq!(sel.requires_exact_match("spec.nodeName"), Some("node1"));
/// let pod = json!({"spec": {"nodeName": "node1"}, "status": {"phase": "Running"}});
/// assert!(sel.matches(&pod));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses a selector in Kubernetes' `fields.ParseSelector` grammar (see the
    /// [`crate::selector`] documentation). `""` selects everything.
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut terms = split_terms(s);
        // Kubernetes sorts the raw terms before looking at them, so the first error reported
        // is the first in that order.
        terms.sort_by(|a, b| a.0.cmp(b.0));
        let mut requirements = Vec::with_capacity(terms.len());
        for (term, start) in terms {
            if term.is_empty() {
                continue;
            }
            let Some((field, operator, raw)) = split_term(term) else {
                return Err(SelectorError::at(
                    SelectorKind::Field,
                    s,
                    term,
                    start,
                    format!(
                        "term {} has no operator, expected '=', '==' or '!='",
                        quote(term)
                    ),
                ));
            };
            let value_start = start + field.len() + operator.as_str().len();
            let value = unescape(raw).map_err(|(offset, token, why)| {
                SelectorError::at(SelectorKind::Field, s, token, value_start + offset, why)
            })?;
            if field.is_empty() && value.is_empty() {
                continue;
            }
            let operator = match operator {
                FieldOperator::NotEquals => FieldOperator::NotEquals,
                FieldOperator::Equals | FieldOperator::DoubleEquals => FieldOperator::Equals,
            };
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                operator,
                value: value.into_owned(),
            });
        }
        requirements.sort_by_cached_key(ToString::to_string);
        Ok(FieldSelector { requirements })
    }

    /// The selector with no requirements, which selects every object.
    pub fn everything() -> FieldSelector {
        FieldSelector::default()
    }

    /// Whether this selector has no requirements and so selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether a Kubernetes object in JSON form satisfies every requirement.
    ///
    /// Each field is a dotted path into the object (`metadata.name`, `spec.nodeName`,
    /// `status.phase`, any path). Strings compare as they are; booleans and numbers by their JSON
    /// text (`true`, `3`); an object or array equals no value (so `=` fails and `!=` holds). A
    /// missing or `null` field reads as `""`, as the apiserver reads an unset string field: so
    /// `spec.nodeName=` selects unscheduled pods. For the few selectable fields the apiserver
    /// computes rather than reads, the same computation is applied: unset `spec.unschedulable`
    /// (nodes) and `spec.hostNetwork` (pods) read `false`, unset `status.replicas`
    /// (ReplicaSets, ReplicationControllers) reads `0`, Jobs' `status.successful` reads
    /// `status.succeeded` (default `0`), and Events' `source` reads `source.component`, falling
    /// back to `reportingComponent`.
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|req| {
            let equal = match resolve(obj, &req.field) {
                Some(actual) => actual == req.value,
                None => false,
            };
            match req.operator {
                FieldOperator::Equals | FieldOperator::DoubleEquals => equal,
                FieldOperator::NotEquals => !equal,
            }
        })
    }

    /// Kubernetes' `RequiresExactMatch`: the value of the first `field=value` requirement on
    /// `field`, if any (`!=` requirements are skipped). Lets the hub answer
    /// `fieldSelector=metadata.name=x` with a single get.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| {
                r.field == field
                    && matches!(
                        r.operator,
                        FieldOperator::Equals | FieldOperator::DoubleEquals
                    )
            })
            .map(|r| r.value.as_str())
    }

    /// The requirements in canonical order.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }
}

/// The canonical form, Kubernetes' `Selector.String()`: terms joined by `,` in sorted order,
/// values escaped, `==` written `=`, e.g. `metadata.name=x,metadata.namespace!=kube-system`.
/// Parsing it gives back an equal selector.
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, req) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{req}")?;
        }
        Ok(())
    }
}

/// Same as [`FieldSelector::parse`].
impl FromStr for FieldSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

/// Splits on commas not escaped by a backslash; each term with its byte offset. A backslash
/// escapes whatever character follows it here (validity is checked when unescaping).
fn split_terms(s: &str) -> Vec<(&str, usize)> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push((&s[start..i], start));
            start = i + 1;
        }
    }
    terms.push((&s[start..], start));
    terms
}

/// Splits a term at the first position where `!=`, `==` or `=` starts (tried in that order).
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    let b = term.as_bytes();
    (0..b.len()).find_map(|i| {
        let operator = match (b[i], b.get(i + 1)) {
            (b'!', Some(b'=')) => FieldOperator::NotEquals,
            (b'=', Some(b'=')) => FieldOperator::DoubleEquals,
            (b'=', _) => FieldOperator::Equals,
            _ => return None,
        };
        Some((&term[..i], operator, &term[i + operator.as_str().len()..]))
    })
}

/// Kubernetes' `UnescapeValue`. On error: offset in `raw`, offending token, reason.
fn unescape(raw: &str) -> Result<Cow<'_, str>, (usize, &str, String)> {
    if !raw.contains(['\\', ',', '=']) {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e @ ('\\' | ',' | '='))) => out.push(e),
                Some((j, e)) => {
                    let seq = &raw[i..j + e.len_utf8()];
                    return Err((
                        i,
                        seq,
                        format!(
                            "invalid escape sequence {} in value {} (only \\\\, \\, and \\= are escapes)",
                            quote(seq),
                            quote(raw)
                        ),
                    ));
                }
                None => {
                    return Err((
                        i,
                        "\\",
                        format!(
                            "invalid escape sequence \"\\\\\" at the end of value {}",
                            quote(raw)
                        ),
                    ));
                }
            },
            ',' | '=' => {
                return Err((
                    i,
                    &raw[i..i + 1],
                    format!(
                        "unescaped \"{c}\" in value {} (escape it with a backslash)",
                        quote(raw)
                    ),
                ));
            }
            _ => out.push(c),
        }
    }
    Ok(Cow::Owned(out))
}

/// The text of `field` in `obj` for comparison, `None` for an object or array.
fn resolve<'a>(obj: &'a Value, field: &str) -> Option<Cow<'a, str>> {
    match lookup(obj, field) {
        Some(Value::Null) | None => computed(obj, field),
        Some(Value::Object(_)) if field == "source" => event_source(obj),
        Some(value) => scalar(value),
    }
}

/// The value at a dotted path, `None` if any step is missing or not an object.
fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(obj, |node, segment| node.as_object()?.get(segment))
}

/// A scalar's comparison text; `None` for objects and arrays.
fn scalar(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(true) => Some(Cow::Borrowed("true")),
        Value::Bool(false) => Some(Cow::Borrowed("false")),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Null => Some(Cow::Borrowed("")),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// What the apiserver reports for an unset field: the Go zero value of the field it formats.
fn computed<'a>(obj: &'a Value, field: &str) -> Option<Cow<'a, str>> {
    match field {
        "spec.unschedulable" | "spec.hostNetwork" => Some(Cow::Borrowed("false")),
        "status.replicas" => Some(Cow::Borrowed("0")),
        "status.successful" => match lookup(obj, "status.succeeded") {
            Some(Value::Null) | None => Some(Cow::Borrowed("0")),
            Some(value) => scalar(value),
        },
        "source" => event_source(obj),
        _ => Some(Cow::Borrowed("")),
    }
}

/// Events' selectable `source`: `source.component`, or `reportingComponent` when that is empty.
fn event_source(obj: &Value) -> Option<Cow<'_, str>> {
    let text = |path| lookup(obj, path).and_then(Value::as_str).unwrap_or("");
    let component = text("source.component");
    Some(Cow::Borrowed(if component.is_empty() {
        text("reportingComponent")
    } else {
        component
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_term_takes_first_operator() {
        let ops = |t| split_term(t).map(|(f, o, v)| (f, o.as_str(), v));
        assert_eq!(ops("a=b"), Some(("a", "=", "b")));
        assert_eq!(ops("a==b"), Some(("a", "==", "b")));
        assert_eq!(ops("a!=b"), Some(("a", "!=", "b")));
        assert_eq!(ops("a!b=c"), Some(("a!b", "=", "c")));
        assert_eq!(ops("a!!=c"), Some(("a!", "!=", "c")));
        assert_eq!(ops("a=!=c"), Some(("a", "=", "!=c")));
        assert_eq!(ops("=x"), Some(("", "=", "x")));
        assert_eq!(ops("a!b"), None);
        assert_eq!(ops("abc"), None);
    }

    #[test]
    fn split_terms_keeps_escaped_commas() {
        assert_eq!(split_terms(r"a=b\,c,d=e"), [(r"a=b\,c", 0), ("d=e", 7)]);
        assert_eq!(split_terms(r"a=\\,b=c"), [(r"a=\\", 0), ("b=c", 5)]);
        assert_eq!(split_terms(","), [("", 0), ("", 1)]);
        assert!(split_terms("").is_empty());
    }

    #[test]
    fn unescape_matches_kubernetes() {
        assert_eq!(unescape(r"a\,b\=c\\d").unwrap(), r"a,b=c\d");
        assert_eq!(unescape("plain").unwrap(), "plain");
        assert_eq!(unescape(r"a\xb").unwrap_err().1, r"\x");
        assert_eq!(unescape(r"a\").unwrap_err().1, r"\");
        assert_eq!(unescape("a=b").unwrap_err().0, 1);
        assert_eq!(unescape("\\é").unwrap_err().1, "\\é");
    }
}
