//! Entity-scoped object queries across 1, 10 and 50 clusters: time to the
//! full response of `POST /api/kubernetes/services/{entityName}`, with the
//! result cache off so every query fans out. The doubles run in this
//! process; kubeportal is the release binary. As a reference, the same list
//! calls (recorded at the doubles) are replayed directly and concurrently
//! by this process, as a client doing the fan-out itself would.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kube_double::{KubeDouble, Options};
use serde_json::{json, Value};

use crate::fixtures;
use crate::processes::{Binaries, PortalProcess};
use crate::stats::Percentiles;

pub const CLUSTER_COUNTS: [usize; 3] = [1, 10, 50];
const ENTITY: &str = "bench-api";
const WARM_UP_QUERIES: usize = 5;
const MAX_SAMPLES: usize = 100;
const MIN_SAMPLES: usize = 20;
const SAMPLE_BUDGET: Duration = Duration::from_secs(12);

/// One cluster count's figures.
#[derive(Debug, Clone)]
pub struct FanOutResult {
    pub clusters: usize,
    /// List calls one query makes on each cluster.
    pub calls_per_cluster: usize,
    pub kubeportal: Percentiles,
    pub direct: Percentiles,
}

/// The route measured, as the OpenAPI document names it.
const ROUTE: &str = "/api/kubernetes/services/{entityName}";

/// What the fan-out section found.
pub enum FanOut {
    Measured(Vec<FanOutResult>),
    /// The kubeportal binary does not serve the route.
    RouteNotAvailable,
}

/// Whether the running kubeportal's OpenAPI document has the route.
async fn route_available(portal_url: &str) -> Result<bool> {
    let document: Value = reqwest::get(format!("{portal_url}/openapi.json"))
        .await?
        .error_for_status()?
        .json()
        .await
        .context("kubeportal's /openapi.json is not JSON")?;
    Ok(document["paths"].get(ROUTE).is_some())
}

/// Objects of the entity (and some that are not) on one double.
fn seed(double: &KubeDouble) {
    let labels = json!({"app": ENTITY, "backstage.io/kubernetes-id": ENTITY});
    double.put_object("v1", "namespaces", json!({"metadata": {"name": "shop"}}));
    double.put_object(
        "apps/v1",
        "deployments",
        json!({
            "metadata": {"name": ENTITY, "namespace": "shop", "labels": labels},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": ENTITY}},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "api", "image": "ghcr.io/example/shop-api:1.4.2"}]}}},
            "status": {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3},
        }),
    );
    double.put_object(
        "v1",
        "services",
        json!({
            "metadata": {"name": ENTITY, "namespace": "shop", "labels": labels},
            "spec": {"selector": {"app": ENTITY}, "ports": [{"port": 80, "targetPort": 8080}]},
        }),
    );
    for index in 0..3 {
        let mut pod = fixtures::pod(&format!("{ENTITY}-{index}"), "shop");
        pod["metadata"]["labels"] = labels.clone();
        double.put_object("v1", "pods", pod);
    }
    for index in 0..20 {
        double.put_object(
            "v1",
            "pods",
            fixtures::pod(&format!("other-{index}"), "shop"),
        );
    }
}

/// Runs every cluster count, if kubeportal serves the route.
pub async fn measure(binaries: &Binaries, directory: &Path) -> Result<FanOut> {
    let largest = CLUSTER_COUNTS.iter().copied().max().unwrap_or(0);
    let mut doubles = Vec::with_capacity(largest);
    for _ in 0..largest {
        // With metrics.k8s.io, as clusters running metrics-server have it.
        let double = KubeDouble::start(Options {
            metrics_api: true,
            ..Options::default()
        })
        .await?;
        seed(&double);
        doubles.push(double);
    }
    let mut client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false);
    for double in &doubles {
        client = client
            .add_root_certificate(reqwest::Certificate::from_pem(double.ca_pem().as_bytes())?);
    }
    let direct_client = client.build()?;
    let mut results = Vec::new();
    for count in CLUSTER_COUNTS {
        eprintln!("  {count} cluster{}…", if count == 1 { "" } else { "s" });
        match measure_count(binaries, directory, &doubles[..count], &direct_client).await? {
            Some(result) => results.push(result),
            None => return Ok(FanOut::RouteNotAvailable),
        }
    }
    Ok(FanOut::Measured(results))
}

