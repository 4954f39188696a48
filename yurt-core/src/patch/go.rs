//! Small pieces of Go runtime behaviour the patch engines depend on: how Go classifies and compares
//! decoded JSON values (`interface{}` holding `map`, `[]interface{}`, `string`, `int64`, `float64`,
//! `bool` or `nil`), how `fmt` prints them in error messages, `strconv.Atoi`, and the exact
//! element order `sort.SliceStable` produces (which matters when the comparator is not a strict
//! weak order, as in strategic merge patch's list normalisation).

use serde_json::Value;

use super::PatchError;

/// The dynamic Go type a decoded JSON value has inside kube-apiserver (`reflect.TypeOf`).
///
/// Integers and non-integers are distinct (`int64` vs `float64`), because the apiserver decodes
/// patches with `UnmarshalCaseSensitivePreserveInts` and converts objects with `ToUnstructured`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GoType {
    Nil,
    Bool,
    Int,
    Float,
    String,
    Slice,
    Map,
}

impl GoType {
    pub(crate) fn of(v: &Value) -> Self {
        match v {
            Value::Null => Self::Nil,
            Value::Bool(_) => Self::Bool,
            Value::Number(n) if n.is_i64() => Self::Int,
            Value::Number(_) => Self::Float,
            Value::String(_) => Self::String,
            Value::Array(_) => Self::Slice,
            Value::Object(_) => Self::Map,
        }
    }

    /// `reflect.TypeOf(v).String()`, as `mergepatch.ErrBadArgType` prints it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Nil => "%!s(<nil>)",
            Self::Bool => "bool",
            Self::Int => "int64",
            Self::Float => "float64",
            Self::String => "string",
            Self::Slice => "[]interface {}",
            Self::Map => "map[string]interface {}",
        }
    }
}

/// Go's `==` on two `interface{}` values. Comparing two maps or two slices panics in Go
/// ("comparing uncomparable type"); kube-apiserver answers such a request with a 500, so this
/// returns [`PatchError::Rejected`] instead of panicking.
pub(crate) fn go_eq(a: &Value, b: &Value) -> Result<bool, PatchError> {
    match (a, b) {
        (Value::Object(_), Value::Object(_)) => Err(PatchError::rejected(
            "runtime error: comparing uncomparable type map[string]interface {}",
        )),
        (Value::Array(_), Value::Array(_)) => Err(PatchError::rejected(
            "runtime error: comparing uncomparable type []interface {}",
        )),
        // serde_json keeps integers and floats apart (1 != 1.0), like int64 vs float64 in Go.
        _ => Ok(a == b),
    }
}

/// Whether a value can be a Go map key (`map[interface{}]...`); maps and slices cannot (Go panics
/// with "hash of unhashable type").
pub(crate) fn hashable(v: &Value) -> Result<(), PatchError> {
    match v {
        Value::Object(_) => Err(PatchError::rejected(
            "runtime error: hash of unhashable type map[string]interface {}",
        )),
        Value::Array(_) => Err(PatchError::rejected(
            "runtime error: hash of unhashable type []interface {}",
        )),
        _ => Ok(()),
    }
}

/// The JSON kind name `encoding/json` uses in "cannot unmarshal X into Go value" errors.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `fmt.Sprintf("%v", v)` for a decoded JSON value: `map[a:1 b:[x y]]`, `<nil>`, `1.5`.
pub(crate) fn fmt_v(v: &Value) -> String {
    let mut out = String::new();
    write_v(&mut out, v);
    out
}

/// `fmt.Sprintf("%s", v)`: strings verbatim, anything else in Go's `%!s(type=value)` form.
pub(crate) fn fmt_s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "%!s(<nil>)".to_owned(),
        Value::Object(_) | Value::Array(_) => fmt_v(v),
        other => format!("%!s({}={})", GoType::of(other).name(), fmt_v(other)),
    }
}

fn write_v(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => out.push_str(&i.to_string()),
            (None, Some(f)) => out.push_str(&fmt_float(f)),
            (None, None) => out.push_str(&n.to_string()),
        },
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_v(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // fmt prints map keys sorted.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push_str("map[");
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_v(out, &map[k.as_str()]);
            }
            out.push(']');
        }
    }
}

/// `%v` of a float64 (`strconv` `'g'`, shortest): exponent form when the decimal exponent is
/// below -4 or at least 6 (`1e+06`), plain decimal otherwise.
fn fmt_float(f: f64) -> String {
    if !f.is_finite() {
        return f.to_string();
    }
    if f == 0.0 {
        return "0".to_owned();
    }
    let sci = format!("{f:e}"); // e.g. "1.234567e6", "-5e-7"
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return f.to_string();
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    } else {
        f.to_string()
    }
}

/// `strconv.Atoi`: optional sign, then decimal digits; no spaces; must fit in an `int`.
pub(crate) fn atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {s:?}: invalid syntax"));
    }
    s.strip_prefix('+')
        .unwrap_or(s)
        .parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {s:?}: value out of range"))
}

