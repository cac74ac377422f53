// The operations map, the page an operator keeps open all day: the network and the live
// buses on the map; beside it the fleet list, the operators' alerts, the validators, the
// exceptions and the service alerts; a bus's day replayed. In Indonesian or English.
//
// The token typed in is kept in sessionStorage and travels only in the Authorization
// header, never in a URL. Everything is fetched from the gateway itself, and every name
// and id from outside (GTFS feeds, validators, the API) is shown as text: elements are
// built with textContent and Leaflet is handed elements, never an HTML string (a string
// tooltip or popup is parsed as HTML), so a stop named '<a href="...">Sign in again</a>'
// shows those characters and adds no link.
import { WORDS } from "./words.js";
import { $, api, keepToken, ok, say, session, t, unavailable } from "./shared.js";
import { createNetwork, routeOptions } from "./network.js";
import { createFleet } from "./fleet.js";
import { createArrivals } from "./arrivals.js";
import { follow } from "./stream.js";
import { createValidators } from "./validators.js";
import { createExceptions } from "./exceptions.js";
import { createOpsAlerts } from "./opsalerts.js";
import { createServiceAlerts } from "./service.js";
import { createReplay } from "./replay.js";
import { createHeadways } from "./headways.js";

const T = window.TransitPage;
const SIGNED_OUT_KEY = "transit-map-signed-out"; // tells the reloaded page why
const TICK_MS = 1000;
const CENTRE = [-7.2575, 112.7521];
const EMPTY_NETWORK = { tile_url: "", routes: [], stops: [] };

const parts = []; // what draws words: drawn again in the other language
session.words = T.languages(WORDS, () => {
  parts.forEach((p) => p.redraw());
  const why = $("login-error").dataset.key;
  if (why) { say($("login-error"), t(why)); }
});

function showLogin(key) {
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").dataset.key = key || "";
  say($("login-error"), key ? t(key) : "");
  $("token").focus();
}

// Signing out starts the page afresh: no stream, poll or timer of the session survives.
function signOut(key) {
  keepToken(null);
  if (key) { window.sessionStorage.setItem(SIGNED_OUT_KEY, key); }
  window.location.reload();
}
session.onSignedOut = () => signOut("err_session");

function loginProblem(answer) {
  if (answer.status === 401 || answer.status === 403) { return "err_token"; }
  return answer.status === 0 ? "err_network" : "err_server";
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const token = $("token").value.trim();
  if (!token) { return; }
  const answer = await T.call("/api/v1/vehicles", { token, lang: session.words.lang });
  if (!ok(answer)) { showLogin(loginProblem(answer)); return; }
  keepToken(token);
  $("token").value = "";
  start(answer.body.vehicles || []);
});
$("logout").addEventListener("click", () => signOut(null));

// The panels' tabs; a panel opened asks the gateway at once for what is current.
function tabs(panels) {
  const buttons = document.querySelectorAll("[data-tab]");
  buttons.forEach((b) => b.addEventListener("click", () => {
    buttons.forEach((other) => {
      const chosen = other === b;
      other.setAttribute("aria-selected", String(chosen));
      $("tab-" + other.dataset.tab).hidden = !chosen;
    });
    const panel = panels[b.dataset.tab];
    if (panel) { panel.redraw(); panel.refresh(); }
  }));
}

async function start(vehicles) {
  $("login").hidden = true;
  $("app").hidden = false;
  const map = L.map("map", { preferCanvas: true, zoomControl: true }).setView(CENTRE, 12);
  const answer = await api("/api/v1/network");
  if (!ok(answer)) { say($("app-error"), unavailable(answer)); }
  const net = ok(answer) ? answer.body : EMPTY_NETWORK;
  if (net.tile_url) { L.tileLayer(net.tile_url, { maxZoom: 19 }).addTo(map); }
  const network = createNetwork(map, net);
  routeOptions($("follow"), net);
  if (network.bounds.isValid()) { map.fitBounds(network.bounds); }
  network.drawLabels();

  // Leaflet's zoom buttons, named in the page's language too.
  const zoom = { redraw() {
    [["in", "zoom_in"], ["out", "zoom_out"]].forEach(([which, key]) => {
      const el = document.querySelector(".leaflet-control-zoom-" + which);
      if (el) { el.title = t(key); el.setAttribute("aria-label", t(key)); }
    });
  } };
  zoom.redraw();
  const replay = createReplay(map);
  const fleet = createFleet(map, network, replay.start, createArrivals(net));
  $("follow").addEventListener("change", (ev) => {
    network.follow(ev.target.value);
    fleet.setFilter({ route: ev.target.value });
  });
  vehicles.forEach(fleet.update);
  const validators = createValidators();
  const alerts = createOpsAlerts();
  const exceptions = createExceptions();
  const service = createServiceAlerts(network);
  const headways = createHeadways(net);
  parts.push(zoom, network, fleet, replay, validators, alerts, exceptions, service, headways);
  tabs({ alerts, validators, exceptions, service, headways });
  window.setInterval(() => { fleet.tick(); validators.tick(); alerts.tick(); }, TICK_MS);
  follow((all) => all.forEach(fleet.update), fleet.update);
}

const why = window.sessionStorage.getItem(SIGNED_OUT_KEY);
window.sessionStorage.removeItem(SIGNED_OUT_KEY);
if (session.token) {
  T.call("/api/v1/vehicles", { token: session.token, lang: session.words.lang }).then((answer) => {
    if (ok(answer)) { start(answer.body.vehicles || []); } else { keepToken(null); showLogin(loginProblem(answer)); }
  });
} else {
  showLogin(why);
}
