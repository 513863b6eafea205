// Behaviour without inline scripts (CSP allows scripts from 'self' only).
// Forms marked data-confirm ask before submitting, e.g. removing a member.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm) {
    if (!window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  }
});

// Read-only fields marked data-select-on-focus (a new API key) select their text for copying.
document.addEventListener("focusin", (event) => {
  const field = event.target;
  if (field instanceof HTMLInputElement && "selectOnFocus" in field.dataset) {
    field.select();
  }
});

// Wide tables scroll inside their wrapper (.table-responsive). A wrapper that scrolls becomes
// a focusable region named by its table's caption, so that keyboard users can scroll it too;
// one that fits again stops being a tab stop (unless the template made it one). While a table
// is scrolled sideways its wrapper is marked .is-scrolled (the kept first column casts an edge).
(function () {
  "use strict";
  function name(box) {
    const caption = box.querySelector("caption");
    return caption ? caption.textContent.replace(/\s+/g, " ").trim() : "";
  }
  function update(box) {
    const scrolls = box.scrollWidth > box.clientWidth + 1;
    if (scrolls && !box.hasAttribute("tabindex")) {
      box.tabIndex = 0;
      box.dataset.scrollFocus = "";
      if (!box.hasAttribute("role")) {
        box.setAttribute("role", "region");
      }
      if (!box.hasAttribute("aria-label") && name(box)) {
        box.setAttribute("aria-label", name(box));
      }
    } else if (!scrolls && "scrollFocus" in box.dataset) {
      box.removeAttribute("tabindex");
      delete box.dataset.scrollFocus;
    }
    box.classList.toggle("is-scrolled", box.scrollLeft > 0);
  }
  const watch = "ResizeObserver" in window
    ? new ResizeObserver((entries) => entries.forEach((entry) => update(entry.target)))
    : null;
  function scan(root) {
    root.querySelectorAll(".table-responsive").forEach((box) => {
      update(box);
      if (watch) {
        watch.observe(box);
      }
    });
  }
  document.addEventListener(
    "scroll",
    (event) => {
      const box = event.target;
      if (box instanceof HTMLElement && box.classList.contains("table-responsive")) {
        box.classList.toggle("is-scrolled", box.scrollLeft > 0);
      }
    },
    { capture: true, passive: true }
  );
  document.addEventListener("htmx:afterSettle", (event) => {
    const box = event.target.closest(".table-responsive");
    if (box) {
      update(box);
    }
    scan(event.target);
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => scan(document));
  } else {
    scan(document);
  }
})();
