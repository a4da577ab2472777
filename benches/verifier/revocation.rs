//! Revocation latency: patch `spec.active: false` -> first 401, over 50 trials.

/// Prints the revocation latency figures.
pub async fn report() {
    println!("== revocation latency: skipped (needs devcluster, not merged yet)");
}
