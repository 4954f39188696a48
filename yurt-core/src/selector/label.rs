//! Label selectors: [`LabelSelector`], its [`LabelRequirement`]s and their [`LabelOperator`]s.
//!
//! The value types, matching, the canonical string form and the conversion from a structured
//! `metav1.LabelSelector` live here; the string grammar is in `label_parse`, and the key/value
//! validation both share is at the bottom of this file.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::error::SelectorError;
use super::label_parse;

/// How a [`LabelRequirement`] relates its key to its values (Kubernetes' `selection.Operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LabelOperator {
    /// `key=value`: the label is present with exactly this value.
    Equals,
    /// `key==value`: same as [`Equals`](Self::Equals); kept apart so the string form round-trips.
    DoubleEquals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`: the label is present with one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key`: the label is present, whatever its value.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>N`: the label is present, is an integer, and is greater than `N`.
    GreaterThan,
    /// `key<N`: the label is present, is an integer, and is less than `N`.
    LessThan,
}

impl LabelOperator {
    /// The operator as Kubernetes spells it in `selection.Operator` (`"="`, `"in"`, `"exists"`,
    /// `"!"`, `"gt"`, ...), which is also what its error messages list.
    pub fn as_str(self) -> &'static str {
        match self {
            LabelOperator::Equals => "=",
            LabelOperator::DoubleEquals => "==",
            LabelOperator::NotEquals => "!=",
            LabelOperator::In => "in",
            LabelOperator::NotIn => "notin",
            LabelOperator::Exists => "exists",
            LabelOperator::DoesNotExist => "!",
            LabelOperator::GreaterThan => "gt",
            LabelOperator::LessThan => "lt",
        }
    }
}

/// One condition of a [`LabelSelector`]: `key`, `operator` and the operand `values`.
///
/// Requirements produced by this module are valid as Kubernetes' `NewRequirement` defines it: the
/// key and every value pass label validation, `=`/`==`/`!=`/`>`/`<` carry exactly one value
/// (an integer for `>`/`<`), `in`/`notin` at least one, `exists`/`!` none. Values are sorted and
/// free of duplicates (Kubernetes' parser keeps them in a string set).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelRequirement {
    /// The label key, e.g. `app.kubernetes.io/name`.
    pub key: String,
    /// How the key relates to `values`.
    pub operator: LabelOperator,
    /// The operand values; empty for [`LabelOperator::Exists`] and [`LabelOperator::DoesNotExist`].
    pub values: Vec<String>,
}

impl LabelRequirement {
    /// Whether a label set, seen through `get` (key to value, `None` when absent), satisfies this
    /// requirement. `!=` and `notin` hold when the key is absent; `>` and `<` need the key present
    /// with a 64-bit integer value.
    fn matches_with<'v>(&self, get: &impl Fn(&str) -> Option<&'v str>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::In => {
                get(&self.key).is_some_and(has)
            }
            LabelOperator::NotEquals | LabelOperator::NotIn => !get(&self.key).is_some_and(has),
            LabelOperator::Exists => get(&self.key).is_some(),
            LabelOperator::DoesNotExist => get(&self.key).is_none(),
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                let Some(Ok(actual)) = get(&self.key).map(str::parse::<i64>) else {
                    return false;
                };
                let [bound] = self.values.as_slice() else {
                    return false;
                };
                let Ok(bound) = bound.parse::<i64>() else {
                    return false;
                };
                if self.operator == LabelOperator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

/// Kubernetes' `Requirement.String()`: `!key`, `key`, `key=v`, `key==v`, `key!=v`,
/// `key in (a,b)`, `key notin (a,b)`, `key>N`, `key<N`, with set values sorted.
impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            LabelOperator::Exists => return f.write_str(&self.key),
            LabelOperator::DoesNotExist => return write!(f, "!{}", self.key),
            LabelOperator::Equals => "=",
            LabelOperator::DoubleEquals => "==",
            LabelOperator::NotEquals => "!=",
            LabelOperator::In => " in (",
            LabelOperator::NotIn => " notin (",
            LabelOperator::GreaterThan => ">",
            LabelOperator::LessThan => "<",
        };
        write!(f, "{}{op}", self.key)?;
        let mut sorted;
        let mut values = self.values.as_slice();
        if !values.is_sorted() {
            sorted = values.to_vec();
            sorted.sort();
            values = &sorted;
        }
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(value)?;
        }
        if matches!(self.operator, LabelOperator::In | LabelOperator::NotIn) {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector: the AND of its [`LabelRequirement`]s.
///
/// Built by [`parse`](Self::parse) (Kubernetes' `labels.Parse` grammar), by
/// [`everything`](Self::everything), or from a `metav1.LabelSelector` with `TryFrom`.
/// Requirements are kept sorted by key (stably), as Kubernetes sorts them, so two selectors that
/// differ only in requirement order compare equal and print the same.
///
/// ```
/// use std::collections::BTreeMap;
/// use yurt_core::selector::LabelSelector;
///
/// let sel: LabelSelector = "tier in (b, a), app = web, !legacy".parse().unwrap();
/// assert_eq!(sel.to_string(), "app=web,!legacy,tier in (a,b)");
/// let labels = BTreeMap::from([("app".to_owned(), "web".to_owned()), ("tier".to_owned(), "a".to_owned())]);
/// assert!(sel.matches(&labels));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// Parses a selector in Kubernetes' `labels.Parse` grammar: comma-separated `key=value`,
    /// `key==value`, `key!=value`, `key in (v1,v2)`, `key notin (v1,v2)`, `key`, `!key`,
    /// `key>N`, `key<N`, with blanks allowed between tokens. `""` (or only blanks) selects
    /// everything. Keys and values are validated as Kubernetes validates label keys and values.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut requirements = label_parse::parse(s)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// The selector with no requirements, which selects every object.
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// Whether this selector has no requirements and so selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether the label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|key| labels.get(key).map(String::as_str))
    }

    /// Whether the labels of a Kubernetes object in JSON form (`metadata.labels`) satisfy every
    /// requirement. An object without labels has none; a label whose JSON value is not a string
    /// counts as absent. Reads the JSON in place, without building a map.
    pub fn matches_object(&self, obj: &serde_json::Value) -> bool {
        if self.requirements.is_empty() {
            return true;
        }
        let labels = obj
            .get("metadata")
            .and_then(|meta| meta.get("labels"))
            .and_then(serde_json::Value::as_object);
        self.matches_with(|key| labels?.get(key)?.as_str())
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }

    /// Kubernetes' `RequiresExactMatch`: if the first requirement on `label` pins it to a single
    /// value (`=`, `==`, or `in` with one value), that value. Lets a caller use an index instead
    /// of a scan.
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let req = self.requirements.iter().find(|r| r.key == label)?;
        match (req.operator, req.values.as_slice()) {
            (LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::In, [value]) => {
                Some(value)
            }
            _ => None,
        }
    }

    fn matches_with<'v>(&self, get: impl Fn(&str) -> Option<&'v str>) -> bool {
        self.requirements.iter().all(|r| r.matches_with(&get))
    }
}

