//! The fault matrix (issue 5): for every runc verb, five faults (1 MiB floods, a hang, a Go
//! crash dump on one-page pipes, a SIGKILLed runc, one-page pipes), each first against the
//! stock shim with a short timeout, then against sluice: no call outlives its deadline, errors
//! name verb, container, time and runc's words, a grouped neighbour keeps answering while one
//! container is stuck, and nothing is left behind.
//!
//! Run: `cargo test -p sluice-integration --test matrix -- --ignored --nocapture --test-threads=2`
//! (as root, with containerd, runc and busybox-static installed; see scripts/test.sh).

use sluice_integration::matrix::verb_row;

macro_rules! rows {
    ($($name:ident => $verb:literal),* $(,)?) => {
        $(
            #[test]
            #[ignore = "needs root, containerd and runc; run with --ignored"]
            fn $name() {
                verb_row($verb);
            }
        )*
    };
}

rows! {
    create => "create",
    start => "start",
    exec => "exec",
    kill => "kill",
    delete => "delete",
    pause => "pause",
    resume => "resume",
    update => "update",
    ps => "ps",
    state => "state",
    checkpoint => "checkpoint",
}
