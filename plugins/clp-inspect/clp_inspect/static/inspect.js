// clp inspect: keep the page current without reloading it.
// The server renders every fragment (escaped); this file only decides which to fetch, with htmx:
// - the slider, the arrows and the timeline's rows show the state as of an event;
// - server-sent events from /stream say when the aggregate got a new event, when its live
//   runtimes published, and when the list of aggregates changed.
// No inline script, no eval: the page's Content-Security-Policy allows only files from this server.
"use strict";
(function () {
  const body = document.body;
  const key = body.dataset.key || null;
  const $ = (selector) => document.querySelector(selector);

  function url(path, params) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") query.set(name, String(value));
    }
    const text = query.toString();
    return text ? path + "?" + text : path;
  }

  function lastSeq() {
    const timeline = $("#timeline");
    return timeline ? Number(timeline.dataset.lastSeq) : 0;
  }

  function selectedSeq() {
    const view = $("#state-view");
    return view ? Number(view.dataset.seq) : null;
  }

  function currentFilter() {
    const timeline = $("#timeline");
    return timeline ? timeline.dataset.show : "all";
  }

  // Mark the selected row, move the slider, keep the address bar's ?seq= in step.
  function sync() {
    const seq = selectedSeq();
    const slider = $("#seq-slider");
    if (seq === null || !slider) return;
    const last = lastSeq();
    slider.max = String(last);
    if (Number(slider.value) !== seq) slider.value = String(seq);
    const out = $("#seq-out");
    if (out) out.textContent = seq + " / " + last;
    for (const row of document.querySelectorAll("#timeline tr[data-seq]")) {
      row.classList.toggle("selected", Number(row.dataset.seq) === seq);
    }
    const count = $("#event-count");
    if (count) count.textContent = String(last);
    const show = currentFilter();
    history.replaceState(null, "", url("/aggregate", { key: key, seq: seq === last ? null : seq,
                                                      show: show === "all" ? null : show }));
  }

  // Fetch a fragment into the element it replaces. The element is also the request's source:
  // htmx queues requests per source element (the last one wins), so fragments never starve each other.
  function load(target, path, params) {
    if (!$(target)) return;
    htmx.ajax("GET", url(path, params), { source: target, target: target, swap: "outerHTML" });
  }

  function showState(seq) {
    load("#state-view", "/fragment/state", { key: key, seq: seq });
  }

  function step(delta) {
    const seq = selectedSeq();
    if (seq === null) return;
    const next = Math.min(lastSeq(), Math.max(0, seq + delta));
    if (next !== seq) showState(next);
  }

  document.addEventListener("htmx:afterSettle", sync);

  document.addEventListener("click", (event) => {
    const target = event.target;
    if (!(target instanceof Element)) return;
    if (target.closest("#seq-prev")) return step(-1);
    if (target.closest("#seq-next")) return step(1);
    if (target.closest("#seq-latest")) return showState(lastSeq());
    // a click anywhere on a committed event's row shows the state as of it
    const row = target.closest("#timeline tr[data-seq]");
    if (row && !target.closest("a")) {
      const anchor = row.querySelector("a.seq-link");
      if (anchor) anchor.click();
    }
  });

  // -- live updates -------------------------------------------------------------------------
  const conn = $("#conn");
  function connection(state, text) {
    if (!conn) return;
    conn.dataset.state = state;
    conn.textContent = text;
  }

  function onCommit(seq) {
    if (!key || seq === lastSeq()) return;
    const following = selectedSeq() === lastSeq();
    load("#timeline", "/fragment/timeline", { key: key, show: currentFilter() });
    load("#aggregates", "/fragment/aggregates", { key: key }); // its event count
    if (following) showState(seq); // following the latest event: show the new one
  }

  function listen() {
    if (!window.EventSource || !body.dataset.stream) return;
    const source = new EventSource(body.dataset.stream);
    const seen = {};
    source.onopen = () => connection("on", "live");
    source.onerror = () => connection("off", "reconnecting…");
    source.addEventListener("commit", (event) => onCommit(JSON.parse(event.data).seq));
    source.addEventListener("live", (event) => {
      const rev = JSON.parse(event.data).rev;
      if (seen.live !== undefined && seen.live !== rev) {
        load("#live", "/fragment/live", { key: key });
        load("#timeline", "/fragment/timeline", { key: key, show: currentFilter() }); // denials, errors
      }
      seen.live = rev;
    });
    source.addEventListener("aggregates", (event) => {
      const rev = JSON.parse(event.data).rev;
      if (seen.aggregates !== undefined && seen.aggregates !== rev) load("#aggregates", "/fragment/aggregates", { key: key });
      seen.aggregates = rev;
    });
  }

  sync();
  listen();
})();
