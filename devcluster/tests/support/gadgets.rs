//! The `Gadget` test CRD (printer columns, short name `gd`, category `devcluster-test`).

#![allow(dead_code)]

use super::kube_tools::Kube;

pub const GADGET_CRD: &str = include_str!("../fixtures/gadget-crd.yaml");

/// A Gadget manifest in namespace `default`.
pub fn gadget(name: &str, color: &str, size: i64) -> String {
    format!(
        "apiVersion: example.devcluster.io/v1\nkind: Gadget\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  color: {color}\n  size: {size}\n"
    )
}

/// Applies the Gadget CRD and waits until it is established.
pub async fn install_gadget_crd(kube: &Kube) {
    let crd = kube.file("gadget-crd.yaml", GADGET_CRD);
    kube.kubectl_ok(&["apply", "-f", &crd]).await;
    kube.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/gadgets.example.devcluster.io",
    ])
    .await;
}
