//! The database goes away for a while: the server answers 503 with an MDE
//! error at once instead of hanging, and serves again by itself once the
//! database is back.
//!
//! The node reaches PostgreSQL through a TCP relay the test controls, so the
//! outage is real (connections cut, new ones refused) without stopping the
//! PostgreSQL server other tests use.

use crate::backend::database_url;
use crate::harness::{Options, TestServer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Relays TCP connections to `target` until cut.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    /// Bumped on each cut: relayed connections end when it changes.
    cuts: watch::Sender<u64>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let cuts = watch::Sender::new(0u64);
        let (accepting, cut_signal) = (up.clone(), cuts.subscribe());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let (target, mut cut) = (target.clone(), cut_signal.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    cut.mark_unchanged();
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Relay { port, up, cuts }
    }

    /// Closes every relayed connection and refuses new ones.
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_away_the_server_answers_503_and_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let direct = database_url(dir.path()).await;
    let (server_part, database) = direct.rsplit_once('/').unwrap();
    let authority = server_part.rsplit_once('@').map_or(server_part, |(_, a)| a);
    let relay = Relay::start(authority.to_string()).await;
    let relayed = direct.replace(authority, &format!("127.0.0.1:{}", relay.port));
    assert!(relayed.ends_with(database));
    let server = TestServer::start_with(Options {
        database: Some(relayed),
        ..Options::default()
    })
    .await;
    let machines = server.get("/api/machines").await;
    assert_eq!(machines.status, 200, "{}", machines.text);

    relay.cut();
    for path in ["/api/machines", "/api/machineactions"] {
        let started = Instant::now();
        let reply = server.get(path).await;
        let message = reply.assert_error(503, "ServiceUnavailable");
        assert!(!message.is_empty());
        // Within the pool's wait (5 s), not a hang until the client gives up.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }

    relay.restore();
    let mut answer = None;
    for _ in 0..100 {
        let reply = server.get("/api/machines").await;
        if reply.status == 200 {
            answer = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = answer.expect("the server serves again once the database is back");
    assert_eq!(reply.json["value"], machines.json["value"]);
}
