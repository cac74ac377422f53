// What the passengers' page and the disputes queue share: elements built from text, the
// two languages, rupiah and local times, and one way to call the API.
//
// Every value from the API (e-mails, messages, explanations, stop names) is shown with
// textContent; the pages' Content-Security-Policy (Trusted Types) makes any assignment of
// a string as HTML throw, so a message that holds markup can only be shown as characters.
(function () {
  "use strict";

  const LANGS = ["id", "en"];
  const LANG_KEY = "transit-lang";
  const ZONE = "Asia/Jakarta";
  const ZONE_LABEL = "WIB";
  const MONTHS = {
    id: ["Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des"],
    en: ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
  };
  const MINUS = "\u2212";

  const $ = (id) => document.getElementById(id);

  // An element with `value` as its text, and optionally a class.
  function text(tag, value, className) {
    const el = document.createElement(tag);
    el.textContent = value == null ? "" : String(value);
    if (className) { el.className = className; }
    return el;
  }

  // An element holding `children` (elements or strings, shown as text).
  function box(tag, className, children) {
    const el = document.createElement(tag);
    if (className) { el.className = className; }
    (children || []).forEach((c) => { if (c != null) { el.append(c); } });
    return el;
  }

  function button(label, className, onClick) {
    const b = text("button", label, className);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  // The page's words in Indonesian (the default) and English: `t(key, {name: value})`
  // fills `{name}` in the sentence. Elements carry `data-i18n` (their text),
  // `data-i18n-placeholder` or `data-i18n-label` (aria-label), filled by `apply`.
  function languages(words, onChange) {
    const stored = window.localStorage.getItem(LANG_KEY);
    let lang = LANGS.includes(stored) ? stored : "id";

    function t(key, vars) {
      const sentence = (words[lang] && words[lang][key]) || words.id[key] || key;
      return sentence.replace(/\{(\w+)\}/g, (_, name) => (vars && vars[name] != null ? String(vars[name]) : ""));
    }

    function apply() {
      document.documentElement.lang = lang;
      document.title = t("page_title");
      document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
      document.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
      document.querySelectorAll("[data-i18n-label]").forEach((el) => { el.setAttribute("aria-label", t(el.dataset.i18nLabel)); });
      document.querySelectorAll("[data-lang]").forEach((el) => {
        el.setAttribute("aria-pressed", String(el.dataset.lang === lang));
      });
    }

    function set(next) {
      if (!LANGS.includes(next) || next === lang) { return; }
      lang = next;
      window.localStorage.setItem(LANG_KEY, lang);
      apply();
      if (onChange) { onChange(lang); }
    }

    document.querySelectorAll("[data-lang]").forEach((el) => {
      el.addEventListener("click", () => set(el.dataset.lang));
    });
    apply();
    return { t, apply, set, get lang() { return lang; } };
  }

  // Whole rupiah as Rp5.000 (dots between thousands, as rupiah are written); `signed`
  // puts + before a credit and a minus before a debit.
  function money(amount, currency, signed) {
    const n = Number(amount) || 0;
    const digits = String(Math.abs(Math.trunc(n))).replace(/\B(?=(\d{3})+(?!\d))/g, ".");
    const sign = n < 0 ? MINUS : (signed && n > 0 ? "+" : "");
    if (currency && currency !== "IDR") { return sign + digits + " " + currency; }
    return sign + "Rp" + digits;
  }

  const zoneParts = new Intl.DateTimeFormat("en-GB", {
    timeZone: ZONE, year: "numeric", month: "numeric", day: "numeric",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });

  // An instant (ISO-8601 or epoch ms) as local time in Surabaya: "1 Des 2026 22:37 WIB".
  function when(instant, lang) {
    if (instant == null || instant === "") { return "-"; }
    const d = new Date(typeof instant === "number" ? instant : String(instant));
    if (Number.isNaN(d.getTime())) { return String(instant); }
    const p = {};
    zoneParts.formatToParts(d).forEach((part) => { p[part.type] = part.value; });
    const month = (MONTHS[lang] || MONTHS.id)[Number(p.month) - 1];
    return Number(p.day) + " " + month + " " + p.year + " " + p.hour + ":" + p.minute + " " + ZONE_LABEL;
  }

  // The local calendar date of an instant, YYYY-MM-DD.
  function localDate(instant) {
    const d = new Date(instant);
    const p = {};
    zoneParts.formatToParts(d).forEach((part) => { p[part.type] = part.value; });
    return p.year + "-" + p.month.padStart(2, "0") + "-" + p.day.padStart(2, "0");
  }

  // A local date (YYYY-MM-DD) as "1 Des 2026".
  function dayName(date, lang) {
    const [y, m, d] = String(date).split("-");
    const month = (MONTHS[lang] || MONTHS.id)[Number(m) - 1];
    return month ? Number(d) + " " + month + " " + y : String(date);
  }

  // A length of time in hours and minutes: "23 j 5 m" / "23 h 5 min".
  function duration(ms, lang) {
    const minutes = Math.floor(Math.abs(ms) / 60000);
    const h = Math.floor(minutes / 60), m = minutes % 60;
    return lang === "en" ? h + " h " + m + " min" : h + " j " + m + " mnt";
  }

  // One API call; never throws. The answer is {status, body, retryAfter}; status 0 when
  // the gateway could not be reached. The token travels only in the Authorization
  // header, and Accept-Language asks for the page's language.
  async function call(path, options) {
    const o = options || {};
    const headers = { Accept: "application/json", "Accept-Language": o.lang || "id" };
    if (o.token) { headers.Authorization = "Bearer " + o.token; }
    const init = { method: o.method || "GET", headers, cache: "no-store", credentials: "omit" };
    if (o.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(o.body);
    }
    let resp;
    try { resp = await fetch(path, init); } catch (e) { return { status: 0, body: null, retryAfter: null }; }
    let body = null;
    if ((resp.headers.get("Content-Type") || "").includes("json")) {
      try { body = await resp.json(); } catch (e) { body = null; }
    }
    return { status: resp.status, body, retryAfter: resp.headers.get("Retry-After") };
  }

  // The error code and message of a failed answer, or empty strings.
  function errorOf(answer) {
    const e = answer && answer.body && answer.body.error;
    return { code: (e && e.code) || "", message: (e && e.message) || "" };
  }

  // Asks a yes/no question in the page's <dialog id="confirm">; resolves to true on yes.
  function confirmWith(question, yes, no) {
    const dialog = $("confirm");
    $("confirm-text").textContent = question;
    $("confirm-yes").textContent = yes;
    $("confirm-no").textContent = no;
    return new Promise((resolve) => {
      const done = (answer) => {
        $("confirm-yes").removeEventListener("click", onYes);
        $("confirm-no").removeEventListener("click", onNo);
        dialog.removeEventListener("cancel", onNo);
        dialog.close();
        resolve(answer);
      };
      const onYes = () => done(true);
      const onNo = () => done(false);
      $("confirm-yes").addEventListener("click", onYes);
      $("confirm-no").addEventListener("click", onNo);
      dialog.addEventListener("cancel", onNo);
      dialog.showModal();
    });
  }

  // Shows `message` in the element (hidden when empty).
  function say(el, message) {
    el.textContent = message || "";
    el.hidden = !message;
  }

  window.TransitPage = { $, text, box, button, languages, money, when, localDate, dayName,
    duration, call, errorOf, confirmWith, say };
})();
