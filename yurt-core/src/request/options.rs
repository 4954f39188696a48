//! [`ListOptions`]: the typed list/watch query parameters of a request, decoded the way
//! kube-apiserver decodes `metav1.ListOptions`, and encoded back the way client-go does.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::RequestError;

/// The list/watch options of a request, from its query string.
///
/// Decoding follows kube-apiserver's parameter codec:
/// - the query is split as Go's `url.ParseQuery` does: pairs separated by `&`, a pair holding a
///   `;` or a malformed percent-escape is skipped, `+` is a space; when a parameter repeats, the
///   first value wins (Go's `url.Values.Get`); unknown parameters are ignored;
/// - `watch` and `allowWatchBookmarks` are true unless absent, `0` or `false` (any case): like
///   Kubernetes (`Convert_Slice_string_To_bool`), any other value, even an empty one, is true,
///   so a boolean never fails to decode; `sendInitialEvents` follows the same rule but keeps
///   absence as `None`;
/// - `limit` and `timeoutSeconds` must be base-10 64-bit integers (Go's `strconv.ParseInt`);
///   anything else, including an empty value, is an error;
/// - `resourceVersionMatch` must be empty, `Exact` or `NotOlderThan`;
/// - an empty string parameter (`labelSelector=`) is the same as an absent one, as Go's zero
///   value is, and decodes to `None`.
///
/// Selector syntax is not checked here (see [`crate::selector`]); the cross-field rules
/// kube-apiserver applies later (`resourceVersionMatch` without `resourceVersion`,
/// `sendInitialEvents` on a list, ...) are left to the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ListOptions {
    /// `watch`: stream changes instead of returning a list.
    pub watch: bool,
    /// `labelSelector`, unparsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// `fieldSelector`, unparsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_selector: Option<String>,
    /// `resourceVersion`: where a list or watch starts (semantics depend on the match rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`: `Exact` or `NotOlderThan` (validated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version_match: Option<String>,
    /// `timeoutSeconds`: how long a watch (or list) may run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// `limit`: page size of a chunked list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `continue`: the token of the next page of a chunked list.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
    /// `allowWatchBookmarks`: the client accepts BOOKMARK events.
    pub allow_watch_bookmarks: bool,
    /// `sendInitialEvents`: a streaming list (watch-list) asks for synthetic ADDED events first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_initial_events: Option<bool>,
}

/// Parameter names, as sent on the wire.
const WATCH: &str = "watch";
const LABEL_SELECTOR: &str = "labelSelector";
const FIELD_SELECTOR: &str = "fieldSelector";
const RESOURCE_VERSION: &str = "resourceVersion";
const RESOURCE_VERSION_MATCH: &str = "resourceVersionMatch";
const TIMEOUT_SECONDS: &str = "timeoutSeconds";
const LIMIT: &str = "limit";
const CONTINUE: &str = "continue";
const ALLOW_WATCH_BOOKMARKS: &str = "allowWatchBookmarks";
const SEND_INITIAL_EVENTS: &str = "sendInitialEvents";

impl ListOptions {
    /// Decodes a query string (without the leading `?`), failing on the first parameter that
    /// kube-apiserver would refuse with `400 Bad Request`.
    ///
    /// ```
    /// use yurt_core::request::ListOptions;
    ///
    /// let query = "watch=1&fieldSelector=spec.nodeName%3Dnode1&timeoutSeconds=300";
    /// let opts = ListOptions::from_query(query).unwrap();
    /// assert!(opts.watch);
    /// assert_eq!(opts.field_selector.as_deref(), Some("spec.nodeName=node1"));
    /// assert_eq!(opts.timeout_seconds, Some(300));
    /// assert!(ListOptions::from_query("limit=ten").unwrap_err().to_string().contains("limit"));
    /// ```
    pub fn from_query(query: &str) -> Result<ListOptions, RequestError> {
        let (options, error) = ListOptions::from_query_lenient(query);
        match error {
            Some(error) => Err(error),
            None => Ok(options),
        }
    }

