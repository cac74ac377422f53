// The vehicles' stream: `event: snapshot` (every vehicle) then `event: position` per
// change. EventSource cannot send an Authorization header, so the stream is read
// through fetch; it reconnects after a break for as long as the page is signed in.
import { session } from "./shared.js";

const RETRY_MS = 2000;

export async function follow(onSnapshot, onPosition) {
  while (session.token) {
    let wait = RETRY_MS;
    try {
      const resp = await fetch("/api/v1/vehicles/stream", {
        headers: { Authorization: "Bearer " + session.token, Accept: "text/event-stream" },
        cache: "no-store", credentials: "omit",
      });
      if (resp.status === 401) { session.onSignedOut(); return; }
      if (resp.ok) {
        await read(resp.body.getReader(), onSnapshot, onPosition);
      } else {
        // Too many streams of this token, or of the gateway: as long as it asks.
        wait = Math.max(RETRY_MS, (parseInt(resp.headers.get("Retry-After") || "", 10) || 0) * 1000);
      }
    } catch (e) { /* the connection broke: again below */ }
    await new Promise((r) => setTimeout(r, wait));
  }
}

async function read(reader, onSnapshot, onPosition) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done || !session.token) { reader.cancel().catch(() => {}); return; }
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message", data = "";
      block.split("\n").forEach((line) => {
        if (line.startsWith("event: ")) { event = line.slice(7); }
        if (line.startsWith("data: ")) { data += line.slice(6); }
      });
      if (!data) { continue; }
      const parsed = JSON.parse(data);
      if (event === "snapshot") { onSnapshot(parsed); } else if (event === "position") { onPosition(parsed); }
    }
  }
}
