"""Razorpay: orders, payments, refunds, settlements and ``X-Razorpay-Signature`` webhooks."""
