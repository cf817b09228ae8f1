// The reviewer dashboard: keyboard shortcuts, blur, phrase toggles, and asking the image.
(function () {
  "use strict";

  // Only fields that take typed text swallow the keys; a checkbox or a button keeps the shortcuts alive.
  var TEXT_INPUT_TYPES = ["text", "search", "email", "url", "tel", "password", "number", "date",
                          "datetime-local", "month", "week", "time"];

  function typing(target) {
    if (!target || !target.closest) return false;
    if (target.closest("textarea, select, [contenteditable]")) return true;
    var input = target.closest("input");
    return Boolean(input) && TEXT_INPUT_TYPES.indexOf((input.getAttribute("type") || "text").toLowerCase()) !== -1;
  }

  function openViolating(focusId) {
    var form = document.getElementById("decide-violating");
    if (form) form.classList.add("is-open");
    var field = document.getElementById(focusId);
    if (field) field.focus();
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    var el = document.querySelector('[data-shortcut="' + event.key + '"]');
    if (!el) return;
    event.preventDefault();
    if (el.dataset.shortcutFocus) openViolating(el.dataset.shortcutFocus);
    else el.click();
  });

  document.querySelectorAll("[data-shortcut-focus]").forEach(function (button) {
    button.addEventListener("click", function () { openViolating(button.dataset.shortcutFocus); });
  });

  var figure = document.getElementById("mod-figure");
  var unblur = document.getElementById("mod-unblur-all");
  function setBlur(blurred) {
    if (figure) figure.classList.toggle("is-blurred", blurred);
    if (unblur) unblur.checked = !blurred;
  }
  if (figure) figure.addEventListener("click", function () { setBlur(false); });
  if (unblur) unblur.addEventListener("change", function () { setBlur(!unblur.checked); });

  function togglePhrase(input) {
    document.querySelectorAll(".mod-box").forEach(function (box) {
      if (box.dataset.phrase === input.dataset.phraseToggle) box.hidden = !input.checked;
    });
    layoutLabels();
  }

  // Labels have a fixed size in pixels while boxes scale with the image, so they are placed
  // here, strongest box first: above the box, inside its top, below it, or at its right edge,
  // wherever the label stays inside the image and clear of the labels already placed. A label
  // that fits nowhere is left hidden; hovering its box shows it (and the box's title tells it).
  function overlaps(a, b) {
    return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  }

  function labelSpots(box, w, h) {
    return [[0, -h], [0, 0], [0, box.h], [box.w - w, -h], [box.w - w, 0], [box.w - w, box.h - h]];
  }

  function placeLabel(boxEl, frame, placed) {
    var label = boxEl.querySelector(".mod-box-label");
    if (!label) return;
    label.classList.add("is-placed");
    var r = boxEl.getBoundingClientRect();
    var box = {x: r.left - frame.left, y: r.top - frame.top, w: r.width, h: r.height};
    var w = label.offsetWidth, h = label.offsetHeight;
    var spots = labelSpots(box, w, h);
    for (var i = 0; i < spots.length; i++) {
      var spot = {x: box.x + spots[i][0], y: box.y + spots[i][1], w: w, h: h};
      var inside = spot.x >= 0 && spot.y >= 0 && spot.x + w <= frame.width && spot.y + h <= frame.height;
      if (inside && !placed.some(function (other) { return overlaps(spot, other); })) {
        // Offsets are from the box's padding edge, inside its border.
        label.style.left = (spots[i][0] - boxEl.clientLeft) + "px";
        label.style.top = (spots[i][1] - boxEl.clientTop) + "px";
        placed.push(spot);
        return;
      }
    }
    label.classList.remove("is-placed");
  }

  function layoutLabels() {
    if (!figure) return;
    var frame = figure.getBoundingClientRect();
    var boxes = Array.prototype.slice.call(figure.querySelectorAll(".mod-box"));
    boxes.forEach(function (box) {
      var label = box.querySelector(".mod-box-label");
      if (label) label.classList.remove("is-placed");
    });
    boxes = boxes.filter(function (box) { return !box.hidden; });
    boxes.sort(function (a, b) { return Number(b.dataset.score || 0) - Number(a.dataset.score || 0); });
    var placed = [];
    boxes.forEach(function (box) { placeLabel(box, frame, placed); });
  }

  var image = document.getElementById("mod-image");
  if (image) {
    if (image.complete) layoutLabels();
    image.addEventListener("load", layoutLabels);
    window.addEventListener("resize", layoutLabels);
  }
  document.addEventListener("change", function (event) {
    if (event.target.dataset && event.target.dataset.phraseToggle !== undefined) togglePhrase(event.target);
  });

  function drawBox(g) {
    var img = document.getElementById("mod-image");
    var w = Number(img.dataset.width), h = Number(img.dataset.height);
    var box = document.createElement("div");
    box.className = "mod-box is-asked";
    box.dataset.phrase = g.phrase;
    box.dataset.score = String(g.score);
    box.title = g.phrase + " " + Number(g.score).toFixed(2);
    box.style.left = (100 * g.box[0] / w) + "%";
    box.style.top = (100 * g.box[1] / h) + "%";
    box.style.width = (100 * (g.box[2] - g.box[0]) / w) + "%";
    box.style.height = (100 * (g.box[3] - g.box[1]) / h) + "%";
    var label = document.createElement("span");
    label.className = "mod-box-label";
    label.textContent = g.phrase + " " + Number(g.score).toFixed(2);
    box.appendChild(label);
    figure.appendChild(box);
  }

  function show(item, data) {
    var asked = data.params.question || (data.params.phrases || []).join(", ");
    var text = data.kind + " " + asked + ": " + data.status;
    if (data.status === "done" && data.result) {
      if (data.result.answer !== undefined) text += " — " + data.result.answer;
      if (data.result.groundings) {
        text += " — " + data.result.groundings.length + " box(es)";
        data.result.groundings.forEach(drawBox);
        layoutLabels();
      }
    }
    if (data.status === "failed") text += " — " + data.error;
    item.textContent = text;
  }

  function poll(item, url, tries) {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (data) {
        show(item, data);
        if ((data.status === "pending" || data.status === "running") && tries > 0) {
          setTimeout(function () { poll(item, url, tries - 1); }, 1500);
        }
      });
  }

  document.querySelectorAll("form[data-ask]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var item = document.createElement("li");
      item.textContent = "sending…";
      document.getElementById("mod-asked").prepend(item);
      fetch(form.action, {method: "POST", body: new FormData(form), credentials: "same-origin"})
        .then(function (r) { return r.json(); })
        .then(function (data) {
          if (data.code) { item.textContent = data.message; return; }
          show(item, data);
          poll(item, data.poll_url, 200);
        });
    });
  });
}());
