// The zoomable slide view on a tile page: OpenSeadragon over the slide's Deep Zoom tiles,
// the tile outlined, opened on its 3 x 3 neighbourhood; "tile 1:1" zooms to the tile.
(() => {
  const el = document.getElementById("zoom");
  if (!el || !window.OpenSeadragon) return;
  const [x, y, size] = ["x", "y", "size"].map((k) => Number(el.dataset[k]));
  const viewer = OpenSeadragon({
    element: el,
    prefixUrl: "/static/openseadragon/images/",
    tileSources: el.dataset.dzi,
    drawer: "canvas",
    showNavigator: true,
    navigatorPosition: "BOTTOM_RIGHT",
    maxZoomPixelRatio: 2,
    visibilityRatio: 0.5,
    gestureSettingsMouse: { clickToZoom: false },
  });
  let tileRect = null;
  viewer.addHandler("open", () => {
    tileRect = viewer.viewport.imageToViewportRectangle(x, y, size, size);
    const box = document.createElement("div");
    box.className = "zoom-outline";
    viewer.addOverlay({ element: box, location: tileRect });
    const around = new OpenSeadragon.Rect(
      tileRect.x - tileRect.width, tileRect.y - tileRect.height, 3 * tileRect.width, 3 * tileRect.height);
    viewer.viewport.fitBounds(around, true);
    el.dataset.ready = "1";
  });
  const one = document.getElementById("zoom-tile");
  if (one) one.addEventListener("click", (ev) => {
    ev.preventDefault();
    if (tileRect) viewer.viewport.fitBounds(tileRect);
  });
})();
