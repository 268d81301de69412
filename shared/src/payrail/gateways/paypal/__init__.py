"""PayPal: Orders v2, captures, refunds, disputes and certificate-signed (RSA) webhooks."""
