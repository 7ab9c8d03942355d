//! The `info` of each entry in a `Pids` answer: the exec ID of an exec process, packed as the Go
//! shim packs it (`containerd.runc.v1.ProcessDetails`), so `ctr task ps` shows it.

use containerd_shim_protos::{
    protobuf::{well_known_types::any::Any, Message},
    shim::oci::ProcessDetails,
};

pub fn process_details(exec_id: &str) -> Result<Any, containerd_shim_protos::protobuf::Error> {
    let d = ProcessDetails {
        exec_id: exec_id.to_string(),
        ..Default::default()
    };
    Ok(Any {
        // Spelled out: the descriptor would build protobuf's reflection tables in the shim.
        type_url: format!("containerd.runc.v1.{}", ProcessDetails::NAME),
        value: d.write_to_bytes()?,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_exec_id_under_the_runc_type() {
        let any = process_details("e1").expect("encode");
        assert_eq!(any.type_url, "containerd.runc.v1.ProcessDetails");
        assert_eq!(
            ProcessDetails::parse_from_bytes(&any.value)
                .expect("decode")
                .exec_id,
            "e1"
        );
    }
}
