"""Shipping audit records and casts off the machine (syslog, OTLP, S3): see `base`."""
