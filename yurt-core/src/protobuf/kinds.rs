//! The per-kind conversions. Each `*_to_json` destructures its protobuf message exhaustively and
//! each `*_from_json` builds one with a full struct literal, so a field k8s-pb adds is a compile
//! error here rather than a field silently dropped.

use k8s_pb::api::coordination::v1::{Lease, LeaseSpec};
use k8s_pb::api::core::v1::{
    ConfigMap, Event as CoreEvent, EventSeries as CoreEventSeries, Namespace, NamespaceCondition,
    NamespaceSpec, NamespaceStatus, Secret, ServiceAccount,
};
use k8s_pb::api::events::v1::{Event as EventsEvent, EventSeries as EventsEventSeries};

use super::ProtobufError;
use super::json::{In, Out};
use super::meta::{
    local_ref_from_json, local_ref_to_json, meta_from_json, meta_to_json, object_ref_from_json,
    object_ref_to_json, source_from_json, source_to_json,
};

pub(super) fn config_map_to_json(o: &mut Out, m: ConfigMap) -> Result<(), ProtobufError> {
    let ConfigMap {
        metadata,
        immutable,
        data,
        binary_data,
    } = m;
    let meta = meta_to_json(o, metadata)?;
    o.object("metadata", meta);
    o.ptr_bool("immutable", immutable);
    o.string_map("data", data);
    o.bytes_map("binaryData", binary_data);
    Ok(())
}

pub(super) fn config_map_from_json(i: &mut In) -> Result<ConfigMap, ProtobufError> {
    Ok(ConfigMap {
        metadata: meta_from_json(i.object("metadata")?)?,
        immutable: i.boolean("immutable")?,
        data: i.string_map("data")?,
        binary_data: i.bytes_map("binaryData")?,
    })
}

