//! containerd-shim-sluice-v2: a containerd runc shim (v2) that never deadlocks on runc's pipes.

mod cgroup;
mod container;
mod doctor;
mod error;
mod events;
mod info;
mod io;
mod logger;
mod process;
mod reaper;
mod runc;
mod service;
mod shim;
mod tail;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("doctor") {
        std::process::exit(doctor::main(&args[2..]));
    }
    if args
        .iter()
        .skip(1)
        .any(|a| matches!(a.as_str(), "-v" | "--v" | "-version" | "--version"))
    {
        println!("containerd-shim-sluice-v2:");
        println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
        println!(
            "  Revision: {}",
            option_env!("SLUICE_REVISION").unwrap_or("unknown")
        );
        return;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("containerd-shim-sluice-v2: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if args
        .iter()
        .skip(1)
        .any(|a| matches!(a.as_str(), "-info" | "--info"))
    {
        std::process::exit(runtime.block_on(info::print()));
    }
    runtime.block_on(containerd_shim::run::<shim::SluiceShim>(
        "io.containerd.sluice.v2",
        Some(shim::config()),
    ));
}
