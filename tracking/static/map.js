// Operations map: routes, stops and live buses. The token stays in sessionStorage and
// travels only in the Authorization header, never in a URL.
//
// Every name and id on the page comes from outside (GTFS feeds, validators, the API) and
// is shown as text: elements are built with textContent, and Leaflet is handed elements,
// never an HTML string (a string tooltip or popup is parsed as HTML), so a stop named
// '<a href="...">Sign in again</a>' shows those characters and adds no link.
(function () {
  "use strict";
  const store = window.sessionStorage;
  const $ = (id) => document.getElementById(id);
  const SVG_NS = "http://www.w3.org/2000/svg";
  const HEX_COLOR = /^[0-9A-Fa-f]{6}$/;
  let token = store.getItem("transit-token");
  let map, routesLayer, stopsLayer, follow = "";
  const buses = new Map();      // vehicle_id -> {marker, data}
  const routeLines = new Map(); // route_id -> [polyline]

  async function api(path) {
    const resp = await fetch(path, { headers: { Authorization: "Bearer " + token } });
    if (resp.status === 401 || resp.status === 403) { throw new Error("auth"); }
    if (!resp.ok) { throw new Error(path + ": " + resp.status); }
    return resp.json();
  }

  // An element showing `value` as text.
  function textElement(tag, value) {
    const el = document.createElement(tag);
    el.textContent = value == null ? "" : String(value);
    return el;
  }

  function showLogin(message) {
    $("app").hidden = true; $("login").hidden = false;
    $("login-error").hidden = !message; $("login-error").textContent = message || "";
  }

  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    try { await api("/api/v1/vehicles"); } catch (e) {
      showLogin(e.message === "auth" ? "That token is not valid for operations." : e.message);
      return;
    }
    store.setItem("transit-token", token);
    start();
  });
  $("logout").addEventListener("click", () => { store.removeItem("transit-token"); location.reload(); });

  function busIcon(state) {
    const el = document.createElement("div");
    el.className = "bus " + state;
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 26 26");
    svg.setAttribute("aria-hidden", "true");
    const arrow = document.createElementNS(SVG_NS, "path");
    arrow.setAttribute("d", "M13 2 L21 22 L13 17 L5 22 Z");
    svg.append(arrow);
    el.append(svg);
    return L.divIcon({ html: el, className: "", iconSize: [26, 26], iconAnchor: [13, 13] });
  }

  function stateOf(v) {
    const age = (Date.now() - v.ts) / 1000;
    return age >= 600 ? "offline" : age >= 90 ? "stale" : "live";
  }

  function render(v) {
    let entry = buses.get(v.vehicle_id);
    const state = stateOf(v);
    if (!entry) {
      const marker = L.marker([v.lat, v.lon], { icon: busIcon(state), title: v.vehicle_id });
      marker.on("click", () => details(v.vehicle_id, marker));
      marker.addTo(map);
      entry = { marker, data: v };
      buses.set(v.vehicle_id, entry);
    }
    entry.data = v;
    entry.marker.setLatLng([v.lat, v.lon]);
    const el = entry.marker.getElement();
    if (el) {
      const bus = el.querySelector(".bus");
      bus.className = "bus " + state + (follow && v.route_id !== follow ? " dimmed" : "");
      bus.dataset.vehicle = v.vehicle_id;
      bus.dataset.state = state;
      bus.querySelector("svg").style.transform = "rotate(" + (Number(v.bearing) || 0) + "deg)";
    }
    summary();
  }

  function summary() {
    const counts = { live: 0, stale: 0, offline: 0 };
    buses.forEach((b) => { counts[stateOf(b.data)] += 1; });
    $("summary").textContent = counts.live + " live, " + counts.stale + " stale, " + counts.offline + " offline";
  }

  async function details(id, marker) {
    const v = await api("/api/v1/vehicles/" + encodeURIComponent(id));
    const box = document.createElement("dl");
    box.className = "popup";
    const rows = [["Bus", v.vehicle_id], ["Route", v.route_id], ["Speed", v.speed_mps == null ? "-" : (v.speed_mps * 3.6).toFixed(0) + " km/h"],
      ["Last seen", v.age_s.toFixed(0) + " s ago (" + v.state + ")"], ["Next stop", v.next_stop_name || "-"], ["Taps today", String(v.taps_today)]];
    rows.forEach(([k, val]) => box.append(textElement("dt", k), textElement("dd", val)));
    marker.bindPopup(box).openPopup();
  }

  async function validators() {
    try {
      const data = await api("/api/v1/validators");
      const body = $("validators").querySelector("tbody");
      body.replaceChildren(...data.validators.map((d) => {
        const tr = document.createElement("tr");
        const cells = [d.device_id, d.online ? "online" : "offline", d.spool_depth == null ? "-" : String(d.spool_depth)];
        cells.forEach((text, i) => {
          const td = textElement("td", text);
          if (i === 1) { td.className = d.online ? "online" : "offline"; }
          tr.append(td);
        });
        return tr;
      }));
    } catch (e) { /* shown again on the next round */ }
  }

  async function stream() {
    // EventSource cannot send headers: read the SSE stream through fetch.
    for (;;) {
      try {
        const resp = await fetch("/api/v1/vehicles/stream", { headers: { Authorization: "Bearer " + token } });
        if (resp.status === 401) { showLogin("Signed out."); return; }
        const reader = resp.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) { break; }
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
            let event = "message", data = "";
            block.split("\n").forEach((line) => {
              if (line.startsWith("event: ")) { event = line.slice(7); }
              if (line.startsWith("data: ")) { data += line.slice(6); }
            });
            if (!data) { continue; }
            const parsed = JSON.parse(data);
            if (event === "snapshot") { parsed.forEach(render); } else if (event === "position") { render(parsed); }
          }
        }
      } catch (e) { /* reconnect below */ }
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  function followRoute(routeId) {
    follow = routeId;
    routeLines.forEach((lines, id) => lines.forEach((l) => l.setStyle({ opacity: !follow || id === follow ? 0.85 : 0.15 })));
    buses.forEach((b) => render(b.data));
    if (follow && routeLines.has(follow)) {
      const group = L.featureGroup(routeLines.get(follow));
      map.fitBounds(group.getBounds(), { padding: [20, 20] });
    }
  }

  async function start() {
    $("login").hidden = true; $("app").hidden = false;
    map = L.map("map", { preferCanvas: true, zoomControl: true }).setView([-7.2575, 112.7521], 12);
    const net = await api("/api/v1/network");
    if (net.tile_url) { L.tileLayer(net.tile_url, { maxZoom: 19 }).addTo(map); }
    routesLayer = L.layerGroup().addTo(map);
    stopsLayer = L.layerGroup().addTo(map);
    const bounds = [];
    net.routes.forEach((r) => {
      const option = textElement("option", (r.short_name || r.route_id) + (r.long_name ? " - " + r.long_name : ""));
      option.value = r.route_id;
      $("follow").append(option);
      const color = HEX_COLOR.test(r.color) ? "#" + r.color : "#445";
      const lines = r.shapes.map((pts) => { pts.forEach((p) => bounds.push(p)); return L.polyline(pts, { color, weight: 3, opacity: 0.85 }).addTo(routesLayer); });
      routeLines.set(r.route_id, lines);
    });
    // The tooltip's element is made when it first opens: thousands of stops, few hovered.
    net.stops.forEach((s) => L.circleMarker([s.lat, s.lon], { radius: 2, weight: 1, color: "#445", fillOpacity: 0.6 })
      .bindTooltip(() => textElement("span", s.name)).addTo(stopsLayer));
    if (bounds.length) { map.fitBounds(bounds); }
    $("follow").addEventListener("change", (ev) => followRoute(ev.target.value));
    (await api("/api/v1/vehicles")).vehicles.forEach(render);
    validators(); setInterval(validators, 10000);
    setInterval(() => buses.forEach((b) => render(b.data)), 5000);
    stream();
  }

  if (token) { api("/api/v1/vehicles").then(start, () => showLogin()); } else { showLogin(); }
})();
