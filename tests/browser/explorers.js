// Explorers on a page of the built site, for tests/test_browser.py.
// ({action: "signature", kind, index})        -> a string that changes when the figure changes
// ({action: "move", kind: "vega", index, control}) -> moves one bound input (range, select, radio,
//                                                  checkbox) to another value; returns what it did
// ({action: "targets", kind: "plotly", index})  -> points to click, per control (slider ends, buttons)
({ action, kind, index, control }) => {
  const root = document.querySelectorAll(kind === "vega" ? ".vega-embed" : ".js-plotly-plot")[index];
  if (!root) return null;
  if (action === "signature") {
    const parts = [];
    root.querySelectorAll("canvas").forEach((c) => parts.push(c.toDataURL()));
    root.querySelectorAll("svg").forEach((s) => {
      if (!s.closest(".vega-bindings, .vega-bind")) parts.push(s.outerHTML);
    });
    return parts.join("|");
  }
  if (action === "move") {
    const controls = root.querySelectorAll(".vega-bindings input, .vega-bindings select, .vega-bind input, .vega-bind select");
    const el = controls[control];
    if (!el) return null;
    const fire = (e) => ["input", "change"].forEach((t) => e.dispatchEvent(new Event(t, { bubbles: true })));
    if (el.tagName === "SELECT") {
      const before = el.value;
      el.selectedIndex = (el.selectedIndex + 1) % el.options.length;
      fire(el);
      return `select ${before} -> ${el.value}`;
    }
    if (el.type === "radio") {
      const group = [...root.querySelectorAll(`input[type=radio][name="${el.name}"]`)];
      const other = group.find((r) => !r.checked) || el;
      other.click();
      return `radio -> ${other.value}`;
    }
    if (el.type === "checkbox") {
      el.click();
      return `checkbox -> ${el.checked}`;
    }
    const before = el.value;
    const lo = el.min !== "" ? Number(el.min) : Number(before) - 1;
    const hi = el.max !== "" ? Number(el.max) : Number(before) + 1;
    el.value = String(Number(before) < hi ? hi : lo);
    fire(el);
    return `${el.type} ${before} -> ${el.value}`;
  }
  if (action === "targets") {
    // Places to click, grouped by control: each slider near both ends, each button of each menu.
    const targets = [];
    const centre = (el, fx = 0.5) => {
      const b = el.getBoundingClientRect();
      return b.width > 0 ? { x: b.left + fx * b.width, y: b.top + b.height / 2 } : null;
    };
    root.querySelectorAll("g.slider-group").forEach((g, i) => {
      const rail = g.querySelector("rect.slider-rail-touch-rect") || g.querySelector("rect.slider-rail-rect");
      for (const fx of [0.95, 0.05]) {
        const p = rail && centre(rail, fx);
        if (p) targets.push({ control: `slider ${i}`, ...p });
      }
    });
    root.querySelectorAll("g.updatemenu-container").forEach((menu, i) => {
      [...menu.querySelectorAll("g.updatemenu-button")].reverse().forEach((button) => {
        const p = centre(button);
        if (p) targets.push({ control: `menu ${i}`, ...p });
      });
    });
    return targets;  // viewport coordinates: the caller scrolls the figure into view first
  }
  return null;
}
