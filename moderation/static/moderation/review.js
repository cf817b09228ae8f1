// The reviewer dashboard: keyboard shortcuts, blur, phrase toggles, and asking the image.
(function () {
  "use strict";

  function typing(target) {
    return target && target.closest && target.closest("input, textarea, select, [contenteditable]");
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
