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
import { createClient } from "@kubeportal/sdk";
import {
  CLIENT_CLUSTER,
  CLUSTER,
  DEMO,
  EXEC_DENIED_REASON,
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

/** The two sizes the page must work at. */
const DESKTOP = { width: 1280, height: 800 };
const NARROW = { width: 420, height: 800 };

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
  context = await browser.newContext({ viewport: DESKTOP });
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

async function signIn(token: string): Promise<void> {
  await page.goto(portal.url);
  await page.getByTestId("token-input").fill(token);
  await page.getByTestId("sign-in").click();
  await page.locator(`[data-testid=cluster][data-cluster=${CLUSTER}]`).waitFor();
}

/** Shows the demo entity's workloads; the dev cluster's card. */
async function showWorkloads() {
  await page.getByTestId("tab-workloads").click();
  await page.getByTestId("entity-input").fill(DEMO.kubernetesId);
  await page.getByTestId("show-workloads").click();
  const dev = page.locator(`[data-testid=cluster-result][data-cluster=${CLUSTER}]`);
  await dev.getByTestId("pod-name").first().waitFor();
  return dev;
}

/** The page is no wider than the window: nothing is cut off or scrolls sideways. */
async function expectNoSidewaysScroll(): Promise<void> {
  const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
  expect(scroll).toBeLessThanOrEqual(width);
}

/** The terminal's lines as a person reads them. */
async function terminalLines(): Promise<string[]> {
  return page.locator("[data-testid=terminal] .xterm-rows > div").evaluateAll((rows) =>
    rows.map((row) => (row.textContent ?? "").replace(/\u00a0/g, " ").trimEnd()),
  );
}

async function waitForTerminalLine(predicate: (lines: string[]) => boolean, what: string): Promise<string[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const lines = await terminalLines();
    if (predicate(lines)) return lines;
    if (Date.now() > deadline) throw new Error(`the terminal never showed ${what}:\n${lines.filter(Boolean).join("\n")}`);
    await page.waitForTimeout(50);
  }
}

/** Types a command line into the terminal and waits for the fresh prompt after its output. */
async function run(command: string): Promise<string[]> {
  const line = `$ ${command}`;
  const count = (lines: string[]) => lines.filter((candidate) => candidate === line).length;
  const before = count(await terminalLines());
  await page.keyboard.type(command);
  await page.keyboard.press("Enter");
  return waitForTerminalLine((lines) => {
    const at = lines.lastIndexOf(line);
    return count(lines) > before && lines.slice(at + 2).includes("$");
  }, `the prompt after ${command}`);
}

/** What the terminal printed right after the command line `command`. */
function outputOf(lines: string[], command: string): string | undefined {
  const at = lines.lastIndexOf(`$ ${command}`);
  return at === -1 ? undefined : lines[at + 1];
}

