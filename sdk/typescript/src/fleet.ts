/**
 * The fleet view: one list and one watch of a resource across every cluster
 * whose name matches a glob (`GET /api/kubernetes/fleet/{clusterGlob}/proxy/<path>`).
 *
 * The server merges every cluster's answer: each object carries its cluster
 * in the `kubeportal.io/cluster` annotation, and `continue` and
 * `resourceVersion` are opaque composites of every cluster's own. This module
 * unwraps that into typed items and events that name their cluster.
 */
import { KubeportalError, errorOf, isErrorResponse } from "./errors.js";
import { readLines } from "./lines.js";
import type { KubernetesObject } from "./objects.js";

/** The annotation the fleet view writes on every object: its cluster's name. */
export const FLEET_CLUSTER_ANNOTATION = "kubeportal.io/cluster";

/** How one cluster of the fleet answered a list (the list's `clusters` stanza). */
export interface FleetClusterStatus {
  /** The cluster's name. */
  name: string;
  /** `Failure` when the cluster failed, was unreachable or missed the deadline; its items are then missing. */
  status: "Success" | "Failure";
  /** For a failure: the HTTP status (the cluster's, or 502 / 504 from kubeportal). */
  code?: number;
  /** For a failure: why. */
  message?: string;
}

/** One object of a fleet list, with the cluster it is on. */
export interface FleetItem<T = KubernetesObject> {
  cluster: string;
  /** The object as the cluster served it (plus the `kubeportal.io/cluster` annotation). */
  object: T;
}

/** One page of a fleet list. */
export interface FleetList<T = KubernetesObject> {
  /** The kind of the merged list, e.g. `PodList`. */
  kind: string;
  apiVersion: string;
  /** Every matching cluster's items, ordered by cluster name. */
  items: FleetItem<T>[];
  /** One entry per cluster asked, ordered by name; check it for partial results. */
  clusters: FleetClusterStatus[];
  /** Opaque: pass it to `fleet.watch` to see only later changes. */
  resourceVersion: string;
  /** Opaque: present when some cluster has more; pass it as `continue` for the next page. */
  continue?: string;
}

export interface FleetListOptions {
  /** At most this many items per cluster (each cluster pages on its own). */
  limit?: number;
  /** `continue` of the previous page. */
  continue?: string;
  labelSelector?: string;
  fieldSelector?: string;
  signal?: AbortSignal;
}

export interface FleetWatchOptions {
  /** Start after this position: a `resourceVersion` from `fleet.list` or from an event. */
  resourceVersion?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Ask for `BOOKMARK` events (positions without a change). */
  allowBookmarks?: boolean;
  /**
   * Ends each connection after this many seconds; the watch itself goes on
   * (it reconnects from its last position). Without it a connection lasts
   * until the server or the network ends it.
   */
  timeoutSeconds?: number;
  /** The first wait before reconnecting, doubled after each failed attempt (default 250 ms). */
  minRetryDelayMs?: number;
  /** The longest wait before reconnecting (default 30 s). */
  maxRetryDelayMs?: number;
  /** Aborting ends the iteration (no error is thrown) and closes the stream. */
  signal?: AbortSignal;
}

/** An event of a fleet watch. */
export type FleetWatchEvent<T = KubernetesObject> =
  | {
      type: "ADDED" | "MODIFIED" | "DELETED";
      /** The cluster the object is on. */
      cluster: string;
      object: T;
      /** Opaque: resume a later watch from here with `{resourceVersion}` to miss nothing on any cluster. */
      resourceVersion: string;
    }
  | {
      /** A position without a change (only with `allowBookmarks`). */
      type: "BOOKMARK";
      /** Bookmarks do not name their cluster. */
      cluster: undefined;
      object: T;
      resourceVersion: string;
    };

/** Sends a `GET` of a path under `/api/kubernetes` with the caller's identity. */
export type FleetTransport = (path: string, signal: AbortSignal | undefined) => Promise<Response>;

