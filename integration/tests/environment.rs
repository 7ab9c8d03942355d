//! The shim's inherited environment must not change what runc does: see
//! `sluice_integration::environment`.

mod sluice {
    #[test]
    #[ignore = "needs root, containerd and runc; run with --ignored"]
    fn detached_start_under_notify_socket() {
        sluice_integration::environment::detached_start_under_notify_socket(
            sluice_integration::Runtime::Sluice,
        );
    }
}

mod stock_runc_v2 {
    #[test]
    #[ignore = "needs root, containerd and runc; run with --ignored"]
    fn detached_start_under_notify_socket() {
        sluice_integration::environment::detached_start_under_notify_socket(
            sluice_integration::Runtime::RuncV2,
        );
    }
}
