//! The connections themselves, over real sockets: slow and idle clients are
//! cut off, the connection cap holds while held connections are served, and
//! errors of the HTTP layer carry MDE's error body.

use crate::harness::{Options, ServerProcess, TestServer};
use palisade_device::client::DeviceClient;
use palisade_server::transport::Limits;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short limits, so that the tests see them act.
fn short(limits: impl FnOnce(&mut Limits)) -> Options {
    let mut options = Options {
        limits: Limits {
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(2),
            body_read_timeout: Duration::from_secs(1),
            ..Limits::default()
        },
        ..Options::default()
    };
    limits(&mut options.limits);
    options
}

fn authority(server: &TestServer) -> &str {
    server.origin.trim_start_matches("http://")
}

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(authority(server)).await.unwrap()
}

/// A GET of `/healthz` as raw bytes.
fn health(server: &TestServer) -> Vec<u8> {
    format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n",
        authority(server)
    )
    .into_bytes()
}

/// Reads until the server closes the connection (or `limit` passes: then panics);
/// returns what came and how long it took.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await;
        match read {
            Err(_) => panic!(
                "the server kept the connection open for {limit:?}; got {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

/// Reads one response whose body has a Content-Length or is chunked, leaving
/// the connection open.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let lower = head.to_ascii_lowercase();
            let complete = match lower.split("content-length: ").nth(1) {
                Some(rest) => {
                    let length: usize = rest.split("\r\n").next().unwrap().parse().unwrap();
                    body.len() >= length
                }
                None => body.ends_with("0\r\n\r\n"),
            };
            if complete {
                return text.into_owned();
            }
        }
    }
}

/// The JSON body of a raw response (chunked or not).
fn json_body(response: &str) -> Value {
    let body = response.split_once("\r\n\r\n").expect("a head").1;
    let start = body.find('{').expect("a JSON body");
    let end = body.rfind('}').unwrap();
    serde_json::from_str(&body[start..=end]).unwrap()
}