/**
 * Lists and watches across clusters. Reach it as `client.fleet`.
 *
 * `clusterGlob` is a cluster name with the wildcards `*` and `?`, matched
 * without regard to case (`prod-*`, `*`); clusters the caller may not read are
 * left out. `path` is a Kubernetes list path, e.g. `/api/v1/pods` or
 * `/apis/apps/v1/namespaces/shop/deployments`, and may carry a query.
 */
export class FleetClient {
  constructor(private readonly get: FleetTransport) {}

  /**
   * One page of the merged list. A cluster that fails does not fail the
   * list: it is a `Failure` in `clusters` and its items are missing.
   * kubeportal's own errors (bad glob or `continue`, identity, not a list)
   * throw a {@link KubeportalError}.
   */
  async list<T = KubernetesObject>(
    clusterGlob: string,
    path: string,
    options: FleetListOptions = {},
  ): Promise<FleetList<T>> {
    const { pathOnly, query } = splitQuery(path);
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    if (options.continue !== undefined) query.set("continue", options.continue);
    if (options.labelSelector !== undefined) query.set("labelSelector", options.labelSelector);
    if (options.fieldSelector !== undefined) query.set("fieldSelector", options.fieldSelector);
    const response = await this.send(clusterGlob, pathOnly, query, options.signal);
    const body = (await response.json()) as {
      kind?: string;
      apiVersion?: string;
      metadata?: { resourceVersion?: string; continue?: string };
      items?: (T & KubernetesObject)[];
      clusters?: FleetClusterStatus[];
    };
    const list: FleetList<T> = {
      kind: body.kind ?? "List",
      apiVersion: body.apiVersion ?? "v1",
      items: (body.items ?? []).map((object) => ({ cluster: clusterOf(object) ?? "", object })),
      clusters: body.clusters ?? [],
      resourceVersion: body.metadata?.resourceVersion ?? "",
    };
    if (body.metadata?.continue) list.continue = body.metadata.continue;
    return list;
  }

  /**
   * Watches the merged fleet, yielding each cluster's events as they come.
   *
   * Without `resourceVersion`, each cluster starts with an `ADDED` event per
   * existing object. If the first connection fails, the iteration throws.
   * When a connection ends or drops, the watch reconnects
   * from the last event's `resourceVersion` (after a short, growing delay), so
   * no event is lost or repeated. It ends only when `signal` aborts or the
   * loop is left, or with an error: a {@link KubeportalError} with status 410
   * (`name: "Expired"`) when a cluster no longer has that position (list
   * again, then watch from the list's `resourceVersion`), or kubeportal's own
   * 4xx (bad glob or `resourceVersion`, identity).
   */
  async *watch<T = KubernetesObject>(
    clusterGlob: string,
    path: string,
    options: FleetWatchOptions = {},
  ): AsyncGenerator<FleetWatchEvent<T>, void, undefined> {
    const { signal } = options;
    const { pathOnly, query } = splitQuery(path);
    query.set("watch", "true");
    if (options.labelSelector !== undefined) query.set("labelSelector", options.labelSelector);
    if (options.fieldSelector !== undefined) query.set("fieldSelector", options.fieldSelector);
    if (options.allowBookmarks) query.set("allowWatchBookmarks", "true");
    if (options.timeoutSeconds !== undefined) query.set("timeoutSeconds", String(options.timeoutSeconds));
    const minDelay = options.minRetryDelayMs ?? 250;
    const maxDelay = Math.max(minDelay, options.maxRetryDelayMs ?? 30_000);
    let resourceVersion = options.resourceVersion ?? query.get("resourceVersion") ?? undefined;
    let delay = minDelay;
    let connected = false;
    for (;;) {
      if (connected) {
        if (!(await sleep(delay, signal))) return;
        delay = Math.min(delay * 2, maxDelay);
      }
      if (resourceVersion !== undefined) query.set("resourceVersion", resourceVersion);
      let response: Response;
      try {
        response = await this.send(clusterGlob, pathOnly, query, signal);
      } catch (error) {
        if (signal?.aborted) return;
        // The first connection's failure is the caller's to see; later ones are retried.
        if (connected && retryable(error)) continue;
        throw error;
      }
      connected = true;
      if (!response.body) continue;
      try {
        for await (const line of readLines(response.body)) {
          if (line.trim().length === 0) continue;
          const event = JSON.parse(line) as { type?: string; object?: T & KubernetesObject };
          const object = event.object ?? ({} as T & KubernetesObject);
          if (event.type === "ERROR") {
            throw statusError(object);
          }
          const position = object.metadata?.resourceVersion;
          if (position) resourceVersion = position;
          delay = minDelay;
          if (event.type === "BOOKMARK") {
            yield { type: "BOOKMARK", cluster: undefined, object, resourceVersion: position ?? "" };
          } else if (event.type === "ADDED" || event.type === "MODIFIED" || event.type === "DELETED") {
            yield { type: event.type, cluster: clusterOf(object) ?? "", object, resourceVersion: position ?? "" };
          }
        }
      } catch (error) {
        if (signal?.aborted) return;
        if (error instanceof KubeportalError || error instanceof SyntaxError) throw error;
        // The connection dropped: reconnect from the last position.
      }
      if (signal?.aborted) return;
    }
  }

