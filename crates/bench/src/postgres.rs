//! The PostgreSQL side of the benchmark: a database of its own, and the raw
//! commit rate that bounds any write path on it.

use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

/// The benchmark's database on the server at `server_url`; its URL.
pub async fn create_database(server_url: &str) -> anyhow::Result<String> {
    let client = connect(server_url).await?;
    let name = format!("palisade_bench_{}", std::process::id());
    // Two statements: neither may run inside the transaction one batch makes.
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let (server, _) = server_url
        .rsplit_once('/')
        .ok_or_else(|| anyhow::anyhow!("a postgres:// URL ends with /DATABASE"))?;
    Ok(format!("{server}/{name}"))
}

/// Drops the benchmark's database (`database_url`, as `create_database` made it).
pub async fn drop_database(server_url: &str, database_url: &str) -> anyhow::Result<()> {
    let name = database_url.rsplit('/').next().unwrap_or_default();
    connect(server_url)
        .await?
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    Ok(())
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Sequential single-row commits per second over one connection, with the
/// server's durability settings (as the store commits: synchronous_commit on).
pub async fn raw_commit_rate(
    database_url: &str,
    duration: Duration,
    rows: usize,
) -> anyhow::Result<f64> {
    let client = connect(database_url).await?;
    client
        .batch_execute("CREATE TABLE raw_commits (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)")
        .await?;
    let insert = client
        .prepare("INSERT INTO raw_commits (body) SELECT $1 FROM generate_series(1, $2::int8)")
        .await?;
    let body = "x".repeat(600);
    let rows = i64::try_from(rows)?;
    let started = Instant::now();
    let mut commits = 0u64;
    while started.elapsed() < duration {
        // Outside a transaction block every statement commits on its own.
        client.execute(&insert, &[&body, &rows]).await?;
        commits += 1;
    }
    let rate = commits as f64 / started.elapsed().as_secs_f64();
    client.batch_execute("DROP TABLE raw_commits").await?;
    Ok(rate)
}
