//! Generic conversions between k8s-pb messages and k8s-openapi structs, for the kinds whose
//! messages are too large to convert by hand (everything holding a `PodSpec`, and the other kinds
//! `kubectl create <generator>` sends).
//!
//! Both crates are generated from the same Go types and name fields alike (snake_case; k8s-pb's
//! `r#type` is k8s-openapi's `type_`), so one trait, [`Convert`], with impls for the shape
//! differences (proto2 `Option<String>` against a required `String` or an omitted `Option`,
//! `Vec` against `Option<Vec>`, maps, required against optional messages) and for the special
//! types (`Quantity`, `IntOrString`, `Time`, `MicroTime`, `RawExtension`, `FieldsV1`), plus one
//! [`convert!`] invocation per message (in `typed_gen.rs`, generated from both crates' sources),
//! do the rest. Each invocation destructures both structs exhaustively, so a field either crate
//! adds is a compile error until it is listed.
//!
//! client-go writes every non-pointer Go field into protobuf, zero or not, while Go's JSON omits
//! `omitempty` zeros: a zero string, number or `false` in an optional field therefore decodes as
//! absent, except for the fields listed as `keep` (Go pointers such as `replicas`, where `0` or
//! `false` means something). JSON then comes from k8s-openapi's serde.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as OaQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    FieldsV1 as OaFieldsV1, MicroTime as OaMicroTime, Time as OaTime,
};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension as OaRawExtension;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString as OaIntOrString;
use k8s_openapi::jiff::Timestamp;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{FieldsV1, MicroTime, Time};
use k8s_pb::apimachinery::pkg::runtime::RawExtension;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;

use super::ProtobufError;

/// A k8s-openapi value converted from and to the k8s-pb value `P`.
pub(super) trait Convert<P>: Sized {
    /// From the decoded protobuf message.
    fn from_pb(p: P) -> Result<Self, ProtobufError>;
    /// To the protobuf message client-go would send.
    fn to_pb(self) -> Result<P, ProtobufError>;
}

/// A Go pointer scalar: kept as it is, zero included.
pub(super) fn keep<T>(v: T) -> Result<T, ProtobufError> {
    Ok(v)
}

fn bad(what: &str, message: impl Into<String>) -> ProtobufError {
    ProtobufError::field(what, "", message)
}

macro_rules! identity {
    ($($t:ty),*) => {$(
        impl Convert<$t> for $t {
            fn from_pb(p: $t) -> Result<Self, ProtobufError> { Ok(p) }
            fn to_pb(self) -> Result<$t, ProtobufError> { Ok(self) }
        }
        /// Required in JSON: absent in protobuf is the zero value.
        impl Convert<Option<$t>> for $t {
            fn from_pb(p: Option<$t>) -> Result<Self, ProtobufError> { Ok(p.unwrap_or_default()) }
            fn to_pb(self) -> Result<Option<$t>, ProtobufError> { Ok(Some(self)) }
        }
        /// `omitempty` in JSON: the zero value is absent.
        impl Convert<Option<$t>> for Option<$t> {
            fn from_pb(p: Option<$t>) -> Result<Self, ProtobufError> {
                Ok(p.filter(|v| *v != <$t>::default()))
            }
            fn to_pb(self) -> Result<Option<$t>, ProtobufError> { Ok(self) }
        }
    )*};
}
identity!(String, bool, i32, i64, f64);

impl<T: Convert<P>, P> Convert<Vec<P>> for Vec<T> {
    fn from_pb(p: Vec<P>) -> Result<Self, ProtobufError> {
        p.into_iter().map(T::from_pb).collect()
    }
    fn to_pb(self) -> Result<Vec<P>, ProtobufError> {
        self.into_iter().map(T::to_pb).collect()
    }
}

impl<T: Convert<P>, P> Convert<Vec<P>> for Option<Vec<T>> {
    fn from_pb(p: Vec<P>) -> Result<Self, ProtobufError> {
        if p.is_empty() {
            return Ok(None);
        }
        Vec::from_pb(p).map(Some)
    }
    fn to_pb(self) -> Result<Vec<P>, ProtobufError> {
        self.map_or(Ok(Vec::new()), Vec::to_pb)
    }
}