  private async send(
    clusterGlob: string,
    path: string,
    query: URLSearchParams,
    signal: AbortSignal | undefined,
  ): Promise<Response> {
    const text = query.toString();
    const target = `/fleet/${encodeURIComponent(clusterGlob)}/proxy${leadingSlash(path)}${text ? `?${text}` : ""}`;
    const response = await this.get(target, signal);
    if (!response.ok) throw await fleetErrorOf(response);
    return response;
  }
}

/** The portal's error names by HTTP status, as its other routes answer them. */
const PORTAL_ERROR_NAMES: Record<number, string> = {
  400: "InputError",
  401: "AuthenticationError",
  403: "NotAllowedError",
  404: "NotFoundError",
  405: "MethodNotAllowedError",
  406: "NotAcceptableError",
  409: "ConflictError",
  413: "PayloadTooLargeError",
  500: "InternalServerError",
  501: "NotImplementedError",
  502: "BadGatewayError",
  503: "ServiceUnavailableError",
  504: "GatewayTimeoutError",
};

/**
 * The error of a failed fleet request. The fleet route answers kubeportal's
 * own errors as Kubernetes `Status` objects (for kubectl); they are named as
 * every other portal error is (`InputError`, `AuthenticationError`, …).
 */
async function fleetErrorOf(response: Response): Promise<KubeportalError> {
  const text = await response.clone().text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const status = body as { kind?: unknown; message?: unknown } | undefined;
  if (!isErrorResponse(body) && status?.kind === "Status") {
    return new KubeportalError({
      name: PORTAL_ERROR_NAMES[response.status] ?? "ResponseError",
      status: response.status,
      message: typeof status.message === "string" ? status.message : `${response.status} ${response.statusText}`,
      origin: "portal",
    });
  }
  return errorOf(response, "portal");
}

/** The error an `ERROR` watch event carries (its object is a `Status`). */
function statusError(object: KubernetesObject): KubeportalError {
  const code = typeof object.code === "number" ? object.code : 500;
  return new KubeportalError({
    name: typeof object.reason === "string" && object.reason ? object.reason : "KubernetesError",
    status: code,
    message: typeof object.message === "string" ? object.message : `the watch failed (${code})`,
    origin: "cluster",
  });
}

/** Errors worth reconnecting after: the network, or kubeportal briefly unavailable. */
function retryable(error: unknown): boolean {
  if (error instanceof KubeportalError) return error.status >= 500;
  return error instanceof TypeError; // what fetch rejects with when the network fails
}

function clusterOf(object: KubernetesObject | undefined): string | undefined {
  return object?.metadata?.annotations?.[FLEET_CLUSTER_ANNOTATION];
}

function splitQuery(path: string): { pathOnly: string; query: URLSearchParams } {
  const questionMark = path.indexOf("?");
  return {
    pathOnly: questionMark === -1 ? path : path.slice(0, questionMark),
    query: new URLSearchParams(questionMark === -1 ? "" : path.slice(questionMark + 1)),
  };
}

function leadingSlash(path: string): string {
  return path.startsWith("/") ? path : `/${path}`;
}

/** Waits `ms`; `false` when `signal` aborted first. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (completed: boolean) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      resolve(completed);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
