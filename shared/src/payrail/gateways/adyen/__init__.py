"""Adyen: Checkout payments, modifications, settlement reports and HMAC-signed notifications."""
