// Replay of one bus's day: the positions of today's service day (from its track on
// disk), the path drawn, a marker moving along it at 1×, 10×, 60× or 300× with the
// time shown; closing it returns to the live map.
import { $, api, arrow, box, clock, millis, ok, say, t, turn } from "./shared.js";

const DAY_MS = 24 * 3600 * 1000;
const MAX_PAGES = 50;
// A bus standing still or out of service for longer is skipped over, not waited for.
const GAP_MS = 120000;

export function createReplay(map) {
  const r = { id: null, positions: [], at: 0, speed: 60, playing: false, frame: 0, seen: 0, layer: null, marker: null, cut: false };

  function arrowIcon() {
    r.arrow = arrow();
    r.bus = box("div", "replay-bus", [r.arrow]);
    return L.divIcon({ html: r.bus, className: "", iconSize: [30, 30], iconAnchor: [15, 15] });
  }

  async function dayOf(id) {
    const answer = await api("/api/v1/vehicles/" + encodeURIComponent(id));
    // The fare policy's service day (03:00 local by default: a bus out at 01:30 is
    // still on the day before), as the gateway works it out.
    const from = ok(answer) ? answer.body.service_day_start_ms : null;
    return typeof from === "number" ? from : Date.now() - DAY_MS;
  }

  // Every position from `from` to now, following the pages the API cuts a long day into.
  async function track(id, from) {
    const to = Date.now();
    const out = [];
    let next = from;
    for (let page = 0; page < MAX_PAGES; page += 1) {
      const answer = await api("/api/v1/vehicles/" + encodeURIComponent(id) + "/track?from=" + next + "&to=" + to);
      if (!ok(answer)) { return { positions: out, failure: answer }; }
      const last = out.length ? out[out.length - 1].ts : -Infinity;
      (answer.body.positions || []).forEach((p) => { if (p.ts > last) { out.push(p); } });
      if (!answer.body.truncated || answer.body.next_from == null) { return { positions: out, cut: false }; }
      next = millis(answer.body.next_from);
    }
    return { positions: out, cut: true };
  }

  async function start(id) {
    close();
    r.id = id;
    $("replay").hidden = false;
    $("map").classList.add("replaying");
    $("replay-time").textContent = "-";
    redraw();
    say($("replay-status"), t("replay_loading"));
    const got = await track(id, await dayOf(id));
    if (r.id !== id) { return; } // closed, or another one asked for, meanwhile
    r.positions = got.positions;
    r.cut = got.cut;
    if (got.failure) { say($("replay-status"), t("not_available")); return; }
    if (!r.positions.length) { say($("replay-status"), t("replay_empty")); return; }
    const path = r.positions.map((p) => [p.lat, p.lon]);
    r.layer = L.layerGroup([L.polyline(path, { color: "#1d2733", weight: 4, opacity: 0.75, interactive: false })]).addTo(map);
    r.marker = L.marker(path[0], { icon: arrowIcon(), interactive: false, keyboard: false, zIndexOffset: 1000 }).addTo(r.layer);
    map.fitBounds(L.latLngBounds(path), { padding: [40, 40], maxZoom: 16 });
    r.at = r.positions[0].ts;
    summary();
    play();
  }

  function summary() {
    const p = r.positions;
    if (!p.length) { return; }
    say($("replay-status"), t(r.cut ? "replay_cut" : "replay_points", { n: p.length, from: clock(p[0].ts), to: clock(p[p.length - 1].ts) }));
  }

  // Where the bus was at time `at`: between the two positions around it.
  function place() {
    const p = r.positions;
    let i = 0;
    let lo = 0, hi = p.length - 1;
    while (lo <= hi) { const mid = (lo + hi) >> 1; if (p[mid].ts <= r.at) { i = mid; lo = mid + 1; } else { hi = mid - 1; } }
    const a = p[i], b = p[Math.min(i + 1, p.length - 1)];
    const f = b.ts > a.ts ? Math.min(1, Math.max(0, (r.at - a.ts) / (b.ts - a.ts))) : 0;
    r.marker.setLatLng([a.lat + (b.lat - a.lat) * f, a.lon + (b.lon - a.lon) * f]);
    turn(r.arrow, a.bearing);
    r.bus.dataset.ts = String(Math.round(r.at));
    $("replay-time").textContent = clock(r.at) + " WIB";
    const first = p[0].ts, span = p[p.length - 1].ts - first;
    $("replay-progress").value = String(span > 0 ? Math.round((r.at - first) / span * 1000) : 1000);
    return b.ts > r.at && b.ts - a.ts > GAP_MS ? b.ts : null;
  }

  function step(now) {
    if (!r.playing) { return; }
    const p = r.positions;
    r.at += (now - r.seen) * r.speed;
    r.seen = now;
    const end = p[p.length - 1].ts;
    if (r.at >= end) { r.at = end; r.playing = false; }
    const gapEnd = place();
    if (gapEnd != null) { r.at = gapEnd - 1000; }
    redraw();
    if (r.playing) { r.frame = requestAnimationFrame(step); }
  }

  function play() {
    if (!r.positions.length) { return; }
    if (r.at >= r.positions[r.positions.length - 1].ts) { r.at = r.positions[0].ts; }
    r.playing = true;
    r.seen = performance.now();
    cancelAnimationFrame(r.frame);
    r.frame = requestAnimationFrame(step);
    redraw();
  }

  function pause() { r.playing = false; cancelAnimationFrame(r.frame); redraw(); }

  function close() {
    pause();
    if (r.layer) { r.layer.remove(); }
    Object.assign(r, { id: null, positions: [], layer: null, marker: null });
    $("replay").hidden = true;
    $("map").classList.remove("replaying");
  }

  function redraw() {
    if (!r.id) { return; }
    $("replay-title").textContent = t("replay_title", { bus: r.id });
    const done = r.positions.length && r.at >= r.positions[r.positions.length - 1].ts;
    $("replay-toggle").textContent = t(r.playing ? "replay_pause" : done ? "replay_again" : "replay_play");
    if (!r.playing && r.positions.length) { summary(); }
  }

  $("replay-toggle").addEventListener("click", () => { if (r.playing) { pause(); } else { play(); } });
  $("replay-close").addEventListener("click", close);
  $("replay-speed").addEventListener("change", (ev) => { r.speed = Number(ev.target.value) || 1; });
  $("replay-progress").addEventListener("input", (ev) => {
    const p = r.positions;
    if (!p.length) { return; }
    r.at = p[0].ts + (p[p.length - 1].ts - p[0].ts) * Number(ev.target.value) / 1000;
    place();
  });
  r.speed = Number($("replay-speed").value) || 60;

  return { start, close, redraw };
}
