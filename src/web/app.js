// The gallery's few lines of script: written here, embedded in the binary. Names are only ever
// read from data- attributes and written with textContent; URLs come from the server.
"use strict";

function ago(ms) {
  const s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h ago";
  return Math.floor(s / 86400) + " d ago";
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function liveGrid(grid) {
  if (!window.EventSource) return;
  const es = new EventSource("/events");
  es.addEventListener("picture", (ev) => {
    let a;
    try { a = JSON.parse(ev.data); } catch (_) { return; }
    let card = null;
    for (const c of grid.querySelectorAll("article.card")) {
      if (c.dataset.pk === a.pk && c.dataset.dn === a.dn) { card = c; break; }
    }
    if (!card) {
      if (grid.dataset.live !== "1") return;
      card = el("article", "card");
      card.dataset.pk = a.pk;
      card.dataset.dn = a.dn;
      const link = el("a");
      link.href = a.camera;
      const img = el("img", "thumb");
      img.width = 160; img.height = 120; img.alt = "";
      link.appendChild(img);
      card.appendChild(link);
      const name = el("div", "name");
      name.appendChild(el("span", "pk", a.pk));
      name.appendChild(document.createTextNode(" / "));
      name.appendChild(el("span", "dn", a.dn));
      card.appendChild(name);
      const meta = el("div", "meta");
      meta.appendChild(el("span", "state receiving", "receiving"));
      meta.appendChild(document.createTextNode(" "));
      meta.appendChild(el("span", "when"));
      card.appendChild(meta);
      grid.prepend(card);
    }
    let img = card.querySelector("img");
    if (!img) {
      const box = card.querySelector(".nothumb");
      img = el("img", "thumb");
      img.width = 160; img.height = 120; img.alt = "";
      if (box) box.replaceWith(img);
    }
    img.src = a.thumb;
    const when = card.querySelector(".when");
    if (when) {
      when.textContent = "";
      const t = el("time", null, ago(a.time_ms));
      t.dateTime = a.iso; t.title = a.iso;
      when.appendChild(t);
    }
    const state = card.querySelector(".state");
    if (state) { state.className = "state receiving"; state.textContent = "receiving"; }
    const day = card.querySelector(".day");
    if (day) day.textContent = String(Number(day.textContent) + 1);
    card.classList.add("fresh");
  });
}

function viewer() {
  const pics = Array.from(document.querySelectorAll("#pictures a.pic"));
  const box = document.getElementById("viewer");
  if (!box || pics.length === 0) return;
  const img = document.getElementById("vimg");
  let at = -1, timer = null;
  function show(i) {
    if (i < 0 || i >= pics.length) return false;
    at = i;
    const p = pics[i];
    img.src = p.href;
    img.alt = p.dataset.time;
    document.getElementById("vtime").textContent = p.dataset.time;
    document.getElementById("vsize").textContent = p.dataset.bytes + " bytes";
    document.getElementById("vformat").textContent = p.dataset.format || "";
    document.getElementById("vdownload").href = p.dataset.download;
    box.hidden = false;
    box.dataset.index = String(i);
    return true;
  }
  function close() { box.hidden = true; if (timer) { clearInterval(timer); timer = null; } }
  pics.forEach((p, i) => p.addEventListener("click", (e) => { e.preventDefault(); show(i); }));
  document.getElementById("prev").addEventListener("click", () => show(at - 1));
  document.getElementById("next").addEventListener("click", () => show(at + 1));
  document.getElementById("close").addEventListener("click", close);
  document.addEventListener("keydown", (e) => {
    if (box.hidden) return;
    if (e.key === "ArrowLeft") { show(at - 1); e.preventDefault(); }
    else if (e.key === "ArrowRight") { show(at + 1); e.preventDefault(); }
    else if (e.key === "Escape") close();
  });
  const play = document.getElementById("play");
  if (play) play.addEventListener("click", () => {
    show(0);
    if (timer) clearInterval(timer);
    timer = setInterval(() => { if (!show(at + 1)) { clearInterval(timer); timer = null; } }, 250);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const grid = document.getElementById("grid");
  if (grid) liveGrid(grid);
  viewer();
});
