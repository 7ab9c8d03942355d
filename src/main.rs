//! containerd-shim-sluice-v2: a containerd runc shim (v2) that never deadlocks on runc's pipes.

mod arg_limits;
mod cgroup;
mod container;
mod error;
mod events;
mod info;
mod io;
mod logger;
mod process;
mod reaper;
mod runc;
mod serve;
mod service;
mod shim;
mod tail;
mod usage;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The doctor is its own crate (doctor/); the subcommand keeps one binary to install.
    if args.get(1).map(String::as_str) == Some("doctor") {
        std::process::exit(sluice_doctor::main(&args[2..]));
    }
    if let usage::Outcome::Exit { text, code } =
        // argv may be empty (execve allows it): no index may panic.
        usage::preflight(
            args.first()
                .map_or("containerd-shim-sluice-v2", String::as_str),
            args.get(1..).unwrap_or_default(),
            |k| std::env::var_os(k),
        )
    {
        eprint!("{text}");
        std::process::exit(code);
    }
    if args
        .iter()
        .skip(1)
        .any(|a| matches!(a.as_str(), "-v" | "--v" | "-version" | "--version"))
    {
        print!("{}", usage::version());
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
    // Serving is ours (serve.rs); `start`, `delete` and flags that do not parse (whose error
    // the crate reports) stay with the crate's runner.
    let os_args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match containerd_shim::parse(&os_args) {
        Ok(flags) if !matches!(flags.action.as_str(), "start" | "delete") => {
            if let Err(e) = runtime.block_on(serve::run(flags)) {
                log::error!("serve: {e}");
                eprintln!("{}: {e}", shim::RUNTIME_ID);
                std::process::exit(1);
            }
        }
        _ => runtime.block_on(containerd_shim::run::<shim::SluiceShim>(
            shim::RUNTIME_ID,
            Some(shim::config()),
        )),
    }
}
