//! A payload check in front of every Task API handler.
//!
//! The handlers that ttrpc-compiler generates decode the request with `?` on a generic error,
//! which the ttrpc server answers as UNKNOWN. A payload that is not the method's request type is
//! the client's mistake: it is answered INVALID_ARGUMENT, naming the method, before the
//! generated handler sees it. (containerd's Go shim answers INTERNAL there, "error unmarshalling
//! payload": the fault is the caller's, and errdefs maps INVALID_ARGUMENT to ErrInvalidArgument.)
//!
//! Nothing else changes: a payload that decodes goes to the generated handler untouched, which
//! decodes it again (the price of not forking the generated code; payloads are at most 4 MiB).

use std::collections::HashMap;

use async_trait::async_trait;
use containerd_shim::protos::ttrpc::{
    self,
    r#async::{MethodHandler, Service, TtrpcContext},
};
use log::warn;

use super::{
    methods::{Decode, TASK_METHODS},
    TASK_SERVICES,
};
use crate::error::Error;

/// A generated handler behind a decode check of its payload.
struct Checked {
    /// `containerd.task.v2.Task/State` (or v3), for the error message.
    path: String,
    decode: Decode,
    inner: Box<dyn MethodHandler + Send + Sync>,
}

#[async_trait]
impl MethodHandler for Checked {
    async fn handler(
        &self,
        ctx: TtrpcContext,
        req: ttrpc::Request,
    ) -> ttrpc::Result<ttrpc::Response> {
        if let Err(e) = (self.decode)(&req.payload) {
            let err = Error::InvalidArgument(format!("cannot decode {} request: {e}", self.path));
            return Ok(ttrpc::Error::from(err).into());
        }
        self.inner.handler(ctx, req).await
    }
}

/// Puts the decode check in front of every method of each Task service in `services` (the
/// map `create_task` returns, with the v3 name added). A method the table does not know (a
/// newer crate) is left as it is.
pub fn check_payloads(mut services: HashMap<String, Service>) -> HashMap<String, Service> {
    for name in TASK_SERVICES {
        match services.get_mut(name) {
            Some(service) => guard(name, service),
            None => warn!("no {name} service to guard"),
        }
    }
    services
}

/// Wraps each method of `service`, which is served as `name`.
fn guard(name: &str, service: &mut Service) {
    let methods = std::mem::take(&mut service.methods);
    service.methods = methods
        .into_iter()
        .map(
            |(method, inner)| match TASK_METHODS.iter().find(|(m, _)| *m == method) {
                Some((_, decode)) => {
                    let checked = Checked {
                        path: format!("{name}/{method}"),
                        decode: *decode,
                        inner,
                    };
                    (
                        method,
                        Box::new(checked) as Box<dyn MethodHandler + Send + Sync>,
                    )
                }
                None => {
                    warn!("{name}/{method}: no payload check for this method");
                    (method, inner)
                }
            },
        )
        .collect();
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use containerd_shim::{
        api,
        protos::{
            protobuf::Message,
            shim_async::{create_task, Task},
            ttrpc::Code,
        },
    };

    use super::*;
    use crate::task::TASK_SERVICE;

    /// Counts the requests that reach it and answers OK with an empty payload.
    struct Counting(Arc<AtomicUsize>);

    #[async_trait]
    impl MethodHandler for Counting {
        async fn handler(
            &self,
            _: TtrpcContext,
            _: ttrpc::Request,
        ) -> ttrpc::Result<ttrpc::Response> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(ttrpc::Response::new())
        }
    }

    fn ctx() -> TtrpcContext {
        TtrpcContext {
            mh: Default::default(),
            metadata: HashMap::new(),
            timeout_nano: 0,
        }
    }

    fn request(method: &str, payload: Vec<u8>) -> ttrpc::Request {
        ttrpc::Request {
            service: TASK_SERVICE.into(),
            method: method.into(),
            payload,
            ..Default::default()
        }
    }

    fn guarded(method: &str) -> (HashMap<String, Service>, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let mut methods: HashMap<String, Box<dyn MethodHandler + Send + Sync>> = HashMap::new();
        methods.insert(method.into(), Box::new(Counting(hits.clone())));
        let services = HashMap::from([(
            TASK_SERVICE.to_string(),
            Service {
                methods,
                streams: HashMap::new(),
            },
        )]);
        (check_payloads(services), hits)
    }

    #[tokio::test]
    async fn garbage_payload_is_invalid_argument_naming_the_method() {
        let (services, hits) = guarded("State");
        let handler = &services[TASK_SERVICE].methods["State"];
        let garbage = vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x80];
        let resp = handler
            .handler(ctx(), request("State", garbage))
            .await
            .expect("a response, not a transport error");
        let status = resp.status.as_ref().expect("a status");
        assert_eq!(status.code(), Code::INVALID_ARGUMENT);
        assert!(
            status
                .message()
                .starts_with("cannot decode containerd.task.v2.Task/State request: "),
            "{}",
            status.message()
        );
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn good_payload_reaches_the_handler() {
        let (services, hits) = guarded("Exec");
        let handler = &services[TASK_SERVICE].methods["Exec"];
        let req = api::ExecProcessRequest {
            id: "c1".into(),
            exec_id: "e1".into(),
            ..Default::default()
        };
        let payload = req.write_to_bytes().expect("encode");
        let resp = handler
            .handler(ctx(), request("Exec", payload))
            .await
            .expect("a response");
        assert!(resp.status.is_none(), "{:?}", resp.status);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // An empty payload is a request with every field at its default.
        handler
            .handler(ctx(), request("Exec", Vec::new()))
            .await
            .expect("a response");
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    /// A Task with every method at the trait's default.
    struct Nothing;
    impl Task for Nothing {}

    #[test]
    fn table_covers_exactly_the_generated_methods() {
        let services = create_task(Arc::new(Nothing));
        let mut generated: Vec<&str> = services[TASK_SERVICE]
            .methods
            .keys()
            .map(String::as_str)
            .collect();
        generated.sort_unstable();
        let mut ours: Vec<&str> = TASK_METHODS.iter().map(|(m, _)| *m).collect();
        ours.sort_unstable();
        assert_eq!(generated, ours);
        assert!(services[TASK_SERVICE].streams.is_empty());
    }

    #[test]
    fn each_method_checks_its_own_type() {
        // Field 1 of every Task request is the container ID, a string: bytes that are not
        // UTF-8 there decode as no request type. (A wrong wire type would not do: protobuf
        // keeps it as an unknown field.)
        let not_utf8 = vec![0x0a, 0x02, 0xff, 0xfe];
        for (name, decode) in TASK_METHODS {
            assert!(decode(&[]).is_ok(), "{name}: empty payload");
            assert!(decode(&not_utf8).is_err(), "{name}: non-UTF-8 ID");
        }
    }
}