    /// Decodes a query string keeping whatever decodes: a parameter that fails is left at its
    /// default, and the first failure is returned beside the options. Used for requests whose
    /// handler never reads list options (a `PATCH`, an `exec`), where kube-apiserver ignores them.
    pub(crate) fn from_query_lenient(query: &str) -> (ListOptions, Option<RequestError>) {
        let mut raw = RawParams::default();
        for (key, value) in query_pairs(query) {
            raw.offer(&key, value);
        }
        raw.decode()
    }

    /// Encodes the options as client-go does (`url.Values.Encode`): parameters sorted by name,
    /// values escaped like Go's `url.QueryEscape`, unset and false options omitted. The result
    /// decodes back to an equal value with [`ListOptions::from_query`].
    ///
    /// ```
    /// use yurt_core::request::ListOptions;
    ///
    /// let opts = ListOptions {
    ///     watch: true,
    ///     label_selector: Some("!service.kubernetes.io/headless".into()),
    ///     ..Default::default()
    /// };
    /// assert_eq!(opts.to_query(), "labelSelector=%21service.kubernetes.io%2Fheadless&watch=true");
    /// assert_eq!(ListOptions::from_query(&opts.to_query()).unwrap(), opts);
    /// ```
    pub fn to_query(&self) -> String {
        let mut out = String::new();
        let mut put = |key: &str, value: &str| {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(key);
            out.push('=');
            query_escape_into(&mut out, value);
        };
        // Sorted by parameter name, as Go's url.Values.Encode sorts.
        if self.allow_watch_bookmarks {
            put(ALLOW_WATCH_BOOKMARKS, "true");
        }
        if let Some(token) = non_empty(&self.continue_token) {
            put(CONTINUE, token);
        }
        if let Some(selector) = non_empty(&self.field_selector) {
            put(FIELD_SELECTOR, selector);
        }
        if let Some(selector) = non_empty(&self.label_selector) {
            put(LABEL_SELECTOR, selector);
        }
        if let Some(limit) = self.limit {
            put(LIMIT, &limit.to_string());
        }
        if let Some(rv) = non_empty(&self.resource_version) {
            put(RESOURCE_VERSION, rv);
        }
        if let Some(rv_match) = non_empty(&self.resource_version_match) {
            put(RESOURCE_VERSION_MATCH, rv_match);
        }
        if let Some(send) = self.send_initial_events {
            put(SEND_INITIAL_EVENTS, if send { "true" } else { "false" });
        }
        if let Some(timeout) = self.timeout_seconds {
            put(TIMEOUT_SECONDS, &timeout.to_string());
        }
        if self.watch {
            put(WATCH, "true");
        }
        out
    }
}

/// Why the apiserver's storage refuses `resource_version`, as its field error
/// (`resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": invalid syntax`);
/// `None` for a valid one (empty, or an unsigned 64-bit decimal integer). kube-apiserver
/// answers the error on a list as 400 `invalid resource version: <error>`, on a watch as 422
/// `Invalid`, and on a get as a 500 without reason carrying the error's text.
///
/// ```
/// use yurt_core::request::resource_version_error;
///
/// assert!(resource_version_error("42").is_none());
/// assert_eq!(
///     resource_version_error("abc").unwrap().to_string(),
///     r#"resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": invalid syntax"#
/// );
/// ```
pub fn resource_version_error(resource_version: &str) -> Option<crate::validation::FieldError> {
    if resource_version.is_empty() {
        return None;
    }
    let digits = resource_version.bytes().all(|b| b.is_ascii_digit());
    let why = if !digits {
        "invalid syntax"
    } else if resource_version.parse::<u64>().is_err() {
        "value out of range"
    } else {
        return None;
    };
    let q = crate::validation::go_quote(resource_version);
    Some(crate::validation::FieldError::invalid(
        "resourceVersion",
        resource_version,
        format!("strconv.ParseUint: parsing {q}: {why}"),
    ))
}

