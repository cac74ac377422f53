// The headways panel: for the route chosen, each direction's live buses in order along
// it, the lead bus first, each with its gap to the one ahead (metres and minutes) against
// the direction's headway, bunched and gapped buses marked. Asked for every few seconds
// while the panel is shown.
import { $, api, box, every, ok, say, t, text, unavailable } from "./shared.js";
import { routeOptions } from "./network.js";

const REFRESH_MS = 10000;

function minutes(seconds) {
  if (seconds == null) { return "-"; }
  return seconds < 60 ? t("hw_seconds", { n: Math.round(seconds) })
    : t("hw_minutes", { n: (seconds / 60).toFixed(seconds < 600 ? 1 : 0) });
}

function metres(m) {
  if (m == null) { return "-"; }
  return m < 1000 ? t("hw_metres", { n: m }) : t("hw_km", { n: (m / 1000).toFixed(1) });
}

export function createHeadways(net) {
  const select = $("headways-route");
  const list = $("headways");
  routeOptions(select, net);
  let last = null;
  let failure = null;

  function verdict(v) {
    if (v.bunched) { return text("span", t("hw_bunched"), "badge bunched"); }
    if (v.gapped) { return text("span", t("hw_gapped"), "badge gapped"); }
    return text("span", v.ahead == null ? t("hw_lead") : "-");
  }

  function direction(d) {
    const head = d.headway_s == null ? t("hw_no_headway")
      : t("hw_headway", { time: minutes(d.headway_s), source: t("hw_source_" + d.headway_source) });
    const rows = d.vehicles.map((v) => {
      const tr = document.createElement("tr");
      tr.dataset.vehicle = v.vehicle_id;
      tr.className = v.bunched ? "bunched" : v.gapped ? "gapped" : "";
      tr.append(text("td", v.vehicle_id, "mono"), text("td", metres(v.gap_m)),
        text("td", minutes(v.gap_s)), box("td", "", [verdict(v)]));
      return tr;
    });
    const table = box("table", "grid", [
      box("thead", "", [box("tr", "", [text("th", t("col_bus")), text("th", t("hw_gap_m")),
        text("th", t("hw_gap_s")), text("th", t("col_state"))])]),
      box("tbody", "", rows)]);
    const name = d.direction_id == null ? t("hw_direction_none") : t("hw_direction", { n: d.direction_id });
    const item = box("li", "headway-direction", [text("strong", name), text("div", head, "muted"),
      d.vehicles.length ? table : text("p", t("hw_no_buses"), "muted")]);
    item.dataset.direction = String(d.direction_id);
    return item;
  }

  function draw() {
    if (failure) { say($("headways-note"), unavailable(failure)); list.replaceChildren(); return; }
    if (!last) { say($("headways-note"), select.value ? "" : t("hw_choose")); list.replaceChildren(); return; }
    const th = last.thresholds;
    const apart = last.unplaced.length ? " " + t("hw_unplaced", { n: last.unplaced.length }) : "";
    say($("headways-note"), t("hw_thresholds", { bunched: th.bunched_pct, gapped: th.gapped_pct }) + apart);
    list.replaceChildren(...last.directions.map(direction));
  }

  async function load() {
    if ($("tab-headways").hidden || !select.value) { return; }
    const route = select.value;
    const answer = await api("/api/v1/routes/" + encodeURIComponent(route) + "/headways");
    if (route !== select.value) { return; } // chosen again meanwhile
    failure = ok(answer) ? null : answer;
    last = ok(answer) ? answer.body : null;
    draw();
  }

  const poll = every(REFRESH_MS, load);
  select.addEventListener("change", () => { last = null; failure = null; draw(); poll.now(); });
  return { redraw: draw, refresh: poll.now };
}
