import { errorOf, portalErrorOf } from "./errors.js";
import { execProtocols, openExecSession, type ExecOptions, type ExecSession } from "./exec.js";
import { FleetClient } from "./fleet.js";
import { readLines } from "./lines.js";
import type {
  CatalogEntity,
  CustomResourceMatcher,
  KubernetesObject,
  KubernetesRequestAuth,
  ObjectsByEntityResponse,
} from "./objects.js";
import type {
  AuditPage,
  ClusterDetail,
  ClusterInput,
  ClusterList,
  ClusterSummary,
  ClusterUpdate,
  RecordingPage,
  TicketResponse,
} from "./types.js";

/** A token, or nothing for an anonymous (guest) call. */
type MaybeToken = string | null | undefined;

export interface ClientOptions {
  /**
   * Where kubeportal is served, e.g. `https://portal.example` or
   * `http://127.0.0.1:7007`. In a browser, `""` means the page's own origin.
   */
  baseUrl: string;
  /**
   * The caller's portal identity token, sent as `Authorization: Bearer …` on
   * every call. Called once per request, so it may refresh the token.
   * Leave it out when `fetch` already authenticates (Backstage's `fetchApi`)
   * or to call as the guest.
   */
  getToken?: () => MaybeToken | Promise<MaybeToken>;
  /** The `fetch` to use; defaults to the global one. */
  fetch?: typeof globalThis.fetch;
}

/** `fetch` options for `proxy()`, plus the cluster's own credential. */
export interface ProxyInit extends RequestInit {
  /**
   * A token for the cluster itself, sent as
   * `Backstage-Kubernetes-Authorization: Bearer <token>`; without it the
   * cluster's server-side credential is used.
   */
  clusterToken?: string;
}

export interface PodLogsOptions {
  /** The container; required by Kubernetes when the pod has more than one. */
  container?: string;
  /** Keep the stream open and yield lines as the container writes them. */
  follow?: boolean;
  /** Start this many lines from the end. */
  tailLines?: number;
  /** Only lines newer than this many seconds. */
  sinceSeconds?: number;
  /** Prefix each line with its RFC 3339 timestamp. */
  timestamps?: boolean;
  /** The previous (terminated) instance of the container. */
  previous?: boolean;
  /** Aborting ends the iteration (no error is thrown) and closes the stream. */
  signal?: AbortSignal;
  clusterToken?: string;
}

export interface WatchOptions {
  /** Start after this resource version (from a previous list or event). */
  resourceVersion?: string;
  /** Aborting ends the iteration (no error is thrown) and closes the stream. */
  signal?: AbortSignal;
  clusterToken?: string;
}

/** One event of a Kubernetes watch stream. */
export interface WatchEvent<T = KubernetesObject> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  /** The object; for `ERROR`, a Kubernetes `Status`. */
  object: T;
}

export interface ClusterPageOptions {
  /** Page size, 1 to 1000 (the server's default is 100). */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
}

/** Filters of the audit trail; every one given must match. */
export interface AuditFilters {
  cluster?: string;
  /** The exact subject ref, e.g. `user:default/alice`. */
  subject?: string;
  /** The HTTP method, e.g. `GET` (`CONNECT` for a WebSocket over HTTP/2). */
  method?: string;
  /** The HTTP status, e.g. 403 or 101 (an exec session). */
  status?: number;
  /** Records at or after this time. */
  since?: Date | string;
  /** Records before this time. */
  until?: Date | string;
  /** Page size, 1 to 1000 (the server's default is 100). */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: number;
}

/** Filters of the session recordings. */
export interface RecordingFilters {
  cluster?: string;
  subject?: string;
  /** Sessions that started at or after this time. */
  since?: Date | string;
  /** Sessions that started before this time. */
  until?: Date | string;
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
}

/** Where an exec session goes. */
export interface ExecTarget {
  cluster: string;
  namespace: string;
  pod: string;
}

/** A cluster update; `version` (from `cluster()` or the last write) is required. */
export type VersionedClusterUpdate = ClusterUpdate & { version: number };

const API = "/api/kubernetes";

/** The typed kubeportal client. Create one with {@link createClient}. */
export class KubeportalClient {
  private readonly baseUrl: string;
  private readonly getToken?: ClientOptions["getToken"];
  private readonly fetchImpl: typeof globalThis.fetch;

