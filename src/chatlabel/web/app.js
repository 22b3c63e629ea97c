// chatlabel's browser chat. Everything shown comes from the server's events and is set as
// text (textContent), never parsed as markup. No framework, no build step.
"use strict";
(() => {
  const T = JSON.parse(document.body.dataset.texts || "{}");
  const $ = (id) => document.getElementById(id);
  const log = $("log"), main = $("main"), conn = $("conn"), toasts = $("toasts");
  const form = $("composer"), box = $("text"), menu = $("menu");
  const URL_OK = /^\/(media|files)\/[A-Za-z0-9_-]+$/;
  let token = "", source = null, started = false, down = false, connTimer = 0;
  let rebuilt = true;  // the screen was just built from nothing (a new page, a reset)

  const joined = location.pathname.match(/^\/join\/([^/]+)\/?$/);
  let code = null;
  if (joined) {
    try { code = decodeURIComponent(joined[1]); } catch (e) { code = null; }
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function randomId() {
    // crypto.randomUUID needs a secure context; a LAN address over http is not one.
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // -- talking to the server ---------------------------------------------------------------

  async function post(path, body) {
    let response;
    try {
      response = await fetch(path, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
        body: JSON.stringify(body),
      });
    } catch (e) {
      toast(T.send_failed, false);
      return false;
    }
    if (response.ok) return true;
    if (response.status === 429) toast(T.too_many, false);
    else if (response.status === 401 || response.status === 403) session().catch(retry);
    else toast(T.send_failed, false);
    return false;
  }

  async function session() {
    const response = await fetch("/api/session", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    if (!response.ok) throw new Error("session " + response.status);
    const s = await response.json();
    token = s.token;
    if (s.expired) toast(T.expired, true);
    $("who").textContent = s.id;
    const list = $("commands");
    list.replaceChildren();
    for (const c of s.commands) {
      const b = el("button", "", c.label);
      b.type = "button";
      b.addEventListener("click", () => {
        menu.open = false;
        post("/api/text", { text: "/" + c.name, id: randomId() });
      });
      const li = el("li");
      li.append(b);
      list.append(li);
    }
    connect();
  }

  function retry() {
    status(T.connecting);
    setTimeout(() => session().catch(retry), 3000);
  }

  function status(text, clearAfter) {
    clearTimeout(connTimer);
    conn.textContent = text || "";
    if (clearAfter) connTimer = setTimeout(() => { conn.textContent = ""; }, clearAfter);
  }

  function connect() {
    if (source) source.close();
    source = new EventSource("/api/events");
    source.onopen = () => {
      if (down) status(T.reconnected, 2500);
      else status("");
      down = false;
    };
    source.onerror = () => {
      down = true;
      status(T.connecting);
      if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream (the session ended): ask for one again.
        source = null;
        setTimeout(() => session().catch(retry), 1500);
      }
    };
    source.onmessage = (e) => {
      let event;
      try { event = JSON.parse(e.data); } catch (err) { return; }
      handle(event);
    };
  }

  // -- events from the server --------------------------------------------------------------

  function byRef(ref) {
    return log.querySelector('li[data-ref="' + CSS.escape(ref) + '"]');
  }

  function nearBottom() {
    return main.scrollHeight - main.scrollTop - main.clientHeight < 120;
  }

  function handle(event) {
    if (event.op === "reset") {
      log.replaceChildren();
      rebuilt = true;
    } else if (event.op === "add") {
      const follow = nearBottom() || event.msg.item || event.msg.own;
      // Focus follows the person's work (their pressed item was replaced), never jumps there
      // from the text box or from a fresh page.
      const hadFocus = log.contains(document.activeElement);
      const li = el("li", "msg");
      li.dataset.ref = event.msg.ref;
      li.tabIndex = -1;
      fill(li, event.msg);
      log.append(li);
      if (follow) {
        li.scrollIntoView({ block: "end" });
        // A picture that loads later pushes the buttons down: keep them in view.
        for (const img of li.querySelectorAll("img")) {
          img.addEventListener("load", () => {
            if (log.lastElementChild === li) li.scrollIntoView({ block: "end" });
          }, { once: true });
        }
      }
      if (event.msg.item && hadFocus && started) {
        const first = li.querySelector(".actions .btn");
        if (first) first.focus({ preventScroll: true });
      }
    } else if (event.op === "edit") {
      const li = byRef(event.msg.ref);
      if (!li) return;
      const focused = li.contains(document.activeElement);
      fill(li, event.msg);
      if (focused) li.focus({ preventScroll: true });
    } else if (event.op === "delete") {
      const li = byRef(event.ref);
      if (li) li.remove();
    } else if (event.op === "toast") {
      toast(event.text, event.alert);
    } else if (event.op === "ready") {
      // An empty screen (a first visit, or the server restarted) or an invite link: /start.
      if (rebuilt && (event.fresh || code !== null)) post("/api/start", { code: code });
      if (code !== null) {
        history.replaceState(null, "", "/");  // a reload must not join again
        code = null;
      }
      if (rebuilt) main.scrollTop = main.scrollHeight;
      rebuilt = false;
      started = true;
    }
  }

  function fill(li, m) {
    // An edit keeps the picture or the player as it is (a playing video goes on playing).
    const oldMedia = li.querySelector(":scope > .media");
    li.replaceChildren();
    li.className = "msg" + (m.own ? " own" : "") + (m.item ? " item" : "") +
      (m.transient ? " transient" : "");
    if (m.media && URL_OK.test(m.media.url)) {
      li.append(oldMedia && oldMedia.dataset.url === m.media.url ? oldMedia : media(m.media));
    }
    if (m.chart && URL_OK.test(m.chart.url)) {
      const img = el("img", "chart");
      img.src = m.chart.url;
      img.alt = T.chart;
      li.append(img);
    }
    if (m.text) li.append(el("p", "text", m.text));
    if (m.file && URL_OK.test(m.file.url)) {
      const a = el("a", "file");
      a.href = m.file.url;
      a.download = m.file.name;
      a.append(el("span", "", "⬇️"), el("span", "", T.download + " · " + m.file.name));
      li.append(a);
    }
    if (m.status) li.append(el("p", "status", m.status));
    if (m.note) li.append(el("p", "note", m.note));
    if (m.footer) li.append(footer(m.footer));
    if (m.writer || (m.rows && m.rows.length)) li.append(actions(m));
  }

  function media(m) {
    const box = el("div", "media");
    box.dataset.url = m.url;
    let node;
    if (m.kind === "audio" || m.kind === "video") {
      node = el(m.kind);
      node.controls = true;
      node.preload = "metadata";
      if (m.kind === "video") node.playsInline = true;
      if (m.alt) node.setAttribute("aria-label", m.alt);
    } else {
      node = el("img");
      node.alt = m.alt || "";
      // Its size reserves the space before it loads, so the buttons do not jump.
      if (m.width && m.height) {
        node.width = m.width;
        node.height = m.height;
      }
    }
    node.src = m.url;
    box.append(node);
    return box;
  }

  function footer(text) {
    const nl = text.indexOf("\n");
    const wrap = el("div", "footer");
    wrap.append(el("p", "", nl < 0 ? text : text.slice(0, nl)));
    if (nl >= 0) {
      const more = el("details");
      more.append(el("summary", "", T.instructions), el("div", "", text.slice(nl + 1)));
      wrap.append(more);
    }
    return wrap;
  }

  function actions(m) {
    const wrap = el("div", "actions");
    if (m.writer) {
      const w = el("button", "btn write", m.writer);
      w.type = "button";
      w.addEventListener("click", () => box.focus());
      const row = el("div", "row");
      row.append(w);
      wrap.append(row);
    }
    for (const buttons of m.rows || []) {
      const row = el("div", "row");
      for (const b of buttons) {
        const button = el("button", "btn" + (b.style === "primary" || b.style === "danger" ? " " + b.style : ""));
        button.type = "button";
        if (b.selected === true || b.selected === false) {
          button.setAttribute("aria-pressed", String(b.selected));
          if (b.selected) {
            const tick = el("span", "tick", "✓");
            tick.setAttribute("aria-hidden", "true");  // aria-pressed says it already
            button.append(tick);
          }
        }
        button.append(el("span", "", b.text));
        if (b.key) {
          button.dataset.key = b.key;
          button.setAttribute("aria-keyshortcuts", b.key);
          const k = el("kbd", "", b.key);
          k.setAttribute("aria-hidden", "true");
          button.append(k);
        }
        button.addEventListener("click", () => press(m.ref, b.data, button));
        row.append(button);
      }
      wrap.append(row);
    }
    return wrap;
  }

  async function press(ref, data, button) {
    const li = button.closest("li");
    if (!li || li.getAttribute("aria-busy") === "true") return;
    li.setAttribute("aria-busy", "true");
    try {
      await post("/api/press", { ref: ref, data: data });
    } finally {
      li.removeAttribute("aria-busy");
    }
  }

  function toast(text, alert) {
    if (!text) return;
    const t = el("div", "toast");
    if (alert) t.setAttribute("role", "alert");  // the others: the toasts' live region
    t.append(el("span", "", text));
    const close = el("button", "", T.close);
    close.type = "button";
    close.addEventListener("click", () => t.remove());
    t.append(close);
    toasts.append(t);
    while (toasts.children.length > 3) toasts.firstElementChild.remove();
    if (!alert) setTimeout(() => t.remove(), 5000);
  }

  // -- typing and keys ---------------------------------------------------------------------

  function fit() {
    box.style.height = "auto";
    box.style.height = Math.min(box.scrollHeight + 2, 144) + "px";
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = box.value.trim();
    if (!text) return;
    const sent = await post("/api/text", { text: text, id: randomId() });
    if (sent && box.value.trim() === text) {
      box.value = "";
      fit();
    }
  });

  box.addEventListener("input", fit);
  box.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });

  document.addEventListener("keydown", (e) => {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target;
    if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.isContentEditable)) return;
    if (e.key === "Escape" && menu.open) { menu.open = false; return; }
    const key = e.key.toLowerCase();
    if (!/^[1-9su]$/.test(key)) return;
    // The newest message that has this key: the open item's choices, its Skip, the last Undo.
    const found = log.querySelectorAll('button[data-key="' + key + '"]');
    const button = found[found.length - 1];
    if (!button) return;
    e.preventDefault();
    button.focus({ preventScroll: true });
    button.click();
  });

  session().catch(retry);
})();
