/**
 * The built demo, served by kubeportal itself (`server.webRoot`), driven in
 * headless Chromium against the seeded test double. Screenshots are written
 * to test-results/.
 */
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  CLUSTER,
  DEMO,
  OFFLINE_CLUSTER,
  OIDC_CLUSTER,
  startPortal,
  TOKENS,
  type RunningPortal,
} from "../../sdk/typescript/test/support/portal.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const results = join(root, "test-results");

/** Debian's chromium; never a downloaded browser. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

let portal: RunningPortal;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let pageErrors: string[];

beforeAll(async () => {
  if (!existsSync(join(dist, "index.html"))) throw new Error("web-demo/dist is missing: run `npm run build` first");
  mkdirSync(results, { recursive: true });
  portal = await startPortal({ webRoot: dist });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

afterAll(async () => {
  await browser?.close();
  await portal?.stop();
});

beforeEach(async () => {
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));
});

afterEach(async () => {
  await context.close();
  expect(pageErrors).toEqual([]);
});

async function screenshot(name: string): Promise<void> {
  await page.screenshot({ path: join(results, `${name}.png`), fullPage: true });
}

async function continueAsGuest(): Promise<void> {
  await page.goto(portal.url);
  await page.getByTestId("guest").click();
  await page.locator(`[data-testid=cluster][data-cluster=${CLUSTER}]`).waitFor();
}

/** The log lines on screen. */
async function logLines(): Promise<string[]> {
  const text = await page.getByTestId("log-lines").textContent();
  return (text ?? "").split("\n").filter(Boolean);
}

/** The timestamp the seeded double writes at the start of each log line. */
function loggedAt(line: string): number {
  return Date.parse(line.split(" ", 1)[0] ?? "");
}

describe("web demo", () => {
  it("shows the clusters, an entity's workloads per cluster, and follows a log live", async () => {
    const opened = Date.now();
    await continueAsGuest();
    expect(await page.getByTestId("identity").textContent()).toBe("Guest");
    const clusters = await page.getByTestId("cluster").allInnerTexts();
    expect(clusters.join("\n")).toContain("Development");
    expect(clusters.join("\n")).toContain("Offline");

    await page.getByTestId("entity-input").fill(DEMO.kubernetesId);
    await page.getByTestId("show-workloads").click();
    const dev = page.locator(`[data-testid=cluster-result][data-cluster=${CLUSTER}]`);
    await dev.getByTestId("pod-name").first().waitFor();
    expect((await dev.getByTestId("pod-name").allTextContents()).sort()).toEqual([...DEMO.pods].sort());
    expect(await dev.getByTestId("pod-status").allTextContents()).toEqual(["Running", "Running"]);
    expect(await dev.getByTestId("deployments").innerText()).toMatch(/shop-api\s+shop\s+2\/2/);
    await expect(dev.getByTestId("cluster-errors").count()).resolves.toBe(0);

    const offline = page.locator(`[data-testid=cluster-result][data-cluster=${OFFLINE_CLUSTER}]`);
    expect(await offline.getByTestId("cluster-errors").innerText()).toContain("FETCH_ERROR");
    const sso = page.locator(`[data-testid=cluster-result][data-cluster=${OIDC_CLUSTER}]`);
    expect(await sso.getByTestId("cluster-errors").innerText()).toContain("UNAUTHORIZED_ERROR");
    await screenshot("workloads");

    await dev.locator(`[data-testid=follow-logs][data-pod="${DEMO.pods[0]}"]`).click();
    await page.locator("[data-testid=log-status]", { hasText: "Live" }).waitFor();
    // A line the double wrote after the page was opened arrives while the stream stays open.
    await page.waitForFunction(
      (since) =>
        (document.querySelector("[data-testid=log-lines]")?.textContent ?? "")
          .split("\n")
          .some((line) => Date.parse(line.split(" ", 1)[0] ?? "") > since + 1000),
      opened,
      { timeout: 10_000 },
    );
    expect((await logLines()).filter((line) => loggedAt(line) > opened).length).toBeGreaterThan(0);
    await screenshot("logs-live");

    await page.getByTestId("log-stop").click();
    await page.locator("[data-testid=log-status]", { hasText: "Stopped" }).waitFor();
    const stoppedAt = (await logLines()).length;
    // The double writes a line per second: none may arrive after Stop.
    await page.waitForTimeout(2500);
    expect((await logLines()).length).toBe(stoppedAt);
  });

  it("browses a cluster's namespaces and pods through the proxy", async () => {
    await continueAsGuest();
    await page.locator(`[data-testid=cluster][data-cluster=${CLUSTER}]`).click();
    await page.locator(`[data-namespace=${DEMO.namespace}]`).click();
    const pods = page.getByTestId("browse-pods");
    await pods.getByTestId("pod-name").first().waitFor();
    expect((await pods.getByTestId("pod-name").allTextContents()).sort()).toEqual([...DEMO.pods].sort());
    await screenshot("browse");

    // An unreachable cluster is reported plainly.
    await page.getByTestId("cluster-select").selectOption(OFFLINE_CLUSTER);
    const error = page.getByTestId("namespaces").getByTestId("error");
    await error.waitFor();
    expect(await error.innerText()).toMatch(/BadGatewayError \(502\)/);
    await screenshot("browse-offline");
  });

  it("calls as the token's holder, and sends a refused token back to sign-in", async () => {
    await page.goto(portal.url);
    await page.getByTestId("token-input").fill("not-a-valid-portal-token");
    await page.getByTestId("sign-in").click();
    await page.locator(".alert-warn", { hasText: "not accepted" }).waitFor();
    await screenshot("sign-in-refused");

    await page.getByTestId("token-input").fill(TOKENS.viewer);
    await page.getByTestId("sign-in").click();
    await page.locator(`[data-testid=cluster][data-cluster=${CLUSTER}]`).waitFor();
    expect(await page.getByTestId("identity").textContent()).toBe(`Token ••••${TOKENS.viewer.slice(-4)}`);
  });
});
