//! Network isolation with nftables, in one table of the agent's own.
//!
//! The rules are written in nft's own language and handed to the `nft`
//! binary in one `nft -f -` transaction: that is the form an administrator
//! reads back with `nft list table inet palisade`, and the binary is the one
//! interface nftables supports (the Rust `nftables` crate, too, only drives
//! this binary, through its JSON schema). Verification reads the table back
//! as JSON (`nft -j`).
//!
//! Why a drop policy in our own table isolates whatever else is configured:
//! in nftables a packet must pass every base chain on its hook, and a drop
//! anywhere is final. Release deletes exactly this table.

use ipnet::IpNet;
use palisade_device::Isolation;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// The agent's table: family `inet`, so IPv4 and IPv6 alike.
pub const TABLE: &str = "palisade";

/// What isolation lets through besides loopback and established traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub isolation: Isolation,
    /// The Palisade server's addresses and port: new connections to it stay allowed.
    pub control_plane: Vec<SocketAddr>,
    /// DNS servers, allowed only when the control plane is named by host name.
    pub resolvers: Vec<IpAddr>,
    /// Selective isolation only: networks reachable in both directions.
    pub allow: Vec<IpNet>,
}

/// Why isolation could not be put in force or lifted.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// Enforcement is impossible here: no nft binary, or no privileges.
    #[error("network isolation is unavailable: {0}")]
    Unavailable(String),
    /// nft ran and refused, or the table is not what was applied.
    #[error("nftables: {0}")]
    Failed(String),
}

fn family_match(address: &IpAddr, direction: &str) -> String {
    match address {
        IpAddr::V4(a) => format!("ip {direction} {a}"),
        IpAddr::V6(a) => format!("ip6 {direction} {a}"),
    }
}

fn network_match(network: &IpNet, direction: &str) -> String {
    match network {
        IpNet::V4(n) => format!("ip {direction} {n}"),
        IpNet::V6(n) => format!("ip6 {direction} {n}"),
    }
}

/// The nft script that replaces the agent's table with `policy`, atomically.
pub fn script(policy: &Policy) -> String {
    // What keeps the host on the network at all: neighbour discovery and router
    // advertisements (IPv6), and DHCP leases (v4 and v6); without them the
    // address or default route lapses and the control plane is lost too.
    let mut output = vec![
        "oif \"lo\" accept".to_string(),
        "ct state established,related accept".to_string(),
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept"
            .to_string(),
        "udp sport 68 udp dport 67 accept".to_string(),
        "udp sport 546 udp dport 547 accept".to_string(),
    ];
    let mut input = vec![
        "iif \"lo\" accept".to_string(),
        "ct state established,related accept".to_string(),
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept"
            .to_string(),
        "udp sport 67 udp dport 68 accept".to_string(),
        "udp sport 547 udp dport 546 accept".to_string(),
    ];
    for endpoint in &policy.control_plane {
        output.push(format!(
            "{} tcp dport {} accept",
            family_match(&endpoint.ip(), "daddr"),
            endpoint.port()
        ));
    }
    for resolver in &policy.resolvers {
        for protocol in ["udp", "tcp"] {
            output.push(format!(
                "{} {protocol} dport 53 accept",
                family_match(resolver, "daddr")
            ));
        }
    }
    if policy.isolation == Isolation::Selective {
        for network in &policy.allow {
            output.push(format!("{} accept", network_match(network, "daddr")));
            input.push(format!("{} accept", network_match(network, "saddr")));
        }
    }
    let chain = |name: &str, hook: &str, rules: &[String]| {
        let mut text = format!(
            "  chain {name} {{\n    type filter hook {hook} priority filter - 10; policy drop;\n"
        );
        for rule in rules {
            text += &format!("    {rule}\n");
        }
        text + "  }\n"
    };
    // Declaring then deleting the table makes the load a replacement whether
    // or not it exists; nft applies the whole file as one transaction.
    // Forward too: containers and VMs behind the host must not stay connected.
    format!(
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n  comment \"palisade-agent: {isolation} isolation\"\n{input}{output}{forward}}}\n",
        isolation = policy.isolation,
        input = chain("input", "input", &input),
        output = chain("output", "output", &output),
        forward = chain("forward", "forward", &[]),
    )
}

/// Runs `nft` in the agent's network namespace.
#[derive(Debug, Clone)]
pub struct Nft {
    pub binary: PathBuf,
}

