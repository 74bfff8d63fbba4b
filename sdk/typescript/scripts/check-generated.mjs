// Fails when src/schema.ts is not what `npm run generate` makes of the
// checked-in openapi/openapi.json (run `npm run generate` and commit).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dir = mkdtempSync(join(tmpdir(), "kubeportal-sdk-"));
const fresh = join(dir, "schema.ts");
try {
  execFileSync(
    process.execPath,
    [join(root, "node_modules/openapi-typescript/bin/cli.js"), join(root, "../../openapi/openapi.json"), "--output", fresh],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  if (readFileSync(fresh, "utf8") !== readFileSync(join(root, "src/schema.ts"), "utf8")) {
    console.error("src/schema.ts is out of date with openapi/openapi.json: run `npm run generate` and commit it.");
    process.exitCode = 1;
  } else {
    console.log("src/schema.ts matches openapi/openapi.json");
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
