// Filter bar: region cascade (province -> city -> district) and clean shareable URLs.
// Plain JS, no dependencies. Options come from GET /filters/regions, which answers only
// inside the caller's region scope.
(function () {
  "use strict";
  var form = document.getElementById("filter-bar");
  if (!form) { return; }
  var url = form.getAttribute("data-regions-url");
  var province = form.querySelector("#f-province");
  var city = form.querySelector("#f-city");
  var district = form.querySelector("#f-district");

  function fill(select, values) {
    var keep = select.querySelector("option[value='']");
    while (select.firstChild) { select.removeChild(select.firstChild); }
    if (keep) { select.appendChild(keep); }
    values.forEach(function (value) {
      var option = document.createElement("option");
      option.value = value;
      option.textContent = value;
      select.appendChild(option);
    });
    select.value = "";
  }

  function load(params, target, done) {
    var query = new URLSearchParams(params).toString();
    form.setAttribute("data-loading", "1");
    fetch(url + "?" + query, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : { cities: [], districts: [] }; })
      .then(function (data) {
        fill(target, data[target === city ? "cities" : "districts"] || []);
        target.disabled = false;
        form.removeAttribute("data-loading");
        if (done) { done(); }
      })
      .catch(function () { form.removeAttribute("data-loading"); });
  }

  if (province && city && district) {
    province.addEventListener("change", function () {
      if (city.getAttribute("data-locked")) { return; }
      fill(district, []);
      district.disabled = true;
      if (!province.value) { fill(city, []); city.disabled = true; return; }
      load({ province: province.value }, city);
    });
    city.addEventListener("change", function () {
      if (!city.value) { fill(district, []); district.disabled = true; return; }
      load({ province: province.value, city: city.value }, district);
    });
  }

  // Empty fields stay out of the URL, so a shared link names only the filters in use.
  form.addEventListener("submit", function () {
    Array.prototype.forEach.call(form.elements, function (el) {
      if (el.name && !el.disabled && el.value === "") { el.disabled = true; }
    });
  });
})();