impl Nft {
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, FirewallError> {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| {
            FirewallError::Unavailable(format!(
                "cannot run {} ({e}); install nftables",
                self.binary.display()
            ))
        })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .await
                .map_err(|e| FirewallError::Failed(format!("writing to nft: {e}")))?;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| FirewallError::Failed(format!("waiting for nft: {e}")))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if stderr.contains("Operation not permitted") {
            Err(FirewallError::Unavailable(format!(
                "nft is not permitted to change the ruleset (run the agent as root or with CAP_NET_ADMIN): {stderr}"
            )))
        } else {
            Err(FirewallError::Failed(stderr))
        }
    }

    /// Puts `policy` in force and reads the table back to confirm it is; on
    /// failure leaves whatever nft left (its load is one transaction).
    pub async fn apply(&self, policy: &Policy) -> Result<(), FirewallError> {
        self.run(&["-f", "-"], Some(&script(policy))).await?;
        self.verify().await
    }

    /// [`Self::apply`], and on failure returns the table to `previous` (`None`: no table).
    pub async fn isolate(
        &self,
        policy: &Policy,
        previous: Option<&Policy>,
    ) -> Result<(), FirewallError> {
        if let Err(error) = self.apply(policy).await {
            let rollback = match previous {
                Some(previous) => self
                    .run(&["-f", "-"], Some(&script(previous)))
                    .await
                    .map(drop),
                None => self.release().await,
            };
            let note = match rollback {
                Ok(()) => "rolled back".to_string(),
                Err(rollback) => format!("rolling back also failed: {rollback}"),
            };
            // The kind stays the original failure's: it tells whether enforcement is possible here.
            return Err(match error {
                FirewallError::Unavailable(m) => FirewallError::Unavailable(format!("{m}; {note}")),
                FirewallError::Failed(m) => FirewallError::Failed(format!("{m}; {note}")),
            });
        }
        Ok(())
    }

    /// Deletes the agent's table (nothing else); absent already is fine.
    pub async fn release(&self) -> Result<(), FirewallError> {
        match self.run(&["delete", "table", "inet", TABLE], None).await {
            Ok(_) => {}
            Err(FirewallError::Failed(message)) if message.contains("No such file") => {}
            Err(error) => return Err(error),
        }
        match self.table().await? {
            None => Ok(()),
            Some(_) => Err(FirewallError::Failed(format!(
                "table inet {TABLE} is still there after deleting it"
            ))),
        }
    }

    /// Whether the table is in force: both base chains hooked with a drop policy.
    pub async fn verify(&self) -> Result<(), FirewallError> {
        let listing = self.table().await?.ok_or_else(|| {
            FirewallError::Failed(format!("table inet {TABLE} is missing after applying it"))
        })?;
        for hook in ["input", "output", "forward"] {
            let hooked = listing["nftables"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item.get("chain"))
                .any(|chain| chain["hook"] == hook && chain["policy"] == "drop");
            if !hooked {
                return Err(FirewallError::Failed(format!(
                    "table inet {TABLE} has no {hook} chain dropping by default"
                )));
            }
        }
        Ok(())
    }

    /// The agent's table as nft lists it in JSON, if it exists.
    async fn table(&self) -> Result<Option<serde_json::Value>, FirewallError> {
        match self
            .run(&["-j", "list", "table", "inet", TABLE], None)
            .await
        {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| FirewallError::Failed(format!("unreadable nft listing: {e}"))),
            Err(FirewallError::Failed(message)) if message.contains("No such file") => Ok(None),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_isolation_keeps_only_loopback_established_and_the_control_plane() {
        let policy = Policy {
            isolation: Isolation::Full,
            control_plane: vec![
                "10.0.0.1:8443".parse().unwrap(),
                "[fd00::1]:8443".parse().unwrap(),
            ],
            resolvers: vec!["10.0.0.53".parse().unwrap()],
            allow: vec!["192.0.2.0/24".parse().unwrap()],
        };
        let text = script(&policy);
        assert!(text.starts_with("table inet palisade\ndelete table inet palisade\n"));
        assert_eq!(text.matches("policy drop;").count(), 3);
        assert!(text.contains("hook forward"));
        assert!(text.contains("ip daddr 10.0.0.1 tcp dport 8443 accept"));
        assert!(text.contains("ip6 daddr fd00::1 tcp dport 8443 accept"));
        assert!(text.contains("ip daddr 10.0.0.53 udp dport 53 accept"));
        assert!(
            !text.contains("192.0.2.0/24"),
            "the allow-list is for Selective only"
        );
    }

    #[test]
    fn selective_isolation_adds_the_allow_list_both_ways() {
        let policy = Policy {
            isolation: Isolation::Selective,
            control_plane: vec![],
            resolvers: vec![],
            allow: vec!["192.0.2.0/24".parse().unwrap()],
        };
        let text = script(&policy);
        assert!(text.contains("ip daddr 192.0.2.0/24 accept"));
        assert!(text.contains("ip saddr 192.0.2.0/24 accept"));
    }
}
