// Evaluated by tests/test_browser.py in each page at the narrow (phone) viewport; it only reads the page.
// Argument: {minFontPt, defaultDpi, minPx}. Returns display equations that are clipped, figures whose
// text is shown smaller than minPx, and explorers drawn wider than their box.
async ({ minFontPt, defaultDpi, minPx }) => {
  const article = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
  const snip = (s, n = 60) => (s || "").replace(/\s+/g, " ").trim().slice(0, n);
  const scrolls = (el) => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);

  // Display math: a formula wider than the column must sit in a box that scrolls sideways, and that box
  // must itself be visible: not cut off by an ancestor that hides its overflow (nor by the screen).
  function visibleBounds(el) {
    let left = 0, right = window.innerWidth;
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      if (getComputedStyle(a).overflowX === "visible") continue;
      const r = a.getBoundingClientRect();
      left = Math.max(left, r.left + a.clientLeft);
      right = Math.min(right, r.left + a.clientLeft + a.clientWidth);
    }
    return [left, right];
  }
  const clippedMath = [];
  for (const box of article.querySelectorAll('mjx-container[display="true"]')) {
    const math = box.querySelector("mjx-math") || box.firstElementChild;
    if (!math) continue;
    let scroller = null;
    for (let a = box; a && a !== article; a = a.parentElement) if (scrolls(a)) { scroller = a; break; }
    const target = (scroller || math).getBoundingClientRect();
    const [left, right] = visibleBounds(scroller || box);
    if (target.left < left - 1 || target.right > right + 1) {
      const id = (box.closest("[id]") || {}).id || "";
      clippedMath.push(`${Math.round(math.getBoundingClientRect().width)}px formula, ${Math.round(target.right - target.left)}px box, ` +
        `${Math.round(right - left)}px visible (${id || snip(box.textContent)})`);
    }
  }

  // Figures: the PNG's own dpi (pHYs chunk), the book style's smallest font, the displayed/natural scale.
  async function dpiOf(src) {
    try {
      const buf = new Uint8Array(await (await fetch(src)).arrayBuffer());
      const view = new DataView(buf.buffer);
      if (view.getUint32(0) !== 0x89504e47) return null;          // not a PNG
      for (let at = 8; at + 8 <= buf.length;) {
        const len = view.getUint32(at), type = String.fromCharCode(...buf.slice(at + 4, at + 8));
        if (type === "pHYs" && buf[at + 16] === 1) return view.getUint32(at + 8) * 0.0254;  // px per metre
        if (type === "IDAT") return null;
        at += 12 + len;
      }
    } catch (e) { /* unreadable: fall back to the style's dpi */ }
    return null;
  }
  const smallFigureText = [];
  for (const img of article.querySelectorAll("figure img, .figure img, div.cell_output img")) {
    if (img.closest(".vega-embed, .js-plotly-plot")) continue;
    await (img.decode ? img.decode().catch(() => {}) : null);
    const shown = img.getBoundingClientRect().width, natural = img.naturalWidth;
    if (!shown || !natural) continue;
    const dpi = (await dpiOf(img.currentSrc || img.src)) || defaultDpi;
    const px = minFontPt * dpi / 72 * shown / natural;
    if (px < minPx - 0.05) {
      const num = img.closest("figure") && img.closest("figure").querySelector(".caption-number");
      smallFigureText.push(`${num ? snip(num.textContent) : ""} ${(img.getAttribute("src") || "").split("/").pop()}: ` +
        `${minFontPt} pt at ${Math.round(dpi)} dpi shown ${Math.round(shown)}/${natural} px wide = ${px.toFixed(1)} px`);
    }
  }

  // Explorers: the drawn chart (its svg or canvas) fits the box it sits in, legend included.
  const wideExplorers = [];
  document.querySelectorAll(".vega-embed").forEach((el, i) => {
    const drawn = el.querySelector("svg.marks, canvas");
    if (!drawn) return;
    const box = (el.closest(".tvlib-explorer") || el.parentElement).getBoundingClientRect().width;
    const col = article.getBoundingClientRect().width;
    const w = drawn.getBoundingClientRect().width;
    if (w > Math.min(box, col) + 1) wideExplorers.push(`explorer #${i}: drawn ${Math.round(w)}px wide in a ${Math.round(Math.min(box, col))}px column`);
  });
  return { clippedMath, smallFigureText, wideExplorers };
}
