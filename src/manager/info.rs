//! `-info`: what containerd 2.x asks every runtime handler about itself (name, version, the
//! runc options it was given, and runc's `features` JSON), as a protobuf `RuntimeInfo` on stdout.

use std::io::{Read, Write};

use containerd_shim::protos::{
    protobuf::{well_known_types::any::Any, Message, MessageField},
    types::introspection::{RuntimeInfo, RuntimeVersion},
};
use sluice_shim_proto::bootstrap::{self, StartInput};

use super::RUNTIME_ID;
use crate::runc::Runc;

/// The type URL containerd resolves runc's features JSON with.
const FEATURES_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

/// Prints the `RuntimeInfo`; returns the process exit code.
pub async fn print() -> i32 {
    match info().await {
        Ok(bytes) => match std::io::stdout().write_all(&bytes) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("containerd-shim-sluice-v2 -info: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("containerd-shim-sluice-v2 -info: {e}");
            1
        }
    }
}

async fn info() -> Result<Vec<u8>, String> {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    info_for(&stdin).await
}

/// The `RuntimeInfo` for the options containerd wrote to stdin.
async fn info_for(stdin: &[u8]) -> Result<Vec<u8>, String> {
    let input = bootstrap::parse(stdin).map_err(|e| e.to_string())?;
    let options = input.runc_options().map_err(|e| e.to_string())?;
    crate::reaper::start().map_err(|e| format!("start reaper: {e}"))?;
    let runc = crate::runc::runc_for(&options, "", Runc::deadline_from_env())
        .map_err(|e| e.to_string())?;
    let features = runc.features().await.map_err(|e| e.to_string())?;
    let info = RuntimeInfo {
        name: RUNTIME_ID.into(),
        version: MessageField::some(RuntimeVersion {
            version: env!("CARGO_PKG_VERSION").into(),
            revision: option_env!("SLUICE_REVISION").unwrap_or_default().into(),
            ..Default::default()
        }),
        options: match input {
            StartInput::Options(any) => MessageField::some(any),
            _ => MessageField::none(),
        },
        features: MessageField::some(Any {
            type_url: FEATURES_TYPE.into(),
            value: features,
            ..Default::default()
        }),
        ..Default::default()
    };
    info.write_to_bytes().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use containerd_shim::protos::shim::oci::Options;

    use super::*;

    #[tokio::test]
    async fn reports_name_options_and_the_features_of_the_runc_it_was_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runc = dir.path().join("runc");
        std::fs::write(
            &runc,
            "#!/bin/sh\n[ \"$3\" = features ] && echo '{\"ociVersionMin\":\"1.0.0\"}'\n",
        )
        .expect("fake runc");
        std::fs::set_permissions(&runc, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let opts = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: Options {
                binary_name: runc.display().to_string(),
                ..Default::default()
            }
            .write_to_bytes()
            .expect("encode"),
            ..Default::default()
        };
        let bytes = info_for(&opts.write_to_bytes().expect("encode"))
            .await
            .expect("info");
        let info = RuntimeInfo::parse_from_bytes(&bytes).expect("decode");
        assert_eq!(info.name, "io.containerd.sluice.v2");
        assert_eq!(info.options.type_url, "containerd.runc.v1.Options");
        assert_eq!(info.features.type_url, FEATURES_TYPE);
        assert_eq!(
            String::from_utf8_lossy(&info.features.value).trim(),
            r#"{"ociVersionMin":"1.0.0"}"#
        );
    }
}
