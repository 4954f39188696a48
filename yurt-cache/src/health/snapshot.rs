use http::Uri;
use tokio::time::Instant;

/// The health of every upstream server, in the order they were configured.
#[derive(Debug, Clone)]
pub struct HealthSnapshot {
    /// One entry per server, in configuration (flag) order.
    pub servers: Vec<ServerHealth>,
    /// Probe rounds completed so far (0 before the first).
    pub round: u64,
}

/// One server's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHealth {
    /// The server's base URI.
    pub server: Uri,
    /// Whether requests may be sent to it.
    pub healthy: bool,
    /// When it entered its current state (its start for a server not yet probed).
    pub since: Instant,
    /// Consecutive successful probes so far (0 after a failure).
    pub successes: u32,
    /// Consecutive failed probes so far (0 after a success).
    pub failures: u32,
}

impl HealthSnapshot {
    /// Every server unhealthy, not yet probed.
    pub fn unprobed(servers: impl IntoIterator<Item = Uri>) -> Self {
        let now = Instant::now();
        HealthSnapshot {
            servers: servers
                .into_iter()
                .map(|server| ServerHealth {
                    server,
                    healthy: false,
                    since: now,
                    successes: 0,
                    failures: 0,
                })
                .collect(),
            round: 0,
        }
    }

    /// Whether the `i`th server is healthy (false if there is none).
    pub fn is_healthy(&self, i: usize) -> bool {
        self.servers.get(i).is_some_and(|s| s.healthy)
    }

    /// Whether any server is healthy (upstream's `IsHealthy`).
    pub fn any_healthy(&self) -> bool {
        self.servers.iter().any(|s| s.healthy)
    }
}
