//! `ObjectMeta` and the small shared structs (`OwnerReference`, `ManagedFieldsEntry`,
//! `ObjectReference`, `LocalObjectReference`, `EventSource`) in both directions. Every protobuf
//! struct is destructured exhaustively, so a field added to k8s-pb fails to compile here until
//! it is converted.

use k8s_pb::api::core::v1::{EventSource, LocalObjectReference, ObjectReference};
use k8s_pb::apimachinery::pkg::apis::meta::v1::{
    FieldsV1, ManagedFieldsEntry, ObjectMeta, OwnerReference,
};

use super::ProtobufError;
use super::json::{In, Out};

pub(super) fn meta_to_json(parent: &Out, m: Option<ObjectMeta>) -> Result<Out, ProtobufError> {
    let ObjectMeta {
        name,
        generate_name,
        namespace,
        self_link,
        uid,
        resource_version,
        generation,
        creation_timestamp,
        deletion_timestamp,
        deletion_grace_period_seconds,
        labels,
        annotations,
        owner_references,
        finalizers,
        managed_fields,
    } = m.unwrap_or_default();
    let mut o = parent.child();
    o.string("name", name);
    o.string("generateName", generate_name);
    o.string("namespace", namespace);
    o.string("selfLink", self_link);
    o.string("uid", uid);
    o.string("resourceVersion", resource_version);
    o.int("generation", generation);
    o.time("creationTimestamp", creation_timestamp)?;
    o.opt_time("deletionTimestamp", deletion_timestamp)?;
    o.ptr_int("deletionGracePeriodSeconds", deletion_grace_period_seconds);
    o.string_map("labels", labels);
    o.string_map("annotations", annotations);
    let owners = owner_references
        .into_iter()
        .map(|r| owner_to_json(&o, r))
        .collect();
    o.list("ownerReferences", owners);
    o.strings("finalizers", finalizers);
    let managed = managed_fields
        .into_iter()
        .map(|e| managed_to_json(&o, e))
        .collect::<Result<_, _>>()?;
    o.list("managedFields", managed);
    Ok(o)
}

fn owner_to_json(parent: &Out, r: OwnerReference) -> Out {
    let OwnerReference {
        api_version,
        kind,
        name,
        uid,
        controller,
        block_owner_deletion,
    } = r;
    let mut o = parent.child();
    o.required_string("apiVersion", api_version);
    o.required_string("kind", kind);
    o.required_string("name", name);
    o.required_string("uid", uid);
    o.ptr_bool("controller", controller);
    o.ptr_bool("blockOwnerDeletion", block_owner_deletion);
    o
}

fn managed_to_json(parent: &Out, e: ManagedFieldsEntry) -> Result<Out, ProtobufError> {
    let ManagedFieldsEntry {
        manager,
        operation,
        api_version,
        time,
        fields_type,
        fields_v1,
        subresource,
    } = e;
    let mut o = parent.child();
    o.string("manager", manager);
    o.string("operation", operation);
    o.string("apiVersion", api_version);
    o.opt_time("time", time)?;
    o.string("fieldsType", fields_type);
    // `*FieldsV1` whose raw bytes are a JSON document written verbatim (`null` when unset).
    if let Some(FieldsV1 { raw: Some(raw) }) = fields_v1 {
        let doc = serde_json::from_slice(&raw).map_err(|e| {
            ProtobufError::field(
                parent.kind(),
                "managedFields.fieldsV1",
                format!("not a JSON document: {e}"),
            )
        })?;
        o.raw("fieldsV1", doc);
    }
    o.string("subresource", subresource);
    Ok(o)
}

pub(super) fn object_ref_to_json(parent: &Out, r: ObjectReference) -> Out {
    let ObjectReference {
        kind,
        namespace,
        name,
        uid,
        api_version,
        resource_version,
        field_path,
    } = r;
    let mut o = parent.child();
    o.string("kind", kind);
    o.string("namespace", namespace);
    o.string("name", name);
    o.string("uid", uid);
    o.string("apiVersion", api_version);
    o.string("resourceVersion", resource_version);
    o.string("fieldPath", field_path);
    o
}

