// payrail demo storefront: pay with Stripe.js, then wait for entitlements to grant access.
// The browser is never the source of truth: "Access granted" is shown only when entitlements
// says so, and entitlements grants only after checkout applied the gateway's verified webhook.
(function () {
  "use strict";

  const LONG_POLL_SECONDS = 25;  // under common proxy idle timeouts
  const GIVE_UP_AFTER_MS = 5 * 60 * 1000;
  const $ = (id) => document.getElementById(id);
  let config = null;
  let stripe = null;
  let card = null;
  let attempt = null;  // {fingerprint, key}: a retry of the same purchase reuses its key

  function say(text, state) {
    $("status").textContent = text;
    $("status").dataset.state = state;
  }

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const tag = document.createElement("script");
      tag.src = src;
      tag.onload = resolve;
      tag.onerror = () => reject(new Error("could not load Stripe.js from " + src));
      document.head.appendChild(tag);
    });
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function problemText(response) {
    const body = await response.json().catch(() => ({}));
    return body.detail || body.title || "HTTP " + response.status;
  }

  function selectedProduct() {
    const chosen = document.querySelector("input[name=product]:checked");
    return config.products.find((p) => p.sku === chosen.value);
  }

  async function createPayment(product, userId) {
    const body = {
      amount: product.amount, currency: product.currency, user_id: userId,
      sku: product.sku, gateway: config.gateway, description: product.name,
    };
    const fingerprint = JSON.stringify(body);
    if (!attempt || attempt.fingerprint !== fingerprint) attempt = {fingerprint, key: newKey()};
    const response = await fetch("/v1/payments", {
      method: "POST",
      headers: {"Content-Type": "application/json", "Idempotency-Key": attempt.key},
      body: fingerprint,
    });
    if (response.status === 202) {
      throw new Error("the gateway has not answered yet; press Pay again in a moment");
    }
    if (!response.ok) throw new Error(await problemText(response));
    return response.json();
  }

  async function payWithCard(payment) {
    const tokenized = await stripe.createToken(card);
    if (tokenized.error) throw new Error(tokenized.error.message || "the card was refused");
    const response = await fetch("/demo/payments/" + encodeURIComponent(payment.id) + "/confirm", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({
        client_secret: payment.client_secret, payment_method: tokenized.token.card.id,
      }),
    });
    if (!response.ok) throw new Error(await problemText(response));
    let status = (await response.json()).gateway_status;
    if (status === "requires_action") {  // 3-D Secure: Stripe.js runs the challenge
      const result = await stripe.confirmCardPayment(payment.client_secret);
      if (result.error) throw new Error(result.error.message || "authentication failed");
      status = result.paymentIntent.status;
    }
    return status;
  }

  async function verify(paymentId) {
    say("Payment successful, verifying...", "verifying");
    const url = config.entitlements_url + "/v1/payments/" + encodeURIComponent(paymentId) +
      "/access?wait=" + LONG_POLL_SECONDS;
    const started = Date.now();
    let backoff = 1000;
    while (Date.now() - started < GIVE_UP_AFTER_MS) {
      let access;
      try {
        const response = await fetch(url, {cache: "no-store"});
        if (!response.ok) throw new Error("HTTP " + response.status);
        access = await response.json();
        backoff = 1000;
      } catch (error) {
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 30000);
        continue;
      }
      $("access-state").textContent = access.state;
      if (access.state === "granted") return say("Access granted", "granted");
      if (access.state === "denied") {
        return say("Payment not confirmed by the gateway: no access", "denied");
      }
      if (access.state === "revoked") return say("Access revoked (refunded)", "denied");
    }
    say("Still verifying. Access will appear on its own once the payment is confirmed.",
        "verifying");
  }

  async function purchase(event) {
    event.preventDefault();
    $("pay").disabled = true;
    try {
      say("Starting the payment...", "working");
      const payment = await createPayment(selectedProduct(), $("user-id").value.trim());
      $("details").hidden = false;
      $("payment-id").textContent = payment.id;
      $("access-state").textContent = "pending";
      if (payment.status === "failed") {
        throw new Error(payment.failure_message || "the gateway declined the payment");
      }
      say("Paying...", "working");
      const status = await payWithCard(payment);
      if (status !== "succeeded" && status !== "processing") {
        throw new Error("the payment was not completed (" + status + ")");
      }
      attempt = null;  // paid: the next purchase is a new one
      await verify(payment.id);
    } catch (error) {
      say("Payment failed: " + error.message, "error");
    } finally {
      $("pay").disabled = false;
    }
  }

  async function start() {
    try {
      config = await (await fetch("/demo/config.json", {cache: "no-store"})).json();
      await loadScript(config.stripe_js_url);
    } catch (error) {
      return say("Cannot start: " + error.message, "error");
    }
    config.products.forEach((product, index) => {
      const label = document.createElement("label");
      const input = document.createElement("input");
      Object.assign(input, {type: "radio", name: "product", value: product.sku});
      input.checked = index === 0;
      label.append(input, " " + product.name + " - " + product.price);
      $("products").appendChild(label);
    });
    $("user-id").value = "u_demo_" + newKey().slice(0, 8);
    stripe = window.Stripe(config.publishable_key);
    card = stripe.elements().create("card");
    card.mount("#card-element");
    $("checkout").addEventListener("submit", purchase);
    $("pay").disabled = false;
    say("Ready", "ready");
  }

  start();
})();
