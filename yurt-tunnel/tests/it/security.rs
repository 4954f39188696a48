//! Hardening against an adversary on a node: agents may claim only their own node's names and
//! addresses (checked against the Node object when the server can read it), the TLS front doors
//! serve only the apiserver's identities, and every refusal is counted by reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use yurt_testkit::TestApiServer;
use yurt_tunnel::metrics::refusal;
use yurt_tunnel::{
    AgentConfig, FrontDoorPolicy, Listener, NodeAddresses, NodeDirectory, ServerConfig,
    TunnelServer,
};

use crate::support::*;

/// An echo server on `ip` (any 127/8 address is loopback on Linux).
async fn echo_on(ip: &str) -> (SocketAddr, Bg) {
    let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bg = Bg::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            while conns.try_join_next().is_some() {}
            conns.spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::time::timeout(WAIT, tokio::io::copy(&mut r, &mut w)).await;
            });
        }
    });
    (addr, bg)
}

fn config_for(
    node: &str,
    hostname: Option<&str>,
    ips: &[&str],
    server: SocketAddr,
    ports: &[u16],
) -> AgentConfig {
    let mut c = agent_config(vec![server.to_string()], ports);
    c.node = node.into();
    c.hostname = hostname.map(str::to_owned);
    c.addresses = ips.iter().map(|ip| ip.parse().unwrap()).collect();
    c
}

async fn echo_ok(cloud: &Cloud, authority: &str) -> Result<(), (StatusCode, String)> {
    let mut s = uds_connect(&cloud.uds, authority).await?;
    s.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    tokio::time::timeout(WAIT, s.read_exact(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&b, b"ping");
    Ok(())
}

async fn wait_rejected(server: &TunnelServer, reason: &'static str) {
    tokio::time::timeout(WAIT, async {
        while server.metrics().registrations_rejected(reason) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no registration was refused for {reason}"));
}

/// An agent with a valid certificate for edge-1 whose hello claims edge-2's hostname and
/// addresses gets none of edge-2's traffic, and edge-2 keeps working after it leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impostor_claiming_another_nodes_names_is_refused_and_leaves_no_damage() {
    let _gate = shared().await;
    let pki = Pki::new();
    let (edge2_echo, _e) = echo_on("127.0.0.2").await;
    let cloud = Cloud::start(&pki, server_config()).await;
    let port = edge2_echo.port();
    let (_edge2, _b2) = start_agent(
        &pki,
        "system:node:edge-2",
        config_for(
            "edge-2",
            Some("edge-2.lan"),
            &["127.0.0.2"],
            cloud.agent_addr,
            &[port],
        ),
    );
    cloud.wait_node("edge-2").await;
    echo_ok(&cloud, &format!("edge-2:{port}")).await.unwrap();

    // Claims edge-2's hostname and address.
    let (_imp, imp_task) = start_agent(
        &pki,
        "system:node:edge-1",
        config_for(
            "edge-1",
            Some("edge-2.lan"),
            &["127.0.0.2"],
            cloud.agent_addr,
            &[port],
        ),
    );
    wait_rejected(&cloud.server, refusal::COLLISION).await;
    assert_eq!(cloud.server.nodes(), vec!["edge-2".to_string()]);
    for authority in [
        format!("edge-2:{port}"),
        format!("edge-2.lan:{port}"),
        format!("127.0.0.2:{port}"),
    ] {
        echo_ok(&cloud, &authority).await.unwrap();
    }
    imp_task.stop().await;

    // Claims edge-2's node name as its hostname.
    let (_imp, imp_task) = start_agent(
        &pki,
        "system:node:edge-1",
        config_for(
            "edge-1",
            Some("edge-2"),
            &["127.0.0.1"],
            cloud.agent_addr,
            &[port],
        ),
    );
    tokio::time::timeout(WAIT, async {
        while cloud
            .server
            .metrics()
            .registrations_rejected(refusal::COLLISION)
            < 2
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the second impostor was not refused");
    imp_task.stop().await;
    assert_eq!(cloud.server.nodes(), vec!["edge-2".to_string()]);
    for authority in [format!("edge-2:{port}"), format!("127.0.0.2:{port}")] {
        echo_ok(&cloud, &authority).await.unwrap();
    }
    cloud.stop().await;
}

/// The impostor came first, claiming edge-2's name as its hostname: edge-2's own registration
/// evicts it, and the impostor's departure does not take edge-2's routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_takes_its_name_back_from_an_earlier_impostor() {
    let _gate = shared().await;
    let pki = Pki::new();
    let (edge2_echo, _e) = echo_on("127.0.0.2").await;
    let port = edge2_echo.port();
    let cloud = Cloud::start(&pki, server_config()).await;
    let (imp, imp_task) = start_agent(
        &pki,
        "system:node:edge-1",
        config_for(
            "edge-1",
            Some("edge-2"),
            &["127.0.0.3"],
            cloud.agent_addr,
            &[port],
        ),
    );
    cloud.wait_node("edge-1").await;
    let (_edge2, _b2) = start_agent(
        &pki,
        "system:node:edge-2",
        config_for("edge-2", None, &["127.0.0.2"], cloud.agent_addr, &[port]),
    );
    cloud.wait_node("edge-2").await;
    echo_ok(&cloud, &format!("edge-2:{port}")).await.unwrap();
    drop(imp);
    imp_task.stop().await;
    echo_ok(&cloud, &format!("edge-2:{port}")).await.unwrap();
    cloud.stop().await;
}

/// Reads Node objects from the test apiserver with a real client.
struct ApiNodes(kube::Client);

impl std::fmt::Debug for ApiNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiNodes")
    }
}

#[async_trait]
impl NodeDirectory for ApiNodes {
    async fn addresses(&self, node: &str) -> Result<Option<NodeAddresses>, String> {
        let req = http::Request::get(format!("/api/v1/nodes/{node}"))
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        match self.0.request::<serde_json::Value>(req).await {
            Ok(v) => Ok(Some(NodeAddresses::from_node_json(&v))),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// With Node objects readable, a hello may claim only the node's `status.addresses`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_claims_are_checked_against_the_node_object() {
    let _gate = shared().await;
    let api = TestApiServer::start().await.unwrap();
    let client = api.client();
    let node = serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "edge-1"},
        "status": {"addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": "edge-1.lan"}
        ]}
    });
    let req = http::Request::post("/api/v1/nodes")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&node).unwrap())
        .unwrap();
    client.request::<serde_json::Value>(req).await.unwrap();

    let pki = Pki::new();
    let (echo, _e) = echo_server().await;
    let config = ServerConfig {
        nodes: Some(Arc::new(ApiNodes(client))),
        ..server_config()
    };
    let cloud = Cloud::start(&pki, config).await;
    let server = cloud.agent_addr;
    let port = echo.port();

    // An address the Node does not report.
    let (_a, t) = start_agent(
        &pki,
        "system:node:edge-1",
        config_for("edge-1", None, &["127.0.0.1", "127.0.0.9"], server, &[port]),
    );
    wait_rejected(&cloud.server, refusal::CLAIMS).await;
    t.stop().await;
    // A node that does not exist.
    let (_a, t) = start_agent(
        &pki,
        "system:node:edge-3",
        config_for("edge-3", None, &["127.0.0.3"], server, &[port]),
    );
    tokio::time::timeout(WAIT, async {
        while cloud
            .server
            .metrics()
            .registrations_rejected(refusal::CLAIMS)
            < 2
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("an agent for a node without a Node object registered");
    t.stop().await;
    assert!(cloud.server.nodes().is_empty());
    // Exactly what the Node reports.
    let (_a, _t) = start_agent(
        &pki,
        "system:node:edge-1",
        config_for(
            "edge-1",
            Some("edge-1.lan"),
            &["127.0.0.1"],
            server,
            &[port],
        ),
    );
    cloud.wait_node("edge-1").await;
    echo_ok(&cloud, &format!("edge-1.lan:{port}"))
        .await
        .unwrap();
    cloud.stop().await;
}

/// CONNECT over TLS with the client identity `cn` (`None`: no client certificate); the
/// status and body of the answer.
async fn tls_connect(
    pki: &Pki,
    door: SocketAddr,
    cn: Option<&str>,
    authority: &str,
) -> Result<(), (StatusCode, String)> {
    let cfg = match cn {
        Some(cn) => pki.client(cn),
        None => yurt_tunnel::tls::client_config(&pki.ca_der, None).unwrap(),
    };
    let tcp = tcp(door).await;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| (StatusCode::from_u16(599).unwrap(), e.to_string()))?;
    http_connect(tls, authority).await.map(|_| ())
}

