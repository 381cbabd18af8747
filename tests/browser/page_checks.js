// Evaluated in each page of the built site by tests/test_browser.py; returns what the checks need.
// It only reads the page: it changes nothing.
() => {
  const article = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
  const snip = (s, n = 80) => s.replace(/\s+/g, " ").trim().slice(0, n);

  // Text outside scripts and typeset math; `prose` also leaves out code and cell outputs.
  const SKIP_ALWAYS = "script, style, noscript, mjx-container, .MathJax, mjx-assistive-mml, .math";
  const SKIP_PROSE = SKIP_ALWAYS + ", pre, code, .highlight, .cell_input, .cell_output, .output, textarea, dt.sig";
  function textNodes(skip) {
    const out = [];
    const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (el && !el.closest(skip) && n.nodeValue.trim()) out.push(n.nodeValue);
    }
    return out;
  }
  const allText = textNodes(SKIP_ALWAYS).join(" ");
  const proseText = textNodes(SKIP_PROSE).join(" ");
  const matches = (text, re) => [...text.matchAll(re)].map((m) =>
    snip(text.slice(Math.max(0, m.index - 30), m.index + m[0].length + 30)));

  // Formulas: every .math element typeset, no MathJax errors, no TeX left in the prose.
  const mathEls = [...article.querySelectorAll(".math")];
  const untypeset = mathEls.filter((el) => !el.querySelector("mjx-container")).map((el) => snip(el.textContent));
  const merror = [...article.querySelectorAll("mjx-merror, merror")].map((el) =>
    snip(el.getAttribute("data-mjx-error") || el.textContent));
  const rawTex = matches(proseText, /\$[^$\s][^$]*?\$|\\\(|\\\)|\\\[|\\\]|\\begin\{/g);
  // The same prose read as the reader sees it: neighbouring inline nodes joined without a space (so a
  // "(" before a link whose text is "(6)" reads "((6)"), each typeset formula as one placeholder.
  function readerText(skip) {
    let out = "";
    const filter = { acceptNode: (n) => {                       // skipped subtrees are not walked;
      if (n.nodeType !== Node.ELEMENT_NODE || !n.matches(skip)) return NodeFilter.FILTER_ACCEPT;
      if (n.matches("mjx-container, .math")) out += " ⟨math⟩ ";  // a formula reads as one placeholder
      return NodeFilter.FILTER_REJECT;
    } };
    const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT | NodeFilter.SHOW_ELEMENT, filter);
    for (let n = walker.currentNode; n; n = walker.nextNode()) {
      if (n.nodeType === Node.TEXT_NODE) { out += n.nodeValue; continue; }
      if (n !== article && !["SPAN", "A", "EM", "STRONG", "CODE", "SUB", "SUP", "B", "I"].includes(n.tagName)) out += "\n";
    }
    return out;
  }
  const readProse = readerText(SKIP_PROSE);
  // Bare TeX commands outside formulas (e.g. a link whose text is a section title with math in it).
  const bareTex = matches(readProse, /\\(?:[A-Za-z]{2,}|[{}_^,;!])/g);

  // Raw MyST that did not render: roles anywhere (code comments included), `((` in the prose.
  const rawRoles = matches(allText, /\{(doc|eq|numref|ref|cite|cite:[a-z]+|glue|glue:[a-z]+|prf:[a-z]+|math|term)\}`?/g);
  const rawParens = matches(readProse, /\(\s*\(/g);

  // Bibliography: author-year labels, each arXiv id once per entry.
  const bibProblems = [];
  for (const entry of article.querySelectorAll(".citation")) {
    const label = snip((entry.querySelector(".label") || {}).textContent || "").replace(/^\[|\]$/g, "");
    if (!/, (\d{4}[a-z]?|n\.d\.)$/.test(label)) bibProblems.push(`label [${label}] is not author-year`);
    const ids = [...entry.textContent.matchAll(/\d{4}\.\d{4,5}/g)].map((m) => m[0]);
    const twice = ids.filter((id, i) => ids.indexOf(id) !== i);
    if (twice.length) bibProblems.push(`[${label}] prints arXiv:${twice[0]} twice`);
  }

  // Figures: every content image has real alt text and sits in a numbered, captioned figure.
  const badImages = [];
  for (const img of article.querySelectorAll("img")) {
    if (img.closest(".vega-embed, .js-plotly-plot, .headerlink, .sd-card-header, .bd-header")) continue;
    const src = img.getAttribute("src") || "";
    const alt = (img.getAttribute("alt") || "").trim();
    const base = src.split("/").pop().split("?")[0];
    const problems = [];
    if (!alt || alt === src || alt.endsWith(base) || /\.(png|jpe?g|svg|gif)$/i.test(alt)) problems.push("no alt text");
    const fig = img.closest("figure, .figure");
    const cap = fig && fig.querySelector("figcaption, .caption");
    if (!fig) problems.push("not in a figure");
    else if (!cap || !snip(cap.textContent.replace(/^\s*(Fig\.|Figure)\s*\d+[.:]?/, ""))) problems.push("no caption");
    else if (!cap.querySelector(".caption-number")) problems.push("no figure number");
    if (problems.length) badImages.push(`${base}: ${problems.join(", ")}`);
  }
  const badFigures = [...article.querySelectorAll("figure")]
    .filter((f) => !f.querySelector("img") && !f.querySelector("figcaption"))
    .map((f) => `figure ${f.id || "(no id)"}: no caption`);

  // Blocks wider than the content column (only meaningful at the wide viewport).
  const column = article.getBoundingClientRect().width;
  const wide = [];
  for (const el of article.querySelectorAll("pre, div.output, div.cell_output, table, .table-wrapper, div.math")) {
    const rect = el.getBoundingClientRect();
    if (rect.width === 0) continue;
    if (el.scrollWidth > el.clientWidth + 1 || rect.width > column + 1) {
      if (el.parentElement && el.parentElement.closest("pre, div.output, div.cell_output, table, .table-wrapper, .pd-table") &&
          !(el.scrollWidth > el.clientWidth + 1)) continue;
      wide.push(`<${el.tagName.toLowerCase()}${el.className ? "." + String(el.className).split(" ")[0] : ""}> ` +
        `${el.scrollWidth}px > ${Math.min(el.clientWidth, column)}px: "${snip(el.textContent, 60)}"`);
    }
  }

  // Tables: cells with room around their text (at least 4 px each side), and no Markdown table left
  // as raw text (a "|---|" rule line) in prose or in a cell's output.
  const crampedTables = [];
  article.querySelectorAll("table").forEach((t, i) => {
    const cells = [...t.querySelectorAll("td, th")].filter((c) => c.textContent.trim());
    const tight = cells.filter((c) => {
      const s = getComputedStyle(c);
      return Math.min(parseFloat(s.paddingLeft), parseFloat(s.paddingRight)) < 4;
    });
    if (tight.length) {
      const s = getComputedStyle(tight[0]);
      crampedTables.push(`table #${i + 1} (${tight.length}/${cells.length} cells, padding ${s.paddingLeft} ${s.paddingRight}): ` +
        `"${snip(t.textContent, 50)}"`);
    }
  });
  const rawTables = [];
  for (const el of article.querySelectorAll("p, li, div.output, div.cell_output, .output pre")) {
    if (el.closest(".cell_input, .highlight-python, .highlight-ipython3, table")) continue;
    if (el.parentElement.closest("p, li, div.output, div.cell_output")) continue;
    const text = el.innerText || el.textContent;
    const rows = text.split("\n").filter((l) => /^\s*\|.*\|.*\|\s*$/.test(l)).length;
    if (/\|\s*:?(-{3,}|[—–]+):?\s*\|/.test(text) || rows >= 2) rawTables.push(snip(text, 70));
  }

  // Explorers: Vega/Vega-Lite views with bound inputs, Plotly figures with sliders or buttons.
  const explorers = [];
  document.querySelectorAll(".vega-embed").forEach((el, i) => {
    const controls = el.querySelectorAll(".vega-bindings input, .vega-bindings select, .vega-bind input, .vega-bind select");
    if (controls.length) explorers.push({ kind: "vega", index: i, controls: controls.length });
  });
  document.querySelectorAll(".js-plotly-plot").forEach((el, i) => {
    const controls = el.querySelectorAll("g.slider-group, g.updatemenu-button");
    if (controls.length) explorers.push({ kind: "plotly", index: i, controls: controls.length });
  });
  const widgetViews = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;

  return {
    mathCount: mathEls.length, untypeset, merror, rawTex, bareTex, rawRoles, rawParens, bibProblems,
    crampedTables, rawTables,
    imageCount: article.querySelectorAll("img").length, badImages, badFigures,
    column, wide, explorers, widgetViews,
  };
}
