//! Security (issue 5, item 5): `IoUid`/`IoGid` respected (the container's stdio pipes are owned
//! by them and the container reopens its stdio through `/proc/self/fd/N`, under sluice and the
//! stock shim); the shim's socket is root's alone; only fds 0-2 inside the container.
//!
//! Run: `SLUICE_CONTAINERD=1.6 cargo test -p sluice-integration --test security -- --ignored
//! --nocapture --test-threads=1` (as root; see scripts/test.sh).

use sluice_integration::security as s;

macro_rules! security_tests {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            #[test]
            #[ignore = "needs root, containerd and runc; run with --ignored"]
            fn $name() {
                s::$name();
            }
        )*
    };
}

security_tests! {
    /// sluice's own runtime type, IoUid/IoGid 1000 from its ConfigPath TOML.
    io_uid_sluice,
    /// The stock shim, IoUid/IoGid 1000 from ctr 1.6's --uidmap/--gidmap (the reference).
    io_uid_stock,
    /// sluice installed as containerd-shim-runc-v2, the stock run's client path.
    io_uid_sluice_as_runc_v2,
    /// sluice's own runtime type with --uidmap/--gidmap: the legacy CreateOptions.
    io_uid_sluice_id_map_flags,
    /// Neither: both shims show the same.
    io_uid_control,
    /// Socket and socket dir modes; only fds 0-2 in the container's init and an exec.
    socket_and_descriptors,
}
