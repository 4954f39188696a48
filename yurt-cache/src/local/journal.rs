//! [`JournalEntry`]: one offline write, as recorded in the store's journal for replay.
//!
//! An entry goes to the store as a [`JournalAppend`] ([`JournalEntry::append`]) carrying the
//! journal's caps and, for a write to `/status`, a coalescing key naming the object, so a
//! later status write of the same object replaces the pending one as it arrives (the replay
//! sends only the final status anyway). A write the caps refuse is answered
//! [`journal_full`]: `507 Insufficient Storage` with a Status saying which cap and how to
//! recover; nothing of the write is kept, and every write accepted before stays journaled.

use http::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use yurt_core::{Status, StatusReason};

use crate::body::Body;
use crate::store::{JournalAppend, JournalCap, JournalFull, JournalLimits, StoreError};

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

    /// The key replaying `self` keeps order on: writes of the same object replay in order,
    /// writes of different objects need not. A create without a name (generated) is its own
    /// object.
    pub fn order_key(&self, seq: u64) -> String {
        if self.name.is_empty() {
            format!("#{seq}")
        } else {
            self.coalesce_id()
        }
    }

    fn coalesce_id(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}",
            self.group, self.version, self.resource, self.namespace, self.name
        )
    }

    /// The coalescing key of a status write (`None` for other writes): a later status write
    /// of the same object replaces this one in the journal.
    pub fn coalesce_key(&self) -> Option<String> {
        self.is_status_write().then(|| self.coalesce_id())
    }

    /// The store append of this entry under `limits`.
    pub fn append(&self, limits: JournalLimits) -> JournalAppend {
        JournalAppend {
            entry: self.to_bytes(),
            coalesce: self.coalesce_key(),
            limits,
        }
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

/// The answer to an offline write the journal refused: `507` with reason
/// `InsufficientStorage` (the journal cannot take more until the cloud is reachable again),
/// naming the cap. Other store failures are 500s, as for any offline request.
pub(super) fn append_failure(e: StoreError) -> Response<Body> {
    match e {
        StoreError::JournalFull(full) => journal_full(&full).to_response(),
        other => super::read::store_failure(other),
    }
}

/// The `507 Insufficient Storage` Status answering an offline write a journal cap refused
/// (logged at warn level).
pub fn journal_full(full: &JournalFull) -> Status {
    let (what, flag) = match full.cap {
        JournalCap::Bytes => ("bytes", "--max-offline-journal-bytes"),
        JournalCap::Entries => ("entries", "the offline journal's entry cap"),
    };
    tracing::warn!(
        cap = what,
        max = full.max,
        current = full.current,
        "offline write refused: the journal is full"
    );
    Status::failure(
        StatusReason::Other("InsufficientStorage".to_owned()),
        format!(
            "insufficient storage: the offline journal of yurthub is full ({} of {} {what} pending, limit set by {flag}); the write was not applied and will be accepted again once the cloud is reachable and the journal replayed",
            full.current, full.max
        ),
    )
    .with_code(507)
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
