//! The database the tests run on. The `api` test binary runs every test on
//! SQLite; `api_postgres` runs the same tests on PostgreSQL, each test in a
//! database of its own on the server `PALISADE_TEST_POSTGRES` names (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Without a reachable
//! server the PostgreSQL run is skipped with a message, except under
//! CI=true, where it fails.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

// Each test binary names one of the two.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The PostgreSQL server the tests use (its maintenance database).
pub fn postgres_server() -> String {
    std::env::var("PALISADE_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_string())
}

/// A database URL for one test whose files live in `dir`. Asked again for
/// the same `dir` (a restarted server), it answers the same database.
pub async fn database_url(dir: &Path) -> String {
    match crate::BACKEND {
        Backend::Sqlite => format!("sqlite://{}", dir.join("palisade.db").display()),
        Backend::Postgres => {
            let remembered = dir.join("database.url");
            if let Ok(url) = std::fs::read_to_string(&remembered) {
                return url;
            }
            let url = create_database().await;
            std::fs::write(&remembered, &url).unwrap();
            url
        }
    }
}

/// The same database, as a server inside a network namespace reaches it: that
/// namespace has a loopback of its own, but shares the file system, so
/// PostgreSQL is reached through its Unix socket (Debian's `/run/postgresql`).
pub fn reachable_from_namespace(url: &str) -> String {
    match url.split_once("://") {
        Some(("postgres" | "postgresql", rest)) => {
            let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
            let user = authority
                .rsplit_once('@')
                .map_or("postgres", |(user, _)| user);
            format!("postgres://{user}@%2Frun%2Fpostgresql/{database}")
        }
        _ => url.to_string(),
    }
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (server, _) = url
        .rsplit_once('/')
        .expect("a postgres:// URL ends with /DATABASE");
    format!("{server}/{name}")
}

static CREATED: AtomicU64 = AtomicU64::new(0);

/// Creates an empty database named after this process, so that databases of
/// test runs that ended are recognised and dropped.
async fn create_database() -> String {
    let server = postgres_server();
    let client = match connect(&server).await {
        Ok(client) => client,
        Err(error) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but PostgreSQL at {server} is not reachable: {error}")
        }
        Err(error) => {
            // To stderr itself: the test harness captures eprintln!, and
            // the exit would discard what it captured.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: the PostgreSQL run of the API tests: no PostgreSQL at {server} ({error}); \
                 set PALISADE_TEST_POSTGRES to a server's URL to run it"
            );
            std::process::exit(0);
        }
    };
    let pid = std::process::id();
    if CREATED.fetch_add(1, Ordering::SeqCst) == 0 {
        drop_databases_of_ended_runs(&client).await;
    }
    let name = format!("palisade_test_{pid}_{}", uuid_like());
    // CREATE DATABASE copies template1 and is refused (55006, object in
    // use) while another session is connected to it, as a concurrent
    // CREATE DATABASE of another test run briefly is: try again.
    let mut attempts = 0;
    loop {
        match client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
        {
            Ok(()) => break,
            Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) && attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => {
                let detail = e.as_db_error().map(|d| d.message().to_string());
                panic!("CREATE DATABASE {name}: {e} {detail:?}")
            }
        }
    }
    with_database(&server, &name)
}

/// Unique within the process, and across restarts of it with the same pid.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}_{}", CREATED.load(Ordering::SeqCst))
}

pub async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(std::time::Duration::from_secs(3));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn drop_databases_of_ended_runs(client: &tokio_postgres::Client) {
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'palisade\\_test\\_%'",
            &[],
        )
        .await
        .unwrap();
    for row in rows {
        let name: String = row.get(0);
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let running = pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !running {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// Makes the audit log of the database at `url` refuse every new entry,
/// from a connection of the test's own.
pub async fn refuse_audit_entries(url: &str) {
    match crate::BACKEND {
        Backend::Sqlite => {
            let path = url.strip_prefix("sqlite://").expect("an sqlite:// URL");
            rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
                     BEGIN SELECT RAISE(ABORT, 'the audit log refuses entries'); END;",
                )
                .unwrap();
        }
        Backend::Postgres => connect(url)
            .await
            .unwrap()
            .batch_execute(
                "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'the audit log refuses entries'; END $$; \
                 CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
                 FOR EACH ROW EXECUTE FUNCTION refuse_audit();",
            )
            .await
            .unwrap(),
    }
}
