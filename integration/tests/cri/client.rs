//! A small blocking CRI client (k8s-cri's generated tonic stubs) over containerd's unix socket.
//! Every call has a deadline: a CRI call that hangs fails the test instead of hanging it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

/// Deadline of one CRI call (a debug sluice on a loaded 2-core machine; ExecSync brings its own).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects to the CRI service on `socket` (containerd's gRPC socket).
    pub fn connect(socket: &Path) -> Cri {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let path: PathBuf = socket.to_path_buf();
        let channel = rt
            .block_on(async {
                // The URI is required by tonic but unused: the connector dials the unix socket.
                Endpoint::try_from("http://[::]:50051")
                    .expect("endpoint")
                    .connect_timeout(Duration::from_secs(10))
                    .connect_with_connector(service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(
                                tokio::net::UnixStream::connect(path).await?,
                            ))
                        }
                    }))
                    .await
            })
            .unwrap_or_else(|e| panic!("connect to CRI on {}: {e}", socket.display()));
        Cri {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        }
    }

    /// A runtime-service client to call through [`Cri::call`].
    pub fn rs(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    /// An image-service client to call through [`Cri::call`].
    pub fn is(&self) -> ImageServiceClient<Channel> {
        self.images.clone()
    }

    /// Runs one CRI call with a deadline; `Err` is the gRPC status, a timeout panics.
    pub fn call<T>(
        &self,
        what: &str,
        timeout: Duration,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        // The timer must be made inside the runtime.
        match self
            .rt
            .block_on(async { tokio::time::timeout(timeout, fut).await })
        {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => panic!("CRI {what} did not answer within {timeout:?}"),
        }
    }

    /// [`Cri::call`] that panics with the status on error.
    pub fn ok<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> T {
        self.call(what, RPC_TIMEOUT, fut)
            .unwrap_or_else(|s| panic!("CRI {what} failed: {:?}: {}", s.code(), s.message()))
    }
}
