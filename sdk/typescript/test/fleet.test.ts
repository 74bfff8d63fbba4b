/**
 * The fleet view against a live kubeportal with three clusters of its own
 * (`prod-a`, `prod-b`, `dev`), each a separate, empty Kubernetes API test
 * double holding one pod; and the watch's reconnect and 410 handling against
 * a scripted fetch.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, KubeportalError, type FleetWatchEvent, type KubernetesObject } from "../src/index.js";
import { startPortal, TOKENS, type RunningPortal } from "./support/portal.js";

const CLUSTERS = ["prod-a", "prod-b", "dev"];
const NAMESPACE = "shop";

let portal: RunningPortal;
let admin: ReturnType<typeof createClient>;

function pod(name: string) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: NAMESPACE },
    spec: { containers: [{ name: "app", image: "registry.example/app:1" }] },
  };
}

/** Creates a pod on one cluster through the (single-cluster) proxy. */
async function createPod(cluster: string, name: string): Promise<void> {
  const response = await admin.proxy(cluster, `/api/v1/namespaces/${NAMESPACE}/pods`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(pod(name)),
  });
  expect(response.status, await response.clone().text()).toBe(201);
}

/** The next value of `iterator` within `ms`. */
async function nextWithin<T>(iterator: AsyncIterator<T>, ms = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const next = await Promise.race([
    iterator.next(),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no value within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
  if (next.done) throw new Error("the iteration ended");
  return next.value;
}

function names(events: FleetWatchEvent[]): string[] {
  return events.map((event) => `${event.cluster}/${event.object.metadata?.name}`);
}

describe("fleet (live)", () => {
  beforeAll(async () => {
    portal = await startPortal({ clusters: CLUSTERS });
    admin = createClient({ baseUrl: portal.url, getToken: () => TOKENS.admin });
    for (const cluster of CLUSTERS) {
      const namespace = await admin.proxy(cluster, "/api/v1/namespaces", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ metadata: { name: NAMESPACE } }),
      });
      expect(namespace.status).toBe(201);
      await createPod(cluster, `${cluster}-api`);
    }
  });

  afterAll(async () => {
    await portal?.stop();
  });

  it("lists exactly the matching clusters' pods, each with its cluster", async () => {
    const list = await admin.fleet.list("prod-*", "/api/v1/pods");
    expect(list.kind).toBe("PodList");
    // The clusters' items interleave as they arrive.
    const found = list.items.map((item) => [item.cluster, item.object.metadata?.name]).sort();
    expect(found).toEqual([
      ["prod-a", "prod-a-api"],
      ["prod-b", "prod-b-api"],
    ]);
    expect(list.clusters).toEqual([
      { name: "prod-a", status: "Success" },
      { name: "prod-b", status: "Success" },
    ]);
    expect(list.resourceVersion).not.toBe("");
    expect(list.continue).toBeUndefined();

    // The glob is case-insensitive, and `*` takes every cluster.
    const upper = await admin.fleet.list("PROD-?", "api/v1/namespaces/shop/pods");
    expect(upper.items.map((item) => item.cluster).sort()).toEqual(["prod-a", "prod-b"]);
    const all = await admin.fleet.list("*", "/api/v1/pods");
    expect(all.items.map((item) => item.cluster).sort()).toEqual(["dev", "prod-a", "prod-b"]);
  });

  it("pages with limit and continue", async () => {
    const first = await admin.fleet.list("*", "/api/v1/pods", { limit: 1 });
    // Each cluster pages on its own: one pod from each, none has more.
    expect(first.items).toHaveLength(3);
    expect(first.continue).toBeUndefined();
    await createPod("dev", "dev-extra");
    try {
      const page = await admin.fleet.list("dev", "/api/v1/pods", { limit: 1 });
      expect(page.items.map((item) => item.object.metadata?.name)).toEqual(["dev-api"]);
      expect(page.continue).toEqual(expect.any(String));
      const next = await admin.fleet.list("dev", "/api/v1/pods", { limit: 1, continue: page.continue });
      expect(next.items.map((item) => item.object.metadata?.name)).toEqual(["dev-extra"]);
      expect(next.continue).toBeUndefined();
    } finally {
      await admin.proxy("dev", `/api/v1/namespaces/${NAMESPACE}/pods/dev-extra`, { method: "DELETE" });
    }
  });

  it("throws kubeportal's own errors under the portal's error names", async () => {
    const badGlob = await admin.fleet.list("prod/*", "/api/v1/pods").catch((error: unknown) => error);
    expect(badGlob).toBeInstanceOf(KubeportalError);
    expect(badGlob).toMatchObject({ name: "InputError", status: 400, origin: "portal" });

    const notList = await admin.fleet.list("prod-*", "/api/v1/namespaces/shop/pods/prod-a-api").catch((e: unknown) => e);
    expect(notList).toMatchObject({ name: "MethodNotAllowedError", status: 405 });

    const stranger = createClient({ baseUrl: portal.url, getToken: () => "not-a-valid-token-at-all" });
    const unauthenticated = await stranger.fleet.list("prod-*", "/api/v1/pods").catch((e: unknown) => e);
    expect(unauthenticated).toMatchObject({ name: "AuthenticationError", status: 401 });

    const badVersion = admin.fleet.watch("prod-*", "/api/v1/pods", { resourceVersion: "not-a-composite" });
    await expect(badVersion.next()).rejects.toMatchObject({ name: "InputError", status: 400 });
  });

  it("watches new pods on any matching cluster, and resumes from a resourceVersion", async () => {
    const controller = new AbortController();
    const events = admin.fleet.watch("prod-*", "/api/v1/pods", { signal: controller.signal });
    // A watch from "now" starts with an ADDED event per existing object.
    const initial = [await nextWithin(events), await nextWithin(events)];
    expect(names(initial).sort()).toEqual(["prod-a/prod-a-api", "prod-b/prod-b-api"]);

    await createPod("prod-b", "prod-b-later");
    await createPod("dev", "dev-later"); // outside the glob: never seen
    const added = await nextWithin(events);
    expect(added).toMatchObject({ type: "ADDED", cluster: "prod-b" });
    expect(added.object.metadata?.name).toBe("prod-b-later");
    expect(added.object.metadata?.annotations?.["kubeportal.io/cluster"]).toBe("prod-b");
    expect(added.resourceVersion).not.toBe("");
    controller.abort();
    expect(await events.next()).toEqual({ done: true, value: undefined });

    // While nobody watches, a pod is created on prod-a; a watch resumed from
    // the last event's position sees it, and nothing from before again.
    await createPod("prod-a", "prod-a-later");
    const resumedController = new AbortController();
    const resumed = admin.fleet.watch("prod-*", "/api/v1/pods", {
      resourceVersion: added.resourceVersion,
      signal: resumedController.signal,
    });
    try {
      const first = await nextWithin(resumed);
      expect(names([first])).toEqual(["prod-a/prod-a-later"]);
      expect(first.type).toBe("ADDED");
    } finally {
      resumedController.abort();
    }
  });

  it("reconnects after the server ends a connection, from the last position", async () => {
    const controller = new AbortController();
    const events = admin.fleet.watch("prod-*", "/api/v1/namespaces/shop/pods", {
      signal: controller.signal,
      timeoutSeconds: 1,
      minRetryDelayMs: 50,
    });
    try {
      const seen: FleetWatchEvent[] = [];
      const initial = await nextWithin(events);
      seen.push(initial);
      // Past the first connection's end: the next event comes on another.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      await createPod("prod-a", "prod-a-reconnected");
      for (;;) {
        const event = await nextWithin(events);
        seen.push(event);
        if (event.object.metadata?.name === "prod-a-reconnected") break;
      }
      const all = names(seen);
      // Nothing was replayed on reconnecting: every event is seen once.
      expect(new Set(all).size).toBe(all.length);
      expect(all.at(-1)).toBe("prod-a/prod-a-reconnected");
    } finally {
      controller.abort();
    }
  });
});

