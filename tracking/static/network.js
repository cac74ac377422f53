// The imported network under the buses: every route drawn thin and light in its GTFS
// colour (readable without street tiles), one followed route drawn strong, routes under a
// service alert dashed; stops as dots on the canvas, named only at close zoom.
import { $, text, t } from "./shared.js";

const HEX_COLOR = /^[0-9A-Fa-f]{6}$/;
const NEUTRAL = "#5b6670";
const LIGHT = { weight: 2, opacity: 0.5 };
const FOLLOWED = { weight: 5, opacity: 0.95 };
const FADED = { weight: 2, opacity: 0.15 };
// Names from this zoom on (a street or two across the screen), for at most this many
// stops in view: thousands of stops stay canvas dots, never thousands of elements.
export const LABEL_ZOOM = 16;
const MAX_LABELS = 120;
const BIG_DOTS_ZOOM = 15;

export function createNetwork(map, net) {
  const routes = new Map(); // route_id -> {route, color, lines}
  const lineLayer = L.layerGroup().addTo(map);
  const stopLayer = L.layerGroup().addTo(map);
  const labelLayer = L.layerGroup().addTo(map);
  map.createPane("stop-labels").classList.add("stop-labels");
  let followed = "";
  let alerted = new Set();
  const bounds = L.latLngBounds([]);

  net.routes.forEach((r) => {
    const color = HEX_COLOR.test(r.color) ? "#" + r.color : NEUTRAL;
    const lines = r.shapes.map((pts) => {
      pts.forEach((p) => bounds.extend(p));
      return L.polyline(pts, Object.assign({ color, interactive: false }, LIGHT)).addTo(lineLayer);
    });
    routes.set(r.route_id, { route: r, color, lines });
  });

  // The tooltip's element is made when it first opens: thousands of stops, few hovered.
  const dots = net.stops.map((s) => L.circleMarker([s.lat, s.lon], { radius: 2, weight: 1, color: "#6b7680", fillColor: "#fff", fillOpacity: 1 })
    .bindTooltip(() => text("span", s.name)).addTo(stopLayer));
  net.stops.forEach((s) => bounds.extend([s.lat, s.lon]));
  let bigDots = false;

  function drawLabels() {
    labelLayer.clearLayers();
    const zoom = map.getZoom();
    if (bigDots !== zoom >= BIG_DOTS_ZOOM) {
      bigDots = zoom >= BIG_DOTS_ZOOM;
      dots.forEach((d) => d.setRadius(bigDots ? 4 : 2));
    }
    if (zoom < LABEL_ZOOM) { return; }
    const view = map.getBounds();
    let shown = 0;
    for (const s of net.stops) {
      if (shown >= MAX_LABELS) { break; }
      if (!view.contains([s.lat, s.lon])) { continue; }
      const icon = L.divIcon({ html: text("span", s.name, "stop-label"), className: "stop-label-icon", iconSize: null, iconAnchor: [-6, 8] });
      L.marker([s.lat, s.lon], { icon, pane: "stop-labels", interactive: false, keyboard: false }).addTo(labelLayer);
      shown += 1;
    }
  }
  map.on("moveend", drawLabels);

  function restyle() {
    routes.forEach((entry, id) => {
      const style = !followed ? LIGHT : id === followed ? FOLLOWED : FADED;
      const dash = alerted.has(id) ? "8 6" : null;
      entry.lines.forEach((l) => l.setStyle(Object.assign({ dashArray: dash }, style)));
      if (id === followed) { entry.lines.forEach((l) => l.bringToFront()); }
    });
  }

  function redraw() {
    $("tiles-hint").textContent = t("tiles_hint");
    $("tiles-hint").hidden = Boolean(net.tile_url);
  }
  redraw();

  return {
    bounds,
    // A route as people call it: its short name, else its id.
    routeName(id) {
      const entry = routes.get(id);
      return entry ? entry.route.short_name || id : id || "";
    },
    routeColor(id) { const entry = routes.get(id); return entry ? entry.color : NEUTRAL; },
    // The route id named by what an operator typed: its id or its short name.
    routeId(typed) {
      if (routes.has(typed)) { return typed; }
      for (const [id, entry] of routes) { if (entry.route.short_name === typed) { return id; } }
      return null;
    },
    follow(id) {
      followed = id;
      restyle();
      const entry = routes.get(id);
      if (entry && entry.lines.length) { map.fitBounds(L.featureGroup(entry.lines).getBounds(), { padding: [20, 20] }); }
    },
    // Restyling redraws the whole canvas: only when the routes under an alert change.
    markAlerted(ids) {
      if (ids.size === alerted.size && [...ids].every((id) => alerted.has(id))) { return; }
      alerted = ids;
      restyle();
    },
    drawLabels,
    redraw,
  };
}

// The route options of a select: "1 - Blok M - Kota".
export function routeOptions(select, net) {
  net.routes.forEach((r) => {
    const option = text("option", (r.short_name || r.route_id) + (r.long_name ? " - " + r.long_name : ""));
    option.value = r.route_id;
    select.append(option);
  });
}
