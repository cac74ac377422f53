// The operators' alerts: what needs an operator now (a vehicle stale, a validator silent,
// a spool growing, buses bunching, a dispute escalated or overdue), asked for every few
// seconds. One that starts is marked new for a while; one that clears stays a moment,
// marked cleared, then goes.
import { $, ago, api, box, clock, every, lang, millis, named, ok, put, say, t, text, unavailable } from "./shared.js";

const REFRESH_MS = 5000;
const MARK_MS = 10000; // how long "new" and "cleared" stay

export function createOpsAlerts() {
  const list = $("ops-alerts");
  const held = new Map(); // kind|subject -> {alert, li, since, newUntil, clearedAt}
  let loaded = false;
  let failure = null;

  // The API words each alert in both languages: `detail` (English), `detail_id`.
  function detail(a) {
    const said = lang() === "id" ? a.detail_id || a.detail : a.detail || a.detail_id;
    return said == null ? "" : String(said);
  }

  function item(entry) {
    const a = entry.alert;
    const li = document.createElement("li");
    li.dataset.kind = a.kind;
    li.dataset.subject = String(a.subject);
    entry.li = li;
    draw(entry);
    return li;
  }

  function draw(entry) {
    const a = entry.alert;
    const now = Date.now();
    const mark = entry.clearedAt ? t("alert_cleared") : entry.newUntil > now ? t("alert_new") : "";
    entry.li.className = "alert " + a.kind + (entry.clearedAt ? " cleared" : entry.newUntil > now ? " new" : "");
    entry.li.dataset.state = entry.clearedAt ? "cleared" : "current";
    const since = entry.since == null ? "" : t("alerts_since", { time: clock(entry.since), ago: ago((now - entry.since) / 1000) });
    entry.li.replaceChildren(
      box("div", "alert-head", [text("strong", named("kind_", a.kind), "kind"), mark ? text("span", mark, "mark") : null]),
      text("div", a.subject, "subject mono"),
      since ? text("div", since, "since") : null,
      detail(a) ? text("div", detail(a), "detail") : null);
  }

  function redraw() {
    const now = Date.now();
    // The ages tick only where they are seen: the tab shown draws them all again.
    const seen = !$("tab-alerts").hidden;
    held.forEach((entry, key) => {
      if (entry.clearedAt && now - entry.clearedAt > MARK_MS) { entry.li.remove(); held.delete(key); return; }
      if (seen) { draw(entry); }
    });
    const current = Array.from(held.values()).filter((e) => !e.clearedAt).length;
    put($("alerts-count"), current);
    $("alerts-count").classList.toggle("hot", current > 0);
    const note = failure ? unavailable(failure) : loaded && !held.size ? t("alerts_none") : "";
    if ($("alerts-note").textContent !== note) { say($("alerts-note"), note); }
  }

  function take(alerts) {
    const now = Date.now();
    const keys = new Set();
    alerts.forEach((a) => {
      const key = a.kind + "|" + a.subject;
      keys.add(key);
      const entry = held.get(key);
      if (entry && !entry.clearedAt) { entry.alert = a; entry.since = millis(a.since); return; }
      if (entry) { entry.li.remove(); } // it came back before it went: new again
      held.set(key, { alert: a, since: millis(a.since), newUntil: loaded ? now + MARK_MS : 0, clearedAt: 0 });
    });
    held.forEach((entry, key) => { if (!keys.has(key) && !entry.clearedAt) { entry.clearedAt = now; } });
    // Newest first; what has cleared sinks below what is current.
    const order = Array.from(held.values()).sort((a, b) => (Boolean(a.clearedAt) - Boolean(b.clearedAt)) || ((b.since || 0) - (a.since || 0)));
    list.replaceChildren(...order.map((e) => e.li || item(e)));
    loaded = true;
  }

  async function load() {
    const answer = await api("/api/v1/ops/alerts");
    failure = ok(answer) ? null : answer;
    if (ok(answer)) { take(answer.body.alerts || []); }
    redraw();
  }

  const poll = every(REFRESH_MS, load);
  return { tick: redraw, redraw, refresh: poll.now };
}
