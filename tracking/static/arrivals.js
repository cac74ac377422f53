// A bus's next stops in its popup: the predicted arrival at each and, where the
// timetable gives one, how late or early that is. Read from the TripUpdates feed cut to
// the popup's bus (`/gtfs-rt/trip-updates?format=json&vehicle_id=V`: protobuf's JSON
// mapping, the entity's id the vehicle's; the whole fleet's feed is ~1.6 MB for 4,300
// buses), fetched only while a popup is open, at most every 15 s (the gateway builds the
// feed at most every 5 s), and at once for another bus's popup.
import { api, box, clock, ok, put, t, text } from "./shared.js";

const REFRESH_MS = 15000;
const SHOWN = 4; // the stops a rider or an operator reads in a popup; the rest are counted

export function createArrivals(net) {
  const names = new Map((net.stops || []).map((s) => [s.id, s.name]));
  // `wanted`: the bus whose popup was drawn last, the one `load` asks for.
  const feed = { byVehicle: new Map(), at: 0, loading: null, failed: false, wanted: null, of: null };

  // The bus's entity again once older than REFRESH_MS (or of another bus); one request
  // at a time.
  function load(vehicleId = feed.wanted) {
    if (!vehicleId) { return Promise.resolve(); }
    const fresh = feed.of === vehicleId && Date.now() - feed.at < REFRESH_MS;
    if (feed.loading || fresh) { return feed.loading || Promise.resolve(); }
    feed.loading = api("/gtfs-rt/trip-updates?format=json&vehicle_id=" + encodeURIComponent(vehicleId)).then((answer) => {
      feed.at = Date.now();
      feed.of = vehicleId;
      feed.failed = !ok(answer);
      if (!feed.failed) {
        feed.byVehicle = new Map((answer.body.entity || []).filter((e) => e.tripUpdate)
          .map((e) => [(e.tripUpdate.vehicle && e.tripUpdate.vehicle.id) || e.id, e.tripUpdate]));
      }
    }).finally(() => { feed.loading = null; });
    return feed.loading;
  }

  // "terlambat 4 mnt" / "4 min late", "tepat waktu" within a minute of the timetable.
  function delayWords(delay) {
    if (typeof delay !== "number") { return ""; }
    const minutes = Math.round(Math.abs(delay) / 60);
    if (minutes < 1) { return t("arr_on_time"); }
    return t(delay > 0 ? "arr_late" : "arr_early", { n: minutes });
  }

  // The element of a popup: a title and a list, drawn by `draw`.
  function node() {
    const list = box("ol", "arrivals");
    const title = text("strong", t("arr_title"), "arrivals-title");
    const note = text("p", "", "muted arrivals-note");
    return { el: box("div", "arrivals-box", [title, list, note]), title, list, note };
  }

  function draw(part, vehicleId) {
    feed.wanted = vehicleId;
    put(part.title, t("arr_title"));
    const update = feed.of === vehicleId ? feed.byVehicle.get(vehicleId) : null;
    const ahead = (update && update.stopTimeUpdate) || [];
    const rows = ahead.slice(0, SHOWN).map((s) => {
      const at = s.arrival || s.departure || {};
      const when = at.time != null ? clock(Number(at.time) * 1000) : "-";
      const late = delayWords(at.delay);
      const li = box("li", "", [text("span", when, "mono"), text("span", " " + (names.get(s.stopId) || s.stopId || ""))]);
      if (late) { li.append(text("span", " · " + late, at.delay > 60 ? "late" : "")); }
      return li;
    });
    part.list.replaceChildren(...rows);
    const more = ahead.length - rows.length;
    // Another bus's answer in hand: nothing said until this one's comes.
    put(part.note, feed.of !== vehicleId ? "" : !ahead.length ? t(feed.failed ? "arr_unavailable" : "arr_none")
      : more > 0 ? t("arr_more", { n: more }) : "");
    part.note.hidden = !part.note.textContent;
  }

  return { load, node, draw };
}