  /**
   * The fleet view: one list or watch across every cluster whose name matches
   * a glob, e.g. `fleet.list("prod-*", "/api/v1/pods")`. See {@link FleetClient}.
   */
  readonly fleet: FleetClient;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.getToken = options.getToken;
    // Call the global fetch unbound from this object: browsers reject
    // `fetch` invoked with a `this` other than `window`.
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.fleet = new FleetClient(async (path, signal) => {
      const headers = new Headers({ Accept: "application/json" });
      await this.authenticate(headers);
      return this.fetchImpl(this.url(`${API}${path}`), { method: "GET", headers, signal });
    });
  }

  // ---- cluster registry -------------------------------------------------

  /** Every cluster the caller may see, following pages. */
  async clusters(): Promise<ClusterSummary[]> {
    const clusters: ClusterSummary[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.clustersPage({ limit: 1000, cursor });
      clusters.push(...page.items);
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    return clusters;
  }

  /** One page of clusters, ordered by name. */
  clustersPage(options: ClusterPageOptions = {}): Promise<ClusterList> {
    const query = new URLSearchParams();
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    if (options.cursor !== undefined) query.set("cursor", options.cursor);
    return this.json<ClusterList>("GET", withQuery(`${API}/clusters`, query));
  }

  /** One cluster, without its secrets (admins: `kubernetes.clusters.manage`). */
  cluster(name: string): Promise<ClusterDetail> {
    return this.json<ClusterDetail>("GET", clusterPath(name));
  }

  /** Registers a cluster (admins). A duplicate name is a `ConflictError`. */
  createCluster(input: ClusterInput): Promise<ClusterDetail> {
    return this.json<ClusterDetail>("POST", `${API}/clusters`, { body: input });
  }

  /**
   * Replaces a cluster (admins). `update.version` is the version it is based
   * on; a stale one is a `ConflictError`. A detail read with `cluster()` can
   * be sent back with changes; absent secrets keep their stored values.
   */
  updateCluster(name: string, update: VersionedClusterUpdate): Promise<ClusterDetail> {
    return this.json<ClusterDetail>("PUT", clusterPath(name), {
      body: update,
      headers: { "If-Match": `"${update.version}"` },
    });
  }

  /** Removes a cluster (admins); with `version`, only if it is still at that version. */
  async deleteCluster(name: string, options: { version?: number } = {}): Promise<void> {
    const headers: Record<string, string> =
      options.version === undefined ? {} : { "If-Match": `"${options.version}"` };
    await this.send("DELETE", clusterPath(name), { headers });
  }

  /**
   * A kubeconfig (YAML) whose server is the path-form proxy for this cluster.
   * It carries no credentials: set the portal token as the user's token.
   */
  async kubeconfig(name: string): Promise<string> {
    const response = await this.send("GET", `${clusterPath(name)}/kubeconfig`, {
      headers: { Accept: "application/yaml" },
    });
    return response.text();
  }

  // ---- entity-scoped objects --------------------------------------------

  /** An entity's objects on every cluster it runs on (Backstage's `POST /services/{name}`). */
  objectsByEntity(entity: CatalogEntity, auth?: KubernetesRequestAuth): Promise<ObjectsByEntityResponse> {
    return this.json<ObjectsByEntityResponse>(
      "POST",
      `${API}/services/${encodeURIComponent(entity.metadata.name)}`,
      { body: { entity, auth } },
    );
  }

  /** The workloads of a catalog entity, e.g. `component:default/shop-api`. */
  workloadsByEntityRef(entityRef: string, auth?: KubernetesRequestAuth): Promise<ObjectsByEntityResponse> {
    return this.json<ObjectsByEntityResponse>("POST", `${API}/resources/workloads/query`, {
      body: { entityRef, auth },
    });
  }

  /** Custom resources of a catalog entity. */
  customResources(
    entityRef: string,
    customResources: CustomResourceMatcher[],
    auth?: KubernetesRequestAuth,
  ): Promise<ObjectsByEntityResponse> {
    return this.json<ObjectsByEntityResponse>("POST", `${API}/resources/custom/query`, {
      body: { entityRef, customResources, auth },
    });
  }

  // ---- audit trail and session recordings (kubernetes.audit.read) -------

  /** One page of the audit trail, newest first. */
  audit(filters: AuditFilters = {}): Promise<AuditPage> {
    const query = new URLSearchParams();
    for (const key of ["cluster", "subject", "method"] as const) {
      const value = filters[key];
      if (value !== undefined && value !== "") query.set(key, value);
    }
    if (filters.status !== undefined) query.set("status", String(filters.status));
    setTime(query, "since", filters.since);
    setTime(query, "until", filters.until);
    if (filters.limit !== undefined) query.set("limit", String(filters.limit));
    if (filters.cursor !== undefined) query.set("cursor", String(filters.cursor));
    return this.json<AuditPage>("GET", withQuery(`${API}/audit`, query));
  }

  /** One page of recorded exec and attach sessions, newest first. */
  recordings(filters: RecordingFilters = {}): Promise<RecordingPage> {
    const query = new URLSearchParams();
    for (const key of ["cluster", "subject", "cursor"] as const) {
      const value = filters[key];
      if (value !== undefined && value !== "") query.set(key, value);
    }
    setTime(query, "since", filters.since);
    setTime(query, "until", filters.until);
    if (filters.limit !== undefined) query.set("limit", String(filters.limit));
    return this.json<RecordingPage>("GET", withQuery(`${API}/recordings`, query));
  }

  /**
   * A session recording as asciicast v2 text (a header line, then one
   * `[seconds, "o" | "r" | "m", data]` event per line), by the id an audit
   * record's `recording` or `recordings()` gives.
   */
  async recording(id: string): Promise<string> {
    const response = await this.send("GET", `${API}/recordings/${encodeURIComponent(id)}`, {
      headers: { Accept: "application/x-asciicast, application/json" },
    });
    return response.text();
  }

  // ---- browser WebSockets: exec ------------------------------------------

  /**
   * A one-time ticket for one WebSocket upgrade of `path` (a pod's `exec`,
   * `attach` or `portforward`, e.g. `/api/v1/namespaces/shop/pods/api-0/exec`)
   * within 30 seconds. A policy denial is a 403 `NotAllowedError`, whose
   * message carries the deny rule's description when it has one.
   */
  ticket(cluster: string, path: string): Promise<TicketResponse> {
    return this.json<TicketResponse>("POST", `${clusterPath(cluster)}/tickets`, { body: { path } });
  }

  /**
   * The WebSocket URL of an exec session (path form, `?ticket=`), absolute:
   * against the page's origin when `baseUrl` is `""`.
   */
  execUrl(target: ExecTarget, options: Pick<ExecOptions, "command" | "container" | "tty" | "stdin">, ticket: string): string {
    const query = new URLSearchParams();
    for (const part of options.command) query.append("command", part);
    if (options.container !== undefined) query.set("container", options.container);
    query.set("stdin", String(options.stdin ?? true));
    query.set("stdout", "true");
    query.set("stderr", "true");
    query.set("tty", String(options.tty ?? false));
    query.set("ticket", ticket);
    const url = new URL(
      `${this.baseUrl}${clusterPath(target.cluster)}/proxy${podPath(target)}/exec?${query}`,
      (globalThis as { location?: { href: string } }).location?.href,
    );
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.toString();
  }

  /**
   * Runs a command in a pod over a WebSocket, as a browser can: asks for a
   * ticket (a denial throws its {@link KubeportalError}), then opens the
   * session with the `v5.channel.k8s.io` protocol. Output goes to
   * `options.onOutput`; write input, resize the terminal and close with the
   * session; `session.closed` tells how the command ended.
   */
  async exec(target: ExecTarget, options: ExecOptions): Promise<ExecSession> {
    if (options.command.length === 0) throw new TypeError("exec needs a command");
    const { ticket } = await this.ticket(target.cluster, `${podPath(target)}/exec`);
    return openExecSession(this.execUrl(target, options, ticket), execProtocols(options.clusterToken), options);
  }

  // ---- the proxy ----------------------------------------------------------

  /**
   * Any Kubernetes API call to one cluster, e.g.
   * `proxy("prod", "/api/v1/namespaces")`. The answer is the cluster's, as a
   * standard `Response` whose body streams; a non-2xx from the cluster is
   * returned as is. Errors kubeportal itself produces (identity, policy,
   * unknown cluster, unreachable cluster) throw a {@link KubeportalError}.
   */
  async proxy(cluster: string, path: string, init: ProxyInit = {}): Promise<Response> {
    const { clusterToken, ...requestInit } = init;
    const headers = new Headers(requestInit.headers);
    headers.set("Backstage-Kubernetes-Cluster", cluster);
    if (clusterToken !== undefined) {
      headers.set("Backstage-Kubernetes-Authorization", `Bearer ${clusterToken}`);
    }
    await this.authenticate(headers);
    const response = await this.fetchImpl(this.url(`${API}/proxy${leadingSlash(path)}`), {
      ...requestInit,
      headers,
    });
    if (!response.ok) {
      const error = await portalErrorOf(response);
      if (error) throw error;
    }
    return response;
  }

  /**
   * A pod's log, line by line as it arrives. With `follow`, the iteration
   * lasts until the container stops, the loop is left, or `signal` aborts.
   */
  async *podLogs(
    cluster: string,
    namespace: string,
    pod: string,
    options: PodLogsOptions = {},
  ): AsyncGenerator<string, void, undefined> {
    const query = new URLSearchParams();
    if (options.container !== undefined) query.set("container", options.container);
    if (options.follow) query.set("follow", "true");
    if (options.tailLines !== undefined) query.set("tailLines", String(options.tailLines));
    if (options.sinceSeconds !== undefined) query.set("sinceSeconds", String(options.sinceSeconds));
    if (options.timestamps) query.set("timestamps", "true");
    if (options.previous) query.set("previous", "true");
    const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/log`;
    yield* this.streamLines(cluster, withQuery(path, query), options);
  }

  /**
   * Watches a list path, e.g. `/api/v1/namespaces/shop/pods`, yielding each
   * event as the cluster sends it (`watch=true` is added to the query).
   */
  async *watch<T = KubernetesObject>(
    cluster: string,
    path: string,
    options: WatchOptions = {},
  ): AsyncGenerator<WatchEvent<T>, void, undefined> {
    const questionMark = path.indexOf("?");
    const pathOnly = questionMark === -1 ? path : path.slice(0, questionMark);
    const query = new URLSearchParams(questionMark === -1 ? "" : path.slice(questionMark + 1));
    query.set("watch", "true");
    if (options.resourceVersion !== undefined) query.set("resourceVersion", options.resourceVersion);
    for await (const line of this.streamLines(cluster, withQuery(pathOnly, query), options)) {
      if (line.trim().length > 0) {
        yield JSON.parse(line) as WatchEvent<T>;
      }
    }
  }

  private async *streamLines(
    cluster: string,
    path: string,
    options: { signal?: AbortSignal; clusterToken?: string },
  ): AsyncGenerator<string, void, undefined> {
    const { signal, clusterToken } = options;
    let response: Response;
    try {
      response = await this.proxy(cluster, path, { signal, clusterToken });
    } catch (error) {
      if (signal?.aborted) return;
      throw error;
    }
    if (!response.ok) {
      throw await errorOf(response, "cluster");
    }
    if (!response.body) return;
    try {
      yield* readLines(response.body);
    } catch (error) {
      if (signal?.aborted) return;
      throw error;
    }
  }

  // ---- plumbing -----------------------------------------------------------

  private url(path: string): string {
    return `${this.baseUrl}${path}`;
  }

  private async authenticate(headers: Headers): Promise<void> {
    if (headers.has("Authorization") || !this.getToken) return;
    const token = await this.getToken();
    if (token) headers.set("Authorization", `Bearer ${token}`);
  }

  /** Sends a portal request; a non-2xx throws a {@link KubeportalError}. */
  private async send(
    method: string,
    path: string,
    options: { body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const headers = new Headers(options.headers);
    if (!headers.has("Accept")) headers.set("Accept", "application/json");
    let body: string | undefined;
    if (options.body !== undefined) {
      headers.set("Content-Type", "application/json");
      body = JSON.stringify(options.body);
    }
    await this.authenticate(headers);
    const response = await this.fetchImpl(this.url(path), { method, headers, body });
    if (!response.ok) {
      throw await errorOf(response, "portal");
    }
    return response;
  }

  private async json<T>(
    method: string,
    path: string,
    options: { body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<T> {
    const response = await this.send(method, path, options);
    return (await response.json()) as T;
  }
}

/** Creates a client for the kubeportal at `options.baseUrl`. */
export function createClient(options: ClientOptions): KubeportalClient {
  return new KubeportalClient(options);
}

function clusterPath(name: string): string {
  return `${API}/clusters/${encodeURIComponent(name)}`;
}

function podPath(target: ExecTarget): string {
  return `/api/v1/namespaces/${encodeURIComponent(target.namespace)}/pods/${encodeURIComponent(target.pod)}`;
}

function setTime(query: URLSearchParams, key: string, value: Date | string | undefined): void {
  if (value === undefined || value === "") return;
  query.set(key, value instanceof Date ? value.toISOString() : value);
}

function withQuery(path: string, query: URLSearchParams): string {
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

function leadingSlash(path: string): string {
  return path.startsWith("/") ? path : `/${path}`;
}
