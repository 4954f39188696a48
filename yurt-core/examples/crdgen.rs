//! Writes every OpenYurt CustomResourceDefinition of `yurt_core::crd::crds()` as one YAML file
//! per definition, named `<group>_<plural>.yaml`.
//!
//! ```text
//! cargo run -p yurt-core --example crdgen -- [DIR]    # DIR defaults to deploy/crds
//! ```
//!
//! `deploy/crds/` is checked in; yurt-core's drift test (`tests/it/crd.rs`) includes this file
//! and fails when the checked-in files differ from what `render_crd_yaml` makes of the types.

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// The command that regenerates `deploy/crds/`, named in each file's header.
pub(crate) const REGENERATE: &str = "cargo run -p yurt-core --example crdgen";

/// Renders one definition as the YAML document written to `deploy/crds/`: a header comment
/// naming the generator, then the definition.
pub(crate) fn render_crd_yaml(crd: &CustomResourceDefinition) -> String {
    let body = serde_yaml::to_string(crd).expect("a CustomResourceDefinition serializes to YAML");
    format!("# Generated from the yurt-core CRD types by `{REGENERATE}`; do not edit.\n{body}")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "deploy/crds".into()),
    );
    std::fs::create_dir_all(&dir)?;
    for crd in yurt_core::crd::crds() {
        let path = dir.join(yurt_core::crd::crd_file_name(&crd));
        std::fs::write(&path, render_crd_yaml(&crd))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
