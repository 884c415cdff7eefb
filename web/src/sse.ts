// Server-Sent Events of an execution, read with fetch so that the API key travels in the
// Authorization header like every other call (EventSource cannot send headers, and an API key
// in a URL would land in proxy and server logs). Reconnects from the last event id.
import { authHeaders } from "./api";

export interface StreamedEvent {
  seq: number;
  type: string;
  time: string;
  data: Record<string, unknown>;
}

export const TERMINAL = new Set([
  "execution.succeeded",
  "execution.failed",
  "execution.aborted",
  "execution.cancelled",
]);

export async function follow(
  executionId: string,
  onEvent: (event: StreamedEvent) => void,
  signal: AbortSignal,
  after = 0,
): Promise<number> {
  let lastId = after;
  for (let tries = 0; !signal.aborted && tries < 20; tries++) {
    let ended = false;
    try {
      const headers: Record<string, string> = { Accept: "text/event-stream", ...authHeaders() };
      if (lastId) headers["Last-Event-ID"] = String(lastId);
      const response = await fetch(`/api/v1/executions/${encodeURIComponent(executionId)}/stream`, {
        headers,
        signal,
        cache: "no-store",
      });
      if (response.status === 404 || response.status === 401 || response.status === 403) return lastId;
      if (!response.ok || !response.body) throw new Error(String(response.status));
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut: number;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const parsed = parseFrame(frame);
          if (!parsed) continue;
          lastId = Math.max(lastId, parsed.seq);
          onEvent(parsed);
          if (TERMINAL.has(parsed.type)) ended = true;
        }
      }
    } catch {
      if (signal.aborted) return lastId;
    }
    if (ended) return lastId; // the server ends the stream after the terminal event
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  return lastId;
}

function parseFrame(frame: string): StreamedEvent | null {
  let type = "";
  let id = 0;
  const data: string[] = [];
  for (const line of frame.split("\n")) {
    if (line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const field = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (field === "event") type = value;
    else if (field === "id") id = Number(value) || 0;
    else if (field === "data") data.push(value);
  }
  if (!type || data.length === 0) return null;
  try {
    const body = JSON.parse(data.join("\n"));
    return { seq: id || body.seq || 0, type, time: String(body.time ?? ""), data: body.data ?? {} };
  } catch {
    return null;
  }
}
