/* custody: the search and crossref maps (docs/WEB.md "Maps"). Reads its data from the map
   element's data- attributes (no inline script: the CSP forbids it), draws with the vendored
   Leaflet. Text from files and people is set as textContent, never as HTML. Works with no tile
   server (positions on a blank background) and with one that cannot be reached (tiles fail,
   markers and lines stay). */
(function () {
  "use strict";
  var el = document.getElementById("map");
  if (!el || !window.L) { return; }
  var data = JSON.parse(el.getAttribute("data-map") || "{}");
  var labels = JSON.parse(el.getAttribute("data-labels") || "{}");
  var map = L.map(el, { worldCopyJump: true, attributionControl: true });
  var tiles = el.getAttribute("data-tiles");
  if (tiles) {
    L.tileLayer(tiles, { maxZoom: 19, attribution: el.getAttribute("data-attribution") || "" })
      .addTo(map);
  }
  L.control.scale().addTo(map);
  var bounds = [];
  var HEX = /^[0-9a-f]{64}$/;

  function popup(p) {
    var box = document.createElement("div");
    var title = document.createElement(HEX.test(p.sha256 || "") ? "a" : "strong");
    if (title.tagName === "A") { title.href = "/items/" + p.sha256; }
    title.textContent = p.name || p.sha256 || "";
    title.dir = "auto";
    box.appendChild(title);
    var lines = [];
    if (p.time) { lines.push(p.time); }
    lines.push(p.lat.toFixed(5) + ", " + p.lon.toFixed(5));
    if (p.km !== undefined) { lines.push(p.km.toFixed(3) + " km"); }
    if (p.dt !== undefined) { lines.push((p.dt >= 0 ? "+" : "") + p.dt.toFixed(1) + " min"); }
    lines.forEach(function (text) {
      var line = document.createElement("div");
      line.textContent = text;
      line.dir = "ltr";
      box.appendChild(line);
    });
    return box;
  }

  (data.points || []).forEach(function (p) {
    var marker = L.marker([p.lat, p.lon], { alt: p.name || labels.item || "item",
                                            title: p.name || "", keyboard: true });
    marker.bindPopup(popup(p)).addTo(map);
    bounds.push([p.lat, p.lon]);
  });
  (data.tracks || []).forEach(function (line) {
    L.polyline(line, { className: "track-line", weight: 2 }).addTo(map);
    line.forEach(function (ll) { bounds.push(ll); });
  });
  (data.links || []).forEach(function (link) {
    L.polyline([link.from, link.to], { className: "match-link", weight: 2, dashArray: "4 4" })
      .addTo(map);
    L.circleMarker(link.to, { className: "track-position", radius: 5 })
      .bindPopup(popup(link.position)).addTo(map);
    bounds.push(link.to);
  });
  if (data.bbox) {  // the box searched (west, south, east, north), drawn for context
    var west = data.bbox[0], east = data.bbox[2] < west ? data.bbox[2] + 360 : data.bbox[2];
    var box = [[data.bbox[1], west], [data.bbox[3], east]];
    L.rectangle(box, { className: "searched", weight: 1, fill: false, interactive: false })
      .addTo(map);
    bounds.push(box[0], box[1]);
  }
  if (data.center) {  // the place searched and its radius
    L.circle(data.center, { radius: (data.radius_km || 0) * 1000, className: "searched",
                            weight: 1, fill: false, interactive: false }).addTo(map);
    bounds.push(data.center);
  }
  if (bounds.length) {
    map.fitBounds(bounds, { padding: [24, 24], maxZoom: 14 });
  } else {
    map.setView([20, 0], 1);
  }
  el.setAttribute("data-ready", String((data.points || []).length));
})();
