//! Shared helpers: a test apiserver with the OpenYurt CRDs, node and pool fixtures, a manager
//! running in the background, and bounded polling.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use yurt_core::crd::NodePool;
use yurt_pool::{Error, Manager, ManagerBuilder};
use yurt_testkit::TestApiServer;

/// Bound of every wait in these tests.
pub(crate) const LIMIT: Duration = Duration::from_secs(30);

/// Awaits `fut`, failing the test if it takes longer than [`LIMIT`].
pub(crate) async fn bounded<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("timed out waiting")
}

/// Polls `check` every 50 ms until it returns `Some`, failing after [`LIMIT`] with `what`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A test apiserver serving the OpenYurt CRDs.
pub(crate) async fn server_with_crds() -> TestApiServer {
    let s = TestApiServer::start().await.expect("server starts");
    let crds: Api<CustomResourceDefinition> = Api::all(s.client());
    for crd in yurt_core::crd::crds() {
        bounded(crds.create(&PostParams::default(), &crd))
            .await
            .expect("create CRD");
    }
    let pools: Api<NodePool> = Api::all(s.client());
    eventually("NodePools served", || {
        let pools = pools.clone();
        async move { pools.list(&Default::default()).await.ok().map(|_| ()) }
    })
    .await;
    s
}

/// Creates node `name` with `labels` and a `Ready` condition of `ready`.
pub(crate) async fn create_node(s: &TestApiServer, name: &str, labels: Value, ready: bool) {
    let nodes: Api<Node> = Api::all(s.client());
    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    bounded(nodes.create(&PostParams::default(), &node))
        .await
        .expect("create node");
    set_ready(s, name, ready).await;
}

/// Sets node `name`'s `Ready` condition.
pub(crate) async fn set_ready(s: &TestApiServer, name: &str, ready: bool) {
    let nodes: Api<Node> = Api::all(s.client());
    let status = json!({"status": {"conditions": [
        {"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    bounded(nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)))
        .await
        .expect("patch node status");
}

/// Merge-patches node `name`'s labels.
pub(crate) async fn label_node(s: &TestApiServer, name: &str, labels: Value) {
    let nodes: Api<Node> = Api::all(s.client());
    let patch = json!({"metadata": {"labels": labels}});
    bounded(nodes.patch(name, &PatchParams::default(), &Patch::Merge(&patch)))
        .await
        .expect("label node");
}

/// Creates NodePool `name` with `spec`.
pub(crate) async fn create_pool(s: &TestApiServer, name: &str, spec: Value) {
    let pools: Api<NodePool> = Api::all(s.client());
    let pool: NodePool = serde_json::from_value(json!({"apiVersion": "apps.openyurt.io/v1beta2",
        "kind": "NodePool", "metadata": {"name": name}, "spec": spec}))
    .unwrap();
    bounded(pools.create(&PostParams::default(), &pool))
        .await
        .expect("create pool");
}

/// Reads node `name`.
pub(crate) async fn node(s: &TestApiServer, name: &str) -> Node {
    let nodes: Api<Node> = Api::all(s.client());
    bounded(nodes.get(name)).await.expect("get node")
}

/// Reads pool `name`.
pub(crate) async fn pool(s: &TestApiServer, name: &str) -> NodePool {
    let pools: Api<NodePool> = Api::all(s.client());
    bounded(pools.get(name)).await.expect("get pool")
}

/// A manager running in a background task, stopped (and awaited) by [`Running::stop`].
pub(crate) struct Running {
    pub(crate) ctx: std::sync::Arc<yurt_pool::Context>,
    pub(crate) phase: tokio::sync::watch::Receiver<yurt_pool::Phase>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), Error>>,
}

impl Running {
    /// Starts `builder`'s manager.
    pub(crate) fn start(builder: ManagerBuilder) -> Running {
        let manager = builder.build().expect("manager builds");
        let ctx = manager.context();
        let phase = manager.phase();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(manager.run(async move {
            let _ = rx.await;
        }));
        Running {
            ctx,
            phase,
            stop: Some(tx),
            task,
        }
    }

    /// Starts a manager with every default controller.
    pub(crate) fn all(s: &TestApiServer) -> Running {
        Running::start(Manager::builder(s.client()))
    }

    /// Waits until the manager's phase is `want`.
    pub(crate) async fn wait_phase(&mut self, want: yurt_pool::Phase) {
        bounded(self.phase.wait_for(|p| *p == want))
            .await
            .expect("manager alive");
    }

    /// Asks the manager to shut down and returns its result.
    pub(crate) async fn stop(mut self) -> Result<(), Error> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        bounded(&mut self.task).await.expect("manager task")
    }

    /// Aborts the manager's task without a shutdown (as if the process were killed).
    pub(crate) fn kill(self) {
        self.task.abort();
    }
}
