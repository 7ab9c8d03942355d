//! Container lifecycle through `ctr`, once under sluice and once under the stock
//! `io.containerd.runc.v2` shim (which validates the harness itself).
//!
//! Run: `cargo test -p sluice-integration --test lifecycle -- --ignored`
//! (as root, with containerd, runc and busybox-static installed; see scripts/test.sh).

sluice_integration::tests_for_both_runtimes!(
    stdout_and_stderr,
    large_stdout,
    stdin,
    exit_code,
    exec,
    kill,
    delete,
    group_shares_one_shim,
);
