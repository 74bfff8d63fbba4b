/**
 * Browser exec over HTTPS: Chromium opens its WebSocket over the page's
 * HTTP/2 connection (RFC 8441 extended CONNECT), with a one-time ticket, and
 * kubeportal bridges it to the cluster's WebSocket exec. The audit trail
 * shows it arrived as a CONNECT.
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLUSTER, DEMO, startPortal, TOKENS, type RunningPortal } from "../../sdk/typescript/test/support/portal.js";

const dist = join(resolve(dirname(fileURLToPath(import.meta.url)), ".."), "dist");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

let portal: RunningPortal;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(join(dist, "index.html"))) throw new Error("web-demo/dist is missing: run `npm run build` first");
  portal = await startPortal({ webRoot: dist, tls: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--no-first-run",
      // The portal's certificate is self-signed for this test.
      "--ignore-certificate-errors",
    ],
  });
});

afterAll(async () => {
  await browser?.close();
  await portal?.stop();
});

describe("browser exec over HTTPS", () => {
  it("runs a command over a WebSocket on the page's HTTP/2 connection", async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const response = await page.goto(portal.url);
    expect(response?.ok()).toBe(true);
    const path = `/api/v1/namespaces/${DEMO.namespace}/pods/${DEMO.pods[0]}/exec`;
    const output = await page.evaluate(
      async ({ cluster, path }) => {
        const issued = await fetch(`/api/kubernetes/clusters/${cluster}/tickets`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ path }),
        });
        if (issued.status !== 201) throw new Error(`ticket: ${issued.status} ${await issued.text()}`);
        const { ticket } = (await issued.json()) as { ticket: string };
        const url = `wss://${location.host}/api/kubernetes/clusters/${cluster}/proxy${path}?command=echo&command=over-http2&stdout=true&ticket=${ticket}`;
        return await new Promise<string>((resolve, reject) => {
          const socket = new WebSocket(url, ["v5.channel.k8s.io"]);
          socket.binaryType = "arraybuffer";
          let stdout = "";
          socket.onmessage = (event) => {
            const data = new Uint8Array(event.data as ArrayBuffer);
            if (data[0] === 1) stdout += new TextDecoder().decode(data.slice(1));
          };
          socket.onclose = () => resolve(stdout);
          socket.onerror = () => reject(new Error("the WebSocket failed"));
        });
      },
      { cluster: CLUSTER, path },
    );
    expect(output).toBe("over-http2\n");

    // The session arrived as an HTTP/2 extended CONNECT, and was audited as one.
    const connects = await page.evaluate(
      async ({ token, path }) => {
        for (let attempt = 0; attempt < 50; attempt++) {
          const page = await fetch("/api/kubernetes/audit?method=CONNECT", {
            headers: { authorization: `Bearer ${token}` },
          });
          const body = (await page.json()) as { items: Array<{ path: string; verb?: string; status: number }> };
          const found = body.items.filter((item) => item.path === path);
          if (found.length > 0) return found;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        return [];
      },
      { token: TOKENS.admin, path },
    );
    expect(connects).toHaveLength(1);
    expect(connects[0]?.verb).toBe("create");
    expect(connects[0]?.status).toBe(200);
    await context.close();
  });
});
