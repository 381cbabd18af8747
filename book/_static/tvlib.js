/* The book's page behaviour on the static site (loaded on every page by _config.yml's html_js_files).
 *
 * - Explorers fit their column: a Vega-Lite chart drawn at a fixed width wider than its box (a phone)
 *   is drawn at the box's width instead, so its legend and axes stay visible.
 * - Figures stay legible on a phone: a figure whose smallest text (tvlib.style: 7 pt at the PNG's own
 *   dpi) would be shown under 9 px keeps the width where it is 9 px and scrolls sideways in its box;
 *   tapping a figure opens the full-resolution image.
 * - Tables: columns whose cells are all numbers are right-aligned (class tvlib-num); a table wider
 *   than its column gets narrower padding (class tvlib-compact) before it has to scroll.
 */
(function () {
  "use strict";
  // tvlib.style draws at 150 dpi and tvlib.book glues figures at twice that (HIDPI = 2): a PNG whose density
  // cannot be read (a page opened from disk cannot fetch its images) is taken to be such a figure
  var MIN_FONT_PT = 7, STYLE_DPI = 150, DEFAULT_DPI = 300, MIN_PX = 9;

  // --- explorers: wrap vegaEmbed before the pages' inline scripts call it
  if (window.vegaEmbed && !window.vegaEmbed.tvlibFit) {
    var embed = window.vegaEmbed;
    var fitted = function (el, spec, opts) {
      var box = typeof el === "string" ? document.querySelector(el) : el;
      if (spec && typeof spec === "object" && typeof spec.width === "number" && box && box.clientWidth &&
          spec.width > box.clientWidth - 40) {
        spec = Object.assign({}, spec, { width: "container", autosize: { type: "fit-x", contains: "padding" } });
      }
      return embed(el, spec, opts);
    };
    Object.keys(embed).forEach(function (k) { fitted[k] = embed[k]; });
    fitted.tvlibFit = true;
    window.vegaEmbed = fitted;
  }

  // --- figures
  function dpiOf(src) {
    return fetch(src).then(function (r) { return r.arrayBuffer(); }).then(function (b) {
      var v = new DataView(b), u = new Uint8Array(b);
      if (v.getUint32(0) !== 0x89504e47) return null;
      for (var at = 8; at + 8 <= u.length;) {
        var len = v.getUint32(at), type = String.fromCharCode(u[at + 4], u[at + 5], u[at + 6], u[at + 7]);
        if (type === "pHYs" && u[at + 16] === 1) return v.getUint32(at + 8) * 0.0254;
        if (type === "IDAT") return null;
        at += 12 + len;
      }
      return null;
    }).catch(function () { return null; });
  }
  function legible(img) {
    if (img.closest(".vega-embed, .js-plotly-plot") || img.dataset.tvlibFig) return;
    img.dataset.tvlibFig = "1";
    var src = img.currentSrc || img.src;
    if (!img.closest("a")) {
      var a = document.createElement("a");
      a.href = src; a.className = "tvlib-enlarge"; a.title = "Open the full-size figure";
      img.parentNode.insertBefore(a, img); a.appendChild(img);
    }
    var wrap = img.closest("a.tvlib-enlarge") || img;
    if (!wrap.parentElement.classList.contains("tvlib-figure-scroll")) {
      var box = document.createElement("div");
      box.className = "tvlib-figure-scroll";
      wrap.parentNode.insertBefore(box, wrap); box.appendChild(wrap);
    }
    var fit = function (dpi) {
      var nativePx = MIN_FONT_PT * (dpi || DEFAULT_DPI) / 72;   // smallest text, in image pixels
      var need = Math.ceil(img.naturalWidth * MIN_PX / nativePx);
      if (need > img.getBoundingClientRect().width) {
        img.style.width = img.style.minWidth = need + "px";   // (over the 1x width a glued figure declares)
        img.style.maxWidth = "none";
      }
    };
    var size = function () {
      if (!img.naturalWidth) return;
      // a figure glued at k x its dpi is shown at its 1x width (tvlib.book.figure_png): its density follows
      // from that width, with no need to read the file (which a page opened from disk cannot fetch)
      var px = /^\s*([\d.]+)(px)?\s*$/, m = px.exec(img.style.width || img.getAttribute("width") || "");
      var declared = m && (m[2] || !img.style.width) ? parseFloat(m[1]) : 0;
      if (declared > 0 && img.naturalWidth > declared * 1.01) fit(STYLE_DPI * img.naturalWidth / declared);
      else dpiOf(src).then(fit);
    };
    if (img.complete) size(); else img.addEventListener("load", size);
  }

  // --- tables
  var NUMBER = /^[−\-+]?(\d[\d,]*(\.\d+)?|\.\d+)(e[−\-+]?\d+)?\s*(%|×|x)?(\s*±\s*[\d.]+(e[−\-+]?\d+)?)?$|^[–—-]$|^n\/a$/i;
  function alignNumbers(table) {
    var rows = [].slice.call(table.querySelectorAll("tbody tr"));
    if (!rows.length) return;
    var cols = {};
    rows.forEach(function (tr) {
      [].slice.call(tr.children).forEach(function (cell, j) {
        var t = cell.textContent.trim();
        if (!t) return;
        var c = cols[j] || (cols[j] = { num: 0, other: 0 });
        if (NUMBER.test(t) && !/^[–—-]$|^n\/a$/i.test(t)) c.num++;
        else if (!NUMBER.test(t)) c.other++;
      });
    });
    table.querySelectorAll("tr").forEach(function (tr) {
      [].slice.call(tr.children).forEach(function (cell, j) {
        if (cols[j] && cols[j].num && !cols[j].other) cell.classList.add("tvlib-num");
      });
    });
  }

  function run() {
    var article = document.querySelector("article.bd-article") || document.body;
    article.querySelectorAll("figure img, div.figure img, div.cell_output img").forEach(legible);
    article.querySelectorAll("table").forEach(function (table) {
      alignNumbers(table);
      // a table too wide for the column first tightens its padding; only then does it scroll in its box
      if (table.scrollWidth > table.clientWidth + 1) table.classList.add("tvlib-compact");
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run); else run();
})();
