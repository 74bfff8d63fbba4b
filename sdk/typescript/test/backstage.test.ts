/**
 * Backstage's own frontend clients, from npm (`@backstage/plugin-kubernetes-react`
 * 0.6.2, pinned in package.json), against the live kubeportal: what a stock
 * Backstage frontend does on an entity's Kubernetes tab must work unchanged.
 *
 * The package's entry point loads its React components as well; the API
 * clients and the pod-metrics helpers are plain modules, loaded here by file.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { beforeAll, describe, expect, inject, it } from "vitest";
import type { ObjectsByEntityResponse } from "@backstage/plugin-kubernetes-common";
import { createClient } from "../src/index.js";
import { CLIENT_CLUSTER, CLUSTER, DEMO, OFFLINE_CLUSTER, OIDC_CLUSTER, TOKENS } from "./support/portal.js";

const require = createRequire(import.meta.url);
const reactDist = join(dirname(require.resolve("@backstage/plugin-kubernetes-react/package.json")), "dist");
const load = (path: string) => import(pathToFileURL(join(reactDist, path)).href);

const portalUrl = inject("portalUrl");

/** The names the stock frontend's `KubernetesAuthProviders` know (besides `oidc.<provider>`). */
const FRONTEND_PROVIDERS = ["google", "serviceAccount", "googleServiceAccount", "aws", "azure", "aks", "localKubectlProxy", "oidc"];

/** Like the stock `KubernetesAuthProviders`: server-side providers add nothing, oidc asks the sign-in, unknown names throw. */
function authProviders(tokens: Record<string, string> = {}) {
  return {
    async decorateRequestBodyForAuth(authProvider: string, body: Record<string, unknown>) {
      return body;
    },
    async getCredentials(authProvider: string): Promise<{ token?: string }> {
      if (authProvider in tokens) return { token: tokens[authProvider] };
      if (["serviceAccount", "googleServiceAccount", "aws", "azure", "localKubectlProxy"].includes(authProvider)) return {};
      throw new Error(`authProvider "${authProvider}" has no KubernetesAuthProvider defined for it`);
    },
  };
}

