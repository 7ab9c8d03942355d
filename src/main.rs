//! containerd-shim-sluice-v2: a containerd runc shim (v2) that never deadlocks on runc's pipes.

mod arg_limits;
mod cgroup;
mod container;
mod error;
mod events;
mod frames;
mod io;
mod logger;
mod manager;
mod memory;
mod process;
mod reaper;
mod runc;
mod tail;
mod task;
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
    let code = manager::run(&runtime, &args);
    if code != 0 {
        std::process::exit(code);
    }
}
