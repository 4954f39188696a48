//! [`JournalEntry`]: one offline write, as recorded in the store's journal for replay.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an offline write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalVerb {
    /// `POST` of a new object (Events).
    Create,
    /// `PUT` of a whole object (or its status).
    Update,
    /// `PATCH`.
    Patch,
}

/// One offline write. Stored as JSON; never holds the caller's credentials (replay uses the
/// hub's identity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalEntry {
    /// The write.
    pub verb: JournalVerb,
    /// The component that wrote.
    pub component: String,
    /// Its User-Agent, for the logs.
    #[serde(default)]
    pub user_agent: String,
    /// Request path (no query).
    pub path: String,
    /// Request query (without `?`), e.g. `fieldManager=kubelet`.
    #[serde(default)]
    pub query: String,
    /// Request `Content-Type` (the patch type of a PATCH).
    pub content_type: String,
    /// The request body as received.
    pub body: Value,
    /// API group of the object.
    pub group: String,
    /// API version.
    pub version: String,
    /// Resource.
    pub resource: String,
    /// Namespace (empty if cluster-scoped).
    #[serde(default)]
    pub namespace: String,
    /// Object name (empty for a create with `generateName`).
    #[serde(default)]
    pub name: String,
    /// Subresource (`status` or empty).
    #[serde(default)]
    pub subresource: String,
    /// The object's uid, when known (a replayed status write is preconditioned on it).
    #[serde(default)]
    pub uid: String,
    /// The resourceVersion of the cached copy the write was applied to.
    #[serde(default)]
    pub base_resource_version: String,
    /// For writes to `/status`: the whole status after the write, so the replay can send the
    /// final status once instead of every intermediate patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
    /// When the write was accepted, Unix milliseconds.
    pub at_ms: u64,
}

impl JournalEntry {
    /// The identity of the object written (resource, namespace, name).
    pub fn object_id(&self) -> (String, String, String, String, String) {
        (
            self.group.clone(),
            self.version.clone(),
            self.resource.clone(),
            self.namespace.clone(),
            self.name.clone(),
        )
    }

    /// Whether the write changed only the object's status (and so replays as the final
    /// status).
    pub fn is_status_write(&self) -> bool {
        self.subresource == "status" && self.status.is_some()
    }

    /// Encodes the entry for the store.
    pub fn to_bytes(&self) -> bytes::Bytes {
        serde_json::to_vec(self).unwrap_or_default().into()
    }

    /// Decodes a stored entry.
    pub fn from_bytes(b: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let e = JournalEntry {
            verb: JournalVerb::Patch,
            component: "kubelet".into(),
            user_agent: "kubelet/v1.36.0".into(),
            path: "/api/v1/namespaces/d/pods/p/status".into(),
            query: String::new(),
            content_type: "application/strategic-merge-patch+json".into(),
            body: serde_json::json!({"status": {"podIP": "10.0.0.9"}}),
            group: String::new(),
            version: "v1".into(),
            resource: "pods".into(),
            namespace: "d".into(),
            name: "p".into(),
            subresource: "status".into(),
            uid: "u1".into(),
            base_resource_version: "7".into(),
            status: Some(serde_json::json!({"podIP": "10.0.0.9"})),
            at_ms: 1,
        };
        let back = JournalEntry::from_bytes(&e.to_bytes()).unwrap();
        assert_eq!(back, e);
        assert!(back.is_status_write());
    }
}