/// Go's `sort.SliceStable`, reproduced step for step (insertion sort on blocks of 20, then
/// SymMerge), so that the resulting order is identical to Go's even when `less` is not a strict
/// weak order. `less(a, b)` compares the elements currently at two positions.
pub(crate) fn stable_sort<T>(data: &mut [T], less: impl Fn(&T, &T) -> bool) {
    let n = data.len();
    let mut block = 20;
    let (mut a, mut b) = (0, block);
    while b <= n {
        insertion_sort(data, a, b, &less);
        a = b;
        b += block;
    }
    insertion_sort(data, a, n, &less);
    while block < n {
        a = 0;
        b = 2 * block;
        while b <= n {
            sym_merge(data, a, a + block, b, &less);
            a = b;
            b += 2 * block;
        }
        let m = a + block;
        if m < n {
            sym_merge(data, a, m, n, &less);
        }
        block *= 2;
    }
}

fn insertion_sort<T>(data: &mut [T], a: usize, b: usize, less: &impl Fn(&T, &T) -> bool) {
    for i in a + 1..b {
        let mut j = i;
        while j > a && less(&data[j], &data[j - 1]) {
            data.swap(j, j - 1);
            j -= 1;
        }
    }
}

fn sym_merge<T>(data: &mut [T], a: usize, m: usize, b: usize, less: &impl Fn(&T, &T) -> bool) {
    if m - a == 1 {
        // Binary search for the first position in [m, b) not less than data[a], then rotate
        // data[a] into place.
        let (mut i, mut j) = (m, b);
        while i < j {
            let h = (i + j) / 2;
            if less(&data[h], &data[a]) {
                i = h + 1;
            } else {
                j = h;
            }
        }
        for k in a..i - 1 {
            data.swap(k, k + 1);
        }
        return;
    }
    if b - m == 1 {
        let (mut i, mut j) = (a, m);
        while i < j {
            let h = (i + j) / 2;
            if !less(&data[m], &data[h]) {
                i = h + 1;
            } else {
                j = h;
            }
        }
        let mut k = m;
        while k > i {
            data.swap(k, k - 1);
            k -= 1;
        }
        return;
    }
    let mid = (a + b) / 2;
    let n = mid + m;
    let (mut start, mut r) = if m > mid { (n - b, mid) } else { (a, m) };
    let p = n - 1;
    while start < r {
        let c = (start + r) / 2;
        if !less(&data[p - c], &data[c]) {
            start = c + 1;
        } else {
            r = c;
        }
    }
    let end = n - start;
    if start < m && m < end {
        rotate(data, start, m, end);
    }
    if a < start && start < mid {
        sym_merge(data, a, start, mid, less);
    }
    if mid < end && end < b {
        sym_merge(data, mid, end, b, less);
    }
}

/// Go's block-swap rotation of `data[a..b]` around `m` (same swap sequence as Go's `rotate`).
fn rotate<T>(data: &mut [T], a: usize, m: usize, b: usize) {
    let mut i = m - a;
    let mut j = b - m;
    while i != j {
        if i > j {
            swap_range(data, m - i, m, j);
            i -= j;
        } else {
            swap_range(data, m - i, m + j - i, i);
            j -= i;
        }
    }
    swap_range(data, m - i, m, i);
}

fn swap_range<T>(data: &mut [T], a: usize, b: usize, n: usize) {
    for i in 0..n {
        data.swap(a + i, b + i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fmt_matches_go_verbs() {
        assert_eq!(
            fmt_v(&json!({"b": [1, "x"], "a": null})),
            "map[a:<nil> b:[1 x]]"
        );
        assert_eq!(fmt_v(&json!(1.5)), "1.5");
        assert_eq!(fmt_v(&json!(1_000_000.0)), "1e+06");
        assert_eq!(fmt_v(&json!(123_456.0)), "123456");
        assert_eq!(fmt_v(&json!(0.00001)), "1e-05");
        assert_eq!(fmt_s(&json!(5)), "%!s(int64=5)");
        assert_eq!(fmt_s(&json!("merge")), "merge");
    }

    #[test]
    fn atoi_like_go() {
        assert_eq!(atoi("12"), Ok(12));
        assert_eq!(atoi("+3"), Ok(3));
        assert_eq!(atoi("-1"), Ok(-1));
        assert_eq!(atoi("007"), Ok(7));
        assert!(atoi("").is_err());
        assert!(atoi("-").is_err());
        assert!(atoi(" 1").is_err());
        assert!(atoi("1e3").is_err());
        assert!(atoi("99999999999999999999").is_err());
    }

    #[test]
    fn stable_sort_is_stable_and_sorts() {
        let mut v: Vec<(u32, usize)> = (0..100).map(|i| ((i * 37 % 11) as u32, i)).collect();
        let mut expected = v.clone();
        expected.sort_by_key(|x| x.0); // std's sort is stable too
        stable_sort(&mut v, |a, b| a.0 < b.0);
        assert_eq!(v, expected);
    }

    #[test]
    fn stable_sort_follows_go_with_an_inconsistent_comparator() {
        // Go's comparator in normalizeSliceOrder returns true whenever an index is unknown; the
        // order below is what Go's insertion sort produces for this input.
        let mut v = vec![Some(1), None, Some(0), None];
        stable_sort(&mut v, |a, b| match (a, b) {
            (Some(x), Some(y)) => x < y,
            _ => true,
        });
        assert_eq!(v, vec![None, Some(0), None, Some(1)]);
    }
}
