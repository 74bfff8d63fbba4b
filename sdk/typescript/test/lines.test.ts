import { describe, expect, it } from "vitest";
import { readLines } from "../src/lines.js";

/** A stream that delivers the given chunks one by one. */
function streamOf(chunks: Array<string | Uint8Array>): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(typeof chunk === "string" ? encoder.encode(chunk) : chunk);
      controller.close();
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<string[]> {
  const lines: string[] = [];
  for await (const line of readLines(stream)) lines.push(line);
  return lines;
}

describe("readLines", () => {
  it("joins lines split across chunks and keeps empty lines", async () => {
    expect(await collect(streamOf(["al", "pha\nbe", "ta\n\ngam", "ma\n"]))).toEqual(["alpha", "beta", "", "gamma"]);
  });

  it("yields a last line without a newline, and accepts CRLF", async () => {
    expect(await collect(streamOf(["one\r\ntwo\r", "\nthree"]))).toEqual(["one", "two", "three"]);
  });

  it("decodes a multi-byte character split across chunks", async () => {
    const bytes = new TextEncoder().encode("größe ✓\n");
    const cut = bytes.indexOf(0xc3) + 1; // inside "ö"
    expect(await collect(streamOf([bytes.slice(0, cut), bytes.slice(cut)]))).toEqual(["größe ✓"]);
  });

  it("yields each line as soon as its newline arrives", async () => {
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const stream = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
    const lines = readLines(stream);
    controller.enqueue(new TextEncoder().encode("first\nsec"));
    expect(await lines.next()).toEqual({ done: false, value: "first" });
    controller.enqueue(new TextEncoder().encode("ond\n"));
    expect(await lines.next()).toEqual({ done: false, value: "second" });
    controller.close();
    expect((await lines.next()).done).toBe(true);
  });

  it("cancels the stream when the loop is left early", async () => {
    let cancelled = false;
    const stream = new ReadableStream<Uint8Array>({
      pull: (controller) => controller.enqueue(new TextEncoder().encode("again\n")),
      cancel: () => void (cancelled = true),
    });
    for await (const line of readLines(stream)) {
      expect(line).toBe("again");
      break;
    }
    expect(cancelled).toBe(true);
  });
});
