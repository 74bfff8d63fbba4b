/**
 * Entity-scoped object queries against the live kubeportal: the seeded
 * `shop-api` objects on `dev`, and a per-cluster error for `offline`.
 */
import { describe, expect, inject, it } from "vitest";
import { createClient, KubeportalError, type ClusterObjects, type ObjectsByEntityResponse } from "../src/index.js";
import { CLUSTER, DEMO, OFFLINE_CLUSTER, OIDC_CLUSTER } from "./support/portal.js";

const portal = createClient({ baseUrl: inject("portalUrl") });

function entry(response: ObjectsByEntityResponse, cluster: string): ClusterObjects {
  const found = response.items.find((item) => item.cluster.name === cluster);
  if (!found) throw new Error(`no entry for ${cluster} in ${JSON.stringify(response)}`);
  return found;
}

function namesOf(objects: ClusterObjects, type: string): string[] {
  return objects.resources
    .filter((result) => result.type === type)
    .flatMap((result) => result.resources.map((object) => object.metadata?.name ?? ""))
    .sort();
}

describe("entity-scoped objects", () => {
  it("objectsByEntity returns the entity's objects per cluster, and an unreachable cluster as an error entry", async () => {
    const response = await portal.objectsByEntity(DEMO.entity);

    const dev = entry(response, CLUSTER);
    expect(dev.cluster.title).toBe("Development");
    expect(namesOf(dev, "pods")).toEqual([...DEMO.pods].sort());
    expect(namesOf(dev, "deployments")).toEqual(["shop-api"]);
    expect(namesOf(dev, "services")).toEqual(["shop-api"]);
    expect(dev.errors).toEqual([]);

    const offline = entry(response, OFFLINE_CLUSTER);
    expect(offline.resources.every((result) => result.resources.length === 0)).toBe(true);
    expect(offline.errors.length).toBeGreaterThan(0);
    expect(offline.errors[0]?.errorType).toBe("FETCH_ERROR");
  });

  it("sends the caller's own cluster credentials in auth", async () => {
    const without = entry(await portal.objectsByEntity(DEMO.entity), OIDC_CLUSTER);
    expect(without.errors[0]?.errorType).toBe("UNAUTHORIZED_ERROR");
    expect(namesOf(without, "pods")).toEqual([]);

    const withToken = entry(await portal.objectsByEntity(DEMO.entity, { oidc: { okta: "double-token" } }), OIDC_CLUSTER);
    expect(withToken.errors).toEqual([]);
    expect(namesOf(withToken, "pods")).toEqual([...DEMO.pods].sort());

    const workloads = entry(await portal.workloadsByEntityRef(DEMO.entityRef, { oidc: { okta: "double-token" } }), OIDC_CLUSTER);
    expect(namesOf(workloads, "deployments")).toEqual(["shop-api"]);
  });

  it("selects by a label selector annotation", async () => {
    const entity = {
      ...DEMO.entity,
      metadata: { name: "by-selector", annotations: { "backstage.io/kubernetes-label-selector": "app=shop-api" } },
    };
    const dev = entry(await portal.objectsByEntity(entity), CLUSTER);
    expect(namesOf(dev, "pods")).toEqual([...DEMO.pods].sort());
  });

  it("workloadsByEntityRef looks the entity up in the catalog", async () => {
    const dev = entry(await portal.workloadsByEntityRef(DEMO.entityRef), CLUSTER);
    expect(namesOf(dev, "pods")).toEqual([...DEMO.pods].sort());
    expect(namesOf(dev, "deployments")).toEqual(["shop-api"]);
  });

  it("customResources lists the requested types for the entity", async () => {
    // Any API type can be asked for; the seeded double has deployments.
    const response = await portal.customResources(DEMO.entityRef, [{ group: "apps", apiVersion: "v1", plural: "deployments" }]);
    const dev = entry(response, CLUSTER);
    expect(namesOf(dev, "customresources")).toEqual(["shop-api"]);
    expect(namesOf(dev, "pods")).toEqual([]);
  });

  it("an entity the catalog does not know is an InputError naming the ref, as Backstage answers", async () => {
    const error = await portal.workloadsByEntityRef("component:default/nobody").catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(KubeportalError);
    expect(error).toMatchObject({ name: "InputError", status: 400 });
    expect((error as Error).message).toContain("Entity ref missing, component:default/nobody");
  });
});
