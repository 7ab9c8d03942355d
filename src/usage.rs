//! The command line as an operator meets it: `-h`, `-v`, flag errors and the checks `start` and
//! `delete` need before the containerd-shim crate runs them.
//!
//! Matches the stock shim (containerd `runtime/v2/shim/shim.go` parseFlags, Go's `flag`
//! package with ExitOnError): usage goes to stderr; `-h`/`-help` exits 0; a flag that does not
//! parse prints the error and the usage and exits 2; a command that cannot run exits 1.

use std::ffi::OsString;

use crate::manager::RUNTIME_ID;

/// The environment variable containerd sets for `start` and `delete` (and for serving): its
/// ttrpc address, where the shim publishes events. The crate refuses to run without it.
pub const TTRPC_ADDRESS: &str = "TTRPC_ADDRESS";

/// Go's `flag` package exits 2 on a flag it cannot parse.
pub const EXIT_USAGE: i32 = 2;
/// The stock shim exits 1 when its command fails (shim.go: `os.Exit(1)`).
pub const EXIT_FAILED: i32 = 1;

/// The shim's flags, in the order Go prints them (sorted by name): name, value type (empty for
/// a bool), usage. Those of the stock shim, plus `-info` (containerd 1.7 and later).
const FLAGS: &[(&str, &str, &str)] = &[
    ("address", "string", "grpc address back to main containerd"),
    ("bundle", "string", "path to the bundle if not workdir"),
    ("debug", "", "enable debug output in logs"),
    ("id", "string", "id of the task"),
    (
        "info",
        "",
        "get the option protobuf from stdin, print the shim info protobuf to stdout, and exit",
    ),
    ("namespace", "string", "namespace that owns the shim"),
    (
        "publish-binary",
        "string",
        "path to publish binary (used for publishing events)",
    ),
    ("socket", "string", "socket path to serve"),
    ("v", "", "show the shim version and exit"),
    // The crate's long spelling of -v; not in the stock usage, accepted all the same.
    ("version", "", ""),
];

const COMMANDS: &str = "\
Commands:
  start    start (or reuse) the shim serving a container and print its socket address;
           run by containerd, which sets TTRPC_ADDRESS
  delete   clean up after a container whose shim is gone; run by containerd
  doctor   check this node for what sluice needs (`doctor --help`; `doctor --json`)
Without a command the shim serves the task API on -socket; containerd starts it so.
";

/// What `main` does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing for us: serve, start or delete as before.
    Proceed,
    /// Print `text` to stderr and exit with `code`.
    Exit { text: String, code: i32 },
}

/// The usage text, as Go's `flag.PrintDefaults` lays it out, then the commands.
pub fn usage(argv0: &str) -> String {
    let mut s = format!("Usage of {argv0}:\n");
    for (name, kind, text) in FLAGS {
        if text.is_empty() {
            continue;
        }
        let head = if kind.is_empty() {
            format!("  -{name}")
        } else {
            format!("  -{name} {kind}")
        };
        // Go puts a one-letter bool's usage on the same line, after a tab.
        if head.len() <= 4 {
            s.push_str(&format!("{head}\t{text}\n"));
        } else {
            s.push_str(&format!("{head}\n    \t{text}\n"));
        }
    }
    s.push('\n');
    s.push_str(COMMANDS);
    s
}

/// Parses the flags as Go's `flag` package does (it stops at the first argument that is not a
/// flag, and at `--`) and returns the command, if any. `Err(None)` is a request for help.
fn parse(args: &[String]) -> Result<Option<&str>, Option<String>> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a.len() < 2 || !a.starts_with('-') {
            return Ok(Some(a));
        }
        if a == "--" {
            return Ok(args.get(i + 1).map(String::as_str));
        }
        let body = a.strip_prefix("--").unwrap_or(&a[1..]);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(Some(format!("bad flag syntax: {a}")));
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some((_, kind, _)) = FLAGS.iter().find(|(n, _, _)| *n == name) else {
            if name == "h" || name == "help" {
                return Err(None);
            }
            return Err(Some(format!("flag provided but not defined: -{name}")));
        };
        if kind.is_empty() {
            if let Some(v) = value {
                // strconv.ParseBool's spellings.
                if !matches!(
                    v,
                    "1" | "t"
                        | "T"
                        | "TRUE"
                        | "true"
                        | "True"
                        | "0"
                        | "f"
                        | "F"
                        | "FALSE"
                        | "false"
                        | "False"
                ) {
                    return Err(Some(format!(
                        "invalid boolean value {v:?} for -{name}: parse error"
                    )));
                }
            }
        } else if value.is_none() {
            if i + 1 >= args.len() {
                return Err(Some(format!("flag needs an argument: -{name}")));
            }
            i += 1;
        }
        i += 1;
    }
    Ok(None)
}

/// Decides what the command line asks for before anything runs. `args` excludes argv[0];
/// `env` looks up an environment variable.
pub fn preflight(argv0: &str, args: &[String], env: impl Fn(&str) -> Option<OsString>) -> Outcome {
    match parse(args) {
        Err(None) => Outcome::Exit {
            text: usage(argv0),
            code: 0,
        },
        Err(Some(e)) => Outcome::Exit {
            text: format!("{e}\n{}", usage(argv0)),
            code: EXIT_USAGE,
        },
        Ok(Some(cmd @ ("start" | "delete"))) if env(TTRPC_ADDRESS).is_none() => {
            Outcome::Exit {
                text: format!(
                "{RUNTIME_ID}: `{cmd}` needs the environment variable {TTRPC_ADDRESS}, which is \
                 not set. containerd sets it when it runs this command to {} a container's \
                 shim; it is not meant to be run by hand (try `doctor` to check a node).\n",
                if cmd == "start" { "start" } else { "clean up after" }
            ),
                code: EXIT_FAILED,
            }
        }
        Ok(_) => Outcome::Proceed,
    }
}

