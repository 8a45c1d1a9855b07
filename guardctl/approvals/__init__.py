"""Human approvals: the queue, the inline prompt, the live console, one-time grants."""
