//! Integration tests of the reference daemons and tools in `examples/`: they are run as the
//! operator runs them, as processes, and judged by exit code and output.

mod credentials;
mod examples;
mod hub_limits;
mod raven;
mod yurt_manager;
mod yurthub;

/// `target/<profile>/examples/<name>`, next to this test binary's `deps/` directory: the daemons
/// these tests run as processes (`cargo test` builds the examples).
pub(crate) fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test` (which builds examples)",
        path.display()
    );
    path
}
