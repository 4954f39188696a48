//! The listener: HTTP/1.1 and h2 on one port in front of the hub's layers and a TestApiServer,
//! an HTTP/1.1 upgrade passed through to the inner service, and graceful shutdown.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tower::{ServiceBuilder, service_fn};
use yurt_cache::balancer::{Balancer, Strategy};
use yurt_cache::body::Body;
use yurt_cache::health::{HealthChecker, HealthConfig};
use yurt_cache::request_info::RequestInfoLayer;
use yurt_cache::server::{Drain, Server, ServerConfig};
use yurt_testkit::TestApiServer;

use crate::health::wait_for;
use crate::net::{WAIT, plain_client, uri};

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

async fn get_version(
    client: &Client<HttpConnector, Empty<Bytes>>,
    addr: &str,
) -> (http::Version, serde_json::Value) {
    let req = Request::get(format!("http://{addr}/version"))
        .header("user-agent", "kubectl/v1.36.0")
        .body(Empty::new())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, client.request(req))
        .await
        .expect("answer within the wait bound")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let version = resp.version();
    let body = tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (version, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn serves_http1_and_h2_through_the_hub_layers() {
    let api = TestApiServer::start().await.unwrap();
    let checker = HealthChecker::spawn(plain_client(), vec![uri(&api)], HealthConfig::readyz());
    wait_for(&mut checker.subscribe(), |s| s.any_healthy()).await;
    let stack = ServiceBuilder::new()
        .layer(RequestInfoLayer::new())
        .service(Balancer::new(
            plain_client(),
            checker.subscribe(),
            Strategy::RoundRobin,
        ));
    let server = Server::spawn(listener().await, stack, ServerConfig::default()).unwrap();
    let addr = server.local_addr().to_string();

    let h1 = Client::builder(TokioExecutor::new()).build_http();
    let (v, doc) = get_version(&h1, &addr).await;
    assert_eq!(v, http::Version::HTTP_11);
    assert!(doc["gitVersion"].is_string(), "{doc}");

    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let (v, doc) = get_version(&h2, &addr).await;
    assert_eq!(v, http::Version::HTTP_2);
    assert!(doc["gitVersion"].is_string(), "{doc}");

    assert_eq!(api.traffic().under("/version").count(), 2);
    assert_eq!(server.shutdown().await, Drain::Complete);
    checker.shutdown().await;
}

#[tokio::test]
async fn passes_an_upgrade_through_both_ways() {
    // The inner service answers `Upgrade: echo` with 101, then greets and echoes what it reads.
    let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
    let owned = tasks.clone();
    let echo = service_fn(move |mut req: Request<Body>| {
        let owned = owned.clone();
        async move {
            assert_eq!(req.headers()["upgrade"], "echo");
            let on = hyper::upgrade::on(&mut req);
            owned.lock().unwrap().push(tokio::spawn(async move {
                let upgraded = on.await.expect("upgrade");
                let mut io = TokioIo::new(upgraded);
                io.write_all(b"hello\n").await.unwrap();
                let mut buf = [0u8; 4];
                io.read_exact(&mut buf).await.unwrap();
                io.write_all(&buf).await.unwrap();
                io.shutdown().await.unwrap();
            }));
            let resp = Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "echo")
                .body(Body::empty())
                .unwrap();
            Ok::<_, Infallible>(resp)
        }
    });
    let server = Server::spawn(listener().await, echo, ServerConfig::default()).unwrap();

    let stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn_task = tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let req = Request::get("/exec")
        .header("host", "hub")
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let upgraded = tokio::time::timeout(WAIT, hyper::upgrade::on(resp))
        .await
        .unwrap()
        .unwrap();
    let mut io = TokioIo::new(upgraded);
    let mut greeting = [0u8; 6];
    tokio::time::timeout(WAIT, io.read_exact(&mut greeting))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&greeting, b"hello\n");
    io.write_all(b"ping").await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(WAIT, io.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, b"ping");

    let handles: Vec<_> = tasks.lock().unwrap().drain(..).collect();
    for h in handles {
        tokio::time::timeout(WAIT, h).await.unwrap().unwrap();
    }
    drop(io);
    conn_task.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_and_refuses_new_connections() {
    let (entered_tx, mut entered) = mpsc::unbounded_channel::<oneshot::Sender<()>>();
    let slow = service_fn(move |_req: Request<Body>| {
        let entered_tx = entered_tx.clone();
        async move {
            let (release_tx, release) = oneshot::channel();
            entered_tx.send(release_tx).unwrap();
            let _ = release.await;
            Ok::<_, Infallible>(Response::new(Body::from("done")))
        }
    });
    let server = Server::spawn(listener().await, slow, ServerConfig::default()).unwrap();
    let addr = server.local_addr();

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let in_flight = tokio::spawn(async move {
        let resp = client
            .request(
                Request::get(format!("http://{addr}/slow"))
                    .body(Empty::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    });
    let release = tokio::time::timeout(WAIT, entered.recv())
        .await
        .unwrap()
        .unwrap();

    let shutdown = tokio::spawn(server.shutdown());
    // The listener closes once the accept loop sees the stop: new connections are refused.
    tokio::time::timeout(WAIT, async {
        while let Ok(conn) = TcpStream::connect(addr).await {
            drop(conn);
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the listener closes");
    assert!(
        !shutdown.is_finished(),
        "the drain waits for the in-flight request"
    );

    release.send(()).unwrap();
    let (status, body) = tokio::time::timeout(WAIT, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "done");
    let drain = tokio::time::timeout(WAIT, shutdown).await.unwrap().unwrap();
    assert_eq!(drain, Drain::Complete);
}
