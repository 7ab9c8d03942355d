//! Links the shim as a position-dependent executable.
//!
//! Every shim is a separate process, hundreds per node. A position-independent executable
//! applies some 20,000 relocations at start, which turns ~400 KiB of read-only data into private
//! memory in each of them; a fixed-address binary shares those pages between all shims.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
