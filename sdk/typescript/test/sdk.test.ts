/**
 * The SDK against a live kubeportal in front of the seeded test double
 * (started by test/global-setup.ts).
 */
import { describe, expect, inject, it } from "vitest";
import { createClient, KubeportalError } from "../src/index.js";
import { CLUSTER, DEMO, TOKENS } from "./support/portal.js";

const baseUrl = inject("portalUrl");
const guest = createClient({ baseUrl });
const admin = createClient({ baseUrl, getToken: () => TOKENS.admin });
const viewer = createClient({ baseUrl, getToken: async () => TOKENS.viewer });

/** A name no other test uses. */
function unique(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
}

/** The error a promise rejects with, or a failure when it resolves. */
async function rejection(promise: Promise<unknown>): Promise<KubeportalError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(KubeportalError);
    return error as KubeportalError;
  }
  throw new Error("expected the call to fail");
}

/** Drives `iterator` until `predicate` holds for a value, within `ms`. */
async function firstMatching<T>(iterator: AsyncIterator<T>, predicate: (value: T) => boolean, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new Error("no matching value in time");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const next = await Promise.race([
      iterator.next(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("no matching value in time")), remaining);
      }),
    ]).finally(() => clearTimeout(timer));
    if (next.done) throw new Error("the stream ended without a matching value");
    if (predicate(next.value)) return next.value;
  }
}

/** The timestamp the seeded double writes at the start of each log line. */
function loggedAt(line: string): number {
  return Date.parse(line.split(" ", 1)[0] ?? "");
}

function doubleCluster(name: string, url: string, caData: string | null | undefined) {
  return { name, url, authProvider: "serviceAccount" as const, serviceAccountToken: "double-token", caData };
}

describe("cluster registry", () => {
  it("lists the configured cluster in Backstage's shape, for the guest", async () => {
    const clusters = await guest.clusters();
    expect(clusters).toContainEqual({ name: CLUSTER, title: "Development", authProvider: "serviceAccount" });
  });

  it("creates, reads, updates and deletes a cluster", async () => {
    const template = await admin.cluster(CLUSTER);
    const name = unique("crud");
    const created = await admin.createCluster({ ...doubleCluster(name, template.url, template.caData), title: "First" });
    expect(created).toMatchObject({ name, title: "First", hasServiceAccountToken: true, authProvider: "serviceAccount" });

    const read = await admin.cluster(name);
    expect(read).toEqual(created);

    const updated = await admin.updateCluster(name, { ...read, title: "Second" });
    expect(updated.title).toBe("Second");
    expect(updated.version).toBeGreaterThan(read.version);
    expect(updated.hasServiceAccountToken).toBe(true);

    const stale = await rejection(admin.updateCluster(name, { ...read, title: "Third" }));
    expect(stale).toMatchObject({ name: "ConflictError", status: 409 });

    const duplicate = await rejection(admin.createCluster(doubleCluster(name.toUpperCase(), template.url, template.caData)));
    expect(duplicate).toMatchObject({ name: "ConflictError", status: 409 });

    await admin.deleteCluster(name, { version: updated.version });
    const gone = await rejection(admin.cluster(name));
    expect(gone).toMatchObject({ name: "NotFoundError", status: 404 });
    expect((await guest.clusters()).map((cluster) => cluster.name)).not.toContain(name);
  });

  it("pages through clusters with limit and cursor", async () => {
    const template = await admin.cluster(CLUSTER);
    const names = [unique("page-a"), unique("page-b")];
    for (const name of names) await admin.createCluster(doubleCluster(name, template.url, template.caData));
    try {
      const first = await guest.clustersPage({ limit: 1 });
      expect(first.items).toHaveLength(1);
      expect(first.nextCursor).toBeTruthy();
      const second = await guest.clustersPage({ limit: 1, cursor: first.nextCursor ?? undefined });
      expect(second.items).toHaveLength(1);
      expect(second.items[0]?.name).not.toBe(first.items[0]?.name);

      const all = (await guest.clusters()).map((cluster) => cluster.name);
      expect(all).toEqual(expect.arrayContaining([CLUSTER, ...names]));
    } finally {
      for (const name of names) await admin.deleteCluster(name);
    }
  });

  it("rejects invalid input with an InputError naming the field", async () => {
    const error = await rejection(
      admin.createCluster({ name: unique("bad"), url: "ftp://nowhere", authProvider: "serviceAccount" }),
    );
    expect(error).toMatchObject({ name: "InputError", status: 400 });
    expect(error.message).toContain("url");
  });

  it("serves a kubeconfig for the path form", async () => {
    const kubeconfig = await guest.kubeconfig(CLUSTER);
    expect(kubeconfig).toContain(`${baseUrl}/api/kubernetes/clusters/${CLUSTER}/proxy`);
  });
});

