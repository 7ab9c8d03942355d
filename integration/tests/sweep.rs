//! The request sweep (issue 16): Task API requests sent straight to the shim, filled in as
//! containerd's Go client and others may fill them, each answered as the stock shim answers it.
//! The table is `sluice_integration::sweep::ROWS`; integration/README.md describes it.

use sluice_integration::sweep;

/// An exec whose request asks for a terminal while its spec (copied from the container's) says
/// none, as the Go client's `task.Exec` with a terminal IO sends it, gets a tty; and the other
/// way round gets none: the request's flag wins, under both shims.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn exec_terminal_flag_overrides_the_spec() {
    sweep::run("sweep-tty", &["Exec terminal"]);
}

/// ResizePty of a process without a terminal (init, a running or a never-started exec) is OK
/// and changes nothing; a terminal's resize reaches it.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn resize_without_a_terminal_is_a_no_op() {
    sweep::run("sweep-resize", &["ResizePty"]);
}

/// Every row of the table, against both shims.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn every_row_answers_as_the_stock_shim() {
    sweep::run("sweep", &[]);
}