impl<T: Convert<P>, P> Convert<BTreeMap<String, P>> for BTreeMap<String, T> {
    fn from_pb(p: BTreeMap<String, P>) -> Result<Self, ProtobufError> {
        p.into_iter()
            .map(|(k, v)| Ok((k, T::from_pb(v)?)))
            .collect()
    }
    fn to_pb(self) -> Result<BTreeMap<String, P>, ProtobufError> {
        self.into_iter().map(|(k, v)| Ok((k, v.to_pb()?))).collect()
    }
}

impl<T: Convert<P>, P> Convert<BTreeMap<String, P>> for Option<BTreeMap<String, T>> {
    fn from_pb(p: BTreeMap<String, P>) -> Result<Self, ProtobufError> {
        if p.is_empty() {
            return Ok(None);
        }
        BTreeMap::from_pb(p).map(Some)
    }
    fn to_pb(self) -> Result<BTreeMap<String, P>, ProtobufError> {
        self.map_or(Ok(BTreeMap::new()), BTreeMap::to_pb)
    }
}

/// For a message type: required (absent is the default message) and optional forms.
macro_rules! message_forms {
    ($p:ty => $o:ty) => {
        impl $crate::protobuf::typed::Convert<Option<$p>> for $o {
            fn from_pb(p: Option<$p>) -> Result<Self, $crate::protobuf::ProtobufError> {
                <$o as $crate::protobuf::typed::Convert<$p>>::from_pb(p.unwrap_or_default())
            }
            fn to_pb(self) -> Result<Option<$p>, $crate::protobuf::ProtobufError> {
                <$o as $crate::protobuf::typed::Convert<$p>>::to_pb(self).map(Some)
            }
        }
        impl $crate::protobuf::typed::Convert<Option<$p>> for Option<$o> {
            fn from_pb(p: Option<$p>) -> Result<Self, $crate::protobuf::ProtobufError> {
                p.map(<$o as $crate::protobuf::typed::Convert<$p>>::from_pb)
                    .transpose()
            }
            fn to_pb(self) -> Result<Option<$p>, $crate::protobuf::ProtobufError> {
                self.map(<$o as $crate::protobuf::typed::Convert<$p>>::to_pb)
                    .transpose()
            }
        }
    };
}
pub(super) use message_forms;

/// One message: `fields` convert by shape, `keep` fields are Go pointer scalars taken as they
/// are, `pb_only` / `openapi_only` exist on one side only (dropped / defaulted), `embedded` are
/// Go embedded structs k8s-pb keeps as a nested message and k8s-openapi flattens.
macro_rules! convert {
    ($($p:ident)::+ => $($o:ident)::+ {
        fields: [$($pf:ident => $of:ident),* $(,)?],
        keep: [$($kp:ident => $ko:ident),* $(,)?],
        pb_only: [$($xp:ident),* $(,)?],
        openapi_only: [$($yo:ident),* $(,)?],
        embedded: [$($ef:ident: $($et:ident)::+ { $($epf:ident => $eof:ident),* $(,)? }),* $(,)?],
    }) => {
        impl $crate::protobuf::typed::Convert<$($p)::+> for $($o)::+ {
            fn from_pb(p: $($p)::+) -> Result<Self, $crate::protobuf::ProtobufError> {
                #[allow(unused_imports)]
                use $crate::protobuf::typed::{keep, Convert};
                let $($p)::+ { $($pf,)* $($kp,)* $($xp: _,)* $($ef,)* } = p;
                $(let $($et)::+ { $($epf,)* } = $ef.unwrap_or_default();)*
                Ok($($o)::+ {
                    $($of: Convert::from_pb($pf)?,)*
                    $($ko: keep($kp)?,)*
                    $($yo: Default::default(),)*
                    $($($eof: Convert::from_pb($epf)?,)*)*
                })
            }
            fn to_pb(self) -> Result<$($p)::+, $crate::protobuf::ProtobufError> {
                #[allow(unused_imports)]
                use $crate::protobuf::typed::{keep, Convert};
                let $($o)::+ { $($of,)* $($ko,)* $($yo: _,)* $($($eof,)*)* } = self;
                Ok($($p)::+ {
                    $($pf: Convert::to_pb($of)?,)*
                    $($kp: keep($ko)?,)*
                    $($xp: Default::default(),)*
                    $($ef: Some($($et)::+ { $($epf: Convert::to_pb($eof)?,)* }),)*
                })
            }
        }
        $crate::protobuf::typed::message_forms!($($p)::+ => $($o)::+);
    };
}
pub(super) use convert;

