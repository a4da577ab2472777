//! Compiles the upstream Kubernetes `.proto` files in `proto/` into one descriptor set, which
//! `src/protobuf` decodes request bodies with.

use std::path::Path;

/// The API group-versions whose kinds devcluster decodes from protobuf (their imports follow).
const PROTOS: &[&str] = &[
    "api/admissionregistration/v1/generated.proto",
    "api/apps/v1/generated.proto",
    "api/authentication/v1/generated.proto",
    "api/authorization/v1/generated.proto",
    "api/certificates/v1/generated.proto",
    "api/coordination/v1/generated.proto",
    "api/core/v1/generated.proto",
    "api/events/v1/generated.proto",
    "api/policy/v1/generated.proto",
    "api/rbac/v1/generated.proto",
    "kube-aggregator/pkg/apis/apiregistration/v1/generated.proto",
    "apimachinery/pkg/apis/meta/v1/generated.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::Compiler::new(["proto"])?
        .include_source_info(false)
        .include_imports(true)
        .open_files(PROTOS)?
        .encode_file_descriptor_set();
    let out_dir = std::env::var("OUT_DIR")?;
    std::fs::write(Path::new(&out_dir).join("kubernetes.fds"), descriptors)?;
    Ok(())
}
