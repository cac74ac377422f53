// The validators panel: each registered device, the vehicle it rides on, its state
// (online, silent, offline), when it was last heard, and its spool: the taps it holds
// without a receipt, as of its last status, marked when it keeps growing.
import { $, api, ago, box, clock, every, ok, put, row, say, t, text, unavailable } from "./shared.js";

const REFRESH_MS = 10000;

export function createValidators() {
  const body = $("validators").querySelector("tbody");
  let shown = [];      // [{device, heard cell}]
  let fetchedAt = 0;
  let last = null;     // the last answer, drawn again in another language
  let failure = null;  // the last failed answer, while the gateway gives no other

  function spool(d) {
    if (d.spool_depth == null) { return text("span", "-"); }
    // A silent or offline validator's depth is what it said when last heard from.
    const depth = d.state !== "online" && d.last_status_ms
      ? t("spool_as_of", { n: d.spool_depth, time: clock(d.last_status_ms) }) : String(d.spool_depth);
    const parts = [text("span", depth)];
    if (d.spool_full === true) { parts.push(text("span", t("spool_full"), "badge full")); }
    if (d.spool_growing_since_ms) {
      const mark = text("span", "▲", "growing");
      const said = t("spool_growing", { time: clock(d.spool_growing_since_ms) });
      mark.title = said;
      mark.setAttribute("aria-label", said);
      parts.push(mark);
    }
    return box("span", "spool", parts);
  }

  function draw() {
    if (failure) { say($("validators-note"), unavailable(failure)); }
    if (!last) { return; }
    const list = last.validators || [];
    const counts = { online: 0, silent: 0, offline: 0 };
    list.forEach((d) => { if (d.state in counts) { counts[d.state] += 1; } });
    $("validators-summary").textContent = t("validators_summary", counts);
    if (!failure) { say($("validators-note"), list.length ? "" : t("validators_empty")); }
    shown = list.map((d) => {
      const tr = row([d.device_id, d.vehicle_id || "-", t("vstate_" + d.state), "", spool(d)],
        ["mono", "mono", "state " + d.state, "heard", ""]);
      tr.dataset.device = d.device_id;
      tr.dataset.state = d.state;
      if (d.registration && d.registration !== "active") { tr.classList.add("revoked"); }
      return { device: d, heard: tr.children[3], tr };
    });
    body.replaceChildren(...shown.map((s) => s.tr));
    tick();
  }

  function tick() {
    const elapsed = (Date.now() - fetchedAt) / 1000;
    shown.forEach(({ device, heard }) => {
      put(heard, device.last_seen_s == null ? t("never") : t("heard", { ago: ago(device.last_seen_s + elapsed) }));
    });
  }

  async function load() {
    const answer = await api("/api/v1/validators");
    failure = ok(answer) ? null : answer;
    if (ok(answer)) { last = answer.body; fetchedAt = Date.now(); }
    draw();
  }

  const poll = every(REFRESH_MS, load);
  return { tick, redraw: draw, refresh: poll.now };
}