/// The Status kube-apiserver answers a request of `verb` (`get`, `list` or `watch`) on
/// `resource` in `group` (object `name`, if any) whose `resourceVersion` parameter is refused
/// by [`resource_version_error`]; `None` when it is accepted or the verb does not read it.
pub fn resource_version_status(
    verb: &str,
    group: &str,
    resource: &str,
    name: &str,
    resource_version: &str,
) -> Option<crate::status::Status> {
    use crate::status::{Status, StatusReason};
    let error = resource_version_error(resource_version)?;
    match verb {
        "list" => Some(Status::bad_request(format!(
            "invalid resource version: {error}"
        ))),
        "watch" => Some(crate::validation::invalid_status(
            group,
            resource,
            name,
            &[error],
        )),
        "get" => {
            let mut st = Status::failure(StatusReason::InternalError, error.to_string());
            st.reason = None;
            Some(st)
        }
        _ => None,
    }
}

/// The value of a string option, unless unset or empty (both mean absent).
fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// The first value of each known parameter, before typing.
#[derive(Default)]
struct RawParams<'a> {
    watch: Option<Cow<'a, str>>,
    label_selector: Option<Cow<'a, str>>,
    field_selector: Option<Cow<'a, str>>,
    resource_version: Option<Cow<'a, str>>,
    resource_version_match: Option<Cow<'a, str>>,
    timeout_seconds: Option<Cow<'a, str>>,
    limit: Option<Cow<'a, str>>,
    continue_token: Option<Cow<'a, str>>,
    allow_watch_bookmarks: Option<Cow<'a, str>>,
    send_initial_events: Option<Cow<'a, str>>,
}

impl<'a> RawParams<'a> {
    /// Records `value` for `key` unless the key is unknown or already has a value.
    fn offer(&mut self, key: &str, value: Cow<'a, str>) {
        let slot = match key {
            WATCH => &mut self.watch,
            LABEL_SELECTOR => &mut self.label_selector,
            FIELD_SELECTOR => &mut self.field_selector,
            RESOURCE_VERSION => &mut self.resource_version,
            RESOURCE_VERSION_MATCH => &mut self.resource_version_match,
            TIMEOUT_SECONDS => &mut self.timeout_seconds,
            LIMIT => &mut self.limit,
            CONTINUE => &mut self.continue_token,
            ALLOW_WATCH_BOOKMARKS => &mut self.allow_watch_bookmarks,
            SEND_INITIAL_EVENTS => &mut self.send_initial_events,
            _ => return,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }

    fn decode(self) -> (ListOptions, Option<RequestError>) {
        let mut error = None;
        let timeout_seconds =
            keep_first(&mut error, int_param(TIMEOUT_SECONDS, self.timeout_seconds));
        let limit = keep_first(&mut error, int_param(LIMIT, self.limit));
        let resource_version_match =
            keep_first(&mut error, match_param(self.resource_version_match));
        let options = ListOptions {
            watch: self.watch.as_deref().is_some_and(kube_bool),
            label_selector: string_param(self.label_selector),
            field_selector: string_param(self.field_selector),
            resource_version: string_param(self.resource_version),
            resource_version_match,
            timeout_seconds,
            limit,
            continue_token: string_param(self.continue_token),
            allow_watch_bookmarks: self.allow_watch_bookmarks.as_deref().is_some_and(kube_bool),
            send_initial_events: self.send_initial_events.as_deref().map(kube_bool),
        };
        (options, error)
    }
}

/// The value of `result`, or `None` after recording its error in `first` (unless one is there).
fn keep_first<T>(
    first: &mut Option<RequestError>,
    result: Result<Option<T>, RequestError>,
) -> Option<T> {
    result.unwrap_or_else(|e| {
        first.get_or_insert(e);
        None
    })
}

/// A string parameter: empty means absent, as Go's zero value does.
fn string_param(value: Option<Cow<'_, str>>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(Cow::into_owned)
}

/// An integer parameter, parsed as Go's `strconv.ParseInt(v, 10, 64)` does.
fn int_param(name: &str, value: Option<Cow<'_, str>>) -> Result<Option<i64>, RequestError> {
    let Some(value) = value else {
        return Ok(None);
    };
    value
        .parse::<i64>()
        .map(Some)
        .map_err(|e| RequestError::query(name, &value, format!("not a 64-bit integer ({e})")))
}

/// `resourceVersionMatch`: empty (absent), `Exact` or `NotOlderThan`.
fn match_param(value: Option<Cow<'_, str>>) -> Result<Option<String>, RequestError> {
    match string_param(value) {
        Some(m) if m != "Exact" && m != "NotOlderThan" => Err(RequestError::query(
            RESOURCE_VERSION_MATCH,
            &m,
            r#"supported values: "Exact", "NotOlderThan", """#,
        )),
        other => Ok(other),
    }
}

/// A present boolean query value as Kubernetes reads it: false only for `0` and `false` (any
/// case), true for anything else, the empty string included.
fn kube_bool(value: &str) -> bool {
    !(value == "0" || value.eq_ignore_ascii_case("false"))
}

/// Splits a query string into decoded pairs with the rules of Go's `url.ParseQuery`, which
/// `http.Request.URL.Query()` uses: pairs containing `;` and pairs with a malformed
/// percent-escape are dropped; empty pairs are skipped; `+` decodes to a space.
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.contains(';') && valid_escapes(pair))
        .filter_map(|pair| form_urlencoded::parse(pair.as_bytes()).next())
}

