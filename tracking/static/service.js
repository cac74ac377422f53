// Service alerts for riders (the GTFS-Realtime Alerts feed): the list with an "end"
// button each, a small form to publish one, and the active ones as a banner over the
// map, their routes dashed.
import { CAUSE_NAMES, EFFECT_NAMES } from "./words.js";
import { $, api, box, button, errorOf, every, lang, millis, moment, named, ok, say, t, text, unavailable } from "./shared.js";

const REFRESH_MS = 10000;
const BANNER_MAX = 3;
const DEFAULT_CAUSE = "UNKNOWN_CAUSE";
const DEFAULT_EFFECT = "UNKNOWN_EFFECT";

export function createServiceAlerts(network) {
  const list = $("service-alerts");
  let last = null;
  let failure = null;
  let unanswered = null; // {sent, reference, endMs} of a form the gateway could not be asked

  function fillEnums() {
    [["sa-cause", CAUSE_NAMES, "cause_", DEFAULT_CAUSE], ["sa-effect", EFFECT_NAMES, "effect_", DEFAULT_EFFECT]].forEach(([id, names, prefix, fallback]) => {
      const select = $(id);
      const wanted = select.value || fallback;
      select.replaceChildren(...names.map((n) => { const o = text("option", named(prefix, n)); o.value = n; return o; }));
      select.value = wanted;
    });
  }

  function active(a) {
    if (a.state) { return a.state === "active"; }
    const now = Date.now(), start = millis(a.start), end = millis(a.end);
    return (start == null || start <= now) && (end == null || now < end);
  }

  function routesOf(a) {
    const ids = a.route_ids || [];
    return ids.length ? t("sa_routes_of", { routes: ids.map((id) => network.routeName(id)).join(", ") }) : t("sa_routes_all");
  }

  // A text of the alert in the page's language: the API gives {language: text}.
  function inLang(texts) {
    if (texts == null || typeof texts !== "object") { return texts == null ? "" : String(texts); }
    return texts[lang()] || texts.id || Object.values(texts)[0] || "";
  }

  function item(a) {
    const state = a.state || (active(a) ? "active" : "ended");
    const period = t("sa_period", { start: moment(a.start), end: a.end ? moment(a.end) : t("sa_no_end") });
    const li = box("li", "service " + state, [
      box("div", "service-head", [text("strong", inLang(a.header), "header"), text("span", named("sa_state_", state), "badge " + state)]),
      inLang(a.description) ? text("p", inLang(a.description), "description") : null,
      text("p", named("effect_", a.effect) + " · " + named("cause_", a.cause), "muted"),
      text("p", routesOf(a) + " · " + period, "muted"),
      state === "active" || state === "upcoming" ? button(t("sa_end"), "small danger", () => end(a.alert_id)) : null,
    ]);
    li.dataset.alert = String(a.alert_id);
    li.dataset.state = state;
    return li;
  }

  function draw() {
    fillEnums();
    if (failure) { say($("service-note"), unavailable(failure)); }
    if (!last) { return; }
    const alerts = last;
    if (!failure) { say($("service-note"), alerts.length ? "" : t("sa_none")); }
    list.replaceChildren(...alerts.map(item));
    const now = alerts.filter(active);
    $("service-count").textContent = String(now.length);
    $("service-count").classList.toggle("hot", now.length > 0);
    const banner = now.slice(0, BANNER_MAX).map((a) => text("li", t("banner", { header: inLang(a.header), routes: routesOf(a) })));
    if (now.length > BANNER_MAX) { banner.push(text("li", "+" + (now.length - BANNER_MAX))); }
    $("banner").replaceChildren(...banner);
    $("banner").hidden = !banner.length;
    network.markAlerted(new Set(now.flatMap((a) => a.route_ids || [])));
  }

  function freshReference() {
    const bytes = crypto.getRandomValues(new Uint8Array(8));
    return "map-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function load() {
    const answer = await api("/api/v1/alerts");
    failure = ok(answer) ? null : answer;
    if (ok(answer)) { last = Array.isArray(answer.body) ? answer.body : (answer.body.alerts || []); }
    draw();
  }

  async function end(id) {
    const answer = await api("/api/v1/alerts/" + encodeURIComponent(id), { method: "DELETE" });
    if (!ok(answer)) { say($("sa-error"), unavailable(answer)); }
    await load();
  }

  $("service-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    say($("sa-error"), "");
    const header = $("sa-header").value.trim();
    if (!header) { say($("sa-error"), t("sa_header_needed")); return; }
    const typed = $("sa-routes").value.split(/[,\s]+/).map((s) => s.trim()).filter(Boolean);
    const routes = typed.map((r) => network.routeId(r));
    const unknown = typed.filter((_, i) => routes[i] == null);
    if (unknown.length) { say($("sa-error"), t("sa_unknown_routes", { routes: unknown.join(", ") })); return; }
    const minutes = parseInt($("sa-duration").value, 10);
    // From now (the gateway's now); without an end it lasts until it is ended.
    const body = {
      header, description: $("sa-description").value.trim() || header, cause: $("sa-cause").value,
      effect: $("sa-effect").value, route_ids: routes, stop_ids: [],
    };
    // The same form sent again after the gateway could not be reached keeps its
    // reference: one alert, however many times it was sent.
    // Its end is kept too: worked out again, it would differ from the one the gateway
    // may have received, and the retry would be refused as another alert.
    const sent = JSON.stringify(body) + "|" + minutes;
    const again = unanswered && unanswered.sent === sent ? unanswered : null;
    body.reference = again ? again.reference : freshReference();
    const endMs = again ? again.endMs : (minutes > 0 ? Date.now() + minutes * 60000 : null);
    if (endMs != null) { body.end = endMs; }
    const submit = $("service-form").querySelector("button[type=submit]");
    submit.disabled = true;
    const answer = await api("/api/v1/alerts", { method: "POST", body });
    submit.disabled = false;
    unanswered = answer.status === 0 ? { sent, reference: body.reference, endMs } : null;
    if (!ok(answer)) {
      const said = errorOf(answer).message;
      say($("sa-error"), said ? t("sa_refused", { message: said }) : unavailable(answer));
      return;
    }
    $("service-form").reset();
    $("sa-cause").value = DEFAULT_CAUSE;
    $("sa-effect").value = DEFAULT_EFFECT;
    await load();
  });

  fillEnums();
  const poll = every(REFRESH_MS, load);
  return { redraw: draw, refresh: poll.now };
}
