//! Drivers that put a layer 3 [`Plan`] onto a Linux node, and the [`Engine`] that composes them.
//!
//! Each [`Driver`] owns some kinds of [`Item`] ([`Driver::owns`]): the [`netlink`] driver the
//! VXLAN device `raven0`, its forwarding and neighbour entries and the routes for remote pod
//! subnets; the [`nat`] driver the skip-NAT subnets; the [`super::wireguard`] driver the device
//! `raven-wg0` and its peers. A driver can say which of its items exist on the node right now
//! ([`Driver::observe`]), and perform a list of [`Change`]s ([`Driver::apply`]), each of them
//! idempotent (adding what exists replaces it, removing what is gone succeeds).
//!
//! The engine never trusts what it applied last: [`Engine::sync`] observes, diffs the
//! observation against the desired plan and applies the difference, repeating (a bounded
//! number of rounds) until nothing is left, because recreating a device removes what lived on
//! it. So a route someone deleted, a rule left behind by an agent that crashed, or a device
//! created with other parameters are all repaired by the next sync, and [`Engine::teardown`]
//! (a sync to the empty plan) removes everything of ours that exists, whoever created it.
//! Ownership markers keep us off other software's state: routes carry the routing protocol
//! number [`netlink::ROUTE_PROTOCOL`], rules live in our own nftables table or iptables chain,
//! and the devices have Raven's fixed names.

#[cfg(feature = "crd")]
pub mod agent;
pub mod nat;
pub mod netlink;

use async_trait::async_trait;

use super::{Change, Item, Plan, diff};

/// Why a driver could not observe or change the node.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A netlink request failed.
    #[error("netlink: {0}")]
    Netlink(String),
    /// A command (nft, iptables) failed or could not run.
    #[error("{command}: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its error output or the reason it did not run.
        message: String,
    },
    /// The WireGuard driver refused a change.
    #[error(transparent)]
    WireGuard(#[from] super::wireguard::WireGuardError),
    /// Entering a network namespace or opening a socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The engine's changes did not converge (someone keeps changing the same objects).
    #[error("state did not converge after {rounds} rounds; still to do: {remaining}")]
    NotConverged {
        /// Rounds run.
        rounds: usize,
        /// The changes of the last round.
        remaining: String,
    },
}

/// One kind of node state (links and routes, NAT rules, WireGuard).
#[async_trait]
pub trait Driver: Send + Sync {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// Whether `item` is this driver's to create and remove.
    fn owns(&self, item: &Item) -> bool;
    /// The items of this driver's kinds that exist on the node now.
    async fn observe(&self) -> Result<Vec<Item>, DriverError>;
    /// Performs `changes` in order; each one is idempotent.
    async fn apply(&self, changes: &[Change]) -> Result<(), DriverError>;
}

/// The userspace WireGuard device and its peers (see [`super::wireguard`]). It keeps its state in
/// the process (a TUN device goes away with the process), so what it observes is what it runs.
#[async_trait]
impl Driver for super::wireguard::WireGuardDriver {
    fn name(&self) -> &'static str {
        "wireguard"
    }

    fn owns(&self, item: &Item) -> bool {
        Self::owns(item)
    }

    async fn observe(&self) -> Result<Vec<Item>, DriverError> {
        Ok(Self::observe(self).await)
    }

    async fn apply(&self, changes: &[Change]) -> Result<(), DriverError> {
        Ok(Self::apply(self, changes).await?)
    }
}

/// Rounds of observe-diff-apply in one [`Engine::sync`] before giving up.
const MAX_ROUNDS: usize = 4;

/// Composes drivers: every item of a plan goes to the driver that owns it.
pub struct Engine {
    drivers: Vec<Box<dyn Driver>>,
}

impl Engine {
    /// An engine over `drivers`, listed in creation order: devices a later driver's routes use
    /// (the WireGuard device) come from an earlier driver. Removals run in reverse order.
    pub fn new(drivers: Vec<Box<dyn Driver>>) -> Self {
        Self { drivers }
    }

    /// Makes the node match `desired` and returns the number of changes performed. Items of
    /// the plan that no driver owns are ignored.
    pub async fn sync(&self, desired: &Plan) -> Result<usize, DriverError> {
        let mut total = 0;
        let mut last = String::new();
        for _ in 0..MAX_ROUNDS {
            let mut per_driver = Vec::with_capacity(self.drivers.len());
            for d in &self.drivers {
                let observed = Plan::from_items(desired.role.clone(), d.observe().await?);
                let want = Plan::from_items(
                    desired.role.clone(),
                    desired.items().filter(|i| d.owns(i)).cloned(),
                );
                per_driver.push(diff(&observed, &want));
            }
            let count: usize = per_driver.iter().map(Vec::len).sum();
            if count == 0 {
                return Ok(total);
            }
            total += count;
            last = format!("{:?}", per_driver.concat());
            // Removals first, last driver first (routes before the devices they use) ...
            for (d, changes) in self.drivers.iter().zip(&per_driver).rev() {
                let removals: Vec<Change> = changes
                    .iter()
                    .filter(|c| matches!(c, Change::Remove(_)))
                    .cloned()
                    .collect();
                if !removals.is_empty() {
                    tracing::debug!(driver = d.name(), n = removals.len(), "l3 removals");
                    d.apply(&removals).await?;
                }
            }
            // ... then additions and updates, first driver first.
            for (d, changes) in self.drivers.iter().zip(&per_driver) {
                let rest: Vec<Change> = changes
                    .iter()
                    .filter(|c| !matches!(c, Change::Remove(_)))
                    .cloned()
                    .collect();
                if !rest.is_empty() {
                    tracing::debug!(driver = d.name(), n = rest.len(), "l3 additions/updates");
                    d.apply(&rest).await?;
                }
            }
        }
        Err(DriverError::NotConverged {
            rounds: MAX_ROUNDS,
            remaining: last,
        })
    }

    /// Removes everything of ours from the node (a sync to the empty plan).
    pub async fn teardown(&self) -> Result<usize, DriverError> {
        self.sync(&Plan::empty()).await
    }
}
