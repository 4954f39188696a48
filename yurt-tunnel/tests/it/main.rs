//! Integration tests of yurt-tunnel: real agents and servers on loopback, a stub kubelet behind
//! the agent, faults injected with `yurt_testkit::chaos::ChaosLink`.

mod support;

mod e2e;
mod limits;
mod operator;
mod resilience;
mod security;
mod wireguard;
