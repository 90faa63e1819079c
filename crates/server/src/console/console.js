// The console's only script (CSP: script-src 'self'): live regions refresh
// from their data-refresh URL every 2 seconds; "select all" selects a page's rows.
for (const region of document.querySelectorAll("[data-refresh]")) {
  setInterval(async () => {
    const answer = await fetch(region.dataset.refresh, { credentials: "same-origin" });
    if (answer.ok) region.innerHTML = await answer.text();
  }, 2000);
}
const all = document.getElementById("select-all");
if (all) {
  all.addEventListener("change", () => {
    for (const box of document.querySelectorAll('input[name="machine"]')) box.checked = all.checked;
  });
}
