/**
 * Types of the entity-scoped object queries (design section 8, Backstage's
 * `ObjectsByEntityResponse`).
 */

/** Any Kubernetes object; the fields every object has are typed, the rest is open. */
export interface KubernetesObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    creationTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [field: string]: unknown;
  };
  [field: string]: unknown;
}

/** A Backstage catalog entity, as much of it as selecting its objects needs. */
export interface CatalogEntity {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    annotations?: Record<string, string> & {
      "backstage.io/kubernetes-id"?: string;
      "backstage.io/kubernetes-label-selector"?: string;
      "backstage.io/kubernetes-namespace"?: string;
      "backstage.io/kubernetes-cluster"?: string;
    };
    [field: string]: unknown;
  };
  [field: string]: unknown;
}

/**
 * Client-side credentials for clusters whose authProvider needs the caller's
 * own token, keyed by provider as Backstage's frontend sends them, e.g.
 * `{ google: "<token>" }` or `{ oidc: { okta: "<token>" } }`.
 */
export interface KubernetesRequestAuth {
  google?: string;
  oidc?: Record<string, string>;
  [provider: string]: unknown;
}

/** A custom resource to fetch alongside the default object types. */
export interface CustomResourceMatcher {
  group: string;
  apiVersion: string;
  plural: string;
}

/** Why one cluster's objects of one type could not be listed. */
export interface KubernetesFetchError {
  errorType:
    | "BAD_REQUEST"
    | "UNAUTHORIZED_ERROR"
    | "NOT_FOUND"
    | "SYSTEM_ERROR"
    | "UNKNOWN_ERROR"
    | "FETCH_ERROR"
    | "TIMEOUT"
    | (string & {});
  statusCode?: number;
  resourcePath?: string;
  message?: string;
}

/** The objects of one type on one cluster, e.g. `{type: "pods", resources: [...]}`. */
export interface FetchResponse {
  type: string;
  resources: KubernetesObject[];
}

/** What one cluster holds for an entity. */
export interface ClusterObjects {
  cluster: { name: string; title?: string | null; dashboardUrl?: string | null };
  resources: FetchResponse[];
  podMetrics: unknown[];
  errors: KubernetesFetchError[];
}

/** The answer of every entity-scoped query: one entry per cluster. */
export interface ObjectsByEntityResponse {
  items: ClusterObjects[];
}
