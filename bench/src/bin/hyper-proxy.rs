//! The least a reverse proxy built on kubeportal's stack does: tokio's
//! multi-thread runtime, hyper's server (HTTP/1.1 and HTTP/2, as kubeportal
//! serves) and hyper-util's pooled HTTP/1.1 client to one plain-HTTP
//! upstream, with the upstream's bearer token set on every request. No
//! identity, policy, routing, audit trail, metrics or spans.
//!
//! It measures what the stack costs a request before kubeportal adds
//! anything (bench/PROFILE.md, "The stack's own cost"). It is a measuring
//! instrument, not part of kubeportal.
//!
//! ```text
//! hyper-proxy --listen 127.0.0.1:18300 --upstream http://127.0.0.1:18080 --token double-token
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Parser;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
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
    /// The plain-HTTP upstream, as scheme://host:port.
    #[arg(long)]
    upstream: Uri,
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
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build_http();
    let listener = TcpListener::bind(arguments.listen).await?;
    println!("http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let authority = authority.clone();
        let host = host.clone();
        let authorization = authorization.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let (mut parts, body) = request.into_parts();
                let mut uri = parts.uri.into_parts();
                uri.scheme = Some(http::uri::Scheme::HTTP);
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
