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
