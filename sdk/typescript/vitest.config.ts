import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    // The first run may compile the Rust binaries in the global setup.
    hookTimeout: 600_000,
    testTimeout: 20_000,
  },
});
