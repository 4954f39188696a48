use std::str::FromStr;

/// How the [`Balancer`](super::Balancer) chooses among healthy servers (`--lb-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// `rr`: rotate through the healthy servers.
    #[default]
    RoundRobin,
    /// `priority`: the first healthy server in flag order.
    Priority,
}

/// An `--lb-mode` value other than `rr` or `priority`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown load-balancing mode {0:?} (expected rr or priority)")]
pub struct ParseStrategyError(pub String);

impl FromStr for Strategy {
    type Err = ParseStrategyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rr" => Ok(Strategy::RoundRobin),
            "priority" => Ok(Strategy::Priority),
            other => Err(ParseStrategyError(other.to_owned())),
        }
    }
}

/// The healthy servers in the order to try them: the first is chosen, the second is where a
/// retry goes. `start` is the round-robin position (ignored by `Priority`).
pub(super) fn order(strategy: Strategy, healthy: &[bool], start: usize) -> Vec<usize> {
    let n = healthy.len();
    let offset = match strategy {
        Strategy::RoundRobin if n > 0 => start % n,
        _ => 0,
    };
    (0..n)
        .map(|i| (offset + i) % n)
        .filter(|&i| healthy[i])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders() {
        assert_eq!(order(Strategy::Priority, &[false, true, true], 2), [1, 2]);
        assert_eq!(order(Strategy::RoundRobin, &[true, false, true], 2), [2, 0]);
        assert_eq!(
            order(Strategy::RoundRobin, &[true, true, true], 4),
            [1, 2, 0]
        );
        assert!(order(Strategy::RoundRobin, &[false, false], 0).is_empty());
        assert!(order(Strategy::RoundRobin, &[], 3).is_empty());
        assert_eq!("rr".parse(), Ok(Strategy::RoundRobin));
        assert_eq!("priority".parse(), Ok(Strategy::Priority));
        assert!("consistent-hashing".parse::<Strategy>().is_err());
    }
}
