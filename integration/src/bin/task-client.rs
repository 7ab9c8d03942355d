//! A minimal client of a shim's ttrpc Task API, for the RPCs ctr 1.6 has no command for.
//!
//! ```text
//! task-client <address> update <id> <LinuxResources JSON>   # e.g. '{"memory":{"limit":67108864}}'
//! task-client <address> close-stdin <id> [<exec id>]
//! ```
//!
//! `<address>` is the content of the bundle's `address` file, e.g. `unix:///run/containerd/s/<hash>`
//! (`<containerd state>/io.containerd.runtime.v2.task/<namespace>/<id>/address`).

use std::process::ExitCode;

use sluice_integration::containers;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match argv.as_slice() {
        [addr, "update", id, json] => containers::update_resources(addr, id, json),
        [addr, "close-stdin", id] => containers::close_stdin(addr, id, ""),
        [addr, "close-stdin", id, exec_id] => containers::close_stdin(addr, id, exec_id),
        _ => {
            eprintln!(
                "usage: task-client <address> update <id> <LinuxResources JSON>\n       \
                 task-client <address> close-stdin <id> [<exec id>]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("task-client: {e}");
            ExitCode::FAILURE
        }
    }
}
