/**
 * The path form "just works" for a standard client: @kubernetes/client-node,
 * configured only by the kubeconfig kubeportal serves plus the caller's
 * portal token, lists, writes, deletes and watches through kubeportal.
 *
 * Like client-go, client-node sends a bearer token only over HTTPS, so this
 * file runs its own kubeportal serving TLS (`server.tls`), whose kubeconfig
 * carries the certificate to trust.
 */
import { get } from "node:https";
import { ApiException, CoreV1Api, KubeConfig, Watch, type V1ConfigMap } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLUSTER, DEMO, startPortal, TOKENS, type RunningPortal } from "./support/portal.js";

let portal: RunningPortal;
beforeAll(async () => {
  portal = await startPortal({ tls: true });
});
afterAll(() => portal?.stop());

/** GETs a text document over HTTPS, trusting `ca`. */
function getText(url: string, ca: string | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, { ca }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () =>
        response.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: ${response.statusCode} ${body}`)),
      );
    }).on("error", reject);
  });
}

/** The served kubeconfig with `token` set as its user's token, as `kubectl config set-credentials` would. */
async function kubeConfigFor(token: string): Promise<KubeConfig> {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromString(await getText(`${portal.url}/api/kubernetes/clusters/${CLUSTER}/kubeconfig`, portal.caPem));
  const user = kubeConfig.getCurrentUser();
  expect(user).not.toBeNull();
  kubeConfig.users = kubeConfig.users.map((entry) => (entry.name === user!.name ? { ...entry, token } : entry));
  return kubeConfig;
}

describe("@kubernetes/client-node through the path form", () => {
  it("is configured by the served kubeconfig: the path-form proxy and its certificate", async () => {
    const cluster = (await kubeConfigFor(TOKENS.admin)).getCurrentCluster();
    expect(cluster?.server).toBe(`${portal.url}/api/kubernetes/clusters/${CLUSTER}/proxy`);
    expect(Buffer.from(cluster?.caData ?? "", "base64").toString()).toBe(portal.caPem);
  });

  it("lists namespaces", async () => {
    const core = (await kubeConfigFor(TOKENS.admin)).makeApiClient(CoreV1Api);
    const namespaces = await core.listNamespace();
    expect(namespaces.items.map((namespace) => namespace.metadata?.name)).toContain(DEMO.namespace);
  });

  it("creates and deletes a ConfigMap, and sees it in a watch", async () => {
    const kubeConfig = await kubeConfigFor(TOKENS.admin);
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const name = `client-node-${Date.now().toString(36)}`;

    const events: Array<{ type: string; name: string | undefined }> = [];
    let notify = () => {};
    const seen = (type: string) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${type} event for ${name}`)), 10_000);
        notify = () => {
          if (events.some((event) => event.type === type && event.name === name)) {
            clearTimeout(timer);
            resolve();
          }
        };
        notify();
      });
    const list = await core.listNamespacedConfigMap({ namespace: DEMO.namespace });
    const watching = await new Watch(kubeConfig).watch(
      `/api/v1/namespaces/${DEMO.namespace}/configmaps`,
      { resourceVersion: list.metadata?.resourceVersion },
      (type, object: V1ConfigMap) => {
        events.push({ type, name: object.metadata?.name });
        notify();
      },
      () => {},
    );
    try {
      const added = seen("ADDED");
      const created = await core.createNamespacedConfigMap({
        namespace: DEMO.namespace,
        body: { metadata: { name }, data: { via: "client-node" } },
      });
      expect(created.metadata?.uid).toBeTruthy();
      await added;

      const read = await core.readNamespacedConfigMap({ name, namespace: DEMO.namespace });
      expect(read.data).toEqual({ via: "client-node" });

      const deleted = seen("DELETED");
      await core.deleteNamespacedConfigMap({ name, namespace: DEMO.namespace });
      await deleted;
      const missing = await core.readNamespacedConfigMap({ name, namespace: DEMO.namespace }).catch((error) => error);
      expect(missing).toBeInstanceOf(ApiException);
      expect((missing as ApiException<unknown>).code).toBe(404);
    } finally {
      watching.abort();
    }
  });

  it("acts as the portal user: a read-only user's write is refused with a Status", async () => {
    const core = (await kubeConfigFor(TOKENS.viewer)).makeApiClient(CoreV1Api);
    expect((await core.listNamespace()).items.length).toBeGreaterThan(0);
    const refused = await core
      .createNamespacedConfigMap({ namespace: DEMO.namespace, body: { metadata: { name: "refused" } } })
      .catch((error) => error);
    expect(refused).toBeInstanceOf(ApiException);
    expect((refused as ApiException<string>).code).toBe(403);
    expect(JSON.parse((refused as ApiException<string>).body)).toMatchObject({ kind: "Status", code: 403 });
  });
});