/// `-v`: what the stock shim prints (name, version, revision), plus how this binary was built,
/// so an operator can tell the static release build from a development one.
pub fn version() -> String {
    format!(
        "containerd-shim-sluice-v2:\n  Version:  {}\n  Revision: {}\n  Build:    {}, {} profile, {}\n  Rust version: {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("SLUICE_REVISION"),
        if cfg!(target_feature = "crt-static") {
            "static"
        } else {
            "dynamic"
        },
        env!("SLUICE_PROFILE"),
        env!("SLUICE_TARGET"),
        env!("SLUICE_RUSTC"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    fn ttrpc_set(k: &str) -> Option<OsString> {
        (k == TTRPC_ADDRESS).then(|| "/run/containerd/containerd.sock.ttrpc".into())
    }

    fn exit(a: &[&str], env: fn(&str) -> Option<OsString>) -> (String, i32) {
        match preflight("/usr/bin/containerd-shim-sluice-v2", &args(a), env) {
            Outcome::Exit { text, code } => (text, code),
            Outcome::Proceed => panic!("{a:?} proceeded"),
        }
    }

    #[test]
    fn help_prints_the_stock_flags_and_the_commands_and_exits_0() {
        for h in ["-h", "--h", "-help", "--help"] {
            let (text, code) = exit(&[h], no_env);
            assert_eq!(code, 0, "{h}");
            assert!(text.starts_with("Usage of /usr/bin/containerd-shim-sluice-v2:\n  -address string\n    \tgrpc address back to main containerd\n"), "{h}: {text}");
            assert!(
                text.contains("\n  -v\tshow the shim version and exit\n"),
                "{text}"
            );
            assert!(
                text.contains("\n  -debug\n    \tenable debug output in logs\n"),
                "{text}"
            );
            for cmd in ["\n  start ", "\n  delete ", "\n  doctor "] {
                assert!(text.contains(cmd), "{cmd:?} missing: {text}");
            }
            assert!(
                !text.contains("-version"),
                "the alias is not advertised: {text}"
            );
        }
    }

    #[test]
    fn help_after_flags_still_helps_but_not_after_the_command() {
        assert_eq!(exit(&["-debug", "-h"], no_env).1, 0);
        // Go stops at the first non-flag: `start -h` is start, here without its environment.
        assert_eq!(exit(&["start", "-h"], no_env).1, EXIT_FAILED);
        assert_eq!(
            preflight("x", &args(&["start", "-h"]), ttrpc_set),
            Outcome::Proceed
        );
        // A flag's value is not a flag.
        assert_eq!(
            preflight("x", &args(&["-id", "-h"]), ttrpc_set),
            Outcome::Proceed
        );
    }

    #[test]
    fn bad_flags_say_what_as_go_does_and_exit_2() {
        for (a, msg) in [
            (&["-x"][..], "flag provided but not defined: -x"),
            (&["--nope=1"][..], "flag provided but not defined: -nope"),
            (&["-id"][..], "flag needs an argument: -id"),
            (
                &["-debug=x"][..],
                "invalid boolean value \"x\" for -debug: parse error",
            ),
            (&["---id", "1"][..], "bad flag syntax: ---id"),
        ] {
            let (text, code) = exit(a, ttrpc_set);
            assert_eq!(code, EXIT_USAGE, "{a:?}");
            assert!(
                text.starts_with(&format!(
                    "{msg}\nUsage of /usr/bin/containerd-shim-sluice-v2:\n"
                )),
                "{a:?}: {text}"
            );
        }
    }

    #[test]
    fn start_and_delete_without_containerd_name_the_variable_and_containerd() {
        for cmd in ["start", "delete"] {
            let (text, code) = exit(&["-namespace", "k8s.io", "-id", "c1", cmd], no_env);
            assert_eq!(code, EXIT_FAILED);
            assert!(
                text.starts_with(&format!(
                    "io.containerd.sluice.v2: `{cmd}` needs the environment variable \
                     TTRPC_ADDRESS, which is not set. containerd sets it when it runs this command"
                )),
                "{text}"
            );
            assert!(!text.contains("NotPresent"), "{text}");
            assert_eq!(
                preflight("x", &args(&["-namespace", "n", cmd]), ttrpc_set),
                Outcome::Proceed
            );
        }
    }

    #[test]
    fn serving_and_good_flags_proceed() {
        for a in [
            &[][..],
            &[
                "-namespace",
                "n",
                "-id",
                "i",
                "-address",
                "/a",
                "-socket",
                "unix:///s",
            ][..],
            &[
                "-debug",
                "-debug=false",
                "--bundle=/b",
                "-publish-binary",
                "/c",
            ][..],
            &["-info"][..],
        ] {
            assert_eq!(preflight("x", &args(a), no_env), Outcome::Proceed, "{a:?}");
        }
        // `--` ends the flags; what follows is the command.
        assert_eq!(exit(&["--", "delete"], no_env).1, EXIT_FAILED);
    }

    #[test]
    fn version_says_how_it_was_built() {
        let v = version();
        assert!(
            v.starts_with("containerd-shim-sluice-v2:\n  Version:  "),
            "{v}"
        );
        let build = v
            .lines()
            .find(|l| l.starts_with("  Build:"))
            .expect("Build line");
        let flavour = if cfg!(target_feature = "crt-static") {
            "static"
        } else {
            "dynamic"
        };
        assert!(build.contains(flavour), "{build}");
        assert!(build.contains("profile"), "{build}");
    }
}
