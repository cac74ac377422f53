// What the map's parts share: the signed-in session, one way to call the API, the words
// of the page's language, and how ages and local times are written.
//
// Every value from the API (names, ids, messages) is shown as text: elements come from
// TransitPage.text/box (textContent), never from an HTML string.
const T = window.TransitPage;
export const { $, text, box, button, say, errorOf } = T;

// A vehicle is stale after 90 s without a position and offline after 10 minutes, as the
// API judges it (tracking.domain.state); the page ages what it was told between updates.
export const STALE_S = 90;
export const OFFLINE_S = 600;
const ZONE = "Asia/Jakarta";
const TOKEN_KEY = "transit-token";

export const session = {
  token: window.sessionStorage.getItem(TOKEN_KEY),
  words: null, // set by map.js: TransitPage.languages(...)
  onSignedOut: () => {},
};

export function t(key, vars) { return session.words.t(key, vars); }
export function lang() { return session.words.lang; }

// The translated name of an enum value (`cause_`, `effect_`, `reason_`, `kind_`, ...),
// else the value itself as the API gave it.
export function named(prefix, value) {
  const key = prefix + value;
  const said = t(key);
  return said === key ? String(value == null ? "" : value) : said;
}

export function keepToken(token) {
  session.token = token;
  if (token) { window.sessionStorage.setItem(TOKEN_KEY, token); } else { window.sessionStorage.removeItem(TOKEN_KEY); }
}

// One API call with the session's token; never throws. A 401 signs the page out.
export async function api(path, options) {
  const answer = await T.call(path, Object.assign({ token: session.token, lang: lang() }, options));
  if (answer.status === 401 && session.token) { session.onSignedOut(); }
  return answer;
}

// Writes `value` as the element's text only when it changes: a write, even of the same
// text, makes the browser lay the page out again.
export function put(el, value) {
  const said = value == null ? "" : String(value);
  if (el.textContent !== said) { el.textContent = said; }
}

export function ok(answer) { return answer.status >= 200 && answer.status < 300; }

// Why a panel shows nothing: the endpoint missing, the token's role, the network.
export function unavailable(answer) {
  if (answer.status === 0) { return t("err_network"); }
  if (answer.status === 404 || answer.status === 405 || answer.status === 501) { return t("not_available"); }
  if (answer.status === 403) { return t("not_allowed"); }
  const said = T.errorOf(answer).message;
  return t("err_server", { status: answer.status }) + (said ? " " + said : "");
}

// How long ago, from seconds: "12 d lalu" / "12 s ago", minutes from 2 minutes, hours
// from 2 hours, days from 2 days.
export function ago(seconds) {
  if (seconds == null || Number.isNaN(Number(seconds))) { return t("never"); }
  const s = Math.max(0, Math.floor(Number(seconds)));
  if (s < 120) { return t("ago_s", { n: s }); }
  if (s < 7200) { return t("ago_m", { n: Math.floor(s / 60) }); }
  if (s < 172800) { return t("ago_h", { n: Math.floor(s / 3600) }); }
  return t("ago_d", { n: Math.floor(s / 86400) });
}

const clockParts = new Intl.DateTimeFormat("en-GB", {
  timeZone: ZONE, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});

// An instant (epoch ms or ISO-8601) as local time in Surabaya, "14:05:09".
export function clock(instant) {
  const d = toDate(instant);
  return d ? clockParts.format(d) : "-";
}

// An instant with its date when it is not today: "14:05:09" or "1 Des 2026 14:05 WIB".
export function moment(instant) {
  const d = toDate(instant);
  if (!d) { return "-"; }
  return T.localDate(d.getTime()) === T.localDate(Date.now()) ? clockParts.format(d) : T.when(d.getTime(), lang());
}

export function toDate(instant) {
  if (instant == null || instant === "") { return null; }
  const d = new Date(typeof instant === "number" ? instant : String(instant));
  return Number.isNaN(d.getTime()) ? null : d;
}

// Milliseconds since the epoch of an instant given as epoch ms or ISO-8601.
export function millis(instant) {
  const d = toDate(instant);
  return d ? d.getTime() : null;
}

const SVG_NS = "http://www.w3.org/2000/svg";

// A bus's arrow (pointing north until turned to its bearing), an SVG drawn by CSS.
export function arrow() {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 26 26");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", "M13 2 L21 22 L13 17 L5 22 Z");
  svg.append(path);
  return svg;
}

// Turns an arrow to a bearing (degrees clockwise from north).
export function turn(svg, bearing) {
  const rotation = "rotate(" + (Number(bearing) || 0) + "deg)";
  if (svg.style.transform !== rotation) { svg.style.transform = rotation; }
}

export function vehicleState(ageS) {
  return ageS >= OFFLINE_S ? "offline" : ageS >= STALE_S ? "stale" : "live";
}

// Runs `load` now and every `ms`, skipping rounds while the page is hidden; a round
// does not start while the previous one is still waiting for the gateway.
export function every(ms, load) {
  let busy = false;
  const round = async () => {
    if (busy || document.hidden || !session.token) { return; }
    busy = true;
    try { await load(); } finally { busy = false; }
  };
  round();
  const id = window.setInterval(round, ms);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) { round(); } });
  return { now: round, stop: () => window.clearInterval(id) };
}

// A table row of text cells; `classes` gives some cells a class.
export function row(values, classes) {
  const tr = document.createElement("tr");
  values.forEach((value, i) => {
    tr.append(value instanceof Node ? box("td", (classes && classes[i]) || "", [value]) : text("td", value, classes && classes[i]));
  });
  return tr;
}
