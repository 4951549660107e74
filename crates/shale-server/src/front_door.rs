//! [`FrontDoor`]: the client listener's request router, with a fast lane for the KV service.
//!
//! tonic routes every request through an axum `Router` (path matching, boxed services, a
//! response mapping layer). For the unary KV calls that make up almost all of a Kubernetes
//! control plane's traffic that routing was about 5% of a member's instructions per request
//! (callgrind, serializable ranges). The front door sends requests whose path starts with the
//! KV service's prefix straight to the generated `KvServer`, and everything else (the other
//! gRPC services, `/health`, `/version`, `/metrics`) to the tonic `Routes` as before. The KV
//! service is also still registered in those routes, so the answer for any path is the same
//! either way; only the cost differs.

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures::future::Either;
use http::{Request, Response};
use shale_api::etcdserverpb::kv_server::KvServer;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::service::Routes;

use crate::svc_kv::KvService;

/// The client listener's router: KV calls directly, the rest through `routes`.
#[derive(Clone)]
pub struct FrontDoor {
    kv: KvServer<KvService>,
    routes: Routes,
}

impl FrontDoor {
    /// `routes` must also serve `kv` (the fast lane is an optimisation, not a second API).
    pub fn new(kv: KvServer<KvService>, routes: Routes) -> Self {
        Self {
            kv,
            routes: routes.prepare(),
        }
    }

    /// Whether `path` is a method of the KV service (`/etcdserverpb.KV/<Method>`).
    fn is_kv(path: &str) -> bool {
        let name = <KvServer<KvService> as NamedService>::NAME;
        path.strip_prefix('/')
            .and_then(|p| p.strip_prefix(name))
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl Service<Request<Body>> for FrontDoor {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<
        <KvServer<KvService> as Service<Request<Body>>>::Future,
        <Routes as Service<Request<Body>>>::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both are always ready (neither applies backpressure), but ask both anyway.
        match Service::<Request<Body>>::poll_ready(&mut self.kv, cx) {
            Poll::Ready(Ok(())) => Service::<Request<Body>>::poll_ready(&mut self.routes, cx),
            other => other,
        }
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if Self::is_kv(req.uri().path()) {
            Either::Left(self.kv.call(req))
        } else {
            Either::Right(self.routes.call(req))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FrontDoor;

    #[test]
    fn only_kv_methods_take_the_fast_lane() {
        assert!(FrontDoor::is_kv("/etcdserverpb.KV/Range"));
        assert!(FrontDoor::is_kv("/etcdserverpb.KV/Txn"));
        assert!(!FrontDoor::is_kv("/etcdserverpb.KVX/Range"));
        assert!(!FrontDoor::is_kv("/etcdserverpb.Watch/Watch"));
        assert!(!FrontDoor::is_kv("/health"));
        assert!(!FrontDoor::is_kv("etcdserverpb.KV/Range"));
    }
}
