/**
 * Types of the entity-scoped object queries (design section 8, Backstage's
 * `ObjectsByEntityResponse`), built on the generated wire types. The
 * document describes Kubernetes objects, entities and credentials as free-form
 * objects; they are typed more usefully here.
 */
import type { components } from "./schema.js";

type Schemas = components["schemas"];

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
 * `{ google: "<token>" }`, `{ oidc: { okta: "<token>" } }` or `{ client: "<token>" }`.
 */
export interface KubernetesRequestAuth {
  google?: string;
  oidc?: Record<string, string>;
  client?: string;
  [provider: string]: unknown;
}

/** A custom resource type to fetch, e.g. `{group: "argoproj.io", apiVersion: "v1alpha1", plural: "rollouts"}`. */
export type CustomResourceMatcher = Schemas["CustomResourceConfig"];

/** Why one cluster, or one of its lists, could not be read. */
export type KubernetesFetchError = Schemas["FetchError"];

/** `BAD_REQUEST`, `UNAUTHORIZED_ERROR`, `NOT_FOUND`, `SYSTEM_ERROR`, `UNKNOWN_ERROR` or `FETCH_ERROR` (also for a list that missed the deadline). */
export type KubernetesErrorType = Schemas["ErrorType"];

/** The objects of one type on one cluster, e.g. `{type: "pods", resources: [...]}`. */
export type FetchResponse = Omit<Schemas["FetchResult"], "resources"> & {
  resources: KubernetesObject[];
};

/** Usage against the totals declared in the pod spec (Backstage's `ClientCurrentResourceUsage`): CPU in cores, memory in bytes. */
export interface CurrentResourceUsage {
  currentUsage: number | string;
  requestTotal: number | string;
  limitTotal: number | string;
}

/** One pod's usage, as Backstage's `ClientPodStatus`. */
export interface PodStatus {
  pod: KubernetesObject;
  cpu: CurrentResourceUsage;
  memory: CurrentResourceUsage;
  containers: {
    container: string;
    cpuUsage: CurrentResourceUsage;
    memoryUsage: CurrentResourceUsage;
  }[];
}

/** What one cluster holds for an entity. */
export type ClusterObjects = Omit<Schemas["ClusterObjects"], "resources" | "podMetrics"> & {
  resources: FetchResponse[];
  /** One status per pod listed, when the cluster serves `metrics.k8s.io`. */
  podMetrics: PodStatus[];
};

/** The answer of every entity-scoped query: one entry per cluster. */
export type ObjectsByEntityResponse = Omit<Schemas["ObjectsResponse"], "items"> & {
  items: ClusterObjects[];
};
