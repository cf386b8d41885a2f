// The console's one script (loaded with the page's CSP nonce): refreshes the parts of a page marked
// data-refresh by fetching their fragment URL every data-refresh-seconds and swapping them in.
// Polling, not server-sent events: D1 has no change feed, so a stream would be the Worker polling
// D1 while holding a connection open (docs/console.md). It pauses while the tab is hidden.
(() => {
  const regions = () => [...document.querySelectorAll("[data-refresh]")];

  async function refresh(region) {
    const response = await fetch(region.dataset.refresh, {
      credentials: "same-origin",
      headers: { accept: "text/html" },
    });
    // A session that ended answers with the sign-in page: show it whole.
    if (response.redirected || response.status === 401) {
      window.location.assign(response.url);
      return;
    }
    if (!response.ok) return;
    const parsed = new DOMParser().parseFromString(await response.text(), "text/html");
    const next = parsed.getElementById(region.id);
    if (!next) return;
    // Keep what the reader opened, and where the focus was.
    const open = [...region.querySelectorAll("details[open]")].map((d) => d.querySelector("summary")?.textContent);
    const focused =
      document.activeElement && region.contains(document.activeElement) ? document.activeElement.id : null;
    for (const details of next.querySelectorAll("details")) {
      if (open.includes(details.querySelector("summary")?.textContent)) details.open = true;
    }
    region.replaceWith(document.importNode(next, true));
    if (focused) document.getElementById(focused)?.focus();
  }

  function tick() {
    if (document.hidden) return;
    for (const region of regions()) refresh(region).catch(() => undefined);
  }

  const seconds = Math.max(5, Number(regions()[0]?.dataset.refreshSeconds ?? 15));
  if (regions().length > 0) {
    setInterval(tick, seconds * 1000);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) tick();
    });
  }
})();
