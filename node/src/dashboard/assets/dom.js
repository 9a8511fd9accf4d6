// Small DOM helpers: build HTML and SVG elements without innerHTML, so text that came from
// the network (titles, reasons, peer-declared names) is never parsed as markup.

// The SVG namespace is an identifier, never fetched.
const SVG_NS = "http://www.w3.org/2000/svg";

function fill(el, attrs, children, svg) {
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") {
      if (svg) el.setAttribute("class", v);
      else el.className = v;
    } else if (k === "text") {
      el.textContent = v;
    } else if (k === "dataset") {
      Object.assign(el.dataset, v);
    } else if (k.startsWith("on")) {
      el.addEventListener(k.slice(2), v);
    } else if (k === "hidden" && !svg) {
      el.hidden = Boolean(v);
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: h("li", {class: "result"}, "text", child). */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children, false);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children, true);
}

/** The element with this id. */
export function byId(id) {
  return document.getElementById(id);
}

/** Replaces the children of `el`. */
export function put(el, ...children) {
  el.replaceChildren();
  return fill(el, {}, children, false);
}

/** A pill-shaped badge; `kind` picks its colour class. */
export function badge(text, kind) {
  return h("span", { class: `badge ${kind ? "b-" + kind : ""}` }, text);
}

/** The first and last characters of a long key or id. */
export function short(id, head = 10, tail = 6) {
  if (!id) return "";
  return id.length <= head + tail + 1 ? id : `${id.slice(0, head)}…${id.slice(-tail)}`;
}

/** Calls `fn` once `ms` have passed without another call. */
export function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** Measures the width available to `el`, with a floor for hidden or tiny containers. */
export function widthOf(el, min = 320) {
  return Math.max(min, Math.floor(el.getBoundingClientRect().width));
}
