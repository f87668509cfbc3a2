// The API reference page (SPEC C.4.2): Swagger UI over /api/v1/schema/openapi.json, nothing from
// another origin. The document needs the bearer token when the server has one; the token is kept in
// this tab's sessionStorage under the key the web console uses, and sent with every request the page
// makes ("Try it out" included). No validator badge: it would call validator.swagger.io.
(function () {
  "use strict";
  var TOKEN_KEY = "mirror-neuron-token";
  var DOCUMENT = "/api/v1/schema/openapi.json";

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function withToken(request) {
    var value = token();
    if (value && !request.headers.Authorization) {
      request.headers.Authorization = "Bearer " + value;
    }
    return request;
  }

  function askForToken() {
    var form = document.getElementById("token");
    form.hidden = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, document.getElementById("token-value").value);
      window.location.reload();
    });
  }

  function show() {
    window.ui = SwaggerUIBundle({
      url: DOCUMENT,
      dom_id: "#reference",
      validatorUrl: null,
      deepLinking: true,
      tryItOutEnabled: false,
      requestInterceptor: withToken,
    });
  }

  var headers = token() ? { Authorization: "Bearer " + token() } : {};
  fetch(DOCUMENT, { headers: headers }).then(function (response) {
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      askForToken();
    } else {
      show();
    }
  }, show);
})();
