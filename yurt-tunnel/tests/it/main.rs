//! Integration tests of yurt-tunnel: real agents and servers on loopback, a stub kubelet behind
//! the agent, faults injected with `yurt_testkit::chaos::ChaosLink`.

mod support;

mod e2e;
mod l3_datapath;
mod limits;
mod operator;
mod resilience;
mod security;
mod wireguard;