/// One cluster count; `None` when kubeportal does not serve the route.
async fn measure_count(
    binaries: &Binaries,
    directory: &Path,
    doubles: &[KubeDouble],
    direct_client: &reqwest::Client,
) -> Result<Option<FanOutResult>> {
    let clusters = doubles
        .iter()
        .enumerate()
        .map(|(index, double)| {
            fixtures::cluster_entry(
                &format!("fanout-{index:02}"),
                &double.url(),
                &double.ca_pem(),
                "double-token",
            )
        })
        .collect();
    let mut config = fixtures::portal_config(clusters);
    // Every query must fan out: no shared results.
    config["kubernetes"]["objects"] = json!({"cacheTtlMs": 0});
    let portal = PortalProcess::start(
        binaries,
        directory,
        &format!("fanout-{}", doubles.len()),
        &config,
    )
    .await?;
    if !route_available(&portal.url).await? {
        return Ok(None);
    }
    let portal_client = reqwest::Client::new();
    let url = format!("{}{}", portal.url, ROUTE.replace("{entityName}", ENTITY));
    let body = json!({
        "entity": {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": ENTITY, "annotations": {"backstage.io/kubernetes-id": ENTITY}},
        },
    });
    let query = || async {
        let response = portal_client
            .post(&url)
            .bearer_auth(fixtures::PORTAL_TOKEN)
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
        let answer: Value = response.json().await?;
        check_answer(&answer, doubles.len())
    };

    for double in doubles {
        double.clear_requests();
    }
    query().await.context("the first object query")?;
    let calls: Vec<String> = doubles[0]
        .requests()
        .into_iter()
        .map(|request| match request.query {
            Some(query) => format!("{}?{query}", request.path),
            None => request.path,
        })
        .collect();
    if calls.is_empty() {
        bail!("the object query reached no cluster");
    }
    for _ in 0..WARM_UP_QUERIES {
        query().await?;
    }
    let kubeportal = sample(query).await?;

    let replay = || async {
        let requests = doubles.iter().flat_map(|double| {
            let base = double.url();
            calls.iter().map(move |call| {
                let request = direct_client
                    .get(format!("{base}{call}"))
                    .bearer_auth("double-token")
                    .send();
                async move {
                    let response = request.await?.error_for_status()?;
                    response.bytes().await?;
                    Ok::<_, anyhow::Error>(())
                }
            })
        });
        futures::future::try_join_all(requests).await.map(|_| ())
    };
    for _ in 0..WARM_UP_QUERIES {
        replay().await?;
    }
    let direct = sample(replay).await?;
    Ok(Some(FanOutResult {
        clusters: doubles.len(),
        calls_per_cluster: calls.len(),
        kubeportal,
        direct,
    }))
}

/// Times `run` sequentially: up to [`MAX_SAMPLES`], or fewer (at least
/// [`MIN_SAMPLES`]) when they take longer than the budget.
async fn sample<F, Fut>(mut run: F) -> Result<Percentiles>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let budget = Instant::now();
    let mut samples = Vec::with_capacity(MAX_SAMPLES);
    while samples.len() < MAX_SAMPLES
        && (samples.len() < MIN_SAMPLES || budget.elapsed() < SAMPLE_BUDGET)
    {
        let started = Instant::now();
        run().await?;
        samples.push(started.elapsed());
    }
    Ok(Percentiles::of(samples).expect("at least one sample"))
}

/// Every cluster answered, without errors, with the entity's three pods.
fn check_answer(answer: &Value, clusters: usize) -> Result<()> {
    let items = answer["items"].as_array().map_or(&[][..], Vec::as_slice);
    if items.len() != clusters {
        bail!("{} of {clusters} clusters in the answer", items.len());
    }
    for item in items {
        let name = &item["cluster"]["name"];
        if item["errors"]
            .as_array()
            .is_some_and(|errors| !errors.is_empty())
        {
            bail!("cluster {name} answered errors: {}", item["errors"]);
        }
        let pods = item["resources"]
            .as_array()
            .and_then(|results| results.iter().find(|result| result["type"] == "pods"))
            .and_then(|pods| pods["resources"].as_array())
            .map_or(0, Vec::len);
        if pods != 3 {
            bail!("cluster {name} answered {pods} pods, expected 3");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_must_cover_every_cluster_without_errors() {
        let pods = json!([{"type": "pods", "resources": [{}, {}, {}]}]);
        let good = json!({"items": [{"cluster": {"name": "a"}, "resources": pods, "errors": []}]});
        assert!(check_answer(&good, 1).is_ok());
        assert!(check_answer(&good, 2).is_err());
        let failing = json!({"items": [{"cluster": {"name": "a"}, "resources": pods,
            "errors": [{"errorType": "TIMEOUT"}]}]});
        assert!(check_answer(&failing, 1).is_err());
    }
}
