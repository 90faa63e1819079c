//! `palisade simulate`: a fleet of simulated devices against a running server.

use crate::admin_cli;
use clap::Args;
use palisade_contract::OsPlatform;
use palisade_device::client::{http_client, DeviceClient};
use palisade_device::fleet::{Fleet, FleetOptions};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The Palisade server, e.g. https://localhost:8443.
    #[arg(long, env = "PALISADE_SERVER")]
    pub server: String,
    /// The tenant's onboarding token (`palisade onboarding create`, or the demo credentials).
    #[arg(long, env = "PALISADE_ONBOARDING_TOKEN")]
    pub onboarding_token: String,
    /// How many devices.
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// Mean milliseconds a device takes to carry out an action (actual: 0.5x to 1.5x).
    #[arg(long, default_value_t = 2_000)]
    pub action_latency_ms: u64,
    /// Share of actions that end Failed (0.0 to 1.0).
    #[arg(long, default_value_t = 0.05, value_parser = parse_rate)]
    pub failure_rate: f64,
    /// Alerts each device raises an hour, on average (random detections with
    /// their evidence, as `GET /api/alerts` then shows them); 0: none.
    #[arg(long, default_value_t = 0.0, value_parser = parse_alert_rate)]
    pub alerts_per_hour: f64,
    /// The devices' osPlatform.
    #[arg(long, default_value = "Windows11", value_parser = admin_cli::parse_os)]
    pub os_platform: OsPlatform,
    /// Device names are PREFIX-N. Credentials are kept in memory only: running again with the same
    /// prefix enrolls new machines, marked as potential duplicates of the earlier run's.
    #[arg(long, default_value = "sim")]
    pub name_prefix: String,
    /// Seconds each check-in waits for an action (long poll); 0 for periodic check-ins only.
    #[arg(long, default_value_t = 30)]
    pub wait: u64,
    /// Seconds between check-ins; the server's setting by default.
    #[arg(long)]
    pub check_in_interval: Option<u64>,
    /// Stop after this many seconds; runs until interrupted by default.
    #[arg(long)]
    pub duration: Option<u64>,
    /// A CA certificate to trust (the server's --tls-self-signed DIR/ca.pem).
    #[arg(long, env = "PALISADE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err("expected a number from 0.0 to 1.0".into()),
    }
}

/// How often the running totals are printed.
const REPORT_EVERY: Duration = Duration::from_secs(10);

pub async fn run(
    args: SimulateArgs,
    interrupted: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let http = http_client(args.ca_file.as_deref())?;
    let client = DeviceClient::new(http, &args.server);
    let options = FleetOptions {
        devices: args.devices,
        onboarding_token: args.onboarding_token,
        os_platform: args.os_platform,
        name_prefix: args.name_prefix,
        wait: Duration::from_secs(args.wait),
        check_in_interval: args.check_in_interval.map(Duration::from_secs),
        action_latency: Duration::from_millis(args.action_latency_ms),
        failure_rate: args.failure_rate,
        enroll_concurrency: 32,
        alerts_per_hour: args.alerts_per_hour,
    };
    let fleet = Fleet::start(client, options).await?;
    println!(
        "{} simulated devices enrolled with {}; they carry out actions until stopped.",
        fleet.machine_ids.len(),
        args.server
    );
    let stats = fleet.stats.clone();
    let reporting = async {
        let mut tick = tokio::time::interval(REPORT_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            println!("{}", stats.summary());
        }
    };
    let until = async {
        match args.duration {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = interrupted => {},
        _ = until => {},
        _ = reporting => {},
    }
    fleet.stop().await;
    println!("stopped: {}", stats.summary());
    Ok(())
}

fn parse_alert_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && (0.0..=3_600.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "'{text}' is not a rate from 0 to 3600 alerts an hour"
        )),
    }
}
