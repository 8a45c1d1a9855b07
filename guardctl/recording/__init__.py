"""Recording: asciicast files, the audit log, replay."""
