//! Response media type negotiation from a request's `Accept`, as kube-apiserver negotiates it,
//! so the hub's offline answers pick (or refuse) the same encoding the apiserver would.

use crate::status::{Status, StatusReason};

/// The protobuf media type of Kubernetes objects.
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// An encoding a response can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `application/json` (also chosen for `*/*` and `application/*`).
    Json,
    /// `application/yaml`.
    Yaml,
    /// `application/vnd.kubernetes.protobuf`.
    Protobuf,
}

impl MediaType {
    /// The media type's name, as a `Content-Type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Yaml => "application/yaml",
            Self::Protobuf => PROTOBUF,
        }
    }
}

/// Chooses the response encoding for the `Accept` header values `accept`: the acceptable media
/// range with the highest `q` (ties: the earlier one); no `Accept` at all means JSON. `yaml`
/// and `protobuf` say whether this response can be written that way. A range carrying an `as=`
/// conversion counts only as JSON's wildcard forms, as the conversions are answered in JSON.
/// `None` means nothing offered is acceptable: answer [`not_acceptable`] (406).
///
/// ```
/// use yurt_core::request::{negotiate, MediaType};
///
/// assert_eq!(negotiate([], false, false), Some(MediaType::Json));
/// let pb = ["application/vnd.kubernetes.protobuf, */*"];
/// assert_eq!(negotiate(pb, false, true), Some(MediaType::Protobuf));
/// assert_eq!(negotiate(pb, false, false), Some(MediaType::Json));
/// assert_eq!(negotiate(["text/html"], true, true), None);
/// ```
pub fn negotiate<'a>(
    accept: impl IntoIterator<Item = &'a str>,
    yaml: bool,
    protobuf: bool,
) -> Option<MediaType> {
    let mut best: Option<(f32, MediaType)> = None;
    let mut any = false;
    for value in accept {
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if media.is_empty() {
                continue;
            }
            any = true;
            let mut q = 1.0f32;
            let mut conversion = false;
            for p in parts {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                match k.trim() {
                    "q" => q = v.trim().parse().unwrap_or(0.0),
                    "as" => conversion = true,
                    _ => {}
                }
            }
            let enc = match media.as_str() {
                "application/json" | "application/*" | "*/*" => MediaType::Json,
                _ if conversion => continue,
                "application/yaml" if yaml => MediaType::Yaml,
                PROTOBUF if protobuf => MediaType::Protobuf,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, enc));
            }
        }
    }
    if !any {
        return Some(MediaType::Json);
    }
    best.map(|(_, e)| e)
}

/// The 406 kube-apiserver answers when [`negotiate`] finds nothing acceptable, listing what
/// the response could have been written as.
pub fn not_acceptable(yaml: bool, protobuf: bool) -> Status {
    let mut types = vec![MediaType::Json.as_str()];
    if yaml {
        types.push(MediaType::Yaml.as_str());
    }
    if protobuf {
        types.push(PROTOBUF);
    }
    Status::failure(
        StatusReason::NotAcceptable,
        format!(
            "only the following media types are accepted: {}",
            types.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_and_wildcards() {
        let v = ["application/yaml;q=0.5, application/json;q=0.9"];
        assert_eq!(negotiate(v, true, false), Some(MediaType::Json));
        assert_eq!(negotiate(["application/yaml"], false, false), None);
        assert_eq!(negotiate(["application/json;q=0"], false, false), None);
        let table = ["application/json;as=Table;v=v1;g=meta.k8s.io"];
        assert_eq!(negotiate(table, true, true), Some(MediaType::Json));
        assert_eq!(
            not_acceptable(true, false).message,
            "only the following media types are accepted: application/json, application/yaml"
        );
    }
}