/// The TLS CONNECT door serves only the configured identities, never node certificates, and
/// without client-certificate verification refuses clients that present none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_door_serves_only_the_apiserver_identities() {
    let rig = Rig::with_echo().await;
    let authority = rig.authority();
    // Door 1: client CA configured (certificates verified). Door 2: no client CA.
    let mut doors = Vec::new();
    let mut tasks = Vec::new();
    for client_auth in [true, false] {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        doors.push(l.local_addr().unwrap());
        let tls = rig.pki.serving(&["127.0.0.1"], client_auth);
        let s = rig.cloud.server.clone();
        tasks.push(Bg::spawn(async move {
            let _ = s.serve_connect(Listener::Tls(l, tls)).await;
        }));
    }
    let m = rig.cloud.server.metrics();
    for cn in ["kube-apiserver-kubelet-client", "system:kube-apiserver"] {
        tls_connect(&rig.pki, doors[0], Some(cn), &authority)
            .await
            .unwrap_or_else(|e| panic!("{cn} refused: {e:?}"));
    }
    for cn in ["system:node:edge-1", "system:node:edge-2", "someone-else"] {
        let (status, body) = tls_connect(&rig.pki, doors[0], Some(cn), &authority)
            .await
            .unwrap_err();
        assert_eq!(status, StatusCode::FORBIDDEN, "{cn}: {body}");
        assert!(body.contains("front door"), "{body}");
    }
    assert_eq!(m.front_door_rejected(refusal::NOT_ALLOWED), 3);
    // A door that does not verify client certificates learns no identity: nobody is served
    // (the daemon refuses to start that way without `--front-door-insecure`).
    for cn in [None, Some("kube-apiserver-kubelet-client")] {
        let (status, body) = tls_connect(&rig.pki, doors[1], cn, &authority)
            .await
            .unwrap_err();
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("client certificate is required"), "{body}");
    }
    assert_eq!(m.front_door_rejected(refusal::NO_CERTIFICATE), 2);
    drop(tasks);

    // The explicit opt-out serves anyone.
    let insecure = TunnelServer::new(ServerConfig {
        front_door: FrontDoorPolicy::Insecure,
        ..server_config()
    });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let door = l.local_addr().unwrap();
    let tls = rig.pki.serving(&["127.0.0.1"], false);
    let _t = Bg::spawn(async move {
        let _ = insecure.serve_connect(Listener::Tls(l, tls)).await;
    });
    let (status, body) = tls_connect(&rig.pki, door, None, &authority)
        .await
        .unwrap_err();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("no tunnel"), "{body}");
}