/** A fetch that answers each watch request with the next scripted body, recording the URLs. */
function scriptedFetch(bodies: Array<string | ((signal: AbortSignal | undefined) => ReadableStream<Uint8Array>)>) {
  const urls: string[] = [];
  const fetch: typeof globalThis.fetch = async (input, init) => {
    urls.push(String(input));
    const next = bodies.shift();
    if (next === undefined) throw new Error("no more scripted answers");
    const body = typeof next === "string" ? next : next(init?.signal ?? undefined);
    return new Response(body, { status: 200, headers: { "Content-Type": "application/json" } });
  };
  return { fetch, urls };
}

function event(type: string, cluster: string, name: string, resourceVersion: string): string {
  const object: KubernetesObject = {
    kind: "Pod",
    metadata: { name, resourceVersion, annotations: { "kubeportal.io/cluster": cluster } },
  };
  return `${JSON.stringify({ type, object })}\n`;
}

describe("fleet watch (scripted)", () => {
  it("resumes after a dropped stream from the last resourceVersion, and surfaces 410 as an error", async () => {
    const encoder = new TextEncoder();
    const { fetch, urls } = scriptedFetch([
      // Two events, then the connection drops mid-stream.
      () => {
        const chunks = [event("ADDED", "prod-a", "one", "rv-1"), event("MODIFIED", "prod-b", "two", "rv-2")];
        return new ReadableStream({
          pull(controller) {
            const chunk = chunks.shift();
            if (chunk === undefined) controller.error(new TypeError("network connection lost"));
            else controller.enqueue(encoder.encode(chunk));
          },
        });
      },
      // A clean end with no event.
      "",
      event("DELETED", "prod-b", "two", "rv-3") +
        `${JSON.stringify({
          type: "ERROR",
          object: { kind: "Status", status: "Failure", code: 410, reason: "Expired", message: "cluster prod-a: too old; list again" },
        })}\n` +
        event("ADDED", "prod-a", "never", "rv-4"),
    ]);
    const client = createClient({ baseUrl: "http://portal.test", fetch, getToken: () => "token" });
    const seen: FleetWatchEvent[] = [];
    let failure: unknown;
    try {
      for await (const item of client.fleet.watch("prod-*", "/api/v1/pods?labelSelector=app%3Dshop", { minRetryDelayMs: 1 })) {
        seen.push(item);
      }
    } catch (error) {
      failure = error;
    }
    expect(seen.map((item) => [item.type, item.cluster, item.object.metadata?.name, item.resourceVersion])).toEqual([
      ["ADDED", "prod-a", "one", "rv-1"],
      ["MODIFIED", "prod-b", "two", "rv-2"],
      ["DELETED", "prod-b", "two", "rv-3"],
    ]);
    expect(failure).toBeInstanceOf(KubeportalError);
    expect(failure).toMatchObject({ status: 410, name: "Expired", origin: "cluster" });

    const queries = urls.map((url) => new URL(url));
    expect(queries.map((url) => url.pathname)).toEqual(Array(3).fill("/api/kubernetes/fleet/prod-*/proxy/api/v1/pods"));
    expect(queries.map((url) => url.searchParams.get("resourceVersion"))).toEqual([null, "rv-2", "rv-2"]);
    for (const url of queries) {
      expect(url.searchParams.get("watch")).toBe("true");
      expect(url.searchParams.get("labelSelector")).toBe("app=shop");
    }
  });

  it("ends quietly when aborted, also while waiting to reconnect", async () => {
    const controller = new AbortController();
    const { fetch, urls } = scriptedFetch([event("ADDED", "prod-a", "one", "rv-1"), ""]);
    const client = createClient({ baseUrl: "http://portal.test", fetch });
    const events = client.fleet.watch("*", "/api/v1/pods", { signal: controller.signal, minRetryDelayMs: 60_000 });
    expect((await events.next()).value).toMatchObject({ cluster: "prod-a", resourceVersion: "rv-1" });
    const pending = events.next(); // the stream ended: now waiting a minute to reconnect
    setTimeout(() => controller.abort(), 20);
    expect(await pending).toEqual({ done: true, value: undefined });
    expect(urls).toHaveLength(1);
  });

  it("throws when the first connection fails", async () => {
    const fetch: typeof globalThis.fetch = async () => {
      throw new TypeError("connection refused");
    };
    const client = createClient({ baseUrl: "http://portal.test", fetch });
    await expect(client.fleet.watch("*", "/api/v1/pods").next()).rejects.toThrow("connection refused");
  });
});