/// Whether every `%` in `s` starts a two-hex-digit escape (Go rejects anything else).
pub(crate) fn valid_escapes(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Appends `value` escaped as Go's `url.QueryEscape` does: ASCII letters, digits and `-_.~`
/// stay, a space becomes `+`, every other byte becomes `%XX` (upper-case hex).
fn query_escape_into(out: &mut String, value: &str) {
    for &b in value.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_follow_kubernetes() {
        for (value, expected) in [
            ("true", true),
            ("1", true),
            ("", true),
            ("yes", true),
            ("0", false),
            ("false", false),
            ("FALSE", false),
            ("False", false),
        ] {
            let opts = ListOptions::from_query(&format!("watch={value}")).unwrap();
            assert_eq!(opts.watch, expected, "watch={value}");
        }
        assert!(!ListOptions::from_query("").unwrap().watch);
        assert!(ListOptions::from_query("watch").unwrap().watch);
    }

    #[test]
    fn first_value_wins_and_bad_pairs_are_dropped() {
        let opts = ListOptions::from_query("limit=5&limit=x&resourceVersion=1;2&resourceVersion=3")
            .unwrap();
        assert_eq!(opts.limit, Some(5));
        assert_eq!(opts.resource_version.as_deref(), Some("3"));
        let opts = ListOptions::from_query("labelSelector=a%zz&labelSelector=b+c").unwrap();
        assert_eq!(opts.label_selector.as_deref(), Some("b c"));
    }

    #[test]
    fn lenient_keeps_the_rest() {
        let (opts, err) = ListOptions::from_query_lenient("limit=x&resourceVersion=7");
        assert_eq!(opts.resource_version.as_deref(), Some("7"));
        assert_eq!(opts.limit, None);
        let Some(RequestError::InvalidQueryParameter { name, value, .. }) = err else {
            panic!("expected a query error, got {err:?}");
        };
        assert_eq!((name.as_str(), value.as_str()), ("limit", "x"));
    }

    #[test]
    fn escape_matches_go() {
        let mut s = String::new();
        query_escape_into(&mut s, "a b/c~d-e_f.g!,=+é");
        assert_eq!(s, "a+b%2Fc~d-e_f.g%21%2C%3D%2B%C3%A9");
    }
}
