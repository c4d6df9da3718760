// famguard parents' page. It talks to the router's ubus-over-HTTP endpoint
// (/ubus, JSON-RPC 2.0, as LuCI does): session.login, then the "famguard"
// object (rpcd plugin /usr/libexec/rpcd/famguard). Everything it shows comes
// from famguard.status; every button is one famguard.* call. No framework, no
// build step, nothing loaded from outside the router.
(function () {
  "use strict";
  var NOSESSION = "00000000000000000000000000000000";
  var REFRESH_MS = 10000;
  var $ = function (s, el) { return (el || document).querySelector(s); };

  // ---- language ----
  var cat = window.FG_I18N, lang = "en";
  (navigator.languages || [navigator.language || "en"]).some(function (l) {
    var k = String(l).toLowerCase().split("-")[0];
    if (cat[k]) { lang = k; return true; }
    return false;
  });
  document.documentElement.lang = lang;
  function t(key, vars) {
    var s = (cat[lang] && cat[lang][key]) || cat.en[key] || key;
    return s.replace(/\{(\w+)\}/g, function (_, k) { return vars && vars[k] != null ? vars[k] : ""; });
  }
  function translate(root) {
    root.querySelectorAll("[data-t]").forEach(function (el) { el.textContent = t(el.dataset.t); });
  }
  translate(document);
  // Times are written the way the browser's own locale writes them (24 h in
  // most of Europe), in the family's zone.
  var timeLocale = navigator.language || lang;
  function cap(s) { return s ? s.charAt(0).toUpperCase() + s.slice(1) : s; }

  // ---- ubus over HTTP ----
  var sid = sessionStorage.getItem("fg_sid") || "";
  var canWrite = sessionStorage.getItem("fg_write") === "1";
  var nextId = 1;

  function UbusError(code, message) { this.code = code; this.message = message; }

  // call sends one or several [object, method, args] calls as one request
  // (a JSON-RPC batch when several) and resolves to their results in order.
  function call(calls) {
    var batch = calls.map(function (c) {
      return { jsonrpc: "2.0", id: nextId++, method: "call", params: [sid || NOSESSION, c[0], c[1], c[2] || {}] };
    });
    return fetch("/ubus", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(batch.length === 1 ? batch[0] : batch), credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (body) {
        var replies = Array.isArray(body) ? body : [body];
        var byId = {};
        replies.forEach(function (r) { byId[r.id] = r; });
        return batch.map(function (q) {
          var r = byId[q.id];
          if (!r) throw new UbusError(-1, "no answer");
          if (r.error) throw new UbusError(r.error.code, r.error.message);
          if (!Array.isArray(r.result) || r.result[0] !== 0) {
            throw new UbusError(Array.isArray(r.result) ? r.result[0] : -1, "ubus status " + (r.result && r.result[0]));
          }
          return r.result[1] || {};
        });
      });
  }

  function denied(e) { return e && (e.code === -32002 || e.code === 6); }

  // ---- login ----
  var form = $("#login");
  function showLogin(msg) {
    sid = ""; sessionStorage.removeItem("fg_sid");
    form.hidden = false; $("#children").innerHTML = ""; $("#unknown").hidden = true; $("#logout").hidden = true;
    var err = $("#login-error");
    err.hidden = !msg; err.textContent = msg || "";
  }
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var btn = $("button", form); btn.disabled = true;
    sid = "";
    call([["session", "login", { username: form.username.value, password: form.password.value }]])
      .then(function (res) {
        var s = res[0];
        var fns = (s.acls && s.acls.ubus && s.acls.ubus.famguard) || [];
        if (fns.indexOf("status") < 0 && fns.indexOf("*") < 0) { showLogin(t("no_access")); return; }
        sid = s.ubus_rpc_session;
        canWrite = fns.indexOf("pause") >= 0 || fns.indexOf("*") >= 0;
        sessionStorage.setItem("fg_sid", sid);
        sessionStorage.setItem("fg_write", canWrite ? "1" : "0");
        form.password.value = ""; form.hidden = true;
        refresh();
      })
      .catch(function (e) { showLogin(denied(e) ? t("login_failed") : t("failed", { msg: e.message })); })
      .then(function () { btn.disabled = false; });
  });
  $("#logout").addEventListener("click", function () {
    if (sid) call([["session", "destroy", {}]]).catch(function () {});
    showLogin("");
  });

  // ---- rendering ----
  var zone = "";
  function fmtTime(iso) {
    if (!iso) return "";
    var d = new Date(iso), now = new Date();
    var opts = { hour: "2-digit", minute: "2-digit" };
    if (zone) opts.timeZone = zone;
    if (d - now > 20 * 3600 * 1000) opts.weekday = "short";
    try { return d.toLocaleString(timeLocale, opts); } catch (e) { delete opts.timeZone; return d.toLocaleString(timeLocale, opts); }
  }
  function fmtMin(n) {
    n = Math.max(0, Math.round(n));
    return n < 60 ? t("min", { n: n }) : t("h_min", { h: Math.floor(n / 60), m: n % 60 });
  }

  function render(st) {
    zone = (st.clock && st.clock.zone) || "";
    var banner = $("#banner");
    banner.hidden = !(st.clock && st.clock.trusted === false);
    banner.textContent = banner.hidden ? "" : t("clock_untrusted");
    $("#clock").textContent = st.clock && st.clock.now ? fmtTime(st.clock.now) : "";
    $("#logout").hidden = false;

    var box = $("#children");
    box.innerHTML = "";
    if (!st.children || !st.children.length) {
      var p = document.createElement("p"); p.className = "muted"; p.textContent = t("no_children"); box.appendChild(p);
    }
    (st.children || []).forEach(function (c) { box.appendChild(childCard(c)); });

    var list = $("#unknown-list");
    list.innerHTML = "";
    (st.unknown || []).forEach(function (u) { list.appendChild(unknownItem(u, st.children || [])); });
    $("#unknown").hidden = !(st.unknown && st.unknown.length);
    $("#updated").textContent = t("updated", { t: new Date().toLocaleTimeString(timeLocale) });
  }

  function childCard(c) {
    var el = $("#child-card").content.firstElementChild.cloneNode(true);
    translate(el);
    el.dataset.child = c.name;
    $(".name", el).textContent = c.name;
    var state = $(".state", el);
    state.textContent = c.online ? t("online") : t("offline");
    state.className = "state " + (c.online ? "online" : "offline");
    var why = [];
    if (c.paused) why.push(c.paused.until ? t("paused_until", { t: fmtTime(c.paused.until) }) : t("paused"));
    else if (c.granted_until) why.push(t("granted_until", { t: fmtTime(c.granted_until) }));
    else {
      why.push(c.reason || "");
      if (c.until) why.push("(" + t("until", { t: fmtTime(c.until) }) + ")");
    }
    $(".why", el).textContent = why.join(" ");
    var b = c.budget;
    $(".budget", el).textContent = !b ? "" : b.left_min > 0
      ? t("budget_left", { left: fmtMin(b.left_min), limit: fmtMin(b.limit_min) })
      : t("budget_used_up", { limit: fmtMin(b.limit_min) });
    $(".resume", el).hidden = !c.paused;
    el.querySelectorAll(".pause").forEach(function (btn) {
      btn.hidden = !!c.paused;
      btn.addEventListener("click", function () {
        var args = { child: c.name };
        if (btn.dataset.minutes) args.minutes = +btn.dataset.minutes; else args.until = btn.dataset.until;
        act(el, btn, "pause", args, t("done_pause"));
      });
    });
    $(".resume", el).addEventListener("click", function (ev) { act(el, ev.target, "resume", { child: c.name }, t("done_resume")); });
    el.querySelectorAll(".grant").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var n = +btn.dataset.minutes;
        act(el, btn, "grant", { child: c.name, minutes: n }, t("done_grant", { n: n }));
      });
    });
    el.querySelectorAll("button").forEach(function (btn) { btn.disabled = !canWrite; });
    if (!canWrite) showError(el, t("read_only"));
    return el;
  }

  function unknownItem(u, children) {
    var el = $("#unknown-item").content.firstElementChild.cloneNode(true);
    translate(el);
    el.dataset.mac = u.mac;
    $(".dev", el).textContent = u.name || t("unknown_name");
    $(".mac", el).textContent = u.mac + (u.randomized ? " · " + t("randomized") : "");
    $(".applies", el).textContent = u.applies ? t("applies", { what: u.applies }) : "";
    var actions = $(".assign", el);
    children.forEach(function (c) {
      var btn = document.createElement("button");
      btn.className = "big"; btn.textContent = t("this_is", { name: cap(c.name) });
      btn.addEventListener("click", function () { act(el, btn, "assign", { mac: u.mac, to: c.name }, t("done_assign")); });
      actions.appendChild(btn);
    });
    var ours = document.createElement("button");
    ours.className = "big"; ours.textContent = t("ours");
    ours.addEventListener("click", function () { act(el, ours, "assign", { mac: u.mac, to: "trusted" }, t("done_assign")); });
    actions.appendChild(ours);
    actions.querySelectorAll("button").forEach(function (btn) { btn.disabled = !canWrite; });
    return el;
  }

  function showError(el, msg) {
    var e = $(".error", el); e.hidden = !msg; e.textContent = msg || "";
  }

  // act runs one famguard method and shows the agent's own message when it
  // refuses (unknown child, absurd duration, ...); then it refreshes.
  function act(el, btn, method, args, okMsg) {
    btn.disabled = true; showError(el, "");
    call([["famguard", method, args]]).then(function (res) {
      var r = res[0];
      if (r.error) { showError(el, t("failed", { msg: r.error.message || r.error })); return; }
      $("#updated").textContent = okMsg;
      return refresh();
    }).catch(function (e) {
      if (denied(e) && !sid) { showLogin(""); return; }
      showError(el, t("failed", { msg: denied(e) ? t("read_only") : e.message }));
    }).then(function () { btn.disabled = !canWrite; });
  }

  var timer = null;
  function refresh() {
    clearTimeout(timer);
    if (!sid) { showLogin(""); return Promise.resolve(); }
    return call([["famguard", "status", {}]]).then(function (res) {
      var st = res[0];
      if (st.error) { $("#banner").hidden = false; $("#banner").textContent = t("agent_down", { msg: st.error.message || st.error }); return; }
      render(st);
    }).catch(function (e) {
      if (e.code === -32002) { showLogin(""); return; } // session expired or never had access
      $("#banner").hidden = false; $("#banner").textContent = t("offline_network");
    }).then(function () { if (sid) timer = setTimeout(refresh, REFRESH_MS); });
  }

  if (sid) refresh(); else showLogin("");
})();
