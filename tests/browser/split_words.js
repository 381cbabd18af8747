// Words of a table cell that the browser split over two lines (math and hyphenated words aside).
() => {
  const split = [];
  for (const cell of document.querySelectorAll("article.bd-article table td, article.bd-article table th")) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    let node;
    while ((node = walker.nextNode()) && split.length < 10) {
      if (node.parentElement.closest("mjx-container, .MathJax, .math")) continue;
      const re = /[^\s\-–\/]{2,}/g;
      let m;
      while ((m = re.exec(node.data))) {
        const r = document.createRange();
        r.setStart(node, m.index);
        r.setEnd(node, m.index + m[0].length);
        const lines = new Set([...r.getClientRects()].map((x) => Math.round(x.top)));
        if (lines.size > 1) { split.push(m[0]); break; }
      }
    }
  }
  return split;
}