pub(super) fn secret_to_json(o: &mut Out, m: Secret) -> Result<(), ProtobufError> {
    let Secret {
        metadata,
        immutable,
        data,
        string_data,
        r#type,
    } = m;
    let meta = meta_to_json(o, metadata)?;
    o.object("metadata", meta);
    o.ptr_bool("immutable", immutable);
    o.bytes_map("data", data);
    o.string_map("stringData", string_data);
    o.string("type", r#type);
    Ok(())
}

pub(super) fn secret_from_json(i: &mut In) -> Result<Secret, ProtobufError> {
    Ok(Secret {
        metadata: meta_from_json(i.object("metadata")?)?,
        immutable: i.boolean("immutable")?,
        data: i.bytes_map("data")?,
        string_data: i.string_map("stringData")?,
        r#type: i.string("type")?,
    })
}

pub(super) fn namespace_to_json(o: &mut Out, m: Namespace) -> Result<(), ProtobufError> {
    let Namespace {
        metadata,
        spec,
        status,
    } = m;
    let meta = meta_to_json(o, metadata)?;
    o.object("metadata", meta);
    let NamespaceSpec { finalizers } = spec.unwrap_or_default();
    let mut s = o.child();
    s.strings("finalizers", finalizers);
    o.object("spec", s);
    let NamespaceStatus { phase, conditions } = status.unwrap_or_default();
    let mut st = o.child();
    st.string("phase", phase);
    let mut conds = Vec::with_capacity(conditions.len());
    for c in conditions {
        let NamespaceCondition {
            r#type,
            status,
            last_transition_time,
            reason,
            message,
        } = c;
        let mut co = o.child();
        co.required_string("type", r#type);
        co.required_string("status", status);
        co.time("lastTransitionTime", last_transition_time)?;
        co.string("reason", reason);
        co.string("message", message);
        conds.push(co);
    }
    st.list("conditions", conds);
    o.object("status", st);
    Ok(())
}

pub(super) fn namespace_from_json(i: &mut In) -> Result<Namespace, ProtobufError> {
    let metadata = meta_from_json(i.object("metadata")?)?;
    let spec = match i.object("spec")? {
        None => None,
        Some(mut s) => {
            let spec = NamespaceSpec {
                finalizers: s.strings("finalizers")?,
            };
            s.finish()?;
            Some(spec)
        }
    };
    let status = match i.object("status")? {
        None => None,
        Some(mut s) => {
            let phase = s.string("phase")?;
            let mut conditions = Vec::new();
            for mut c in s.objects("conditions")? {
                conditions.push(NamespaceCondition {
                    r#type: c.string("type")?,
                    status: c.string("status")?,
                    last_transition_time: c.time("lastTransitionTime")?,
                    reason: c.string("reason")?,
                    message: c.string("message")?,
                });
                c.finish()?;
            }
            s.finish()?;
            Some(NamespaceStatus { phase, conditions })
        }
    };
    Ok(Namespace {
        metadata,
        spec,
        status,
    })
}

pub(super) fn service_account_to_json(o: &mut Out, m: ServiceAccount) -> Result<(), ProtobufError> {
    let ServiceAccount {
        metadata,
        secrets,
        image_pull_secrets,
        automount_service_account_token,
    } = m;
    let meta = meta_to_json(o, metadata)?;
    o.object("metadata", meta);
    let secrets = secrets
        .into_iter()
        .map(|r| object_ref_to_json(o, r))
        .collect();
    o.list("secrets", secrets);
    let pulls = image_pull_secrets
        .into_iter()
        .map(|r| local_ref_to_json(o, r))
        .collect();
    o.list("imagePullSecrets", pulls);
    o.ptr_bool(
        "automountServiceAccountToken",
        automount_service_account_token,
    );
    Ok(())
}

pub(super) fn service_account_from_json(i: &mut In) -> Result<ServiceAccount, ProtobufError> {
    Ok(ServiceAccount {
        metadata: meta_from_json(i.object("metadata")?)?,
        secrets: i
            .objects("secrets")?
            .into_iter()
            .map(object_ref_from_json)
            .collect::<Result<_, _>>()?,
        image_pull_secrets: i
            .objects("imagePullSecrets")?
            .into_iter()
            .map(local_ref_from_json)
            .collect::<Result<_, _>>()?,
        automount_service_account_token: i.boolean("automountServiceAccountToken")?,
    })
}

pub(super) fn lease_to_json(o: &mut Out, m: Lease) -> Result<(), ProtobufError> {
    let Lease { metadata, spec } = m;
    let meta = meta_to_json(o, metadata)?;
    o.object("metadata", meta);
    let LeaseSpec {
        holder_identity,
        lease_duration_seconds,
        acquire_time,
        renew_time,
        lease_transitions,
        strategy,
        preferred_holder,
    } = spec.unwrap_or_default();
    let mut s = o.child();
    s.ptr_string("holderIdentity", holder_identity);
    s.ptr_int("leaseDurationSeconds", lease_duration_seconds);
    s.opt_micro_time("acquireTime", acquire_time)?;
    s.opt_micro_time("renewTime", renew_time)?;
    s.ptr_int("leaseTransitions", lease_transitions);
    s.ptr_string("strategy", strategy);
    s.ptr_string("preferredHolder", preferred_holder);
    o.object("spec", s);
    Ok(())
}

pub(super) fn lease_from_json(i: &mut In) -> Result<Lease, ProtobufError> {
    let metadata = meta_from_json(i.object("metadata")?)?;
    let spec = match i.object("spec")? {
        None => None,
        Some(mut s) => {
            let spec = LeaseSpec {
                holder_identity: s.string("holderIdentity")?,
                lease_duration_seconds: s.i32("leaseDurationSeconds")?,
                acquire_time: s.micro_time("acquireTime")?,
                renew_time: s.micro_time("renewTime")?,
                lease_transitions: s.i32("leaseTransitions")?,
                strategy: s.string("strategy")?,
                preferred_holder: s.string("preferredHolder")?,
            };
            s.finish()?;
            Some(spec)
        }
    };
    Ok(Lease { metadata, spec })
}

pub(super) fn core_event_to_json(o: &mut Out, m: CoreEvent) -> Result<(), ProtobufError> {
    let CoreEvent {
        metadata,
        involved_object,
        reason,
        message,
        source,
        first_timestamp,
        last_timestamp,
        count,
        r#type,
        event_time,
        series,
        action,
        related,
        reporting_component,
        reporting_instance,
    } = m;
    let meta = meta_to_json(o, metadata)?;
    o.object("metadata", meta);
    let involved = object_ref_to_json(o, involved_object.unwrap_or_default());
    o.object("involvedObject", involved);
    o.string("reason", reason);
    o.string("message", message);
    let source = source_to_json(o, source);
    o.object("source", source);
    o.time("firstTimestamp", first_timestamp)?;
    o.time("lastTimestamp", last_timestamp)?;
    o.int("count", count);
    o.string("type", r#type);
    o.micro_time("eventTime", event_time)?;
    let series = match series {
        None => None,
        Some(CoreEventSeries {
            count,
            last_observed_time,
        }) => {
            let mut s = o.child();
            s.int("count", count);
            s.micro_time("lastObservedTime", last_observed_time)?;
            Some(s)
        }
    };
    o.ptr_object("series", series);
    o.string("action", action);
    let related = related.map(|r| object_ref_to_json(o, r));
    o.ptr_object("related", related);
    o.required_string("reportingComponent", reporting_component);
    o.required_string("reportingInstance", reporting_instance);
    Ok(())
}

pub(super) fn core_event_from_json(i: &mut In) -> Result<CoreEvent, ProtobufError> {
    Ok(CoreEvent {
        metadata: meta_from_json(i.object("metadata")?)?,
        involved_object: Some(object_ref_from_json_opt(i.object("involvedObject")?)?),
        reason: i.string("reason")?,
        message: i.string("message")?,
        source: source_from_json(i.object("source")?)?,
        first_timestamp: i.time("firstTimestamp")?,
        last_timestamp: i.time("lastTimestamp")?,
        count: i.i32("count")?,
        r#type: i.string("type")?,
        event_time: i.micro_time("eventTime")?,
        series: match i.object("series")? {
            None => None,
            Some(mut s) => {
                let series = CoreEventSeries {
                    count: s.i32("count")?,
                    last_observed_time: s.micro_time("lastObservedTime")?,
                };
                s.finish()?;
                Some(series)
            }
        },
        action: i.string("action")?,
        related: i.object("related")?.map(object_ref_from_json).transpose()?,
        reporting_component: i.string("reportingComponent")?,
        reporting_instance: i.string("reportingInstance")?,
    })
}

pub(super) fn events_event_to_json(o: &mut Out, m: EventsEvent) -> Result<(), ProtobufError> {
    let EventsEvent {
        metadata,
        event_time,
        series,
        reporting_controller,
        reporting_instance,
        action,
        reason,
        regarding,
        related,
        note,
        r#type,
        deprecated_source,
        deprecated_first_timestamp,
        deprecated_last_timestamp,
        deprecated_count,
    } = m;
    let meta = meta_to_json(o, metadata)?;
    o.object("metadata", meta);
    o.micro_time("eventTime", event_time)?;
    let series = match series {
        None => None,
        Some(EventsEventSeries {
            count,
            last_observed_time,
        }) => {
            let mut s = o.child();
            s.required_int("count", count);
            s.micro_time("lastObservedTime", last_observed_time)?;
            Some(s)
        }
    };
    o.ptr_object("series", series);
    o.string("reportingController", reporting_controller);
    o.string("reportingInstance", reporting_instance);
    o.string("action", action);
    o.string("reason", reason);
    let regarding = object_ref_to_json(o, regarding.unwrap_or_default());
    o.object("regarding", regarding);
    let related = related.map(|r| object_ref_to_json(o, r));
    o.ptr_object("related", related);
    o.string("note", note);
    o.string("type", r#type);
    let source = source_to_json(o, deprecated_source);
    o.object("deprecatedSource", source);
    o.time("deprecatedFirstTimestamp", deprecated_first_timestamp)?;
    o.time("deprecatedLastTimestamp", deprecated_last_timestamp)?;
    o.int("deprecatedCount", deprecated_count);
    Ok(())
}

pub(super) fn events_event_from_json(i: &mut In) -> Result<EventsEvent, ProtobufError> {
    Ok(EventsEvent {
        metadata: meta_from_json(i.object("metadata")?)?,
        event_time: i.micro_time("eventTime")?,
        series: match i.object("series")? {
            None => None,
            Some(mut s) => {
                let series = EventsEventSeries {
                    count: s.i32("count")?,
                    last_observed_time: s.micro_time("lastObservedTime")?,
                };
                s.finish()?;
                Some(series)
            }
        },
        reporting_controller: i.string("reportingController")?,
        reporting_instance: i.string("reportingInstance")?,
        action: i.string("action")?,
        reason: i.string("reason")?,
        regarding: Some(object_ref_from_json_opt(i.object("regarding")?)?),
        related: i.object("related")?.map(object_ref_from_json).transpose()?,
        note: i.string("note")?,
        r#type: i.string("type")?,
        deprecated_source: source_from_json(i.object("deprecatedSource")?)?,
        deprecated_first_timestamp: i.time("deprecatedFirstTimestamp")?,
        deprecated_last_timestamp: i.time("deprecatedLastTimestamp")?,
        deprecated_count: i.i32("deprecatedCount")?,
    })
}

/// A struct-valued reference field: an absent one is the empty reference, as Go sees it.
fn object_ref_from_json_opt(
    i: Option<In>,
) -> Result<k8s_pb::api::core::v1::ObjectReference, ProtobufError> {
    match i {
        None => Ok(Default::default()),
        Some(i) => object_ref_from_json(i),
    }
}
