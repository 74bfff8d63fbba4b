/**
 * Splits a byte stream into text lines as the bytes arrive: a line is yielded
 * as soon as its newline is read, a line split across chunks (or a UTF-8
 * character split across chunks) is joined, `\r\n` is accepted, and a final
 * line without a newline is yielded when the stream ends.
 *
 * Leaving the loop early (`break`, `return`, a thrown error) cancels the stream.
 */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string, void, undefined> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        break;
      }
      pending += decoder.decode(value, { stream: true });
      let newline = pending.indexOf("\n");
      while (newline !== -1) {
        yield stripCarriageReturn(pending.slice(0, newline));
        pending = pending.slice(newline + 1);
        newline = pending.indexOf("\n");
      }
    }
    pending += decoder.decode();
    if (pending.length > 0) {
      yield stripCarriageReturn(pending);
    }
  } finally {
    if (!finished) {
      await reader.cancel().catch(() => undefined);
    }
    reader.releaseLock();
  }
}

function stripCarriageReturn(line: string): string {
  return line.endsWith("\r") ? line.slice(0, -1) : line;
}