describe("errors", () => {
  const stranger = createClient({ baseUrl, getToken: () => "not-a-valid-token" });

  it("maps a bad portal token to AuthenticationError (401)", async () => {
    const error = await rejection(stranger.clusters());
    expect(error).toMatchObject({ name: "AuthenticationError", status: 401, origin: "portal" });
    const proxied = await rejection(stranger.proxy(CLUSTER, "/api/v1/namespaces"));
    expect(proxied).toMatchObject({ name: "AuthenticationError", status: 401 });
  });

  it("maps a policy denial to NotAllowedError (403)", async () => {
    const manage = await rejection(viewer.cluster(CLUSTER));
    expect(manage).toMatchObject({ name: "NotAllowedError", status: 403, message: "Unauthorized" });

    const write = await rejection(
      viewer.proxy(CLUSTER, `/api/v1/namespaces/${DEMO.namespace}/configmaps`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ metadata: { name: unique("denied") } }),
      }),
    );
    expect(write).toMatchObject({ name: "NotAllowedError", status: 403 });
    // The same viewer may read.
    expect((await viewer.proxy(CLUSTER, "/api/v1/namespaces")).status).toBe(200);
  });

  it("maps an unknown cluster to NotFoundError (404)", async () => {
    const error = await rejection(guest.proxy("no-such-cluster", "/api/v1/namespaces"));
    expect(error).toMatchObject({ name: "NotFoundError", status: 404, origin: "portal" });
    const viaLogs = await rejection(guest.podLogs("no-such-cluster", DEMO.namespace, DEMO.pods[0]).next());
    expect(viaLogs).toMatchObject({ name: "NotFoundError", status: 404, origin: "portal" });
  });
});

describe("proxy", () => {
  it("returns the cluster's answer as a standard Response", async () => {
    const response = await guest.proxy(CLUSTER, "/api/v1/namespaces");
    expect(response.status).toBe(200);
    const list = (await response.json()) as { kind: string; items: Array<{ metadata: { name: string } }> };
    expect(list.kind).toBe("NamespaceList");
    expect(list.items.map((namespace) => namespace.metadata.name)).toContain(DEMO.namespace);
  });

  it("returns a cluster's own error response instead of throwing", async () => {
    const response = await guest.proxy(CLUSTER, `/api/v1/namespaces/${DEMO.namespace}/pods/no-such-pod`);
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ kind: "Status", reason: "NotFound" });
  });

  it("sends a cluster token as Backstage-Kubernetes-Authorization", async () => {
    const rejected = await guest.proxy(CLUSTER, "/api/v1/namespaces", { clusterToken: "wrong-cluster-token" });
    expect(rejected.status).toBe(401);
    expect(await rejected.json()).toMatchObject({ kind: "Status", code: 401 });
    const accepted = await guest.proxy(CLUSTER, "/api/v1/namespaces", { clusterToken: "double-token" });
    expect(accepted.status).toBe(200);
  });

  it("writes through the proxy and reads back", async () => {
    const name = unique("written");
    const path = `/api/v1/namespaces/${DEMO.namespace}/configmaps`;
    const created = await admin.proxy(CLUSTER, path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name }, data: { colour: "teal" } }),
    });
    expect(created.status).toBe(201);
    const read = await admin.proxy(CLUSTER, `${path}/${name}`);
    expect(await read.json()).toMatchObject({ metadata: { name }, data: { colour: "teal" } });
    expect((await admin.proxy(CLUSTER, `${path}/${name}`, { method: "DELETE" })).status).toBe(200);
  });

  it("streams a followed log as the cluster writes it", async () => {
    const controller = new AbortController();
    const response = await guest.proxy(CLUSTER, `/api/v1/namespaces/${DEMO.namespace}/pods/${DEMO.pods[0]}/log?follow=true`, {
      signal: controller.signal,
    });
    const opened = Date.now();
    expect(response.status).toBe(200);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    try {
      // Read until a complete line written after the response arrived.
      const deadline = Date.now() + 10_000;
      const fresh = () => text.split("\n").slice(0, -1).some((line) => loggedAt(line) > opened);
      while (!fresh()) {
        expect(Date.now()).toBeLessThan(deadline);
        const { done, value } = await reader.read();
        expect(done).toBe(false);
        text += value;
      }
    } finally {
      controller.abort();
    }
    expect(text).toMatch(/INFO GET \/products\/\d+ 200 \d+ms/);
  });
});

