//! Cloud-to-edge reverse tunnels.
//!
//! Status: not implemented yet; the `Transport` trait, the agent and the cloud server arrive
//! with the yurt-tunnel issue.

#![forbid(unsafe_code)]