impl Convert<Quantity> for OaQuantity {
    fn from_pb(p: Quantity) -> Result<Self, ProtobufError> {
        Ok(OaQuantity(p.string.unwrap_or_default()))
    }
    fn to_pb(self) -> Result<Quantity, ProtobufError> {
        Ok(Quantity {
            string: Some(self.0),
        })
    }
}
message_forms!(Quantity => OaQuantity);

impl Convert<IntOrString> for OaIntOrString {
    fn from_pb(p: IntOrString) -> Result<Self, ProtobufError> {
        let IntOrString {
            r#type,
            int_val,
            str_val,
        } = p;
        Ok(match r#type.unwrap_or_default() {
            0 => OaIntOrString::Int(int_val.unwrap_or_default()),
            1 => OaIntOrString::String(str_val.unwrap_or_default()),
            t => return Err(bad("IntOrString", format!("unknown type {t}"))),
        })
    }
    fn to_pb(self) -> Result<IntOrString, ProtobufError> {
        Ok(match self {
            OaIntOrString::Int(i) => IntOrString {
                r#type: Some(0),
                int_val: Some(i),
                str_val: Some(String::new()),
            },
            OaIntOrString::String(s) => IntOrString {
                r#type: Some(1),
                int_val: Some(0),
                str_val: Some(s),
            },
        })
    }
}
message_forms!(IntOrString => OaIntOrString);

/// Go writes the zero `metav1.Time` as an empty message and its JSON as `null`: an empty message
/// is an absent time.
macro_rules! zero_is_absent {
    ($p:ident => $o:ident) => {
        impl Convert<Option<$p>> for Option<$o> {
            fn from_pb(p: Option<$p>) -> Result<Self, ProtobufError> {
                match p {
                    Some(t)
                        if t.seconds.unwrap_or_default() != 0
                            || t.nanos.unwrap_or_default() != 0 =>
                    {
                        $o::from_pb(t).map(Some)
                    }
                    _ => Ok(None),
                }
            }
            fn to_pb(self) -> Result<Option<$p>, ProtobufError> {
                self.map($o::to_pb).transpose()
            }
        }
        impl Convert<Option<$p>> for $o {
            fn from_pb(p: Option<$p>) -> Result<Self, ProtobufError> {
                $o::from_pb(p.unwrap_or_default())
            }
            fn to_pb(self) -> Result<Option<$p>, ProtobufError> {
                $o::to_pb(self).map(Some)
            }
        }
    };
}

fn timestamp(
    what: &str,
    seconds: Option<i64>,
    nanos: Option<i32>,
) -> Result<Timestamp, ProtobufError> {
    Timestamp::new(seconds.unwrap_or_default(), nanos.unwrap_or_default())
        .map_err(|e| bad(what, e.to_string()))
}

impl Convert<Time> for OaTime {
    fn from_pb(p: Time) -> Result<Self, ProtobufError> {
        let Time { seconds, nanos } = p;
        // Go's JSON for metav1.Time has whole seconds.
        Ok(OaTime(timestamp("Time", seconds, nanos.map(|_| 0))?))
    }
    fn to_pb(self) -> Result<Time, ProtobufError> {
        Ok(Time {
            seconds: Some(self.0.as_second()),
            nanos: Some(0),
        })
    }
}
zero_is_absent!(Time => OaTime);

