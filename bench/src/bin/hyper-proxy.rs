//! The least a reverse proxy built on kubeportal's stack does: tokio's
//! multi-thread runtime, hyper's server (HTTP/1.1 and HTTP/2, as kubeportal
//! serves) and hyper-util's pooled HTTP/1.1 client to one upstream, plain
//! HTTP or TLS (rustls, verified against the upstream's CA, offering
//! HTTP/1.1 alone, as kubeportal reads from a cluster), with the upstream's
//! bearer token set on every request. No identity, policy, routing, audit
//! trail, metrics or spans.
//!
//! It measures what the stack costs a request before kubeportal adds
//! anything (bench/PROFILE.md, "The stack's own cost"). It is a measuring
//! instrument, not part of kubeportal.
//!
//! ```text
//! hyper-proxy --listen 127.0.0.1:18300 --upstream http://127.0.0.1:18080 --token double-token
//! hyper-proxy --listen 127.0.0.1:18301 --upstream https://127.0.0.1:18081 --ca ca.pem --token double-token
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(
    name = "hyper-proxy",
    about = "A bare hyper reverse proxy, for measuring"
)]
struct Arguments {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// The upstream, as http://host:port or https://host:port.
    #[arg(long)]
    upstream: Uri,
    /// The CA (PEM) an https:// upstream's certificate is verified against.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The upstream's bearer token.
    #[arg(long)]
    token: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let arguments = Arguments::parse();
    let authority = arguments
        .upstream
        .authority()
        .context("the upstream has no host")?
        .clone();
    let host = HeaderValue::from_str(authority.as_str())?;
    let authorization = HeaderValue::from_str(&format!("Bearer {}", arguments.token))?;
    let scheme = arguments
        .upstream
        .scheme()
        .context("the upstream has no scheme")?
        .clone();
    let client: Client<HttpsConnector<HttpConnector>, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector(&scheme, arguments.ca.as_ref())?);
    let listener = TcpListener::bind(arguments.listen).await?;
    println!("http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let authority = authority.clone();
        let scheme = scheme.clone();
        let host = host.clone();
        let authorization = authorization.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let (mut parts, body) = request.into_parts();
                let mut uri = parts.uri.into_parts();
                uri.scheme = Some(scheme.clone());
                uri.authority = Some(authority.clone());
                parts.uri = Uri::from_parts(uri).expect("an origin-form path with an authority");
                parts.headers.insert(HOST, host.clone());
                parts.headers.insert(AUTHORIZATION, authorization.clone());
                let sent = client.request(Request::from_parts(parts, body));
                async move {
                    Ok::<_, Infallible>(match sent.await {
                        Ok(response) => response.map(http_body_util::Either::Left),
                        Err(_) => Response::builder()
                            .status(502)
                            .body(http_body_util::Either::Right(http_body_util::Empty::new()))
                            .expect("a 502"),
                    })
                }
            });
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Plain HTTP, or TLS verified against `ca` offering HTTP/1.1 alone by
/// ALPN; with `TCP_NODELAY`, as kubeportal connects to a cluster.
fn connector(
    scheme: &http::uri::Scheme,
    ca: Option<&PathBuf>,
) -> Result<HttpsConnector<HttpConnector>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let tls = *scheme == http::uri::Scheme::HTTPS;
    if !tls && *scheme != http::uri::Scheme::HTTP {
        bail!("the upstream's scheme is neither http nor https");
    }
    let mut roots = rustls::RootCertStore::empty();
    if tls {
        let ca = ca.context("an https:// upstream needs --ca")?;
        for certificate in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("reading {}", ca.display()))?
        {
            roots.add(certificate?)?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    Ok(HttpsConnector::from((http, config)))
}
