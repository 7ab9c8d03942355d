//! What the shim reads from a container's OCI spec and an exec's process spec.

use std::{path::Path, time::Duration};

use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Spec};

use super::error::Failure;
use crate::arg_limits;

/// Annotation that sets the deadline of every runc call for one container, in seconds.
pub const TIMEOUT_ANNOTATION: &str = "io.sluice.runc-timeout-seconds";

/// What the shim reads from the bundle's `config.json`.
pub(super) struct BundleSpec {
    pub own_pid_namespace: bool,
    pub runc_timeout: Option<Duration>,
}

/// Reads `config.json`; a spec that does not load is left for runc to report.
pub(super) fn read_spec(bundle: &Path) -> Result<BundleSpec, Failure> {
    let Ok(spec) = Spec::load(bundle.join("config.json")) else {
        return Ok(BundleSpec {
            own_pid_namespace: true,
            runc_timeout: None,
        });
    };
    let runc_timeout = runc_timeout(&spec)?;
    if let Some(p) = spec.process() {
        let stack = p.rlimits().as_ref().and_then(|rs| {
            rs.iter()
                .find(|r| r.typ() == PosixRlimitType::RlimitStack)
                .map(|r| r.soft())
        });
        let none = Vec::new();
        arg_limits::check_process(
            p.args().as_ref().unwrap_or(&none),
            p.env().as_ref().unwrap_or(&none),
            stack,
        )
        .map_err(Failure::TooBig)?;
    }
    Ok(BundleSpec {
        own_pid_namespace: has_own_pid_namespace(&spec),
        runc_timeout,
    })
}

fn runc_timeout(spec: &Spec) -> Result<Option<Duration>, Failure> {
    let Some(v) = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(TIMEOUT_ANNOTATION))
    else {
        return Ok(None);
    };
    match v.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        _ => Err(Failure::BadTimeout {
            annotation: TIMEOUT_ANNOTATION,
            value: v.clone(),
        }),
    }
}

/// Whether the spec gives the container its own pid namespace.
fn has_own_pid_namespace(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|nss| {
            nss.iter()
                .any(|ns| ns.typ() == LinuxNamespaceType::Pid && ns.path().is_none())
        })
}

/// The exec's process spec with `terminal` set to the request's flag: the Go shim's
/// `Init.exec` (`process/init.go`, `spec.Terminal = r.Terminal`) lets the flag win, and clients
/// send a spec copied from the container's with only the flag set. Like the Go shim, a spec
/// that is not a JSON object is refused here, not at Start.
pub(super) fn exec_spec(spec: &[u8], terminal: bool) -> Result<Vec<u8>, Failure> {
    let spec = match serde_json::from_slice(spec) {
        Ok(serde_json::Value::Object(mut process)) => {
            process.insert("terminal".into(), terminal.into());
            serde_json::to_vec(&process).map_err(|e| Failure::BadSpec(e.to_string()))?
        }
        Ok(_) => {
            return Err(Failure::BadSpec(
                "the process spec is not a JSON object".into(),
            ))
        }
        Err(e) => {
            return Err(Failure::BadSpec(format!(
                "the process spec is not JSON: {e}"
            )))
        }
    };
    arg_limits::check_process_json(&spec).map_err(Failure::TooBig)?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_decides_the_terminal() {
        let spec = exec_spec(br#"{"args":["sh"],"terminal":false}"#, true).expect("object");
        let v: serde_json::Value = serde_json::from_slice(&spec).expect("json");
        assert_eq!(v["terminal"], true);
        assert_eq!(v["args"][0], "sh");
    }

    #[test]
    fn a_spec_that_is_no_object_is_refused_with_why() {
        for (spec, want) in [
            (&b"[1]"[..], "the process spec is not a JSON object"),
            (b"{", "the process spec is not JSON"),
        ] {
            let e = exec_spec(spec, false).expect_err("refused");
            assert!(e.to_string().starts_with(want), "{e}");
        }
    }

    #[test]
    fn the_timeout_annotation_must_be_positive_seconds() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (value, want) in [("2.5", Some(Duration::from_millis(2500))), ("0", None)] {
            let mut spec = Spec::default();
            spec.set_annotations(Some(
                [(TIMEOUT_ANNOTATION.to_string(), value.to_string())].into(),
            ));
            spec.save(dir.path().join("config.json")).expect("save");
            match (read_spec(dir.path()), want) {
                (Ok(s), Some(d)) => assert_eq!(s.runc_timeout, Some(d)),
                (Err(e), None) => assert_eq!(
                    e.to_string(),
                    format!(
                        "annotation {TIMEOUT_ANNOTATION}=\"0\" is not a positive number of seconds"
                    )
                ),
                (Ok(_), None) => panic!("{value} accepted"),
                (Err(e), Some(_)) => panic!("{value} refused: {e}"),
            }
        }
    }
}
