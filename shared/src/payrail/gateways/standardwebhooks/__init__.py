"""Standard Webhooks (standardwebhooks.com): the generic signed-webhook scheme for any source."""
