//! A faithful in-process test kube-apiserver ([`TestApiServer`]) and a fault-injecting network
//! link ([`chaos::ChaosLink`]), so the hub, the tunnel and the controllers are tested with real
//! clients (kube-rs, kubectl, the Python client) against real HTTP, without a cluster.
//!
//! ```
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::api::{Api, PostParams};
//! use yurt_testkit::TestApiServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TestApiServer::start().await?;
//! let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
//! let mut cm = ConfigMap::default();
//! cm.metadata.name = Some("settings".into());
//! let created = cms.create(&PostParams::default(), &cm).await?;
//! assert!(created.metadata.uid.is_some());
//! assert_eq!(server.traffic().count_verb("create"), 1);
//! # Ok(()) }
//! ```
//!
//! # What it serves
//!
//! - **Transport**: HTTP/1.1 and h2 on one loopback port; optionally TLS with a certificate from
//!   a generated CA ([`pki::TestCa`]), client-certificate authentication (CN = user, O = groups)
//!   and bearer tokens; with [`TestApiServerBuilder::require_auth`] anonymous requests get 401.
//!   [`TestApiServer::kubeconfig`] and [`TestApiServer::client`] give working credentials.
//! - **Resources**: every resource a v1.36 kube-apiserver lists in its core, apps, batch,
//!   events, coordination, discovery, certificates, policy, rbac, admissionregistration,
//!   apiextensions, authentication and authorization discovery documents, stored as generic JSON
//!   with kind-specific behaviour where clients depend on it (pods, namespaces, services, CSRs,
//!   events, leases, ...). Creating a CustomResourceDefinition serves its resource;
//!   [`TestApiServer::register`] adds any other.
//! - **Semantics**: etcd-style global resourceVersions, get/list/watch/create/update/patch/
//!   delete/deletecollection, label and field selectors, limit/continue over consistent
//!   snapshots, exact-revision reads, bounded watch history with 410 Expired, bookmarks,
//!   `sendInitialEvents`, selector transitions in watches, status/scale/approval/binding/
//!   eviction/token subresources, finalizers and graceful pod deletion, namespace and CRD
//!   cleanup, CSR signing, discovery (legacy and aggregated) and `/version`, OpenAPI v2/v3,
//!   protobuf bodies for the kinds an edge node writes and kubectl's generators send, YAML
//!   answers, health checks.
//! - **Admission webhooks**: MutatingWebhookConfigurations and ValidatingWebhookConfigurations
//!   are honoured on create, update, patch and delete (also of subresources): rules, namespace
//!   and object selectors, `matchPolicy`, `failurePolicy`, `timeoutSeconds`, `sideEffects` on
//!   dry run, JSONPatch mutations, `IfNeeded` reinvocation and warnings, with kube-apiserver's
//!   AdmissionReview v1 requests and its denial and error texts. Webhooks are called over TLS
//!   verified against `caBundle`; a `clientConfig.service` goes to the address set with
//!   [`TestApiServer::route_service`], else to `127.0.0.1:<targetPort>` of that Service.
//! - **CRD versions**: custom resources are stored at the CRD's storage version and served at
//!   every served version, converted by `apiVersion` rewrite (strategy `None`) or by the CRD's
//!   conversion webhook (ConversionReview v1) on reads, lists, watches and writes.
//! - **Custom resource schemas**: unknown fields are pruned, defaults applied and the
//!   version's structural `openAPIV3Schema` enforced (types, `required`, `enum`, `pattern`,
//!   bounds, lengths, item counts, `nullable`) with kube-apiserver's 422 field errors.
//! - **Faults**: [`go_down`](TestApiServer::go_down)/[`come_up`](TestApiServer::come_up),
//!   [`restart`](TestApiServer::restart), [`blackhole`](TestApiServer::blackhole),
//!   [`delay`](TestApiServer::delay), [`fail_next`](TestApiServer::fail_next),
//!   [`cut_watches`](TestApiServer::cut_watches), [`compact`](TestApiServer::compact).
//! - **Traffic**: [`TestApiServer::traffic`] records every request (method, path, verb, status,
//!   body bytes both ways); [`TestApiServer::open_watches`] counts open watch streams.
//!
//! The sandbox example (`cargo run -p yurt-testkit --example sandbox -- --port 6443`) runs one
//! until Ctrl-C and writes a kubeconfig for it.
//!
//! # Known differences from a real kube-apiserver
//!
//! Encoding and tooling:
//! - Protobuf request bodies are decoded, and single objects answered in protobuf, only for
//!   the kinds an edge node writes (ConfigMap, Secret, Namespace, ServiceAccount, Lease, core
//!   and events.k8s.io Events) and those kubectl's generators send (`kubectl run`'s Pod;
//!   `kubectl create` deployment, job, cronjob, service, role, rolebinding, clusterrole,
//!   clusterrolebinding, quota, priorityclass, poddisruptionbudget, ingress); see
//!   `yurt_core::protobuf`. Other kinds in protobuf get 415 naming the kind. For the generator
//!   kinds an optional field holding its Go zero value (`""`, `0`, `false`) is stored as absent
//!   unless it is a Go pointer (`replicas: 0` stays), and JSON fields those kinds lack are
//!   dropped when answering in protobuf. Lists, watches and other kinds are answered in JSON
//!   when the client also accepts JSON (client-go's default does), else 406; CBOR is never
//!   served. YAML answers are served for documents, not for watch streams.
//! - Table responses (`kubectl get`) are rendered by `yurt_core::table`: the apiserver's columns
//!   for pods, nodes, services, endpoints, configmaps, secrets, events and leases, Name and
//!   Age for every other resource (the apiserver also prints CRD printer columns and more
//!   built-in kinds).
//! - OpenAPI documents (`/openapi/v3` and its group-version documents, `/openapi/v2`) are
//!   served in JSON only (kubectl asks for v2 in protobuf and gets 406; it uses v3), with
//!   upstream schemas for built-in kinds and CRD schemas for custom resources; operations carry
//!   only the write parameters kubectl looks for. `fieldValidation` is advertised (so kubectl
//!   leaves validation to the server) but ignored: unknown fields are kept, not refused.
//! - Discovery advertises only the groups whose documents were recorded (see above);
//!   autoscaling, networking.k8s.io, storage.k8s.io, node.k8s.io, scheduling.k8s.io,
//!   resource.k8s.io, flowcontrol and apiregistration are absent.
//!
//! Objects:
//! - No schema validation, defaulting or unknown-field dropping for built-in kinds: objects keep
//!   what clients sent (keys come back sorted). Exceptions that clients rely on: name
//!   validation, Pod `status.phase`/`qosClass`, Namespace phase, finalizer and name label,
//!   Secret `type` (`Opaque`) and `stringData` merged into `data`,
//!   Service ClusterIP (sequential from 10.96.0.2, without conflict checks), node ports and
//!   defaults, CSR requester fields.
//! - Custom resources: pruned, defaulted and validated against the version's structural schema
//!   (see above), but without `anyOf`/`allOf`/`oneOf`/`not`, `format`, CEL rules
//!   (`x-kubernetes-validations`), list/map-type uniqueness, ratcheting of unchanged invalid
//!   fields, or defaulting on read; a CRD's resource is served as soon as it is created.
//!   Server-side Tables of a custom resource are rendered without calling its conversion
//!   webhook.
//! - No `managedFields`; server-side apply is a merge without field ownership or conflicts.
//! - `metadata.generation` is tracked for pods, workloads (apps, batch), PodDisruptionBudgets,
//!   CRDs and custom resources only.
//! - Admission is NamespaceLifecycle plus webhooks (see above): no other built-in admission
//!   plugin, no ValidatingAdmissionPolicy, and no `CONNECT` operations (there are no protocol
//!   upgrades); a webhook on `scale` sees the parent object, not a `Scale`.
//! - No authorization (every authenticated user may do everything; access reviews always
//!   answer "allowed"); no impersonation, audit, priority and fairness, or object size limit
//!   (request bodies are capped at 3 MiB).
//! - Service-account tokens are opaque strings shaped like JWTs, accepted only by this server,
//!   never expiring; bound object references are ignored.
//!
//! Controllers (a real cluster runs them in kube-controller-manager):
//! - Present: namespace deletion, CRD establishment and cleanup, CSR signing (for the
//!   `kubernetes.io/*` signers, without per-signer usage or subject checks).
//! - Absent: the garbage collector (ownerReferences are not followed; `propagationPolicy` is
//!   ignored, Foreground and Orphan act like Background), workload controllers, the scheduler,
//!   service-account and root-CA publishers (no `default` ServiceAccount, no
//!   `kube-root-ca.crt`), endpoint controllers. Eviction ignores PodDisruptionBudgets.
//! - There is no kubelet: a pod bound to a node is deleted gracefully and stays until deleted
//!   with `gracePeriodSeconds=0`; `exec`, `attach`, `portforward` and `proxy` answer 500
//!   (and there are no protocol upgrades at all). `pods/log` of a pod on an existing node
//!   answers the text set by [`TestApiServer::set_pod_log`], or three canned lines naming the
//!   pod, container and node; the container is checked as the apiserver checks it, `tailLines`
//!   and `timestamps` are honoured, `previous`, `sinceSeconds` and `limitBytes` are ignored
//!   (`follow=true` keeps the stream open after the text until the client goes away,
//!   [`TestApiServer::cut_watches`] or the minimum request timeout).
//!
//! Watches and storage:
//! - History is compacted as kube-apiserver compacts etcd, every
//!   [`TestApiServerBuilder::compaction_interval`] (default 5 minutes) and on
//!   [`TestApiServer::compact`]; on top of that each resource keeps at most
//!   [`TestApiServerBuilder::history_limit`] changes (default 10,000) instead of the watch
//!   cache's time-based window.
//! - Bookmarks come every second by default (kube-apiserver: about once a minute); a watcher
//!   whose buffer fills (1,000 events) is terminated at once rather than after a time budget.
//! - Data lives in memory; [`TestApiServer::restart`] keeps data and history.

#![forbid(unsafe_code)]

pub mod chaos;
pub mod kubeconfig;
pub mod pki;

mod admission;
mod body;
mod controllers;
mod conversion;
mod convert;
mod csr;
mod discovery;
mod faults;
mod handlers;
mod meta;
mod openapi;
mod prune;
mod registry;
mod schema;
mod server;
mod storage;
mod traffic;
mod watch;
mod webhook;

pub use registry::{ResourceDef, Subresource};
pub use server::{Error, Identity, TestApiServer, TestApiServerBuilder};
pub use traffic::{RequestRecord, TrafficLog};

/// The README's example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