function fetchAs(token?: string) {
  return {
    fetch: (input: RequestInfo | URL, init?: RequestInit) => {
      const headers = new Headers(init?.headers);
      if (token) headers.set("Authorization", `Bearer ${token}`);
      return fetch(input, { ...init, headers });
    },
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyClient = any;
let KubernetesBackendClient: AnyClient;
let KubernetesProxyClient: AnyClient;
let resources: AnyClient;

function backendClient(options: { token?: string; tokens?: Record<string, string> } = {}): AnyClient {
  return new KubernetesBackendClient({
    discoveryApi: { getBaseUrl: async (plugin: string) => `${portalUrl}/api/${plugin}` },
    fetchApi: fetchAs(options.token),
    kubernetesAuthProvidersApi: authProviders(options.tokens),
  });
}

function entry(response: ObjectsByEntityResponse, cluster: string) {
  const found = response.items.find((item) => item.cluster.name === cluster);
  if (!found) throw new Error(`no entry for ${cluster} in ${JSON.stringify(response)}`);
  return found;
}

function namesOf(objects: ReturnType<typeof entry>, type: string): string[] {
  return objects.resources
    .filter((result) => result.type === type)
    .flatMap((result) => (result.resources as Array<{ metadata?: { name?: string } }>).map((object) => object.metadata?.name ?? ""))
    .sort();
}

beforeAll(async () => {
  ({ KubernetesBackendClient } = await load("api/KubernetesBackendClient.esm.js"));
  ({ KubernetesProxyClient } = await load("api/KubernetesProxyClient.esm.js"));
  resources = await load("utils/resources.esm.js");
});

describe("Backstage's KubernetesBackendClient", () => {
  it("getClusters lists every cluster under a provider name the frontend knows", async () => {
    const clusters: Array<{ name: string; authProvider: string; oidcTokenProvider?: string }> = await backendClient().getClusters();
    expect(clusters.map((cluster) => cluster.name)).toEqual(expect.arrayContaining([CLUSTER, OIDC_CLUSTER, CLIENT_CLUSTER, OFFLINE_CLUSTER]));
    for (const cluster of clusters) expect(FRONTEND_PROVIDERS).toContain(cluster.authProvider);
    expect(clusters.find((cluster) => cluster.name === OIDC_CLUSTER)).toMatchObject({ authProvider: "oidc", oidcTokenProvider: "okta" });
    expect(clusters.find((cluster) => cluster.name === CLIENT_CLUSTER)?.authProvider).toBe("serviceAccount");
  });

  it("the stock KubernetesAuthProviders and generateAuth accept every listed cluster", async () => {
    const { KubernetesAuthProviders } = await load("kubernetes-auth-provider/KubernetesAuthProviders.esm.js");
    const { generateAuth } = await load("hooks/auth.esm.js");
    const providers = new KubernetesAuthProviders({
      googleAuthApi: { getAccessToken: async () => "google-token" },
      microsoftAuthApi: { getAccessToken: async () => "microsoft-token" },
      oidcProviders: { okta: { getIdToken: async () => "double-token" } },
    });
    // What the entity page does before any query: one provider per listed cluster.
    const auth = await generateAuth(DEMO.entity, backendClient(), providers);
    expect(auth).toEqual({ oidc: { okta: "double-token" } });
    const objects: ObjectsByEntityResponse = await backendClient().getObjectsByEntity({ entity: DEMO.entity, auth });
    expect(namesOf(entry(objects, OIDC_CLUSTER), "deployments")).toEqual(["shop-api"]);
  });

  it("getObjectsByEntity, getWorkloadsByEntity and getCustomObjectsByEntity answer per cluster", async () => {
    const client = backendClient();
    const auth = { oidc: { okta: "double-token" } };
    const objects: ObjectsByEntityResponse = await client.getObjectsByEntity({ entity: DEMO.entity, auth });
    expect(namesOf(entry(objects, CLUSTER), "pods")).toEqual([...DEMO.pods].sort());
    expect(namesOf(entry(objects, OIDC_CLUSTER), "deployments")).toEqual(["shop-api"]);
    expect(entry(objects, OFFLINE_CLUSTER).errors[0]?.errorType).toBe("FETCH_ERROR");

    const workloads: ObjectsByEntityResponse = await client.getWorkloadsByEntity({ entity: DEMO.entity, auth: {} });
    expect(namesOf(entry(workloads, CLUSTER), "deployments")).toEqual(["shop-api"]);

    const custom: ObjectsByEntityResponse = await client.getCustomObjectsByEntity({
      entity: DEMO.entity,
      auth: {},
      customResources: [{ group: "apps", apiVersion: "v1", plural: "deployments" }],
    });
    const deployment = entry(custom, CLUSTER).resources[0]?.resources[0] as { kind?: string; apiVersion?: string };
    expect(deployment).toMatchObject({ kind: "Deployment", apiVersion: "apps/v1" });
  });

  it("pod metrics are client pod statuses the frontend's own helpers read", async () => {
    const admin = createClient({ baseUrl: portalUrl, getToken: () => TOKENS.admin });
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "metered-0", labels: { "backstage.io/kubernetes-id": "metered" } },
      spec: { containers: [{ name: "app", image: "app:1", resources: { requests: { cpu: "10m", memory: "64Mi" }, limits: { cpu: "20m", memory: "128Mi" } } }] },
    };
    const created = await admin.proxy(CLUSTER, `/api/v1/namespaces/${DEMO.namespace}/pods`, { method: "POST", body: JSON.stringify(pod), headers: { "Content-Type": "application/json" } });
    expect(created.status).toBe(201);

    const entity = { ...DEMO.entity, metadata: { name: "metered", annotations: { "backstage.io/kubernetes-id": "metered" } } };
    const response: ObjectsByEntityResponse = await backendClient().getObjectsByEntity({ entity, auth: {} });
    const [status] = entry(response, CLUSTER).podMetrics;
    expect(status?.pod.metadata?.name).toBe("metered-0");
    const { currentToDeclaredResourceToPerc, formatMillicores, bytesToMiB } = resources;
    // The double reports 5m CPU and 32Mi memory per container.
    expect(formatMillicores(status!.cpu.currentUsage)).toBe("5m");
    expect(currentToDeclaredResourceToPerc(status!.cpu.currentUsage, status!.cpu.requestTotal)).toBe(50);
    expect(currentToDeclaredResourceToPerc(status!.cpu.currentUsage, status!.cpu.limitTotal)).toBe(25);
    expect(bytesToMiB(status!.memory.currentUsage)).toBe("32MiB");
    expect(currentToDeclaredResourceToPerc(status!.memory.currentUsage, status!.memory.limitTotal)).toBe(25);
    const [container] = status!.containers;
    expect(container?.container).toBe("app");
    expect(bytesToMiB(container!.memoryUsage.requestTotal)).toBe("64MiB");
  });

  it("proxy sends the cluster header and the provider's token header", async () => {
    const listed = await backendClient().proxy({ clusterName: CLUSTER, path: `/api/v1/namespaces/${DEMO.namespace}/pods` });
    expect(listed.status).toBe(200);
    expect((await listed.json()).items.length).toBeGreaterThanOrEqual(DEMO.pods.length);

    const sso = await backendClient({ tokens: { "oidc.okta": "double-token" } }).proxy({ clusterName: OIDC_CLUSTER, path: "/api/v1/namespaces" });
    expect(sso.status).toBe(200);

    // A `client` cluster is `serviceAccount` to the stock frontend; a custom
    // frontend sends the caller's token under the provider's own header.
    const byo = await fetch(`${portalUrl}/api/kubernetes/proxy/api/v1/namespaces`, {
      headers: { "Backstage-Kubernetes-Cluster": CLIENT_CLUSTER, "Backstage-Kubernetes-Authorization-client": "double-token" },
    });
    expect(byo.status).toBe(200);
  });

  it("proxy writes: POST, PATCH, DELETE, and a watch that streams", async () => {
    const client = backendClient({ token: TOKENS.admin });
    const path = `/api/v1/namespaces/${DEMO.namespace}/configmaps`;
    const created = await client.proxy({
      clusterName: CLUSTER,
      path,
      init: { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "from-backstage" }, data: { a: "1" } }) },
    });
    expect(created.status).toBe(201);
    const patched = await client.proxy({
      clusterName: CLUSTER,
      path: `${path}/from-backstage`,
      init: { method: "PATCH", headers: { "Content-Type": "application/merge-patch+json" }, body: JSON.stringify({ data: { a: "2" } }) },
    });
    expect((await patched.json()).data).toEqual({ a: "2" });

    const controller = new AbortController();
    const watch = await client.proxy({ clusterName: CLUSTER, path: `${path}?watch=true&fieldSelector=metadata.name=from-backstage`, init: { signal: controller.signal } });
    expect(watch.status).toBe(200);
    const reader = watch.body!.getReader();
    const deleted = await client.proxy({ clusterName: CLUSTER, path: `${path}/from-backstage`, init: { method: "DELETE" } });
    expect(deleted.status).toBe(200);
    let seen = "";
    while (!seen.includes('"DELETED"')) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
    }
    controller.abort();
    expect(seen).toContain('"DELETED"');
  });
});