/// The canonical form, Kubernetes' `Selector.String()`: requirements sorted by key, joined by
/// `,` with no blanks, set values sorted, e.g. `app=web,!legacy,tier in (a,b)`. Parsing it gives
/// back an equal selector. The empty selector prints as `""`.
impl fmt::Display for LabelSelector {
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

/// Same as [`LabelSelector::parse`].
impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelSelector::parse(s)
    }
}

/// Converts the structured selector of workload and pool specs (`matchLabels` and
/// `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`), as Kubernetes'
/// `LabelSelectorAsSelector` does.
///
/// As in Kubernetes, a selector with neither `matchLabels` nor `matchExpressions` selects
/// **everything**. (Kubernetes maps a *nil* selector to "nothing"; callers holding an
/// `Option<LabelSelector>` must decide that case themselves.) Keys, values and operators are
/// validated; values are sorted and de-duplicated, which does not change what matches.
#[cfg(feature = "crd")]
impl TryFrom<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> for LabelSelector {
    type Error = SelectorError;

    fn try_from(
        ls: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    ) -> Result<Self, Self::Error> {
        use super::error::{SelectorKind, quote};

        let err = |token: &str, reason: String| {
            Err(SelectorError::structured(
                SelectorKind::Label,
                token,
                reason,
            ))
        };
        let mut requirements = Vec::new();
        for (key, value) in ls.match_labels.iter().flatten() {
            if let Err(why) = validate_key(key) {
                return err(
                    key,
                    format!("matchLabels: invalid key {}: {why}", quote(key)),
                );
            }
            if let Err(why) = validate_value(value) {
                return err(
                    value,
                    format!(
                        "matchLabels[{}]: invalid value {}: {why}",
                        quote(key),
                        quote(value)
                    ),
                );
            }
            requirements.push(LabelRequirement {
                key: key.clone(),
                operator: LabelOperator::Equals,
                values: vec![value.clone()],
            });
        }
        for (i, expr) in ls.match_expressions.iter().flatten().enumerate() {
            let path = format!("matchExpressions[{i}]");
            let operator = match expr.operator.as_str() {
                "In" => LabelOperator::In,
                "NotIn" => LabelOperator::NotIn,
                "Exists" => LabelOperator::Exists,
                "DoesNotExist" => LabelOperator::DoesNotExist,
                other => {
                    return err(
                        other,
                        format!(
                            "{path}.operator: {} is not a valid label selector operator \
                             (In, NotIn, Exists, DoesNotExist)",
                            quote(other)
                        ),
                    );
                }
            };
            if let Err(why) = validate_key(&expr.key) {
                return err(
                    &expr.key,
                    format!("{path}.key: invalid key {}: {why}", quote(&expr.key)),
                );
            }
            let mut values = expr.values.clone().unwrap_or_default();
            let set_operator = matches!(operator, LabelOperator::In | LabelOperator::NotIn);
            if set_operator && values.is_empty() {
                return err(
                    &expr.operator,
                    format!(
                        "{path}.values: must be non-empty for operator {}",
                        quote(&expr.operator)
                    ),
                );
            }
            if !set_operator && !values.is_empty() {
                return err(
                    &values[0],
                    format!(
                        "{path}.values: must be empty for operator {}",
                        quote(&expr.operator)
                    ),
                );
            }
            for (j, value) in values.iter().enumerate() {
                if let Err(why) = validate_value(value) {
                    return err(
                        value,
                        format!("{path}.values[{j}]: invalid value {}: {why}", quote(value)),
                    );
                }
            }
            values.sort();
            values.dedup();
            requirements.push(LabelRequirement {
                key: expr.key.clone(),
                operator,
                values,
            });
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }
}

/// Longest label name (the part after an optional `prefix/`), and longest label value.
const NAME_MAX: usize = 63;
/// Longest key prefix (a DNS-1123 subdomain).
const PREFIX_MAX: usize = 253;

/// Kubernetes' `IsLabelKey` (a.k.a. `IsQualifiedName`): an optional DNS-1123 subdomain prefix
/// of at most 253 bytes and a `/`, then a name of 1 to 63 bytes matching
/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`. Returns why not.
pub(super) fn validate_key(key: &str) -> Result<(), &'static str> {
    let mut parts = key.split('/');
    let (prefix, name) = match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, _) => (None, name),
        (Some(prefix), Some(name), None) => (Some(prefix), name),
        _ => return Err("a key must be a name with an optional DNS subdomain prefix and one '/'"),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err("prefix part must be non-empty");
        }
        if prefix.len() > PREFIX_MAX {
            return Err("prefix part must be no more than 253 bytes");
        }
        if !is_dns1123_subdomain(prefix) {
            return Err(
                "prefix part must be a lowercase RFC 1123 subdomain: lower case \
                        alphanumeric characters, '-' or '.', starting and ending with an \
                        alphanumeric character",
            );
        }
    }
    if name.is_empty() {
        return Err("name part must be non-empty");
    }
    if name.len() > NAME_MAX {
        return Err("name part must be no more than 63 bytes");
    }
    if !is_label_name(name) {
        return Err(
            "name part must consist of alphanumeric characters, '-', '_' or '.', \
                    and must start and end with an alphanumeric character",
        );
    }
    Ok(())
}

/// Kubernetes' `IsValidLabelValue`: empty, or at most 63 bytes matching
/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`. Returns why not.
pub(super) fn validate_value(value: &str) -> Result<(), &'static str> {
    if value.len() > NAME_MAX {
        return Err("must be no more than 63 bytes");
    }
    if !value.is_empty() && !is_label_name(value) {
        return Err(
            "must be empty or consist of alphanumeric characters, '-', '_' or '.', \
                    and must start and end with an alphanumeric character",
        );
    }
    Ok(())
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`
fn is_dns1123_subdomain(s: &str) -> bool {
    let lower_alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    s.split('.').all(|label| {
        let b = label.as_bytes();
        match (b.first(), b.last()) {
            (Some(first), Some(last)) => {
                lower_alnum(first)
                    && lower_alnum(last)
                    && b.iter().all(|c| lower_alnum(c) || *c == b'-')
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_validation_matches_is_label_key() {
        for ok in [
            "a",
            "A-b_c.d",
            "app.kubernetes.io/name",
            "x/y",
            "0",
            &"a".repeat(63),
        ] {
            assert_eq!(validate_key(ok), Ok(()), "{ok}");
        }
        let long_prefix = format!("{}/a", "a".repeat(254));
        for bad in [
            "",
            "-a",
            "a-",
            "/a",
            "a/",
            "a/b/c",
            "A.io/x",
            "a..b/x",
            "a_b/x",
            &"a".repeat(64),
            &long_prefix,
            "é",
        ] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn value_validation_matches_is_valid_label_value() {
        for ok in ["", "a", "a.b-c_D", "123", &"v".repeat(63)] {
            assert_eq!(validate_value(ok), Ok(()), "{ok}");
        }
        for bad in ["-5", "+5", "a b", "a/b", "a-", &"v".repeat(64)] {
            assert!(validate_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gt_lt_need_integers_on_both_sides() {
        let req = LabelRequirement {
            key: "n".into(),
            operator: LabelOperator::GreaterThan,
            values: vec!["3".into()],
        };
        let get = |v: &'static str| move |_: &str| Some(v);
        assert!(req.matches_with(&get("4")));
        assert!(!req.matches_with(&get("3")));
        assert!(!req.matches_with(&get("x")));
        assert!(req.matches_with(&get("+10")));
        assert!(!req.matches_with(&|_: &str| None));
        let broken = LabelRequirement {
            values: vec![],
            ..req
        };
        assert!(!broken.matches_with(&get("4")));
    }
}