describe("podLogs", () => {
  it("yields a followed line written after the stream opened, and stops on abort", async () => {
    const controller = new AbortController();
    const started = Date.now();
    const lines = guest.podLogs(CLUSTER, DEMO.namespace, DEMO.pods[1], { follow: true, signal: controller.signal });
    const line = await firstMatching(lines, (candidate) => loggedAt(candidate) > started);
    expect(line).toMatch(/INFO GET \/products\/\d+ 200 \d+ms$/);
    controller.abort();
    // Aborting ends the iteration without an error.
    await expectEnd(lines);
  });

  it("reads a bounded log without following", async () => {
    const lines: string[] = [];
    for await (const line of guest.podLogs(CLUSTER, DEMO.namespace, DEMO.pods[0], { tailLines: 2, container: "api" })) {
      lines.push(line);
    }
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThanOrEqual(2);
    for (const line of lines) expect(Number.isNaN(loggedAt(line))).toBe(false);
  });

  it("throws the cluster's error for an unknown pod", async () => {
    const error = await rejection(guest.podLogs(CLUSTER, DEMO.namespace, "no-such-pod").next());
    expect(error).toMatchObject({ name: "NotFound", status: 404, origin: "cluster" });
  });
});

describe("watch", () => {
  it("yields an event for an object created after the watch started", async () => {
    const namespace = unique("watch");
    const configMaps = `/api/v1/namespaces/${namespace}/configmaps`;
    const post = (path: string, body: unknown) =>
      admin.proxy(CLUSTER, path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    expect((await post("/api/v1/namespaces", { metadata: { name: namespace } })).status).toBe(201);
    expect((await post(configMaps, { metadata: { name: "before" } })).status).toBe(201);
    const controller = new AbortController();
    try {
      const events = admin.watch(CLUSTER, configMaps, { signal: controller.signal });
      // A watch from "now" starts with an ADDED event per existing object:
      // once "before" arrives, the stream is open.
      await firstMatching(events, (event) => event.type === "ADDED" && event.object.metadata?.name === "before");
      expect((await post(configMaps, { metadata: { name: "after" }, data: { step: "one" } })).status).toBe(201);
      const event = await firstMatching(events, (event) => event.object.metadata?.name === "after");
      expect(event).toMatchObject({ type: "ADDED", object: { kind: "ConfigMap", data: { step: "one" } } });
      controller.abort();
      await expectEnd(events);
    } finally {
      controller.abort();
      await admin.proxy(CLUSTER, `/api/v1/namespaces/${namespace}`, { method: "DELETE" });
    }
  });
});

/** Fails unless the iterator finishes (after yielding whatever it still had) within 5 s. */
async function expectEnd(iterator: AsyncIterator<unknown>): Promise<void> {
  await expect(firstMatching(iterator, () => false, 5_000)).rejects.toThrow("the stream ended without a matching value");
}
