"""Stripe: PaymentIntents, refunds, balance transactions and ``Stripe-Signature`` webhooks."""