impl Convert<MicroTime> for OaMicroTime {
    fn from_pb(p: MicroTime) -> Result<Self, ProtobufError> {
        let MicroTime { seconds, nanos } = p;
        let micros = nanos.map(|n| n - n.rem_euclid(1000));
        Ok(OaMicroTime(timestamp("MicroTime", seconds, micros)?))
    }
    fn to_pb(self) -> Result<MicroTime, ProtobufError> {
        Ok(MicroTime {
            seconds: Some(self.0.as_second()),
            nanos: Some(self.0.subsec_nanosecond()),
        })
    }
}
zero_is_absent!(MicroTime => OaMicroTime);

fn json_bytes(what: &str, raw: Option<Vec<u8>>) -> Result<serde_json::Value, ProtobufError> {
    let raw = raw.unwrap_or_default();
    if raw.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(&raw).map_err(|e| bad(what, e.to_string()))
}

fn to_json_bytes(v: &serde_json::Value) -> Result<Option<Vec<u8>>, ProtobufError> {
    if v.is_null() {
        return Ok(Some(Vec::new()));
    }
    serde_json::to_vec(v)
        .map(Some)
        .map_err(|e| bad("RawExtension", e.to_string()))
}

impl Convert<RawExtension> for OaRawExtension {
    fn from_pb(p: RawExtension) -> Result<Self, ProtobufError> {
        let RawExtension { raw } = p;
        Ok(OaRawExtension(json_bytes("RawExtension", raw)?))
    }
    fn to_pb(self) -> Result<RawExtension, ProtobufError> {
        Ok(RawExtension {
            raw: to_json_bytes(&self.0)?,
        })
    }
}
message_forms!(RawExtension => OaRawExtension);

impl Convert<FieldsV1> for OaFieldsV1 {
    fn from_pb(p: FieldsV1) -> Result<Self, ProtobufError> {
        let FieldsV1 { raw } = p;
        Ok(OaFieldsV1(json_bytes("FieldsV1", raw)?))
    }
    fn to_pb(self) -> Result<FieldsV1, ProtobufError> {
        Ok(FieldsV1 {
            raw: to_json_bytes(&self.0)?,
        })
    }
}
message_forms!(FieldsV1 => OaFieldsV1);

/// Decodes the message bytes of a kind converted here into the JSON k8s-openapi writes
/// (`apiVersion` and `kind` included).
pub(super) fn decode<P, O>(k: &super::Kind, raw: &[u8]) -> Result<serde_json::Value, ProtobufError>
where
    P: prost::Message + Default,
    O: Convert<P> + serde::Serialize,
{
    let message = P::decode(raw).map_err(|e| super::malformed(k.kind, &e))?;
    let object = O::from_pb(message).map_err(|e| in_kind(k, e))?;
    let mut json = serde_json::to_value(object)
        .map_err(|e| ProtobufError::field(k.kind, "", e.to_string()))?;
    null_creation_timestamps(&mut json);
    Ok(json)
}

/// Go writes `metav1.ObjectMeta.creationTimestamp` even when zero (`null`), in a kind's own
/// metadata and in templates alike; k8s-openapi omits it. Restores Go's form so these kinds
/// read like the hand-converted ones and like what kubectl sends as JSON.
fn null_creation_timestamps(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if let (true, Some(meta)) = (key == "metadata", child.as_object_mut()) {
                    meta.entry("creationTimestamp")
                        .or_insert(serde_json::Value::Null);
                }
                null_creation_timestamps(child);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(null_creation_timestamps),
        _ => {}
    }
}

/// Encodes a JSON object of a kind converted here as the message bytes client-go sends.
pub(super) fn encode<P, O>(
    k: &super::Kind,
    object: &serde_json::Value,
) -> Result<Vec<u8>, ProtobufError>
where
    P: prost::Message,
    O: Convert<P> + serde::de::DeserializeOwned,
{
    let typed: O = serde_json::from_value(object.clone())
        .map_err(|e| ProtobufError::field(k.kind, "", e.to_string()))?;
    Ok(typed.to_pb().map_err(|e| in_kind(k, e))?.encode_to_vec())
}

/// Names the kind in a field error raised below it.
fn in_kind(k: &super::Kind, e: ProtobufError) -> ProtobufError {
    match e {
        ProtobufError::Field { kind, message, .. } => ProtobufError::field(k.kind, &kind, message),
        other => other,
    }
}