describe("Backstage's KubernetesProxyClient", () => {
  it("reads pod logs and events, and deletes a pod", async () => {
    const proxyClient = new KubernetesProxyClient({ kubernetesApi: backendClient({ token: TOKENS.admin }) });
    const [podName] = DEMO.pods;
    const logs = await proxyClient.getPodLogs({ podName, namespace: DEMO.namespace, clusterName: CLUSTER, containerName: "api" });
    expect(typeof logs.text).toBe("string");
    const events = await proxyClient.getEventsByInvolvedObjectName({ clusterName: CLUSTER, involvedObjectName: podName, namespace: DEMO.namespace });
    expect(Array.isArray(events)).toBe(true);

    const admin = createClient({ baseUrl: portalUrl, getToken: () => TOKENS.admin });
    const doomed = { apiVersion: "v1", kind: "Pod", metadata: { name: "doomed-0" }, spec: { containers: [{ name: "app", image: "app:1" }] } };
    await admin.proxy(CLUSTER, `/api/v1/namespaces/${DEMO.namespace}/pods`, { method: "POST", body: JSON.stringify(doomed), headers: { "Content-Type": "application/json" } });
    const deleted = await proxyClient.deletePod({ podName: "doomed-0", namespace: DEMO.namespace, clusterName: CLUSTER });
    expect(JSON.parse(deleted.text).metadata.name).toBe("doomed-0");
  });

  it("a policy denial surfaces as the client's error, naming no cluster", async () => {
    const viewer = new KubernetesProxyClient({ kubernetesApi: backendClient({ token: TOKENS.viewer }) });
    const error = await viewer
      .deletePod({ podName: DEMO.pods[0], namespace: DEMO.namespace, clusterName: CLUSTER })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/^Proxy request failed with 403 Forbidden, /);
    expect((error as Error).message).toContain("NotAllowedError");
    expect((error as Error).message).not.toContain("127.0.0.1");
  });
});
