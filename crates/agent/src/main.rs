//! `palisade-agent`: the Linux agent's command line.

use clap::Parser;
use palisade_agent::live_response::LiveResponseConfig;
use palisade_agent::{run, AgentConfig, Ended};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "palisade-agent",
    version,
    about = "Enrolls this Linux device with a Palisade server and carries out its machine actions: \
             network isolation with nftables (Full, Selective), release, offboarding, stopping and \
             quarantining a file, antivirus scans with ClamAV; and enforces \
             its tenant's indicators: addresses blocked, files with a blocked hash quarantined."
)]
struct Args {
    /// The Palisade server, e.g. https://palisade.example:8443.
    #[arg(long, env = "PALISADE_SERVER")]
    server: String,
    /// The tenant's onboarding token: to enroll (first start, or after an offboard); given at a
    /// later start, the device enrolls again with its credential, updating its machine in place.
    #[arg(long, env = "PALISADE_ONBOARDING_TOKEN")]
    onboarding_token: Option<String>,
    /// Where the agent keeps its credential and the isolation it must hold (owner-only).
    #[arg(
        long,
        env = "PALISADE_STATE_DIR",
        default_value = "/var/lib/palisade-agent"
    )]
    state_dir: PathBuf,
    /// A CA certificate to trust for the server (a self-signed Palisade's ca.pem).
    #[arg(long, env = "PALISADE_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// A network (CIDR, e.g. 10.20.0.0/16 or 2001:db8::/32) that stays reachable,
    /// both ways, under Selective isolation; repeat for more.
    #[arg(
        long = "selective-allow",
        env = "PALISADE_SELECTIVE_ALLOW",
        value_delimiter = ','
    )]
    selective_allow: Vec<ipnet::IpNet>,
    /// Seconds each check-in waits for an action (long poll); actions arrive at
    /// once either way, and the device checks in at least this often.
    #[arg(long, default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=palisade_device::MAX_WAIT_SECONDS))]
    check_in_wait: u64,
    /// The nft binary.
    #[arg(long, default_value = "nft")]
    nft: PathBuf,
    /// A directory searched (recursively) for files whose hash a Block or
    /// BlockAndRemediate indicator names: they are quarantined; repeat for more.
    /// Running processes' executables are checked too, wherever they are.
    #[arg(long = "scan-path", env = "PALISADE_SCAN_PATHS", value_delimiter = ',')]
    scan_paths: Vec<PathBuf>,
    /// Seconds between scans of those paths and of the running processes
    /// (a change of indicators starts one at once).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    scan_interval: u64,
    /// Where Quick antivirus scans look besides the scan paths; repeat for more.
    #[arg(long = "quick-scan-path", env = "PALISADE_QUICK_SCAN_PATHS", value_delimiter = ',',
          default_values = palisade_agent::response::QUICK_SCAN_PLACES)]
    quick_scan_paths: Vec<PathBuf>,
    /// ClamAV's scanner, for antivirus scans (RunAntiVirusScan); without it they fail.
    #[arg(long, default_value = "clamscan")]
    clamscan: PathBuf,
    /// A ClamAV signature directory to scan with in place of ClamAV's own
    /// (`clamscan --database`).
    #[arg(long, env = "PALISADE_CLAMAV_DATABASE")]
    clamav_database: Option<PathBuf>,
    /// Live response's working folder: PutFile places files in `files/`
    /// (where scripts run), scripts wait in `scripts/`. Its parents must let
    /// the script user through.
    #[arg(
        long,
        env = "PALISADE_LIVE_RESPONSE_DIR",
        default_value = "/var/lib/palisade-agent-live-response"
    )]
    live_response_dir: PathBuf,
    /// Who live-response scripts run as; `root` gives them the whole host,
    /// so it is never the default.
    #[arg(long, env = "PALISADE_SCRIPT_USER", default_value = "nobody")]
    script_user: String,
    /// Seconds a live-response script may run before it is stopped (MDE: 10 minutes).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    script_timeout: u64,
    /// Bytes kept of each of a script's standard output and error.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_script_output_bytes: usize,
    /// The largest file a live-response session collects (GetFile) or places (PutFile).
    #[arg(long, default_value_t = 512 * 1024 * 1024)]
    max_live_response_file_bytes: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PALISADE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = AgentConfig {
        server: args.server,
        onboarding_token: args.onboarding_token,
        state_dir: args.state_dir,
        ca_file: args.ca_file,
        selective_allow: args.selective_allow,
        check_in_wait: Duration::from_secs(args.check_in_wait),
        nft: args.nft,
        scan_paths: args.scan_paths,
        scan_every: Duration::from_secs(args.scan_interval),
        clamscan: args.clamscan,
        quick_scan_paths: args.quick_scan_paths,
        clamav_database: args.clamav_database,
        live_response: LiveResponseConfig {
            dir: args.live_response_dir,
            script_user: args.script_user,
            script_timeout: Duration::from_secs(args.script_timeout),
            max_output_bytes: args.max_script_output_bytes,
            max_file_bytes: args.max_live_response_file_bytes,
        },
    };
    let outcome = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(async { run(config, stop_signal()).await }));
    match outcome {
        Ok(Ended::Stopped) => {
            eprintln!("palisade-agent: stopped (isolation, if any, stays in force)");
            ExitCode::SUCCESS
        }
        Ok(Ended::Offboarded) => {
            eprintln!("palisade-agent: offboarded; the credential is removed. Enroll again with a new onboarding.");
            ExitCode::SUCCESS
        }
        // Success, so that a service manager restarting on failure leaves it be.
        Ok(Ended::StaysOffboarded(marker)) => {
            eprintln!(
                "palisade-agent: this device was offboarded and does not enroll again; \
                 to onboard it anew, remove {} and start the agent with an onboarding token.",
                marker.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("palisade-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM. The SIGTERM handler is in place from the
/// call on, not from the first poll: a stop that comes while the agent is
/// still enrolling ends it cleanly once it gets there, instead of killing it.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async {
                match terminate.as_mut() {
                    Some(signal) => { signal.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {},
        }
    }
}
