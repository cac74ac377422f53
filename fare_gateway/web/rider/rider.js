// The passengers' page: sign up, log in, link cards, balances and statements, report a
// card lost and replace it, open and follow disputes. The login token stays in
// sessionStorage (gone when the tab closes) and travels only in the Authorization header.
(function () {
  "use strict";
  const T = window.TransitPage;
  const { $, text, box, button, money, when, say } = T;
  const store = window.sessionStorage;
  const TOKEN_KEY = "transit-rider-token";
  const EMAIL_KEY = "transit-rider-email";
  const CARD = /^[0-9A-F]{8,32}$/;
  const CHECK_CODE = /^[0-9]{8}$/;
  const MIN_PASSWORD = 10;
  const SERVICE_DAY_START_MS = 3 * 3600000; // a tap at 01:30 belongs to the day before
  const VIEWS = ["login", "signup", "cards", "statement", "replace", "dispute", "disputes", "account"];
  const DISPUTABLE = new Set(["tap", "denied", "correction"]);
  // The GTFS-Realtime effects worth a word on the page (the others say nothing).
  const EFFECT_WORDS = new Set(["NO_SERVICE", "REDUCED_SERVICE", "SIGNIFICANT_DELAYS", "DETOUR",
    "ADDITIONAL_SERVICE", "MODIFIED_SERVICE", "STOP_MOVED", "ACCESSIBILITY_ISSUE"]);

  const state = {
    token: store.getItem(TOKEN_KEY),
    email: store.getItem(EMAIL_KEY) || "",
    view: "login",
    cards: [],
    card: null,        // the card whose statement or replacement is on screen
    statement: null,
    disputes: [],
    target: null,      // what the dispute form is about
    alerts: [],        // service alerts on the rider's routes, in the page's language
  };
  const words = T.languages(window.RIDER_WORDS, () => redraw());
  const t = words.t;

  // -- talking to the gateway ---------------------------------------------------------

  function call(path, options) {
    return T.call(path, Object.assign({ token: state.token, lang: words.lang }, options));
  }

  // Error codes the gateway gives that say more than their status.
  const CODE_WORDS = { bad_check_code: "bad_code", bad_card: "bad_card", bad_message: "bad_message",
    bad_date: "err_bad_day", bad_window: "bad_period", window_too_long: "err_window_too_long",
    dispute_pending: "err_dispute_conflict", not_reported_lost: "err_not_reported_lost" };

  // The words (key and values) for a failed answer, in the context of what was asked.
  function problem(answer, context) {
    const s = answer.status;
    if (s === 0) { return ["err_network"]; }
    const byCode = CODE_WORDS[T.errorOf(answer).code];
    if (byCode && s >= 400 && s < 500) { return [byCode]; }
    if (s === 429) {
      const wait = parseInt(answer.retryAfter || "", 10);
      return wait > 0 ? ["err_too_many_wait", { seconds: wait }] : ["err_too_many"];
    }
    if (s === 401) { return [context === "login" ? "err_login" : "err_session"]; }
    if (s === 403) { return [context === "link" || context === "replace" ? "err_wrong_code" : "err_forbidden"]; }
    if (s === 404) { return ["err_not_found"]; }
    if (s === 409) {
      return [{ signup: "err_email_taken", link: "err_card_taken", replace: "err_replace_conflict",
        dispute: "err_dispute_conflict" }[context] || "err_conflict"];
    }
    if (s === 400 || s === 422) {
      return [{ signup: "err_signup_invalid", dispute: "err_dispute_invalid",
        link: "bad_card", replace: "bad_card", login: "err_login", statement: "bad_period" }[context] || "err_invalid"];
    }
    return ["err_server"];
  }

  // Shows the failure; a rejected session goes back to the login screen.
  function failed(answer, context) {
    if (answer.status === 401 && context !== "login") {
      forget();
      show("login");
      tell($("error"), "err_session");
      return;
    }
    tell($("error"), ...problem(answer, context));
  }

  function ok(answer) { return answer.status >= 200 && answer.status < 300; }

  // -- screens ------------------------------------------------------------------------

  function show(view) {
    state.view = view;
    VIEWS.forEach((v) => { $("view-" + v).hidden = v !== view; });
    const signedIn = Boolean(state.token);
    $("tabs").hidden = !signedIn;
    document.querySelectorAll("#tabs [data-view]").forEach((b) => {
      const current = b.dataset.view === view || (b.dataset.view === "cards" && ["statement", "replace", "dispute"].includes(view));
      if (current) { b.setAttribute("aria-current", "page"); } else { b.removeAttribute("aria-current"); }
    });
    window.scrollTo(0, 0);
  }

  // A message shown in words of the page's language, told again when it changes.
  // (A value named `..._at` is an instant, written in the language of the moment.)
  function told(key, vars) {
    const shown = {};
    Object.keys(vars).forEach((k) => { shown[k] = k.endsWith("_at") ? when(vars[k], words.lang) : vars[k]; });
    return t(key, shown);
  }

  function tell(el, key, vars) {
    el.dataset.key = key || "";
    el.dataset.vars = JSON.stringify(vars || {});
    say(el, key ? told(key, vars || {}) : "");
  }

  function retell() {
    ["error", "notice"].forEach((id) => {
      const el = $(id);
      if (el.dataset.key) { say(el, told(el.dataset.key, JSON.parse(el.dataset.vars || "{}"))); }
    });
  }

  function clearMessages() { tell($("error"), ""); tell($("notice"), ""); }

  async function go(view) {
    clearMessages();
    const loaded = view === "cards" ? await loadCards() : view === "disputes" ? await loadDisputes() : true;
    if (view === "cards" && loaded) { loadAlerts(); }
    if (!loaded && !state.token) { return; } // the session ended: the login is on screen
    if (view === "account") { $("account-email").textContent = state.email; }
    show(view);
  }

  // What is on screen again, in the language just chosen (the statement's explanations
  // come from the gateway in it).
  function redraw() {
    retell();
    drawCards();
    drawDisputes();
    if (state.view === "cards" && state.token) { loadAlerts(); } // their texts come in the language
    if (state.view === "statement" && state.card) { loadStatement(); }
    if (state.target) { drawTarget(); }
  }

  // -- signing up, in and out ---------------------------------------------------------

  function remember(token, email) {
    state.token = token; state.email = email;
    store.setItem(TOKEN_KEY, token); store.setItem(EMAIL_KEY, email);
  }

  function forget() {
    state.token = null; state.email = ""; state.cards = []; state.disputes = []; state.alerts = [];
    drawAlerts();
    state.statement = null; state.card = null; state.target = null;
    store.removeItem(TOKEN_KEY); store.removeItem(EMAIL_KEY);
    ["login-password", "signup-password"].forEach((id) => { $(id).value = ""; });
  }

  async function logIn(email, password, context) {
    const answer = await call("/api/v1/rider/login", { method: "POST", token: null, body: { email, password } });
    if (!ok(answer)) { failed(answer, context); return false; }
    remember(answer.body.token, email);
    return true;
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearMessages();
    const email = $("login-email").value.trim();
    const password = $("login-password").value;
    if (!email || !password) { tell($("error"), "err_login"); return; }
    if (await logIn(email, password, "login")) { $("login-password").value = ""; await go("cards"); }
  });

  $("signup-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearMessages();
    const email = $("signup-email").value.trim();
    const password = $("signup-password").value;
    if (!/^[^@\s]+@[^@\s]+$/.test(email)) { tell($("error"), "bad_email"); return; }
    if (password.length < MIN_PASSWORD) { tell($("error"), "bad_password"); return; }
    const answer = await call("/api/v1/rider/accounts", { method: "POST", token: null, body: { email, password } });
    if (!ok(answer)) { failed(answer, "signup"); return; }
    if (!(await logIn(email, password, "login"))) { return; }
    $("signup-password").value = "";
    await go("cards");
    tell($("notice"), "signed_up");
  });

  $("to-signup").addEventListener("click", () => { clearMessages(); $("signup-email").value = $("login-email").value; show("signup"); });
  $("to-login").addEventListener("click", () => { clearMessages(); show("login"); });

  $("logout").addEventListener("click", async () => {
    await call("/api/v1/rider/logout", { method: "POST", body: {} });
    forget();
    show("login");
    tell($("notice"), "logged_out");
  });

  $("delete-account").addEventListener("click", async () => {
    clearMessages();
    const sure = await T.confirmWith(t("confirm_delete", { email: state.email }), t("yes_delete"), t("cancel"));
    if (!sure) { return; }
    const answer = await call("/api/v1/rider/account", { method: "DELETE" });
    if (!ok(answer)) { failed(answer, "delete"); return; }
    forget();
    show("login");
    tell($("notice"), "deleted");
  });

  document.querySelectorAll("[data-view]").forEach((b) => b.addEventListener("click", () => go(b.dataset.view)));

  // -- cards --------------------------------------------------------------------------

  async function loadCards() {
    const answer = await call("/api/v1/rider/cards");
    if (!ok(answer)) { failed(answer, "cards"); return false; }
    state.cards = answer.body.cards || [];
    drawCards();
    return true;
  }

  function drawCards() {
    $("cards-empty").hidden = state.cards.length > 0;
    $("cards").replaceChildren(...state.cards.map((c) => {
      const blocked = c.status === "blocked";
      const li = box("li", "card " + (blocked ? "blocked" : "active"), [
        box("div", "card-head", [
          text("span", c.card, "mono card-number"),
          text("span", t(blocked ? "status_blocked" : "status_active"), "badge " + c.status),
        ]),
        box("div", "card-balance", [text("span", t("balance"), "label"), text("strong", money(c.balance, c.currency), "amount")]),
        c.replaced_by ? text("p", t("replaced_by", { card: c.replaced_by }), "hint replaced") : null,
        box("div", "actions", [
          button(t("show_statement"), "primary", () => openStatement(c.card)),
          // Money that reached a replaced card later (a late correction, a refund): the
          // same replacement asked again moves it.
          c.replaced_by ? (c.balance > 0 ? button(t("move_rest"), "", () => openReplace(c.card, c.replaced_by)) : null)
            : blocked ? button(t("replace"), "", () => openReplace(c.card))
              : button(t("report_lost"), "danger", () => reportLost(c.card)),
        ]),
      ]);
      li.dataset.card = c.card;
      li.dataset.status = c.status;
      return li;
    }));
  }

  function cardInput(id) { return $(id).value.replace(/[\s-]/g, "").toUpperCase(); }

  $("link-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearMessages();
    const card = cardInput("link-card");
    const code = $("link-code").value.trim();
    if (!CARD.test(card)) { tell($("error"), "bad_card"); return; }
    if (!CHECK_CODE.test(code)) { tell($("error"), "bad_code"); return; }
    const answer = await call("/api/v1/rider/cards", { method: "POST", body: { card, check_code: code } });
    if (!ok(answer)) { failed(answer, "link"); return; }
    $("link-card").value = ""; $("link-code").value = "";
    await loadCards();
    tell($("notice"), "linked", { card });
  });

  async function reportLost(card) {
    clearMessages();
    const sure = await T.confirmWith(t("confirm_lost", { card }), t("yes_block"), t("cancel"));
    if (!sure) { return; }
    const answer = await call("/api/v1/rider/cards/" + encodeURIComponent(card) + "/lost", { method: "POST", body: {} });
    if (!ok(answer)) { failed(answer, "lost"); return; }
    await loadCards();
    tell($("notice"), "blocked", { card });
  }

  function openReplace(card, newCard) {
    clearMessages();
    state.card = card;
    $("replace-old").textContent = card;
    $("replace-card").value = newCard || ""; $("replace-code").value = "";
    show("replace");
  }

  $("replace-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearMessages();
    const newCard = cardInput("replace-card");
    const code = $("replace-code").value.trim();
    if (!CARD.test(newCard)) { tell($("error"), "bad_card"); return; }
    if (!CHECK_CODE.test(code)) { tell($("error"), "bad_code"); return; }
    const answer = await call("/api/v1/rider/cards/" + encodeURIComponent(state.card) + "/replace",
      { method: "POST", body: { new_card: newCard, check_code: code } });
    if (!ok(answer)) { failed(answer, "replace"); return; }
    const balanceOf = (card) => (state.cards.find((c) => c.card === card) || { balance: 0 }).balance;
    const before = balanceOf(state.card);
    await go("cards");
    // A 200 is the same replacement asked again: it moved what reached the old card
    // since, if anything (its `moved` is the total of every move).
    const now = before - balanceOf(state.card);
    if (answer.status === 201 || now > 0) {
      const amount = answer.status === 201 ? answer.body.moved : now;
      tell($("notice"), "moved", { amount: money(amount, answer.body.currency), card: answer.body.card });
    } else {
      tell($("notice"), "moved_already", { card: answer.body.card });
    }
  });

  // -- service alerts on the rider's routes -------------------------------------------

  // The gateway picks the alerts (the routes the cards rode lately, and the whole
  // network) and their texts in the page's language. A failure hides them: the cards
  // matter more than the alerts.
  let alertsAsked = 0;
  async function loadAlerts() {
    const asked = ++alertsAsked;
    const answer = await call("/api/v1/rider/alerts");
    if (asked !== alertsAsked) { return; } // a later request (another language) won
    state.alerts = ok(answer) && answer.body ? answer.body.alerts || [] : [];
    drawAlerts();
  }

  function drawAlerts() {
    $("alerts").hidden = state.alerts.length === 0;
    $("alerts-list").replaceChildren(...state.alerts.map((a) => {
      const effect = EFFECT_WORDS.has(a.effect) ? t("effect_" + a.effect) : null;
      const where = a.network_wide ? t("alert_network")
        : [a.route_ids.length ? t("alert_routes", { routes: a.route_ids.join(", ") }) : null,
          a.stops.length ? t("alert_stops", { stops: a.stops.map((s) => s.name).join(", ") }) : null]
          .filter(Boolean).join(" · ");
      const li = box("li", "alert", [
        effect ? text("span", effect, "badge effect") : null,
        text("strong", a.header, "alert-header"),
        text("p", a.description, "alert-description"),
        text("p", [where, a.end ? t("alert_until", { when: when(a.end, words.lang) }) : null]
          .filter(Boolean).join(" · "), "alert-where"),
      ]);
      li.dataset.id = a.alert_id;
      li.lang = a.language;
      return li;
    }));
  }

  // -- the statement ------------------------------------------------------------------

  function openStatement(card) {
    clearMessages();
    state.card = card;
    state.statement = null;
    $("statement-card").textContent = card;
    $("period-to").value = "";
    $("period-from").value = "";
    $("statement").replaceChildren();
    show("statement");
    loadStatement();
  }

  $("period-form").addEventListener("submit", (ev) => { ev.preventDefault(); clearMessages(); loadStatement(); });

  async function loadStatement() {
    const from = $("period-from").value, to = $("period-to").value;
    if (from && to && from > to) { tell($("error"), "bad_period"); return; }
    const query = new URLSearchParams();
    if (from) { query.set("from", from); }
    if (to) { query.set("to", to); }
    const q = query.toString();
    const card = state.card;
    const answer = await call("/api/v1/rider/cards/" + encodeURIComponent(card) + "/statement" + (q ? "?" + q : ""));
    if (card !== state.card) { return; }
    if (!ok(answer)) { failed(answer, "statement"); return; }
    state.statement = answer.body;
    drawStatement();
  }

  // The service day an item belongs to: the gateway's when it says, else the local date
  // of its time less the three hours before the day starts.
  function serviceDate(item) {
    if (item.service_date) { return item.service_date; }
    return T.localDate(new Date(item.ts).getTime() - SERVICE_DAY_START_MS);
  }

  function drawStatement() {
    const s = state.statement;
    if (!s) { return; }
    $("opening-balance").textContent = money(s.opening_balance, s.currency);
    $("closing-balance").textContent = money(s.closing_balance, s.currency);
    const items = (s.items || []).slice().reverse(); // on a phone the latest is wanted first
    $("statement-empty").hidden = items.length > 0;
    const days = [];
    items.forEach((item) => {
      const day = serviceDate(item);
      if (!days.length || days[days.length - 1].day !== day) { days.push({ day, items: [] }); }
      days[days.length - 1].items.push(item);
    });
    $("statement").replaceChildren(...days.map((d) => {
      const rides = d.items.some((i) => DISPUTABLE.has(i.type));
      const head = box("div", "day-head", [
        text("h3", T.dayName(d.day, words.lang)),
        rides ? button(t("dispute_day"), "small", () => openDispute({ card: s.card, service_date: d.day })) : null,
      ]);
      const list = box("ol", "items", d.items.map((i) => drawItem(i, s)));
      const section = box("section", "day", [head, list]);
      section.dataset.day = d.day;
      return section;
    }));
  }

  function drawItem(item, s) {
    const amount = Number(item.amount) || 0;
    const where = [
      item.stop_name ? t("stop", { stop: item.stop_name }) : null,
      item.route_id ? t("route", { route: item.route_id }) : null,
      item.vehicle_id ? t("vehicle", { vehicle: item.vehicle_id }) : null,
    ].filter(Boolean).join(" · ");
    const li = box("li", "item " + item.type, [
      box("div", "item-head", [
        text("span", t("type_" + item.type), "type"),
        text("span", money(amount, s.currency, true), "amount " + (amount < 0 ? "debit" : amount > 0 ? "credit" : "zero")),
      ]),
      text("time", when(item.ts, words.lang), "when"),
      item.explanation ? text("p", item.explanation, "explanation") : null,
      !item.explanation && item.reason ? text("p", t("reason", { reason: item.reason }), "explanation") : null,
      where ? text("p", where, "where") : null,
      text("p", t("balance_after", { amount: money(item.balance_after, s.currency) }), "after"),
      DISPUTABLE.has(item.type) && item.tap_id
        ? button(t("dispute_tap"), "small", () => openDispute({ card: s.card, tap_id: item.tap_id, item, currency: s.currency }))
        : null,
    ]);
    li.dataset.type = item.type;
    if (item.tap_id) { li.dataset.tapId = item.tap_id; }
    li.dataset.amount = String(amount);
    li.dataset.balanceAfter = String(item.balance_after);
    return li;
  }

  // -- disputes -----------------------------------------------------------------------

  function openDispute(target) {
    clearMessages();
    state.target = target;
    $("dispute-message").value = "";
    $("dispute-category").value = target.item && target.item.type === "denied" ? "denied_wrongly" : "wrong_fare";
    drawTarget();
    show("dispute");
  }

  function drawTarget() {
    const g = state.target;
    $("dispute-about").textContent = g.tap_id
      ? t("dispute_about_tap", { type: t("type_" + g.item.type), when: when(g.item.ts, words.lang), amount: money(g.item.amount, g.currency, true) })
      : t("dispute_about_day", { day: T.dayName(g.service_date, words.lang), card: g.card });
  }

  $("dispute-back").addEventListener("click", () => { state.target = null; clearMessages(); show("statement"); });

  $("dispute-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearMessages();
    const message = $("dispute-message").value.trim();
    if (!message) { tell($("error"), "bad_message"); return; }
    const g = state.target;
    const body = { card: g.card, category: $("dispute-category").value, message };
    if (g.tap_id) { body.tap_id = g.tap_id; } else { body.date = g.service_date; }
    const answer = await call("/api/v1/rider/disputes", { method: "POST", body });
    if (!ok(answer)) { failed(answer, "dispute"); return; }
    state.target = null;
    await go("disputes");
    tell($("notice"), "dispute_sent", { id: answer.body.dispute_id, due_at: answer.body.due_at });
  });

  async function loadDisputes() {
    const answer = await call("/api/v1/rider/disputes");
    if (!ok(answer)) { failed(answer, "disputes"); return false; }
    state.disputes = answer.body.disputes || [];
    drawDisputes();
    return true;
  }

  function drawDisputes() {
    const list = state.disputes.slice().sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    $("disputes-empty").hidden = list.length > 0;
    $("disputes").replaceChildren(...list.map((d) => {
      const answered = d.status === "answered" || d.answered_at;
      const status = answered ? "answered" : d.status;
      const li = box("li", "dispute " + status, [
        box("div", "dispute-head", [
          text("strong", t("dispute_number", { id: d.dispute_id })),
          text("span", t("state_" + status), "badge " + status),
        ]),
        text("p", t("cat_" + d.category), "category"),
        text("p", [t("dispute_card", { card: d.card }),
          d.tap_id ? t("dispute_tap_id", { tap: d.tap_id }) : d.service_date ? t("dispute_day_of", { day: T.dayName(d.service_date, words.lang) }) : null]
          .filter(Boolean).join(" · "), "subject"),
        text("p", d.message, "message"),
        text("p", t("dispute_created", { when: when(d.created_at, words.lang) }), "clock"),
        answered ? text("p", t("dispute_answered", { when: when(d.answered_at, words.lang) }), "clock")
          : text("p", t("dispute_due", { when: when(d.due_at, words.lang) }), "clock due"),
        answered ? box("div", "answer", [
          text("p", d.decision === "refund" ? t("decision_refund", { amount: money(d.amount, d.currency) }) : t("decision_reject"), "decision " + d.decision),
          d.answer ? text("p", t("answer_from_staff", { answer: d.answer }), "answer-text") : null,
        ]) : null,
      ]);
      li.dataset.id = String(d.dispute_id);
      li.dataset.status = status;
      return li;
    }));
  }

  // -- start --------------------------------------------------------------------------

  if (state.token) { go("cards"); } else { show("login"); }
})();