/** The terminal's size as xterm.js laid it out. */
async function terminalSize(): Promise<{ cols: number; rows: number }> {
  const screen = page.getByTestId("terminal");
  return { cols: Number(await screen.getAttribute("data-cols")), rows: Number(await screen.getAttribute("data-rows")) };
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

  it("shows each pod's CPU and memory against its requests and limits, and an object's events", async () => {
    await continueAsGuest();
    const dev = await showWorkloads();
    const pod = dev.locator("tr", { has: page.locator(`[data-testid=pod-name]`, { hasText: DEMO.pods[0] }) });
    // The double reports 5m and 32Mi per container; the pod spec asks 100m/128Mi and allows 500m/256Mi.
    expect(await pod.getByTestId("pod-cpu").innerText()).toMatch(/^5m used\s+req 100m · lim 500m$/);
    expect(await pod.getByTestId("pod-memory").innerText()).toMatch(/^32Mi used\s+req 128Mi · lim 256Mi$/);
    expect(await pod.getByTestId("pod-cpu").locator("[role=meter]").getAttribute("aria-valuenow")).toBe("1");
    // At 1280 by 800 the dev card's tables fit without scrolling sideways.
    const overflow = await dev.locator(".table-scroll").evaluateAll((boxes) => boxes.map((box) => box.scrollWidth - box.clientWidth));
    expect(Math.max(...overflow)).toBeLessThanOrEqual(0);
    // Clusters without metrics have no usage columns, and their errors stay on their own card.
    const offline = page.locator(`[data-testid=cluster-result][data-cluster=${OFFLINE_CLUSTER}]`);
    await expect(offline.getByTestId("pod-cpu").count()).resolves.toBe(0);

    await pod.getByTestId("show-events").click();
    const events = page.getByTestId("events-table");
    await events.waitFor();
    expect(await page.getByTestId("events-panel").locator("h2").innerText()).toContain(DEMO.pods[0]);
    expect((await events.getByTestId("event-reason").allTextContents()).sort()).toEqual(
      ["Created", "Pulled", "Scheduled", "Started", "Unhealthy"],
    );
    const warning = events.locator("tr", { hasText: "Unhealthy" });
    expect(await warning.getByTestId("event-type").innerText()).toBe("Warning");
    expect(await warning.innerText()).toContain("Readiness probe failed");
    await screenshot("metrics-events");

    // A deployment's events are its own.
    await dev.locator("[data-testid=show-events][data-deployment=shop-api]").click();
    await page.getByTestId("events-panel").locator("h2", { hasText: "Deployment" }).waitFor();
    await page.getByTestId("events-table").waitFor();
    expect(await page.getByTestId("events-table").getByTestId("event-reason").allTextContents()).toEqual(["ScalingReplicaSet"]);

    // The same page on a narrow window: nothing cut off sideways.
    await page.setViewportSize(NARROW);
    await expectNoSidewaysScroll();
    await screenshot("workloads-narrow");
  });

  it("opens a terminal in a pod, types into it, resizes it; the audit trail lists the session and replays its recording", async () => {
    await signIn(TOKENS.admin);
    const dev = await showWorkloads();
    await dev.locator(`[data-testid=open-terminal][data-pod="${DEMO.pods[0]}"]`).click();
    await page.locator("[data-testid=terminal-status]", { hasText: "Connected" }).waitFor();
    await waitForTerminalLine((lines) => lines[0] === "$", "the prompt");
    await page.getByTestId("terminal").click();

    const echoed = await run("echo hello-from-the-browser");
    expect(outputOf(echoed, "echo hello-from-the-browser")).toBe("hello-from-the-browser");
    // The pod's terminal has the size xterm.js laid out.
    const wide = await terminalSize();
    expect(wide.cols).toBeGreaterThan(80);
    expect(outputOf(await run("stty size"), "stty size")).toBe(`${wide.rows} ${wide.cols}`);
    expect(outputOf(await run("whoami"), "whoami")).toBe("sh: whoami: command not found");
    await screenshot("terminal");

    // A narrow window: the terminal refits, and the pod is told its new size.
    await page.setViewportSize(NARROW);
    await page.waitForFunction(
      (cols) => Number(document.querySelector("[data-testid=terminal]")?.getAttribute("data-cols")) < cols,
      wide.cols,
    );
    const narrow = await terminalSize();
    await page.getByTestId("terminal").click();
    expect(outputOf(await run("stty size"), "stty size")).toBe(`${narrow.rows} ${narrow.cols}`);
    await expectNoSidewaysScroll();
    await screenshot("terminal-narrow");
    await page.setViewportSize(DESKTOP);

    await page.keyboard.type("exit");
    await page.keyboard.press("Enter");
    await page.locator("[data-testid=terminal-status]", { hasText: "Exited (0)" }).waitFor();

    // The audit trail: the session (101) on dev by the admin, with its recording.
    await page.getByTestId("tab-audit").click();
    await page.getByTestId("audit-table").waitFor();
    await page.getByTestId("audit-cluster").selectOption(CLUSTER);
    await page.getByTestId("audit-subject").fill("user:default/admin");
    await page.getByTestId("audit-status").fill("101");
    const session = page.locator("[data-testid=audit-table] tr", {
      has: page.locator("[data-testid=audit-row-path]", { hasText: `/pods/${DEMO.pods[0]}/exec` }),
    });
    // The record is written when the session ends, in a batch: ask again until it is there.
    const deadline = Date.now() + 10_000;
    for (;;) {
      await page.getByTestId("audit-apply").click();
      await page.locator("[data-testid=audit-table], [data-testid=audit] .empty").first().waitFor();
      if ((await session.count()) > 0) break;
      if (Date.now() > deadline) throw new Error("the exec session never appeared in the audit trail");
      await page.waitForTimeout(250);
    }
    expect(await session.count()).toBe(1);
    expect(await session.getByTestId("audit-row-status").innerText()).toBe("101");
    expect(await session.getByTestId("audit-row-subject").innerText()).toBe("user:default/admin");
    expect(await session.getByTestId("audit-row-method").innerText()).toBe("GET");
    for (const cell of await page.getByTestId("audit-row-cluster").allInnerTexts()) expect(cell).toBe(CLUSTER);
    await screenshot("audit");

    await session.getByTestId("replay").click();
    await page.locator("[data-testid=player-status]", { hasText: /Playing|Replayed/ }).waitFor();
    // The player draws the recorded session: the command and what it printed.
    await page.waitForFunction(
      () => {
        const text = document.querySelector("[data-testid=player]")?.textContent?.replace(/\u00a0/g, " ") ?? "";
        return text.includes("$ echo hello-from-the-browser") && text.split("hello-from-the-browser").length >= 3;
      },
      undefined,
      { timeout: 15_000 },
    );
    await page.locator("[data-testid=player-status]", { hasText: "Replayed" }).waitFor({ timeout: 15_000 });
    await screenshot("replay");

    // The recordings list names the same session.
    const recording = await session.getByTestId("replay").getAttribute("data-recording");
    expect(recording).toBeTruthy();
    await page.getByTestId("recordings-refresh").click();
    await page.locator(`[data-testid=recordings-table] [data-recording="${recording}"]`).waitFor();

    // Paging, newest first: ten records a page, older ones on the next (at least eleven exist).
    const admin = createClient({ baseUrl: portal.url, getToken: () => TOKENS.admin });
    for (let call = 0; call < 11; call++) await (await admin.proxy(CLUSTER, "/api/v1/namespaces")).body?.cancel();
    await page.getByTestId("audit-reset").click();
    await page.getByTestId("audit-limit").selectOption("10");
    await page.getByTestId("audit-apply").click();
    await page.waitForFunction(
      () => document.querySelectorAll("[data-testid=audit-table] [data-testid=audit-row-time]").length === 10,
    );
    const ids = async () =>
      (await page.locator("[data-testid=audit-table] [data-testid=audit-row-time]").evaluateAll((cells) =>
        cells.map((cell) => Number(cell.getAttribute("data-id"))),
      )) as number[];
    const firstPage = await ids();
    expect(firstPage).toHaveLength(10);
    expect(firstPage).toEqual([...firstPage].sort((a, b) => b - a));
    await page.getByTestId("audit-next").click();
    await page.locator("[data-testid=audit-page]", { hasText: "Page 2" }).waitFor();
    const secondPage = await ids();
    expect(secondPage.length).toBeGreaterThan(0);
    expect(Math.max(...secondPage)).toBeLessThan(Math.min(...firstPage));
    await page.getByTestId("audit-previous").click();
    await page.locator("[data-testid=audit-page]", { hasText: "Page 1" }).waitFor();
    expect(await ids()).toEqual(firstPage);

    await page.setViewportSize(NARROW);
    await expectNoSidewaysScroll();
    await screenshot("audit-narrow");
  });

  it("shows the policy's reason when it denies a terminal, and no audit trail to a non-admin", async () => {
    await signIn(TOKENS.viewer);
    const dev = await showWorkloads();
    await dev.locator(`[data-testid=open-terminal][data-pod="${DEMO.pods[0]}"]`).click();
    await page.locator("[data-testid=terminal-status]", { hasText: "Denied" }).waitFor();
    expect(await page.getByTestId("terminal-denied-reason").innerText()).toBe(EXEC_DENIED_REASON);
    await expect(page.locator("[data-testid=terminal] .xterm").count()).resolves.toBe(0);
    expect(await page.getByTestId("tab-audit").isHidden()).toBe(true);
    await screenshot("terminal-denied");
  });

  it("lists pods across clusters with a Cluster column, each cluster's error beside it, updated live by a fleet watch", async () => {
    const admin = createClient({ baseUrl: portal.url, getToken: () => TOKENS.admin });
    const name = `fleet-live-${Date.now().toString(36)}`;
    await continueAsGuest();
    await page.getByTestId("tab-fleet").click();
    await page.locator("[data-testid=fleet-status]", { hasText: "Live" }).waitFor();
    const row = (cluster: string, pod: string) => page.locator(`[data-testid=fleet-pod][data-cluster=${cluster}]`, { hasText: pod });
    await row(CLUSTER, DEMO.pods[0]).waitFor();

    // The double serves dev and byo; sso needs the caller's own token; offline is unreachable.
    const status = (cluster: string) => page.locator(`[data-testid=fleet-cluster-status][data-cluster=${cluster}]`);
    expect(await status(CLUSTER).getAttribute("data-status")).toBe("Success");
    expect(await status(OFFLINE_CLUSTER).getAttribute("data-status")).toBe("Failure");
    expect(await status(OFFLINE_CLUSTER).getByTestId("fleet-cluster-error").innerText()).not.toBe("");
    expect(await status(OIDC_CLUSTER).getAttribute("data-status")).toBe("Failure");
    const clusters = await page.getByTestId("fleet-cluster").allInnerTexts();
    expect(clusters.filter((cluster) => cluster === CLUSTER)).toHaveLength(DEMO.pods.length);
    expect(clusters).not.toContain(OFFLINE_CLUSTER);
    // Ordered by cluster, whatever order the clusters answered in.
    expect(clusters).toEqual([...clusters].sort());

    // A pod created on dev appears without a reload; deleted, it goes.
    const created = await admin.proxy(CLUSTER, `/api/v1/namespaces/${DEMO.namespace}/pods`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        metadata: { name, namespace: DEMO.namespace },
        spec: { containers: [{ name: "app", image: "registry.example/app:1" }] },
        status: { phase: "Pending" },
      }),
    });
    expect(created.status).toBe(201);
    await row(CLUSTER, name).waitFor();
    expect(await page.locator("tr", { has: row(CLUSTER, name) }).getByTestId("fleet-pod-status").innerText()).toBe("Pending");
    await screenshot("fleet");

    const deleted = await admin.proxy(CLUSTER, `/api/v1/namespaces/${DEMO.namespace}/pods/${name}`, { method: "DELETE" });
    expect(deleted.ok).toBe(true);
    await row(CLUSTER, name).waitFor({ state: "detached" });

    await page.setViewportSize(NARROW);
    await expectNoSidewaysScroll();
    await screenshot("fleet-narrow");

    // One cluster by glob.
    await page.getByTestId("fleet-glob").fill(CLIENT_CLUSTER.slice(0, 2) + "*");
    await page.getByTestId("show-fleet").click();
    await status(CLIENT_CLUSTER).waitFor();
    await expect(status(CLUSTER).count()).resolves.toBe(0);
    await expect(page.getByTestId("fleet-pod").count()).resolves.toBe(0);
  });
});
