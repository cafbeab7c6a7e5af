// regiondet's service worker: the page starts without the network after one visit. Every GET
// of this origin goes to the network first (a new page or model reaches the user at once; the
// big files answer 304 when unchanged) and, when the network or the server is gone, is answered
// from the cache: the page, its scripts, ONNX Runtime Web, the model list and the model the page
// ran on this device. Live frames and uploads are never cached (they are not GETs).
const CACHE = "regiondet-page";
// the page itself; the runtime build it uses and its model are added by the page once loaded
const SHELL = [
  "/", "/manifest.webmanifest", "/static/app.js", "/static/device.js", "/static/tracker.js", "/static/boxes.js", "/static/style.css",
  "/static/icon.svg",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin || url.pathname === "/healthz") return;
  event.respondWith(networkFirst(event.request));
});

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(request, response.clone());
    return response;
  } catch (err) {
    // the same file under another query (the page's ?run= or ?token=) will do
    const cached = (await cache.match(request)) || (await cache.match(request, { ignoreSearch: true }));
    if (cached) return cached;
    throw err;
  }
}
