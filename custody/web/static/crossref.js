/* custody: the crossref form refuses, before sending, a track larger than the server takes
   (data-max-bytes), with a readable message; the server checks the same limit. */
(function () {
  "use strict";
  var form = document.getElementById("crossref-form");
  if (!form) { return; }
  var max = Number(form.getAttribute("data-max-bytes"));
  var problem = document.getElementById("upload-problem");
  form.addEventListener("submit", function (event) {
    var input = document.getElementById("f-track");
    var file = input && input.files && input.files[0];
    if (file && max && file.size > max) {
      event.preventDefault();
      problem.textContent = form.getAttribute("data-too-large");
      problem.hidden = false;
    }
  });
})();
