// The item page's overlay opacity slider; nothing else needs a script.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var slider = document.getElementById("opacity");
  var overlay = document.getElementById("overlay");
  if (!slider || !overlay) { return; }
  slider.addEventListener("input", function () {
    overlay.style.opacity = String(slider.value / 100);
  });
});
