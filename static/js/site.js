// Optional sugar; every flow works without JavaScript.
// On a hybrid event's sign-up form, the button says "Join the waiting list" while a full mode is chosen.
(function () {
  "use strict";
  document.querySelectorAll("form.signup-form").forEach(function (form) {
    var full = (form.getAttribute("data-waitlist-modes") || "").split(" ").filter(Boolean);
    var button = form.querySelector("button[type=submit]");
    var radios = form.querySelectorAll("input[name=attendance]");
    if (!button || !radios.length) { return; }
    function update() {
      var chosen = form.querySelector("input[name=attendance]:checked");
      var waiting = chosen && full.indexOf(chosen.value) !== -1;
      button.textContent = waiting ? button.getAttribute("data-label-waitlist") : button.getAttribute("data-label-signup");
    }
    radios.forEach(function (radio) { radio.addEventListener("change", update); });
    update();
  });
}());
