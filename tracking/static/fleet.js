// The buses: a marker each (an arrow turned to its bearing, coloured by its state, with a
// label "vehicle · route"), the vehicle list beside the map (search, route and state
// filters, counts), and the popup of one bus, kept current while it is open.
//
// The page is told each vehicle's age when it gets a position (`age_s`, judged by the
// gateway's clock) and ages it itself from then on, so a bus that stops reporting turns
// stale and offline on screen without a word from the gateway, whatever this computer's
// clock says.
import { $, api, ago, arrow, box, button, clock, ok, put, t, text, turn, vehicleState } from "./shared.js";

const LABELS_ZOOM = 12; // below it labels would only pile up: arrows alone
const FOCUS_ZOOM = 15;
const TAPS_REFRESH_MS = 30000;

// `arrivals` (arrivals.js), when given, shows the bus's next stops in its popup.
export function createFleet(map, network, onReplay, arrivals) {
  const buses = new Map(); // vehicle_id -> entry
  const body = $("vehicles").querySelector("tbody");
  const filter = { search: "", route: "", state: "" };
  // One popup at a time, not bound to a marker: it is moved with its bus, and opened or
  // closed only by the page (a bound popup toggles on each click of its marker).
  const popup = { id: null, fields: null, taps: null, tapsAt: 0, leaflet: L.popup({ minWidth: 220, autoPanPadding: [40, 40], offset: [0, -6] }) };

  function ageOf(entry) { return entry.data.age_s + (Date.now() - entry.seenAt) / 1000; }

  function icon(entry) {
    entry.arrow = arrow();
    entry.bus = box("div", "bus", [entry.arrow]);
    entry.bus.dataset.vehicle = entry.data.vehicle_id;
    entry.label = text("span", "", "bus-label");
    return L.divIcon({ html: box("div", "bus-icon", [entry.bus, entry.label]), className: "", iconSize: [26, 26], iconAnchor: [13, 13] });
  }

  function listRow(entry) {
    const id = entry.data.vehicle_id;
    entry.cells = { bus: text("td", id, "mono"), route: text("td", ""), state: text("td", ""), age: text("td", ""), next: text("td", "") };
    const tr = box("tr", "", Object.values(entry.cells));
    tr.dataset.vehicle = id;
    tr.tabIndex = 0;
    tr.addEventListener("click", () => focus(id));
    tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") { focus(id); } });
    return tr;
  }

  // Takes a vehicle as the API gives it; an older position than the one held is ignored.
  function update(v) {
    let entry = buses.get(v.vehicle_id);
    if (entry && v.ts < entry.data.ts) { return; }
    const added = !entry;
    if (added) {
      entry = { data: v, seenAt: Date.now(), state: null };
      entry.marker = L.marker([v.lat, v.lon], { icon: icon(entry), title: v.vehicle_id, riseOnHover: true });
      entry.marker.on("click", () => openPopup(v.vehicle_id));
      entry.marker.addTo(map);
      entry.row = listRow(entry);
      onScreen.observe(entry.row);
    }
    entry.data = v;
    entry.seenAt = Date.now();
    entry.marker.setLatLng([v.lat, v.lon]);
    turn(entry.arrow, v.bearing);
    put(entry.label, v.vehicle_id + " · " + network.routeName(v.route_id));
    const color = network.routeColor(v.route_id);
    if (entry.color !== color) { entry.color = color; entry.label.style.borderLeftColor = color; }
    put(entry.cells.route, network.routeName(v.route_id));
    put(entry.cells.next, v.next_stop_name || "-");
    if (added) { buses.set(v.vehicle_id, entry); pending.order = true; }
    show(entry);
    if (popup.id === v.vehicle_id) { popup.leaflet.setLatLng([v.lat, v.lon]); drawPopup(); }
    settle();
  }

  // The list's order and counts, once after a burst of updates (a snapshot of hundreds
  // of buses sorts the list once, not once per bus).
  const pending = { order: false, queued: false };
  function settle() {
    if (pending.queued) { return; }
    pending.queued = true;
    queueMicrotask(() => {
      pending.queued = false;
      if (pending.order) { pending.order = false; order(); }
      summary();
    });
  }

  // The list in vehicle order: "TJ-2" before "TJ-10".
  const byName = new Intl.Collator(undefined, { numeric: true });
  function order() {
    const entries = Array.from(buses.values());
    entries.sort((a, b) => byName.compare(a.data.vehicle_id, b.data.vehicle_id));
    body.replaceChildren(...entries.map((e) => e.row));
  }

  function matches(entry) {
    const v = entry.data;
    if (filter.route && v.route_id !== filter.route) { return false; }
    if (filter.state && entry.state !== filter.state) { return false; }
    if (!filter.search) { return true; }
    return [v.vehicle_id, v.route_id, network.routeName(v.route_id), v.next_stop_name]
      .some((s) => s && String(s).toLowerCase().includes(filter.search));
  }

  // Shows one bus's state and age, on its marker and in its row.
  function show(entry) {
    const age = ageOf(entry);
    const state = vehicleState(age);
    if (state !== entry.state || entry.dimmed !== Boolean(filter.route && entry.data.route_id !== filter.route)) {
      entry.state = state;
      entry.dimmed = Boolean(filter.route && entry.data.route_id !== filter.route);
      entry.bus.className = "bus " + state + (entry.dimmed ? " dimmed" : "");
      entry.bus.dataset.state = state;
      entry.label.className = "bus-label " + state + (entry.dimmed ? " dimmed" : "");
      entry.cells.state.textContent = t("state_" + state);
      entry.cells.state.className = "state " + state;
      entry.row.dataset.state = state;
    }
    // Each age written re-lays the table out: with hundreds of buses, only the rows on
    // screen tick (a third of the page's time at 500 buses otherwise).
    if (entry.inView) { showAge(entry, age); }
    const hidden = !matches(entry);
    if (entry.row.hidden !== hidden) { entry.row.hidden = hidden; }
  }

  function showAge(entry, age) { put(entry.cells.age, ago(age)); }

  const onScreen = new IntersectionObserver((seen) => seen.forEach((s) => {
    const entry = buses.get(s.target.dataset.vehicle);
    if (!entry) { return; }
    entry.inView = s.isIntersecting;
    if (entry.inView) { showAge(entry, ageOf(entry)); }
  }), { root: $("tab-fleet"), rootMargin: "200px 0px" });

  function summary() {
    const counts = { live: 0, stale: 0, offline: 0 };
    let shown = 0;
    buses.forEach((e) => { counts[e.state] += 1; if (!e.row.hidden) { shown += 1; } });
    put($("summary"), t("summary", counts));
    const note = !buses.size ? t("fleet_empty") : !shown ? t("list_empty") : "";
    put($("fleet-note"), note);
    if ($("fleet-note").hidden !== !note) { $("fleet-note").hidden = !note; }
  }

  function tick() {
    buses.forEach(show);
    summary();
    if (popup.id) {
      drawPopup();
      if (Date.now() - popup.tapsAt > TAPS_REFRESH_MS) { loadTaps(popup.id); }
      if (arrivals) { arrivals.load().then(drawPopup); }
    }
  }

  // -- the popup of one bus ------------------------------------------------------------------

  const POPUP_FIELDS = [["route", "p_route"], ["trip", "p_trip"], ["state", "p_state"], ["speed", "p_speed"],
    ["seen", "p_seen"], ["next", "p_next"], ["load", "p_load"], ["taps", "p_taps"], ["device", "p_device"]];

  function popupContent(id) {
    const list = box("dl", "popup");
    list.dataset.vehicle = id;
    popup.fields = {};
    popup.terms = {};
    POPUP_FIELDS.forEach(([field, key]) => {
      const term = text("dt", t(key));
      const value = text("dd", "");
      value.dataset.field = field;
      popup.terms[field] = [term, key];
      popup.fields[field] = value;
      list.append(term, value);
    });
    popup.replay = button(t("replay_day"), "small", () => { map.closePopup(); onReplay(id); });
    popup.arrivals = arrivals ? arrivals.node() : null;
    const next = popup.arrivals ? [popup.arrivals.el] : [];
    return box("div", "popup-box", [text("strong", id, "popup-title"), list, ...next, popup.replay]);
  }

  function drawPopup() {
    const entry = buses.get(popup.id);
    if (!entry || !popup.fields) { return; }
    const v = entry.data;
    const age = ageOf(entry);
    const state = vehicleState(age);
    const f = popup.fields;
    const set = (field, value) => put(f[field], value);
    set("route", network.routeName(v.route_id));
    set("trip", v.trip_id || "-");
    set("state", t("state_" + state));
    if (f.state.className !== "state " + state) { f.state.className = "state " + state; }
    // A speed is only worth showing while it is current.
    set("speed", state === "live" && v.speed_mps != null ? t("speed", { n: (v.speed_mps * 3.6).toFixed(0) }) : t("speed_none"));
    set("seen", ago(age) + " (" + clock(v.ts) + ")");
    set("next", v.next_stop_name || "-");
    // Estimated from its taps against its capacity (tracking/occupancy.py).
    set("load", v.occupancy_status ? t("load", { status: t("load_" + v.occupancy_status), n: v.occupancy_percentage }) : "-");
    set("taps", popup.taps == null ? "-" : String(popup.taps));
    set("device", v.device_id || "-");
    if (popup.arrivals) { arrivals.draw(popup.arrivals, v.vehicle_id); }
  }

  async function loadTaps(id) {
    popup.tapsAt = Date.now();
    const answer = await api("/api/v1/vehicles/" + encodeURIComponent(id));
    if (popup.id === id && ok(answer)) {
      popup.taps = answer.body.taps_today;
      drawPopup();
    }
  }

  function openPopup(id) {
    const entry = buses.get(id);
    if (!entry) { return; }
    if (popup.id === id && popup.leaflet.isOpen()) { return; }
    if (popup.leaflet.isOpen()) { map.closePopup(popup.leaflet); } // another bus's: anew, panned to
    popup.id = id;
    popup.taps = null;
    const content = popupContent(id);
    popup.leaflet.setContent(content).setLatLng(entry.marker.getLatLng()).openOn(map);
    drawPopup();
    loadTaps(id);
    if (arrivals) { arrivals.load().then(drawPopup); }
  }

  popup.leaflet.on("remove", () => { popup.id = null; popup.fields = null; popup.arrivals = null; });

  // Centres the map on a bus and opens its popup.
  function focus(id) {
    const entry = buses.get(id);
    if (!entry) { return; }
    map.setView(entry.marker.getLatLng(), Math.max(map.getZoom(), FOCUS_ZOOM));
    openPopup(id);
  }

  // Labels only where they can be read apart.
  function labelZoom() { $("map").classList.toggle("far", map.getZoom() < LABELS_ZOOM); }
  map.on("zoomend", labelZoom);
  labelZoom();

  function setFilter(change) {
    Object.assign(filter, change);
    buses.forEach(show);
    summary();
  }

  $("search").addEventListener("input", (ev) => setFilter({ search: ev.target.value.trim().toLowerCase() }));
  $("state-filter").addEventListener("change", (ev) => setFilter({ state: ev.target.value }));

  function redraw() {
    buses.forEach((e) => { e.state = null; e.label.textContent = e.data.vehicle_id + " · " + network.routeName(e.data.route_id); });
    if (popup.fields) {
      Object.values(popup.terms).forEach(([term, key]) => { term.textContent = t(key); });
      popup.replay.textContent = t("replay_day");
    }
    tick();
  }

  return { update, tick, redraw, focus, setFilter, get: (id) => buses.get(id) };
}