pub(super) fn local_ref_to_json(parent: &Out, r: LocalObjectReference) -> Out {
    let LocalObjectReference { name } = r;
    let mut o = parent.child();
    o.string("name", name);
    o
}

pub(super) fn source_to_json(parent: &Out, s: Option<EventSource>) -> Out {
    let EventSource { component, host } = s.unwrap_or_default();
    let mut o = parent.child();
    o.string("component", component);
    o.string("host", host);
    o
}

pub(super) fn meta_from_json(i: Option<In>) -> Result<Option<ObjectMeta>, ProtobufError> {
    let Some(mut i) = i else {
        return Ok(Some(ObjectMeta::default()));
    };
    let m = ObjectMeta {
        name: i.string("name")?,
        generate_name: i.string("generateName")?,
        namespace: i.string("namespace")?,
        self_link: i.string("selfLink")?,
        uid: i.string("uid")?,
        resource_version: i.string("resourceVersion")?,
        generation: i.i64("generation")?,
        creation_timestamp: i.time("creationTimestamp")?,
        deletion_timestamp: i.time("deletionTimestamp")?,
        deletion_grace_period_seconds: i.i64("deletionGracePeriodSeconds")?,
        labels: i.string_map("labels")?,
        annotations: i.string_map("annotations")?,
        owner_references: i
            .objects("ownerReferences")?
            .into_iter()
            .map(owner_from_json)
            .collect::<Result<_, _>>()?,
        finalizers: i.strings("finalizers")?,
        managed_fields: i
            .objects("managedFields")?
            .into_iter()
            .map(managed_from_json)
            .collect::<Result<_, _>>()?,
    };
    i.finish()?;
    Ok(Some(m))
}

fn owner_from_json(mut i: In) -> Result<OwnerReference, ProtobufError> {
    let r = OwnerReference {
        api_version: i.string("apiVersion")?,
        kind: i.string("kind")?,
        name: i.string("name")?,
        uid: i.string("uid")?,
        controller: i.boolean("controller")?,
        block_owner_deletion: i.boolean("blockOwnerDeletion")?,
    };
    i.finish()?;
    Ok(r)
}

fn managed_from_json(mut i: In) -> Result<ManagedFieldsEntry, ProtobufError> {
    let e = ManagedFieldsEntry {
        manager: i.string("manager")?,
        operation: i.string("operation")?,
        api_version: i.string("apiVersion")?,
        time: i.time("time")?,
        fields_type: i.string("fieldsType")?,
        fields_v1: i.raw("fieldsV1").map(|doc| FieldsV1 {
            raw: Some(serde_json::to_vec(&doc).unwrap_or_default()),
        }),
        subresource: i.string("subresource")?,
    };
    i.finish()?;
    Ok(e)
}

pub(super) fn object_ref_from_json(mut i: In) -> Result<ObjectReference, ProtobufError> {
    let r = ObjectReference {
        kind: i.string("kind")?,
        namespace: i.string("namespace")?,
        name: i.string("name")?,
        uid: i.string("uid")?,
        api_version: i.string("apiVersion")?,
        resource_version: i.string("resourceVersion")?,
        field_path: i.string("fieldPath")?,
    };
    i.finish()?;
    Ok(r)
}

pub(super) fn local_ref_from_json(mut i: In) -> Result<LocalObjectReference, ProtobufError> {
    let r = LocalObjectReference {
        name: i.string("name")?,
    };
    i.finish()?;
    Ok(r)
}

pub(super) fn source_from_json(i: Option<In>) -> Result<Option<EventSource>, ProtobufError> {
    let Some(mut i) = i else { return Ok(None) };
    let s = EventSource {
        component: i.string("component")?,
        host: i.string("host")?,
    };
    i.finish()?;
    Ok(Some(s))
}
