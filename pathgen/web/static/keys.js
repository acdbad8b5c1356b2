// Page behaviour without inline script (the Content-Security-Policy allows none).
// Keys on a tile page: a = accept, r = reject, e = edit the caption, Ctrl+Enter = save the
// edit, n / p = next / previous tile of the filter, ? = show the keys.
(() => {
  for (const el of document.querySelectorAll("[data-rect]")) {
    const [left, top, width, height] = el.dataset.rect.split(" ");
    Object.assign(el.style, { left: `${left}%`, top: `${top}%`, width: `${width}%`, height: `${height}%` });
  }
  for (const sel of document.querySelectorAll("select[data-autosubmit]")) {
    sel.addEventListener("change", () => sel.form.submit());
  }
  const help = document.getElementById("keys-help");
  const toggle = document.getElementById("keys-toggle");
  if (toggle && help) toggle.addEventListener("click", (ev) => { ev.preventDefault(); help.hidden = !help.hidden; });
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && t && t.id === "edit-text") {
      const save = document.getElementById("edit-btn");
      if (save) { ev.preventDefault(); save.click(); }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) {
      if (ev.key === "Escape") t.blur();
      return;
    }
    const click = (id) => { const b = document.getElementById(id); if (b) { ev.preventDefault(); b.click(); } };
    if (ev.key === "a") click("accept-btn");
    else if (ev.key === "r") click("reject-btn");
    else if (ev.key === "n") click("next-link");
    else if (ev.key === "p") click("prev-link");
    else if (ev.key === "e") {
      const box = document.getElementById("edit-text");
      if (box) { ev.preventDefault(); box.focus(); }
    } else if (ev.key === "?" && help) {
      ev.preventDefault();
      help.hidden = !help.hidden;
    } else if (ev.key === "Escape" && help) help.hidden = true;
  });
})();