/// The response is an MDE error with this status, whose target is its request id.
#[track_caller]
fn assert_mde_error(response: &str, status: u16) -> Value {
    assert!(
        response.starts_with(&format!("HTTP/1.1 {status} ")),
        "{response}"
    );
    let head = response
        .split_once("\r\n\r\n")
        .unwrap()
        .0
        .to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/json"),
        "{response}"
    );
    let body = json_body(response);
    let target = body["error"]["target"].as_str().expect("a target");
    assert!(
        head.contains(&format!("request-id: {}", target.to_ascii_lowercase())),
        "{response}"
    );
    assert!(body["error"]["code"].is_string(), "{response}");
    assert!(body["error"]["message"].is_string(), "{response}");
    body
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let server = TestServer::start_with(short(|_| {})).await;
    let mut stream = connect(&server).await;
    let (received, took) = read_to_close(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(received, "");
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_cut_off_at_the_header_timeout() {
    let server = TestServer::start_with(short(|_| {})).await;
    let mut stream = connect(&server).await;
    let head = [
        health(&server),
        b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n".to_vec(),
    ]
    .concat();
    let started = Instant::now();
    let mut closed = false;
    for byte in &head {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        // The server's close shows as EOF on a read.
        let mut buf = [0u8; 64];
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await
        {
            assert!(matches!(read, Ok(0) | Err(_)), "answered a partial head");
            closed = true;
            break;
        }
    }
    assert!(closed, "the whole slow head was accepted");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "cut off after {took:?}");
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let server = TestServer::start_with(short(|_| {})).await;
    let mut stream = connect(&server).await;
    stream.write_all(&health(&server)).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Longer than the header timeout: the idle timeout applies between requests.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    stream.write_all(&health(&server)).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    let (_, took) = read_to_close(&mut stream, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}");
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_and_the_connection_ends() {
    let server = TestServer::start_with(short(|_| {})).await;
    let machine = crate::harness::machine(palisade_contract::OsPlatform::Windows11);
    server.put_machines(std::slice::from_ref(&machine)).await;
    let mut stream = connect(&server).await;
    let head = format!(
        "POST /api/machines/{}/tags HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"Value\":",
        machine.id,
        authority(&server),
        server.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (response, took) = read_to_close(&mut stream, Duration::from_secs(10)).await;
    let body = assert_mde_error(&response, 408);
    assert_eq!(body["error"]["code"], "BadRequest");
    assert!(
        took >= Duration::from_millis(800),
        "answered after {took:?}"
    );
    let tags = server.get(&format!("/api/machines/{}", machine.id)).await;
    assert_eq!(tags.json["machineTags"], serde_json::json!([]));
}

#[tokio::test]
async fn beyond_the_connection_cap_new_connections_are_closed_while_held_ones_are_served() {
    let server = TestServer::start_with(short(|limits| {
        limits.max_connections = 3;
        limits.header_read_timeout = Duration::from_secs(30);
        limits.idle_timeout = Duration::from_secs(30);
    }))
    .await;
    let mut kept = connect(&server).await;
    kept.write_all(&health(&server)).await.unwrap();
    assert!(read_response(&mut kept).await.starts_with("HTTP/1.1 200"));
    let _idle = [connect(&server).await, connect(&server).await];
    // Let the server accept both before the one over the cap.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = connect(&server).await;
    let _ = over.write_all(&health(&server)).await;
    let (received, took) = read_to_close(&mut over, Duration::from_secs(5)).await;
    assert_eq!(received, "", "a connection over the cap was served");
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    kept.write_all(&health(&server)).await.unwrap();
    assert!(read_response(&mut kept).await.starts_with("HTTP/1.1 200"));
    // A closed connection frees its place.
    drop(kept);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = server.get("/healthz").await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn a_long_poll_longer_than_the_header_and_idle_timeouts_completes() {
    let server = TestServer::start_with(short(|limits| {
        limits.idle_timeout = Duration::from_secs(1);
    }))
    .await;
    let enrolled = server.enroll_windows("long-poll.test").await;
    let started = Instant::now();
    let instructions = enrolled
        .device
        .check_in(
            &crate::device_plane::report(palisade_device::Isolation::None),
            Duration::from_secs(4),
        )
        .await
        .expect("the long poll answers");
    assert!(instructions.actions.is_empty());
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn errors_of_the_http_layer_carry_the_mde_error_body() {
    let server = TestServer::start().await;
    let host = authority(&server);
    let cases: [(Vec<u8>, u16); 4] = [
        (
            format!(
                "GET /api/machines HTTP/1.1\r\nHost: {host}\r\nX-Big: {}\r\n\r\n",
                "a".repeat(40 * 1024)
            )
            .into_bytes(),
            431,
        ),
        (
            format!(
                "GET /api/machines?$filter={} HTTP/1.1\r\nHost: {host}\r\n\r\n",
                "a".repeat(20 * 1024)
            )
            .into_bytes(),
            414,
        ),
        (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), 400),
        (
            format!("GET /api/machines HTTP/1.1\r\nHost: {host}\r\nBad Header\r\n\r\n")
                .into_bytes(),
            400,
        ),
    ];
    for (request, status) in cases {
        let mut stream = connect(&server).await;
        stream.write_all(&request).await.unwrap();
        let response = read_response(&mut stream).await;
        let body = assert_mde_error(&response, status);
        assert_eq!(body["error"]["code"], "BadRequest", "{response}");
    }
    // 405 keeps MDE's empty body.
    let mut stream = connect(&server).await;
    stream
        .write_all(format!("DELETE /api/machines HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 405 "), "{response}");
    assert!(response.ends_with("\r\n\r\n"), "{response}");
}

/// SIGTERM, as systemd stops a service.
fn terminate(child: &std::process::Child) {
    let _ = std::process::Command::new("sh")
        .args(["-c", "kill -TERM \"$0\""])
        .arg(child.id().to_string())
        .output();
}

/// SIGTERM while a device's long poll is in flight: the poll is answered,
/// and the server exits 0.
async fn sigterm_finishes_requests_in_flight(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start_in(dir.path(), extra).await;
    let credentials = server.demo_credentials();
    let device = DeviceClient::new(server.client.clone(), &server.origin);
    let request = serde_json::from_value(serde_json::json!({
        "hardwareId": "hw-shutdown",
        "computerDnsName": "shutdown.test",
        "osPlatform": "Linux",
        "agentVersion": "0.1.0",
        "ipAddresses": [],
        "capabilities": [],
    }))
    .unwrap();
    let token = credentials["onboarding_token"].as_str().unwrap();
    let enrollment = device.enroll(token, &request).await.unwrap();
    let device = device.with_credential(&enrollment.credential);
    let poll = tokio::spawn(async move {
        device
            .check_in(
                &crate::device_plane::report(palisade_device::Isolation::None),
                Duration::from_secs(30),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    terminate(&server.child);
    let answered = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the long poll is answered at shutdown")
        .unwrap();
    assert!(answered.is_ok(), "{answered:?}");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the server did not stop: {}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}: {}", server.log_tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_and_exits_0_over_http() {
    sigterm_finishes_requests_in_flight(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_and_exits_0_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    sigterm_finishes_requests_in_flight(&["--tls-self-signed", tls.to_str().unwrap()]).await;
}

/// An HTTP/2 connection to `server` whose streams never open their flow-control
/// window: the server can send a response's head, never its body.
async fn http2_with_closed_windows(
    server: &TestServer,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<hyper::body::Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let io = hyper_util::rt::TokioIo::new(connect(server).await);
    let (sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(0)
            .adaptive_window(false)
            .handshake(io)
            .await
            .unwrap();
    (sender, tokio::spawn(connection))
}

fn http2_get(
    server: &TestServer,
    path: &str,
) -> hyper::Request<http_body_util::Empty<hyper::body::Bytes>> {
    hyper::Request::get(format!("{}{path}", server.origin))
        .body(http_body_util::Empty::new())
        .unwrap()
}

#[tokio::test]
async fn an_http2_client_that_never_takes_its_response_is_cut_off_at_the_body_timeout() {
    let server = TestServer::start_with(short(|limits| {
        limits.idle_timeout = Duration::from_secs(30);
    }))
    .await;
    let (mut sender, connection) = http2_with_closed_windows(&server).await;
    let started = Instant::now();
    let response = sender
        .send_request(http2_get(&server, "/healthz"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the head is sent");
    // The body waits for a window that never opens; the response is held.
    let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(
        ended.is_ok(),
        "the server kept the connection for 10 s with a response the client never took"
    );
    let after = started.elapsed();
    assert!(
        after >= Duration::from_secs(1),
        "cut off after {after:?}, before the body timeout"
    );
    drop(response);
}

#[tokio::test]
async fn an_http2_long_poll_longer_than_the_body_timeout_completes() {
    let server = TestServer::start_with(short(|_| {})).await;
    let enrolled = server.enroll_windows("long-poll-h2.test").await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let poll =
        DeviceClient::new(client, &server.origin).with_credential(&enrolled.enrollment.credential);
    let started = Instant::now();
    let instructions = poll
        .check_in(
            &crate::device_plane::report(palisade_device::Isolation::None),
            Duration::from_secs(3),
        )
        .await
        .expect("the long poll answers");
    assert!(instructions.actions.is_empty());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "answered after {:?}",
        started.elapsed()
    );
}
