// Keyboard shortcuts on a tile page: a = accept, r = reject, e = edit the caption.
document.addEventListener("keydown", (ev) => {
  const t = ev.target;
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
  const click = (id) => { const b = document.getElementById(id); if (b) { ev.preventDefault(); b.click(); } };
  if (ev.key === "a") click("accept-btn");
  else if (ev.key === "r") click("reject-btn");
  else if (ev.key === "e") {
    const box = document.getElementById("edit-text");
    if (box) { ev.preventDefault(); box.focus(); }
  }
});
