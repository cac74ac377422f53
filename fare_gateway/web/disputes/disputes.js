// The staff disputes queue: overdue and escalated disputes first, then open ones, each
// with its clock; one opened shows its evidence and the answer form. Signed in with an
// ops or finance token typed into the page, kept in sessionStorage (as the map keeps it)
// and sent only in the Authorization header.
(function () {
  "use strict";
  const T = window.TransitPage;
  const { $, text, box, money, when, say } = T;
  const told = new Map(); // element -> what makes its message, made again in a new language
  const store = window.sessionStorage;
  const TOKEN_KEY = "transit-token";
  const WAITING = ["overdue", "escalated", "open"]; // the most urgent first
  const REFRESH_MS = 60000;
  const TICK_MS = 30000;

  const state = { token: store.getItem(TOKEN_KEY), filter: "waiting", disputes: [], counts: {}, open: null };
  const words = T.languages(window.DISPUTES_WORDS, () => {
    told.forEach((make, el) => say(el, make()));
    drawQueue();
    if (state.open) { drawDetail(); }
  });
  const t = words.t;

  // Shows the message `make` words (none when null), in the page's language.
  function tell(el, make) {
    if (make) { told.set(el, make); } else { told.delete(el); }
    say(el, make ? make() : "");
  }

  function call(path, options) {
    return T.call(path, Object.assign({ token: state.token, lang: words.lang }, options));
  }

  function ok(answer) { return answer.status >= 200 && answer.status < 300; }

  // Staff's words for a failed answer, with the server's own message beneath.
  function problem(answer, context) {
    const s = answer.status;
    let key = "err_server";
    if (s === 0) { key = "err_network"; }
    else if (s === 429) {
      const wait = parseInt(answer.retryAfter || "", 10);
      if (wait > 0) { return t("err_too_many_wait", { seconds: wait }); }
      key = "err_too_many";
    } else if (s === 401) { key = context === "login" ? "err_token" : "err_session"; }
    else if (s === 403) { key = context === "login" ? "err_role" : context === "refund" ? "err_refund_role" : "err_forbidden"; }
    else if (s === 404) { key = "err_not_found"; }
    else if (s === 409) { key = "err_answered"; }
    else if (s === 400 || s === 422) { key = context === "refund" ? "err_amount" : "err_invalid"; }
    const said = T.errorOf(answer).message;
    return t(key) + (said ? " " + t("server_said", { message: said }) : "");
  }

  function failed(answer, context) {
    if (answer.status === 401 && context !== "login") {
      signOut();
      tell($("error"), () => t("err_session"));
      return;
    }
    tell($("error"), () => problem(answer, context));
  }

  // -- signing in and out ---------------------------------------------------------------

  function showLogin() {
    $("app").hidden = true; $("login").hidden = false;
  }

  function signOut() {
    state.token = null; state.open = null; state.disputes = []; state.counts = {};
    store.removeItem(TOKEN_KEY);
    $("token").value = "";
    $("detail").hidden = true;
    $("queue").querySelector("tbody").replaceChildren();
    showLogin();
  }

  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    tell($("error"), null); tell($("notice"), null);
    const token = $("token").value.trim();
    if (!token) { return; }
    const answer = await T.call("/api/v1/disputes?status=open", { token, lang: words.lang });
    if (!ok(answer)) { tell($("error"), () => problem(answer, "login")); return; }
    state.token = token;
    store.setItem(TOKEN_KEY, token);
    $("token").value = "";
    start();
  });

  $("logout").addEventListener("click", () => { tell($("notice"), null); tell($("error"), null); signOut(); });

  // -- the queue --------------------------------------------------------------------------

  async function loadQueue() {
    const statuses = state.filter === "waiting" ? WAITING : ["answered"];
    const answers = await Promise.all(statuses.map((s) => call("/api/v1/disputes?status=" + s)));
    const bad = answers.find((a) => !ok(a));
    if (bad) { failed(bad, "queue"); return; }
    const lists = answers.map((a) => a.body.disputes || []);
    state.counts = {};
    statuses.forEach((s, i) => { state.counts[s] = lists[i].length; });
    // Answered ones: the latest answer first; the others as the API orders them, oldest first.
    state.disputes = state.filter === "waiting" ? lists.flat() : lists.flat().reverse();
    drawQueue();
  }

  function clock(d) {
    if (d.status === "answered") { return t("state_answered"); }
    const left = new Date(d.due_at).getTime() - Date.now();
    return t(left >= 0 ? "left" : "late", { time: T.duration(left, words.lang) });
  }

  function drawQueue() {
    const c = state.counts;
    $("summary").textContent = state.filter === "waiting"
      ? t("summary", { overdue: c.overdue || 0, escalated: c.escalated || 0, open: c.open || 0 })
      : t("summary_answered", { answered: c.answered || 0 });
    document.querySelectorAll("[data-filter]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.filter === state.filter)));
    $("queue-empty").hidden = state.disputes.length > 0;
    $("queue").querySelector("tbody").replaceChildren(...state.disputes.map((d) => {
      const tr = document.createElement("tr");
      const open = T.button("#" + d.dispute_id, "small", () => openDispute(d.dispute_id));
      const status = box("td", "", [text("span", t("state_" + d.status), "badge " + d.status)]);
      tr.append(box("td", "", [open]), status, text("td", d.card, "mono"), text("td", t("cat_" + d.category)),
        text("td", when(d.created_at, words.lang)), text("td", when(d.escalate_at, words.lang)),
        text("td", when(d.due_at, words.lang)), text("td", clock(d), "left " + d.status));
      tr.dataset.id = String(d.dispute_id);
      tr.dataset.status = d.status;
      if (state.open && state.open.dispute_id === d.dispute_id) { tr.className = "selected"; }
      return tr;
    }));
  }

  document.querySelectorAll("[data-filter]").forEach((b) => b.addEventListener("click", () => {
    state.filter = b.dataset.filter;
    tell($("error"), null);
    loadQueue();
  }));
  $("refresh").addEventListener("click", () => { tell($("error"), null); tell($("notice"), null); loadQueue(); });

  // -- one dispute, its evidence and the answer ---------------------------------------------

  async function openDispute(id) {
    tell($("error"), null); tell($("notice"), null);
    // The form is emptied before the dispute is fetched, so that nothing typed in the
    // meantime is lost, nor sent as the answer to another dispute.
    state.open = null;
    $("detail").hidden = true;
    $("decision").value = "reject";
    $("amount").value = "";
    $("answer-message").value = "";
    tell($("answer-error"), null);
    const answer = await call("/api/v1/disputes/" + encodeURIComponent(id));
    if (!ok(answer)) { failed(answer, "dispute"); return; }
    state.open = answer.body;
    drawDetail();
    drawQueue();
    $("detail").hidden = false;
    $("detail").scrollIntoView({ block: "start" });
  }

  $("close-detail").addEventListener("click", () => { state.open = null; $("detail").hidden = true; drawQueue(); });

  function field(list, key, value, className) {
    list.append(text("dt", t(key)), text("dd", value, className));
  }

  function drawDetail() {
    const d = state.open;
    $("detail-title").textContent = t("detail_title", { id: d.dispute_id });
    const list = $("detail-fields");
    list.replaceChildren();
    field(list, "f_card", d.card, "mono");
    if (d.tap_id) { field(list, "f_tap", d.tap_id, "mono"); }
    if (d.service_date) { field(list, "f_day", T.dayName(d.service_date, words.lang)); }
    field(list, "f_category", t("cat_" + d.category));
    field(list, "f_status", t("state_" + d.status));
    field(list, "f_created", when(d.created_at, words.lang));
    field(list, "f_escalate", when(d.escalate_at, words.lang));
    field(list, "f_due", when(d.due_at, words.lang) + " (" + clock(d) + ")");
    if (d.answered_at) { field(list, "f_answered", when(d.answered_at, words.lang)); }
    $("detail-message").textContent = d.message;
    const answered = Boolean(d.answered_at) || d.status === "answered";
    $("detail-answer").hidden = !answered;
    $("detail-answer").replaceChildren(...(answered ? [
      text("p", d.decision === "refund" ? t("answered_refund", { amount: money(d.amount, d.currency) }) : t("answered_reject"), "decision " + d.decision),
      d.answer ? text("p", t("answered_text", { answer: d.answer }), "answer-text") : null,
    ].filter(Boolean) : []));
    $("answer-form").hidden = answered;
    drawEvidence(d.evidence || {});
    drawAmountHint();
  }

  // Evidence as it was recorded, each part shown as text, whatever fields it holds.
  function drawEvidence(ev) {
    const parts = [["tap", "ev_tap"], ["receipt", "ev_receipt"], ["positions", "ev_positions"],
      ["validator", "ev_validator"], ["explanation", "ev_explanation"]];
    $("evidence").replaceChildren(...parts.map(([key, title]) => {
      const section = box("section", "evidence-part", [text("h4", t(title)), shown(ev[key])]);
      section.dataset.part = key;
      return section;
    }));
  }

  function shown(value, depth) {
    const level = depth || 0;
    if (value == null || value === "" || (Array.isArray(value) && !value.length)) { return text("p", t("ev_none"), "hint"); }
    if (typeof value !== "object") { return text("p", value, level ? "mono" : "explanation"); }
    if (Array.isArray(value)) {
      if (!value.every((v) => v && typeof v === "object" && !Array.isArray(v))) { return text("p", JSON.stringify(value), "mono"); }
      const keys = [...new Set(value.flatMap((v) => Object.keys(v)))];
      const table = box("table", "evidence-table", [box("thead", "", [box("tr", "", keys.map((k) => text("th", k)))]),
        box("tbody", "", value.map((v) => box("tr", "", keys.map((k) => text("td", cell(k, v[k]))))))]);
      return box("div", "scroll", [table]);
    }
    const dl = box("dl", "fields evidence-fields", []);
    Object.keys(value).forEach((k) => {
      const v = value[k];
      const nested = v && typeof v === "object" && level < 2;
      dl.append(text("dt", k), nested ? box("dd", "", [shown(v, level + 1)])
        : text("dd", cell(k, v), k === "sig" || k === "canonical" ? "mono" : ""));
    });
    return dl;
  }

  // One recorded value as text; instants also in local time.
  function cell(key, value) {
    if (value == null) { return "-"; }
    if (typeof value === "object") { return JSON.stringify(value); }
    const instant = (key === "ts" || key === "at" || key.endsWith("_ms") || key.endsWith("_at") || key.endsWith("_since")) &&
      (typeof value === "number" || /^\d{4}-\d{2}-\d{2}T/.test(String(value)));
    return instant ? String(value) + " (" + when(value, words.lang) + ")" : String(value);
  }

  function drawAmountHint() {
    const d = state.open;
    const refund = $("decision").value === "refund";
    $("amount-field").hidden = !refund;
    const receipt = d && d.evidence && d.evidence.receipt;
    $("amount-hint").textContent = receipt && typeof receipt.fare === "number"
      ? t("amount_hint", { amount: money(receipt.fare, receipt.currency) }) : t("amount_hint_day");
  }

  $("decision").addEventListener("change", drawAmountHint);

  $("answer-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    tell($("answer-error"), null); tell($("notice"), null);
    const d = state.open;
    const decision = $("decision").value;
    const message = $("answer-message").value.trim();
    const body = { decision, message };
    if (decision === "refund") {
      const amount = Number($("amount").value);
      if (!Number.isInteger(amount) || amount <= 0) { tell($("answer-error"), () => t("bad_amount")); return; }
      body.amount = amount;
    }
    if (!message) { tell($("answer-error"), () => t("bad_message")); return; }
    const answer = await call("/api/v1/disputes/" + encodeURIComponent(d.dispute_id) + "/answer", { method: "POST", body });
    if (!ok(answer)) {
      if (answer.status === 401) { failed(answer, "answer"); return; }
      tell($("answer-error"), () => problem(answer, decision === "refund" ? "refund" : "answer"));
      return;
    }
    tell($("notice"), () => t("answer_sent", { id: d.dispute_id }));
    state.open = Object.assign({}, answer.body, { evidence: answer.body.evidence || d.evidence });
    drawDetail();
    loadQueue();
  });

  // -- start ------------------------------------------------------------------------------

  let timers = [];
  function start() {
    $("login").hidden = true; $("app").hidden = false;
    timers.forEach(clearInterval);
    timers = [setInterval(() => { if (state.token) { loadQueue(); } }, REFRESH_MS),
      setInterval(() => { if (state.token) { drawQueue(); } }, TICK_MS)];
    loadQueue();
  }

  if (state.token) { start(); } else { showLogin(); }
})();
