import type { TestProject } from "vitest/node";
import { startPortal } from "./support/portal.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** The base URL of the kubeportal every test file talks to. */
    portalUrl: string;
  }
}

/** One kubeportal + test double for the whole run. */
export default async function setup(project: TestProject) {
  const portal = await startPortal();
  project.provide("portalUrl", portal.url);
  return () => portal.stop();
}
