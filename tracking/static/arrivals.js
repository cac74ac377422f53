// A bus's next stops in its popup: the predicted arrival at each and, where the
// timetable gives one, how late or early that is. Read from the TripUpdates feed
// (`/gtfs-rt/trip-updates?format=json`: protobuf's JSON mapping, one entity per bus,
// its id the vehicle's), fetched only while a popup is open, at most every 15 s (the
// gateway builds the feed at most every 5 s).
import { api, box, clock, ok, put, t, text } from "./shared.js";

const REFRESH_MS = 15000;
const SHOWN = 4; // the stops a rider or an operator reads in a popup; the rest are counted

export function createArrivals(net) {
  const names = new Map((net.stops || []).map((s) => [s.id, s.name]));
  const feed = { byVehicle: new Map(), at: 0, loading: null, failed: false };

  // The feed again once it is older than REFRESH_MS; one request at a time.
  function load() {
    if (feed.loading || Date.now() - feed.at < REFRESH_MS) { return feed.loading || Promise.resolve(); }
    feed.loading = api("/gtfs-rt/trip-updates?format=json").then((answer) => {
      feed.at = Date.now();
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
    put(part.title, t("arr_title"));
    const update = feed.byVehicle.get(vehicleId);
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
    put(part.note, !ahead.length ? t(feed.failed ? "arr_unavailable" : "arr_none")
      : more > 0 ? t("arr_more", { n: more }) : "");
    part.note.hidden = !part.note.textContent;
  }

  return { load, node, draw };
}
