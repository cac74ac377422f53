// The exceptions view: refused and quarantined messages and taps of unknown cards over
// the last 24 hours, counted per reason, the newest listed; one reason can be picked.
import { $, api, box, every, moment, named, ok, row, say, t, text, unavailable } from "./shared.js";

const REFRESH_MS = 15000;
const WINDOW_MS = 24 * 3600 * 1000;
const SHOWN = 100; // the newest; the counts cover them all

export function createExceptions() {
  const body = $("exceptions").querySelector("tbody");
  const select = $("reason-filter");
  let last = null;
  let failure = null;

  // The reasons counted (the counts cover every reason, whichever one is picked).
  function reasonOptions(counts) {
    const wanted = select.value;
    const reasons = Object.keys(counts).sort();
    if (wanted && !reasons.includes(wanted)) { reasons.push(wanted); }
    const all = text("option", t("reason_all"));
    all.value = "";
    select.replaceChildren(all, ...reasons.map((r) => {
      const option = text("option", named("reason_", r));
      option.value = r;
      return option;
    }));
    select.value = wanted;
  }

  function draw() {
    if (failure) { say($("exceptions-note"), unavailable(failure)); }
    if (!last) { return; }
    const counts = last.counts || {};
    reasonOptions(counts);
    // Most frequent first, as the API orders them.
    $("exception-counts").replaceChildren(...Object.entries(counts).map(([reason, n]) => {
      const chip = box("li", "chip", [text("span", named("reason_", reason)), text("strong", String(n))]);
      chip.dataset.reason = reason;
      chip.addEventListener("click", () => { select.value = reason; load(); });
      return chip;
    }));
    const list = (last.exceptions || []).slice(0, SHOWN);
    if (!failure) { say($("exceptions-note"), list.length ? "" : t("exc_empty")); }
    body.replaceChildren(...list.map((e) => {
      const tr = row([named("reason_", e.reason), e.device_id || "-", moment(e.ts), e.tap_id || "-", e.card || "-"],
        ["", "mono", "", "mono", "mono"]);
      tr.dataset.reason = e.reason;
      tr.children[0].title = e.reason;
      return tr;
    }));
  }

  async function load() {
    const query = new URLSearchParams({ since: String(Date.now() - WINDOW_MS), limit: String(SHOWN) });
    if (select.value) { query.set("reason", select.value); }
    const answer = await api("/api/v1/exceptions?" + query);
    failure = ok(answer) ? null : answer;
    if (ok(answer)) { last = answer.body; }
    draw();
  }

  select.addEventListener("change", load);
  const poll = every(REFRESH_MS, load);
  return { redraw: draw, refresh: poll.now };
}
