//! The `palisade` command line.

use crate::app::{self, AppState};
use crate::demo;
use clap::{Args, Parser, Subcommand};
use palisade_domain::{Palisade, SystemClock};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(
    name = "palisade",
    version,
    about = "A self-hosted control plane that speaks the Microsoft Defender for Endpoint machine API."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PALISADE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Database URL: sqlite://PATH (embedded default).
    #[arg(
        long,
        env = "PALISADE_DATABASE",
        default_value = "sqlite://palisade.db"
    )]
    pub database: String,
    /// Create (once) a demo tenant with a fleet of machines, and serve it.
    #[arg(long, env = "PALISADE_DEMO")]
    pub demo: bool,
    /// Pending actions no device picks up within this many hours end TimeOut.
    #[arg(long, env = "PALISADE_ACTION_TIMEOUT_HOURS", default_value_t = 72,
          value_parser = clap::value_parser!(i64).range(1..=24 * 365))]
    pub action_timeout_hours: i64,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = app::open_store(&args.database)?;
    let palisade = Palisade::new(store, Arc::new(SystemClock))
        .with_action_timeout(args.action_timeout_hours * 3600);
    let tenant_id = if args.demo {
        demo::ensure_demo_tenant(&palisade).await?;
        demo::DEMO_TENANT_ID.to_string()
    } else {
        app::ensure_default_tenant(&palisade).await?
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr()?;
    let state = AppState {
        palisade,
        tenant_id: tenant_id.clone(),
        scheme: "http",
        listen_authority: local.to_string(),
    };
    app::spawn_action_sweeper(state.palisade.clone());
    let router = app::http_app(state, axum::Router::new());
    if args.demo {
        print_demo_guide(&local, &tenant_id);
    }
    tracing::info!(database = %args.database, tenant = %tenant_id, "palisade is ready on http://{local}");
    app::serve(listener, router, shutdown_signal()).await?;
    tracing::info!("palisade stopped");
    Ok(())
}

fn print_demo_guide(local: &SocketAddr, tenant_id: &str) {
    let api = format!("http://{local}/api");
    println!(
        "\nPalisade demo tenant {tenant_id}: {} machines across Windows 10/11, Windows Server, macOS and Linux.\n\
         API:      {api}\n\
         OpenAPI:  http://{local}/openapi.json\n\n\
         Try:\n\
         \x20 curl -s '{api}/machines?$top=2'\n\
         \x20 curl -s \"{api}/machines?\\$filter=machineTags/any(t:t%20eq%20'VIP')&\\$top=3\"\n\
         \x20 curl -s -X POST {api}/machines/<id>/isolate -H 'Content-Type: application/json' \\\n\
         \x20      -d '{{\"Comment\":\"Isolate for investigation\",\"IsolationType\":\"Full\"}}'\n\
         \x20 curl -s '{api}/machineactions?$top=5'\n",
        demo::DEMO_FLEET_SIZE
    );
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
